import Foundation
import Testing
import TallyReplica
@testable import TallySLO

/// Evaluations into Alertmanager alerts: sent when they start, again every resend interval with
/// the same start, once more when they resolve; the same labels from every region.
@Suite struct AlertTests {
    static let now = EvaluationTests.now

    @Test func aBurstFiresResendsAndResolves() throws {
        let burning = EvaluationTests.replica(minutes: 3 * 1_440, perMinute: 40, burstMinutes: 30, burstErrorPercent: 5)
        let calm = EvaluationTests.replica(minutes: 3 * 1_440, perMinute: 40, burstMinutes: 0, burstErrorPercent: 0)
        var spec = EvaluationTests.availability
        spec.runbook = "https://runbooks.example/checkout"
        let firing = try spec.evaluate(on: burning, now: Self.now)
        let quiet = try spec.evaluate(on: calm, now: Self.now)
        var tracker = AlertTracker(resendEvery: .seconds(60))
        let first = tracker.update([firing], view: View(), now: Self.now)
        #expect(first.count == 1)
        let alert = try #require(first.first)
        #expect(alert.labels == ["alertname": "TallySLOBurnRate", "slo": "checkout", "service": "checkout",
                                 "severity": "page", "long_window": "1h", "short_window": "5m"])
        #expect(alert.startsAt == Self.now && alert.endsAt == Self.now + .seconds(240) && !alert.resolved)
        #expect(alert.annotations["runbook_url"] == "https://runbooks.example/checkout")
        #expect(alert.annotations["view"] == "complete")
        #expect(alert.annotations["summary"]?.contains("threshold 14.4x") == true)
        // Within the resend interval nothing is sent; after it, the same alert with its start.
        #expect(tracker.update([firing], view: View(), now: Self.now + .seconds(30)).isEmpty)
        let again = tracker.update([firing], view: View(), now: Self.now + .seconds(61))
        #expect(again.map(\.fingerprint) == [alert.fingerprint])
        #expect(again.first?.startsAt == Self.now && again.first?.endsAt == Self.now + .seconds(301))
        // It stops: resolved once, then nothing (a lost resolution lapses at endsAt; see AlertTracker).
        let resolved = tracker.update([quiet], view: View(), now: Self.now + .seconds(90))
        #expect(resolved.count == 1 && resolved[0].resolved && resolved[0].endsAt == Self.now + .seconds(90))
        #expect(resolved[0].startsAt == Self.now)
        #expect(tracker.update([quiet], view: View(), now: Self.now + .seconds(200)).isEmpty)
        #expect(tracker.firingNow.isEmpty)
    }

    @Test func aPartialViewSaysSoAndTheBodyIsAlertmanagersJSON() throws {
        let burning = EvaluationTests.replica(minutes: 3 * 1_440, perMinute: 40, burstMinutes: 30, burstErrorPercent: 5)
        let status = try EvaluationTests.availability.evaluate(on: burning, now: Self.now)
        var tracker = AlertTracker()
        let view = View(stale: [(region: "ap-south", behind: .seconds(95))])
        let alerts = tracker.update([status], view: view, now: Self.now)
        #expect(alerts.first?.annotations["view"] == "partial: ap-south 1m35s behind")
        #expect(alerts.first?.annotations["description"]?.contains("partial") == true)
        let body = Alert.alertmanagerBody(alerts, generatorURL: "http://us-east:7070/v1/slo/checkout")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [[String: Any]])
        #expect(json.count == alerts.count)
        #expect((json[0]["labels"] as? [String: String])?["alertname"] == "TallySLOBurnRate")
        #expect(json[0]["startsAt"] as? String == RFC3339.format(Self.now))
        #expect(json[0]["generatorURL"] as? String == "http://us-east:7070/v1/slo/checkout")
        // The same condition seen from another region has the same labels: Alertmanager keeps one.
        var other = AlertTracker()
        #expect(other.update([status], view: View(), now: Self.now + .seconds(3)).map(\.fingerprint)
            == alerts.map(\.fingerprint))
    }

    @Test func aBudgetGoneIsItsOwnAlert() throws {
        // A day at 1% errors against 99.9% over a 1-day window: ten times the budget.
        let replica = EvaluationTests.replica(minutes: 1_440, perMinute: 20, burstMinutes: 1_440, burstErrorPercent: 1)
        var spec = EvaluationTests.availability
        spec.window = .rolling(.seconds(86_400))
        let status = try spec.evaluate(on: replica, now: Self.now)
        #expect(status.budget.isExhausted)
        var tracker = AlertTracker()
        let alerts = tracker.update([status], view: View(), now: Self.now)
        #expect(alerts.contains { $0.labels["alertname"] == "TallySLOBudgetExhausted" && $0.labels["severity"] == "ticket" })
    }
}
