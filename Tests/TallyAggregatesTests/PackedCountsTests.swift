import Testing
@testable import TallyAggregates

/// `PackedCounts` behaves exactly like `[UInt64]` under every operation the sketch uses, whatever
/// widths the values force, and never wider than its largest value needs.
@Suite struct PackedCountsTests {
    @Test(arguments: 1...20 as ClosedRange<UInt64>)
    func behavesLikeAnArrayOfUInt64(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var model: [UInt64] = []
        var packed = PackedCounts()
        func value() -> UInt64 {
            // Mostly small counts; sometimes one that forces a wider width.
            switch random.next() % 8 {
            case 0: return random.next() >> (random.next() % 64)
            case 1: return 0xFF
            case 2: return 0xFFFF
            default: return random.next() % 200
            }
        }
        for step in 0..<300 {
            switch random.next() % 6 {
            case 0 where !model.isEmpty:
                let position = Int(random.next() % UInt64(model.count))
                if model[position] < UInt64.max {
                    model[position] += 1
                    #expect(packed.increment(at: position) == model[position], "seed \(seed) step \(step)")
                }
            case 1 where !model.isEmpty:
                let position = Int(random.next() % UInt64(model.count))
                let new = value()
                model[position] = new
                packed[position] = new
            case 2:
                let values = (0..<Int(random.next() % 5)).map { _ in value() }
                model.append(contentsOf: values)
                packed.append(contentsOf: values)
            case 3:
                let count = Int(random.next() % 4)
                model.insert(contentsOf: repeatElement(0, count: count), at: 0)
                packed.insert(contentsOf: repeatElement(0, count: count), at: 0)
            case 4 where !model.isEmpty:
                let count = Int(random.next() % UInt64(model.count))
                model.removeFirst(count)
                packed.removeFirst(count)
            default:
                // Built from values, the width is the narrowest that holds the largest.
                packed = PackedCounts(Array(packed))
                #expect(packed.shift == PackedCounts.shift(for: model.max() ?? 0))
            }
            #expect(Array(packed) == model, "seed \(seed) step \(step)")
            #expect(packed.storage.count == model.count << packed.shift)
            #expect(packed.shift >= PackedCounts.shift(for: model.max() ?? 0))
        }
        #expect(packed == PackedCounts(model))
    }

    /// Two versions of one histogram's counts, as a seal and a merge see them: the newer grows some
    /// counts of the older (sometimes by enough to widen them), and its range may start or end
    /// elsewhere. Also, sometimes, counts that shrank: the laws below hold for any values.
    static func versions(_ random: inout SeededRandom) -> (newer: [UInt64], older: [UInt64], shift: Int) {
        let olderCount = Int(random.next() % 120)
        let older = (0..<olderCount).map { _ in random.next() % 4 == 0 ? 0 : random.next() % 250 }
        let shift = Int(random.next() % 21) - 10  // older position = newer position + shift
        let newerCount = Int(random.next() % 120)
        let newer = (0..<newerCount).map { position -> UInt64 in
            let olderPosition = position + shift
            let base = olderPosition >= 0 && olderPosition < older.count ? older[olderPosition] : 0
            switch random.next() % 16 {
            case 0: return base + 1
            case 1: return base + 70_000
            case 2: return base > 0 ? base - 1 : 0
            case 3: return base + (random.next() % 5)
            default: return base
            }
        }
        return (newer, older, shift)
    }

    @Test(arguments: 1...40 as ClosedRange<UInt64>)
    func grownRangeIsTheFirstAndLastGrownCount(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        for round in 0..<50 {
            let (newer, older, shift) = Self.versions(&random)
            let grown = newer.indices.filter { position in
                let olderPosition = position + shift
                return newer[position] > (olderPosition >= 0 && olderPosition < older.count ? older[olderPosition] : 0)
            }
            let expected = grown.first.map { $0...grown.last! }
            #expect(PackedCounts(newer).grownRange(over: PackedCounts(older), shift: shift) == expected,
                    "seed \(seed) round \(round)")
        }
    }

    @Test(arguments: 1...40 as ClosedRange<UInt64>)
    func formMaxRaisesEachCountToTheOthers(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        for round in 0..<50 {
            let (newer, older, _) = Self.versions(&random)
            guard newer.count <= older.count else { continue }
            let position = Int(random.next() % UInt64(older.count - newer.count + 1))
            var expected = older
            for (index, count) in newer.enumerated() { expected[position + index] = max(expected[position + index], count) }
            var packed = PackedCounts(older)
            packed.formMax(PackedCounts(newer), at: position)
            #expect(Array(packed) == expected, "seed \(seed) round \(round)")
        }
    }

    @Test func widthsGrowWithTheLargestCount() {
        var counts: PackedCounts = [1, 2, 3]
        #expect(counts.shift == 0 && counts.storage.count == 3)
        counts[1] = 255
        #expect(counts.shift == 0)
        #expect(counts.increment(at: 1) == 256)
        #expect(counts.shift == 1 && Array(counts) == [1, 256, 3])
        counts[2] = 1 << 40
        #expect(counts.shift == 3 && Array(counts) == [1, 256, 1 << 40])
        #expect(counts == PackedCounts([1, 256, 1 << 40]))
    }
}
