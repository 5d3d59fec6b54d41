/// A quantile read from a sketch.
public struct QuantileEstimate: Sendable, Equatable, CustomStringConvertible {
    /// The estimate: within the sketch's relative error of the true value, unless `isCollapsed`.
    public var value: Double
    /// True when the rank fell into a collapsed bucket: the true value is at most `value`, and the
    /// relative-error guarantee does not hold for it.
    public var isCollapsed: Bool

    public init(value: Double, isCollapsed: Bool) {
        self.value = value
        self.isCollapsed = isCollapsed
    }

    public var description: String { self.isCollapsed ? "<=\(self.value)" : "\(self.value)" }
}

extension LatencySketch {
    /// Number of values recorded, over all origins.
    public var count: UInt64 {
        var total: UInt64 = 0
        self.forEachHistogram { total += $0.count }
        return total
    }

    /// Sum of the values recorded, over all origins (summed in origin order, so every replica
    /// computes the same bits).
    public var sum: Double {
        var total = 0.0
        for histogram in self.histograms { total += histogram.sum }  // in origin order
        return total
    }

    public var minimum: Double? {
        self.histograms.isEmpty ? nil : self.histograms.map(\.minimum).min()
    }

    public var maximum: Double? {
        self.histograms.isEmpty ? nil : self.histograms.map(\.maximum).max()
    }

    public var mean: Double? {
        let count = self.count
        return count == 0 ? nil : self.sum / Double(count)
    }

    /// The origins that recorded values into this sketch.
    public var origins: [ReplicaID] { self.histograms.map(\.origin) }

    /// The worst relative error of a quantile that is not collapsed.
    public var relativeError: Double { ExponentialBuckets.relativeError(scale: self.scale) }

    /// The 1-based rank of quantile `q` among `count` values: `ceil(q · count)`, at least 1.
    public static func nearestRank(_ q: Double, count: UInt64) -> UInt64 {
        let rank = (q * Double(count)).rounded(.up)
        return Swift.min(Swift.max(UInt64(Swift.max(rank, 1)), 1), count)
    }

    /// All origins' buckets added up: what a query sees.
    public struct CombinedBuckets: Sendable, Equatable {
        public var scale: Int
        public var zeroCount: UInt64
        /// The highest collapse floor of any origin, if any collapsed; its bucket holds everything
        /// at or below its upper bound.
        public var floorIndex: Int32?
        public var offset: Int32
        public var counts: [UInt64]
    }

    /// The sum over origins of their buckets, each folded to the highest floor among them.
    public var combinedBuckets: CombinedBuckets {
        let floors = self.histograms.filter(\.hasFloor).map(\.floorIndex)
        let floor = floors.max()
        var zeroCount: UInt64 = 0
        var folded: [OriginHistogram] = []
        for var histogram in self.histograms {
            zeroCount += histogram.zeroCount
            if let floor { histogram.collapse(toFloor: floor) }
            if !histogram.counts.isEmpty { folded.append(histogram) }
        }
        guard let offset = folded.map(\.offset).min(), let top = folded.map(\.top).max() else {
            return CombinedBuckets(scale: self.scale, zeroCount: zeroCount, floorIndex: floor, offset: 0, counts: [])
        }
        var counts = [UInt64](repeating: 0, count: Int(top - offset) + 1)
        for histogram in folded {
            let shift = Int(histogram.offset - offset)
            for (position, count) in histogram.counts.enumerated() {
                counts[shift + position] += count
            }
        }
        return CombinedBuckets(scale: self.scale, zeroCount: zeroCount, floorIndex: floor, offset: offset, counts: counts)
    }

    /// The value at quantile `q` (0...1) by nearest rank; nil when the sketch is empty.
    /// `q == 0` and `q == 1` return the exact minimum and maximum.
    public func quantile(_ q: Double) -> QuantileEstimate? {
        self.quantiles([q])?.first
    }

    /// Several quantiles from one pass over the combined buckets.
    public func quantiles(_ qs: [Double]) -> [QuantileEstimate]? {
        let count = self.count
        guard count > 0, let minimum = self.minimum, let maximum = self.maximum else { return nil }
        let buckets = self.combinedBuckets
        return qs.map { q in
            if q <= 0 { return QuantileEstimate(value: minimum, isCollapsed: false) }
            if q >= 1 { return QuantileEstimate(value: maximum, isCollapsed: false) }
            let rank = Self.nearestRank(q, count: count)
            var seen = buckets.zeroCount
            if rank <= seen { return QuantileEstimate(value: 0, isCollapsed: false) }
            for (position, bucketCount) in buckets.counts.enumerated() {
                seen += bucketCount
                if rank <= seen {
                    let index = buckets.offset + Int32(position)
                    let estimate = ExponentialBuckets.representative(of: index, scale: buckets.scale)
                    let value = Swift.min(Swift.max(estimate, minimum), maximum)
                    return QuantileEstimate(value: value, isCollapsed: index == buckets.floorIndex)
                }
            }
            // count is zeroCount plus the bucket counts, and folding keeps totals: a bug if reached.
            preconditionFailure("rank \(rank) beyond the \(seen) values in the combined buckets")
        }
    }
}
