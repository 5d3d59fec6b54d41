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
}

extension Duration {
    /// Whole milliseconds, truncated toward zero.
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds &* 1_000 &+ attoseconds / 1_000_000_000_000_000
    }
}

extension Duration {
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
