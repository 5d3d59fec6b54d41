/// A grow-only counter: one slot per origin replica, value = sum of slots, merge = slot-wise max.
///
/// Follows the G-Counter of Shapiro, Preguiça, Baquero and Zawirski, "A comprehensive study of
/// Convergent and Commutative Replicated Data Types" (INRIA RR-7506, 2011), §3.1.1. Deviations: slots
/// are a sorted list rather than a vector indexed by a fixed replica set, so replicas can join at
/// any time and the encoding is canonical; and each increment returns a delta (the origin's new slot
/// value), as in the δ-CRDT G-Counter of Almeida et al. (2018).
///
/// Only the origin that owns a slot may increment it: the slot-wise max is correct because every
/// slot only grows and has one writer.
///
/// Storage: up to `inlineCapacity` slots (a cluster of a few regions) live inline, so an increment
/// touches no heap memory and pays no copy-on-write check; a counter with more origins keeps all
/// its slots in an array.
public struct GCounter: Lattice {
    /// What one increment changed: the origin's slot now holds `value`.
    public struct Delta: Sendable, Hashable {
        public var origin: ReplicaID
        public var value: UInt64

        @inlinable
        public init(origin: ReplicaID, value: UInt64) {
            self.origin = origin
            self.value = value
        }
    }

    @usableFromInline
    struct Slot: Sendable, Equatable {
        @usableFromInline var origin: ReplicaID
        @usableFromInline var value: UInt64

        @usableFromInline
        init(origin: ReplicaID, value: UInt64) {
            self.origin = origin
            self.value = value
        }
    }

    @usableFromInline static var inlineCapacity: Int { 4 }

    /// The first `inlineCount` entries are the slots, sorted by origin, when `spilled` is empty.
    @usableFromInline var inline: InlineArray<4, Slot>
    @usableFromInline var inlineCount: Int
    /// All the slots, sorted by origin, once there are more than `inlineCapacity`; else empty.
    @usableFromInline var spilled: [Slot]

    public init() {
        self.inline = InlineArray(repeating: Slot(origin: ReplicaID(0), value: 0))
        self.inlineCount = 0
        self.spilled = []
    }

    public init(delta: Delta) {
        self.init()
        if delta.value > 0 { self.slots = [Slot(origin: delta.origin, value: delta.value)] }
    }

    /// The non-zero slots in origin order (allocates: for merges and encoding).
    var slots: [Slot] {
        get {
            guard self.spilled.isEmpty else { return self.spilled }
            return (0..<self.inlineCount).map { self.inline[$0] }
        }
        set {
            if newValue.count <= Self.inlineCapacity {
                for (position, slot) in newValue.enumerated() { self.inline[position] = slot }
                self.inlineCount = newValue.count
                self.spilled = []
            } else {
                self.inlineCount = 0
                self.spilled = newValue
            }
        }
    }

    /// The counter's value: the sum of every origin's slot.
    public var value: UInt64 {
        var total: UInt64 = 0
        self.forEachSlot { total &+= $0.value }
        return total
    }

    /// Calls `body` on every non-zero slot in origin order, without allocating (queries read
    /// counters by the million: `slots` allocates).
    @inlinable
    func forEachSlot(_ body: (Slot) -> Void) {
        if self.spilled.isEmpty {
            for position in 0..<self.inlineCount { body(self.inline[position]) }
        } else {
            for slot in self.spilled { body(slot) }
        }
    }

    /// The value of one origin's slot.
    public func value(of origin: ReplicaID) -> UInt64 {
        var found: UInt64 = 0
        self.forEachSlot { if $0.origin == origin { found = $0.value } }
        return found
    }

    /// The origins with a non-zero slot and their values, in origin order.
    public var originValues: [(origin: ReplicaID, value: UInt64)] {
        self.slots.map { ($0.origin, $0.value) }
    }

    /// Calls `body` with each origin's non-zero value, in origin order, without allocating.
    public func forEachOrigin(_ body: (ReplicaID, UInt64) -> Void) {
        self.forEachSlot { body($0.origin, $0.value) }
    }

