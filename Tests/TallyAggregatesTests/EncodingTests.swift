import Testing
@testable import TallyAggregates

/// Round trips, canonical bytes, and decoding of hostile bytes, for every aggregate.
@Suite struct EncodingTests {
    // MARK: - Sample states, from the same universes as the law tests

    static func counters(seed: UInt64) -> [GCounter] {
        Universe<GCounter>(
            seed: seed, replicas: 6, steps: 200, make: { _ in GCounter() },
            mutate: { counter, origin, random in
                counter.increment(by: UInt64.random(in: 1...(1 << 40), using: &random), at: origin)
            }
        ).states
    }

    static func sketches(seed: UInt64) -> [LatencySketch] {
        Universe<LatencySketch>(
            seed: seed, replicas: 3, steps: 300,
            make: { replica in LatencySketch(scale: [6, 3, 6][replica], bucketsMax: [32, 64, 2_048][replica]) },
            mutate: { sketch, origin, random in sketch.recordReturningDelta(LatticeLawTests.latency(&random), at: origin) }
        ).states
    }

    static func hyperLogLogs(seed: UInt64) -> [HyperLogLog] {
        Universe<HyperLogLog>(
            seed: seed, replicas: 3, steps: 300, make: { replica in HyperLogLog(precision: [4, 7, 10][replica]) },
            mutate: { hll, _, random in hll.add(hash: random.next()) }
        ).states
    }

    static func maps(seed: UInt64) -> [AggregateMap<String, HyperLogLog>] {
        Universe<AggregateMap<String, HyperLogLog>>(
            seed: seed, replicas: 3, steps: 200, make: { _ in AggregateMap() },
            mutate: { map, _, random in
                let key = ["checkout", "login", "search", "é-ünïcode"][Int.random(in: 0..<4, using: &random)]
                let hash = random.next()
                return map.update(key, orInsert: { HyperLogLog(precision: 6) }) { $0.add(hash: hash) }
            }
        ).states
    }

    // MARK: - Laws

    @Test func gCounterCodec() { Self.checkCodec(Self.counters(seed: 1), seed: 1) }
    @Test func latencySketchCodec() { Self.checkCodec(Self.sketches(seed: 2), seed: 2) }
    @Test func hyperLogLogCodec() { Self.checkCodec(Self.hyperLogLogs(seed: 3), seed: 3) }
    @Test func aggregateMapCodec() { Self.checkCodec(Self.maps(seed: 4), seed: 4) }

