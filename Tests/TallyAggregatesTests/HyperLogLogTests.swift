import Testing
@testable import TallyAggregates

@Suite struct HyperLogLogTests {
    /// Values are hashed integers: one stream of distinct values per test, no strings to build.
    static func hash(_ value: Int, stream: UInt64) -> UInt64 {
        XXH3.hash(UInt64(value), seed: stream)
    }

    @Test func estimateWithinThreeStandardErrorsAtEveryDecade() {
        var cardinality = 1
        while cardinality <= 10_000_000 {
            var hll = HyperLogLog()
            for value in 0..<cardinality { hll.add(hash: Self.hash(value, stream: 1)) }
            let error = abs(hll.cardinality - Double(cardinality)) / Double(cardinality)
            #expect(error <= 3 * hll.standardError,
                    "n = \(cardinality): estimate \(hll.cardinality), error \(error), sparse \(hll.isSparse)")
            cardinality *= 10
        }
    }

    /// Settling packs a sparse sketch's entries; it changes no value, no answer and no byte of the
    /// encoding, and a settled sketch keeps taking values and merges.
    @Test(arguments: [1, 10, 300, 2_000, 2_048, 2_049] as [Int])
    func settledFormIsTheSameSketch(distinct: Int) {
        var plain = HyperLogLog()
        for value in 0..<distinct { plain.add(hash: Self.hash(value, stream: 9)) }
        var settled = plain
        settled.settle()
        #expect(settled == plain && plain == settled)
        #expect(settled.encoded() == plain.encoded())
        #expect(settled.cardinality == plain.cardinality)
        if plain.isSparse && distinct > 100 {
            #expect(settled.heapBytes * 3 < plain.heapBytes, "settled \(settled.heapBytes) B, plain \(plain.heapBytes) B")
        }
        var other = HyperLogLog()
        for value in 0..<500 { other.add(hash: Self.hash(value, stream: 10)) }
        var mergedPlain = plain
        mergedPlain.merge(other)
        var mergedSettled = settled
        mergedSettled.merge(other)
        var settledOther = other
        settledOther.settle()
        var mergedIntoOther = settledOther
        mergedIntoOther.merge(settled)
        #expect(mergedSettled == mergedPlain && mergedIntoOther == mergedPlain)
        settled.add(hash: Self.hash(distinct, stream: 9))
        plain.add(hash: Self.hash(distinct, stream: 9))
        #expect(settled == plain && settled.encoded() == plain.encoded())
    }

    @Test func standardErrorAtDefaultPrecision() {
        #expect(abs(HyperLogLog().standardError - 0.008125) < 1e-6)
    }

    @Test func mergeOfAThousandPartialsEqualsTheWhole() {
        let total = 1_000_000
        var whole = HyperLogLog()
        var partials = (0..<1_000).map { _ in HyperLogLog() }
        for value in 0..<total {
            let hash = Self.hash(value, stream: 2)
            whole.add(hash: hash)
            partials[value % 1_000].add(hash: hash)
        }
        let allSparse = partials.allSatisfy(\.isSparse)
        #expect(allSparse, "each partial of 1,000 values stays sparse")
        var random = SeededRandom(seed: 4)
        partials.shuffle(using: &random)
        var merged = HyperLogLog()
        for partial in partials { merged.merge(partial) }
        #expect(merged == whole)
        let error = abs(merged.cardinality - Double(total)) / Double(total)
        #expect(error <= 3 * merged.standardError, "estimate \(merged.cardinality)")
    }

    @Test(arguments: [100, 1_000, 5_000, 50_000])
    func foldEqualsSketchBuiltAtLowerPrecision(cardinality: Int) {
        var fine = HyperLogLog(precision: 14)
        var coarse = HyperLogLog(precision: 9)
        for value in 0..<cardinality {
            let hash = Self.hash(value, stream: 3)
            fine.add(hash: hash)
            coarse.add(hash: hash)
        }
        var folded = fine
        folded.fold(to: 9)
        #expect(folded == coarse)
        #expect(fine.merging(coarse) == coarse)
    }

    /// The sparse form against a model of its registers: entries stay sorted by index, one per
    /// register, holding the largest rank seen, whatever order the values arrive in (inserts at the
    /// front, the back and between, repeats with lower and higher ranks).
    @Test(arguments: 1...4 as ClosedRange<UInt64>)
    func sparseEntriesAreTheRegistersInOrder(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var hll = HyperLogLog(precision: 12)
        var model: [Int: UInt8] = [:]
        while true {
            let hash = random.next()
            let delta = hll.add(hash: hash)
            guard hll.isSparse else { break }
            model[delta.index] = max(model[delta.index] ?? 0, delta.rank)
            if model.count % 37 == 0 {
                let expected = model.keys.sorted().map { UInt32($0) << 6 | UInt32(model[$0]!) }
                #expect(hll.sparse == expected)
            }
        }
        #expect(model.count == hll.sparseEntriesMax, "turned dense one entry past the bound")
    }

    /// A merge of two sparse sketches (a replicated delta into a bucket, or two buckets of many
    /// users each) holds, per register, the larger rank of the two, sorted, and turns dense exactly
    /// when the union passes the bound; either side may be the larger.
    static func registers(_ hll: HyperLogLog) -> [UInt8] {
        if !hll.isSparse { return hll.dense }
        var registers = [UInt8](repeating: 0, count: 1 << hll.precision)
        for entry in hll.sparseEntries { registers[Int(entry >> 6)] = UInt8(entry & 0x3F) }
        return registers
    }

    @Test(arguments: 1...30 as ClosedRange<UInt64>)
    func sparseMergeIsTheUnionOfTheRegisters(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        for round in 0..<20 {
            var left = HyperLogLog(precision: 10)
            var right = HyperLogLog(precision: 10)
            var model = [UInt8](repeating: 0, count: 1 << 10)
            // Shared hashes make equal indices with equal ranks; distinct ones, equal indices too.
            for _ in 0..<Int(random.next() % 140) {
                let hash = random.next()
                if random.next() % 3 != 0 { left.add(hash: hash) } else { right.add(hash: hash) }
                if random.next() % 5 == 0 { left.add(hash: hash); right.add(hash: hash) }
            }
            for side in [left, right] {
                for (index, rank) in Self.registers(side).enumerated() { model[index] = max(model[index], rank) }
            }
            var merged = left
            merged.merge(right)
            #expect(Self.registers(merged) == model, "seed \(seed) round \(round)")
            let nonZero = model.filter { $0 > 0 }.count
            #expect(merged.isSparse == (nonZero <= merged.sparseEntriesMax), "seed \(seed) round \(round)")
            if merged.isSparse {
                #expect(merged.sparse == merged.sparse.sorted() && Set(merged.sparse.map { $0 >> 6 }).count == merged.sparse.count)
            }
        }
    }

    @Test func sparseTurnsDenseAtAnEighthOfTheRegisters() {
        var hll = HyperLogLog(precision: 10)
        var value = 0
        while hll.isSparse {
            hll.add(hash: Self.hash(value, stream: 5))
            value += 1
        }
        let nonZero = hll.dense.filter { $0 > 0 }.count
        #expect(nonZero == 1_024 / 8 + 1)
    }

    @Test func duplicatesDoNotCount() {
        var hll = HyperLogLog()
        for _ in 0..<1_000 { hll.add("same user") }
        #expect(abs(hll.cardinality - 1) < 0.01)
    }

    @Test func emptyEstimatesZero() {
        #expect(HyperLogLog().cardinality == 0)
        #expect(HyperLogLog(precision: 4).cardinality == 0)
    }
}
