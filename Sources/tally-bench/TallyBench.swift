import ArgumentParser

@main
struct TallyBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally-bench",
        abstract: "Benchmarks of Tally's hot paths. Build in release: swift run -c release tally-bench <suite>.",
        subcommands: [AggregatesBenchmark.self, ReplicaBenchmark.self, SLOBenchmark.self])

    static func main() {
        Harness.preloadInterposerIfNeeded()
        do {
            var command = try Self.parseAsRoot()
            try command.run()
        } catch {
            Self.exit(withError: error)
        }
    }
}
