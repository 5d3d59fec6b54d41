import ArgumentParser
import TallyNode

/// `tally config check FILE` and `tally config hash-key SECRET`.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Check node configs and prepare API keys.",
        subcommands: [Check.self, HashKey.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate config files; every error names the file, the key and the bad value.",
            discussion: """
                Given the configs of a whole cluster, also checks them as a set: every peer is a node of \
                the set and lists it back, no node id or region twice, and each node's TLS files exist, \
                name the node, verify against its CA and share one CA with the others.
                """)

        @Argument(help: "One or more node config files.")
        var files: [String]

        func run() throws {
            var failures = 0
            var loaded: [(file: String, config: NodeConfig)] = []
            for file in self.files {
                do {
                    let config = try NodeConfig.load(path: file)
                    loaded.append((file, config))
                    print("\(file): ok (node \(config.node), region \(config.region), "
                          + "listen \(config.listenHost):\(config.listenPort), \(config.apiKeys.count) API keys"
                          + (config.cluster.map { ", \($0.peers.count) peers" } ?? "") + ")")
                } catch {
                    print("\(error)")
                    failures += 1
                }
            }
            let problems = ClusterCheck.problems(loaded)
            for problem in problems { print(problem) }
            if failures > 0 || !problems.isEmpty { throw ExitCode.failure }
        }
    }

    struct HashKey: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hash-key", abstract: "Print the sha256 of an API key secret, for the config's api_keys.")

        @Argument(help: "The secret a client will send as Authorization: Bearer <secret>.")
        var secret: String

        func run() {
            print(NodeConfig.hash(secret: self.secret).map { byte in
                let hex = String(byte, radix: 16)
                return hex.count == 1 ? "0" + hex : hex
            }.joined())
        }
    }
}
