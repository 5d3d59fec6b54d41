import Foundation
import GRDB
import TallyAggregates
import TallyReplica
import TallyNodeCore

/// The node's durable state in SQLite (WAL mode, synchronous FULL): the replica's checkpointed
/// image (series, time buckets and idempotency keys, as canonical encodings) and the log of every
/// batch accepted after it, written with group commit.
///
/// Appends queue up while a transaction is being written; the next transaction takes all of them,
/// so under load many batches share one fsync. `waitDurable(through:)` returns once every entry up
/// to that sequence is committed: the node delivers an acknowledgement only then.
///
/// Failure model: a failed write leaves the in-memory replica ahead of the disk, with events that
/// were never acknowledged but that a retry with the same idempotency key would be told were kept.
/// The store therefore fails stop: it refuses everything from then on and calls `onFailure`, and
/// the node exits; a restart rebuilds exactly the durable state from the image and the log.
///
/// Checkpoints: `store(_:)` queues a checkpoint; it is written, in one transaction with the deletion
/// of the log entries it covers, only once every one of those entries is committed, so no entry is
/// ever both in the image and in the log.
public actor EventStore {
    /// The schema this build reads and writes. Migrations only add: a release that needs a new
    /// table or column registers a new migration after the existing ones and never edits an old
    /// one, so an old database opens in a new release (see docs/storage.md).
    static let migrations: DatabaseMigrator = {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: log") { db in
            try db.execute(sql: """
                CREATE TABLE log (
                    sequence INTEGER PRIMARY KEY,
                    entry BLOB NOT NULL
                )
                """)
        }
        migrator.registerMigration("v2: checkpoint") { db in
            try db.execute(sql: """
                CREATE TABLE checkpoint (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    sequence INTEGER NOT NULL,
                    state_version INTEGER NOT NULL,
                    taken_at INTEGER NOT NULL
                );
                CREATE TABLE series (
                    id INTEGER PRIMARY KEY,
                    service TEXT NOT NULL,
                    operation TEXT NOT NULL,
                    status_class INTEGER NOT NULL
                );
                CREATE TABLE bucket (
                    series INTEGER NOT NULL,
                    resolution INTEGER NOT NULL,
                    start INTEGER NOT NULL,
                    aggregate BLOB NOT NULL,
                    PRIMARY KEY (series, resolution, start)
                ) WITHOUT ROWID;
                CREATE INDEX bucket_by_start ON bucket (resolution, start);
                CREATE TABLE idempotency_key (
                    client TEXT NOT NULL,
                    key TEXT NOT NULL,
                    sequence INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    receipt BLOB NOT NULL,
                    PRIMARY KEY (client, key)
                ) WITHOUT ROWID;
                CREATE INDEX idempotency_key_by_expiry ON idempotency_key (expires_at);
                """)
        }
        migrator.registerMigration("v3: replication") { db in
            // Replication chain heads, stored whole with each checkpoint. 64-bit ids and versions
            // are stored by bit pattern in SQLite's signed integers.
            try db.execute(sql: """
                CREATE TABLE origin (
                    origin INTEGER PRIMARY KEY,
                    version INTEGER NOT NULL,
                    current_as_of INTEGER NOT NULL
                )
                """)
        }
        migrator.registerMigration("v4: identity") { db in
            // The incarnation this store was created for: the node's origin follows the store,
            // so an empty store never runs under an old origin (`Incarnation`).
            try db.execute(sql: """
                CREATE TABLE identity (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    incarnation INTEGER NOT NULL
                )
                """)
        }
        migrator.registerMigration("v5: span fingerprints") { db in
            // Fingerprints of counted OTLP spans (trace id and span id), so a span retried after a
            // restart is still a duplicate. A checkpoint appends its new ones as one packed chunk
            // (fingerprint, expiry, ordinal: 24 bytes each) rather than a row each: at 100,000 spans
            // a second a row each was a million random B-tree inserts per checkpoint. A chunk is
            // deleted once everything in it has expired.
            try db.execute(sql: """
                CREATE TABLE span_fingerprint_chunk (
                    id INTEGER PRIMARY KEY,
                    expires_max INTEGER NOT NULL,
                    entries BLOB NOT NULL
                );
                CREATE INDEX span_fingerprint_chunk_by_expiry ON span_fingerprint_chunk (expires_max);
                """)
        }
        migrator.registerMigration("v6: metric streams") { db in
            // OTLP cumulative streams' last totals, so a point resent after a restart adds nothing.
            try db.execute(sql: """
                CREATE TABLE metric_stream (
                    stream INTEGER PRIMARY KEY,
                    last_seen INTEGER NOT NULL,
                    state BLOB NOT NULL
                );
                CREATE INDEX metric_stream_by_last_seen ON metric_stream (last_seen);
                """)
        }
        migrator.registerMigration("v7: own chain") { db in
            // Where the node's own replication chain stood at the checkpoint, so a restart
            // continues it (`OwnChain`); replaced whole by each checkpoint. `sequence` is the
            // checkpoint's: a row left by a checkpoint of an older build (a downgrade and back)
            // no longer matches and is ignored.
            try db.execute(sql: """
                CREATE TABLE own_chain (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    sequence INTEGER NOT NULL,
                    sealed INTEGER NOT NULL
                );
                CREATE TABLE own_batch (
                    version INTEGER PRIMARY KEY,
                    previous INTEGER NOT NULL,
                    wire INTEGER NOT NULL,
                    bytes BLOB NOT NULL
                );
                """)
        }
        migrator.registerMigration("v8: origin directory") { db in
            // Which origin each region runs as (`OriginDirectory`): the origins a region ran as
            // before are retired, and staleness leaves them out. Written whole with a checkpoint
            // when it changed.
            try db.execute(sql: """
                CREATE TABLE origin_directory (
                    origin INTEGER PRIMARY KEY,
                    region TEXT NOT NULL,
                    announced INTEGER NOT NULL
                )
                """)
        }
        return migrator
    }()

    /// The incarnation this store records, or nil (a new store, or one from before v4).
    public func incarnation() throws -> UInt64? {
        try self.pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT incarnation FROM identity WHERE id = 1").map { UInt64(bitPattern: $0) }
        }
    }

    /// Records the incarnation the store belongs to (once, before the node writes anything).
    public func record(incarnation: UInt64) throws {
        try self.pool.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO identity (id, incarnation) VALUES (1, ?)",
                           arguments: [Int64(bitPattern: incarnation)])
        }
    }

    public enum StoreError: Error, CustomStringConvertible {
        case failed(String)
        /// A stored row does not decode; `row` names the table and the key.
        case corrupt(row: String, reason: String)

        public var description: String {
            switch self {
            case .failed(let message): return "storage failed: \(message)"
            case .corrupt(let row, let reason): return "\(row) is corrupt: \(reason)"
            }
        }
    }

    private let pool: DatabasePool
    public nonisolated let path: String
    private var pending: [(sequence: UInt64, bytes: Data)] = []
    /// Checkpoints waiting for the log entries they cover, in the order they were taken.
    private var checkpoints: [EncodedCheckpoint] = []
    private var waiters: [(sequence: UInt64, continuation: CheckedContinuation<Void, Error>)] = []
    private var writing = false
    private var failure: StoreError?
    private let onFailure: @Sendable (StoreError) -> Void
    /// Told how long each transaction took: a group commit of log entries, a checkpoint, or both.
    private let onWrite: @Sendable (_ commit: Duration?, _ checkpoint: Duration?) -> Void

    /// The highest sequence such that it and every sequence below it are committed.
    ///
    /// Contiguous on purpose: the node's actor can append a later entry before an earlier one (it
    /// is re-entered while awaiting an append), and a commit of entry 6 must not let the answer
    /// for entry 5 go out before 5 is on disk.
    public private(set) var durableSequence: UInt64 = 0
    /// Sequences committed above `durableSequence`, waiting for the gap below them to close.
    private var committedAhead: Set<UInt64> = []
    /// Transactions committed, and entries in them: their ratio is the group-commit batch size.
    public private(set) var commits: UInt64 = 0
    public private(set) var committedEntries: UInt64 = 0
    /// Total time spent in commits, for the mean group-commit latency.
    public private(set) var commitDuration: Duration = .zero
    /// The largest number of entries waiting for a transaction.
    public var pendingCount: Int { self.pending.count }
    /// Checkpoints written, and the time spent writing them.
    public private(set) var checkpointsWritten: UInt64 = 0
    public private(set) var checkpointDuration: Duration = .zero
    /// The log sequence the stored image covers.
    public private(set) var checkpointSequence: UInt64 = 0
    /// Log entries through this sequence are deleted. Entries the image covers are deleted lazily,
    /// a few at a time when the writer is idle: deleting a checkpoint interval's log at once (tens
    /// of MB of blobs, whose overflow pages SQLite walks to free them) stalled commits for a second.
    private var trimmedThrough: UInt64 = 0
    /// Most covered log entries deleted per trimming transaction.
    static let trimEntriesMax = 64

    /// Opens (creating if needed) the store in `directory`.
    public init(directory: String, onFailure: @escaping @Sendable (StoreError) -> Void = { _ in },
                onWrite: @escaping @Sendable (_ commit: Duration?, _ checkpoint: Duration?) -> Void = { _, _ in }) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw StoreError.failed("data_dir \(directory) cannot be created: \(error.localizedDescription)")
        }
        guard FileManager.default.isWritableFile(atPath: directory) else {
            throw StoreError.failed("data_dir \(directory) is not writable by this process")
        }
        self.path = (directory as NSString).appendingPathComponent("tally.sqlite")
        var configuration = Configuration()
        // Another reader of the file (a backup, `sqlite3` by an operator) may hold a lock for a
        // moment: wait for it instead of failing the store.
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            // FULL: a commit is on disk when it returns, power loss included (WAL mode).
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            self.pool = try DatabasePool(path: self.path, configuration: configuration)
            try Self.migrations.migrate(self.pool)
        } catch {
            throw StoreError.failed("the store \(self.path) cannot be opened: \(error)")
        }
        self.onFailure = onFailure
        self.onWrite = onWrite
    }

    /// Reads the stored image and the log after it, for recovery at start-up: restore the image
    /// (`Replica(config:restoring:)`), then replay the entries in order.
    public func recover() throws -> (image: ReplicaSnapshot, log: [LogEntry]) {
        let (image, log, trimmed) = try self.pool.read { db in
            let image = try Self.readImage(db)
            let rows = try Row.fetchCursor(
                db, sql: "SELECT sequence, entry FROM log WHERE sequence > ? ORDER BY sequence",
                arguments: [Int64(image.sequence)])
            var log: [LogEntry] = []
            while let row = try rows.next() {
                let sequence: Int64 = row["sequence"]
                log.append(try Self.decode(LogEntry.self, row["entry"], row: "log entry \(sequence)"))
            }
            let first = try Int64.fetchOne(db, sql: "SELECT MIN(sequence) FROM log") ?? Int64(image.sequence) + 1
            return (image, log, UInt64(max(first, 1) - 1))
        }
        self.checkpointSequence = image.sequence
        self.trimmedThrough = trimmed
        self.durableSequence = log.last?.sequence ?? image.sequence
        return (image, log)
    }

    private static func readImage(_ db: Database) throws -> ReplicaSnapshot {
        var image = ReplicaSnapshot()
        // Rows are input like a peer's bytes: a damaged or hand-edited file is refused, row named.
        func time(_ millis: Int64, _ row: String) throws -> Timestamp {
            let time = Timestamp(millisecondsSinceEpoch: millis)
            guard time.isValid else { throw StoreError.corrupt(row: row, reason: "time \(millis) ms is out of range") }
            return time
        }
        if let row = try Row.fetchOne(db, sql: "SELECT sequence, state_version, taken_at FROM checkpoint WHERE id = 1") {
            let sequence: Int64 = row["sequence"]
            let version: Int64 = row["state_version"]
            guard sequence >= 0, version >= 0 else {
                throw StoreError.corrupt(row: "checkpoint", reason: "negative sequence \(sequence) or version \(version)")
            }
            image.sequence = UInt64(sequence)
            image.stateVersion = UInt64(version)
            image.takenAt = try time(row["taken_at"], "checkpoint")
        }
        let series = try Row.fetchCursor(db, sql: "SELECT id, service, operation, status_class FROM series ORDER BY id")
        while let row = try series.next() {
            let id: Int64 = row["id"]
            let rawClass: Int64 = row["status_class"]
            guard id == image.series.count, let statusClass = StatusClass(rawValue: UInt8(clamping: rawClass)) else {
                throw StoreError.corrupt(row: "series \(id)", reason: "expected id \(image.series.count) and a status class 1...5, found status class \(rawClass)")
            }
            image.series.append(SeriesKey(service: row["service"], operation: row["operation"], statusClass: statusClass))
        }
        let buckets = try Row.fetchCursor(db, sql: "SELECT series, resolution, start, aggregate FROM bucket")
        while let row = try buckets.next() {
            let series: Int64 = row["series"]
            let rawResolution: Int64 = row["resolution"]
            let start: Int64 = row["start"]
            let name = "bucket (series \(series), resolution \(rawResolution), start \(start))"
            guard series >= 0, series < image.series.count,
                let resolution = Resolution(rawValue: Int(rawResolution))
            else { throw StoreError.corrupt(row: name, reason: "unknown series or resolution") }
            guard Timestamp.validMillis.contains(start), start % resolution.width.milliseconds == 0 else {
                throw StoreError.corrupt(row: name, reason: "start is not a \(resolution) boundary in range")
            }
            image.store(try Self.decode(BucketAggregate.self, row["aggregate"], row: name),
                        at: BucketAddress(series: Int(series), resolution: resolution, start: start))
        }
        let origins = try Row.fetchCursor(db, sql: "SELECT origin, version, current_as_of FROM origin")
        while let row = try origins.next() {
            image.origins.append(OriginVersion(
                origin: ReplicaID(UInt64(bitPattern: row["origin"])), version: UInt64(bitPattern: row["version"]),
                currentAsOf: try time(row["current_as_of"], "origin")))
        }
        image.origins.sort { $0.origin < $1.origin }
        let directory = try Row.fetchCursor(db, sql: "SELECT origin, region, announced FROM origin_directory")
        while let row = try directory.next() {
            let origin = ReplicaID(UInt64(bitPattern: row["origin"]))
            let region: String = row["region"]
            guard !region.isEmpty, region.utf8.count <= 255 else {
                throw StoreError.corrupt(row: "origin_directory (origin \(origin))", reason: "region \"\(region.prefix(64))\" is not a region name")
            }
            image.originDirectory.append(OriginDirectory.Entry(
                origin: origin, region: region, announced: UInt64(bitPattern: row["announced"])))
        }
        if let row = try Row.fetchOne(db, sql: "SELECT sequence, sealed FROM own_chain WHERE id = 1"),
            UInt64(bitPattern: row["sequence"]) == image.sequence
        {
            var chain = OwnChain(sequence: image.sequence, sealed: UInt64(bitPattern: row["sealed"]), batches: [], keepFrom: 0)
            let batches = try Row.fetchCursor(db, sql: "SELECT version, previous, wire, bytes FROM own_batch ORDER BY version")
            while let row = try batches.next() {
                let version = UInt64(bitPattern: row["version"])
                let name = "own batch \(version)"
                let rawWire: Int64 = row["wire"]
                let bytes = [UInt8](row["bytes"] as Data)
                guard let wire = UInt8(exactly: rawWire),
                    ReplicationMessage.protocolVersions.contains(wire)
                else { throw StoreError.corrupt(row: name, reason: "wire version \(rawWire) is not one this build reads") }
                let batch: DeltaBatch
                do { batch = try DeltaBatch(encoded: bytes[...], wireVersion: wire) } catch {
                    throw StoreError.corrupt(row: name, reason: "\(error)")
                }
                guard batch.version == version, batch.previous == UInt64(bitPattern: row["previous"]) else {
                    throw StoreError.corrupt(row: name, reason: "its bytes are batch \(batch.version) after \(batch.previous)")
                }
                chain.batches.append(StoredBatch(version: version, previous: batch.previous, wire: wire, bytes: bytes))
            }
            image.ownChain = chain
        }
        let keys = try Row.fetchCursor(db, sql: "SELECT client, key, expires_at, receipt FROM idempotency_key")
        while let row = try keys.next() {
            let client: String = row["client"]
            let key: String = row["key"]
            let receipt = try Self.decode(IngestReceipt.self, row["receipt"], row: "idempotency key \(client)/\(key)")
            let record = IdempotencyRecord(
                client: client, key: key, receipt: receipt,
                expiresAt: try time(row["expires_at"], "idempotency key \(client)/\(key)"))
            image.idempotencyKeys[record.name] = record
        }
        let streams = try Row.fetchCursor(db, sql: "SELECT stream, state FROM metric_stream")
        while let row = try streams.next() {
            let stream = UInt64(bitPattern: row["stream"])
            image.metricStreams[stream] = try Self.decode(StreamState.self, row["state"], row: "metric stream \(stream)")
        }
        // Chunks in the order they were written: a fingerprint counted again after it expired is
        // in a later chunk, whose entry wins. Entries expired by the image's time are left out, as
        // `ReplicaSnapshot.apply` leaves them out.
        let chunks = try Row.fetchCursor(db, sql: "SELECT id, entries FROM span_fingerprint_chunk ORDER BY id")
        while let row = try chunks.next() {
            let id: Int64 = row["id"]
            guard let data = row["entries"] as Data?, data.count % 24 == 0 else {
                throw StoreError.corrupt(row: "span fingerprint chunk \(id)", reason: "not a whole number of 24-byte entries")
            }
            let bytes = [UInt8](data)
            for offset in stride(from: 0, to: bytes.count, by: 24) {
                func word(_ at: Int) -> UInt64 {
                    (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + at + $1]) << (8 * UInt64($1)) }
                }
                let fingerprint = word(0)
                let expiresAt = try time(Int64(bitPattern: word(8)), "span fingerprint chunk \(id)")
                if let takenAt = image.takenAt, expiresAt <= takenAt { continue }
                image.spanFingerprints[fingerprint] = SpanFingerprint(
                    fingerprint: fingerprint, expiresAt: expiresAt, ordinal: word(16))
            }
        }
        return image
    }

    private static func decode<Value: VersionedEncoding>(_ type: Value.Type, _ data: Data?, row: String) throws -> Value {
        guard let data else { throw StoreError.corrupt(row: row, reason: "no value") }
        do {
            return try Value(encoded: [UInt8](data))
        } catch {
            throw StoreError.corrupt(row: row, reason: "\(error)")
        }
    }

    /// Queues `entry` for the next transaction.
    public func append(_ entry: LogEntry) throws {
        if let failure = self.failure { throw failure }
        self.pending.append((entry.sequence, Data(entry.encoded())))
        self.startWriting()
    }

    /// Queues a checkpoint; it is written once every log entry it covers is committed.
    /// Checkpoints MUST be passed in the order they were taken.
    public func store(_ checkpoint: EncodedCheckpoint) throws {
        if let failure = self.failure { throw failure }
        precondition(checkpoint.sequence >= (self.checkpoints.last?.sequence ?? self.checkpointSequence),
                     "checkpoint \(checkpoint.sequence) stored out of order")
        self.checkpoints.append(checkpoint)
        self.startWriting()
    }

    private func startWriting() {
        if !self.writing {
            self.writing = true
            Task { await self.writeLoop() }
        }
    }

    /// Returns once everything queued so far (log entries and checkpoints) is written, or the store
    /// failed: for a clean stop.
    public func flush() async {
        while self.failure == nil && (self.writing || !self.pending.isEmpty || !self.checkpoints.isEmpty) {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Returns once every entry through `sequence` is committed.
    public func waitDurable(through sequence: UInt64) async throws {
        if let failure = self.failure { throw failure }
        if sequence <= self.durableSequence { return }
        try await withCheckedThrowingContinuation { continuation in
            self.waiters.append((sequence, continuation))
        }
    }

    private func writeLoop() async {
        while self.failure == nil {
            if self.pending.isEmpty && self.trimmedThrough < self.checkpointSequence
                && (self.checkpoints.first?.sequence ?? .max) > self.durableSequence
            {
                // Idle, with covered log left: delete a little of it, so that appends never wait long.
                await self.trimLog()
                continue
            }
            let batch = self.pending
            // Checkpoints whose entries are all committed, counting those this transaction commits.
            var covered = self.durableSequence
            var ahead = self.committedAhead
            for (sequence, _) in batch { ahead.insert(sequence) }
            while ahead.remove(covered + 1) != nil { covered += 1 }
            let ready = self.checkpoints.prefix { $0.sequence <= covered }
            if batch.isEmpty && ready.isEmpty { break }
            self.pending = []
            self.checkpoints.removeFirst(ready.count)
            let start = ContinuousClock.now
            do {
                try await self.pool.write { db in
                    let insert = try db.cachedStatement(sql: "INSERT INTO log (sequence, entry) VALUES (?, ?)")
                    for (sequence, bytes) in batch {
                        try insert.execute(arguments: [Int64(sequence), bytes])
                    }
                    for checkpoint in ready { try checkpoint.write(db) }
                }
            } catch {
                self.fail(.failed("\(error)"))
                break
            }
            let elapsed = ContinuousClock.now - start
            if !batch.isEmpty {
                self.commitDuration += elapsed
                self.commits += 1
                self.committedEntries += UInt64(batch.count)
            }
            if let last = ready.last {
                self.checkpointsWritten += UInt64(ready.count)
                self.checkpointDuration += elapsed
                self.checkpointSequence = last.sequence
            }
            self.onWrite(batch.isEmpty ? nil : elapsed, ready.isEmpty ? nil : elapsed)
            for (sequence, _) in batch { self.committedAhead.insert(sequence) }
            while self.committedAhead.remove(self.durableSequence + 1) != nil { self.durableSequence += 1 }
            let released = self.waiters.filter { $0.sequence <= self.durableSequence }
            self.waiters.removeAll { $0.sequence <= self.durableSequence }
            for waiter in released { waiter.continuation.resume() }
        }
        self.writing = false
    }

    /// Deletes up to `trimEntriesMax` log entries that the stored image covers, in a transaction of their own.
    private func trimLog() async {
        let through = min(self.checkpointSequence, self.trimmedThrough + UInt64(Self.trimEntriesMax))
        do {
            try await self.pool.write { db in
                try db.execute(sql: "DELETE FROM log WHERE sequence <= ?", arguments: [Int64(through)])
            }
            self.trimmedThrough = through
        } catch {
            self.fail(.failed("\(error)"))
        }
    }

    private func fail(_ error: StoreError) {
        self.failure = error
        for waiter in self.waiters { waiter.continuation.resume(throwing: error) }
        self.waiters = []
        self.pending = []
        self.checkpoints = []
        self.onFailure(error)
    }

    /// The database file's size plus its WAL, in bytes.
    public nonisolated func sizeBytes() -> Int64 {
        let files = [self.path, self.path + "-wal"]
        return files.reduce(0) { total, file in
            let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)?.int64Value
            return total + (size ?? 0)  // a missing WAL file is size 0
        }
    }
}

