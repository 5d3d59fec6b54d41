import Foundation
import Testing
import TallyReplica
@testable import TallySLO

/// Calendar-aligned windows: month ends, a leap day, and a time zone with daylight saving.
@Suite struct TimeWindowTests {
    /// Milliseconds of an ISO 8601 instant, e.g. "2028-02-29T12:00:00Z".
    static func at(_ text: String) -> Timestamp {
        let formatter = ISO8601DateFormatter()
        return Timestamp(millisecondsSinceEpoch: Int64(formatter.date(from: text)!.timeIntervalSince1970 * 1_000))
    }

    @Test func monthsEndWhereTheCalendarSaysLeapDaysIncluded() throws {
        let utc = try TimeWindow.calendar(.month, timeZone: "UTC", key: "timeWindow")
        let february = utc.bounds(at: Self.at("2028-02-29T23:59:59Z"))
        #expect(february.from == Self.at("2028-02-01T00:00:00Z") && february.to == Self.at("2028-03-01T00:00:00Z"))
        #expect(utc.length(at: Self.at("2028-02-10T00:00:00Z")) == .seconds(29 * 86_400))
        #expect(utc.length(at: Self.at("2027-02-10T00:00:00Z")) == .seconds(28 * 86_400))
        // The last millisecond of January is January's; the next is February's.
        #expect(utc.bounds(at: Self.at("2028-02-01T00:00:00Z") - .milliseconds(1)).from == Self.at("2028-01-01T00:00:00Z"))
        #expect(utc.bounds(at: Self.at("2028-02-01T00:00:00Z")).from == Self.at("2028-02-01T00:00:00Z"))
        let year = try TimeWindow.calendar(.year, timeZone: "UTC", key: "timeWindow")
        #expect(year.length(at: Self.at("2028-06-01T00:00:00Z")) == .seconds(366 * 86_400))
        let quarter = try TimeWindow.calendar(.quarter, timeZone: "UTC", key: "timeWindow")
        let q3 = quarter.bounds(at: Self.at("2026-08-15T00:00:00Z"))
        #expect(q3.from == Self.at("2026-07-01T00:00:00Z") && q3.to == Self.at("2026-10-01T00:00:00Z"))
    }

    /// Europe/Berlin: a month starts at local midnight (UTC+1 in winter, +2 in summer), and the
    /// day of the spring change has 23 hours, the autumn one 25.
    @Test func calendarWindowsFollowTheTimeZoneAcrossDaylightSaving() throws {
        let month = try TimeWindow.calendar(.month, timeZone: "Europe/Berlin", key: "timeWindow")
        let march = month.bounds(at: Self.at("2026-03-15T12:00:00Z"))
        #expect(march.from == Self.at("2026-02-28T23:00:00Z"))  // 1 March, 00:00 CET
        #expect(march.to == Self.at("2026-03-31T22:00:00Z"))  // 1 April, 00:00 CEST
        #expect(march.to - march.from == .seconds(31 * 86_400 - 3_600))
        let day = try TimeWindow.calendar(.day, timeZone: "Europe/Berlin", key: "timeWindow")
        #expect(day.length(at: Self.at("2026-03-29T12:00:00Z")) == .seconds(23 * 3_600))
        #expect(day.length(at: Self.at("2026-10-25T12:00:00Z")) == .seconds(25 * 3_600))
        let newYork = try TimeWindow.calendar(.day, timeZone: "America/New_York", key: "timeWindow")
        #expect(newYork.length(at: Self.at("2026-03-08T17:00:00Z")) == .seconds(23 * 3_600))
        // ISO weeks start on Monday.
        let week = try TimeWindow.calendar(.week, timeZone: "UTC", key: "timeWindow")
        #expect(week.bounds(at: Self.at("2026-12-03T10:00:00Z")).from == Self.at("2026-11-30T00:00:00Z"))
    }

    @Test func historyListsEveryPeriodOverlappingTheRange() throws {
        let month = try TimeWindow.calendar(.month, timeZone: "UTC", key: "timeWindow")
        let periods = month.periods(from: Self.at("2026-11-15T00:00:00Z"), to: Self.at("2027-02-02T00:00:00Z"))
        #expect(periods.map(\.from) == ["2026-11-01", "2026-12-01", "2027-01-01", "2027-02-01"]
            .map { Self.at($0 + "T00:00:00Z") })
        #expect(TimeWindow.rolling(.seconds(86_400)).periods(from: Self.at("2026-11-15T00:00:00Z"),
                                                             to: Self.at("2026-12-15T00:00:00Z")).isEmpty)
    }

    @Test func badWindowsAreRefusedNamingTheKey() {
        #expect(throws: SLOError.self) { try TimeWindow.calendar(.month, timeZone: "Mars/Olympus", key: "timeWindow") }
        #expect(throws: SLOError.self) { try TimeWindow.rolling(.seconds(400 * 86_400), key: "window") }
        #expect(throws: SLOError.self) { try TimeWindow.rolling(.zero, key: "window") }
        do {
            _ = try TimeWindow.calendar(.month, timeZone: "Mars/Olympus", key: "spec.timeWindow[0].calendar.timeZone")
        } catch {
            #expect(error.description.hasPrefix("spec.timeWindow[0].calendar.timeZone: 'Mars/Olympus'"), "\(error)")
        }
    }
}
