import Testing
@testable import TallyAggregates

/// The lattice laws, on seeded random reachable states of every aggregate.
@Suite struct LatticeLawTests {
    static let seeds: [UInt64] = [1, 2, 3, 42, 0xC0FFEE]

    @Test(arguments: seeds)
    func gCounter(seed: UInt64) {
        // Six replicas: more than the four slots a counter holds inline, so both layouts are tested.
        let universe = Universe<GCounter>(
            seed: seed, replicas: 6, steps: 400, make: { _ in GCounter() },
            mutate: { counter, origin, random in
                counter.increment(by: UInt64.random(in: 1...1_000, using: &random), at: origin)
            })
        let failures = checkLatticeLaws(universe, seed: seed, trials: 500) {
            noneLower([Double($0.value)], [Double($1.value)])
        }
        #expect(failures.isEmpty, "\(failures)")
        let differences = checkDifferenceLaws(universe, seed: seed, trials: 300) { $0 == GCounter() }
        #expect(differences.isEmpty, "\(differences)")
        #expect(universe.states.contains { !$0.spilled.isEmpty } && universe.states.contains { $0.inlineCount == 4 })
    }

    /// A merge holds, per origin, the larger of the two values, in origin order, whatever the two
    /// layouts (inline, spilled, or a merge that crosses from one to the other).
    @Test(arguments: seeds)
    func gCounterMergeIsTheSlotWiseMax(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        for round in 0..<300 {
            var left = GCounter()
            var right = GCounter()
            var model: [UInt64: UInt64] = [:]
            for _ in 0..<Int(random.next() % 7) {
                let origin = random.next() % 8
                let value = 1 + random.next() % 100
                left.increment(by: value, at: ReplicaID(origin))
            }
            for _ in 0..<Int(random.next() % 7) {
                let origin = random.next() % 8
                right.increment(by: 1 + random.next() % 100, at: ReplicaID(origin))
            }
            for counter in [left, right] {
                counter.forEachOrigin { model[$0.rawValue] = max(model[$0.rawValue] ?? 0, $1) }
            }
            var merged = left
            merged.merge(right)
            let expected = model.keys.sorted().map { (ReplicaID($0), model[$0]!) }
            #expect(merged.originValues.map(\.origin) == expected.map(\.0), "seed \(seed) round \(round)")
            #expect(merged.originValues.map(\.value) == expected.map(\.1), "seed \(seed) round \(round)")
            #expect(merged.spilled.isEmpty == (expected.count <= 4), "seed \(seed) round \(round)")
                    }
    }

    /// Sketches with a small bucket bound and mixed scales, so collapses and downscaling happen.
    @Test(arguments: seeds)
    func latencySketch(seed: UInt64) {
        let universe = Universe<LatencySketch>(
            seed: seed, replicas: 4, steps: 600,
            make: { replica in LatencySketch(scale: [6, 6, 4, 2][replica], bucketsMax: [32, 64, 32, 16][replica]) },
            mutate: { sketch, origin, random in
                sketch.recordReturningDelta(Self.latency(&random), at: origin)
            })
        func observed(_ sketch: LatencySketch) -> [Double] {
            [Double(sketch.count), sketch.sum, sketch.maximum ?? 0]
        }
        let failures = checkLatticeLaws(universe, seed: seed, trials: 500) { noneLower(observed($0), observed($1)) }
        #expect(failures.isEmpty, "\(failures)")
        let differences = checkDifferenceLaws(universe, seed: seed, trials: 300) { $0.histograms.isEmpty }
        #expect(differences.isEmpty, "\(differences)")
        let collapsed = universe.states.contains { $0.histograms.contains(where: \.hasFloor) }
        #expect(collapsed, "the universe never collapsed a bucket: the floor laws went untested")
    }

    @Test(arguments: seeds)
    func hyperLogLog(seed: UInt64) {
        let universe = Universe<HyperLogLog>(
            seed: seed, replicas: 4, steps: 600,
            make: { replica in HyperLogLog(precision: [6, 6, 8, 4][replica]) },
            mutate: { hll, _, random in
                hll.add("user-\(UInt64.random(in: 0..<300, using: &random))")
            })
        // Registers, compared at the merged (lower or equal) precision.
        let failures = checkLatticeLaws(universe, seed: seed, trials: 500) { after, before in
            var before = before
            before.fold(to: after.precision)
            return zip(Self.registers(after), Self.registers(before)).allSatisfy { $0 >= $1 }
        }
        #expect(failures.isEmpty, "\(failures)")
        let differences = checkDifferenceLaws(universe, seed: seed, trials: 300) {
            $0.isSparse && $0.sparseEntries.isEmpty
        }
        #expect(differences.isEmpty, "\(differences)")
        #expect(universe.states.contains { !$0.isSparse } && universe.states.contains { $0.isSparse && $0.sparse.count > 0 })
    }

    @Test(arguments: seeds)
    func mapOfCounters(seed: UInt64) {
        let universe = Universe<AggregateMap<String, GCounter>>(
            seed: seed, replicas: 3, steps: 400, make: { _ in AggregateMap() },
            mutate: { map, origin, random in
                let key = "series-\(Int.random(in: 0..<6, using: &random))"
                let amount = UInt64.random(in: 1...10, using: &random)
                return map.update(key, orInsert: GCounter.init) { $0.increment(by: amount, at: origin) }
            })
        func observed(_ map: AggregateMap<String, GCounter>) -> [Double] {
            (0..<6).map { Double(map["series-\($0)"]?.value ?? 0) }
        }
        let failures = checkLatticeLaws(universe, seed: seed, trials: 400) { noneLower(observed($0), observed($1)) }
        #expect(failures.isEmpty, "\(failures)")
    }

    @Test(arguments: seeds)
    func mapOfSketches(seed: UInt64) {
        let universe = Universe<AggregateMap<String, LatencySketch>>(
            seed: seed, replicas: 3, steps: 400, make: { _ in AggregateMap() },
            mutate: { map, origin, random in
                let key = "series-\(Int.random(in: 0..<4, using: &random))"
                let value = Self.latency(&random)
                return map.update(key, orInsert: { LatencySketch(bucketsMax: 32) }) { $0.recordReturningDelta(value, at: origin) }
            })
        func observed(_ map: AggregateMap<String, LatencySketch>) -> [Double] {
            (0..<4).map { Double(map["series-\($0)"]?.count ?? 0) }
        }
        let failures = checkLatticeLaws(universe, seed: seed, trials: 300) { noneLower(observed($0), observed($1)) }
        #expect(failures.isEmpty, "\(failures)")
    }

    static func registers(_ hll: HyperLogLog) -> [UInt8] {
        var registers = hll.dense
        if hll.isSparse {
            registers = [UInt8](repeating: 0, count: hll.registerCount)
            for entry in hll.sparse { registers[Int(entry >> 6)] = UInt8(entry & 0x3F) }
        }
        return registers
    }

    /// Latencies over nine decades, with zeros, so that every bucket path is taken.
    static func latency(_ random: inout SeededRandom) -> Double {
        switch Int.random(in: 0..<20, using: &random) {
        case 0: return 0
        case 1: return Double.random(in: 1e-3...1, using: &random)
        case 2: return Double.random(in: 1e5...1e9, using: &random)
        default: return Math.exp2(10 + 2 * random.nextGaussian())
        }
    }
}
