/// Answers remembered by idempotency key, so that a retried batch gets its first answer again and
/// is counted once.
///
/// Bounded twice: keys expire after the window, and past `capacity` the oldest are forgotten
/// first (a retry of a forgotten key would be counted again, so the capacity is sized well above
/// a window's worth of batches; the node exports how many were forgotten early).
struct IdempotencyCache: Sendable {
    typealias Key = IdempotencyRecord.Name
    typealias Record = IdempotencyRecord

    private var memory: ExpiringMemory<Key, IngestReceipt>

    init(capacity: Int) {
        self.memory = ExpiringMemory(capacity: capacity)
    }

    var capacity: Int { self.memory.capacity }
    var count: Int { self.memory.count }
    var evictedEarly: UInt64 { self.memory.evictedEarly }

    func receipt(client: String, key: String) -> IngestReceipt? {
        self.memory[Key(client: client, key: key)]
    }

    mutating func insert(client: String, key: String, receipt: IngestReceipt, expiresAt: Timestamp) {
        self.memory.insert(Key(client: client, key: key), receipt, expiresAt: expiresAt)
    }

    /// Forgets keys whose window has ended, oldest first.
    mutating func expire(now: Timestamp) { self.memory.expire(now: now) }

    /// The live keys remembered since the last call, oldest first: what a checkpoint must add.
    mutating func takeUnsaved() -> [Record] { self.memory.takeUnsaved().map(Self.record) }

    /// Every live key, oldest first.
    var records: [Record] { self.memory.entries.map(Self.record) }

    /// Marks everything remembered so far as saved (after a restore from a checkpoint).
    mutating func markSaved() { self.memory.markSaved() }

    private static func record(_ entry: ExpiringMemory<Key, IngestReceipt>.Remembered) -> Record {
        Record(client: entry.key.client, key: entry.key.key, receipt: entry.value, expiresAt: entry.expiresAt)
    }
}

/// A remembered answer to a batch with an idempotency key, as a checkpoint stores it.
public struct IdempotencyRecord: Sendable, Equatable {
    /// A key is scoped to its client: two clients may use the same key.
    public struct Name: Hashable, Sendable {
        public var client: String
        public var key: String

        public init(client: String, key: String) {
            self.client = client
            self.key = key
        }
    }

    public var name: Name { Name(client: self.client, key: self.key) }
    public var client: String
    public var key: String
    public var receipt: IngestReceipt
    public var expiresAt: Timestamp

    public init(client: String, key: String, receipt: IngestReceipt, expiresAt: Timestamp) {
        self.client = client
        self.key = key
        self.receipt = receipt
        self.expiresAt = expiresAt
    }
}
