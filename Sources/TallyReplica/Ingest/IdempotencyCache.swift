/// Answers remembered by idempotency key, so that a retried batch gets its first answer again and
/// is counted once.
///
/// Bounded twice: keys expire after the window, and past `capacity` the oldest are forgotten
/// first (a retry of a forgotten key would be counted again, so the capacity is sized well above
/// a window's worth of batches; the node exports how many were forgotten early).
struct IdempotencyCache: Sendable {
    struct Key: Hashable, Sendable {
        var client: String
        var key: String
    }

    private struct Entry: Sendable {
        var key: Key
        var expiresAt: Timestamp
    }

    let capacity: Int
    private var receipts: [Key: IngestReceipt] = [:]
    /// Insertion order; `head` is the oldest live position.
    private var order: [Entry] = []
    private var head = 0
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

    private mutating func dropOldest() {
        self.receipts[self.order[self.head].key] = nil
        self.head += 1
        if self.head > 1_024 && self.head * 2 > self.order.count {
            self.order.removeFirst(self.head)
            self.head = 0
        }
    }
}
