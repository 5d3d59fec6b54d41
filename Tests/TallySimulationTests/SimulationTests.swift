import Foundation
import Testing
import TallyReplica
@testable import TallySimulation

@Suite struct SimulationTests {
    static func scenario(_ name: String) throws -> Scenario {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("simulations/\(name).yaml").path
        return try Scenario.load(path: path)
    }

    /// A short partition-and-heal with crashes, so that the tests run fast in debug builds.
    static let quick = """
        name: quick
        regions: [us-east, eu-west, ap-south]
        duration: 40s
        quiet: 30s
        checkpoint_interval: 3s
        traffic: {events_per_second: 300, batch: 30}
        network: {loss: 0.05, duplication: 0.05, jitter: 1.0}
        faults:
          - at: 5s
            partition: [[us-east], [eu-west, ap-south]]
          - at: 12s
            crash: eu-west
          - at: 18s
            restart: eu-west
          - at: 25s
            heal: true
        """

    @Test(arguments: 1...6 as ClosedRange<UInt64>)
    func quickScenarioPassesEveryChecker(seed: UInt64) throws {
        let result = Simulation(scenario: try Scenario.parse(yaml: Self.quick, file: "quick"), seed: seed).run()
        for check in result.checks { #expect(check.passed, "seed \(seed): \(check.name): \(check.detail)") }
        #expect(result.eventsAcknowledged > 5_000)
        // Replication's whole byte cost, faults included, against each delta crossing once.
        let ratio = try #require(result.bytesPerDelta)
        #expect(ratio >= 1 && ratio <= 2, "seed \(seed): \(ratio) bytes sent per delta byte per other region")
    }

    @Test func sameSeedSameTrace() throws {
        let scenario = try Scenario.parse(yaml: Self.quick, file: "quick")
        let first = Simulation(scenario: scenario, seed: 42).run()
        let second = Simulation(scenario: scenario, seed: 42).run()
        let other = Simulation(scenario: scenario, seed: 43).run()
        #expect(first.traceHash == second.traceHash && first.bytesSent == second.bytesSent)
        #expect(first.traceHash != other.traceHash)
    }

    /// Counters merged by adding instead of joining: the checkers must notice within 100 seeds.
    @Test func brokenMergeIsCaught() throws {
        let scenario = try Scenario.parse(yaml: Self.quick, file: "quick")
        var caughtAt: UInt64?
        for seed in 1...100 as ClosedRange<UInt64> {
            var simulation = Simulation(scenario: scenario, seed: seed)
            simulation.brokenMerge = true
            if !simulation.run().passed {
                caughtAt = seed
                break
            }
        }
        #expect(caughtAt != nil, "a merge that sums passed 100 seeds")
    }

    /// A region backed up under traffic and restored later (simulations/restore-from-backup.yaml,
    /// short): every acknowledged event counted once. A restore that puts the file back as it was
    /// (its log replayed, its old origin continued from smaller slots) must be caught.
    static let restore = """
        name: restore
        regions: [us-east, eu-west, ap-south]
        duration: 40s
        quiet: 30s
        checkpoint_interval: 3s
        traffic: {events_per_second: 300, batch: 30}
        faults:
          - {at: 8s, backup: eu-west}
          - {at: 20s, stop_traffic: eu-west}
          - {at: 30s, restore: eu-west}
          - {at: 32s, start_traffic: eu-west}
        """

    @Test func aRestoredRegionCountsEveryEventOnceAndABrokenRestoreIsCaught() throws {
        let scenario = try Scenario.parse(yaml: Self.restore, file: "restore")
        var caughtAt: UInt64?
        for seed in 1...5 as ClosedRange<UInt64> {
            let result = Simulation(scenario: scenario, seed: seed).run()
            #expect(result.passed, "seed \(seed): \(result.checks.filter { !$0.passed }.map(\.detail))")
            var broken = Simulation(scenario: scenario, seed: seed)
            broken.brokenRestore = true
            if caughtAt == nil && !broken.run().passed { caughtAt = seed }
        }
        #expect(caughtAt != nil, "a restore of the file as it was passed 5 seeds")
        #expect(throws: (any Error).self) {
            try Scenario.parse(yaml: Self.restore.replacingOccurrences(of: "backup: eu-west", with: "backup: us-east"),
                               file: "restore")
        }
    }

    /// Every region starts on the release before wire version 2 and is upgraded, one cut off,
    /// one rolled back: short, for debug builds (simulations/rolling-upgrade.yaml is the long one).
    static let upgrade = """
        name: upgrade
        regions: [us-east, eu-west, ap-south]
        duration: 40s
        quiet: 30s
        checkpoint_interval: 3s
        traffic: {events_per_second: 300, batch: 30}
        node: {start_protocol_max: 2}
        faults:
          - at: 5s
            upgrade: us-east
          - at: 10s
            isolate: eu-west
          - at: 15s
            upgrade: eu-west
          - at: 20s
            heal: true
          - at: 22s
            downgrade: us-east
          - at: 28s
            upgrade: us-east
          - at: 34s
            upgrade: ap-south
        """

    @Test(arguments: 1...3 as ClosedRange<UInt64>)
    func aRollingUpgradeKeepsEveryLinkAtAVersionBothEndsSpeak(seed: UInt64) throws {
        let result = Simulation(scenario: try Scenario.parse(yaml: Self.upgrade, file: "upgrade"), seed: seed).run()
        for check in result.checks { #expect(check.passed, "seed \(seed): \(check.name): \(check.detail)") }
        // Both versions flowed: old links at 1 until the last upgrade, new ones at this build's.
        let newest = ReplicationMessage.protocolVersions.upperBound
        #expect(result.messagesByWire[1, default: 0] > 100 && result.messagesByWire[newest, default: 0] > 100,
                "\(result.messagesByWire)")
    }

