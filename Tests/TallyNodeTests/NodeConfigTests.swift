import Foundation
import Testing
import TallyAggregates
import TallyReplica
@testable import TallyNode

/// A config file is input like any other: every value it accepts works, and every value it
/// refuses is named, quoted briefly, with its range.
@Suite struct NodeConfigTests {
    static let base = """
        node: n1
        region: r1
        listen: 127.0.0.1:0
        data_dir: /tmp/x

        """

    static func problem(_ yaml: String) -> String? {
        do {
            _ = try NodeConfig.parse(yaml: Self.base + yaml, file: "n1.yaml")
            return nil
        } catch {
            return error.description
        }
    }

    @Test func everyNumberHasARangeAndTheErrorNamesIt() {
        #expect(Self.problem("limits:\n  rate_limit_events_per_second: 9223372036854775807\n")
            == "n1.yaml: limits.rate_limit_events_per_second: must be 1 to 1000000000 (got 9223372036854775807)")
        #expect(Self.problem("limits:\n  batch_events_max: 0\n")?.contains("must be 1 to 1000000") == true)
        #expect(Self.problem("limits:\n  body_bytes_max: 9223372036854775807\n")?.contains("limits.body_bytes_max") == true)
        #expect(Self.problem("idempotency:\n  keys_max: 9223372036854775807\n")?.contains("idempotency.keys_max") == true)
        #expect(Self.problem("limits:\n  rate_limit_events_per_second: 1000000000\n") == nil)
    }

    /// `retention: 292471208y` was accepted and the first POST then killed the node; a huge
    /// idempotency window overflowed the key's expiry and a retried batch counted twice.
    @Test func theAlertingSectionIsCheckedKeyByKey() throws {
        let config = try NodeConfig.parse(yaml: Self.base + """
            observe_self: true
            alerting:
              alertmanagers: ["http://127.0.0.1:9093/", "https://am.example:443"]
              evaluate_every: 30s
              stale_after: 2m
            """, file: "n1.yaml")
        #expect(config.observeSelf)
        #expect(config.alerting.alertmanagers == ["http://127.0.0.1:9093", "https://am.example:443"])
        #expect(config.alerting.evaluateEvery == .seconds(30) && config.alerting.resendEvery == .seconds(60))
        #expect(config.core(frameBytesMax: 1 << 20).staleAfter == .seconds(120))
        for (yaml, key) in [("alerting:\n  alertmanagers: [\"ftp://x\"]\n", "alerting.alertmanagers[0]"),
                            ("alerting:\n  alertmanagers: [\"http://user@x:9093\"]\n", "alerting.alertmanagers[0]"),
                            ("alerting:\n  alertmanagers: [\"http://x:99999\"]\n", "alerting.alertmanagers[0]"),
                            ("alerting:\n  evaluate_every: 0s\n", "alerting.evaluate_every"),
                            ("alerting:\n  resend_every: 2h\n", "alerting.resend_every"),
                            ("alerting:\n  silence: true\n", "alerting.silence"),
                            ("observe_self: maybe\n", "observe_self")] {
            let problem = Self.problem(yaml)
            #expect(problem?.contains(key) == true, "\(yaml): \(problem ?? "accepted")")
        }
    }

    @Test func durationsThatWouldOverflowAreRefused() {
        #expect(Self.problem("retention:\n  day: 292471208y\n")
            == "n1.yaml: retention.day: must be 1m to 100y (got 292471208y)")
        #expect(Self.problem("retention:\n  minute: 30s\n")?.contains("must be 1m to 100y") == true)
        #expect(Self.problem("idempotency:\n  window: 1000y\n")
            == "n1.yaml: idempotency.window: must be 1ms to 1y (got 1000y)")
        #expect(Self.problem("storage:\n  checkpoint_interval: 1ms\n")?.contains("must be 100ms to 1d") == true)
        #expect(Self.problem("retention:\n  day: 100y\nidempotency:\n  window: 365d\n") == nil)
    }

    @Test func aRetentionAtItsLimitWorksForEventsAndQueries() throws {
        let config = try NodeConfig.parse(yaml: Self.base + "retention:\n  minute: 100y\n  hour: 100y\n  day: 100y\n",
                                          file: "n1.yaml")
        var replica = Replica(config: ReplicaConfig(
            id: ReplicaID(region: "r1", node: "n1", incarnation: 1), retention: config.retention, limits: config.limits))
        let now = Timestamp(millisecondsSinceEpoch: 1_795_953_600_000)
        let actions = replica.ingest(EventBatch(id: BatchID(1), client: "c", events: [
            Event(service: "s", operation: "o", status: 200, latencyMicros: 5, timestamp: now - .seconds(3_600 * 24 * 365 * 99)),
            Event(service: "s", operation: "o", status: 200, latencyMicros: 5, timestamp: now),
        ]), now: now)
        #expect(actions.contains { if case .acknowledge(_, let receipt, _) = $0 { receipt.accepted == 2 } else { false } })
        _ = replica.tick(now: now)
        let answer = try replica.query(Query(service: "s", from: now - .seconds(3_600 * 24 * 365 * 100),
                                             to: now + .seconds(60), metrics: [.count]), now: now)
        #expect(answer.groups[0].points.reduce(0.0) { $0 + ($1.values[0] ?? 0) } == 2)
    }

    /// A billion nodes from a few lines of anchors and aliases, used as a key: refused at once.
    @Test func anAliasBombIsRefusedQuickly() throws {
        var yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for level in 1..<9 {
            yaml += "a\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ", ") + "]\n"
        }
        let asKey = Self.base + yaml + "? *a8\n: 1\n"
        let started = ContinuousClock.now
        #expect(throws: ConfigError.self) { try NodeConfig.parse(yaml: asKey, file: "bomb.yaml") }
        let asValue = Self.base + "limits:\n  latency_max: *a8\n" + yaml
        #expect(throws: ConfigError.self) { try NodeConfig.parse(yaml: asValue, file: "bomb.yaml") }
        // Yams hashes a key while composing: walking this one took 337 s before the refusal.
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(Self.problem("? *a8\n: 1\n" + yaml)?.contains("(line 5): uses a YAML alias") == true)
        // A * inside quotes, a comment or a plain scalar is no alias.
        #expect(Self.problem("api_keys: [] # *not an alias\nerrors: [\"5xx\"]\n") == nil)
        #expect(NodeConfig.firstAlias(in: "a: \"x *y\"\nb: 'it''s *z'\nc: a*b\n") == nil)
        #expect(NodeConfig.firstAlias(in: "a: [x, *y]\n") == 1)
    }

    /// Aliases are refused before parsing, so the node budget is a second line: a deep document
    /// without aliases is refused by its size in nodes.
    @Test func aDocumentOfTooManyNodesIsRefused() {
        let items = Array(repeating: "x", count: NodeConfig.yamlNodesMax).joined(separator: ", ")
        #expect(Self.problem("errors: [\(items)]\n")?.contains("more than 100000 YAML nodes") == true)
    }

    @Test func aHugeValueIsQuotedBriefly() {
        let value = String(repeating: "9", count: 2_000_000)
        let message = Self.problem("limits:\n  latency_max: \"\(value)\"\n")
        #expect(message != nil)
        #expect((message?.utf8.count ?? .max) < 600, "\(message?.prefix(200) ?? "")")
    }

    @Test func aFileOverTheSizeLimitIsNotRead() throws {
        let path = NSTemporaryDirectory() + "tally-big-\(UUID().uuidString).yaml"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try (Self.base + "# " + String(repeating: "x", count: NodeConfig.fileBytesMax) + "\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: ConfigError.self) { try NodeConfig.load(path: path) }
        do {
            _ = try NodeConfig.load(path: path)
        } catch {
            #expect(error.description.contains("a config file is at most 1048576"))
        }
    }

    @Test func aComplexKeyIsNamedNotPrinted() {
        #expect(Self.problem("? [a, b]\n: 1\n")?.contains("keys are plain names") == true)
    }
}
