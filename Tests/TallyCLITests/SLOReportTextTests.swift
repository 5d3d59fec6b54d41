import Foundation
import Testing
@testable import tally

/// The report's text from the node's JSON, parsed as `tally slo report` parses it: a window with
/// no events says so instead of showing an SLI of 100% ("0 good of 0").
@Suite struct SLOReportTextTests {
    static func slo(good: Int, bad: Int) throws -> [String: Any] {
        let total = good + bad
        let json = """
            {"name": "checkout-availability", "objective": "99.9%", "indicator": "availability", "service": "checkout",
             "window": "30d", "window_from": "2026-11-01T00:00:00Z", "evaluated_at": "2026-12-01T00:00:00Z",
             "sli": {"value": \(total == 0 ? 1.0 : Double(good) / Double(total)), "good": \(good), "bad": \(bad), "total": \(total)},
             "budget": {"spent": 0.0, "remaining": 1.0, "remaining_minutes": 43.2, "total_minutes": 43.2, "exhausted": false},
             "burn_rates": {}, "alerts": []}
            """
        return try #require(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }

    @Test func aWindowWithoutEventsSaysSo() throws {
        let text = SLOReportText.text([try Self.slo(good: 0, bad: 0)], region: "eu")
        #expect(text.contains("SLI: no events in the window"), "\(text)")
        let sli = try #require(text.split(separator: "\n").first { $0.contains("SLI") })
        #expect(!sli.contains("100.0%") && !sli.contains("0 good of 0"), "\(sli)")
        let markdown = SLOReportText.markdown([try Self.slo(good: 0, bad: 0)], region: "eu")
        #expect(markdown.contains("| no events |"), "\(markdown)")
    }

    @Test func aWindowWithEventsShowsItsCounts() throws {
        let text = SLOReportText.text([try Self.slo(good: 999, bad: 1)], region: "eu")
        #expect(text.contains("SLI 99.9%: 999 good of 1000, 1 bad"), "\(text)")
        #expect(!text.contains("no events"), "\(text)")
    }
}