/// A replica `Checkpoint` in its stored form: every aggregate and receipt already in its canonical
/// encoding, so the writer's transaction only binds bytes.
public struct EncodedCheckpoint: Sendable {
    public let sequence: UInt64
    let stateVersion: UInt64
    let takenAt: Int64
    let firstNewSeries: Int
    let newSeries: [SeriesKey]
    let buckets: [(series: Int64, resolution: Int64, start: Int64, aggregate: Data)]
    let keys: [(client: String, key: String, sequence: Int64, expiresAt: Int64, receipt: Data)]
    /// The new span fingerprints, packed (fingerprint, expiry, ordinal: u64 LE each), and the latest expiry.
    let spans: (entries: Data, expiresMax: Int64)?
    let streams: [(stream: Int64, lastSeen: Int64, state: Data)]
    let streamsSeenAfter: Int64
    let expiredBefore: [Int64]
    let origins: [OriginVersion]
    let ownChain: OwnChain?
    let originDirectory: [OriginDirectory.Entry]?
    /// Time buckets it writes.
    public var bucketCount: Int { self.buckets.count }

    /// Encodes off the caller's actor: a checkpoint can hold thousands of buckets.
    @concurrent
    public static func encode(_ checkpoint: Checkpoint) async -> EncodedCheckpoint {
        EncodedCheckpoint(checkpoint)
    }

