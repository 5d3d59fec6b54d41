/// The latency distribution of a set of events, for answering queries: the *sum* of sketches of
/// disjoint sets of events (other series, other time buckets), not their join.
///
/// `LatencySketch.merge` is a lattice join: two versions of one origin's histogram join by a max,
/// because they describe the same events. Sketches of different series or time buckets describe
/// different events, and their histograms must be added, origin by origin. Mixing the two up
/// either double counts (adding versions) or loses events (joining disjoint sets); this type is the
/// adding side, and it is not a CRDT: it is built for one answer and thrown away.
public struct LatencyDistribution: Sendable, Equatable {
    /// The bucket scale; adding a coarser sketch downscales the distribution to it.
    public private(set) var scale: Int
    /// Values below `ExponentialBuckets.valueMin` (zero included).
    public private(set) var zeroCount: UInt64
    /// The highest collapse floor among the added histograms; its bucket holds every value at or
    /// below its upper bound. Nil when nothing collapsed.
    public private(set) var floorIndex: Int32?
    /// The index of `counts[0]`.
    public private(set) var offset: Int32
    public private(set) var counts: [UInt64]
    public private(set) var sum: Double
    public private(set) var minimum: Double?
    public private(set) var maximum: Double?

    public init(scale: Int = LatencySketch.defaultScale) {
        self.scale = scale
        self.zeroCount = 0
        self.floorIndex = nil
        self.offset = 0
        self.counts = []
        self.sum = 0
        self.minimum = nil
        self.maximum = nil
    }

    public var count: UInt64 {
        var total = self.zeroCount
        for count in self.counts { total &+= count }
        return total
    }

    public var mean: Double? {
        let count = self.count
        return count == 0 ? nil : self.sum / Double(count)
    }

    /// Adds every origin's histogram of `sketch` (in origin order, so every replica sums the same bits).
    public mutating func add(_ sketch: LatencySketch) {
        sketch.forEachHistogramInOrder { histogram in
            self.add(
                scale: sketch.scale, zeroCount: histogram.zeroCount,
                floorIndex: histogram.hasFloor ? histogram.floorIndex : nil, offset: histogram.offset,
                counts: histogram.counts, sum: histogram.sum,
                minimum: histogram.minimum, maximum: histogram.maximum)
        }
    }

    /// Adds the events of another distribution (of events disjoint from these).
    public mutating func add(_ other: LatencyDistribution) {
        guard let minimum = other.minimum, let maximum = other.maximum else { return }
        self.add(
            scale: other.scale, zeroCount: other.zeroCount, floorIndex: other.floorIndex, offset: other.offset,
            counts: other.counts, sum: other.sum, minimum: minimum, maximum: maximum)
    }

    private mutating func add<Counts: Collection<UInt64>>(
        scale: Int, zeroCount: UInt64, floorIndex: Int32?, offset: Int32, counts: Counts, sum: Double,
        minimum: Double, maximum: Double
    ) {
        if scale < self.scale { self.downscale(by: self.scale - scale) }
        let steps = Int32(scale - self.scale)
        var floor = floorIndex.map { $0 >> steps }
        if let mine = self.floorIndex { floor = max(floor ?? mine, mine) }
        if let floor { self.fold(to: floor) }
        self.floorIndex = floor
        for (position, count) in counts.enumerated() where count > 0 {
            var index = (offset + Int32(position)) >> steps
            if let floor, index < floor { index = floor }
            self.addCount(count, at: index)
        }
        // Wrapping: decoded counts are bounded (`DecodeLimits.countMax`), but a query adds up to a
        // million buckets' worth; a wrong sum of impossible data beats a trap.
        self.zeroCount &+= zeroCount
        self.sum += sum
        self.minimum = Swift.min(self.minimum ?? minimum, minimum)
        self.maximum = Swift.max(self.maximum ?? maximum, maximum)
    }

    private mutating func addCount(_ count: UInt64, at index: Int32) {
        if self.counts.isEmpty {
            self.offset = index
            self.counts = [count]
        } else if index < self.offset {
            self.counts.insert(contentsOf: repeatElement(0, count: Int(self.offset - index)), at: 0)
            self.offset = index
            self.counts[0] = count
        } else if Int(index - self.offset) >= self.counts.count {
            self.counts.append(contentsOf: repeatElement(0, count: Int(index - self.offset) - self.counts.count + 1))
            self.counts[self.counts.count - 1] = count
        } else {
            self.counts[Int(index - self.offset)] &+= count
        }
    }

