/// Why bytes could not be decoded into an aggregate.
///
/// Every decoder in this module reports bad input with one of these cases and never traps:
/// the bytes may come from a peer, a disk or an attacker.
public enum DecodeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The input ended `needed` bytes too early while reading `field`.
    case truncated(field: String, offset: Int)
    /// The type tag names a different aggregate than the one being decoded.
    case unexpectedTag(expected: UInt8, found: UInt8)
    /// The encoding version is newer (or older) than this build understands.
    case unsupportedVersion(type: String, version: UInt8)
    /// A field holds a value outside its allowed range.
    case invalidValue(field: String, value: String)
    /// A count or size exceeds the limit the decoder was given.
    case limitExceeded(field: String, limit: Int, found: UInt64)
    /// The bytes decode to a valid value but are not its canonical encoding
    /// (unsorted or duplicate keys, zero entries, padding, redundant bytes).
    case nonCanonical(field: String)
    /// Bytes remain after a complete value.
    case trailingBytes(count: Int)

    public var description: String {
        switch self {
        case .truncated(let field, let offset):
            return "input ends at byte \(offset) while reading \(field)"
        case .unexpectedTag(let expected, let found):
            return "type tag \(found) found where \(expected) was expected"
        case .unsupportedVersion(let type, let version):
            return "\(type) encoding version \(version) is not supported by this build"
        case .invalidValue(let field, let value):
            return "\(field) has invalid value \(value)"
        case .limitExceeded(let field, let limit, let found):
            return "\(field) is \(found), over the limit of \(limit)"
        case .nonCanonical(let field):
            return "\(field) is not in canonical form"
        case .trailingBytes(let count):
            return "\(count) bytes follow the end of the value"
        }
    }
}

/// Size limits a decoder enforces before it allocates anything.
///
/// The defaults fit every aggregate Tally produces with its default configuration, with headroom.
public struct DecodeLimits: Sendable, Equatable {
    /// The largest count one origin may hold in one counter slot or histogram: 2^48, about
    /// 2.8 x 10^14 events, more than one region counts into one bucket in its lifetime. Bounding
    /// it keeps sums over every origin of a value (at most `originsMax`, 2^12) inside 64 bits.
    public static let countMax: UInt64 = 1 << 48

    /// Most origin slots in one counter or sketch.
    public var originsMax: Int
    /// Most buckets in one origin's histogram.
    public var bucketsMax: Int
    /// Most entries in one keyed map.
    public var mapEntriesMax: Int
    /// Longest string (in UTF-8 bytes).
    public var stringBytesMax: Int

    public init(originsMax: Int = 4_096, bucketsMax: Int = 16_384, mapEntriesMax: Int = 1 << 20,
                stringBytesMax: Int = 4_096) {
        self.originsMax = originsMax
        self.bucketsMax = bucketsMax
        self.mapEntriesMax = mapEntriesMax
        self.stringBytesMax = stringBytesMax
    }

    public static let `default` = DecodeLimits()
}
