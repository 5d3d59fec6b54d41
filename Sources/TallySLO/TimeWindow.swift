import Foundation
import TallyReplica

/// The period an SLO is measured over: the last N days (rolling), or the current calendar day,
/// week, month, quarter or year in a time zone (calendar-aligned: the budget starts afresh at
/// midnight of the first day, local time, daylight saving included).
public enum TimeWindow: Sendable, Hashable, CustomStringConvertible {
    case rolling(Duration)
    case calendar(CalendarUnit, timeZone: String)

    public enum CalendarUnit: String, Sendable, Hashable, CaseIterable {
        case day, week, month, quarter, year
    }

    /// A rolling window of at most a year (longer ones outlive every retention).
    public static func rolling(_ duration: Duration, key: String) throws(SLOError) -> TimeWindow {
        guard duration > .zero, duration <= .seconds(366 * 86_400) else {
            throw SLOError(key: key, value: duration.shortDescription, message: "must be above 0 and at most 366d")
        }
        return .rolling(duration)
    }

    /// A calendar window in the time zone named (an IANA name such as Europe/Berlin, or UTC).
    public static func calendar(_ unit: CalendarUnit, timeZone: String, key: String) throws(SLOError) -> TimeWindow {
        guard TimeZone(identifier: timeZone) != nil else {
            throw SLOError(key: key, value: timeZone, message: "is not a time zone this machine knows (an IANA name such as Europe/Berlin)")
        }
        return .calendar(unit, timeZone: timeZone)
    }

    /// The window's bounds for an evaluation at `now`: [from, to). A rolling window ends at now; a
    /// calendar one is the period containing now (its end may be in the future).
    public func bounds(at now: Timestamp) -> (from: Timestamp, to: Timestamp) {
        switch self {
        case .rolling(let duration):
            return (now - duration, now)
        case .calendar(let unit, let zone):
            return Self.period(unit, zone: zone, containing: now)
        }
    }

    /// The window's length as of `now` (a calendar month has 28 to 31 days, and a day 23 to 25
    /// hours around a daylight-saving change): what a burn rate of 1 spends the budget over.
    public func length(at now: Timestamp) -> Duration {
        let (from, to) = self.bounds(at: now)
        return to - from
    }

    /// Every calendar period of the window's unit that overlaps [from, to), oldest first: the
    /// compliance history ("which months did we blow it?"). A rolling window has no periods.
    public func periods(from: Timestamp, to: Timestamp) -> [(from: Timestamp, to: Timestamp)] {
        guard case .calendar(let unit, let zone) = self, from < to else { return [] }
        var periods: [(from: Timestamp, to: Timestamp)] = []
        var cursor = from
        while cursor < to && periods.count < 1_000 {
            let period = Self.period(unit, zone: zone, containing: cursor)
            periods.append(period)
            cursor = period.to
        }
        return periods
    }

    static func period(_ unit: CalendarUnit, zone: String, containing now: Timestamp)
        -> (from: Timestamp, to: Timestamp)
    {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: zone) ?? TimeZone(identifier: "UTC")!  // checked when made
        calendar.firstWeekday = 2  // ISO 8601: weeks start on Monday
        calendar.minimumDaysInFirstWeek = 4
        let date = Date(timeIntervalSince1970: Double(now.millisecondsSinceEpoch) / 1_000)
        let component: Calendar.Component
        switch unit {
        case .day: component = .day
        case .week: component = .weekOfYear
        case .month: component = .month
        case .quarter: component = .quarter
        case .year: component = .year
        }
        let start: Date
        let end: Date
        if unit == .quarter {
            // Foundation's quarter intervals are unreliable on Linux: from the month, by hand.
            let month = calendar.component(.month, from: date)
            let year = calendar.component(.year, from: date)
            let first = ((month - 1) / 3) * 3 + 1
            start = calendar.date(from: DateComponents(year: year, month: first, day: 1))!
            end = calendar.date(byAdding: .month, value: 3, to: start)!
        } else if let interval = calendar.dateInterval(of: component, for: date) {
            start = interval.start
            end = interval.end
        } else {
            start = date
            end = date.addingTimeInterval(86_400)
        }
        func stamp(_ date: Date) -> Timestamp {
            Timestamp(millisecondsSinceEpoch: Int64((date.timeIntervalSince1970 * 1_000).rounded()))
        }
        return (stamp(start), stamp(end))
    }

    public var description: String {
        switch self {
        case .rolling(let duration): "rolling \(duration.shortDescription)"
        case .calendar(let unit, let zone): "calendar \(unit.rawValue) (\(zone))"
        }
    }
}
