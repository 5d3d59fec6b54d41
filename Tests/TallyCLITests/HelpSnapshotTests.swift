import ArgumentParser
import Foundation
import Testing
@testable import tally

/// Every command's help as an 80-column terminal shows it, held by snapshots (as
/// swift-argument-parser's own examples are): a change to a help text shows up in review, and no
/// line may pass 80 columns. `TALLY_UPDATE_SNAPSHOTS=1 swift test --filter HelpSnapshotTests`
/// writes them anew.
@Suite struct HelpSnapshotTests {
    static let commands: [(name: String, type: any ParsableCommand.Type)] = [
        ("tally", Tally.self), ("demo", Demo.self), ("serve", Serve.self), ("sim", Sim.self), ("load", Load.self),
        ("inspect", Inspect.self), ("certs", Certs.self), ("certs-ca", Certs.CA.self), ("certs-node", Certs.Node.self),
        ("config", ConfigCommand.self), ("config-check", ConfigCommand.Check.self),
        ("config-hash-key", ConfigCommand.HashKey.self), ("slo", SLOCommand.self), ("slo-check", SLOCommand.Check.self),
        ("slo-report", SLOReportCommand.self), ("backup", BackupCommand.self), ("restore", RestoreCommand.self),
    ]

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Snapshots")

    @Test(arguments: Self.commands.map(\.name))
    func helpFitsEightyColumnsAndMatchesItsSnapshot(_ name: String) throws {
        let type = try #require(Self.commands.first { $0.name == name }?.type)
        let help = Tally.helpMessage(for: type, columns: 80)
        for line in help.split(separator: "\n", omittingEmptySubsequences: false) {
            #expect(line.count <= 80, "\(name): \(line)")
        }
        let file = Self.directory.appendingPathComponent("\(name).txt")
        if ProcessInfo.processInfo.environment["TALLY_UPDATE_SNAPSHOTS"] == "1" {
            try help.write(to: file, atomically: true, encoding: .utf8)
            return
        }
        let snapshot = try String(contentsOf: file, encoding: .utf8)
        #expect(help == snapshot, "\(name): help differs from Tests/TallyCLITests/Snapshots/\(name).txt")
    }

    /// Every document a help text points to exists.
    @Test func helpPointsOnlyToDocsThatExist() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        for (name, type) in Self.commands {
            let help = Tally.helpMessage(for: type, columns: 1_000)
            for match in help.matches(of: /docs\/[A-Za-z0-9_.-]+\.md/) {
                let path = root.appendingPathComponent(String(match.output)).path
                #expect(FileManager.default.fileExists(atPath: path), "\(name) points to \(match.output)")
            }
        }
    }
}
