/// A grow-only counter: one slot per origin replica, value = sum of slots, merge = slot-wise max.
///
/// Follows the G-Counter of Shapiro, Preguiça, Baquero and Zawirski, "A comprehensive study of
/// Convergent and Commutative Replicated Data Types" (INRIA RR-7506, 2011), §3.1.1. Deviations: slots
/// are a sorted array rather than a vector indexed by a fixed replica set, so replicas can join at
/// any time and the encoding is canonical; and each increment returns a delta (the origin's new slot
/// value), as in the δ-CRDT G-Counter of Almeida et al. (2018).
///
/// Only the origin that owns a slot may increment it: the slot-wise max is correct because every
/// slot only grows and has one writer.
public struct GCounter: Lattice, Hashable {
    /// What one increment changed: the origin's slot now holds `value`.
    public struct Delta: Sendable, Hashable {
        public var origin: ReplicaID
        public var value: UInt64

        public init(origin: ReplicaID, value: UInt64) {
            self.origin = origin
            self.value = value
        }
    }

    /// Slots with a non-zero value, sorted by origin.
    @usableFromInline
    internal var slots: [Slot]

    @usableFromInline
    struct Slot: Sendable, Hashable {
        @usableFromInline var origin: ReplicaID
        @usableFromInline var value: UInt64

        @usableFromInline
        init(origin: ReplicaID, value: UInt64) {
            self.origin = origin
            self.value = value
        }
    }

    public init() {
        self.slots = []
    }

    public init(delta: Delta) {
        self.slots = delta.value == 0 ? [] : [Slot(origin: delta.origin, value: delta.value)]
    }

    /// The counter's value: the sum of every origin's slot.
    public var value: UInt64 {
        var total: UInt64 = 0
        for slot in self.slots { total &+= slot.value }
        return total
    }

    /// The value of one origin's slot.
    public func value(of origin: ReplicaID) -> UInt64 {
        guard let index = self.index(of: origin) else { return 0 }
        return self.slots[index].value
    }

    /// The origins with a non-zero slot and their values, in origin order.
    public var originValues: [(origin: ReplicaID, value: UInt64)] {
        self.slots.map { ($0.origin, $0.value) }
    }

    /// Adds `amount` to `origin`'s slot.
    ///
    /// MUST be called only by the replica that `origin` names: two writers of one slot would make
    /// the max-merge lose updates.
    @inlinable @inline(__always)
    @discardableResult
    public mutating func increment(by amount: UInt64 = 1, at origin: ReplicaID) -> Delta {
        // A replica's counters hold a slot per region: a short linear scan beats a binary search.
        let count = self.slots.count
        var index = 0
        while index < count {
            if self.slots[index].origin == origin {
                // Overflow would need 2^64 events from one origin: a bug, not input.
                self.slots[index].value += amount
                return Delta(origin: origin, value: self.slots[index].value)
            }
            index += 1
        }
        return self.insertSlot(origin: origin, value: amount)
    }

    /// The slow path of `increment`: the origin's first update.
    @usableFromInline
    mutating func insertSlot(origin: ReplicaID, value: UInt64) -> Delta {
        if value > 0, case .insertAt(let index) = self.search(origin) {
            self.slots.insert(Slot(origin: origin, value: value), at: index)
        }
        return Delta(origin: origin, value: value)
    }

    public mutating func merge(delta: Delta) {
        guard delta.value > 0 else { return }
        switch self.search(delta.origin) {
        case .found(let index):
            self.slots[index].value = max(self.slots[index].value, delta.value)
        case .insertAt(let index):
            self.slots.insert(Slot(origin: delta.origin, value: delta.value), at: index)
        }
    }

    public mutating func merge(_ other: GCounter) {
        if other.slots.isEmpty { return }
        if self.slots.isEmpty {
            self.slots = other.slots
            return
        }
        var merged: [Slot] = []
        merged.reserveCapacity(self.slots.count + other.slots.count)
        var left = 0
        var right = 0
        while left < self.slots.count && right < other.slots.count {
            let a = self.slots[left]
            let b = other.slots[right]
            if a.origin == b.origin {
                merged.append(Slot(origin: a.origin, value: max(a.value, b.value)))
                left += 1
                right += 1
            } else if a.origin < b.origin {
                merged.append(a)
                left += 1
            } else {
                merged.append(b)
                right += 1
            }
        }
        merged.append(contentsOf: self.slots[left...])
        merged.append(contentsOf: other.slots[right...])
        self.slots = merged
    }

    /// The part of this counter written by `origin`, as a delta.
    public func delta(of origin: ReplicaID) -> Delta {
        Delta(origin: origin, value: self.value(of: origin))
    }

    private func index(of origin: ReplicaID) -> Int? {
        if case .found(let index) = self.search(origin) { return index }
        return nil
    }

    private enum SearchResult { case found(Int), insertAt(Int) }

    private func search(_ origin: ReplicaID) -> SearchResult {
        var low = 0
        var high = self.slots.count
        while low < high {
            let mid = (low + high) / 2
            let midOrigin = self.slots[mid].origin
            if midOrigin == origin { return .found(mid) }
            if midOrigin < origin { low = mid + 1 } else { high = mid }
        }
        return .insertAt(low)
    }
}

extension GCounter: VersionedEncoding {
    public static let encodingTag = EncodingTag.gCounter
    public static let encodingVersion: UInt8 = 1
    public static let encodingName = "GCounter"

    /// Body: slot count, then per slot the origin (8 bytes LE) and the value (varint), origins
    /// strictly increasing, no zero values.
    public func encode(to writer: inout ByteWriter) {
        writer.writeVarint(self.slots.count)
        for slot in self.slots {
            writer.writeUInt64LE(slot.origin.rawValue)
            writer.writeVarint(slot.value)
        }
    }

    public init(from reader: inout ByteReader) throws(DecodeError) {
        let count = try reader.readCount("GCounter slot count", max: reader.limits.originsMax)
        var slots: [Slot] = []
        slots.reserveCapacity(Swift.min(count, reader.remaining / 9))
        for _ in 0..<count {
            let origin = ReplicaID(try reader.readUInt64LE("GCounter slot origin"))
            let value = try reader.readVarint("GCounter slot value")
            guard value > 0 else { throw .nonCanonical(field: "GCounter slot value (zero)") }
            if let last = slots.last, last.origin >= origin {
                throw .nonCanonical(field: "GCounter slot origins (not strictly increasing)")
            }
            slots.append(Slot(origin: origin, value: value))
        }
        self.slots = slots
    }
}
