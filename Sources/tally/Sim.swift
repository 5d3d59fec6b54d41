import ArgumentParser
import Foundation
import Synchronization
import TallySimulation

/// `tally sim`: runs chaos scenarios in the deterministic simulator.
struct Sim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim",
        abstract: "Run chaos scenarios in the deterministic network simulator.",
        usage: "tally sim <scenarios> ... [--seed <seed> | --seeds <count>] [<options>]",
        discussion: """
            Runs the real replica code and wire format in virtual time, with the scenario's faults, and \
            checks convergence, conservation, monotonic reads, bounded memory, liveness and protocol. \
            A failure prints the command that replays it. See docs/simulation.md.
            """)

    @Argument(help: "Scenario files (simulations/*.yaml).")
    var scenarios: [String]
    @Option(help: "Run this seed (replay).")
    var seed: UInt64?
    @Option(help: "Run seeds 1 through N of every scenario.")
    var seeds: Int?
    @Option(help: "First seed when --seeds is given.")
    var firstSeed: UInt64 = 1
    @Flag(help: "Machine-readable results, one JSON object per line.")
    var json = false
    @Flag(help: "Print each run's trace hash (two runs of a seed must print the same).")
    var traceHashes = false
    @Option(help: "Seeds run at once, one per core by default (each run is single-threaded and deterministic).")
    var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

    func validate() throws {
        guard !self.scenarios.isEmpty else { throw ValidationError("name at least one scenario file") }
        guard self.seed == nil || self.seeds == nil else { throw ValidationError("--seed and --seeds exclude each other") }
        if let seeds = self.seeds, seeds < 1 { throw ValidationError("--seeds must be at least 1") }
        guard (1...256).contains(self.jobs) else { throw ValidationError("--jobs must be 1 to 256") }
    }

    func run() throws {
        var failures: [String] = []
        var runs = 0
        let wallStart = ContinuousClock.now
        var simulatedMillis: Int64 = 0
        for file in self.scenarios {
            let scenario: Scenario
            do {
                scenario = try Scenario.load(path: file)
            } catch {
                throw CommandFailure(message: "\(error)")
            }
            let seeds: [UInt64] = self.seeds.map { count in (0..<UInt64(count)).map { self.firstSeed + $0 } }
                ?? [self.seed ?? 1]
            let single = seeds.count == 1 && !self.json
            // Waves of seeds run in parallel; results are reported in seed order.
            let wave = self.jobs * 2
            var results: [SimulationResult] = []
            for (position, seed) in seeds.enumerated() {
                if position % wave == 0 {
                    results = Self.run(scenario, seeds: Array(seeds[position..<min(position + wave, seeds.count)]),
                                       jobs: self.jobs)
                }
                let result = results[position % wave]
                runs += 1
                simulatedMillis += result.simulatedMillis
                if self.json {
                    print(Self.json(result, file: file))
                } else if single {
                    print(Self.report(result, file: file))
                } else {
                    Self.progress(scenario: scenario.name, done: position + 1, of: seeds.count, failures: failures.count)
                }
                if self.traceHashes && !self.json {
                    print("\(scenario.name) seed \(seed) trace \(String(result.traceHash, radix: 16))")
                }
                if !result.passed {
                    let failed = result.checks.filter { !$0.passed }.map { "\($0.name): \($0.detail)" }
                    failures.append("\(scenario.name) seed \(seed): \(failed.joined(separator: "; "))\n"
                        + "  replay: \(result.replayCommand(file: file))")
                }
            }
            if !single && !self.json { FileHandle.standardError.write(Data("\n".utf8)) }
        }
        let wall = ContinuousClock.now - wallStart
        let wallSeconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
        if !self.json && (runs > 1 || self.seeds != nil) {
            print("\(runs) runs, \(runs - failures.count) passed, \(failures.count) failed; "
                + "\(Int(Double(simulatedMillis) / 1_000)) simulated s in \(String(format: "%.1f", wallSeconds)) s "
                + "(\(Int(Double(simulatedMillis) / 1_000 / max(wallSeconds, 0.001))) simulated s per s)")
        }
        for failure in failures { print("FAILED \(failure)") }
        if !failures.isEmpty { throw ExitCode(1) }
    }

    /// Runs `seeds` of `scenario`, `jobs` at a time; results in the order of `seeds`.
    static func run(_ scenario: Scenario, seeds: [UInt64], jobs: Int) -> [SimulationResult] {
        if jobs == 1 || seeds.count == 1 { return seeds.map { Simulation(scenario: scenario, seed: $0).run() } }
        let results = Mutex<[SimulationResult?]>(Array(repeating: nil, count: seeds.count))
        DispatchQueue.concurrentPerform(iterations: seeds.count) { index in
            let result = Simulation(scenario: scenario, seed: seeds[index]).run()
            results.withLock { $0[index] = result }
        }
        return results.withLock { $0.map { $0! } }  // every index was filled above
    }

    static func progress(scenario: String, done: Int, of total: Int, failures: Int) {
        let width = 30
        let filled = done * width / total
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        FileHandle.standardError.write(Data(
            "\r\(scenario.padding(toLength: 22, withPad: " ", startingAt: 0)) [\(bar)] \(done)/\(total)  failed: \(failures)".utf8))
    }

    static func report(_ result: SimulationResult, file: String) -> String {
        var lines: [String] = []
        lines.append("scenario \(result.scenario), seed \(result.seed), regions \(result.regions.joined(separator: ", "))")
        lines.append("timeline:")
        lines += result.timeline.map { "  \($0)" }
        if let millis = result.convergenceMillis, let rounds = result.convergenceRounds {
            lines.append("converged \(String(format: "%.2f", Double(millis) / 1_000)) simulated s after the faults ended: "
                + "\(rounds) gossip rounds (bound \(result.roundsBound))")
        } else {
            lines.append("did not converge")
        }
        lines.append("events acknowledged: \(result.eventsAcknowledged); client batches refused (region down, "
            + "paused or not taking traffic): \(result.batchesRefused)")
        let bytes = zip(result.regions, result.bytesSent).map { "\($0) \($1 / 1_024) KiB" }
        lines.append("bytes sent: \(bytes.joined(separator: ", ")); messages: \(result.messagesSent); "
            + "global reads: \(result.readBytesSent / 1_024) KiB more")
        if let ratio = result.bytesPerDelta {
            lines.append("bytes sent per update: \(String(format: "%.2f", ratio)) x its encoded delta x (N - 1) "
                + "(\(result.deltaBytes / 1_024) KiB of deltas); sent as digests \(result.bytesByKind.digests / 1_024) KiB, "
                + "batches \(result.bytesByKind.deltas / 1_024) KiB, state chunks \(result.bytesByKind.stateChunks / 1_024) KiB")
        }
        if let staleness = result.staleness {
            lines.append("staleness per origin: p50 \(staleness.p50) ms, p99 \(staleness.p99) ms, max \(staleness.max) ms")
        }
        lines.append("checks:")
        for check in result.checks {
            lines.append("  \(check.passed ? "ok  " : "FAIL") \(check.name): \(check.detail)")
        }
        lines.append("trace hash \(String(result.traceHash, radix: 16))")
        if !result.passed { lines.append("replay: \(result.replayCommand(file: file))") }
        return lines.joined(separator: "\n")
    }

    static func json(_ result: SimulationResult, file: String) -> String {
        func quoted(_ text: String) -> String {
            "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        let checks = result.checks.map {
            "{\"name\":\(quoted($0.name)),\"passed\":\($0.passed),\"detail\":\(quoted($0.detail))}"
        }
        var fields = [
            "\"scenario\":\(quoted(result.scenario))", "\"file\":\(quoted(file))", "\"seed\":\(result.seed)",
            "\"passed\":\(result.passed)", "\"checks\":[\(checks.joined(separator: ","))]",
            "\"convergence_ms\":\(result.convergenceMillis.map(String.init) ?? "null")",
            "\"convergence_rounds\":\(result.convergenceRounds.map(String.init) ?? "null")",
            "\"rounds_bound\":\(result.roundsBound)", "\"events_acknowledged\":\(result.eventsAcknowledged)",
            "\"bytes_sent\":[\(result.bytesSent.map(String.init).joined(separator: ","))]",
            "\"read_bytes_sent\":\(result.readBytesSent)",
            "\"delta_bytes\":\(result.deltaBytes)",
            "\"bytes_per_delta\":\(result.bytesPerDelta.map { String(format: "%.3f", $0) } ?? "null")",
            "\"bytes_by_kind\":{\"digests\":\(result.bytesByKind.digests),\"deltas\":\(result.bytesByKind.deltas),"
                + "\"state_chunks\":\(result.bytesByKind.stateChunks)}",
            "\"trace_hash\":\(quoted(String(result.traceHash, radix: 16)))",
            "\"replay\":\(quoted(result.replayCommand(file: file)))",
        ]
        if let staleness = result.staleness {
            fields.append("\"staleness_ms\":{\"p50\":\(staleness.p50),\"p99\":\(staleness.p99),\"max\":\(staleness.max)}")
        }
        return "{" + fields.joined(separator: ",") + "}"
    }
}
