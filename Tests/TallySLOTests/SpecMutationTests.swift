import Foundation
import Testing
import TallyAggregates
import TallyReplica
@testable import TallySLO

/// Hostile spec files: seeded random mutations of valid ones (bytes flipped, cut, repeated,
/// tokens swapped for others from the grammar), short form and OpenSLO. Each either parses into
/// SLOs that evaluate, or is refused with an `SLOError` naming its file; none crashes or hangs.
@Suite struct SpecMutationTests {
    static let seeds = [
        OpenSLOTests.example,
        """
        slos:
          - name: checkout-availability
            service: checkout
            operations: ["POST /pay"]
            objective: 99.9
            sli: availability
            bad: [5xx, 4xx]
            window: {calendar: month, time_zone: Europe/Berlin}
            minimum_events: 100
            budgeting: {timeslices: 5m, target: 95}
            maintenance: [{from: "2026-12-05T02:00:00Z", to: "2026-12-05T03:00:00Z"}]
            alerts:
              - {severity: page, burn_rate: 14.4, long: 1h, short: 5m}
          - {name: lat, service: checkout, objective: 99, sli: latency <= 300ms, window: 30d}
        """,
    ]
    static let tokens = ["0", "-1", "1e400", "99.99999", "nan", "[]", "{}", "null", "~", "&a", "*a", "'", "\"", ":",
                         "- ", "\n", "  ", "\t", "1M", "0s", "366d", "9999999999d", "openslo/v1", "kind: SLO", "---",
                         "timeslices", "Timeslices", "Tally", "5xx", "9xx", "latency <= 0ms", "Mars/Olympus", "é", "\u{0}"]

    /// 3,000 in the suite; `TALLY_SPEC_MUTATIONS=100000 swift test --filter SpecMutationTests` for more.
    static let rounds = Int(ProcessInfo.processInfo.environment["TALLY_SPEC_MUTATIONS"] ?? "") ?? 3_000

    /// Found by this test: Yams' `load` force-unwraps a mapping key into a String, so a key that
    /// is a list or a mapping stopped the process (a spec posted to `POST /v1/slo` would stop a node).
    @Test func aMappingKeyThatIsNotAScalarIsRefusedNotFatal() {
        for yaml in ["{[a]: b}", "slos:\n  - {name: a, service: s, objective: 99, {x: 1}: 2}", "? [a, b]\n: c\n",
                     "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: s, [1]: 2}\n"] {
            #expect { _ = try SLOFile.parse(yaml: yaml, file: "k.yaml") } throws: { error in
                (error as? SLOError)?.message.contains("keys are plain names") == true
            }
        }
    }

    @Test func mutatedSpecsParseOrAreRefusedNamingTheirFile() throws {
        var random = SeededRandom(seed: 2026)
        let replica = EvaluationTests.replica(minutes: 120, perMinute: 5, burstMinutes: 10, burstErrorPercent: 20)
        var parsed = 0
        var refused = 0
        for round in 0..<Self.rounds {
            var bytes = Array(Self.seeds[round % Self.seeds.count].utf8)
            for _ in 0...(random.next() % 4) {
                guard !bytes.isEmpty else { break }
                let position = Int(random.next() % UInt64(bytes.count))
                switch random.next() % 5 {
                case 0: bytes[position] = UInt8(truncatingIfNeeded: random.next())
                case 1: bytes.removeSubrange(position..<min(bytes.count, position + Int(random.next() % 40)))
                case 2: bytes.insert(contentsOf: bytes[position..<min(bytes.count, position + 30)], at: position)
                default:
                    let token = Self.tokens[Int(random.next() % UInt64(Self.tokens.count))]
                    let end = min(bytes.count, position + Int(random.next() % 8))
                    bytes.replaceSubrange(position..<end, with: Array(token.utf8))
                }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            do {
                let specs = try SLOFile.parse(yaml: text, file: "mutant-\(round).yaml")
                parsed += 1
                // Whatever parses evaluates, or is refused as a query, without trapping.
                for spec in specs { _ = try? spec.evaluate(on: replica, now: EvaluationTests.now) }
            } catch {
                refused += 1
                #expect(error.file == "mutant-\(round).yaml", "\(error)")
                #expect(!error.message.isEmpty)
            }
        }
        #expect(parsed > 50 && refused > 500, "parsed \(parsed), refused \(refused)")
    }
}