    public init(_ checkpoint: Checkpoint) {
        self.sequence = checkpoint.sequence
        self.stateVersion = checkpoint.stateVersion
        self.takenAt = checkpoint.takenAt.millisecondsSinceEpoch
        self.firstNewSeries = checkpoint.firstNewSeries
        self.newSeries = checkpoint.newSeries
        self.buckets = checkpoint.buckets.map { bucket in
            (Int64(bucket.address.series), Int64(bucket.address.resolution.rawValue), bucket.address.start,
             Data(bucket.aggregate.encoded()))
        }
        self.keys = checkpoint.idempotencyKeys.map { record in
            (record.client, record.key, Int64(record.receipt.sequence), record.expiresAt.millisecondsSinceEpoch,
             Data(record.receipt.encoded()))
        }
        if checkpoint.spanFingerprints.isEmpty {
            self.spans = nil
        } else {
            var packed = [UInt8]()
            packed.reserveCapacity(checkpoint.spanFingerprints.count * 24)
            for span in checkpoint.spanFingerprints {
                for word in [span.fingerprint, UInt64(bitPattern: span.expiresAt.millisecondsSinceEpoch), span.ordinal] {
                    withUnsafeBytes(of: word.littleEndian) { packed += $0 }
                }
            }
            let latest = checkpoint.spanFingerprints.map(\.expiresAt.millisecondsSinceEpoch).max() ?? 0
            self.spans = (Data(packed), latest)
        }
        self.streams = checkpoint.metricStreams.map { update in
            (Int64(bitPattern: update.stream), update.state.lastSeen.millisecondsSinceEpoch, Data(update.state.encoded()))
        }
        self.streamsSeenAfter = checkpoint.metricStreamsSeenAfter.millisecondsSinceEpoch
        self.expiredBefore = checkpoint.expiredBefore
        self.origins = checkpoint.origins
        self.ownChain = checkpoint.ownChain
        self.originDirectory = checkpoint.originDirectory
    }

