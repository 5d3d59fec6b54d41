/// The time resolutions every series is kept at. An event updates all of them at ingest, so no
/// roll-up job exists and every replica computes the same buckets.
public enum Resolution: Int, CaseIterable, Comparable, Sendable, CustomStringConvertible {
    case minute = 0
    case hour = 1
    case day = 2

    /// The width of one time bucket.
    public var width: Duration {
        switch self {
        case .minute: return .seconds(60)
        case .hour: return .seconds(3_600)
        case .day: return .seconds(86_400)
        }
    }

    public static func < (lhs: Resolution, rhs: Resolution) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        switch self {
        case .minute: return "1m"
        case .hour: return "1h"
        case .day: return "1d"
        }
    }
}

/// How long the time buckets of each resolution are kept.
public struct Retention: Sendable, Equatable {
    public var minute: Duration
    public var hour: Duration
    public var day: Duration

    /// 48 hours of minutes, 90 days of hours, 5 years of days.
    public init(minute: Duration = .seconds(48 * 3_600), hour: Duration = .seconds(90 * 86_400),
                day: Duration = .seconds(5 * 365 * 86_400))
    {
        self.minute = minute
        self.hour = hour
        self.day = day
    }

    /// The longest retention a config may give (100 years): far inside the arithmetic's bounds.
    public static let longest: Duration = .seconds(100 * 365 * 86_400)

    public subscript(resolution: Resolution) -> Duration {
        switch resolution {
        case .minute: return self.minute
        case .hour: return self.hour
        case .day: return self.day
        }
    }

    /// Whether the bucket of `resolution` starting at `start` is still kept at `now`: its end is
    /// within the retention.
    public func keeps(_ resolution: Resolution, bucketStart start: Timestamp, now: Timestamp) -> Bool {
        start + resolution.width + self[resolution] > now
    }
}
