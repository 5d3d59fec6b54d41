import TallyAggregates

/// Series ids by key: an open-addressing table hashed with XXH3 over the names' UTF-8 bytes.
///
/// The replica looks a series up once per event. A `Dictionary<SeriesKey, SeriesID>` hashed both
/// names through `Hasher` (SipHash-1-3, with String's per-call setup): about 500 instructions per
/// event, a sixth of ingest (callgrind, `tally-bench replica`). XXH3 of a short name is a few dozen,
/// and a lookup builds no `SeriesKey` (no string copies to retain and release).
///
/// Deterministic: the hash has no seed drawn at start-up, and nothing iterates the table in slot
/// order (ids are handed out by the replica, in order of first appearance).
struct SeriesTable: Sendable {
    /// Per slot: the series id + 1, or 0 when empty.
    private var slots: [Int32]
    /// Per slot: the full hash of the key in it.
    private var hashes: [UInt64]
    /// Keys by series id.
    private var keys: [SeriesKey] = []

    init() {
        self.slots = Array(repeating: 0, count: 16)
        self.hashes = Array(repeating: 0, count: 16)
    }

    var count: Int { self.keys.count }

    @inline(__always)
    static func hash(service: String, operation: String, statusClass: StatusClass) -> UInt64 {
        let service = XXH3.hash(service)
        return XXH3.hash(operation, seed: service) ^ (UInt64(statusClass.rawValue) &* 0x9E37_79B9_7F4A_7C15)
    }

    /// The id of the series with these names, if known.
    @inline(__always)
    func id(service: String, operation: String, statusClass: StatusClass) -> SeriesID? {
        let hash = Self.hash(service: service, operation: operation, statusClass: statusClass)
        let mask = self.slots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while true {
            let entry = self.slots[slot]
            if entry == 0 { return nil }
            if self.hashes[slot] == hash {
                let key = self.keys[Int(entry - 1)]
                if key.statusClass == statusClass && key.service == service && key.operation == operation {
                    return SeriesID(rawValue: entry - 1)
                }
            }
            slot = (slot + 1) & mask
        }
    }

    subscript(key: SeriesKey) -> SeriesID? {
        self.id(service: key.service, operation: key.operation, statusClass: key.statusClass)
    }

    /// Adds a key not in the table; it gets the next id (`count` before the call).
    mutating func insert(_ key: SeriesKey) -> SeriesID {
        precondition(self[key] == nil, "series \(key) inserted twice")
        let id = SeriesID(rawValue: Int32(self.keys.count))
        self.keys.append(key)
        if self.keys.count * 2 > self.slots.count {
            self.rehash(capacity: self.slots.count * 2)
        } else {
            self.place(id)
        }
        return id
    }

    private mutating func place(_ id: SeriesID) {
        let key = self.keys[Int(id.rawValue)]
        let hash = Self.hash(service: key.service, operation: key.operation, statusClass: key.statusClass)
        let mask = self.slots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while self.slots[slot] != 0 { slot = (slot + 1) & mask }
        self.slots[slot] = id.rawValue + 1
        self.hashes[slot] = hash
    }

    private mutating func rehash(capacity: Int) {
        self.slots = Array(repeating: 0, count: capacity)
        self.hashes = Array(repeating: 0, count: capacity)
        for id in self.keys.indices { self.place(SeriesID(rawValue: Int32(id))) }
    }
}
