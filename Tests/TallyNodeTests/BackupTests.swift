import Foundation
import GRDB
import Testing
import TallyAggregates
import TallyNodeCore
@testable import TallyReplica
@testable import TallyNode

/// `tally backup` and `tally restore` on the store: a backup taken while a writer appends is the
/// store as of one commit, and a restore is `Restore.image(ofBackup:)` of it, as a new incarnation.
@Suite struct BackupTests {
    static func directory() -> String { NSTemporaryDirectory() + "tally-backup-\(UUID().uuidString)" }

    /// A replica with a peer (so it keeps an own chain), its store checkpointed at batch 28 and
    /// more batches logged after it.
    static func populatedStore(_ directory: String) async throws -> (store: EventStore, replica: Replica) {
        let config = ReplicaConfig(id: EventStoreTests.origin, peers: ["b"])
        var replica = Replica(config: config)
        let store = try EventStore(directory: directory)
        try await store.record(incarnation: 1)  // EventStoreTests.origin's
        var now = EventStoreTests.now
        for id in 1...40 as ClosedRange<UInt64> {
            for case .persist(let entry) in replica.ingest(EventStoreTests.batch(id, key: "k\(id)"), now: now) {
                try await store.append(entry)
            }
            now = now + .seconds(1)
            _ = replica.tick(now: now)
            replica.durable(through: replica.lastSequence)
            if id % 14 == 0 { try await store.store(await EncodedCheckpoint.encode(replica.checkpoint(now: now))) }
        }
        try await store.waitDurable(through: replica.lastSequence)
        try await EventStoreTests.waitUntil { await store.checkpointSequence == 28 }
        return (store, replica)
    }

    @Test func aBackupIsTheStoreAsOfOneCommitAndARestoreDropsTheLogAndTheOwnChain() async throws {
        let source = Self.directory(), target = Self.directory()
        defer { for path in [source, target] { try? FileManager.default.removeItem(atPath: path) } }
        let (store, _) = try await Self.populatedStore(source)
        let file = source + "-backup.sqlite"
        defer { try? FileManager.default.removeItem(atPath: file) }

        // Taken while the store keeps appending: the copy is whole commits.
        let appending = Task {
            for sequence in 1_000...1_200 as ClosedRange<UInt64> { try await store.append(EventStoreTests.entry(sequence)) }
        }
        let summary = try EventStore.backup(directory: source, to: file)
        try await appending.value
        #expect(summary.checkpointSequence == 28)
        #expect(summary.logEntriesAfterCheckpoint >= 12, "\(summary)")  // 29...40, and some of the appends
        #expect(summary.incarnation == 1)
        let backedUp = try await EventStore(directory: try Self.asDirectory(file)).recover()
        #expect(backedUp.log.map(\.sequence).prefix(12) == ArraySlice(29...40))
        let after = backedUp.log.map(\.sequence).dropFirst(12)
        #expect(after == ArraySlice(after.isEmpty ? [] : Array(1_000..<(1_000 + UInt64(after.count)))),
                "a backup holds a prefix of the commits, never a gap")
        #expect(backedUp.image.ownChain != nil)

