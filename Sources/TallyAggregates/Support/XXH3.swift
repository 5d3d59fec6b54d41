/// XXH3-64, the 64-bit hash of xxHash 0.8 (Yann Collet; https://github.com/Cyan4973/xxHash,
/// specification in doc/xxhash_spec.md), written from the reference implementation's scalar path.
///
/// Tally needs a hash that is the same in every process, on every machine and in every release,
/// because hashed values (HyperLogLog registers, replica ids) are stored and replicated. Swift's
/// `Hasher` is seeded per process and must never be used for that. XXH3 rather than XXH64 because
/// user ids are short: for 9 to 16 bytes XXH3 is one 128-bit multiply and an avalanche, about three
/// times faster than XXH64's rounds. Checked against the reference library's outputs for every
/// length class (0, 1-3, 4-8, 9-16, 17-128, 129-240 and long inputs), with and without a seed.
public enum XXH3 {
    static var prime32_1: UInt64 { 0x9E37_79B1 }
    static var prime32_2: UInt64 { 0x85EB_CA77 }
    static var prime32_3: UInt64 { 0xC2B2_AE3D }
    static var prime64_1: UInt64 { 0x9E37_79B1_85EB_CA87 }
    static var prime64_2: UInt64 { 0xC2B2_AE3D_27D4_EB4F }
    static var prime64_3: UInt64 { 0x1656_67B1_9E37_79F9 }
    static var prime64_4: UInt64 { 0x85EB_CA77_C2B2_AE63 }
    static var prime64_5: UInt64 { 0x27D4_EB2F_1656_67C5 }
    static var primeMX1: UInt64 { 0x1656_6791_9E37_79F9 }
    static var primeMX2: UInt64 { 0x9FB2_1C65_1E98_DF25 }

    // Words of the default secret that the short-input paths XOR together, folded ahead of time
    // (XXH3Tests checks them against `secret`).
    static var flip9to16Low: UInt64 { 0x6782_737B_EA42_39B9 }  // secret[24..<32] ^ secret[32..<40]
    static var flip9to16High: UInt64 { 0xAF56_BC3B_0996_523A }  // secret[40..<48] ^ secret[48..<56]
    static var flip4to8: UInt64 { 0xC73A_B174_C5EC_D5A2 }  // secret[8..<16] ^ secret[16..<24]
    static var flip1to3: UInt32 { 0x8727_5A9B }  // secret[0..<4] ^ secret[4..<8]
    static var flip0: UInt64 { 0x8726_F910_5DC2_1DDC }  // secret[56..<64] ^ secret[64..<72]

    /// The default secret, `XXH3_kSecret` (192 bytes).
    @usableFromInline
    static let secret: [UInt8] = [
        0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
        0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
        0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
        0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
        0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
        0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
        0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
        0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
        0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
        0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
        0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
        0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
    ]

    /// The hash of a string's UTF-8 bytes.
    @inline(__always)
    public static func hash(_ string: String, seed: UInt64 = 0) -> UInt64 {
        // Native strings (all that Tally makes or decodes) are contiguous, small ones included; this
        // is also measurably cheaper than `withUTF8`, which needs a mutable copy.
        if let hash = string.utf8.withContiguousStorageIfAvailable({ Self.hash(UnsafeRawBufferPointer($0), seed: seed) }) {
            return hash
        }
        return Self.hash(Array(string.utf8), seed: seed)
    }

    public static func hash(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        bytes.withUnsafeBytes { Self.hash($0, seed: seed) }
    }

    /// The hash of a 64-bit integer's 8 little-endian bytes (the 4-to-8-byte path, unrolled).
    public static func hash(_ value: UInt64, seed: UInt64 = 0) -> UInt64 {
        let seed = seed ^ (UInt64(UInt32(truncatingIfNeeded: seed).byteSwapped) << 32)
        let input64 = (value >> 32) &+ (value << 32)
        return Self.rrmxmx(input64 ^ (Self.flip4to8 &- seed), length: 8)
    }

    public static func hash(_ input: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        Self.secret.withUnsafeBytes { secret in
            let length = input.count
            if length <= 16 { return Self.hash0to16(input, secret, seed) }
            if length <= 128 { return Self.hash17to128(input, secret, seed) }
            if length <= 240 { return Self.hash129to240(input, secret, seed) }
            return Self.hashLong(input, seed: seed)
        }
    }

