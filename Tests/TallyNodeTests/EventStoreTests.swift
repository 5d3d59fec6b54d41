import Foundation
import GRDB
import Testing
import TallyAggregates
@testable import TallyReplica
@testable import TallyNode

@Suite struct EventStoreTests {
    static func entry(_ sequence: UInt64) -> LogEntry {
        LogEntry(sequence: sequence, acceptedAt: Timestamp(millisecondsSinceEpoch: 0), client: "c", idempotencyKey: nil,
                 events: [Event(service: "s", operation: "o", status: 200, latencyMicros: 1,
                                timestamp: Timestamp(millisecondsSinceEpoch: 0))],
                 receipt: IngestReceipt(accepted: 1, rejected: [], sequence: sequence))
    }

    /// An entry committed ahead of an earlier one must not make the earlier one look durable.
    @Test func durabilityIsContiguous() async throws {
        let directory = NSTemporaryDirectory() + "tally-store-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try EventStore(directory: directory)
        try await store.append(Self.entry(2))
        var waited = 0
        while await store.commits < 1 && waited < 500 {
            try await Task.sleep(for: .milliseconds(10))
            waited += 1
        }
        #expect(await store.commits == 1)
        #expect(await store.durableSequence == 0)
        try await store.append(Self.entry(1))
        try await store.waitDurable(through: 2)
        #expect(await store.durableSequence == 2)
        // Both are in the log, in sequence order.
        let reopened = try EventStore(directory: directory)
        #expect(try await reopened.recover().log.map(\.sequence) == [1, 2])
    }

    static let origin = ReplicaID(region: "r", node: "n", incarnation: 1)
    static let now = Timestamp(millisecondsSinceEpoch: 1_795_946_400_000)

    static func batch(_ id: UInt64, key: String? = nil) -> EventBatch {
        let events = (0..<Int(id % 7 + 1)).map { index in
            Event(service: "svc-\(id % 3)", operation: "op-\(index % 4)", status: index % 5 == 0 ? 503 : 200,
                  latencyMicros: Double(100 * (Int(id) + index)), user: "user-\(index)",
                  timestamp: Self.now - .seconds(Int64(id % 200)))
        }
        // Odd batches are spans: their fingerprints go to the log, then to the image.
        let fingerprints = id % 2 == 0 ? [] : events.indices.map { id << 8 | UInt64($0) + 1 }
        return EventBatch(id: BatchID(id), client: "c", idempotencyKey: key, items: events.map { .event($0) },
                          fingerprints: fingerprints)
    }