    /// Stores it as `ReplicaSnapshot.apply` would. The log entries it covers are left for the
    /// store to delete lazily; recovery reads only the entries after it.
    func write(_ db: Database) throws {
        let insertSeries = try db.cachedStatement(
            sql: "INSERT INTO series (id, service, operation, status_class) VALUES (?, ?, ?, ?)")
        for (offset, key) in self.newSeries.enumerated() {
            try insertSeries.execute(arguments: [
                Int64(self.firstNewSeries + offset), key.service, key.operation, Int64(key.statusClass.rawValue),
            ])
        }
        let upsertBucket = try db.cachedStatement(
            sql: "INSERT OR REPLACE INTO bucket (series, resolution, start, aggregate) VALUES (?, ?, ?, ?)")
        for bucket in self.buckets {
            try upsertBucket.execute(arguments: [bucket.series, bucket.resolution, bucket.start, bucket.aggregate])
        }
        for (resolution, cutoff) in self.expiredBefore.enumerated() {
            try db.execute(sql: "DELETE FROM bucket WHERE resolution = ? AND start < ?",
                           arguments: [Int64(resolution), cutoff])
        }
        try db.execute(sql: "DELETE FROM idempotency_key WHERE expires_at <= ?", arguments: [self.takenAt])
        let upsertKey = try db.cachedStatement(sql: """
            INSERT OR REPLACE INTO idempotency_key (client, key, sequence, expires_at, receipt) VALUES (?, ?, ?, ?, ?)
            """)
        for key in self.keys {
            try upsertKey.execute(arguments: [key.client, key.key, key.sequence, key.expiresAt, key.receipt])
        }
        try db.execute(sql: "DELETE FROM span_fingerprint_chunk WHERE expires_max <= ?", arguments: [self.takenAt])
        if let spans = self.spans {
            try db.execute(sql: "INSERT INTO span_fingerprint_chunk (expires_max, entries) VALUES (?, ?)",
                           arguments: [spans.expiresMax, spans.entries])
        }
        try db.execute(sql: "DELETE FROM metric_stream WHERE last_seen < ?", arguments: [self.streamsSeenAfter])
        let upsertStream = try db.cachedStatement(
            sql: "INSERT OR REPLACE INTO metric_stream (stream, last_seen, state) VALUES (?, ?, ?)")
        for stream in self.streams {
            try upsertStream.execute(arguments: [stream.stream, stream.lastSeen, stream.state])
        }
        try db.execute(sql: "DELETE FROM origin")
        for origin in self.origins {
            try db.execute(sql: "INSERT INTO origin (origin, version, current_as_of) VALUES (?, ?, ?)", arguments: [
                Int64(bitPattern: origin.origin.rawValue), Int64(bitPattern: origin.version),
                origin.currentAsOf.millisecondsSinceEpoch,
            ])
        }
        if let directory = self.originDirectory {
            try db.execute(sql: "DELETE FROM origin_directory")
            let insert = try db.cachedStatement(
                sql: "INSERT INTO origin_directory (origin, region, announced) VALUES (?, ?, ?)")
            for entry in directory {
                try insert.execute(arguments: [Int64(bitPattern: entry.origin.rawValue), entry.region,
                                               Int64(bitPattern: entry.announced)])
            }
        }
        // As `OwnChain.apply`: the batches the buffer dropped go, the new ones are added. Versions
        // are stored by bit pattern; their order holds while epochs stay below 2^31 (one a restart).
        if let chain = self.ownChain {
            try db.execute(sql: "INSERT OR REPLACE INTO own_chain (id, sequence, sealed) VALUES (1, ?, ?)",
                           arguments: [Int64(bitPattern: chain.sequence), Int64(bitPattern: chain.sealed)])
            try db.execute(sql: "DELETE FROM own_batch WHERE version < ?", arguments: [Int64(bitPattern: chain.keepFrom)])
            if let first = chain.batches.first {
                try db.execute(sql: "DELETE FROM own_batch WHERE version >= ?", arguments: [Int64(bitPattern: first.version)])
            }
            let insert = try db.cachedStatement(
                sql: "INSERT INTO own_batch (version, previous, wire, bytes) VALUES (?, ?, ?, ?)")
            for batch in chain.batches {
                try insert.execute(arguments: [Int64(bitPattern: batch.version), Int64(bitPattern: batch.previous),
                                               Int64(batch.wire), Data(batch.bytes)])
            }
        } else {
            try db.execute(sql: "DELETE FROM own_chain")
            try db.execute(sql: "DELETE FROM own_batch")
        }
        try db.execute(sql: """
            INSERT OR REPLACE INTO checkpoint (id, sequence, state_version, taken_at) VALUES (1, ?, ?, ?)
            """, arguments: [Int64(self.sequence), Int64(self.stateVersion), self.takenAt])
    }
}

