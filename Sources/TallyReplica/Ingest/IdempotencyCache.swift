/// Answers remembered by idempotency key, so that a retried batch gets its first answer again and
/// is counted once.
///
/// Bounded twice: keys expire after the window, and past `capacity` the oldest are forgotten
/// first (a retry of a forgotten key would be counted again, so the capacity is sized well above
/// a window's worth of batches; the node exports how many were forgotten early).
struct IdempotencyCache: Sendable {
    typealias Key = IdempotencyRecord.Name

    private struct Entry: Sendable {
        var key: Key
        var expiresAt: Timestamp
    }

    typealias Record = IdempotencyRecord

    let capacity: Int
    private var receipts: [Key: IngestReceipt] = [:]
    /// Insertion order; `head` is the oldest live position.
    private var order: [Entry] = []
    private var head = 0
    /// Position in `order` of the first key not yet handed to a checkpoint.
    private var unsaved = 0
    /// Keys forgotten before their window ended, because the cache was full.
    private(set) var evictedEarly: UInt64 = 0

    init(capacity: Int) {
        precondition(capacity > 0, "idempotency cache capacity \(capacity)")
        self.capacity = capacity
    }

    var count: Int { self.receipts.count }

    func receipt(client: String, key: String) -> IngestReceipt? {
        self.receipts[Key(client: client, key: key)]
    }

    mutating func insert(client: String, key: String, receipt: IngestReceipt, expiresAt: Timestamp) {
        let entry = Key(client: client, key: key)
        guard self.receipts.updateValue(receipt, forKey: entry) == nil else { return }
        self.order.append(Entry(key: entry, expiresAt: expiresAt))
        while self.receipts.count > self.capacity {
            self.dropOldest()
            self.evictedEarly += 1
        }
    }

    /// Forgets keys whose window has ended, oldest first.
    mutating func expire(now: Timestamp) {
        while self.head < self.order.count && self.order[self.head].expiresAt <= now {
            self.dropOldest()
        }
    }

    /// The live keys remembered since the last call, oldest first: what a checkpoint must add.
    /// (Keys that expired or were evicted before it are left out; the store deletes expired keys
    /// by time, and a restore applies the capacity again.)
    mutating func takeUnsaved() -> [Record] {
        let start = Swift.max(self.unsaved, self.head)
        let records = self.order[start...].map(self.record)
        self.unsaved = self.order.count
        return records
    }

    /// Every live key, oldest first.
    var records: [Record] { self.order[self.head...].map(self.record) }

    private func record(_ entry: Entry) -> Record {
        // Every position from `head` on is live: keys leave only from the head.
        Record(client: entry.key.client, key: entry.key.key, receipt: self.receipts[entry.key]!,
               expiresAt: entry.expiresAt)
    }

    /// Marks everything remembered so far as saved (after a restore from a checkpoint).
    mutating func markSaved() {
        self.unsaved = self.order.count
    }

    private mutating func dropOldest() {
        self.receipts[self.order[self.head].key] = nil
        self.head += 1
        if self.head > 1_024 && self.head * 2 > self.order.count {
            self.order.removeFirst(self.head)
            self.unsaved = Swift.max(0, self.unsaved - self.head)
            self.head = 0
        }
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
