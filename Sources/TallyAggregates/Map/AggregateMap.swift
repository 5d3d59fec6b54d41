/// A map from keys to aggregates whose merge is pointwise: the map of lattices of Shapiro et al.
/// (2011) and of Almeida et al.'s δ-CRDT "map" (2018), without removal (series are grow-only; a
/// retention cut drops whole time buckets outside the lattice, agreed by every replica).
///
/// Storage is a dictionary for O(1) lookup; every output that can be observed (iteration through
/// `sortedEntries`, the encoding) is in key order, never in the process-seeded dictionary order.
public struct AggregateMap<Key: Hashable & Comparable & BinaryCodable & Sendable, Value: Lattice & VersionedEncoding>:
    Lattice
{
    public private(set) var entries: [Key: Value]

    /// One key's change.
    public struct Delta: Sendable, Equatable {
        public let key: Key
        public let value: Value.Delta

        public init(key: Key, value: Value.Delta) {
            self.key = key
            self.value = value
        }
    }

    public init() {
        self.entries = [:]
    }

    public init(delta: Delta) {
        self.entries = [delta.key: Value(delta: delta.value)]
    }

    public var count: Int { self.entries.count }
    public var isEmpty: Bool { self.entries.isEmpty }

    public subscript(key: Key) -> Value? { self.entries[key] }

    /// The entries in key order.
    public var sortedEntries: [(key: Key, value: Value)] {
        self.entries.sorted { $0.key < $1.key }
    }

    /// Applies a mutation to `key`'s aggregate, creating it with `make` if absent.
    /// Returns the key's delta, which merges into any replica like the mutation itself.
    @discardableResult
    public mutating func update(_ key: Key, orInsert make: () -> Value, _ mutate: (inout Value) -> Value.Delta)
        -> Delta
    {
        let delta = mutate(&self.entries[key, default: make()])
        return Delta(key: key, value: delta)
    }

    public mutating func merge(delta: Delta) {
        if self.entries[delta.key] != nil {
            self.entries[delta.key]!.merge(delta: delta.value)  // checked just above
        } else {
            self.entries[delta.key] = Value(delta: delta.value)
        }
    }

    public mutating func merge(_ other: AggregateMap) {
        for (key, value) in other.entries {
            if self.entries[key] != nil {
                self.entries[key]!.merge(value)  // checked just above
            } else {
                self.entries[key] = value
            }
        }
    }
}

extension AggregateMap: VersionedEncoding {
    public static var encodingTag: UInt8 { EncodingTag.aggregateMap }
    public static var encodingVersion: UInt8 { 1 }
    public static var encodingName: String { "AggregateMap" }

    /// Body (version 1): the value type's tag and version, the entry count, then per entry in
    /// strictly increasing key order the key's encoding and the value's body.
    public func encode(to writer: inout ByteWriter) {
        writer.writeUInt8(Value.encodingTag)
        writer.writeUInt8(Value.encodingVersion)
        writer.writeVarint(self.entries.count)
        for (key, value) in self.sortedEntries {
            key.encode(to: &writer)
            value.encode(to: &writer)
        }
    }

    public init(from reader: inout ByteReader) throws(DecodeError) {
        _ = try reader.readHeader(
            tag: Value.encodingTag, type: Value.encodingName,
            versions: Value.encodingVersion...Value.encodingVersion)
        let count = try reader.readCount("AggregateMap entry count", max: reader.limits.mapEntriesMax)
        var entries: [Key: Value] = [:]
        entries.reserveCapacity(min(count, reader.remaining))
        var previous: Key?
        for _ in 0..<count {
            let key = try Key(from: &reader)
            if let previous, !(previous < key) {
                throw .nonCanonical(field: "AggregateMap keys (not strictly increasing)")
            }
            entries[key] = try Value(from: &reader)
            previous = key
        }
        self.entries = entries
    }
}