// MARK: - Backup and restore

extension EventStore {
    /// What a backup holds, for the operator: the checkpoint it carries and the log after it.
    public struct BackupSummary: Sendable, Equatable, CustomStringConvertible {
        public var checkpointSequence: UInt64
        public var checkpointTakenAt: Timestamp?
        public var logEntriesAfterCheckpoint: Int
        public var series: Int
        public var buckets: Int
        public var incarnation: UInt64?
        public var bytes: Int64

        public var description: String {
            "checkpoint \(self.checkpointSequence)"
                + (self.checkpointTakenAt.map { " taken at \(RFC3339.format($0))" } ?? " (none yet)")
                + ", \(self.logEntriesAfterCheckpoint) log entries after it, \(self.series) series, "
                + "\(self.buckets) time buckets, incarnation \(self.incarnation.map(String.init) ?? "none"), \(self.bytes) bytes"
        }
    }

    /// The name of the store's file in a data directory.
    public static func storePath(directory: String) -> String {
        (directory as NSString).appendingPathComponent("tally.sqlite")
    }

    /// Copies the store in `directory` to the new file `destination`, consistent while a node
    /// writes to it: SQLite's online backup, in one read transaction of the source, so the copy is
    /// the store as of one commit (a checkpoint and the log after it, never half of a transaction).
    public static func backup(directory: String, to destination: String) throws -> BackupSummary {
        let source = Self.storePath(directory: directory)
        guard FileManager.default.fileExists(atPath: source) else {
            throw StoreError.failed("no store at \(source): is data_dir right?")
        }
        guard !FileManager.default.fileExists(atPath: destination) else {
            throw StoreError.failed("\(destination) exists: a backup is written to a new file")
        }
        do {
            var configuration = Configuration()
            configuration.busyMode = .timeout(5)
            let from = try DatabaseQueue(path: source, configuration: configuration)
            try Self.checkIsStore(from, path: source)
            let to = try DatabaseQueue(path: destination)
            try from.backup(to: to)
            try to.close()
            try from.close()
        } catch let error as StoreError {
            try? FileManager.default.removeItem(atPath: destination)
            throw error
        } catch {
            try? FileManager.default.removeItem(atPath: destination)
            throw StoreError.failed("backup of \(source) to \(destination) failed: \(error)")
        }
        return try Self.summary(ofStoreAt: destination)
    }