    /// A shell that ignores the handshake (tells a new release every peer speaks its newest
    /// protocol): the protocol checker must notice, and the older releases refuse what they got.
    @Test func aHandshakeIgnoredIsCaught() throws {
        var simulation = Simulation(scenario: try Scenario.parse(yaml: Self.upgrade, file: "upgrade"), seed: 1)
        simulation.brokenHandshake = true
        let result = simulation.run()
        let protocolCheck = try #require(result.checks.first { $0.name == "protocol" })
        #expect(!protocolCheck.passed)
        #expect(protocolCheck.detail.contains("wire version"), "\(protocolCheck.detail)")
    }

    /// A short error burst in one region, for debug builds (`simulations/error-burst.yaml` is the
    /// full one): the page fires once at the simulated Alertmanager, whichever regions send it,
    /// and resolves once the burst is over.
    static let burst = """
        name: burst
        regions: [us-east, eu-west, ap-south]
        duration: 30m
        quiet: 30s
        gossip_interval: 5s
        node: {global_reads_every: never}
        traffic: {events_per_second: 15, batch: 15, services: 1, operations: 2, error_rate: 0}
        slos:
          - {name: svc-0-availability, service: svc-0, objective: 99.9, window: 30d, minimum_events: 500}
        faults:
          - at: 5m
            errors: {region: eu-west, rate: 0.6}
            for: 8m
        expect_alerts:
          - {slo: svc-0-availability, severity: page, long_window: 1h, fires_after: 5m, fires_before: 8m, resolved_before: 20m, partial: false}
        """

    @Test(arguments: 1...2 as ClosedRange<UInt64>)
    func anErrorBurstPagesOnceAndResolves(seed: UInt64) throws {
        let result = Simulation(scenario: try Scenario.parse(yaml: Self.burst, file: "burst"), seed: seed).run()
        for check in result.checks { #expect(check.passed, "seed \(seed): \(check.name): \(check.detail)") }
        let page = result.timeline.filter { $0.contains("TallySLOBurnRate svc-0-availability page 1h/5m") }
        #expect(page.count == 2 && page[0].contains("firing") && page[1].contains("resolved"), "\(result.timeline)")
    }

    /// The alerts checker is not a formality: the same run against an expectation that the page
    /// never fires, and one that it says the view was partial, fails both.
    @Test func anAlertThatDiffersFromTheExpectationIsCaught() throws {
        var scenario = try Scenario.parse(yaml: Self.burst, file: "burst")
        scenario.expectedAlerts[0].never = true
        scenario.expectedAlerts.append(scenario.expectedAlerts[0])
        scenario.expectedAlerts[1].never = false
        scenario.expectedAlerts[1].partial = true
        let result = Simulation(scenario: scenario, seed: 1).run()
        let alerts = try #require(result.checks.first { $0.name == "alerts" })
        #expect(!alerts.passed)
        #expect(alerts.detail.contains("expected never"), "\(alerts.detail)")
    }

    @Test func everyScenarioFileParses() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("simulations")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".yaml") }
        #expect(files.count >= 10)
        for file in files {
            #expect(throws: Never.self) { try Scenario.load(path: directory.appendingPathComponent(file).path) }
        }
    }

    @Test func badScenariosNameTheKey() {
        func problem(_ yaml: String) -> String {
            do {
                _ = try Scenario.parse(yaml: yaml, file: "bad.yaml")
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        #expect(problem("regions: [a]\nduration: 1s").contains("regions"))
        #expect(problem("regions: [a, b]\nduration: 1s\nfaults:\n  - at: 0s\n    crash: c").contains("faults[0].crash"))
        #expect(problem("regions: [a, b]\nduration: 10x").contains("duration"))
        #expect(problem("regions: [a, b]\nduration: 9999999999999999d").contains("duration"))  // would overflow
        #expect(problem("regions: [a, b]\nduration: 1s\nspeed: 3").contains("speed"))
        #expect(problem("regions: [a, b]\nduration: 1s\nfaults:\n  - at: 0s\n    explode: a").contains("explode"))
        #expect(problem("regions: [a, b]\nduration: 1s\nslos: [{name: x, service: s, objective: 120}]")
            .contains("slos[0].objective"))
        #expect(problem("regions: [a, b]\nduration: 1s\nslos: [{name: x, service: s, objective: 99}]\n"
            + "expect_alerts: [{slo: y}]").contains("expect_alerts[0].slo"))
        #expect(problem("regions: [a, b]\nduration: 1s\nfaults:\n  - at: 0s\n    errors: {region: a, rate: 2}\n    for: 1s")
            .contains("faults[0].errors.rate"))
        // A fraction where a count is meant is refused, not truncated; a fractional rate is fine.
        #expect(problem("regions: [a, b]\nduration: 1s\ntraffic: {batch: 2.5}").contains("traffic.batch"))
        #expect(problem("regions: [a, b]\nduration: 1s\ntraffic: {events_per_second: 0.5}") == "accepted")
        #expect(problem("regions: [a, b]\nduration: 1s\nnode: {start_protocol_max: 9}").contains("node.start_protocol_max"))
        #expect(problem("regions: [a, b]\nduration: 1s\nnode: {pending: 9}").contains("node.pending"))
    }
}
