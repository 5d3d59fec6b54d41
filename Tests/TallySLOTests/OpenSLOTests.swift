import Foundation
import Testing
import TallyReplica
@testable import TallySLO

/// OpenSLO v1 files: what Tally evaluates, read into the same specs as the short form; what it
/// cannot, refused with the key named.
@Suite struct OpenSLOTests {
    static var example: String {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy/slo/checkout-openslo.yaml").path
        return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    @Test func theShippedExampleReadsAsTheShortFormWould() throws {
        let specs = try SLOFile.parse(yaml: Self.example, file: "checkout-openslo.yaml")
        #expect(specs.map(\.name) == ["checkout-availability-monthly", "checkout-pay-latency-slices"])
        let monthly = specs[0]
        #expect(monthly.service == "checkout" && monthly.operations == nil)
        #expect(monthly.indicator == .availability(badClasses: [.serverError]))
        #expect(monthly.objective.partsPerMillion == 999_000)
        #expect(monthly.window == .calendar(.month, timeZone: "Europe/Berlin"))
        #expect(monthly.budgeting == .occurrences)
        #expect(monthly.rules == [BurnRateRule(severity: .page, factor: BurnFactor(thousandths: 14_400), long: .seconds(3_600),
                                               short: .seconds(300), alertAfter: .seconds(120), notify: ["checkout-oncall"])])
        let slices = specs[1]
        #expect(slices.operations == ["POST /pay"] && slices.indicator == .latency(thresholdMicros: 300_000))
        #expect(slices.window == .rolling(.seconds(28 * 86_400)))
        #expect(slices.budgeting == .timeslices(slice: .seconds(300), target: try Objective(percent: "95")))
        #expect(slices.rules == BurnRateRule.workbook)  // no policy: the Workbook's
    }

    static let minimal = """
        apiVersion: openslo/v1
        kind: SLO
        metadata: {name: s}
        spec:
          service: checkout
          indicator:
            metadata: {name: i}
            spec:
              ratioMetric:
                good: {metricSource: {type: Tally, spec: {status: [2xx, 3xx, 4xx]}}}
                total: {metricSource: {type: Tally}}
          timeWindow: [{duration: 7d, isRolling: true}]
          budgetingMethod: Occurrences
          objectives: [{targetPercent: 99.5}]
        """

    @Test func goodStatusesMeanTheOthersAreBad() throws {
        let spec = try #require(try SLOFile.parse(yaml: Self.minimal, file: "m.yaml").first)
        #expect(spec.indicator == .availability(badClasses: [.serverError, .informational]))
        #expect(spec.objective.partsPerMillion == 995_000 && spec.window == .rolling(.seconds(7 * 86_400)))
    }

    /// Each replacement in the minimal file, and the key its refusal must name.
    @Test(arguments: [
        ("type: Tally, spec: {status: [2xx, 3xx, 4xx]}", "type: Prometheus, spec: {query: up}",
         "metricSource.type"),
        ("budgetingMethod: Occurrences", "budgetingMethod: RatioTimeslices", "spec.budgetingMethod"),
        ("objectives: [{targetPercent: 99.5}]", "objectives: [{target: 0.99}, {target: 0.999}]", "spec.objectives"),
        ("objectives: [{targetPercent: 99.5}]", "objectives: [{target: 0.99, indicatorRef: x}]", "objectives[0].indicatorRef"),
        ("objectives: [{targetPercent: 99.5}]", "objectives: [{target: 1.5}]", "objectives[0].target"),
        ("timeWindow: [{duration: 7d, isRolling: true}]", "timeWindow: [{duration: 1M, isRolling: true}]",
         "timeWindow[0].duration"),
        ("timeWindow: [{duration: 7d, isRolling: true}]",
         "timeWindow: [{duration: 1M, calendar: {startTime: \"2022-01-01 12:00:00\", timeZone: UTC}}]",
         "timeWindow[0].calendar.startTime"),
        ("timeWindow: [{duration: 7d, isRolling: true}]",
         "timeWindow: [{duration: 1M, calendar: {startTime: \"2022-01-01 00:00:00\", timeZone: Mars/Olympus}}]",
         "timeWindow[0].calendar.timeZone"),
        ("timeWindow: [{duration: 7d, isRolling: true}]", "timeWindow: [{duration: 2M, calendar: {timeZone: UTC}}]",
         "timeWindow[0].duration"),
        ("good: {metricSource: {type: Tally, spec: {status: [2xx, 3xx, 4xx]}}}", "raw: {metricSource: {type: Tally}}",
         "ratioMetric.raw"),
        ("good: {metricSource: {type: Tally, spec: {status: [2xx, 3xx, 4xx]}}}",
         "good: {metricSource: {metricSourceRef: prom, type: Tally}}", "metricSourceRef"),
        ("good: {metricSource: {type: Tally, spec: {status: [2xx, 3xx, 4xx]}}}",
         "good: {metricSource: {type: Tally, spec: {service: other, status: [2xx]}}}", "good.metricSource.spec"),
        ("kind: SLO", "kind: DataSource", "document[0].kind"),
        ("apiVersion: openslo/v1", "apiVersion: openslo/v2alpha", "document[0].apiVersion"),
        ("budgetingMethod: Occurrences", "budgetingMethod: Occurrences\n  extra: 1", "spec.extra"),
        ("objectives: [{targetPercent: 99.5}]",
         "objectives: [{targetPercent: 99.5}]\n  alertPolicies: [{kind: AlertPolicy, metadata: {name: p}, spec: "
            + "{conditions: [{kind: AlertCondition, metadata: {name: c}, spec: {severity: page, condition: "
            + "{kind: burnrate, op: lte, threshold: 2, lookbackWindow: 1h}}}]}}]", "condition.op"),
        ("objectives: [{targetPercent: 99.5}]",
         "objectives: [{targetPercent: 99.5}]\n  alertPolicies: [{alertPolicyRef: missing}]", "alertPolicyRef"),
        ("objectives: [{targetPercent: 99.5}]",
         "objectives: [{targetPercent: 99.5}]\n  alertPolicies: [{kind: AlertPolicy, metadata: {name: p}, spec: "
            + "{alertWhenNoData: true, conditions: []}}]", "alertWhenNoData"),
        ("objectives: [{targetPercent: 99.5}]",
         "objectives: [{targetPercent: 99.5}]\n  alertPolicies: [{kind: AlertPolicy, metadata: {name: p}, spec: "
            + "{conditions: [{kind: AlertCondition, metadata: {name: c}, spec: {severity: sev1, condition: "
            + "{kind: burnrate, op: gte, threshold: 2, lookbackWindow: 1h}}}]}}]", "severity"),
    ])
    func whatTallyCannotEvaluateIsRefusedByName(original: String, replacement: String, key: String) throws {
        let yaml = Self.minimal.replacingOccurrences(of: original, with: replacement)
        #expect(yaml != Self.minimal, "the replacement did not apply")
        do {
            let specs = try SLOFile.parse(yaml: yaml, file: "o.yaml")
            Issue.record("accepted: \(specs)")
        } catch {
            #expect(error.key.hasSuffix(key) || error.key.contains(key), "\(error)")
            #expect(error.file == "o.yaml")
        }
    }

    /// An inline policy becomes a burn-rate rule with the Workbook's short window (a twelfth).
    @Test func anInlinePolicyIsOneRuleWithATwelfthShortWindow() throws {
        let yaml = Self.minimal.replacingOccurrences(of: "objectives: [{targetPercent: 99.5}]", with: """
            objectives: [{targetPercent: 99.5}]
              alertPolicies:
                - kind: AlertPolicy
                  metadata: {name: slow}
                  spec:
                    conditions:
                      - kind: AlertCondition
                        metadata: {name: slow-burn}
                        spec: {severity: ticket, condition: {kind: burnrate, op: gt, threshold: 3, lookbackWindow: 6h}}
                    notificationTargets: [{kind: AlertNotificationTarget, metadata: {name: team-mail}, spec: {target: email}}]
            """)
        let spec = try #require(try SLOFile.parse(yaml: yaml, file: "p.yaml").first)
        #expect(spec.rules == [BurnRateRule(severity: .ticket, factor: BurnFactor(thousandths: 3_000),
                                            long: .seconds(6 * 3_600), short: .seconds(1_800), notify: ["team-mail"])])
    }

    /// alertAfter holds an alert back until the rule has burned that long; its start is when the
    /// burning began.
    @Test func alertAfterHoldsTheAlertUntilTheBurnLasted() throws {
        let replica = EvaluationTests.replica(minutes: 3 * 1_440, perMinute: 40, burstMinutes: 30, burstErrorPercent: 5)
        var spec = EvaluationTests.availability
        spec.rules = [BurnRateRule(severity: .page, factor: BurnFactor(thousandths: 14_400), long: .seconds(3_600),
                                   short: .seconds(300), alertAfter: .seconds(120))]
        let status = try spec.evaluate(on: replica, now: EvaluationTests.now)
        var tracker = AlertTracker()
        let now = EvaluationTests.now
        func pages(_ alerts: [Alert]) -> [Alert] { alerts.filter { $0.labels["alertname"] == "TallySLOBurnRate" } }
        #expect(pages(tracker.update([status], view: View(), now: now)).isEmpty)
        #expect(pages(tracker.update([status], view: View(), now: now + .seconds(60))).isEmpty)
        let sent = pages(tracker.update([status], view: View(), now: now + .seconds(120)))
        #expect(sent.count == 1 && sent.first?.startsAt == now)
    }
}
