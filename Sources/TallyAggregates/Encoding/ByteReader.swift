/// Reads the primitives that `ByteWriter` writes, checking every length and range.
///
/// Every read either returns a value or throws a `DecodeError` naming the field; none traps,
/// whatever the bytes. Varints must be minimal (no redundant continuation bytes), so that a
/// decoded value re-encodes to the same bytes.
public struct ByteReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var offset: Int
    public let limits: DecodeLimits

    public init(_ bytes: [UInt8], limits: DecodeLimits = .default) {
        self.bytes = bytes
        self.offset = 0
        self.limits = limits
    }

    public var remaining: Int { self.bytes.count - self.offset }
    public var isAtEnd: Bool { self.offset == self.bytes.count }

    public mutating func readUInt8(_ field: String) throws(DecodeError) -> UInt8 {
        guard self.offset < self.bytes.count else { throw .truncated(field: field, offset: self.offset) }
        defer { self.offset += 1 }
        return self.bytes[self.offset]
    }

    /// Most varints in a sketch or a delta are one byte: that case inlines, the rest does not.
    @inline(__always)
    public mutating func readVarint(_ field: String) throws(DecodeError) -> UInt64 {
        if self.offset < self.bytes.count {
            let byte = self.bytes[self.offset]
            if byte < 0x80 {
                self.offset += 1
                return UInt64(byte)
            }
        }
        return try self.readLongVarint(field)
    }

    @inline(never)
    private mutating func readLongVarint(_ field: String) throws(DecodeError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try self.readUInt8(field)
            if shift == 63 && byte > 1 {
                throw .invalidValue(field: field, value: "varint longer than 64 bits")
            }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 {
                if byte == 0 && shift > 0 { throw .nonCanonical(field: field) }
                return result
            }
            shift += 7
        }
    }

    /// A varint that must be at most `max`, returned as `Int`.
    public mutating func readCount(_ field: String, max: Int) throws(DecodeError) -> Int {
        let value = try self.readVarint(field)
        guard value <= UInt64(max) else { throw .limitExceeded(field: field, limit: max, found: value) }
        return Int(value)
    }

    public mutating func readZigZag(_ field: String) throws(DecodeError) -> Int64 {
        let raw = try self.readVarint(field)
        return Int64(bitPattern: raw >> 1) ^ -Int64(bitPattern: raw & 1)
    }

    public mutating func readUInt64LE(_ field: String) throws(DecodeError) -> UInt64 {
        guard self.remaining >= 8 else { throw .truncated(field: field, offset: self.offset) }
        var value: UInt64 = 0
        for index in 0..<8 {
            value |= UInt64(self.bytes[self.offset + index]) << (8 * UInt64(index))
        }
        self.offset += 8
        return value
    }

    public mutating func readDouble(_ field: String) throws(DecodeError) -> Double {
        Double(bitPattern: try self.readUInt64LE(field))
    }

    public mutating func readBytes(_ field: String, count: Int) throws(DecodeError) -> ArraySlice<UInt8> {
        guard count >= 0, self.remaining >= count else { throw .truncated(field: field, offset: self.offset) }
        defer { self.offset += count }
        return self.bytes[self.offset..<(self.offset + count)]
    }

    public mutating func readString(_ field: String) throws(DecodeError) -> String {
        let count = try self.readCount(field, max: self.limits.stringBytesMax)
        let slice = try self.readBytes(field, count: count)
        guard let string = String(validating: slice, as: UTF8.self) else {
            throw .invalidValue(field: field, value: "invalid UTF-8")
        }
        return string
    }

    /// Reads the type tag and version header that opens every top-level encoding.
    public mutating func readHeader(tag: UInt8, type: String, versions: ClosedRange<UInt8>)
        throws(DecodeError) -> UInt8
    {
        let found = try self.readUInt8("\(type) tag")
        guard found == tag else { throw .unexpectedTag(expected: tag, found: found) }
        let version = try self.readUInt8("\(type) version")
        guard versions.contains(version) else { throw .unsupportedVersion(type: type, version: version) }
        return version
    }

    /// Throws unless every byte was consumed.
    public func expectEnd() throws(DecodeError) {
        guard self.isAtEnd else { throw .trailingBytes(count: self.remaining) }
    }
}