        let (restoredSummary, incarnation, logKept) = try EventStore.restore(from: file, into: target, region: "r", node: "n", clustered: true, replacing: false, fresh: 0)
        #expect(restoredSummary == summary && !logKept)
        #expect(incarnation == 2, "above the backup's, whatever the clock gave")
        let restored = try EventStore(directory: target)
        let (image, log) = try await restored.recover()
        #expect(log.isEmpty)
        let expected = Restore.image(ofBackup: backedUp.image, origin: EventStoreTests.origin, region: "r")
        #expect(image.sequence == expected.sequence && image.stateVersion == expected.stateVersion)
        #expect(image.takenAt == expected.takenAt && image.series == expected.series)
        #expect(image.buckets.mapValues { $0.encoded() } == expected.buckets.mapValues { $0.encoded() })
        #expect(image.idempotencyKeys == expected.idempotencyKeys && image.origins == expected.origins)
        #expect(OriginDirectory(entries: image.originDirectory) == OriginDirectory(entries: expected.originDirectory))
        #expect(image.originDirectory.contains { $0.origin == EventStoreTests.origin && $0.region == "r" },
                "the old origin is named the region's, to be retired when the new one starts")
        #expect(image.spanFingerprints == expected.spanFingerprints && image.metricStreams == expected.metricStreams)
        #expect(image.ownChain == nil && !image.buckets.isEmpty && !image.idempotencyKeys.isEmpty)
        let ownHead = try #require(image.origins.first { $0.origin == EventStoreTests.origin })
        let takenAt = try #require(backedUp.image.takenAt)
        #expect(ownHead.currentAsOf >= takenAt, "the old origin is current as of the checkpoint")
        #expect(try await restored.incarnation() == incarnation)
        let identity = try String(contentsOfFile: target + "/incarnation", encoding: .utf8)
        #expect(identity == "\(incarnation)\n")

        // Without peers, nobody else counted the log's events: it is kept, and replayed once.
        let single = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: single) }
        let (_, _, kept) = try EventStore.restore(from: file, into: single, region: "r", node: "n", clustered: false,
                                                  replacing: false, fresh: 0)
        #expect(kept)
        #expect(try await EventStore(directory: single).recover().log.map(\.sequence) == backedUp.log.map(\.sequence))
    }

    @Test func restoreRefusesWhatItShouldNot() async throws {
        let source = Self.directory(), target = Self.directory()
        defer { for path in [source, target] { try? FileManager.default.removeItem(atPath: path) } }
        _ = try await Self.populatedStore(source)
        let file = source + "-backup.sqlite"
        defer { try? FileManager.default.removeItem(atPath: file) }
        _ = try EventStore.backup(directory: source, to: file)

        func refusal(_ body: () throws -> Void) -> String {
            do {
                try body()
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        #expect(refusal { _ = try EventStore.backup(directory: source, to: file) }.contains("exists"))
        #expect(refusal { _ = try EventStore.backup(directory: target, to: target + ".x") }.contains("no store"))
        // A store already there is not overwritten unless asked.
        _ = try EventStore.restore(from: file, into: target, region: "r", node: "n", clustered: true, replacing: false, fresh: 1)
        #expect(refusal { _ = try EventStore.restore(from: file, into: target, region: "r", node: "n", clustered: true, replacing: false, fresh: 1) }
            .contains("--replace"))
        #expect(refusal { _ = try EventStore.restore(from: file, into: target, region: "r", node: "n", clustered: true, replacing: true, fresh: 1) } == "accepted")
        // Not a store; a damaged one.
        let text = source + "-not-a-store"
        try "hello".write(toFile: text, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: text) }
        #expect(refusal { _ = try EventStore.restore(from: text, into: target, region: "r", node: "n", clustered: true, replacing: true, fresh: 1) }
            .contains("not"))
        let damaged = source + "-damaged.sqlite"
        try FileManager.default.copyItem(atPath: file, toPath: damaged)
        defer { try? FileManager.default.removeItem(atPath: damaged) }
        let handle = try #require(FileHandle(forUpdatingAtPath: damaged))
        try handle.seek(toOffset: 4_096 * 2)
        handle.write(Data(repeating: 0xA5, count: 4_096 * 3))
        try handle.close()
        #expect(refusal { _ = try EventStore.restore(from: damaged, into: target, region: "r", node: "n", clustered: true, replacing: true, fresh: 1) } != "accepted")
        // The data directory lock: a second holder is refused, naming the directory.
        var lock: DataDirectoryLock? = try DataDirectoryLock(directory: target)
        #expect(refusal { _ = try DataDirectoryLock(directory: target) }.contains("in use"))
        #expect(lock != nil)
        lock = nil
        #expect(refusal { _ = try DataDirectoryLock(directory: target) } == "accepted", "released with its holder")
    }

    /// A backup file, as the only store of a directory of its own (to open it with `EventStore`).
    static func asDirectory(_ file: String) throws -> String {
        let directory = file + ".d"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = EventStore.storePath(directory: directory)
        if !FileManager.default.fileExists(atPath: path) { try FileManager.default.copyItem(atPath: file, toPath: path) }
        return directory
    }
}
