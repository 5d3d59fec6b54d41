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
///
/// Bits are served from a 64-bit cache refilled a byte at a time, so a unary run is found with one
/// count of trailing ones rather than bit by bit.
struct BitReader {
    private let bytes: ArraySlice<UInt8>
    private var nextByte: Int
    /// Unread bits, least significant first; `cached` of them are valid.
    private var cache: UInt64 = 0
    private var cached: Int = 0
    private let field: String

    init(_ bytes: ArraySlice<UInt8>, field: String) {
        self.bytes = bytes
        self.nextByte = bytes.startIndex
        self.field = field
    }

    var bitsRemaining: Int { self.cached + (self.bytes.endIndex - self.nextByte) * 8 }

    /// Tops the cache up to at least 57 bits, or to the end of the input.
    private mutating func refill() {
        while self.cached <= 56 && self.nextByte < self.bytes.endIndex {
            self.cache |= UInt64(self.bytes[self.nextByte]) << UInt64(self.cached)
            self.cached += 8
            self.nextByte += 1
        }
    }

    /// Reads `width` bits (0...57).
    mutating func read(width: Int) throws(DecodeError) -> UInt64 {
        precondition(width >= 0 && width <= 57, "bit field width \(width)")
        if self.cached < width { self.refill() }
        guard self.cached >= width else {
            throw .truncated(field: self.field, offset: self.nextByte)
        }
        let value = self.cache & ((1 << UInt64(width)) &- 1)
        self.cache = width == 64 ? 0 : self.cache >> UInt64(width)
        self.cached -= width
        return value
    }

    /// A unary count of one-bits ended by a zero-bit; more than `max` ones is an error.
    mutating func readUnary(max: Int) throws(DecodeError) -> Int {
        var count = 0
        while true {
            if self.cached == 0 { self.refill() }
            guard self.cached > 0 else { throw .truncated(field: self.field, offset: self.nextByte) }
            let ones = (~self.cache).trailingZeroBitCount
            if ones < self.cached {
                count += ones
                guard count <= max else { throw .invalidValue(field: self.field, value: "unary run over \(max)") }
                // Consume the ones and the terminating zero.
                self.cache = ones + 1 == 64 ? 0 : self.cache >> UInt64(ones + 1)
                self.cached -= ones + 1
                return count
            }
            count += self.cached
            guard count <= max else { throw .invalidValue(field: self.field, value: "unary run over \(max)") }
            self.cache = 0
            self.cached = 0
        }
    }

    mutating func readRice(k: Int, quotientMax: Int) throws(DecodeError) -> UInt64 {
        let quotient = try self.readUnary(max: quotientMax)
        return (UInt64(quotient) << UInt64(k)) | (try self.read(width: k))
    }

    /// Throws unless only zero padding bits remain in the last byte.
    func expectZeroPadding() throws(DecodeError) {
        guard self.bitsRemaining < 8 else { throw .trailingBytes(count: self.bitsRemaining / 8) }
        guard self.cache == 0 else { throw .nonCanonical(field: "\(self.field) padding bits") }
    }
}
