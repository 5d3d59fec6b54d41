import Testing
@testable import TallyAggregates

@Suite struct LatencySketchTests {
    static let origin = ReplicaID(region: "us-east", node: "a", incarnation: 1)

    // MARK: - Bucket layout

    @Test func indexMatchesOpenTelemetryBoundaries() {
        var random = SeededRandom(seed: 11)
        for scale in ExponentialBuckets.scaleMin...ExponentialBuckets.scaleMax {
            for _ in 0..<5_000 {
                let value = Math.exp2(Double.random(in: -60...60, using: &random))
                let index = ExponentialBuckets.index(of: value, scale: scale)
                let lower = ExponentialBuckets.lowerBound(of: index, scale: scale)
                let upper = ExponentialBuckets.lowerBound(of: index + 1, scale: scale)
                // (lower, upper], up to the rounding of the bounds themselves.
                #expect(lower < value * (1 + 1e-12) && value <= upper * (1 + 1e-12),
                        "value \(value) at scale \(scale) mapped to \(index): (\(lower), \(upper)]")
            }
        }
    }

    /// The lookup tables implement exactly the boundaries 2^(k/256): for every k, the smallest
    /// mantissa in sub-bucket k (found by bisection through the lookup) is the mantissa of the
    /// double nearest 2^(k/256).
    @Test func subBucketBoundariesAreThePowersOfTwoToTheKOver256() {
        for k in 0..<256 {
            var low: UInt64 = 0
            var high: UInt64 = 1 << 52
            while low < high {
                let mid = (low + high) / 2
                if ExponentialBuckets.subBucket(of: mid) >= k { high = mid } else { low = mid + 1 }
            }
            let expected = Math.exp2(Double(k) / 256).bitPattern & 0x000F_FFFF_FFFF_FFFF
            #expect(low == expected, "boundary \(k): \(low) vs \(expected)")
        }
        #expect(ExponentialBuckets.subBucket(of: (1 << 52) - 1) == 255)
    }

    @Test func exactPowersOfTwoAreUpperBounds() {
        for scale in ExponentialBuckets.scaleMin...ExponentialBuckets.scaleMax {
            for exponent in -20...40 {
                let value = Math.exp2(Double(exponent))
                let expected = Int32((exponent << 8) - 1) >> Int32(8 - scale)
                #expect(ExponentialBuckets.index(of: value, scale: scale) == expected, "2^\(exponent) at scale \(scale)")
            }
        }
        #expect(ExponentialBuckets.index(of: Double.leastNormalMagnitude, scale: 8) == -1_022 * 256 - 1)
        #expect(ExponentialBuckets.index(of: Double.greatestFiniteMagnitude, scale: 8) == 1_024 * 256 - 1)
        #expect(ExponentialBuckets.index(of: 1, scale: 0) == -1)
        #expect(ExponentialBuckets.index(of: 1.5, scale: 0) == 0)
        #expect(ExponentialBuckets.index(of: 2, scale: 0) == 0)
    }

    @Test func defaultRelativeErrorIsUnderHalfAPercentAndAHalf() {
        #expect(ExponentialBuckets.relativeError(scale: 6) < 0.0055)
        #expect(ExponentialBuckets.relativeError(scale: 6) > 0.0054)
    }

    // MARK: - Accuracy

    static let quantiles = [0.0, 0.5, 0.9, 0.99, 0.999, 1.0]

    /// The count of values at most a threshold (a latency SLI's good events) lies between the
    /// bounds, which differ by at most the threshold's bucket (and a collapsed floor above it),
    /// and meet on a bucket boundary. Seeded values, thresholds, and sketches that collapse.
    @Test(arguments: [LatencySketch.defaultBucketsMax, 24])
    func countsAtMostAThresholdAreBoundedByTheBucketItFallsIn(bucketsMax: Int) {
        var random = SeededRandom(seed: UInt64(bucketsMax))
        func latency() -> Double {
            let magnitude = Double(UInt64(1) << (random.next() % 24))
            return magnitude * (1 + random.nextUnit())
        }
        for _ in 0..<40 {
            let values = (0..<(100 + Int(random.next() % 2_000))).map { _ in random.next() % 20 == 0 ? 0 : latency() }
            var sketch = LatencySketch(bucketsMax: bucketsMax)
            for value in values { sketch.record(value, at: Self.origin) }
            let distribution = sketch.distribution
            let scale = distribution.scale
            for _ in 0..<50 {
                let threshold = latency()
                let truth = UInt64(values.filter { $0 <= threshold }.count)
                let (certain, possible) = distribution.countAtMost(threshold)
                #expect(certain <= truth && truth <= possible, "\(certain) <= \(truth) <= \(possible) at \(threshold)")
                if distribution.floorIndex == nil {
                    let bucket = ExponentialBuckets.index(of: threshold, scale: scale)
                    let inside = values.filter {
                        $0 >= ExponentialBuckets.valueMin && ExponentialBuckets.index(of: $0, scale: scale) == bucket
                    }
                    #expect(possible - certain <= UInt64(inside.count))
                }
            }
            // On a bucket's upper bound, with no floor above it, the bounds meet.
            let bucket = ExponentialBuckets.index(of: latency(), scale: scale)
            let boundary = ExponentialBuckets.lowerBound(of: bucket + 1, scale: scale)
            if ExponentialBuckets.index(of: boundary, scale: scale) == bucket && distribution.floorIndex.map({ $0 < bucket }) ?? true {
                let (certain, possible) = distribution.countAtMost(boundary)
                #expect(certain == possible)
                #expect(certain == UInt64(values.filter { $0 <= boundary }.count))
            }
            #expect(distribution.countAtMost(.greatestFiniteMagnitude).certain == UInt64(values.count))
            #expect(distribution.countAtMost(-1) == (0, 0))
        }
    }

    @Test(arguments: Distribution.allCases)
    func quantilesWithinRelativeError(distribution: Distribution) throws {
        let values = distribution.values(count: 1_000_000, seed: 7)
        var sketch = LatencySketch()
        for value in values { sketch.record(value, at: Self.origin) }
        let sorted = values.sorted()
        let bound = sketch.relativeError * (1 + 1e-9)
        #expect(sketch.count == UInt64(values.count))
        let estimates = try #require(sketch.quantiles(Self.quantiles))
        for (q, estimate) in zip(Self.quantiles, estimates) {
            let exact = sorted[Int(LatencySketch.nearestRank(q, count: UInt64(sorted.count))) - 1]
            let error = abs(estimate.value - exact) / exact
            #expect(!estimate.isCollapsed)
            #expect(error <= bound, "\(distribution) p\(q * 100): \(estimate.value) vs exact \(exact), error \(error)")
        }
        #expect(sketch.minimum == sorted.first && sketch.maximum == sorted.last)
    }

    /// Any split of the data over origins, merged in any order, gives the same buckets as one sketch.
    @Test(arguments: Distribution.allCases)
    func mergeOfAnySplitEqualsWhole(distribution: Distribution) {
        let values = distribution.values(count: 1_000_000, seed: 8)
        var whole = LatencySketch()
        for value in values { whole.record(value, at: Self.origin) }
        var random = SeededRandom(seed: 9)
        for trial in 0..<3 {
            let parts = Int.random(in: 2...12, using: &random)
            var sketches = (0..<parts).map { _ in LatencySketch() }
            for value in values {
                let part = Int.random(in: 0..<parts, using: &random)
                sketches[part].record(value, at: ReplicaID(UInt64(part)))
            }
            sketches.shuffle(using: &random)
            var merged = LatencySketch()
            for sketch in sketches { merged.merge(sketch) }
            // Redelivery in a different order changes nothing.
            for sketch in sketches.shuffled(using: &random).prefix(3) { merged.merge(sketch) }
            let (mergedBuckets, wholeBuckets) = (merged.distribution, whole.distribution)
            #expect(mergedBuckets.counts == wholeBuckets.counts && mergedBuckets.offset == wholeBuckets.offset
                && mergedBuckets.zeroCount == wholeBuckets.zeroCount && mergedBuckets.floorIndex == wholeBuckets.floorIndex,
                "trial \(trial), \(parts) parts")
            #expect(merged.count == whole.count)
            #expect(merged.minimum == whole.minimum && merged.maximum == whole.maximum)
            #expect(abs(merged.sum - whole.sum) <= whole.sum * 1e-12)
        }
    }

    @Test func downscaledSketchEqualsSketchRecordedAtThatScale() {
        let values = Distribution.pareto.values(count: 20_000, seed: 3)
        var fine = LatencySketch(scale: 6)
        var coarse = LatencySketch(scale: 2)
        for value in values {
            fine.record(value, at: Self.origin)
            coarse.record(value, at: Self.origin)
        }
        #expect(fine.downscaled(to: 2) == coarse)
        // Merging sketches of different scales lands at the coarser one, losing nothing.
        var other = LatencySketch(scale: 4)
        other.record(123, at: ReplicaID(99))
        let merged = fine.merging(other)
        #expect(merged.scale == 4 && merged.count == fine.count + 1)
    }

    // MARK: - Collapsing

    @Test func collapsesLowestBucketsAndFlagsTheirQuantiles() throws {
        var sketch = LatencySketch(scale: 6, bucketsMax: 64)
        // 1,000 values from 1 to 1e6 µs: 20 octaves, far more than 64 buckets.
        var values: [Double] = []
        for step in 0..<1_000 { values.append(Math.exp2(Double(step) * 20 / 1_000)) }
        for value in values { sketch.record(value, at: Self.origin) }
        let buckets = sketch.distribution
        #expect(buckets.counts.count <= 64)
        #expect(buckets.floorIndex != nil)
        #expect(sketch.count == 1_000)
        let low = try #require(sketch.quantile(0.5))
        #expect(low.isCollapsed, "the median fell into the collapsed floor: \(low)")
        let high = try #require(sketch.quantile(0.999))
        #expect(!high.isCollapsed)
        let exact = values.sorted()[Int(LatencySketch.nearestRank(0.999, count: 1_000)) - 1]
        #expect(abs(high.value - exact) / exact <= sketch.relativeError * (1 + 1e-9))
        // The flagged estimate is an upper bound of the true value.
        #expect(low.value >= values.sorted()[499])
    }

    // MARK: - Distributions (the adding side, for answers)

    /// Sketches of disjoint events (other series, other time buckets) add up, origin by origin,
    /// to the distribution of all the events; joining them would lose events of the same origin.
    @Test(arguments: Distribution.allCases)
    func distributionsOfDisjointSketchesAddUp(distribution: Distribution) throws {
        let values = distribution.values(count: 200_000, seed: 21)
        var whole = LatencySketch()
        var parts = (0..<5).map { _ in LatencySketch() }
        var random = SeededRandom(seed: 22)
        for value in values {
            whole.record(value, at: Self.origin)
            // Same origin, different series: what a query over several series sees.
            parts[Int.random(in: 0..<5, using: &random)].record(value, at: Self.origin)
        }
        var sum = LatencyDistribution()
        for part in parts { sum.add(part) }
        let expected = whole.distribution
        #expect(sum.counts == expected.counts && sum.offset == expected.offset && sum.count == UInt64(values.count))
        #expect(sum.minimum == expected.minimum && sum.maximum == expected.maximum)
        #expect(try #require(sum.quantiles([0.5, 0.99])) == (try #require(whole.quantiles([0.5, 0.99]))))
        // Adding a coarser distribution downscales; the count is kept.
        var coarse = LatencySketch(scale: 3)
        coarse.record(1_000, at: Self.origin)
        sum.add(coarse)
        #expect(sum.scale == 3 && sum.count == UInt64(values.count) + 1)
    }

    @Test func distributionFoldsToTheHighestFloor() throws {
        var collapsed = LatencySketch(bucketsMax: 16)
        for step in 0..<200 { collapsed.record(Math.exp2(Double(step) / 10), at: Self.origin) }
        var plain = LatencySketch()
        for value in [1.0, 2.0, 3.0] { plain.record(value, at: ReplicaID(7)) }
        var sum = LatencyDistribution()
        sum.add(plain)
        sum.add(collapsed)
        let floor = try #require(collapsed.distribution.floorIndex)
        #expect(sum.floorIndex == floor && sum.offset == floor && sum.count == 203)
        #expect(try #require(sum.quantile(0.01)).isCollapsed)
    }

    // MARK: - Deltas

    @Test func recordReturnsTheDeltaThatReproducesIt() {
        var sketch = LatencySketch()
        var replica = LatencySketch()
        var random = SeededRandom(seed: 5)
        for _ in 0..<1_000 {
            let delta = sketch.recordReturningDelta(Distribution.bimodal.sample(&random), at: Self.origin)
            replica.merge(delta: delta)
        }
        #expect(replica == sketch)
    }

    @Test func emptySketchHasNoQuantiles() {
        let sketch = LatencySketch()
        #expect(sketch.quantile(0.5) == nil)
        #expect(sketch.count == 0 && sketch.mean == nil && sketch.minimum == nil)
    }

    @Test func zeroLatenciesGoToTheZeroBucket() throws {
        var sketch = LatencySketch()
        for _ in 0..<10 { sketch.record(0, at: Self.origin) }
        sketch.record(5, at: Self.origin)
        let median = try #require(sketch.quantile(0.5))
        let top = try #require(sketch.quantile(1))
        #expect(median.value == 0 && top.value == 5)
        #expect(sketch.distribution.zeroCount == 10)
    }
}
