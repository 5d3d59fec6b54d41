import ArgumentParser

@main
struct TallyBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally-bench",
        abstract: "Benchmarks of Tally's hot paths. Build in release: swift run -c release tally-bench <suite>.",
        subcommands: [AggregatesBenchmark.self, ReplicaBenchmark.self, SLOBenchmark.self, PeersBenchmark.self, CapacityBenchmark.self,
                      SimulatorBenchmark.self])

    static func main() async {
        Harness.preloadInterposerIfNeeded()
        do {
            var command = try Self.parseAsRoot()
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            Self.exit(withError: error)
        }
    }
}
