/// Bucket counts stored in the narrowest of 1, 2, 4 or 8 bytes that holds the largest of them.
///
/// A sketch of one time bucket of one series holds a few hundred counts that are mostly below 256,
/// so 8-byte counts were 7 bytes of zeros each: most of a time bucket's memory. The width only
/// grows, when a count outgrows it (all counts are rewritten once per doubling of the width, so the
/// amortized cost is nothing). Equality is by value, whatever the widths.
@usableFromInline
struct PackedCounts: Sendable {
    /// Counts in native byte order, `1 << shift` bytes each (memory only: encodings write varints).
    @usableFromInline var storage: [UInt8]
    /// log2 of the bytes per count: 0, 1, 2 or 3.
    @usableFromInline var shift: Int

    @usableFromInline
    init() {
        self.storage = []
        self.shift = 0
    }

    /// Counts from any collection, at the narrowest width that holds the largest.
    @usableFromInline
    init<Values: Collection<UInt64>>(_ values: Values) {
        self.init()
        self.replaceSubrange(0..<0, with: values)
    }

    /// Counts from an array, written once into storage of the right size (decoding and merges
    /// build histograms this way; through `replace` it took a second array and a copy).
    @usableFromInline
    init(_ values: [UInt64]) {
        var largest: UInt64 = 0
        for value in values where value > largest { largest = value }
        let shift = Self.shift(for: largest)
        self.shift = shift
        self.storage = [UInt8](unsafeUninitializedCapacity: values.count << shift) { buffer, initialized in
            let bytes = UnsafeMutableRawBufferPointer(buffer)
            values.withUnsafeBufferPointer { values in
                for position in 0..<values.count { Self.store(values[position], bytes, position, shift: shift) }
            }
            initialized = values.count << shift
        }
    }

    /// Keeps only the counts at `positions`, in place (a histogram trimming zero counts at its ends).
    @inlinable
    mutating func keep(_ positions: ClosedRange<Int>) {
        precondition(positions.lowerBound >= 0 && positions.upperBound < self.count, "kept counts out of range")
        self.storage.removeSubrange(((positions.upperBound + 1) &<< self.shift)...)
        self.storage.removeFirst(positions.lowerBound &<< self.shift)
    }

    /// The smallest shift whose width holds `value`.
    @inlinable @inline(__always)
    static func shift(for value: UInt64) -> Int {
        value <= 0xFF ? 0 : value <= 0xFFFF ? 1 : value <= 0xFFFF_FFFF ? 2 : 3
    }

    @inlinable @inline(__always)
    static func load(_ bytes: UnsafeRawBufferPointer, _ position: Int, shift: Int) -> UInt64 {
        switch shift {
        case 0: return UInt64(bytes[position])
        case 1: return UInt64(bytes.loadUnaligned(fromByteOffset: position << 1, as: UInt16.self))
        case 2: return UInt64(bytes.loadUnaligned(fromByteOffset: position << 2, as: UInt32.self))
        default: return bytes.loadUnaligned(fromByteOffset: position << 3, as: UInt64.self)
        }
    }

    /// Stores `value`, which MUST fit `shift`'s width.
    @inlinable @inline(__always)
    static func store(_ value: UInt64, _ bytes: UnsafeMutableRawBufferPointer, _ position: Int, shift: Int) {
        switch shift {
        case 0: bytes[position] = UInt8(truncatingIfNeeded: value)
        case 1: bytes.storeBytes(of: UInt16(truncatingIfNeeded: value), toByteOffset: position << 1, as: UInt16.self)
        case 2: bytes.storeBytes(of: UInt32(truncatingIfNeeded: value), toByteOffset: position << 2, as: UInt32.self)
        default: bytes.storeBytes(of: value, toByteOffset: position << 3, as: UInt64.self)
        }
    }

    /// Adds one to the count at `position` and returns the new count: the record path.
    /// One switch on the width; each case loads, checks for overflow and stores at its own width
    /// (positions are multiples of the width, so the accesses are aligned).
    @inlinable @inline(__always)
    mutating func increment(at position: Int) -> UInt64 {
        let shift = self.shift
        let count: UInt64? = self.storage.withUnsafeMutableBytes { bytes in
            switch shift {
            case 0:
                let count = bytes[position]
                guard count != .max else { return nil }
                bytes[position] = count &+ 1
                return UInt64(count &+ 1)
            case 1:
                let count = bytes.load(fromByteOffset: position &<< 1, as: UInt16.self)
                guard count != .max else { return nil }
                bytes.storeBytes(of: count &+ 1, toByteOffset: position &<< 1, as: UInt16.self)
                return UInt64(count &+ 1)
            case 2:
                let count = bytes.load(fromByteOffset: position &<< 2, as: UInt32.self)
                guard count != .max else { return nil }
                bytes.storeBytes(of: count &+ 1, toByteOffset: position &<< 2, as: UInt32.self)
                return UInt64(count &+ 1)
            default:
                let count = bytes.load(fromByteOffset: position &<< 3, as: UInt64.self) &+ 1
                bytes.storeBytes(of: count, toByteOffset: position &<< 3, as: UInt64.self)
                return count
            }
        }
        if let count { return count }
        // The count outgrew its width: widen everything, then store it.
        let widened = self[position] &+ 1
        self[position] = widened
        return widened
    }

    /// Rewrites every count at a wider width.
    @usableFromInline
    mutating func widen(to shift: Int) {
        guard shift > self.shift else { return }
        let old = self.storage
        let oldShift = self.shift
        let count = self.count
        self.storage = [UInt8](repeating: 0, count: count << shift)
        self.shift = shift
        old.withUnsafeBytes { from in
            self.storage.withUnsafeMutableBytes { to in
                for position in 0..<count { Self.store(Self.load(from, position, shift: oldShift), to, position, shift: shift) }
            }
        }
    }

