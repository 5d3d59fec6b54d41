import CTallyBucketTables

/// The bucket layout of OpenTelemetry exponential histograms
/// (opentelemetry-specification, data-model.md, "ExponentialHistogram").
///
/// At scale `s` the base is `γ = 2^(2^-s)` and bucket `i` holds the values in `(γ^i, γ^(i+1)]`
/// (upper bound inclusive). Scale 6 gives `γ ≈ 1.010889` and so a relative error of at most
/// `(γ - 1) / (γ + 1) ≈ 0.54%` when a bucket is reported by `representative(of:)`.
///
/// Mapping a value to its index uses no logarithm: the index at the finest supported scale (8) is
/// the binary exponent times 256 plus the sub-bucket of the mantissa, which a 512-entry table of
/// mantissa chunks finds with one comparison (each chunk holds at most one sub-bucket boundary,
/// because boundaries are at least `2^(1/256) - 1 > 1/512` apart). Coarser scales shift that index
/// right, which is exactly OpenTelemetry's downscaling rule. This is the technique of
/// Otmar Ertl's DynaHist `OpenTelemetryExponentialBucketsLayout`, written afresh.
public enum ExponentialBuckets {
    /// The finest scale the index tables support.
    @inlinable public static var scaleMax: Int { 8 }
    /// The coarsest scale: at -10 one bucket spans a factor of 2^1024, all doubles in a few buckets.
    @inlinable public static var scaleMin: Int { -10 }

    /// Smallest positive value that gets a bucket; smaller values (subnormals) count as zero.
    public static var valueMin: Double { Double.leastNormalMagnitude }

    /// The index of the bucket holding `value` at `scale`.
    ///
    /// - Precondition: `value` is finite and at least `valueMin`; `scale` is in `scaleMin...scaleMax`.
    public static func index(of value: Double, scale: Int) -> Int32 {
        precondition(value >= Self.valueMin && value.isFinite, "no bucket for \(value)")
        return Self.index(ofPositiveNormalBits: value.bitPattern, scale: scale)
    }

    /// `index(of:scale:)` on the bit pattern of a positive, normal, finite double.
    ///
    /// Buckets are upper-inclusive, `(γ^i, γ^(i+1)]`; the lookup below finds lower-inclusive ones,
    /// `[γ^i, γ^(i+1))`, so it is applied to the next double below the value (`bits - 1`): the two
    /// agree everywhere, exact powers of two included, with no special case. For the smallest
    /// normal double, `bits - 1` is the largest subnormal, whose exponent field 0 still reads as
    /// 2^-1023 with an all-ones mantissa: the right answer again.
    @inlinable @inline(__always)
    static func index(ofPositiveNormalBits bits: UInt64, scale: Int) -> Int32 {
        let below = bits &- 1
        let exponent = Int(below >> 52) &- 1023
        let finest = (exponent << 8) &+ Self.subBucket(of: below & 0x000F_FFFF_FFFF_FFFF)
        // scale <= scaleMax, so the shift is 0...18: a plain arithmetic shift.
        return Int32(truncatingIfNeeded: finest &>> (Self.scaleMax &- scale))
    }

    /// The sub-bucket (0...255) of a mantissa at scale 8: the largest k with `2^(k/256) <= 1.mantissa`.
    ///
    /// The 512-entry chunk table and the 257 boundaries are C constants (`CTallyBucketTables`):
    /// literals rather than computed at start-up, so that no replica's bucketing depends on its
    /// platform's `exp2` (`LatencySketchTests` recomputes every boundary), and in C so that a record
    /// inlined into another module reads them directly (a Swift global would be read through a
    /// lazy-initialization check each time: 7.6 ns per record instead of 4.2, not inlined).
    @inlinable @inline(__always)
    static func subBucket(of mantissa: UInt64) -> Int {
        Int(tally_sub_bucket(mantissa))
    }

    /// The exclusive lower bound of bucket `index` at `scale`: `2^(index · 2^-scale)`.
    public static func lowerBound(of index: Int32, scale: Int) -> Double {
        Math.exp2(Double(index) * Math.exp2(Double(-scale)))
    }

    /// The value reported for a bucket: `2·L·U / (L + U)`, which is within `(γ-1)/(γ+1)` relative
    /// error of every value in `(L, U]` (the harmonic mean of the bounds, as in DDSketch).
    public static func representative(of index: Int32, scale: Int) -> Double {
        let lower = Self.lowerBound(of: index, scale: scale)
        let gamma = Math.exp2(Math.exp2(Double(-scale)))
        return 2 * lower * gamma / (1 + gamma)
    }

    /// The worst relative error of `representative(of:scale:)` at `scale`.
    public static func relativeError(scale: Int) -> Double {
        let gamma = Math.exp2(Math.exp2(Double(-scale)))
        return (gamma - 1) / (gamma + 1)
    }

    /// Valid bucket indices at `scale`: those of the positive normal doubles.
    public static func indexRange(scale: Int) -> ClosedRange<Int32> {
        Self.index(of: Self.valueMin, scale: scale)...Self.index(of: Double.greatestFiniteMagnitude, scale: scale)
    }
}
