/// Latencies that arrive already bucketed, as an OpenTelemetry exponential histogram point does:
/// counts per bucket at `scale` (OpenTelemetry's layout, `ExponentialBuckets`), values below the
/// smallest bucket in `zeroCount`, and the exact sum, minimum and maximum.
///
/// Checked when made, so that adding it to a sketch cannot trap: indices strictly increasing and
/// within the layout's range, counts positive, the total within 2^62, sum, minimum and maximum
/// finite, non-negative and ordered.
public struct LatencyBuckets: Sendable, Equatable {
    public let scale: Int
    public let zeroCount: UInt64
    public let buckets: [LatencySketch.Bucket]
    public let sum: Double
    public let minimum: Double
    public let maximum: Double
    /// Every value: the zero bucket and the buckets.
    public let count: UInt64

    public struct Invalid: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// The most values one point may carry.
    public static let countMax: UInt64 = 1 << 62

    public init(scale: Int, zeroCount: UInt64, buckets: [LatencySketch.Bucket], sum: Double, minimum: Double,
                maximum: Double) throws(Invalid)
    {
        guard (ExponentialBuckets.scaleMin...ExponentialBuckets.scaleMax).contains(scale) else {
            throw Invalid(description: "scale \(scale) is outside \(ExponentialBuckets.scaleMin)...\(ExponentialBuckets.scaleMax)")
        }
        // The largest finite double is in bucket 1023 << scale at positive scales; stay well inside.
        let indexBound = Int64(1_100) << max(scale, 0)
        var total = zeroCount
        var previous: Int32?
        for bucket in buckets {
            guard bucket.count > 0 else { throw Invalid(description: "bucket \(bucket.index) has a count of 0") }
            guard Int64(bucket.index).magnitude < UInt64(indexBound) else {
                throw Invalid(description: "bucket index \(bucket.index) is out of range at scale \(scale)")
            }
            if let previous, bucket.index <= previous {
                throw Invalid(description: "bucket indices must increase (\(bucket.index) after \(previous))")
            }
            previous = bucket.index
            let (sum, overflow) = total.addingReportingOverflow(bucket.count)
            guard !overflow, sum <= Self.countMax else { throw Invalid(description: "more than 2^62 values") }
            total = sum
        }
        guard total <= Self.countMax else { throw Invalid(description: "more than 2^62 values") }
        guard sum.isFinite, sum >= 0, minimum.isFinite, maximum.isFinite, minimum >= 0, minimum <= maximum || total == 0 else {
            throw Invalid(description: "sum, min and max must be finite and non-negative, min <= max")
        }
        self.scale = scale
        self.zeroCount = zeroCount
        self.buckets = buckets
        self.sum = sum
        self.minimum = total == 0 ? .infinity : minimum
        self.maximum = total == 0 ? -.infinity : maximum
        self.count = total
    }
}
