/// The part of a `LatencySketch` written by one origin replica: exponential-bucket counts over a
/// contiguous index range, plus a zero bucket, sum, min and max.
///
/// Every field only grows (or, for `minimum`, only shrinks) as its origin records values, so two
/// versions of one origin's histogram join by taking the larger of each: bucket-wise max, after
/// both are brought to the same scale and the same collapse floor.
///
/// Collapsing: when the index range would exceed `bucketsMax`, the lowest buckets are folded into
/// the bucket at `floorIndex`, which from then on holds every value at or below its upper bound
/// (DDSketch's "collapsing lowest dense store", Masson, Rim and Lee, VLDB 2019). The floor is part of
/// the state and joins by max, so folding stays a lattice operation and never double counts.
@usableFromInline
struct OriginHistogram: Sendable, Equatable {
    @usableFromInline var origin: ReplicaID
    /// Values below `ExponentialBuckets.valueMin` (zero included).
    @usableFromInline var zeroCount: UInt64
    /// Buckets below this index have been folded into it; `noFloor` when nothing was collapsed.
    @usableFromInline var floorIndex: Int32
    /// The index of `counts[0]`.
    @usableFromInline var offset: Int32
    /// Bucket counts from `offset` on; empty, or with non-zero first and last entries.
    @usableFromInline var counts: PackedCounts
    @usableFromInline var sum: Double
    @usableFromInline var minimum: Double
    @usableFromInline var maximum: Double

    /// Number of values recorded: derived, so the record path does not maintain it.
    var count: UInt64 {
        var total = self.zeroCount
        for count in self.counts { total &+= count }
        return total
    }

    /// True when no value was recorded (a histogram is only stored once one is).
    var isEmpty: Bool { self.zeroCount == 0 && self.counts.isEmpty }

    static var noFloor: Int32 { Int32.min }

    @usableFromInline
    init(origin: ReplicaID) {
        self.origin = origin
        self.zeroCount = 0
        self.floorIndex = Self.noFloor
        self.offset = 0
        self.counts = []
        self.sum = 0
        self.minimum = .infinity
        self.maximum = -.infinity
    }

    @usableFromInline var hasFloor: Bool { self.floorIndex != Self.noFloor }

    /// Index of the highest bucket; only meaningful when `counts` is not empty.
    @usableFromInline var top: Int32 { self.offset + Int32(self.counts.count) - 1 }

    /// Counts one value. Returns the bucket it went to with its new count, or nil for the zero bucket.
    ///
    /// - Precondition: `value` is finite and its sign bit is clear (`LatencySketch` checks).
    @inlinable @inline(__always)
    mutating func record(_ value: Double, scale: Int, bucketsMax: Int) -> LatencySketch.Bucket? {
        self.sum += value
        if value < self.minimum { self.minimum = value }
        if value > self.maximum { self.maximum = value }
        let bits = value.bitPattern
        guard bits >> 52 != 0 else {
            // Zero, or subnormal: below ExponentialBuckets.valueMin.
            self.zeroCount &+= 1
            return nil
        }
        var index = ExponentialBuckets.index(ofPositiveNormalBits: bits, scale: scale)
        if index < self.floorIndex { index = self.floorIndex }
        let position = Int(index) &- Int(self.offset)
        if position >= 0 && position < self.counts.count {
            // position is in bounds: checked just above.
            return LatencySketch.Bucket(index: index, count: self.counts.increment(at: position))
        }
        return self.recordOutsideRange(index, bucketsMax: bucketsMax)
    }

    /// Adds `count` values to the bucket at `index` (a floor above it takes them), as `count`
    /// records of values in that bucket would; sum, min and max are the caller's to add.
    mutating func add(index: Int32, count: UInt64, bucketsMax: Int) {
        guard count > 0 else { return }
        let index = max(index, self.floorIndex)
        let position = Int(index) &- Int(self.offset)
        if position >= 0 && position < self.counts.count {
            self.counts[position] = self.counts[position] &+ count
            return
        }
        // Place one value the way `record` does (extending, or collapsing into the floor), then the rest.
        let placed = self.recordOutsideRange(index, bucketsMax: bucketsMax)
        let at = Int(placed.index - self.offset)
        self.counts[at] = self.counts[at] &+ (count - 1)
    }

