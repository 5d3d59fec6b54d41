/// A lattice value's *difference* from an older version of itself: the smallest state `d` with
/// `older ⊔ d == self`, for any `older` that `self` has absorbed (`older ⊔ self == self`).
///
/// Replication ships differences, not whole states: a time bucket that took 50 events since the
/// last gossip round ships the 50 events' worth of changed slots, sketch buckets and registers,
/// not its thousand-user HyperLogLog again. Like any state, a difference merges idempotently, so
/// shipping one twice, or out of order with other differences, is harmless.
public protocol Differentiable: Lattice {
    /// The part of `self` that `older` lacks. `older` MUST be a version `self` has absorbed.
    func difference(from older: Self) -> Self
}

extension GCounter: Differentiable {
    /// The slots that grew.
    public func difference(from older: GCounter) -> GCounter {
        var difference = GCounter()
        difference.slots = self.slots.filter { $0.value > older.value(of: $0.origin) }
        return difference
    }
}

extension HyperLogLog: Differentiable {
    /// The registers that grew, at `self`'s precision (never finer than `older`'s).
    public func difference(from older: HyperLogLog) -> HyperLogLog {
        precondition(self.precision <= older.precision, "difference from a coarser HyperLogLog: not a version of it")
        var older = older
        if older.precision > self.precision { older.fold(to: self.precision) }
        var difference = HyperLogLog(precision: self.precision)
        if self.isSparse {
            let theirs = older.isSparse ? older.sparseEntries : []
            var position = 0
            for entry in self.sparseEntries {
                let index = Int(entry >> 6)
                var rank: UInt32 = 0
                if older.isSparse {
                    while position < theirs.count && theirs[position] >> 6 < UInt32(index) { position += 1 }
                    if position < theirs.count && theirs[position] >> 6 == UInt32(index) { rank = theirs[position] & 0x3F }
                } else {
                    rank = UInt32(older.dense[index])
                }
                if entry & 0x3F > rank { difference.sparse.append(entry) }
            }
        } else if !older.isSparse {
            // Both dense: compare in place, no register array to build.
            self.dense.withUnsafeBufferPointer { mine in
                older.dense.withUnsafeBufferPointer { theirs in
                    for index in 0..<mine.count where mine[index] > theirs[index] {
                        difference.sparse.append(UInt32(index) << 6 | UInt32(mine[index]))
                    }
                }
            }
        } else {
            var registers = [UInt8](repeating: 0, count: self.registerCount)
            for entry in older.sparseEntries { registers[Int(entry >> 6)] = UInt8(entry & 0x3F) }
            for (index, rank) in self.dense.enumerated() where rank > registers[index] {
                difference.sparse.append(UInt32(index) << 6 | UInt32(rank))
            }
        }
        if difference.sparse.count > difference.sparseEntriesMax { difference.densify() }
        return difference
    }
}

extension LatencySketch: Differentiable {
    /// Per origin, the histogram's buckets that grew, with its totals; an origin whose floor
    /// differs from `older`'s (after bringing `older` to `self`'s scale and bound) ships whole.
    public func difference(from older: LatencySketch) -> LatencySketch {
        var older = older
        older.conform(scale: Swift.min(self.scale, older.scale), bucketsMax: Swift.min(self.bucketsMax, older.bucketsMax))
        var difference = LatencySketch(scale: self.scale, bucketsMax: self.bucketsMax)
        var changed: [OriginHistogram] = []
        let theirs = older.histograms
        self.forEachHistogram { histogram in
            guard var base = theirs.first(where: { $0.origin == histogram.origin }) else {
                changed.append(histogram)
                return
            }
            base.collapse(toFloor: histogram.floorIndex)
            if let part = histogram.difference(from: base) { changed.append(part) }
        }
        difference.others = changed.sorted { $0.origin < $1.origin }
        return difference
    }
}

extension LatencySketch {
    /// `difference(from:)` restricted to one origin's histogram: what a replica seals of its own
    /// changes, without walking the other origins' histograms.
    public func difference(from older: LatencySketch, origin: ReplicaID) -> LatencySketch {
        var difference = LatencySketch(scale: self.scale, bucketsMax: self.bucketsMax)
        guard let mine = self.histogram(of: origin) else { return difference }
        var older = older
        if older.scale != self.scale || older.bucketsMax != self.bucketsMax {
            older.conform(scale: Swift.min(self.scale, older.scale), bucketsMax: Swift.min(self.bucketsMax, older.bucketsMax))
        }
        guard var base = older.histogram(of: origin) else {
            difference.others = [mine]
            return difference
        }
        base.collapse(toFloor: mine.floorIndex)
        if let part = mine.difference(from: base) { difference.others = [part] }
        return difference
    }

    /// One origin's histogram, if it recorded here.
    func histogram(of origin: ReplicaID) -> OriginHistogram? {
        if let primary = self.primary, primary.origin == origin { return primary.isEmpty ? nil : primary }
        return self.others.first { $0.origin == origin }
    }
}

extension OriginHistogram {
    /// The buckets that grew (others zero, trimmed) with the current totals; nil if nothing grew.
    /// `older` is a version of the same origin's histogram at the same scale and floor.
    func difference(from older: OriginHistogram) -> OriginHistogram? {
        // One pass for the range of grown counts, then counts for that range only: a day's
        // histogram spans hundreds of buckets, and a gossip round's events touch a few of them.
        let shift = Int(self.offset) - Int(older.offset)  // older position = own position + shift
        func olderCount(_ position: Int) -> UInt64 {
            let olderPosition = position + shift
            return olderPosition >= 0 && olderPosition < older.counts.count ? older.counts[olderPosition] : 0
        }
        let grown = self.counts.grownRange(over: older.counts, shift: shift)
        let zeroCountGrew = self.zeroCount > older.zeroCount
        guard grown != nil || zeroCountGrew || self.floorIndex != older.floorIndex else { return nil }
        var part = self
        part.zeroCount = zeroCountGrew ? self.zeroCount : 0
        if let grown {
            var counts = [UInt64](repeating: 0, count: grown.count)
            for position in grown {
                let count = self.counts[position]
                if count > olderCount(position) { counts[position - grown.lowerBound] = count }
            }
            part.counts = PackedCounts(counts)
            part.offset = self.offset + Int32(grown.lowerBound)
        } else {
            part.counts = []
            part.offset = 0
        }
        if part.isEmpty && part.floorIndex == older.floorIndex { return nil }
        return part
    }
}

extension LatencySketch {
    /// True when no origin has recorded into it: the bottom of the lattice (at its scale).
    public var isEmpty: Bool {
        (self.primary?.isEmpty ?? true) && self.others.isEmpty
    }
}

extension HyperLogLog {
    /// True when every register is zero: the bottom of the lattice (at its precision).
    public var isEmpty: Bool { self.dense.isEmpty && self.sparse.isEmpty && self.settled.isEmpty }
}
