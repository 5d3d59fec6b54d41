import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
import TallyReplica
@testable import TallyNode

/// A real Prometheus Alertmanager (Debian's `prometheus-alertmanager`, on loopback) receives the
/// alerts of three regions that each evaluate the same SLO on replicated state: it shows the page
/// once, however many regions send it, and then its resolution.
@Suite(.serialized) struct AlertmanagerTests {
    static let binary = "/usr/bin/prometheus-alertmanager"
    /// `.ci/run` installs the package and sets this: there, a missing binary fails the test.
    static let required = ProcessInfo.processInfo.environment["TALLY_REQUIRE_EXTERNAL"] == "1"
    static let available = FileManager.default.isExecutableFile(atPath: Self.binary)

    @Test(.enabled(if: Self.available || Self.required,
                   "needs Debian's prometheus-alertmanager at /usr/bin (.ci/run installs it)"))
    func oneAlertFromThreeRegionsShowsOnceThenResolves() async throws {
        let directory = NSTemporaryDirectory() + "tally-alertmanager-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let alertmanager = try await RealAlertmanager.start(in: directory)
        defer { alertmanager.stop() }

        let spec = (directory as NSString).appendingPathComponent("slo.yaml")
        try """
            slos:
              - {name: checkout-availability, service: checkout, objective: 99, window: 1d, minimum_events: 50,
                 runbook: "https://runbooks.example/checkout"}
            """.write(toFile: spec, atomically: true, encoding: .utf8)
        var configs = try await ClusterTests.configs(directory: directory)
        for index in configs.indices {
            configs[index].sloFiles = [spec]
            configs[index].alerting.alertmanagers = [alertmanager.url]
            configs[index].alerting.evaluateEvery = .seconds(1)
            configs[index].alerting.resendEvery = .seconds(1)
        }
        let nodes = try await ClusterTests.start(configs)
        defer { Task { for node in nodes { await node.stop() } } }

        // 100 failing requests at us-east: every region sees them once replicated, and pages.
        let now = Node.wallClock()
        let failing = (0..<100).map { index in
            BatchItem.event(Event(service: "checkout", operation: "pay", status: 503, latencyMicros: 1_000,
                                  user: "u\(index)", timestamp: now))
        }
        guard case .accepted = await nodes[0].ingest(items: failing, client: "test", idempotencyKey: nil) else {
            Issue.record("the failing batch was not accepted")
            return
        }
        let page = ["alertname": "TallySLOBurnRate", "slo": "checkout-availability", "long_window": "1h"]
        try await Self.until("every region fires the page") { await Self.firing(page, at: nodes) == nodes.count }
        var shown: [[String: Any]] = []
        try await Self.until("Alertmanager shows the page, and every region has posted to it") {
            shown = try await alertmanager.activeAlerts().filter { Self.matches($0["labels"] as? [String: String] ?? [:], page) }
            var posted = 0
            for node in nodes where (node.alertmanager?.outcomes["sent"] ?? 0) > 0 { posted += 1 }
            return !shown.isEmpty && posted == nodes.count
        }
        // Three regions sent it (again each second); Alertmanager holds one.
        #expect(shown.count == 1, "\(shown)")
        let labels = try #require(shown.first?["labels"] as? [String: String])
        #expect(labels["severity"] == "page" && labels["short_window"] == "5m" && labels["region"] == nil)
        let annotations = try #require(shown.first?["annotations"] as? [String: String])
        #expect(annotations["runbook_url"] == "https://runbooks.example/checkout")
        #expect(annotations["view"] == "complete")
        #expect(annotations["summary"]?.contains("threshold 14.4x") == true, "\(annotations)")

        // 10,000 good requests at eu-west bring the error rate to 1%, under both page thresholds.
        for round in 0..<10 {
            let good = (0..<1_000).map { index in
                BatchItem.event(Event(service: "checkout", operation: "pay", status: 200, latencyMicros: 1_000,
                                      user: "g\(round)-\(index)", timestamp: now))
            }
            guard case .accepted = await nodes[1].ingest(items: good, client: "test", idempotencyKey: nil) else {
                Issue.record("a good batch was not accepted")
                return
            }
        }
        try await Self.until("Alertmanager shows the page resolved") {
            let active = try await alertmanager.activeAlerts().filter {
                Self.matches($0["labels"] as? [String: String] ?? [:], page)
            }
            let firing = await Self.firing(page, at: nodes)
            return active.isEmpty && firing == 0
        }
        for node in nodes {
            #expect(node.alertmanager?.outcomes["failed"] ?? 0 == 0, "\(node.alertmanager?.lastErrors ?? [:])")
        }
    }

    /// How many of `nodes` have an alert with these labels firing.
    static func firing(_ labels: [String: String], at nodes: [Node]) async -> Int {
        var count = 0
        for node in nodes where await node.alertState().firing.contains(where: { Self.matches($0.labels, labels) }) {
            count += 1
        }
        return count
    }

    static func matches(_ labels: [String: String], _ wanted: [String: String]) -> Bool {
        wanted.allSatisfy { labels[$0.key] == $0.value }
    }

    /// Polls `condition` every 100 ms for up to 30 s.
    static func until(_ what: String, _ condition: () async throws -> Bool) async throws {
        for _ in 0..<300 {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("timed out waiting: \(what)")
        throw CancellationError()
    }
}

/// One `prometheus-alertmanager` process on a free loopback port, without clustering, with a
/// receiver that sends nothing anywhere.
final class RealAlertmanager: Sendable {
    let url: String
    private let process: Process

    private init(url: String, process: Process) {
        self.url = url
        self.process = process
    }

    static func start(in directory: String) async throws -> RealAlertmanager {
        let config = (directory as NSString).appendingPathComponent("alertmanager.yml")
        try """
            route:
              receiver: nowhere
              group_by: [slo, severity]
            receivers:
              - name: nowhere
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let port = try await PeerTransport.freeLoopbackPorts(1)[0]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: AlertmanagerTests.binary)
        process.arguments = [
            "--config.file=\(config)", "--storage.path=\((directory as NSString).appendingPathComponent("am-data"))",
            "--web.listen-address=127.0.0.1:\(port)", "--cluster.listen-address=", "--log.level=warn",
        ]
        let log = (directory as NSString).appendingPathComponent("alertmanager.log")
        FileManager.default.createFile(atPath: log, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: log)
        process.standardError = FileHandle(forWritingAtPath: log)
        try process.run()
        let alertmanager = RealAlertmanager(url: "http://127.0.0.1:\(port)", process: process)
        for _ in 0..<100 {
            if (try? await alertmanager.get("/-/ready")) == 200 { return alertmanager }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        alertmanager.stop()
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        throw AlertmanagerStartError(description: "prometheus-alertmanager did not become ready: \(output.suffix(2_000))")
    }

    struct AlertmanagerStartError: Error, CustomStringConvertible {
        var description: String
    }

    func stop() {
        if self.process.isRunning {
            self.process.terminate()
            self.process.waitUntilExit()
        }
    }

    private func get(_ path: String) async throws -> UInt {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: self.url + path), timeout: .seconds(5))
        _ = try await response.body.collect(upTo: 1 << 20)
        return response.status.code
    }

    /// `GET /api/v2/alerts`: the alerts Alertmanager holds active (not resolved, silenced or inhibited).
    func activeAlerts() async throws -> [[String: Any]] {
        let response = try await HTTPClient.shared.execute(
            HTTPClientRequest(url: self.url + "/api/v2/alerts?active=true&silenced=false&inhibited=false"),
            timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 16 << 20)
        return (try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [[String: Any]]) ?? []
    }
}