    /// Round trip; equal states have equal bytes and unequal states unequal bytes; every strict
    /// prefix fails to decode; random corruptions decode to an error or to a value that re-encodes
    /// to exactly the corrupted bytes. None may trap.
    /// Counts below 128 are decoded as their bytes, others varint by varint: both refuse a zero
    /// count at the end of a histogram's range with the same error, and both round-trip.
    @Test func sketchCountsOfEitherCodecPathAreChecked() throws {
        for repeats in [1, 200] {  // 200 values in a bucket: a count that takes two varint bytes
            var sketch = LatencySketch()
            for value in [1_000.0, 2_000.0, 5_000.0] {
                for _ in 0..<repeats { sketch.record(value, at: ReplicaID(7)) }
            }
            var bytes = sketch.encoded()
            #expect(try LatencySketch(encoded: bytes) == sketch)
            // The last count is the encoding's last varint (two bytes for 200): make it a zero.
            if repeats > 127 { bytes.removeLast() }
            bytes[bytes.count - 1] = 0
            #expect(throws: DecodeError.nonCanonical(field: "LatencySketch buckets (zero at an end)")) {
                try LatencySketch(encoded: bytes)
            }
        }
    }

    static func checkCodec<T: Lattice & VersionedEncoding>(_ states: [T], seed: UInt64) {
        var random = SeededRandom(seed: seed)
        let encodings = states.map { $0.encoded() }
        for (state, bytes) in zip(states, encodings) {
            #expect(throws: Never.self) {
                let decoded = try T(encoded: bytes)
                #expect(decoded == state)
                #expect(decoded.encoded() == bytes)
            }
        }
        for _ in 0..<2_000 {
            let a = Int.random(in: 0..<states.count, using: &random)
            let b = Int.random(in: 0..<states.count, using: &random)
            #expect((states[a] == states[b]) == (encodings[a] == encodings[b]), "canonical: states \(a), \(b)")
        }
        var truncationsChecked = 0
        for bytes in encodings.shuffled(using: &random).prefix(40) {
            for length in 0..<bytes.count {
                #expect(throws: DecodeError.self) { try T(encoded: Array(bytes[..<length])) }
                truncationsChecked += 1
            }
        }
        #expect(truncationsChecked > 100)
        var accepted = 0
        for trial in 0..<5_000 {
            var bytes = encodings.randomElement(using: &random)!  // states is never empty
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                switch Int.random(in: 0..<4, using: &random) {
                case 0 where !bytes.isEmpty:
                    let position = Int.random(in: 0..<bytes.count, using: &random)
                    bytes[position] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &random)
                case 1 where !bytes.isEmpty:
                    bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                case 2:
                    bytes.insert(UInt8.random(in: 0...255, using: &random),
                                 at: Int.random(in: 0...bytes.count, using: &random))
                default:
                    if !bytes.isEmpty { bytes.remove(at: Int.random(in: 0..<bytes.count, using: &random)) }
                }
            }
            do {
                let decoded = try T(encoded: bytes)
                accepted += 1
                #expect(decoded.encoded() == bytes, "trial \(trial): accepted bytes are not canonical")
                // Whatever a peer sends that decodes must merge without trapping, both ways.
                let local = states.randomElement(using: &random)!  // states is never empty
                #expect(decoded.merging(local) == local.merging(decoded), "trial \(trial)")
            } catch {
                #expect(!error.description.isEmpty)
            }
        }
        _ = accepted
    }

    // MARK: - Limits and specific rejections

    @Test func hugeCountsAreRejectedBeforeAllocating() {
        var writer = ByteWriter()
        writer.writeUInt8(EncodingTag.gCounter)
        writer.writeUInt8(1)
        writer.writeVarint(UInt64.max)
        #expect(throws: DecodeError.limitExceeded(field: "GCounter slot count", limit: 4_096, found: UInt64.max)) {
            try GCounter(encoded: writer.bytes)
        }
        let limits = DecodeLimits(mapEntriesMax: 2)
        var map = AggregateMap<String, GCounter>()
        for key in ["a", "b", "c"] { map.update(key, orInsert: GCounter.init) { $0.increment(at: ReplicaID(1)) } }
        #expect(throws: DecodeError.self) { try AggregateMap<String, GCounter>(encoded: map.encoded(), limits: limits) }
    }

    @Test func wrongTagAndVersionAreNamed() {
        let bytes = HyperLogLog().encoded()
        #expect(throws: DecodeError.unexpectedTag(expected: EncodingTag.gCounter, found: EncodingTag.hyperLogLog)) {
            try GCounter(encoded: bytes)
        }
        var future = bytes
        future[1] = 9
        #expect(throws: DecodeError.unsupportedVersion(type: "HyperLogLog", version: 9)) {
            try HyperLogLog(encoded: future)
        }
    }

    @Test func nonMinimalVarintIsNotCanonical() {
        // The slot count 1 written as 0x81 0x00 instead of 0x01.
        var writer = ByteWriter()
        writer.writeUInt8(EncodingTag.gCounter)
        writer.writeUInt8(1)
        writer.writeUInt8(0x81)
        writer.writeUInt8(0x00)
        #expect(throws: DecodeError.nonCanonical(field: "GCounter slot count")) { try GCounter(encoded: writer.bytes) }
    }

    @Test func nanSumIsRejected() {
        var sketch = LatencySketch()
        sketch.record(10, at: ReplicaID(1))
        var bytes = sketch.encoded()
        // Locate the sum (the first double after origin, floor flag and zero count) and poison it.
        var writer = ByteWriter()
        writer.writeDouble(10)
        let sumBytes = writer.bytes
        let position = (0...(bytes.count - 8)).first { Array(bytes[$0..<($0 + 8)]) == sumBytes }!  // sum is 10
        var nan = ByteWriter()
        nan.writeDouble(.nan)
        bytes.replaceSubrange(position..<(position + 8), with: nan.bytes)
        #expect(throws: DecodeError.invalidValue(field: "LatencySketch sum", value: "nan")) {
            try LatencySketch(encoded: bytes)
        }
    }

    // MARK: - Sizes

    @Test func encodedSizesMeetTheirBudgets() {
        var sketch = LatencySketch()
        for value in Distribution.logNormal.values(count: 1_000_000, seed: 12) { sketch.record(value, at: ReplicaID(1)) }
        #expect(sketch.encoded().count <= 2_048, "sketch of 10^6 log-normal latencies: \(sketch.encoded().count) bytes")
        var hll = HyperLogLog()
        for user in 0..<1_000 { hll.add("user-\(user)") }
        #expect(hll.isSparse)
        #expect(hll.encoded().count <= 2_000, "sparse HLL of 1,000 users: \(hll.encoded().count) bytes")
    }
}
