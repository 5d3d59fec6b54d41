import Foundation
import GRDB
import TallyAggregates
import TallyReplica

/// The node's durable log: every accepted batch's `LogEntry`, in SQLite (WAL mode, synchronous
/// FULL), written with group commit.
///
/// Appends queue up while a transaction is being written; the next transaction takes all of them,
/// so under load many batches share one fsync. `waitDurable(through:)` returns once every entry up
/// to that sequence is committed: the node delivers an acknowledgement only then.
///
/// Failure model: a failed write leaves the in-memory replica ahead of the disk, with events that
/// were never acknowledged but that a retry with the same idempotency key would be told were kept.
/// The store therefore fails stop: it refuses everything from then on and calls `onFailure`, and
/// the node exits; a restart rebuilds exactly the durable state from the log.
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
        return migrator
    }()

    public enum StoreError: Error, CustomStringConvertible {
        case failed(String)
        case corrupt(sequence: Int64, DecodeError)

        public var description: String {
            switch self {
            case .failed(let message): return "storage failed: \(message)"
            case .corrupt(let sequence, let error): return "log entry \(sequence) is corrupt: \(error)"
            }
        }
    }

    private let pool: DatabasePool
    public nonisolated let path: String
    private var pending: [(sequence: UInt64, bytes: Data)] = []
    private var waiters: [(sequence: UInt64, continuation: CheckedContinuation<Void, Error>)] = []
    private var writing = false
    private var failure: StoreError?
    private let onFailure: @Sendable (StoreError) -> Void

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

    /// Opens (creating if needed) the store in `directory`.
    public init(directory: String, onFailure: @escaping @Sendable (StoreError) -> Void = { _ in }) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        self.path = (directory as NSString).appendingPathComponent("tally.sqlite")
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            // FULL: a commit is on disk when it returns, power loss included (WAL mode).
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        self.pool = try DatabasePool(path: self.path, configuration: configuration)
        try Self.migrations.migrate(self.pool)
        self.onFailure = onFailure
    }

    /// Reads every log entry in sequence order, for replay at start-up.
    public func readLog() throws -> [LogEntry] {
        let rows = try self.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT sequence, entry FROM log ORDER BY sequence")
        }
        var entries: [LogEntry] = []
        entries.reserveCapacity(rows.count)
        for row in rows {
            let sequence: Int64 = row["sequence"]
            let data: Data = row["entry"]
            do {
                entries.append(try LogEntry(encoded: [UInt8](data)))
            } catch {
                throw StoreError.corrupt(sequence: sequence, error)
            }
        }
        self.durableSequence = entries.last?.sequence ?? 0
        return entries
    }

    /// Queues `entry` for the next transaction.
    public func append(_ entry: LogEntry) throws {
        if let failure = self.failure { throw failure }
        self.pending.append((entry.sequence, Data(entry.encoded())))
        if !self.writing {
            self.writing = true
            Task { await self.writeLoop() }
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
        while !self.pending.isEmpty && self.failure == nil {
            let batch = self.pending
            self.pending = []
            let start = ContinuousClock.now
            do {
                try await self.pool.write { db in
                    for (sequence, bytes) in batch {
                        try db.execute(sql: "INSERT INTO log (sequence, entry) VALUES (?, ?)",
                                       arguments: [Int64(sequence), bytes])
                    }
                }
            } catch {
                self.fail(.failed("\(error)"))
                break
            }
            self.commitDuration += ContinuousClock.now - start
            self.commits += 1
            self.committedEntries += UInt64(batch.count)
            for (sequence, _) in batch { self.committedAhead.insert(sequence) }
            while self.committedAhead.remove(self.durableSequence + 1) != nil { self.durableSequence += 1 }
            let ready = self.waiters.filter { $0.sequence <= self.durableSequence }
            self.waiters.removeAll { $0.sequence <= self.durableSequence }
            for waiter in ready { waiter.continuation.resume() }
        }
        self.writing = false
    }

    private func fail(_ error: StoreError) {
        self.failure = error
        for waiter in self.waiters { waiter.continuation.resume(throwing: error) }
        self.waiters = []
        self.pending = []
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
