import Foundation
import Testing
@testable import TallyAggregates

/// Adding already-bucketed latencies (an OTLP histogram point) is recording each of them: for
/// seeded values, at the sketch's scale and finer (downscaled), with and without collapsing, the
/// sketches are equal; bad points are refused by name.
@Suite struct LatencySketchBulkTests {
    static func buckets(_ values: [Double], scale: Int) throws -> LatencyBuckets {
        var counts: [Int32: UInt64] = [:]
        var zero: UInt64 = 0
        var sum = 0.0
        for value in values {
            sum += value
            if value < ExponentialBuckets.valueMin { zero += 1 } else { counts[ExponentialBuckets.index(of: value, scale: scale), default: 0] += 1 }
        }
        return try LatencyBuckets(
            scale: scale, zeroCount: zero,
            buckets: counts.keys.sorted().map { LatencySketch.Bucket(index: $0, count: counts[$0]!) },
            sum: sum, minimum: values.min() ?? 0, maximum: values.max() ?? 0)
    }

    @Test(arguments: [(6, 2_048), (8, 2_048), (6, 32), (7, 16)])
    func addingBucketsIsRecordingTheValues(scale: Int, bucketsMax: Int) throws {
        for seed in 1...30 as ClosedRange<UInt64> {
            var random = SeededRandom(seed: seed)
            let origin = ReplicaID(seed)
            var recorded = LatencySketch(scale: 6, bucketsMax: bucketsMax)
            var added = LatencySketch(scale: 6, bucketsMax: bucketsMax)
            // Something recorded first, so the add lands in an existing histogram too.
            let first = (0..<Int(random.next() % 50)).map { _ in Double(random.next() % 10_000) }
            for value in first {
                recorded.record(value, at: origin)
                added.record(value, at: origin)
            }
            let values = (0..<Int(random.next() % 2_000)).map { _ -> Double in
                random.next() % 20 == 0 ? 0 : pow(10, Double(random.next() % 8_000) / 1_000)
            }
            for value in values { recorded.record(value, at: origin) }
            added.add(try Self.buckets(values, scale: scale), at: origin)
            // Sums may differ in the last bits (added in another order); everything else is equal.
            #expect(recorded.count == added.count)
            #expect(abs(recorded.sum - added.sum) <= 1e-9 * max(1, recorded.sum))
            var a = LatencyDistribution(); a.add(recorded)
            var b = LatencyDistribution(); b.add(added)
            #expect(a.counts == b.counts && a.offset == b.offset && a.zeroCount == b.zeroCount && a.floorIndex == b.floorIndex,
                    "seed \(seed) scale \(scale) bucketsMax \(bucketsMax)")
            #expect(a.minimum == b.minimum && a.maximum == b.maximum)
        }
    }

    @Test func badPointsAreRefusedByName() {
        func refused(scale: Int = 6, zero: UInt64 = 0, _ buckets: [LatencySketch.Bucket], sum: Double = 1) -> String? {
            do {
                _ = try LatencyBuckets(scale: scale, zeroCount: zero, buckets: buckets, sum: sum, minimum: 1, maximum: 1)
                return nil
            } catch {
                return error.description
            }
        }
        #expect(refused(scale: 9, []).map { $0.contains("scale 9") } == true)
        #expect(refused([.init(index: 3, count: 1), .init(index: 3, count: 1)])?.contains("increase") == true)
        #expect(refused([.init(index: 3, count: 0)])?.contains("count of 0") == true)
        #expect(refused(zero: UInt64.max, [.init(index: 3, count: 2)])?.contains("2^62") == true)
        #expect(refused([.init(index: Int32.max, count: 1)])?.contains("out of range") == true)
        #expect(refused(zero: 1, [], sum: .nan)?.contains("finite") == true)
        #expect(refused([.init(index: 3, count: 1)]) == nil)
    }
}
