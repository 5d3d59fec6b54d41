import ArgumentParser
import Foundation
import TallySimulation

/// `tally-bench simulator`: simulated seconds per wall second of one scenario's seeds, run one
/// after another on this thread (no worker threads, unlike `tally sim --jobs`), so that callgrind
/// can count its instructions: valgrind 3.19 dies in `tally sim`'s dispatch threads, and the wall
/// clock of this shared machine varies by 30% between runs. Every run must pass its checks.
struct SimulatorBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulator",
        abstract: "Simulator speed: simulated s per wall s of a scenario's seeds, on one thread.",
        discussion: """
            Instructions per simulated second, stable on a noisy machine (copy the binary and strip its \
            DWARF 5 debug information first, which valgrind 3.19 cannot read):
              valgrind --tool=callgrind --collect-atstart=no \\
                --toggle-collect='$s15TallySimulation0B0V3runAA0B6ResultVyF' tally-bench simulator --seeds 1
            """)

    @Option(help: "The scenario file.")
    var scenario = "simulations/lossy-wan.yaml"
    @Option(help: "Seeds 1 through N.")
    var seeds: UInt64 = 3

    func run() throws {
        let scenario = try Scenario.load(path: self.scenario)
        var simulatedMillis: Int64 = 0
        var wall = Duration.zero
        for seed in 1...max(1, self.seeds) {
            let began = ContinuousClock.now
            let result = Simulation(scenario: scenario, seed: seed).run()
            wall += ContinuousClock.now - began
            guard result.passed else {
                throw ValidationError("\(scenario.name) seed \(seed) failed its checks: "
                    + result.checks.filter { !$0.passed }.map(\.name).joined(separator: ", "))
            }
            simulatedMillis += result.simulatedMillis
            print("\(scenario.name) seed \(seed) trace \(String(result.traceHash, radix: 16))")
        }
        let simulated = Double(simulatedMillis) / 1_000
        print("\(scenario.name): \(Int(simulated)) simulated s in \(String(format: "%.2f", inSeconds(wall))) s, "
            + "\(Int(simulated / max(inSeconds(wall), 0.001))) simulated s per s "
            + "(target >= 1,000 for 5 regions at 1,000 events/s)")
    }
}
