/// Values remembered by key for a window of time, forgotten oldest first: what idempotency keys
/// (`IdempotencyCache`) and span fingerprints (`SpanLedger`) are kept in.
///
/// Bounded twice: entries expire at their `expiresAt`, and past `capacity` the oldest are forgotten
/// first (counted in `evictedEarly`, which the node exports: a retry of a forgotten key would be
/// counted again, so the capacity is sized above a window's worth). Insertion order is also expiry
/// order as long as every entry gets the same window, which is how both users insert.
struct ExpiringMemory<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct Entry: Sendable {
        var key: Key
        var expiresAt: Timestamp
        var ordinal: UInt64
    }

    /// A remembered entry: `ordinal` orders insertions (the eviction order), across restarts too.
    typealias Remembered = (key: Key, value: Value, expiresAt: Timestamp, ordinal: UInt64)

    let capacity: Int
    private var values: [Key: Value] = [:]
    /// Insertion order; `head` is the oldest live position.
    private var order: [Entry] = []
    private var head = 0
    /// Position in `order` of the first entry not yet handed to a checkpoint.
    private var unsaved = 0
    /// Entries forgotten before their window ended, because the memory was full.
    private(set) var evictedEarly: UInt64 = 0
    /// The ordinal of the next insertion.
    private var nextOrdinal: UInt64 = 0

    init(capacity: Int) {
        precondition(capacity > 0, "expiring memory capacity \(capacity)")
        self.capacity = capacity
    }

    var count: Int { self.values.count }

    subscript(key: Key) -> Value? { self.values[key] }

    /// Remembers `value` for `key` unless the key is already remembered (the first value stays).
    /// Returns whether it was new. A restore passes the stored `ordinal`s, in increasing order.
    @discardableResult
    mutating func insert(_ key: Key, _ value: Value, expiresAt: Timestamp, ordinal: UInt64? = nil) -> Bool {
        guard self.values.updateValue(value, forKey: key) == nil else { return false }
        let ordinal = ordinal.map { Swift.max($0, self.nextOrdinal) } ?? self.nextOrdinal
        self.nextOrdinal = ordinal &+ 1
        self.order.append(Entry(key: key, expiresAt: expiresAt, ordinal: ordinal))
        while self.values.count > self.capacity {
            self.dropOldest()
            self.evictedEarly += 1
        }
        return true
    }

    /// Forgets entries whose window has ended, oldest first.
    mutating func expire(now: Timestamp) {
        while self.head < self.order.count && self.order[self.head].expiresAt <= now {
            self.dropOldest()
        }
    }

    /// The live entries remembered since the last call, oldest first: what a checkpoint must add.
    /// (Entries that expired or were evicted before it are left out; the store deletes expired
    /// ones by time, and a restore applies the capacity again.)
    mutating func takeUnsaved() -> [Remembered] {
        let start = Swift.max(self.unsaved, self.head)
        let taken = self.order[start...].map(self.live)
        self.unsaved = self.order.count
        return taken
    }

    /// Every live entry, oldest first.
    var entries: [Remembered] { self.order[self.head...].map(self.live) }

    private func live(_ entry: Entry) -> Remembered {
        // Every position from `head` on is live: keys leave only from the head.
        (entry.key, self.values[entry.key]!, entry.expiresAt, entry.ordinal)
    }

    /// Marks everything remembered so far as saved (after a restore from a checkpoint).
    mutating func markSaved() {
        self.unsaved = self.order.count
    }

    private mutating func dropOldest() {
        self.values[self.order[self.head].key] = nil
        self.head += 1
        if self.head > 1_024 && self.head * 2 > self.order.count {
            self.order.removeFirst(self.head)
            self.unsaved = Swift.max(0, self.unsaved - self.head)
            self.head = 0
        }
    }
}