    @inline(__always)
    static func hash0to16(_ input: UnsafeRawBufferPointer, _ secret: UnsafeRawBufferPointer, _ seed: UInt64) -> UInt64 {
        let length = input.count
        if length > 8 {
            let bitflip1 = Self.flip9to16Low &+ seed
            let bitflip2 = Self.flip9to16High &- seed
            let low = Self.load64(input, 0) ^ bitflip1
            let high = Self.load64(input, length - 8) ^ bitflip2
            let acc = UInt64(length) &+ low.byteSwapped &+ high &+ Self.mul128Fold64(low, high)
            return Self.avalanche(acc)
        }
        if length >= 4 {
            let seed = seed ^ (UInt64(UInt32(truncatingIfNeeded: seed).byteSwapped) << 32)
            let input1 = UInt64(Self.load32(input, 0))
            let input2 = UInt64(Self.load32(input, length - 4))
            let bitflip = Self.flip4to8 &- seed
            let input64 = input2 &+ (input1 << 32)
            return Self.rrmxmx(input64 ^ bitflip, length: UInt64(length))
        }
        if length > 0 {
            let c1 = UInt32(input[0])
            let c2 = UInt32(input[length >> 1])
            let c3 = UInt32(input[length - 1])
            let combined = (c1 << 16) | (c2 << 24) | c3 | (UInt32(length) << 8)
            let bitflip = UInt64(Self.flip1to3) &+ seed
            return Self.avalanche64(UInt64(combined) ^ bitflip)
        }
        return Self.avalanche64(seed ^ Self.flip0)
    }

    @usableFromInline
    static func hash17to128(_ input: UnsafeRawBufferPointer, _ secret: UnsafeRawBufferPointer, _ seed: UInt64) -> UInt64 {
        let length = input.count
        var acc = UInt64(length) &* Self.prime64_1
        if length > 32 {
            if length > 64 {
                if length > 96 {
                    acc &+= Self.mix16(input, 48, secret, 96, seed)
                    acc &+= Self.mix16(input, length - 64, secret, 112, seed)
                }
                acc &+= Self.mix16(input, 32, secret, 64, seed)
                acc &+= Self.mix16(input, length - 48, secret, 80, seed)
            }
            acc &+= Self.mix16(input, 16, secret, 32, seed)
            acc &+= Self.mix16(input, length - 32, secret, 48, seed)
        }
        acc &+= Self.mix16(input, 0, secret, 0, seed)
        acc &+= Self.mix16(input, length - 16, secret, 16, seed)
        return Self.avalanche(acc)
    }

    @usableFromInline
    static func hash129to240(_ input: UnsafeRawBufferPointer, _ secret: UnsafeRawBufferPointer, _ seed: UInt64) -> UInt64 {
        let length = input.count
        var acc = UInt64(length) &* Self.prime64_1
        for round in 0..<8 {
            acc &+= Self.mix16(input, 16 * round, secret, 16 * round, seed)
        }
        // 136 is XXH3_SECRET_SIZE_MIN, 17 XXH3_MIDSIZE_LASTOFFSET, 3 XXH3_MIDSIZE_STARTOFFSET.
        var accEnd = Self.mix16(input, length - 16, secret, 136 - 17, seed)
        acc = Self.avalanche(acc)
        for round in 8..<(length / 16) {
            accEnd &+= Self.mix16(input, 16 * round, secret, 16 * (round - 8) + 3, seed)
        }
        return Self.avalanche(acc &+ accEnd)
    }