    /// The slow path of `record`: the bucket is outside the current range.
    @usableFromInline
    mutating func recordOutsideRange(_ index: Int32, bucketsMax: Int) -> LatencySketch.Bucket {
        let first = LatencySketch.Bucket(index: index, count: 1)
        if self.counts.isEmpty {
            self.offset = index
            self.counts = PackedCounts(single: 1)
            return first
        }
        if index > self.top {
            if Int(index) - Int(self.offset) + 1 > bucketsMax {
                self.collapse(toFloor: index - Int32(bucketsMax) + 1)
            }
            if self.counts.isEmpty {
                self.offset = index
                self.counts = PackedCounts(single: 1)
            } else {
                self.counts.appendZeros(Int(index - self.top))
                self.counts[self.counts.count - 1] = 1
            }
            return first
        }
        // index < offset: extend downwards, or into the floor if that would exceed the bound.
        let top = self.top
        if Int(top) - Int(index) + 1 > bucketsMax {
            let floor = top - Int32(bucketsMax) + 1
            self.collapse(toFloor: floor)
            if floor < self.offset {
                self.counts.prependZeros(Int(self.offset - floor))
                self.offset = floor
            }
            self.counts[Int(floor - self.offset)] += 1
            return LatencySketch.Bucket(index: floor, count: self.counts[Int(floor - self.offset)])
        }
        self.counts.prependZeros(Int(self.offset - index))
        self.offset = index
        self.counts[0] = 1
        return first
    }

    /// Folds every bucket below `floor` into the bucket at `floor` and records the new floor.
    /// A floor at or below the current one changes nothing.
    @usableFromInline
    mutating func collapse(toFloor floor: Int32) {
        guard floor > self.floorIndex else { return }
        self.floorIndex = floor
        guard !self.counts.isEmpty, floor > self.offset else { return }
        if floor > self.top {
            let total = self.counts.reduce(0, +)
            self.offset = floor
            self.counts = [total]
            return
        }
        let cut = Int(floor - self.offset)
        var folded: UInt64 = 0
        for position in 0...cut { folded += self.counts[position] }
        self.counts.removeFirstCounts(cut)
        self.counts[0] = folded
        self.offset = floor
    }

    /// Re-buckets at a scale `by` steps coarser: index `i` becomes `i >> by`.
    @usableFromInline
    mutating func downscale(by steps: Int) {
        guard steps > 0 else { return }
        if self.hasFloor { self.floorIndex >>= Int32(steps) }
        guard !self.counts.isEmpty else { return }
        let newOffset = self.offset >> Int32(steps)
        let newTop = self.top >> Int32(steps)
        var newCounts = [UInt64](repeating: 0, count: Int(newTop - newOffset) + 1)
        for (position, count) in self.counts.enumerated() where count > 0 {
            let index = (self.offset + Int32(position)) >> Int32(steps)
            newCounts[Int(index - newOffset)] += count
        }
        self.offset = newOffset
        self.counts = PackedCounts(newCounts)
    }

    /// Raises the floor so the index range fits `bucketsMax`, and trims zero buckets at both ends.
    @usableFromInline
    mutating func normalize(bucketsMax: Int) {
        if !self.counts.isEmpty && self.counts.count > bucketsMax {
            self.collapse(toFloor: self.top - Int32(bucketsMax) + 1)
        }
        if let first = self.counts.firstIndex(where: { $0 != 0 }) {
            let last = self.counts.lastIndex(where: { $0 != 0 })!  // exists: first does
            if first > 0 || last < self.counts.count - 1 {
                self.counts.keep(first...last)
                self.offset += Int32(first)
            }
        } else {
            self.counts = []
            self.offset = 0
        }
    }

    /// Joins another version of the same origin's histogram, at the same scale, into this one.
    @usableFromInline
    mutating func merge(_ other: OriginHistogram, bucketsMax: Int) {
        precondition(self.origin == other.origin, "merging histograms of \(self.origin) and \(other.origin)")
        var other = other
        let floor = max(self.floorIndex, other.floorIndex)
        self.collapse(toFloor: floor)
        other.collapse(toFloor: floor)
        self.zeroCount = max(self.zeroCount, other.zeroCount)
        self.sum = max(self.sum, other.sum)
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        if !other.counts.isEmpty {
            if self.counts.isEmpty {
                self.offset = other.offset
                self.counts = other.counts
            } else if other.offset >= self.offset && other.top <= self.top {
                // In place: the common case of a newer or older version of the same range.
                let shift = Int(other.offset - self.offset)
                self.counts.formMax(other.counts, at: shift)
            } else {
                let offset = min(self.offset, other.offset)
                let top = max(self.top, other.top)
                var counts = [UInt64](repeating: 0, count: Int(top - offset) + 1)
                for (position, count) in self.counts.enumerated() {
                    counts[Int(self.offset - offset) + position] = count
                }
                for (position, count) in other.counts.enumerated() {
                    let target = Int(other.offset - offset) + position
                    counts[target] = max(counts[target], count)
                }
                self.offset = offset
                self.counts = PackedCounts(counts)
            }
        }
        self.normalize(bucketsMax: bucketsMax)
    }
}
