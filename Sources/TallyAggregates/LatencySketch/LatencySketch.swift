/// A mergeable latency distribution with a relative-error guarantee on every quantile.
///
/// Buckets are OpenTelemetry exponential-histogram buckets (`ExponentialBuckets`): at the default
/// scale 6 every quantile is within 0.55% relative error, and the buckets export losslessly to OTLP
/// and to Prometheus native histograms. Count and zero count are exact; sum, min and max are exact
/// up to floating-point rounding.
///
/// It follows DDSketch (Masson, Rim and Lee, VLDB 2019) for the relative-error guarantee and the
/// collapse of the lowest buckets under a bucket bound, with OpenTelemetry's base-2 bucket layout so
/// that downscaling (halving the resolution) is an exact index shift and sketches of different
/// scales merge.
///
/// Why counts are kept per origin replica: DDSketch and OpenTelemetry merge histograms by adding
/// bucket counts. Addition is not idempotent: when gossip delivers the same state twice, or a delta
/// arrives again after a reconnect, or two peers relay the same region's state, a sum counts those
/// events twice, and replicas that saw different redeliveries never agree. Here each origin's
/// histogram is written only by that origin and only grows, so the join is a bucket-wise max per
/// origin, which is commutative, associative and idempotent: redelivery changes nothing. The totals
/// a query sees add up the origins, each counted once.
///
/// Deviations from the papers: per-origin slots (above); the collapse floor is part of the state
/// and joins by max (see `OriginHistogram`); quantiles whose rank falls in a collapsed bucket are
/// flagged as such instead of silently returning the floor.
public struct LatencySketch: Lattice {
    public static let defaultScale = 6
    /// 2,048 buckets at scale 6 span a factor of 2^32: from 1 µs to over an hour.
    public static let defaultBucketsMax = 2_048
    public static let bucketsMaxRange = 16...65_536

    /// The bucket resolution; the join takes the coarser of two scales.
    public internal(set) var scale: Int
    /// Most buckets per origin before the lowest collapse; the join takes the smaller bound.
    public internal(set) var bucketsMax: Int
    /// The histogram of the origin that records into this sketch, held inline: a record then
    /// touches one heap buffer (its bucket counts), not two. Nil until an origin records.
    @usableFromInline var primary: OriginHistogram?
    /// Every other origin's histogram, sorted by origin.
    var others: [OriginHistogram]

    /// What one `record` changed: the origin's new totals and the new count of one bucket.
    ///
    /// Only `record` makes one, so a delta always holds at least one value.
    public struct Delta: Sendable, Equatable {
        public let origin: ReplicaID
        public let scale: Int
        public let bucketsMax: Int
        public let floorIndex: Int32?
        /// The bucket the value went to and its count now; nil when it went to the zero bucket.
        public let bucket: Bucket?
        public let zeroCount: UInt64
        public let sum: Double
        public let minimum: Double
        public let maximum: Double

        @usableFromInline
        init(origin: ReplicaID, scale: Int, bucketsMax: Int, floorIndex: Int32?, bucket: Bucket?,
             zeroCount: UInt64, sum: Double, minimum: Double, maximum: Double)
        {
            self.origin = origin
            self.scale = scale
            self.bucketsMax = bucketsMax
            self.floorIndex = floorIndex
            self.bucket = bucket
            self.zeroCount = zeroCount
            self.sum = sum
            self.minimum = minimum
            self.maximum = maximum
        }
    }

    public struct Bucket: Sendable, Hashable {
        public var index: Int32
        public var count: UInt64

        @inlinable
        public init(index: Int32, count: UInt64) {
            self.index = index
            self.count = count
        }
    }

    /// An empty sketch.
    ///
    /// - Precondition: `scale` is in `ExponentialBuckets.scaleMin...scaleMax` and `bucketsMax` in
    ///   `bucketsMaxRange`; configuration is validated before it reaches here.
    public init(scale: Int = LatencySketch.defaultScale, bucketsMax: Int = LatencySketch.defaultBucketsMax) {
        precondition(
            (ExponentialBuckets.scaleMin...ExponentialBuckets.scaleMax).contains(scale),
            "sketch scale \(scale) outside \(ExponentialBuckets.scaleMin)...\(ExponentialBuckets.scaleMax)")
        precondition(Self.bucketsMaxRange.contains(bucketsMax), "sketch bucketsMax \(bucketsMax) out of range")
        self.scale = scale
        self.bucketsMax = bucketsMax
        self.primary = nil
        self.others = []
    }

