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
