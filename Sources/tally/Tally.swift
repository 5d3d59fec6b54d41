import ArgumentParser

@main
struct Tally: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally",
        abstract: "Tally: multi-region analytics for microservices, with CRDT aggregates.",
        version: "0.1.0",
        subcommands: [Inspect.self])
}