    /// Adds `amount` to `origin`'s slot.
    ///
    /// MUST be called only by the replica that `origin` names: two writers of one slot would make
    /// the max-merge lose updates.
    @inlinable @inline(__always)
    @discardableResult
    public mutating func increment(by amount: UInt64 = 1, at origin: ReplicaID) -> Delta {
        if self.spilled.isEmpty {
            var position = 0
            while position < self.inlineCount {
                if self.inline[position].origin == origin {
                    // Overflow would need 2^64 events from one origin: a bug, not input.
                    self.inline[position].value += amount
                    return Delta(origin: origin, value: self.inline[position].value)
                }
                position += 1
            }
        }
        return self.incrementSlowly(by: amount, at: origin)
    }

    /// The slow path of `increment`: a spilled counter, or the origin's first update.
    @usableFromInline
    mutating func incrementSlowly(by amount: UInt64, at origin: ReplicaID) -> Delta {
        var slots = self.slots
        if let position = slots.firstIndex(where: { $0.origin == origin }) {
            slots[position].value += amount
            self.slots = slots
            return Delta(origin: origin, value: slots[position].value)
        }
        if amount > 0 {
            let position = slots.firstIndex { $0.origin > origin } ?? slots.count
            slots.insert(Slot(origin: origin, value: amount), at: position)
            self.slots = slots
        }
        return Delta(origin: origin, value: amount)
    }

    public mutating func merge(delta: Delta) {
        self.merge(GCounter(delta: delta))
    }

    /// Slot-wise max, in place: each of `other`'s slots raises this counter's slot of its origin,
    /// or is inserted in origin order. Building the two slot arrays and a merged third cost three
    /// allocations per merge, and a replica merges three counters per replicated bucket.
    public mutating func merge(_ other: GCounter) {
        other.forEachSlot { self.raise($0) }
    }

    /// Raises the slot of `slot.origin` to at least `slot.value`, inserting it (in origin order) if
    /// absent; a fifth origin moves the slots from inline storage to the spilled array.
    @usableFromInline
    mutating func raise(_ slot: Slot) {
        if self.spilled.isEmpty {
            var position = 0
            while position < self.inlineCount && self.inline[position].origin < slot.origin { position += 1 }
            if position < self.inlineCount && self.inline[position].origin == slot.origin {
                if slot.value > self.inline[position].value { self.inline[position].value = slot.value }
                return
            }
            if self.inlineCount < Self.inlineCapacity {
                var moving = self.inlineCount
                while moving > position {
                    self.inline[moving] = self.inline[moving - 1]
                    moving -= 1
                }
                self.inline[position] = slot
                self.inlineCount += 1
                return
            }
            var slots = self.slots
            slots.insert(slot, at: position)
            self.slots = slots
            return
        }
        let position = self.spilled.firstIndex { $0.origin >= slot.origin } ?? self.spilled.count
        if position < self.spilled.count && self.spilled[position].origin == slot.origin {
            if slot.value > self.spilled[position].value { self.spilled[position].value = slot.value }
        } else {
            self.spilled.insert(slot, at: position)
        }
    }

    /// The part of this counter written by `origin`, as a delta.
    /// Test only: slot-wise sums, the classic broken "merge" of a G-counter (not idempotent).
    package static func sumForTesting(_ a: GCounter, _ b: GCounter) -> GCounter {
        var sum = a
        for slot in b.slots { sum.increment(by: slot.value, at: slot.origin) }
        return sum
    }

    public func delta(of origin: ReplicaID) -> Delta {
        Delta(origin: origin, value: self.value(of: origin))
    }

    public static func == (lhs: GCounter, rhs: GCounter) -> Bool {
        lhs.slots == rhs.slots
    }
}

extension GCounter: VersionedEncoding {
    public static let encodingTag = EncodingTag.gCounter
    public static let encodingVersion: UInt8 = 1
    public static let encodingName = "GCounter"

    /// Body: slot count, then per slot the origin (8 bytes LE) and the value (varint), origins
    /// strictly increasing, no zero values.
    public func encode(to writer: inout ByteWriter) {
        let slots = self.slots
        writer.writeVarint(slots.count)
        for slot in slots {
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
            guard value <= DecodeLimits.countMax else {
                throw .invalidValue(field: "GCounter slot value", value: "\(value) is over 2^48")
            }
            if let last = slots.last, last.origin >= origin {
                throw .nonCanonical(field: "GCounter slot origins (not strictly increasing)")
            }
            slots.append(Slot(origin: origin, value: value))
        }
        self.init()
        self.slots = slots
    }
}
