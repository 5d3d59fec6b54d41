import Foundation
import Testing
import TallyReplica
@testable import TallySLO

/// The short-form spec file: what it accepts, and every refusal naming file, key and value.
@Suite struct SLOFileTests {
    @Test func aSpecFileParsesWithDefaultsAndOverrides() throws {
        let specs = try SLOFile.parse(yaml: """
            slos:
              - name: checkout-availability
                service: checkout
                objective: 99.9
              - name: pay-latency
                service: checkout
                operations: ["POST /pay"]
                objective: 99
                sli: latency <= 300ms
                window: {calendar: month, time_zone: Europe/Berlin}
                minimum_events: 20
                runbook: https://runbooks.example/pay
                alerts:
                  - {severity: page, burn_rate: 10, long: 2h, short: 10m}
            """, file: "slos.yaml")
        #expect(specs.count == 2)
        #expect(specs[0].indicator == .availability(badClasses: [.serverError]))
        #expect(specs[0].window == .rolling(.seconds(30 * 86_400)) && specs[0].rules == BurnRateRule.workbook)
        #expect(specs[0].objective.partsPerMillion == 999_000 && specs[0].minimumEvents == 100)
        #expect(specs[1].indicator == .latency(thresholdMicros: 300_000))
        #expect(specs[1].operations == ["POST /pay"] && specs[1].minimumEvents == 20)
        #expect(specs[1].window == .calendar(.month, timeZone: "Europe/Berlin"))
        #expect(specs[1].rules == [BurnRateRule(severity: .page, factor: BurnFactor(thousandths: 10_000),
                                                long: .seconds(7_200), short: .seconds(600))])
        let overlapping = try SLOFile.parse(yaml: """
            slos:
              - name: a
                service: s
                objective: 99
                maintenance:
                  - {from: "2026-12-05T03:00:00Z", to: "2026-12-05T05:00:00Z"}
                  - {from: 2026-12-05T02:00:00Z, to: 2026-12-05T04:00:00Z}
            """, file: "f")
        #expect(overlapping[0].maintenance.map { RFC3339.format($0.from) + "/" + RFC3339.format($0.to) }
            == ["2026-12-05T02:00:00.000Z/2026-12-05T05:00:00.000Z"])
    }

    @Test func everyRefusalNamesFileKeyAndValue() {
        func problem(_ body: String) -> String {
            do {
                _ = try SLOFile.parse(yaml: "slos:\n  - " + body.replacingOccurrences(of: "\n", with: "\n    "), file: "f.yaml")
                return "accepted"
            } catch {
                return error.description
            }
        }
        let base = "name: a\nservice: s\nobjective: 99.9"
        #expect(problem(base) == "accepted")
        #expect(problem(base + "\nsli: latency <= 300ms\nbad: [4xx]").contains("slos[0].bad"))
        #expect(problem("name: a\nservice: s\nobjective: 100") == "f.yaml: slos[0].objective: '100' must be below 100%")
        #expect(problem("name: a\nservice: s\nobjective: 0.999").contains("not ratios"))
        #expect(problem("name: Bad_Name\nservice: s\nobjective: 99").hasPrefix("f.yaml: slos[0].name: 'Bad_Name'"))
        #expect(problem(base + "\nsli: latency > 3s").hasPrefix("f.yaml: slos[0].sli: 'latency > 3s'"))
        #expect(problem(base + "\nwindow: 400d").hasPrefix("f.yaml: slos[0].window: '400d'"))
        #expect(problem(base + "\nwindow: {calendar: fortnight}").contains("slos[0].window.calendar"))
        #expect(problem(base + "\nwindow: {calendar: month, time_zone: Mars/Olympus}").contains("Mars/Olympus"))
        #expect(problem(base + "\nbad: [6xx]").contains("'6xx' is not a status class"))
        #expect(problem(base + "\nalerts: [{severity: page, burn_rate: 14.4, long: 5m, short: 1h}]")
            .contains("slos[0].alerts[0].short"))
        #expect(problem(base + "\nalerts: [{severity: sms, burn_rate: 2, long: 1h, short: 5m}]")
            .contains("slos[0].alerts[0].severity: 'sms'"))
        #expect(problem(base + "\nalerts: [{severity: page, burn_rate: 0, long: 1h, short: 5m}]")
            .contains("slos[0].alerts[0].burn_rate"))
        #expect(problem(base + "\ntarget: 99").contains("slos[0].target: 'target' is not a known key"))
        #expect(problem(base + "\nminimum_events: -1").contains("slos[0].minimum_events"))
        #expect(problem(base + "\nmaintenance: [{from: 2026-12-05T02:00:00Z, to: 2026-12-05T01:00:00Z}]")
            .contains("slos[0].maintenance[0].to"))
        #expect(problem(base + "\nmaintenance: [{from: yesterday, to: 2026-12-05T01:00:00Z}]")
            .contains("slos[0].maintenance[0].from: 'yesterday'"))
        #expect(problem(base + "\nmaintenance: [{from: 2026-12-05T02:00:00Z, to: 2026-12-05T04:00:00Z}]") == "accepted")
        #expect(problem(base + "\nruntime: \(String(repeating: "x", count: 500))").count < 300)
        // A second SLO of the same name, an alias, and no list at all.
        #expect(throws: SLOError.self) { try SLOFile.parse(yaml: "slos:\n  - {\(base.replacingOccurrences(of: "\n", with: ", "))}\n  - {\(base.replacingOccurrences(of: "\n", with: ", "))}", file: "f") }
        #expect(throws: SLOError.self) { try SLOFile.parse(yaml: "x: &a [1]\nslos: *a", file: "f") }
        #expect(throws: SLOError.self) { try SLOFile.parse(yaml: "slos: []", file: "f") }
        #expect(throws: SLOError.self) { try SLOFile.parse(yaml: ": : :", file: "f") }
    }

    /// The specs shipped in deploy/slo parse.
    @Test func theShippedSpecsParse() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy/slo")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".yaml") }
        #expect(!files.isEmpty)
        for file in files { #expect(try !SLOFile.load(path: directory.appendingPathComponent(file).path).isEmpty) }
    }
}
