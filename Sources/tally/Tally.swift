import ArgumentParser

@main
struct Tally: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally",
        abstract: "Tally: multi-region analytics for microservices, with CRDT aggregates.",
        version: "0.1.0",
        subcommands: [Demo.self, Serve.self, ConfigCommand.self, SLOCommand.self, Certs.self, BackupCommand.self,
                      RestoreCommand.self, Load.self, Sim.self, Inspect.self])
}
