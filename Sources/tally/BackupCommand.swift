import ArgumentParser
import Foundation
import TallyNode
import TallyNodeCore

/// `tally backup`: a consistent copy of a node's store, taken while it runs.
struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy a node's store to a file, consistently, while the node runs.",
        discussion: """
            Uses SQLite's online backup inside one read transaction: the file is the store as of \
            one commit, its last checkpoint and the log after it. Restore it with `tally restore`, \
            never by copying it into a data directory by hand (docs/operations.md, "Back up and restore").
            """)

    @Option(help: "The node's YAML config file (its data_dir is backed up).")
    var config: String
    @Option(help: "The backup file to write (must not exist).")
    var out: String

    func run() throws {
        let nodeConfig = try CommandFailure.loadConfig(self.config)
        do {
            let summary = try EventStore.backup(directory: nodeConfig.dataDirectory, to: self.out)
            print("backed up node \(nodeConfig.node) (\(nodeConfig.region)) to \(self.out): \(summary)")
        } catch {
            throw CommandFailure(message: "backup failed: \(error)")
        }
    }
}

/// `tally restore`: a backup into a node's data directory, as a new incarnation.
struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a backup into a node's data directory, as a new origin.",
        discussion: """
            The node must be stopped (the data directory is locked while a node runs). The restored \
            node starts as a new incarnation, so its peers give back what it counted after the \
            backup and replicated, and nothing is counted twice; with peers, the backup's log after \
            its checkpoint is dropped for the same reason. What it acknowledged and never \
            replicated is lost, as with a lost disk.
            """)

    @Option(help: "The node's YAML config file (the backup is restored into its data_dir).")
    var config: String
    @Option(help: "The backup file (from `tally backup`).")
    var from: String
    @Flag(help: "Delete a store already in the data directory instead of refusing.")
    var replace = false

    func run() throws {
        let nodeConfig = try CommandFailure.loadConfig(self.config)
        do {
            let lock = try DataDirectoryLock(directory: nodeConfig.dataDirectory)
            defer { withExtendedLifetime(lock) {} }
            let fresh = UInt64(max(Node.wallClock().millisecondsSinceEpoch, 1))
            let (summary, incarnation, logKept) = try EventStore.restore(
                from: self.from, into: nodeConfig.dataDirectory, region: nodeConfig.region, node: nodeConfig.node,
                clustered: nodeConfig.cluster != nil, replacing: self.replace, fresh: fresh)
            print("restored \(self.from) into \(nodeConfig.dataDirectory): \(summary)")
            print(logKept
                ? "kept the \(summary.logEntriesAfterCheckpoint) log entries after the checkpoint (no peers counted them); "
                    + "the node starts as incarnation \(incarnation)"
                : "dropped the \(summary.logEntriesAfterCheckpoint) log entries after the checkpoint (its peers give back "
                    + "what of them it had replicated) and its own chain; the node starts as incarnation \(incarnation), "
                    + "a new origin")
        } catch {
            throw CommandFailure(message: "restore failed: \(error)")
        }
    }
}
