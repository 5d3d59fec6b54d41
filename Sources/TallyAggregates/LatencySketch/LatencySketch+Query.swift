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
        self.forEachHistogram { total &+= $0.count }
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
        LatencyDistribution.nearestRank(q, count: count)
    }

    /// All origins' buckets added up: what a query sees.
    public var distribution: LatencyDistribution {
        var distribution = LatencyDistribution(scale: self.scale)
        distribution.add(self)
        return distribution
    }

    /// The value at quantile `q` (0...1) by nearest rank; nil when the sketch is empty.
    /// `q == 0` and `q == 1` return the exact minimum and maximum.
    public func quantile(_ q: Double) -> QuantileEstimate? {
        self.distribution.quantile(q)
    }

    /// Several quantiles from one pass over the combined buckets; nil when the sketch is empty.
    public func quantiles(_ qs: [Double]) -> [QuantileEstimate]? {
        self.distribution.quantiles(qs)
    }
}