    private mutating func fold(to floor: Int32) {
        guard !self.counts.isEmpty, floor > self.offset else { return }
        var folded: UInt64 = 0
        let cut = min(Int(floor - self.offset), self.counts.count - 1)
        for position in 0...cut { folded &+= self.counts[position] }
        if Int(floor - self.offset) >= self.counts.count {
            self.counts = [folded]
        } else {
            self.counts.removeFirst(cut)
            self.counts[0] = folded
        }
        self.offset = floor
    }

    private mutating func downscale(by steps: Int) {
        guard steps > 0 else { return }
        let shift = Int32(steps)
        self.floorIndex = self.floorIndex.map { $0 >> shift }
        self.scale -= steps
        guard !self.counts.isEmpty else { return }
        let old = self.counts
        let oldOffset = self.offset
        self.counts = []
        for (position, count) in old.enumerated() where count > 0 {
            self.addCount(count, at: (oldOffset + Int32(position)) >> shift)
        }
    }

    // MARK: - Thresholds

    /// How many of the values are at most `threshold`, as bounds: `certain` counts the buckets
    /// that lie wholly at or below it, `possible` adds the one bucket it falls inside (and a
    /// collapsed floor reaching above it), whose values may lie on either side. The true count is
    /// in `certain...possible`; a threshold on a bucket boundary makes them equal.
    public func countAtMost(_ threshold: Double) -> (certain: UInt64, possible: UInt64) {
        guard threshold.isFinite, threshold >= ExponentialBuckets.valueMin else {
            // Below every bucket: only the values counted as zero may be at most it.
            return (0, threshold >= 0 ? self.zeroCount : 0)
        }
        let bucket = ExponentialBuckets.index(of: threshold, scale: self.scale)
        // The threshold is its bucket's upper bound when the next value up is in the next bucket.
        let onBoundary = threshold.nextUp.isFinite
            && ExponentialBuckets.index(of: threshold.nextUp, scale: self.scale) > bucket
        var certain = self.zeroCount
        var possible = self.zeroCount
        for (position, count) in self.counts.enumerated() where count > 0 {
            let index = self.offset + Int32(position)
            if index < bucket || (index == bucket && onBoundary) {
                certain &+= count
                possible &+= count
            } else if index == bucket || index == self.floorIndex {
                // Inside the threshold's bucket, or in a floor that holds everything up to its top.
                possible &+= count
            }
        }
        return (certain, possible)
    }

    // MARK: - Quantiles

    /// The 1-based rank of quantile `q` among `count` values: `ceil(q · count)`, clamped to 1...count.
    public static func nearestRank(_ q: Double, count: UInt64) -> UInt64 {
        let rank = (q * Double(count)).rounded(.up)
        guard rank >= 1 else { return 1 }
        guard rank < Double(count) else { return count }
        return UInt64(rank)
    }

    /// The worst relative error of a quantile that is not collapsed.
    public var relativeError: Double { ExponentialBuckets.relativeError(scale: self.scale) }

    public func quantile(_ q: Double) -> QuantileEstimate? {
        self.quantiles([q])?.first
    }

    /// Quantiles `qs` (each in 0...1) by nearest rank; nil when empty. `q <= 0` and `q >= 1` return
    /// the exact minimum and maximum.
    public func quantiles(_ qs: [Double]) -> [QuantileEstimate]? {
        let count = self.count
        guard count > 0, let minimum = self.minimum, let maximum = self.maximum else { return nil }
        return qs.map { q in
            if q <= 0 { return QuantileEstimate(value: minimum, isCollapsed: false) }
            if q >= 1 { return QuantileEstimate(value: maximum, isCollapsed: false) }
            let rank = Self.nearestRank(q, count: count)
            var seen = self.zeroCount
            if rank <= seen { return QuantileEstimate(value: 0, isCollapsed: false) }
            for (position, bucketCount) in self.counts.enumerated() {
                seen &+= bucketCount
                if rank <= seen {
                    let index = self.offset + Int32(position)
                    let estimate = ExponentialBuckets.representative(of: index, scale: self.scale)
                    let value = Swift.min(Swift.max(estimate, minimum), maximum)
                    return QuantileEstimate(value: value, isCollapsed: index == self.floorIndex)
                }
            }
            // count is zeroCount plus the bucket counts: a bug if reached.
            preconditionFailure("rank \(rank) beyond the \(seen) values in the distribution")
        }
    }
}
