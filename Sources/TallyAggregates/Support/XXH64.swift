/// XXH64, Yann Collet's 64-bit xxHash (https://github.com/Cyan4973/xxHash, spec in doc/xxhash_spec.md).
///
/// Tally needs a hash that is the same in every process, on every machine and in every release,
/// because hashed values (HyperLogLog registers, replica ids) are stored and replicated. Swift's
/// `Hasher` is seeded per process and must never be used for that. The implementation follows the
/// specification exactly and is checked against its published test vectors.
public enum XXH64 {
    @usableFromInline static let prime1: UInt64 = 0x9E37_79B1_85EB_CA87
    @usableFromInline static let prime2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    @usableFromInline static let prime3: UInt64 = 0x1656_67B1_9E37_79F9
    @usableFromInline static let prime4: UInt64 = 0x85EB_CA77_C2B2_AE63
    @usableFromInline static let prime5: UInt64 = 0x27D4_EB2F_1656_67C5

    /// The hash of a string's UTF-8 bytes.
    @inlinable
    public static func hash(_ string: String, seed: UInt64 = 0) -> UInt64 {
        var string = string
        return string.withUTF8 { Self.hash(UnsafeRawBufferPointer($0), seed: seed) }
    }

    @inlinable
    public static func hash(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        bytes.withUnsafeBytes { Self.hash($0, seed: seed) }
    }

    /// The hash of a 64-bit integer's little-endian bytes.
    @inlinable
    public static func hash(_ value: UInt64, seed: UInt64 = 0) -> UInt64 {
        var acc = seed &+ Self.prime5 &+ 8
        acc ^= Self.round(0, value)
        acc = Self.rotl(acc, 27) &* Self.prime1 &+ Self.prime4
        return Self.avalanche(acc)
    }

    @inlinable
    public static func hash(_ input: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        let length = input.count
        var offset = 0
        var acc: UInt64
        if length >= 32 {
            var v1 = seed &+ Self.prime1 &+ Self.prime2
            var v2 = seed &+ Self.prime2
            var v3 = seed
            var v4 = seed &- Self.prime1
            while offset + 32 <= length {
                v1 = Self.round(v1, Self.load64(input, offset))
                v2 = Self.round(v2, Self.load64(input, offset + 8))
                v3 = Self.round(v3, Self.load64(input, offset + 16))
                v4 = Self.round(v4, Self.load64(input, offset + 24))
                offset += 32
            }
            acc = Self.rotl(v1, 1) &+ Self.rotl(v2, 7) &+ Self.rotl(v3, 12) &+ Self.rotl(v4, 18)
            acc = Self.mergeRound(acc, v1)
            acc = Self.mergeRound(acc, v2)
            acc = Self.mergeRound(acc, v3)
            acc = Self.mergeRound(acc, v4)
        } else {
            acc = seed &+ Self.prime5
        }
        acc &+= UInt64(length)
        while offset + 8 <= length {
            acc ^= Self.round(0, Self.load64(input, offset))
            acc = Self.rotl(acc, 27) &* Self.prime1 &+ Self.prime4
            offset += 8
        }
        if offset + 4 <= length {
            acc ^= UInt64(Self.load32(input, offset)) &* Self.prime1
            acc = Self.rotl(acc, 23) &* Self.prime2 &+ Self.prime3
            offset += 4
        }
        while offset < length {
            acc ^= UInt64(input[offset]) &* Self.prime5
            acc = Self.rotl(acc, 11) &* Self.prime1
            offset += 1
        }
        return Self.avalanche(acc)
    }

    @inlinable @inline(__always)
    static func load64(_ input: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: input.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    @inlinable @inline(__always)
    static func load32(_ input: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(littleEndian: input.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inlinable @inline(__always)
    static func rotl(_ value: UInt64, _ count: UInt64) -> UInt64 {
        (value << count) | (value >> (64 - count))
    }

    @inlinable @inline(__always)
    static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        Self.rotl(acc &+ input &* Self.prime2, 31) &* Self.prime1
    }

    @inlinable @inline(__always)
    static func mergeRound(_ acc: UInt64, _ value: UInt64) -> UInt64 {
        (acc ^ Self.round(0, value)) &* Self.prime1 &+ Self.prime4
    }

    @inlinable @inline(__always)
    static func avalanche(_ hash: UInt64) -> UInt64 {
        var hash = hash
        hash ^= hash >> 33
        hash &*= Self.prime2
        hash ^= hash >> 29
        hash &*= Self.prime3
        hash ^= hash >> 32
        return hash
    }
}