    /// Restores the backup file `backup` into `directory` as a new incarnation (`Restore` says
    /// why): the copy keeps the image, and drops the own chain, the recorded incarnation and, for a
    /// node with peers (`clustered`), the log after the checkpoint; the store and the identity file
    /// then record the new incarnation.
    /// Refuses a directory that holds a store unless `replacing`, and a backup that is not a
    /// store this build reads. Returns the backup's summary (before the restore dropped anything).
    public static func restore(from backup: String, into directory: String, region: String, node: String,
                               clustered: Bool, replacing: Bool, fresh: UInt64)
        throws -> (backup: BackupSummary, incarnation: UInt64, logKept: Bool)
    {
        let destination = Self.storePath(directory: directory)
        let summary = try Self.summary(ofStoreAt: backup)
        let manager = FileManager.default
        if manager.fileExists(atPath: destination) {
            guard replacing else {
                throw StoreError.failed("\(destination) exists: move it away, or restore with --replace to delete it")
            }
        }
        do {
            try manager.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for suffix in ["", "-wal", "-shm"] where manager.fileExists(atPath: destination + suffix) {
                try manager.removeItem(atPath: destination + suffix)
            }
            let incarnation = Restore.incarnation(replacing: summary.incarnation, fresh: fresh)
            // The backup's origin, from the store's incarnation (a store from before stores recorded
            // one names none: no origin matches, and every current_as_of stays as it was).
            let old = ReplicaID(region: region, node: node, incarnation: summary.incarnation ?? 0)
            var readOnly = Configuration()
            readOnly.readonly = true
            let from = try DatabaseQueue(path: backup, configuration: readOnly)
            let to = try DatabaseQueue(path: destination)
            try from.backup(to: to)
            try from.close()
            try Self.migrations.migrate(to)  // a backup from an older build gets this build's tables
            let keepLog = Restore.keepsLog(clustered: clustered)
            try to.write { db in
                if !keepLog { try db.execute(sql: "DELETE FROM log") }
                try db.execute(sql: """
                    DELETE FROM own_chain;
                    DELETE FROM own_batch;
                    INSERT OR REPLACE INTO identity (id, incarnation) VALUES (1, ?);
                    UPDATE origin SET current_as_of = max(current_as_of, (SELECT taken_at FROM checkpoint WHERE id = 1))
                        WHERE origin = ? AND EXISTS (SELECT 1 FROM checkpoint WHERE id = 1);
                    INSERT OR IGNORE INTO origin_directory (origin, region, announced) VALUES (?, ?, 0);
                    """, arguments: [Int64(bitPattern: incarnation), Int64(bitPattern: old.rawValue),
                                     Int64(bitPattern: old.rawValue), region])
            }
            try to.close()
            let identityFile = (directory as NSString).appendingPathComponent("incarnation")
            try "\(incarnation)\n".write(toFile: identityFile, atomically: true, encoding: .utf8)
            return (summary, incarnation, keepLog)
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError.failed("restore of \(backup) into \(directory) failed: \(error)")
        }
    }