    public init(delta: Delta) {
        self.init(scale: delta.scale, bucketsMax: delta.bucketsMax)
        var histogram = OriginHistogram(origin: delta.origin)
        histogram.floorIndex = delta.floorIndex ?? OriginHistogram.noFloor
        histogram.zeroCount = delta.zeroCount
        histogram.sum = delta.sum
        histogram.minimum = delta.minimum
        histogram.maximum = delta.maximum
        if let bucket = delta.bucket, bucket.count > 0 {
            histogram.offset = bucket.index
            histogram.counts = [bucket.count]
        }
        self.others = [histogram]
    }

    // MARK: - Recording

    /// Records one latency observed at `origin`.
    ///
    /// MUST be called only by the replica that `origin` names (each origin's histogram has one
    /// writer). `value` MUST be finite and non-negative: the ingest layer rejects anything else with
    /// a reason before it reaches an aggregate.
    ///
    /// Inlinable, like HdrHistogram's record: inlined into the caller's loop, the sketch's fields
    /// stay in registers between values instead of being stored and reloaded around a call.
    @inlinable @inline(__always)
    public mutating func record(_ value: Double, at origin: ReplicaID) {
        _ = self.recordInPrimary(value, at: origin)
    }

    /// Adds latencies that arrived already bucketed (an OTLP histogram point), at `origin`: the
    /// same state as recording each of their values, given their buckets at this sketch's scale.
    /// Same contract as `record(_:at:)`: only `origin`'s replica calls it, with validated input
    /// (`LatencyBuckets.init` checks it).
    public mutating func add(_ latencies: LatencyBuckets, at origin: ReplicaID) {
        guard latencies.count > 0 else { return }
        if self.primary?.origin != origin { self.makePrimary(origin) }
        let shift = latencies.scale - self.scale
        precondition(shift >= 0, "buckets at scale \(latencies.scale) added to a sketch at \(self.scale)")
        let bucketsMax = self.bucketsMax
        self.primary!.zeroCount &+= latencies.zeroCount
        for bucket in latencies.buckets {
            // Downscaling is an index shift (`ExponentialBuckets`): exact.
            self.primary!.add(index: bucket.index >> Int32(shift), count: bucket.count, bucketsMax: bucketsMax)
        }
        self.primary!.sum += latencies.sum
        self.primary!.minimum = Swift.min(self.primary!.minimum, latencies.minimum)
        self.primary!.maximum = Swift.max(self.primary!.maximum, latencies.maximum)
    }

    /// Records one latency and returns the delta: what changed, as a value that merges like a state.
    /// Same contract as `record(_:at:)`, which is cheaper when the delta is not needed.
    public mutating func recordReturningDelta(_ value: Double, at origin: ReplicaID) -> Delta {
        let bucket = self.recordInPrimary(value, at: origin)
        // recordInPrimary made `origin`'s histogram the primary one.
        return self.primary!.delta(bucket: bucket, scale: self.scale, bucketsMax: self.bucketsMax)
    }

    @inlinable @inline(__always)
    mutating func recordInPrimary(_ value: Double, at origin: ReplicaID) -> Bucket? {
        var value = value
        // One comparison rejects negatives, infinities and NaN: their bit patterns are all larger.
        if value.bitPattern >= 0x7FF0_0000_0000_0000 {
            precondition(value == 0, "latency \(value) reached the sketch unvalidated")
            value = 0  // -0.0
        }
        if self.primary?.origin != origin { self.makePrimary(origin) }
        // makePrimary guarantees a primary histogram of `origin`.
        return self.primary!.record(value, scale: self.scale, bucketsMax: self.bucketsMax)
    }

    /// Moves `origin`'s histogram (a new one if absent) inline, and the current primary to `others`.
    @usableFromInline
    mutating func makePrimary(_ origin: ReplicaID) {
        if let current = self.primary { self.insertOther(current) }
        if let position = self.others.firstIndex(where: { $0.origin == origin }) {
            self.primary = self.others.remove(at: position)
        } else {
            self.primary = OriginHistogram(origin: origin)
        }
    }

    private mutating func insertOther(_ histogram: OriginHistogram) {
        let position = self.others.firstIndex { $0.origin > histogram.origin } ?? self.others.count
        self.others.insert(histogram, at: position)
    }

