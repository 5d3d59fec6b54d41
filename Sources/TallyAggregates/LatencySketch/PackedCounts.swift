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
                switch shift {
                case 0: Self.store(values, into: bytes, as: UInt8.self)
                case 1: Self.store(values, into: bytes, as: UInt16.self)
                case 2: Self.store(values, into: bytes, as: UInt32.self)
                default: Self.store(values, into: bytes, as: UInt64.self)
                }
            }
            initialized = values.count << shift
        }
    }

    /// Narrows each value (which fits) to `Count`: one loop per width, not a switch per value.
    @inline(__always)
    private static func store<Count: FixedWidthInteger & UnsignedInteger>(
        _ values: UnsafeBufferPointer<UInt64>, into bytes: UnsafeMutableRawBufferPointer, as _: Count.Type
    ) {
        let size = MemoryLayout<Count>.size
        for position in 0..<values.count {
            bytes.storeBytes(of: Count(truncatingIfNeeded: values[position]), toByteOffset: position &* size, as: Count.self)
        }
    }

    /// Counts of one byte each, given as those bytes (the sketch codec's fast path: counts below 128
    /// are their own varints).
    init(bytes: [UInt8]) {
        self.storage = bytes
        self.shift = 0
    }

    /// The counts' varint encoding when every count is below 128 (each count is then its own
    /// one-byte varint, and the encoding is the storage as it is), else nil.
    var asSingleByteVarints: [UInt8]? {
        guard self.shift == 0 else { return nil }
        return Self.allBelow128(self.storage[...]) ? self.storage : nil
    }

    /// True when no byte has its top bit set: eight at a time.
    static func allBelow128(_ bytes: ArraySlice<UInt8>) -> Bool {
        bytes.withUnsafeBytes { raw in
            var position = 0
            var seen: UInt64 = 0
            while position &+ 8 <= raw.count {
                seen |= raw.loadUnaligned(fromByteOffset: position, as: UInt64.self)
                position &+= 8
            }
            while position < raw.count {
                seen |= UInt64(raw[position])
                position &+= 1
            }
            return seen & 0x8080_8080_8080_8080 == 0
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
    /// the in-place case of merging two versions of one origin's histogram. Counts of one width
    /// (the usual case) go through a loop of that width's integers, not a switch per count.
    @usableFromInline
    mutating func formMax(_ other: PackedCounts, at position: Int) {
        precondition(position >= 0 && position + other.count <= self.count, "formMax range out of bounds")
        self.widen(to: other.shift)
        let shift = self.shift
        let otherShift = other.shift
        other.storage.withUnsafeBytes { theirs in
            self.storage.withUnsafeMutableBytes { mine in
                guard shift == otherShift else {
                    for index in 0..<(theirs.count >> otherShift) {
                        let count = Self.load(theirs, index, shift: otherShift)
                        if count > Self.load(UnsafeRawBufferPointer(mine), position + index, shift: shift) {
                            Self.store(count, mine, position + index, shift: shift)
                        }
                    }
                    return
                }
                switch shift {
                case 0: Self.formMax(mine, theirs, at: position, as: UInt8.self)
                case 1: Self.formMax(mine, theirs, at: position, as: UInt16.self)
                case 2: Self.formMax(mine, theirs, at: position, as: UInt32.self)
                default: Self.formMax(mine, theirs, at: position, as: UInt64.self)
                }
            }
        }
    }

    @inline(__always)
    private static func formMax<Count: FixedWidthInteger & UnsignedInteger>(
        _ mine: UnsafeMutableRawBufferPointer, _ theirs: UnsafeRawBufferPointer, at position: Int, as _: Count.Type
    ) {
        let size = MemoryLayout<Count>.size
        for index in 0..<(theirs.count / size) {
            let offset = (position &+ index) &* size
            let count = theirs.loadUnaligned(fromByteOffset: index &* size, as: Count.self)
            if count > mine.loadUnaligned(fromByteOffset: offset, as: Count.self) {
                mine.storeBytes(of: count, toByteOffset: offset, as: Count.self)
            }
        }
    }

    /// The first and last positions whose count is above `older`'s at `position + shift` (a count
    /// outside `older`'s range is above it when it is not zero); nil when none is. What a seal
    /// ships of a histogram: a day's histogram spans hundreds of counts and a gossip round changes
    /// a few, so equal stretches of the same width are compared eight bytes at a time.
    func grownRange(over older: PackedCounts, shift: Int) -> ClosedRange<Int>? {
        let count = self.count
        guard count > 0 else { return nil }
        // Positions of self that older covers: [low, high).
        let low = Swift.min(Swift.max(0, -shift), count)
        let high = Swift.max(low, Swift.min(count, older.count - shift))
        return self.storage.withUnsafeBytes { mine in
            older.storage.withUnsafeBytes { theirs in
                let width = self.shift
                let sameWidth = width == older.shift
                func olderCount(_ position: Int) -> UInt64 {
                    position >= low && position < high ? Self.load(theirs, position &+ shift, shift: older.shift) : 0
                }
                func grown(_ position: Int) -> Bool {
                    Self.load(mine, position, shift: width) > olderCount(position)
                }
                // From the front: skip equal stretches of the overlap by bytes, then check exactly.
                var first = 0
                while first < count {
                    if sameWidth && first >= low && first < high {
                        first = Self.firstMismatch(mine, from: first, theirs, from: first &+ shift,
                                                   upTo: high, width: width)
                        if first >= high { continue }
                    }
                    if grown(first) { break }
                    first &+= 1
                }
                guard first < count else { return nil }
                var last = count &- 1
                while last > first {
                    if sameWidth && last >= low && last < high {
                        last = Self.lastMismatch(mine, through: last, theirs, shift: shift, downTo: low,
                                                 width: width)
                        if last < low { continue }
                    }
                    if grown(last) { break }
                    last &-= 1
                }
                return first...Swift.max(first, last)
            }
        }
    }

    /// The first position in `position..<end` where the two buffers' counts (of one width, the
    /// other's at `otherPosition + (p - position)`) differ, or `end`.
    private static func firstMismatch(_ mine: UnsafeRawBufferPointer, from position: Int,
                                      _ theirs: UnsafeRawBufferPointer, from otherPosition: Int,
                                      upTo end: Int, width: Int) -> Int
    {
        var byte = position &<< width
        var otherByte = otherPosition &<< width
        let endByte = end &<< width
        while byte &+ 8 <= endByte {
            if mine.loadUnaligned(fromByteOffset: byte, as: UInt64.self)
                != theirs.loadUnaligned(fromByteOffset: otherByte, as: UInt64.self)
            {
                break
            }
            byte &+= 8
            otherByte &+= 8
        }
        while byte < endByte && mine[byte] == theirs[otherByte] {
            byte &+= 1
            otherByte &+= 1
        }
        return byte &>> width
    }

    /// The last position in `start...position` where the counts differ (the other's at `p +
    /// shift`), or `start - 1`.
    private static func lastMismatch(_ mine: UnsafeRawBufferPointer, through position: Int,
                                     _ theirs: UnsafeRawBufferPointer, shift: Int, downTo start: Int,
                                     width: Int) -> Int
    {
        // Bytes [startByte, endByte) of mine are compared, from the end.
        var endByte = (position &+ 1) &<< width
        let startByte = start &<< width
        let delta = shift &<< width
        while endByte &- 8 >= startByte {
            if mine.loadUnaligned(fromByteOffset: endByte &- 8, as: UInt64.self)
                != theirs.loadUnaligned(fromByteOffset: endByte &- 8 &+ delta, as: UInt64.self)
            {
                break
            }
            endByte &-= 8
        }
        while endByte > startByte && mine[endByte &- 1] == theirs[endByte &- 1 &+ delta] {
            endByte &-= 1
        }
        // endByte - 1 is the last differing byte (or startByte - 1: none).
        return endByte > startByte ? (endByte &- 1) &>> width : start &- 1
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
