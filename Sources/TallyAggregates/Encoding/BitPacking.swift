/// Writes bit fields least-significant bit first into bytes; the last byte is padded with zeros.
struct BitWriter {
    private(set) var bytes: [UInt8] = []
    private var current: UInt64 = 0
    private var used: Int = 0

    init(capacity: Int = 0) {
        self.bytes.reserveCapacity(capacity)
    }

    /// Appends the low `width` bits of `value` (width 0...57).
    mutating func write(_ value: UInt64, width: Int) {
        precondition(width >= 0 && width <= 57, "bit field width \(width)")
        guard width > 0 else { return }
        self.current |= (value & ((1 << UInt64(width)) - 1)) << UInt64(self.used)
        self.used += width
        while self.used >= 8 {
            self.bytes.append(UInt8(truncatingIfNeeded: self.current))
            self.current >>= 8
            self.used -= 8
        }
    }

    /// `count` one-bits then a zero-bit.
    mutating func writeUnary(_ count: Int) {
        var remaining = count
        while remaining >= 32 {
            self.write(0xFFFF_FFFF, width: 32)
            remaining -= 32
        }
        self.write((1 << UInt64(remaining)) - 1, width: remaining + 1)
    }

    /// Golomb-Rice code of `value` with parameter `k`: `value >> k` in unary, then its low `k` bits.
    mutating func writeRice(_ value: UInt64, k: Int) {
        self.writeUnary(Int(value >> UInt64(k)))
        self.write(value, width: k)
    }

    /// The bytes with the last partial byte flushed.
    mutating func finish() -> [UInt8] {
        if self.used > 0 {
            self.bytes.append(UInt8(truncatingIfNeeded: self.current))
            self.current = 0
            self.used = 0
        }
        return self.bytes
    }
}

/// Reads what `BitWriter` wrote; every read is bounds-checked and throws on truncation.
struct BitReader {
    private let bytes: ArraySlice<UInt8>
    private var bitOffset: Int = 0
    private let field: String

    init(_ bytes: ArraySlice<UInt8>, field: String) {
        self.bytes = bytes
        self.field = field
    }

    var bitsRemaining: Int { self.bytes.count * 8 - self.bitOffset }

    mutating func read(width: Int) throws(DecodeError) -> UInt64 {
        guard width <= self.bitsRemaining else {
            throw .truncated(field: self.field, offset: self.bytes.startIndex + self.bitOffset / 8)
        }
        var value: UInt64 = 0
        var produced = 0
        while produced < width {
            let byte = self.bytes[self.bytes.startIndex + self.bitOffset / 8]
            let shift = self.bitOffset % 8
            let take = min(8 - shift, width - produced)
            let bits = (UInt64(byte) >> UInt64(shift)) & ((1 << UInt64(take)) - 1)
            value |= bits << UInt64(produced)
            produced += take
            self.bitOffset += take
        }
        return value
    }

    /// A unary count of one-bits ended by a zero-bit; more than `max` ones is an error.
    mutating func readUnary(max: Int) throws(DecodeError) -> Int {
        var count = 0
        while try self.read(width: 1) == 1 {
            count += 1
            guard count <= max else { throw .invalidValue(field: self.field, value: "unary run over \(max)") }
        }
        return count
    }

    mutating func readRice(k: Int, quotientMax: Int) throws(DecodeError) -> UInt64 {
        let quotient = try self.readUnary(max: quotientMax)
        return (UInt64(quotient) << UInt64(k)) | (try self.read(width: k))
    }

    /// Throws unless only zero padding bits remain in the last byte.
    func expectZeroPadding() throws(DecodeError) {
        guard self.bitsRemaining < 8 else { throw .trailingBytes(count: self.bitsRemaining / 8) }
        let shift = self.bitOffset % 8
        guard shift > 0 else { return }
        let last = self.bytes[self.bytes.endIndex - 1]
        guard last >> UInt8(shift) == 0 else { throw .nonCanonical(field: "\(self.field) padding bits") }
    }
}