    /// Every origin's histogram in origin order (allocates: for merges, queries and encoding).
    var histograms: [OriginHistogram] {
        get {
            guard let primary = self.primary, !primary.isEmpty else {
                return self.others
            }
            var all = self.others
            let position = all.firstIndex { $0.origin > primary.origin } ?? all.count
            all.insert(primary, at: position)
            return all
        }
        set {
            precondition(zip(newValue, newValue.dropFirst()).allSatisfy { $0.origin < $1.origin }, "histograms unsorted")
            // Keep the recording origin inline, if it is still there.
            if let origin = self.primary?.origin, let position = newValue.firstIndex(where: { $0.origin == origin }) {
                var rest = newValue
                self.primary = rest.remove(at: position)
                self.others = rest
            } else {
                self.primary = nil
                self.others = newValue
            }
        }
    }

    /// Calls `body` on every origin's histogram in origin order (as `histograms` lists them, so
    /// sums add in the same order on every replica), without allocating.
    func forEachHistogramInOrder(_ body: (OriginHistogram) -> Void) {
        guard let primary = self.primary, !primary.isEmpty else {
            for histogram in self.others { body(histogram) }
            return
        }
        var placed = false
        for histogram in self.others {
            if !placed && histogram.origin > primary.origin {
                body(primary)
                placed = true
            }
            body(histogram)
        }
        if !placed { body(primary) }
    }

    /// Calls `body` on every origin's histogram, without allocating.
    func forEachHistogram(_ body: (OriginHistogram) -> Void) {
        if let primary = self.primary, !primary.isEmpty { body(primary) }
        for histogram in self.others { body(histogram) }
    }

    public static func == (lhs: LatencySketch, rhs: LatencySketch) -> Bool {
        lhs.scale == rhs.scale && lhs.bucketsMax == rhs.bucketsMax && lhs.histograms == rhs.histograms
    }

    // MARK: - Merging

    public mutating func merge(_ other: LatencySketch) {
        let scale = min(self.scale, other.scale)
        let bucketsMax = min(self.bucketsMax, other.bucketsMax)
        self.conform(scale: scale, bucketsMax: bucketsMax)
        if other.scale == scale && other.bucketsMax == bucketsMax {
            self.mergeHistograms(of: other)
        } else {
            var other = other
            other.conform(scale: scale, bucketsMax: bucketsMax)
            self.mergeHistograms(of: other)
        }
    }

    /// Joins each of `other`'s histograms into this sketch's, in place; both at the same scale and bound.
    private mutating func mergeHistograms(of other: LatencySketch) {
        other.forEachHistogram { histogram in
            if self.primary?.origin == histogram.origin {
                self.primary!.merge(histogram, bucketsMax: self.bucketsMax)  // checked just above
            } else if let position = self.others.firstIndex(where: { $0.origin == histogram.origin }) {
                self.others[position].merge(histogram, bucketsMax: self.bucketsMax)
            } else {
                self.insertOther(histogram)
            }
        }
    }

    public mutating func merge(delta: Delta) {
        self.merge(LatencySketch(delta: delta))
    }

    /// Brings every histogram to a coarser scale and a smaller bucket bound.
    mutating func conform(scale: Int, bucketsMax: Int) {
        precondition(scale <= self.scale && bucketsMax <= self.bucketsMax, "conform only coarsens")
        guard scale != self.scale || bucketsMax != self.bucketsMax else { return }
        let steps = self.scale - scale
        func coarsen(_ histogram: inout OriginHistogram) {
            histogram.downscale(by: steps)
            histogram.normalize(bucketsMax: bucketsMax)
        }
        if self.primary != nil { coarsen(&self.primary!) }  // checked just before
        for position in self.others.indices { coarsen(&self.others[position]) }
        self.scale = scale
        self.bucketsMax = bucketsMax
    }

    /// This sketch at a coarser scale (downscaling is exact: buckets nest).
    public func downscaled(to scale: Int) -> LatencySketch {
        var copy = self
        copy.conform(scale: min(scale, self.scale), bucketsMax: self.bucketsMax)
        return copy
    }

    /// The part of this sketch written by `origin`, as a sketch (what replication ships).
    public func projection(of origin: ReplicaID) -> LatencySketch {
        var copy = LatencySketch(scale: self.scale, bucketsMax: self.bucketsMax)
        copy.others = self.histograms.filter { $0.origin == origin }
        return copy
    }
}

extension OriginHistogram {
    func delta(bucket: LatencySketch.Bucket?, scale: Int, bucketsMax: Int) -> LatencySketch.Delta {
        LatencySketch.Delta(
            origin: self.origin, scale: scale, bucketsMax: bucketsMax,
            floorIndex: self.hasFloor ? self.floorIndex : nil, bucket: bucket,
            zeroCount: self.zeroCount, sum: self.sum, minimum: self.minimum, maximum: self.maximum)
    }
}
