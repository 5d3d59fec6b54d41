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
    public static let scaleMax = 8
    /// The coarsest scale: at -10 one bucket spans a factor of 2^1024, all doubles in a few buckets.
    public static let scaleMin = -10

    /// Smallest positive value that gets a bucket; smaller values (subnormals) count as zero.
    public static let valueMin = Double.leastNormalMagnitude

    /// The index of the bucket holding `value` at `scale`.
    ///
    /// - Precondition: `value` is finite and at least `valueMin`; `scale` is in `scaleMin...scaleMax`.
    @inlinable
    public static func index(of value: Double, scale: Int) -> Int32 {
        let bits = value.bitPattern
        let exponent = Int((bits >> 52) & 0x7FF) - 1023
        let mantissa = bits & 0x000F_FFFF_FFFF_FFFF
        let finest: Int
        if mantissa == 0 {
            // An exact power of two is the inclusive upper bound of the bucket below it.
            finest = (exponent << 8) - 1
        } else {
            finest = (exponent << 8) + Self.subBucket(of: mantissa)
        }
        return Int32(truncatingIfNeeded: finest >> (Self.scaleMax - scale))
    }

    /// The sub-bucket (0...255) of a non-zero mantissa at scale 8.
    @inlinable @inline(__always)
    static func subBucket(of mantissa: UInt64) -> Int {
        // table[0..<512]: first sub-bucket of each mantissa chunk; table[512...]: boundaries.
        // mantissa < 2^52, so mantissa >> 43 < 512, and sub + 1 <= 255: both reads are in bounds.
        let table = Self.table
        var sub = Int(table[Int(mantissa >> 43)])
        if sub < 255 && mantissa > table[512 + sub + 1] { sub += 1 }
        return sub
    }

    /// `tables` as a raw pointer, so the hot path pays no reference counting or bounds check.
    // nonisolated(unsafe): written once by the lazy initializer, immutable and never freed after.
    @usableFromInline
    nonisolated(unsafe) static let table: UnsafePointer<UInt64> = {
        let tables = Self.tables
        let pointer = UnsafeMutablePointer<UInt64>.allocate(capacity: tables.count)
        pointer.initialize(from: tables, count: tables.count)
        return UnsafePointer(pointer)
    }()

    /// Chunk starts (512 entries) followed by the 256 mantissa boundaries of `2^(k/256)`.
    static let tables: [UInt64] = {
        var boundaries = [UInt64](repeating: 0, count: 256)
        for k in 1..<256 {
            boundaries[k] = Math.exp2(Double(k) / 256).bitPattern & 0x000F_FFFF_FFFF_FFFF
        }
        var chunkStarts = [UInt64](repeating: 0, count: 512)
        var sub = 0
        for chunk in 0..<512 {
            let chunkLow = max(UInt64(chunk) << 43, 1)
            while sub < 255 && boundaries[sub + 1] < chunkLow { sub += 1 }
            chunkStarts[chunk] = UInt64(sub)
        }
        return chunkStarts + boundaries
    }()

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
