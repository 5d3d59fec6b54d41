import TallyAggregates

/// A point in time: milliseconds since the Unix epoch, UTC.
///
/// The replica never reads a clock: every input carries `now` as a `Timestamp`, so a run replays
/// from its inputs alone.
public struct Timestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var millisecondsSinceEpoch: Int64

    public init(millisecondsSinceEpoch: Int64) {
        self.millisecondsSinceEpoch = millisecondsSinceEpoch
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        lhs.millisecondsSinceEpoch < rhs.millisecondsSinceEpoch
    }

    public static func + (lhs: Timestamp, rhs: Duration) -> Timestamp {
        Timestamp(millisecondsSinceEpoch: lhs.millisecondsSinceEpoch &+ rhs.milliseconds)
    }

    public static func - (lhs: Timestamp, rhs: Duration) -> Timestamp {
        Timestamp(millisecondsSinceEpoch: lhs.millisecondsSinceEpoch &- rhs.milliseconds)
    }

    public static func - (lhs: Timestamp, rhs: Timestamp) -> Duration {
        .milliseconds(lhs.millisecondsSinceEpoch &- rhs.millisecondsSinceEpoch)
    }

    /// The start of the interval of `width` that holds this instant (floor, also before 1970).
    public func floor(toMultipleOf width: Duration) -> Timestamp {
        let step = width.milliseconds
        precondition(step > 0, "interval width \(width) must be positive")
        var start = self.millisecondsSinceEpoch / step * step
        if start > self.millisecondsSinceEpoch { start -= step }
        return Timestamp(millisecondsSinceEpoch: start)
    }

    public var description: String { "\(self.millisecondsSinceEpoch)ms" }

    /// The instants Tally accepts from outside: within ±10^15 ms of 1970 (about ±31,700 years).
    ///
    /// Every timestamp from a client, a peer, a file or the disk is checked against this where it
    /// enters (`checked(_:field:)`), so that the sums the replica forms (a bucket start plus a
    /// width plus a retention, a time plus an idempotency window, the span of a query) stay far
    /// inside `Int64` and never overflow. Retentions and windows are bounded likewise (`Limits`).
    public static let validMillis: ClosedRange<Int64> = -1_000_000_000_000_000...1_000_000_000_000_000

    /// Whether this instant is inside `validMillis`.
    public var isValid: Bool { Self.validMillis.contains(self.millisecondsSinceEpoch) }
}

extension ByteReader {
    /// A zigzag timestamp inside `Timestamp.validMillis`, or a typed error naming the field.
    public mutating func readTimestamp(_ field: String) throws(DecodeError) -> Timestamp {
        let millis = try self.readZigZag(field)
        guard Timestamp.validMillis.contains(millis) else {
            throw .invalidValue(field: field, value: "\(millis) ms is outside ±10^15 ms of 1970")
        }
        return Timestamp(millisecondsSinceEpoch: millis)
    }
}

extension Duration {
    /// Whole milliseconds, truncated toward zero.
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds &* 1_000 &+ attoseconds / 1_000_000_000_000_000
    }
}

extension Duration {
    /// The shortest of `Duration.parse`'s forms that says this duration exactly: `1y`, `2d`, `48m`,
    /// `300ms` (weeks are written in days). For messages that quote a limit.
    public var shortDescription: String {
        let millis = self.milliseconds
        for (unit, size) in [("y", Int64(31_536_000_000)), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000),
                             ("s", 1_000)] where millis >= size && millis % size == 0 {
            return "\(millis / size)\(unit)"
        }
        return "\(millis)ms"
    }

    /// `300ms`, `30s`, `5m`, `48h`, `90d`, `2w`, `5y` (a year is 365 days); nil for anything else,
    /// including a value that would overflow. Configs, queries and scenario files all use it.
    public static func parse(_ text: String) -> Duration? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000),
                                        ("w", 604_800_000), ("y", 31_536_000_000)]
        for (suffix, millis) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            guard !number.isEmpty, number.allSatisfy(\.isASCII), let value = Int64(number), value >= 0,
                value <= Int64.max / millis
            else { continue }
            return .milliseconds(value * millis)
        }
        return nil
    }
}