    static func waitUntil(_ condition: () async -> Bool) async throws {
        for _ in 0..<500 where !(await condition()) {
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Stored image + log after it, read back, rebuild exactly the live replica.
    @Test func recoveryFromCheckpointsAndLogEqualsTheLiveReplica() async throws {
        let directory = NSTemporaryDirectory() + "tally-store-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = ReplicaConfig(id: Self.origin)
        var replica = Replica(config: config)
        let store = try EventStore(directory: directory)
        for id in 1...60 as ClosedRange<UInt64> {
            for case .persist(let entry) in replica.ingest(Self.batch(id, key: id % 2 == 0 ? "k\(id)" : nil), now: Self.now) {
                try await store.append(entry)
            }
            if id % 25 == 0 {
                try await store.store(await EncodedCheckpoint.encode(replica.checkpoint(now: Self.now)))
            }
        }
        try await store.waitDurable(through: replica.lastSequence)
        try await Self.waitUntil { await store.checkpointSequence == 50 }
        #expect(await store.checkpointSequence == 50)
        // The covered log is deleted lazily, a few entries at a time while the writer is idle.
        let pool = try DatabasePool(path: store.path)
        let remaining = { try await pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM log") ?? -1 } }
        try await Self.waitUntil { (try? await remaining()) == 10 }
        #expect(try await remaining() == 10)

        let (image, log) = try await EventStore(directory: directory).recover()
        #expect(image.sequence == 50 && log.map(\.sequence) == Array(51...60))
        #expect(image.idempotencyKeys.count == 25)
        var recovered = Replica(config: config, restoring: image)
        for entry in log { recovered.replay(entry) }
        #expect(recovered.buckets.map(\.key) == replica.buckets.map(\.key))
        #expect(recovered.buckets.map { $0.aggregate.encoded() } == replica.buckets.map { $0.aggregate.encoded() })
        #expect(!replica.spans.entries.isEmpty)
        #expect(recovered.spans.entries.map { "\($0.key)@\($0.expiresAt)#\($0.ordinal)" }
                == replica.spans.entries.map { "\($0.key)@\($0.expiresAt)#\($0.ordinal)" })
        // A retried key is answered from the image, not counted again.
        let retry = recovered.ingest(Self.batch(10, key: "k10"), now: Self.now)
        guard case .acknowledge(_, let receipt, let replayed) = retry.first else {
            Issue.record("expected a replayed answer, got \(retry)")
            return
        }
        #expect(replayed && receipt.sequence == 10)
    }

    /// A checkpoint covering entry 1 is not written while entry 1 is not committed, even if entry 2
    /// is: otherwise a crash could leave entry 1 both in the image and in the log.
    @Test func checkpointWaitsForEveryEntryItCovers() async throws {
        let directory = NSTemporaryDirectory() + "tally-store-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var replica = Replica(config: ReplicaConfig(id: Self.origin))
        var entries: [LogEntry] = []
        for id in 1...2 as ClosedRange<UInt64> {
            for case .persist(let entry) in replica.ingest(Self.batch(id), now: Self.now) { entries.append(entry) }
        }
        let store = try EventStore(directory: directory)
        try await store.append(entries[1])
        try await store.store(EncodedCheckpoint(replica.checkpoint(now: Self.now)))
        try await Self.waitUntil { await store.commits >= 1 }
        #expect(await store.commits == 1)
        #expect(await store.checkpointsWritten == 0)
        try await store.append(entries[0])
        try await store.waitDurable(through: 2)
        try await Self.waitUntil { await store.checkpointsWritten == 1 }
        #expect(await store.checkpointsWritten == 1)
        let (image, log) = try await EventStore(directory: directory).recover()
        #expect(image.sequence == 2 && log.isEmpty && image.buckets.count == replica.bucketCount)
    }

    /// A corrupt row stops recovery with an error naming the row, instead of a wrong state.
    @Test func corruptRowIsNamed() async throws {
        let directory = NSTemporaryDirectory() + "tally-store-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var replica = Replica(config: ReplicaConfig(id: Self.origin))
        let store = try EventStore(directory: directory)
        for case .persist(let entry) in replica.ingest(Self.batch(1), now: Self.now) { try await store.append(entry) }
        try await store.store(EncodedCheckpoint(replica.checkpoint(now: Self.now)))
        try await Self.waitUntil { await store.checkpointsWritten == 1 }
        // The store may still be trimming its log after the checkpoint: wait for its write lock
        // rather than fail on it.
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        let pool = try DatabasePool(path: store.path, configuration: configuration)
        try await pool.write { db in
            try db.execute(sql: "UPDATE bucket SET aggregate = x'1001ff' WHERE resolution = 1")
        }
        do {
            _ = try await EventStore(directory: directory).recover()
            Issue.record("recovery accepted a corrupt bucket")
        } catch let error as EventStore.StoreError {
            #expect(error.description.contains("bucket (series 0, resolution 1"))
        }
    }

    /// The own replication chain (`OwnChain`) the store keeps across checkpoints is the one the
    /// reference image folds: the recent own batches, in chain order, ending at the last sealed;
    /// one left by a checkpoint it does not belong to is not used, and a batch whose bytes do not
    /// decode is named.
    @Test func ownChainIsStoredAsTheImageFoldsIt() async throws {
        let directory = NSTemporaryDirectory() + "tally-store-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // A small buffer, so checkpoints also drop batches the buffer let go.
        let config = ReplicaConfig(id: Self.origin, limits: Limits(replicationBufferBytesMax: 3_000), peers: ["b"])
        var replica = Replica(config: config)
        var reference = ReplicaSnapshot()
        let store = try EventStore(directory: directory)
        var now = Self.now
        for id in 1...40 as ClosedRange<UInt64> {
            for case .persist(let entry) in replica.ingest(Self.batch(id), now: now) { try await store.append(entry) }
            now = now + .seconds(1)
            _ = replica.tick(now: now)  // seals (a gossip round); publishes what is durable
            if id % 3 == 0 { replica.durable(through: replica.lastSequence) }
            if id % 7 == 0 {
                let checkpoint = replica.checkpoint(now: now)
                reference.apply(checkpoint)
                try await store.store(await EncodedCheckpoint.encode(checkpoint))
            }
        }
        try await store.waitDurable(through: replica.lastSequence)
        try await Self.waitUntil { await store.checkpointsWritten == 5 }
        let expected = try #require(reference.ownChain)
        #expect(expected.batches.count > 1 && expected.batches.last?.version == expected.sealed)
        #expect(zip(expected.batches, expected.batches.dropFirst()).allSatisfy { $0.version == $1.previous })
        let (image, _) = try await EventStore(directory: directory).recover()
        #expect(image.ownChain?.sealed == expected.sealed && image.ownChain?.sequence == image.sequence)
        #expect(image.ownChain?.batches == expected.batches)

        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        let pool = try DatabasePool(path: store.path, configuration: configuration)
        try await pool.write { db in try db.execute(sql: "UPDATE own_chain SET sequence = sequence + 1") }
        #expect(try await EventStore(directory: directory).recover().0.ownChain == nil)
        try await pool.write { db in
            try db.execute(sql: "UPDATE own_chain SET sequence = sequence - 1")
            try db.execute(sql: "UPDATE own_batch SET bytes = x'0102' WHERE version = (SELECT MAX(version) FROM own_batch)")
        }
        do {
            _ = try await EventStore(directory: directory).recover()
            Issue.record("recovery accepted an own batch that does not decode")
        } catch let error as EventStore.StoreError {
            #expect(error.description.contains("own batch \(expected.sealed)"), "\(error)")
        }
    }

    /// The origin directory goes into the store with the checkpoint that changed it, comes back
    /// whole, is left as it was by one that did not, and a row that is not a region is named.
    @Test func originDirectoryIsStoredWithCheckpointsThatChangeIt() async throws {
        let directory = NSTemporaryDirectory() + "tally-store-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var replica = Replica(config: ReplicaConfig(id: Self.origin, peers: ["b"]))
        replica.announce(Self.origin, region: "r")
        replica.announce(ReplicaID(region: "b", node: "n", incarnation: 1), region: "b")
        replica.announce(ReplicaID(region: "b", node: "n", incarnation: 2), region: "b")
        let store = try EventStore(directory: directory)
        try await store.store(await EncodedCheckpoint.encode(replica.checkpoint(now: Self.now)))
        try await store.store(await EncodedCheckpoint.encode(replica.checkpoint(now: Self.now + .seconds(1))))
        try await Self.waitUntil { await store.checkpointsWritten == 2 }
        let (image, _) = try await EventStore(directory: directory).recover()
        #expect(OriginDirectory(entries: image.originDirectory) == replica.originDirectory)
        #expect(image.originDirectory.count == 3)

        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        let pool = try DatabasePool(path: store.path, configuration: configuration)
        try await pool.write { db in try db.execute(sql: "UPDATE origin_directory SET region = '' WHERE announced = 2") }
        do {
            _ = try await EventStore(directory: directory).recover()
            Issue.record("recovery accepted an origin directory row without a region")
        } catch let error as EventStore.StoreError {
            #expect(error.description.contains("origin_directory"), "\(error)")
        }
    }
}
