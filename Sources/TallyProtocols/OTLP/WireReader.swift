/// The protobuf wire format, read in place: a cursor over a message's bytes that yields fields and
/// never reads past its end. The OTLP trace decoder walks requests with it field by field, taking
/// only the fields an event needs and skipping the rest without copying or allocating.
///
/// Every length is checked against the bytes left before it is used, every varint is at most ten
/// bytes, and groups (wire types 3 and 4, deprecated since proto2) are refused, so any input ends
/// in a value or a `WireError` naming where it went wrong.
struct WireReader {
    enum WireType: UInt8 {
        case varint = 0
        case fixed64 = 1
        case lengthDelimited = 2
        case fixed32 = 5
    }

    private let bytes: UnsafeRawBufferPointer
    private(set) var position: Int
    private let end: Int

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        self.position = 0
        self.end = bytes.count
    }

    private init(_ bytes: UnsafeRawBufferPointer, range: Range<Int>) {
        self.bytes = bytes
        self.position = range.lowerBound
        self.end = range.upperBound
    }

    var isAtEnd: Bool { self.position >= self.end }

    /// The next field's number and wire type, or nil at the end of the message.
    mutating func nextField() throws(WireError) -> (number: UInt64, type: WireType)? {
        guard !self.isAtEnd else { return nil }
        let at = self.position
        let key = try self.readVarint()
        let number = key >> 3
        guard number > 0, number <= 536_870_911 else { throw WireError(at: at, "field number \(number) out of range") }
        guard let type = WireType(rawValue: UInt8(key & 7)) else {
            throw WireError(at: at, "field \(number) has wire type \(key & 7), which no OTLP field uses")
        }
        return (number, type)
    }

    mutating func readVarint() throws(WireError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        let start = self.position
        while true {
            guard self.position < self.end else { throw WireError(at: start, "truncated varint") }
            let byte = self.bytes[self.position]
            self.position += 1
            if shift == 63 && byte > 1 { throw WireError(at: start, "varint longer than 64 bits") }
            value |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
    }

    mutating func readFixed64() throws(WireError) -> UInt64 {
        guard self.end - self.position >= 8 else { throw WireError(at: self.position, "truncated fixed64") }
        var value: UInt64 = 0
        for offset in 0..<8 { value |= UInt64(self.bytes[self.position + offset]) << (8 * UInt64(offset)) }
        self.position += 8
        return value
    }

    mutating func readFixed32() throws(WireError) -> UInt32 {
        guard self.end - self.position >= 4 else { throw WireError(at: self.position, "truncated fixed32") }
        var value: UInt32 = 0
        for offset in 0..<4 { value |= UInt32(self.bytes[self.position + offset]) << (8 * UInt32(offset)) }
        self.position += 4
        return value
    }

    /// The range of a length-delimited field's bytes, consumed.
    mutating func readLengthDelimited() throws(WireError) -> Range<Int> {
        let at = self.position
        let length = try self.readVarint()
        guard length <= UInt64(self.end - self.position) else {
            throw WireError(at: at, "length \(length) runs past the end of its message")
        }
        let range = self.position..<(self.position + Int(length))
        self.position = range.upperBound
        return range
    }

    /// A reader over an embedded message.
    mutating func readMessage() throws(WireError) -> WireReader {
        WireReader(self.bytes, range: try self.readLengthDelimited())
    }

    /// The bytes of a length-delimited field, in place (valid while the request's bytes are).
    mutating func readBytes() throws(WireError) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: self.bytes[try self.readLengthDelimited()])
    }

    mutating func skip(_ type: WireType) throws(WireError) {
        switch type {
        case .varint: _ = try self.readVarint()
        case .fixed64: _ = try self.readFixed64()
        case .fixed32: _ = try self.readFixed32()
        case .lengthDelimited: _ = try self.readLengthDelimited()
        }
    }

    /// Throws unless the field has the wire type its schema gives it.
    func expect(_ type: WireType, _ actual: WireType, field: String) throws(WireError) {
        guard type == actual else {
            throw WireError(at: self.position, "\(field) has wire type \(actual.rawValue), not \(type.rawValue)")
        }
    }
}

/// Bytes that are not a protobuf message of the expected shape: where, and what.
public struct WireError: Error, Equatable, CustomStringConvertible {
    public var offset: Int
    public var message: String

    init(at offset: Int, _ message: String) {
        self.offset = offset
        self.message = message
    }

    public var description: String { "\(self.message) (at byte \(self.offset))" }
}
