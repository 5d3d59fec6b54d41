import ArgumentParser
import Histogram
import TallyAggregates

#if canImport(Glibc)
import Glibc
#endif

/// `tally-bench aggregates`: ns per operation and encoded sizes of the CRDTs and sketches, with
/// hdrhistogram-swift measured in the same run as the baseline for the latency sketch.
struct AggregatesBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aggregates", abstract: "Counter, sketch and HyperLogLog: ns/op, allocations, sizes.")

    @Option(help: "Timed runs per benchmark (the median is reported).")
    var runs = 7

    @Option(help: "Operations per run for the per-value benchmarks.")
    var operations = 4_000_000

    @Option(help: "Run only the benchmarks whose name contains this text.")
    var filter: String?

    mutating func run() throws {
        let harness = Harness(runs: self.runs, filter: self.filter)
        let operations = self.operations
        var results: [Measurement?] = []
        let origins = (0..<3).map { ReplicaID(region: "region-\($0)", node: "node-1", incarnation: 1) }
        let local = origins[1]

        // Data: 2^20 log-normal latencies in µs (median 20 ms, σ = 0.7), and 2^16 user ids.
        var random = SeededRandom(seed: 42)
        let latencies = (0..<(1 << 20)).map { _ in 20_000 * exp(0.7 * random.nextGaussian()) }
        let users = (0..<(1 << 16)).map { _ in "user-\(random.next() % 10_000_000)" }
        let userMask = users.count - 1

        // Counter increment, with three origins' slots as a replica has, over 1,024 counters (a
        // replica increments a different series' counter for each event; this also keeps the
        // optimizer from folding the loop into one addition).
        var counters = [GCounter](repeating: GCounter(), count: 1_024)
        for index in counters.indices {
            for origin in origins { counters[index].increment(at: origin) }
        }
        results.append(harness.measure("counter increment", operations: operations) {
            counters.withUnsafeMutableBufferPointer { counters in
                for index in 0..<operations { counters[index & 1_023].increment(at: local) }
            }
        })
        blackHole(counters)
        let counter = counters[0]

        let recordPair = Self.compareRecord(harness: harness, latencies: latencies, operations: operations)
        results += [recordPair?.a, recordPair?.b]

        // HyperLogLog add of a user id, XXH3 included, into a dense p = 14 sketch. The ids sit in one
        // buffer, as they do in a request body that the ingest parser hashes in place.
        var body: [UInt8] = []
        var idRanges: [(start: Int, count: Int)] = []
        for user in users {
            idRanges.append((body.count, user.utf8.count))
            body.append(contentsOf: user.utf8)
            body.append(UInt8(ascii: ","))
        }
        var hll = HyperLogLog()
        for user in users { hll.add(user) }
        body.withUnsafeBytes { body in
            let ids = idRanges.map { UnsafeRawBufferPointer(rebasing: body[$0.start..<($0.start + $0.count)]) }
            results.append(harness.measure("HLL add (hash included)", operations: operations) {
                for index in 0..<operations { hll.add(utf8: ids[index & userMask]) }
            })
        }
        blackHole(hll)
        // Its parts, and the same from Swift strings (a small String is hashed from a stack copy).
        let userHashes = users.map { XXH3.hash($0) }
        results.append(harness.measure("  HLL add, hash precomputed", operations: operations) {
            for index in 0..<operations { hll.add(hash: userHashes[index & userMask]) }
        })
        results.append(harness.measure("  HLL add of a String", operations: operations) {
            for index in 0..<operations { hll.add(users[index & userMask]) }
        })
        blackHole(hll)
        results.append(harness.measure("  XXH3-64 of a String user id (~12 bytes)", operations: operations) {
            var mixed: UInt64 = 0
            for index in 0..<operations { mixed ^= XXH3.hash(users[index & userMask]) }
            blackHole(mixed)
        })

        // Merge of two 500-bucket versions of one origin's sketch (bucket-wise max), in place.
        var older = LatencySketch()
        var newer: LatencySketch
        var spread = SeededRandom(seed: 7)
        func recordSpread(_ sketch: inout LatencySketch, _ count: Int) {
            for _ in 0..<count {
                let bucket = Double(Int.random(in: 0..<500, using: &spread)) + 0.5
                sketch.record(exp2(10 + bucket / 64), at: local)
            }
        }
        recordSpread(&older, 50_000)
        newer = older
        recordSpread(&newer, 10_000)
        let mergeRounds = max(operations / 1_000, 1_000)
        var target = older
        results.append(harness.measure("sketch merge, 500 buckets, same origin", operations: mergeRounds) {
            for _ in 0..<mergeRounds { target.merge(newer) }
        })
        blackHole(target)
        var remote = LatencySketch()
        for value in latencies.prefix(50_000) { remote.record(value, at: origins[2]) }
        results.append(harness.measure("sketch merge, into a copy, new origin", operations: mergeRounds) {
            for _ in 0..<mergeRounds { blackHole(older.merging(remote)) }
        })
        var hdrOlder = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
        var hdrNewer = hdrOlder
        for value in latencies.prefix(50_000) { _ = hdrOlder.record(UInt64(value)) }
        for value in latencies.prefix(60_000) { _ = hdrNewer.record(UInt64(value)) }
        var mergeTarget = older
        let mergePair = harness.compare(
            "sketch merge, 500 buckets, same origin (again)", "hdrhistogram add (merge)", operations: mergeRounds
        ) {
            for _ in 0..<mergeRounds { mergeTarget.merge(newer) }
        } _: {
            for _ in 0..<mergeRounds { hdrOlder.add(hdrNewer) }
        }
        results.append(mergePair?.b)
        blackHole(mergeTarget)
        blackHole(hdrOlder)

        // Dense HyperLogLog merge at p = 14.
        var hllTarget = HyperLogLog()
        var hllOther = HyperLogLog()
        for index in 0..<200_000 {
            hllTarget.add(hash: UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
            hllOther.add(hash: UInt64(index + 100_000) &* 0xC2B2_AE3D_27D4_EB4F)
        }
        results.append(harness.measure("HLL merge, dense, p = 14", operations: mergeRounds) {
            for _ in 0..<mergeRounds { hllTarget.merge(hllOther) }
        })
        blackHole(hllTarget)

        // Encoded sizes and codec speed.
        var million = LatencySketch()
        for index in 0..<1_000_000 { million.record(latencies[index], at: local) }
        var sparse = HyperLogLog()
        for user in 0..<1_000 { sparse.add("user-\(user)") }
        let codecRounds = max(operations / 10_000, 200)
        let millionBytes = million.encoded()
        let hllBytes = hll.encoded()
        let sparseBytes = sparse.encoded()
        let counterBytes = counter.encoded()
        results.append(harness.measure("encode sketch of 10^6 latencies", operations: codecRounds) {
            for _ in 0..<codecRounds { blackHole(million.encoded()) }
        })
        results.append(harness.measure("decode sketch of 10^6 latencies", operations: codecRounds) {
            for _ in 0..<codecRounds { blackHole(try? LatencySketch(encoded: millionBytes)) }
        })
        results.append(harness.measure("encode dense HLL p = 14", operations: codecRounds) {
            for _ in 0..<codecRounds { blackHole(hll.encoded()) }
        })
        results.append(harness.measure("decode dense HLL p = 14", operations: codecRounds) {
            for _ in 0..<codecRounds { blackHole(try? HyperLogLog(encoded: hllBytes)) }
        })
        results.append(harness.measure("encode sparse HLL, 1,000 values", operations: codecRounds) {
            for _ in 0..<codecRounds { blackHole(sparse.encoded()) }
        })
        results.append(harness.measure("decode sparse HLL, 1,000 values", operations: codecRounds) {
            for _ in 0..<codecRounds { blackHole(try? HyperLogLog(encoded: sparseBytes)) }
        })
        results.append(harness.measure("encode counter, 3 origins", operations: codecRounds * 100) {
            for _ in 0..<(codecRounds * 100) { blackHole(counter.encoded()) }
        })
        results.append(harness.measure("decode counter, 3 origins", operations: codecRounds * 100) {
            for _ in 0..<(codecRounds * 100) { blackHole(try? GCounter(encoded: counterBytes)) }
        })

        self.report(results.compactMap { $0 }, harness: harness, recordRatio: recordPair?.ratio,
                    mergeRatio: mergePair?.ratio, sizes: [
            ("sketch of 10^6 log-normal latencies", millionBytes.count, 2_048,
             "\(million.distribution.counts.count) buckets"),
            ("sparse HLL of 1,000 distinct values", sparseBytes.count, 2_000,
             format(Double(sparseBytes.count) / 1_000, digits: 2) + " B/value"),
            ("dense HLL, p = 14", hllBytes.count, nil, "6 bits per register"),
            ("counter, 3 origins", counterBytes.count, nil, ""),
        ])
    }

    /// The sketch's record against hdrhistogram-swift's, the same values (integer microseconds for
    /// hdrhistogram), in alternating runs; `latencies.count` MUST be a power of two or is cut to one.
    static func compareRecord(harness: Harness, latencies: [Double], operations: Int)
        -> (a: Measurement, b: Measurement, ratio: Double)?
    {
        let local = ReplicaID(region: "region-1", node: "node-1", incarnation: 1)
        let latencies = Array(latencies.prefix(1 << (Int.bitWidth - 1 - latencies.count.leadingZeroBitCount)))
        let latencyMask = latencies.count - 1
        var sketch = LatencySketch()
        for value in latencies { sketch.record(value, at: local) }
        let integerLatencies = latencies.map { UInt64($0.rounded()) }
        var hdr = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
        for value in integerLatencies { _ = hdr.record(value) }
        let pair = harness.compare("sketch record", "hdrhistogram record (3 digits)", operations: operations) {
            for index in 0..<operations { sketch.record(latencies[index & latencyMask], at: local) }
        } _: {
            for index in 0..<operations { _ = hdr.record(integerLatencies[index & latencyMask]) }
        }
        blackHole(sketch)
        blackHole(hdr)
        return pair
    }

    func report(
        _ results: [Measurement], harness: Harness, recordRatio: Double?, mergeRatio: Double?,
        sizes: [(String, Int, Int?, String)]
    ) {
        let targets: [String: Double] = [
            "counter increment": 5, "sketch record": 10, "HLL add (hash included)": 8,
            "sketch merge, 500 buckets, same origin": 2_000, "HLL merge, dense, p = 14": 5_000,
        ]
        let zeroAllocation: Set = ["counter increment", "sketch record", "HLL add (hash included)"]
        var rows: [[String]] = []
        for result in results {
            var verdict = ""
            if let target = targets[result.name] {
                verdict = result.nanosMedian <= target ? "ok (<= \(format(target, digits: 0)))" : "MISSED (<= \(format(target, digits: 0)))"
                if zeroAllocation.contains(result.name), let allocations = result.allocationsPerOperation,
                    allocations > 0
                {
                    verdict += ", allocates"
                }
            }
            let allocations = result.allocationsPerOperation.map { format($0, digits: 3) } ?? "n/a"
            rows.append([result.name, format(result.nanosMedian), format(result.nanosBest), allocations, verdict])
        }
        print("tally-bench aggregates: release build, one thread, median of \(harness.runs) runs")
        print(table(["operation", "ns/op", "best", "allocs/op", "target"], rows))
        print()
        let recordRatio = recordRatio ?? .nan
        let mergeRatio = mergeRatio ?? .nan
        print(table(["ratio (alternating runs, median)", "value", "target"], [
            ["sketch record / hdrhistogram record", format(recordRatio, digits: 2),
             recordRatio <= 1 ? "ok (<= 1)" : "MISSED (<= 1)"],
            ["sketch merge / hdrhistogram add", format(mergeRatio, digits: 2), ""],
        ]))
        print()
        print(table(["encoded size", "bytes", "target", "note"], sizes.map { name, bytes, target, note in
            let verdict = target.map { bytes <= $0 ? "ok (<= \($0))" : "MISSED (<= \($0))" } ?? ""
            return [name, String(bytes), verdict, note]
        }))
    }
}
