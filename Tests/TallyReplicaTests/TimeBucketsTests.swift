import Testing
import TallyAggregates
@testable import TallyReplica

/// `TimeBuckets` against a plain sorted array: inserts anywhere, updates, and expiry of prefixes of
/// every size (which advances the head and compacts now and then).
@Suite struct TimeBucketsTests {
    @Test(arguments: 1...8 as ClosedRange<UInt64>)
    func behavesLikeASortedArray(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var buckets = TimeBuckets()
        var model: [(start: Int64, count: UInt64)] = []
        let origin = ReplicaID(1)
        var newest: Int64 = 0
        for step in 0..<6_000 {
            switch random.next() % 20 {
            case 0...18:
                // Mostly the newest bucket or a new one after it; sometimes a late one.
                let start = random.next() % 5 == 0 ? newest - Int64(random.next() % 50) : newest + Int64(random.next() % 2)
                newest = max(newest, start)
                buckets.update(start) { TimeBucketsTests.empty } _: { $0.requests.increment(at: origin) }
                if let position = model.firstIndex(where: { $0.start == start }) {
                    model[position].count += 1
                } else {
                    let position = model.firstIndex { $0.start > start } ?? model.count
                    model.insert((start, 1), at: position)
                }
            default:
                let cutoff = (model.first?.start ?? 0) + Int64(random.next() % 120)
                let removed = buckets.removeBuckets(startingBefore: cutoff)
                let expected = model.prefix { $0.start < cutoff }.count
                model.removeFirst(expected)
                #expect(removed == expected, "seed \(seed) step \(step)")
            }
            let live = buckets.all.map { ($0.0, $0.1.requests.value) }
            guard buckets.count == model.count, live.map(\.0) == model.map(\.start),
                live.map(\.1) == model.map(\.count)
            else {
                Issue.record("seed \(seed) step \(step): buckets differ from the model")
                return
            }
        }
        #expect(buckets.all.map(\.0) == model.map(\.start))
        #expect(buckets.all.map { $0.1.requests.value } == model.map(\.count))
        for (start, count) in model { #expect(buckets[start]?.requests.value == count) }
    }

    static let empty = BucketAggregate(sketchScale: 6, sketchBucketsMax: 160, usersPrecision: 14)
}