    /// The summary of the store file at `path`, after checking that it is a store this build
    /// reads and that SQLite finds it intact.
    public static func summary(ofStoreAt path: String) throws -> BackupSummary {
        guard FileManager.default.fileExists(atPath: path) else { throw StoreError.failed("no file at \(path)") }
        do {
            var configuration = Configuration()
            configuration.readonly = true
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            defer { try? queue.close() }
            try Self.checkIsStore(queue, path: path)
            return try queue.read { db in
                let check = try String.fetchAll(db, sql: "PRAGMA quick_check")
                guard check == ["ok"] else {
                    throw StoreError.corrupt(row: "\(path)", reason: "SQLite's quick_check: \(check.prefix(5).joined(separator: "; "))")
                }
                let checkpoint = try Row.fetchOne(db, sql: "SELECT sequence, taken_at FROM checkpoint WHERE id = 1")
                let sequence = checkpoint.map { UInt64(bitPattern: $0["sequence"]) } ?? 0
                let takenAt = checkpoint.map { Timestamp(millisecondsSinceEpoch: $0["taken_at"] as Int64) }
                return BackupSummary(
                    checkpointSequence: sequence, checkpointTakenAt: takenAt,
                    logEntriesAfterCheckpoint: try Int.fetchOne(db, sql: "SELECT count(*) FROM log WHERE sequence > ?",
                                                                arguments: [Int64(bitPattern: sequence)]) ?? 0,
                    series: try Int.fetchOne(db, sql: "SELECT count(*) FROM series") ?? 0,
                    buckets: try Int.fetchOne(db, sql: "SELECT count(*) FROM bucket") ?? 0,
                    incarnation: try Int64.fetchOne(db, sql: "SELECT incarnation FROM identity WHERE id = 1")
                        .map { UInt64(bitPattern: $0) },
                    bytes: (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64) ?? 0)
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError.failed("\(path) is not a readable store: \(error)")
        }
    }

    /// A Tally store whose every migration this build knows (a store from a newer build may hold
    /// tables this one would not restore; one from an older build is migrated as it is restored).
    private static func checkIsStore(_ queue: DatabaseQueue, path: String) throws {
        let applied: [String]
        do {
            applied = try queue.read { db in
                guard try db.tableExists("grdb_migrations") else { return [] }
                return try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")
            }
        } catch {
            throw StoreError.failed("\(path) is not an SQLite database: \(error)")
        }
        let known = Set(Self.migrations.migrations)
        guard !applied.isEmpty else { throw StoreError.failed("\(path) is not a Tally store (no migrations)") }
        let unknown = applied.filter { !known.contains($0) }
        guard unknown.isEmpty else {
            throw StoreError.failed("\(path) was written by a newer build (migrations \(unknown)); restore it with that build")
        }
    }
}