    /// Raises each count to the matching one of `other`, whose first count is at `position`:
    /// the in-place case of merging two versions of one origin's histogram.
    @usableFromInline
    mutating func formMax(_ other: PackedCounts, at position: Int) {
        precondition(position >= 0 && position + other.count <= self.count, "formMax range out of bounds")
        self.widen(to: other.shift)
        let shift = self.shift
        let otherShift = other.shift
        other.storage.withUnsafeBytes { theirs in
            self.storage.withUnsafeMutableBytes { mine in
                for index in 0..<(theirs.count >> otherShift) {
                    let count = Self.load(theirs, index, shift: otherShift)
                    if count > Self.load(UnsafeRawBufferPointer(mine), position + index, shift: shift) {
                        Self.store(count, mine, position + index, shift: shift)
                    }
                }
            }
        }
    }

    /// One count: a histogram's first value.
    @usableFromInline
    init(single value: UInt64) {
        self.shift = Self.shift(for: value)
        self.storage = [UInt8](repeating: 0, count: 1 << self.shift)
        let shift = self.shift
        self.storage.withUnsafeMutableBytes { Self.store(value, $0, 0, shift: shift) }
    }

    /// Appends `count` zero counts in place: how a histogram's range grows upwards on the record
    /// path. The generic `append(contentsOf:)` went through `replaceSubrange`, a dynamic cast and
    /// three new arrays each time, and was most of the cost of ingesting into fresh time buckets.
    @inlinable
    mutating func appendZeros(_ count: Int) {
        self.storage.append(contentsOf: repeatElement(0, count: count &<< self.shift))
    }

    /// Inserts `count` zero counts before the first, in place: the range growing downwards.
    @inlinable
    mutating func prependZeros(_ count: Int) {
        self.storage.insert(contentsOf: repeatElement(0, count: count &<< self.shift), at: 0)
    }

    /// Drops the first `count` counts, in place: a collapse into the floor.
    @inlinable
    mutating func removeFirstCounts(_ count: Int) {
        self.storage.removeFirst(count &<< self.shift)
    }

    /// Drops spare capacity: for buckets that will not grow again.
    mutating func shrinkToFit() { self.storage.shrinkToFit() }

    var heapBytes: Int { arrayHeapBytes(self.storage) }
}

extension PackedCounts: RandomAccessCollection, MutableCollection, RangeReplaceableCollection {
    @inlinable var startIndex: Int { 0 }
    @inlinable var endIndex: Int { self.storage.count &>> self.shift }
    @inlinable var count: Int { self.storage.count &>> self.shift }
    @inlinable var isEmpty: Bool { self.storage.isEmpty }

    /// A concrete iterator: the generic one goes through the subscript's witness, which unoptimized
    /// builds (the tests) resolve at run time for every element.
    @usableFromInline
    struct Iterator: IteratorProtocol {
        @usableFromInline let counts: PackedCounts
        @usableFromInline var position = 0

        @inlinable init(counts: PackedCounts) { self.counts = counts }

        @inlinable
        mutating func next() -> UInt64? {
            guard self.position < self.counts.count else { return nil }
            defer { self.position += 1 }
            let (shift, position) = (self.counts.shift, self.position)
            return self.counts.storage.withUnsafeBytes { PackedCounts.load($0, position, shift: shift) }
        }
    }

    @inlinable func makeIterator() -> Iterator { Iterator(counts: self) }

    @usableFromInline
    subscript(position: Int) -> UInt64 {
        get {
            precondition(position >= 0 && position < self.count, "count position \(position) out of range")
            let shift = self.shift
            return self.storage.withUnsafeBytes { Self.load($0, position, shift: shift) }
        }
        set {
            precondition(position >= 0 && position < self.count, "count position \(position) out of range")
            self.widen(to: Self.shift(for: newValue))
            let shift = self.shift
            self.storage.withUnsafeMutableBytes { Self.store(newValue, $0, position, shift: shift) }
        }
    }

    @usableFromInline
    mutating func replaceSubrange<C: Collection>(_ range: Range<Int>, with values: C) where C.Element == UInt64 {
        if let values = values as? [UInt64] {
            self.replace(range, with: values)
        } else {
            self.replace(range, with: Array(values))
        }
    }

    /// `replaceSubrange` for an array: no generic code per element (the tests run unoptimized).
    @usableFromInline
    mutating func replace(_ range: Range<Int>, with values: [UInt64]) {
        values.withUnsafeBufferPointer { values in
            var largest: UInt64 = 0
            for value in values where value > largest { largest = value }
            self.widen(to: Self.shift(for: largest))
            let shift = self.shift
            var bytes = [UInt8](repeating: 0, count: values.count << shift)
            bytes.withUnsafeMutableBytes { to in
                for position in 0..<values.count { Self.store(values[position], to, position, shift: shift) }
            }
            self.storage.replaceSubrange((range.lowerBound << shift)..<(range.upperBound << shift), with: bytes)
        }
    }

    @usableFromInline
    mutating func reserveCapacity(_ n: Int) {
        self.storage.reserveCapacity(n << self.shift)
    }
}

extension PackedCounts: Equatable {
    @usableFromInline
    static func == (lhs: PackedCounts, rhs: PackedCounts) -> Bool {
        if lhs.shift == rhs.shift { return lhs.storage == rhs.storage }
        return lhs.elementsEqual(rhs)
    }
}

extension PackedCounts: ExpressibleByArrayLiteral {
    @usableFromInline
    init(arrayLiteral values: UInt64...) {
        self.init(values)
    }
}
