/// A value with Tally's canonical binary encoding.
///
/// Laws (tested for every conforming type):
/// - round trip: `decode(encode(x)) == x`;
/// - canonical: `x == y` exactly when `encode(x) == encode(y)`, so digests can compare bytes;
/// - total: `decode` of any bytes returns a value or throws `DecodeError`; it never traps, and a
///   value it returns re-encodes to exactly the bytes it read (bytes of the current version: an
///   older version a type still reads is re-encoded in the current one).
public protocol BinaryCodable {
    /// Appends the encoding of `self` (with no type header) to `writer`.
    func encode(to writer: inout ByteWriter)
    /// Reads a value written by `encode(to:)`, enforcing the reader's limits.
    init(from reader: inout ByteReader) throws(DecodeError)
}

/// A top-level aggregate: its encoding opens with a type tag and a version byte.
public protocol VersionedEncoding: BinaryCodable {
    static var encodingTag: UInt8 { get }
    static var encodingVersion: UInt8 { get }
    static var encodingName: String { get }
    /// The oldest version `init(encoded:)` still reads (what an older build wrote to its disk).
    static var oldestReadableVersion: UInt8 { get }
    /// Reads a body written in `version` (one of `oldestReadableVersion...encodingVersion`).
    init(from reader: inout ByteReader, version: UInt8) throws(DecodeError)
}

extension VersionedEncoding {
    public static var oldestReadableVersion: UInt8 { Self.encodingVersion }

    public init(from reader: inout ByteReader, version: UInt8) throws(DecodeError) {
        try self.init(from: &reader)
    }

    /// The full encoding: tag, version, body.
    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        writer.writeUInt8(Self.encodingTag)
        writer.writeUInt8(Self.encodingVersion)
        self.encode(to: &writer)
        return writer.bytes
    }

    /// Decodes a full encoding and rejects trailing bytes.
    public init(encoded bytes: [UInt8], limits: DecodeLimits = .default) throws(DecodeError) {
        var reader = ByteReader(bytes, limits: limits)
        let version = try reader.readHeader(
            tag: Self.encodingTag, type: Self.encodingName, versions: Self.oldestReadableVersion...Self.encodingVersion)
        self = try Self(from: &reader, version: version)
        try reader.expectEnd()
    }
}

/// Type tags of the top-level encodings. Tags are never reused.
public enum EncodingTag {
    public static let gCounter: UInt8 = 0x01
    public static let latencySketch: UInt8 = 0x02
    public static let hyperLogLog: UInt8 = 0x03
    public static let aggregateMap: UInt8 = 0x04
}

extension String: BinaryCodable {
    public func encode(to writer: inout ByteWriter) {
        writer.writeString(self)
    }

    public init(from reader: inout ByteReader) throws(DecodeError) {
        self = try reader.readString("string")
    }
}