    /// Inputs over 240 bytes: stripes of 64 bytes into 8 accumulators, scrambled every block.
    @usableFromInline
    static func hashLong(_ input: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
        var custom = Self.secret
        if seed != 0 {
            custom.withUnsafeMutableBytes { bytes in
                for round in 0..<(bytes.count / 16) {
                    let low = Self.load64(UnsafeRawBufferPointer(bytes), 16 * round) &+ seed
                    let high = Self.load64(UnsafeRawBufferPointer(bytes), 16 * round + 8) &- seed
                    bytes.storeBytes(of: low.littleEndian, toByteOffset: 16 * round, as: UInt64.self)
                    bytes.storeBytes(of: high.littleEndian, toByteOffset: 16 * round + 8, as: UInt64.self)
                }
            }
        }
        return custom.withUnsafeBytes { secret in
            var acc: [UInt64] = [
                Self.prime32_3, Self.prime64_1, Self.prime64_2, Self.prime64_3,
                Self.prime64_4, Self.prime32_2, Self.prime64_5, Self.prime32_1,
            ]
            let length = input.count
            let stripeLength = 64
            let stripesPerBlock = (secret.count - stripeLength) / 8
            let blockLength = stripeLength * stripesPerBlock
            let blocks = (length - 1) / blockLength
            for block in 0..<blocks {
                for stripe in 0..<stripesPerBlock {
                    Self.accumulate512(&acc, input, block * blockLength + stripe * stripeLength, secret, stripe * 8)
                }
                Self.scramble(&acc, secret, secret.count - stripeLength)
            }
            let stripes = ((length - 1) - blockLength * blocks) / stripeLength
            for stripe in 0..<stripes {
                Self.accumulate512(&acc, input, blocks * blockLength + stripe * stripeLength, secret, stripe * 8)
            }
            // The last stripe, with the secret offset by XXH_SECRET_LASTACC_START (7).
            Self.accumulate512(&acc, input, length - stripeLength, secret, secret.count - stripeLength - 7)
            // Merge, from XXH_SECRET_MERGEACCS_START (11).
            var result = UInt64(length) &* Self.prime64_1
            for pair in 0..<4 {
                result &+= Self.mul128Fold64(
                    acc[2 * pair] ^ Self.load64(secret, 11 + 16 * pair),
                    acc[2 * pair + 1] ^ Self.load64(secret, 11 + 16 * pair + 8))
            }
            return Self.avalanche(result)
        }
    }

    static func accumulate512(
        _ acc: inout [UInt64], _ input: UnsafeRawBufferPointer, _ inputOffset: Int,
        _ secret: UnsafeRawBufferPointer, _ secretOffset: Int
    ) {
        for lane in 0..<8 {
            let value = Self.load64(input, inputOffset + 8 * lane)
            let key = value ^ Self.load64(secret, secretOffset + 8 * lane)
            acc[lane ^ 1] &+= value
            acc[lane] &+= (key & 0xFFFF_FFFF) &* (key >> 32)
        }
    }

    static func scramble(_ acc: inout [UInt64], _ secret: UnsafeRawBufferPointer, _ secretOffset: Int) {
        for lane in 0..<8 {
            var value = acc[lane]
            value ^= value >> 47
            value ^= Self.load64(secret, secretOffset + 8 * lane)
            value &*= Self.prime32_1
            acc[lane] = value
        }
    }

    @inline(__always)
    static func mix16(
        _ input: UnsafeRawBufferPointer, _ inputOffset: Int, _ secret: UnsafeRawBufferPointer, _ secretOffset: Int,
        _ seed: UInt64
    ) -> UInt64 {
        Self.mul128Fold64(
            Self.load64(input, inputOffset) ^ (Self.load64(secret, secretOffset) &+ seed),
            Self.load64(input, inputOffset + 8) ^ (Self.load64(secret, secretOffset + 8) &- seed))
    }

    @inline(__always)
    static func mul128Fold64(_ lhs: UInt64, _ rhs: UInt64) -> UInt64 {
        let product = lhs.multipliedFullWidth(by: rhs)
        return product.low ^ product.high
    }

    @inline(__always)
    static func avalanche(_ value: UInt64) -> UInt64 {
        var hash = value ^ (value >> 37)
        hash &*= Self.primeMX1
        return hash ^ (hash >> 32)
    }

    @inline(__always)
    static func rrmxmx(_ value: UInt64, length: UInt64) -> UInt64 {
        var hash = value
        hash ^= Self.rotl(hash, 49) ^ Self.rotl(hash, 24)
        hash &*= Self.primeMX2
        hash ^= (hash >> 35) &+ length
        hash &*= Self.primeMX2
        return hash ^ (hash >> 28)
    }

    /// XXH64's final mix, which XXH3 uses for inputs of 0 to 3 bytes.
    @inline(__always)
    static func avalanche64(_ value: UInt64) -> UInt64 {
        var hash = value
        hash ^= hash >> 33
        hash &*= Self.prime64_2
        hash ^= hash >> 29
        hash &*= Self.prime64_3
        return hash ^ (hash >> 32)
    }

    @inline(__always)
    static func rotl(_ value: UInt64, _ count: UInt64) -> UInt64 {
        (value << count) | (value >> (64 - count))
    }

    @inline(__always)
    static func load64(_ buffer: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    @inline(__always)
    static func load32(_ buffer: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
}
