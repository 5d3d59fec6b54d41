import Testing
import TallyAggregates
@testable import TallyReplica

/// No value from outside can stop a replica: queries with any parameters, peers' messages with
/// any decoded values, and log entries from a damaged disk either work or are refused with an
/// error naming what was wrong. Seeded, so a failure replays.
@Suite struct HostileInputTests {
    static let now = ReplicaQueryTests.now

    /// Timestamps a hostile client would try: the integer limits, the edges of the valid range and
    /// just past them, and ordinary times around now.
    static func hostileTime(_ random: inout SeededRandom) -> Timestamp {
        let edge = Timestamp.validMillis.upperBound
        // Half ordinary times around now, so that enough queries are valid to check their answers.
        if random.next() % 2 == 0 {
            return Self.now - .milliseconds(Int64(random.next() % 30_000_000) - 3_000_000)
        }
        let choices: [Int64] = [
            .min, .max, .min + 1, .max - 1, -edge, edge, -edge - 1, edge + 1, 0, -1,
            Self.now.millisecondsSinceEpoch - Int64(random.next() % 200_000_000),
            Self.now.millisecondsSinceEpoch + Int64(random.next() % 10_000_000),
            Int64(bitPattern: random.next()),
        ]
        return Timestamp(millisecondsSinceEpoch: choices[Int(random.next() % UInt64(choices.count))])
    }

    static func hostileStep(_ random: inout SeededRandom) -> Duration? {
        let choices: [Duration?] = [
            nil, .zero, .milliseconds(-60_000), .seconds(60), .seconds(3_600), .seconds(86_400), .seconds(90),
            .seconds(Int64.max), .seconds(Int64.min), .milliseconds(Int64.max), .seconds(60 * Int64(1 + random.next() % 10_000)),
            .seconds(86_400 * 365 * 1_000),
        ]
        return choices[Int(random.next() % UInt64(choices.count))]
    }

    /// 3,000 random queries, most of them absurd: none traps; each answer keeps its limits, and its
    /// counts equal the events in the range it says it covers (the reference: the events themselves).
    @Test func queriesWithAnyParametersAnswerExactlyOrSayWhy() throws {
        let (replica, events) = ReplicaQueryTests.populated()
        var random = SeededRandom(seed: 0x51)
        let limits = QueryLimits(pointsMax: 2_000, groupsMax: 100, valuesMax: 20_000, metricsMax: 8, bucketsMax: 50_000)
        var answered = 0
        var refused: [String: Int] = [:]
        for _ in 0..<3_000 {
            var groupBy: [GroupBy] = []
            if random.next() % 2 == 0 { groupBy.append(.operation) }
            if random.next() % 2 == 0 { groupBy.append(.status) }
            let metrics: [Metric] = Array([Metric.count, .errors, .quantile(0.99), .uniqueUsers, .rate]
                .prefix(Int(random.next() % 6)))
            let query = Query(
                service: random.next() % 8 == 0 ? "nobody" : "checkout", from: Self.hostileTime(&random),
                to: Self.hostileTime(&random), step: Self.hostileStep(&random), groupBy: groupBy, metrics: metrics)
            let result: QueryResult
            do {
                result = try replica.query(query, now: Self.now, limits: limits)
            } catch {
                refused[String(error.description.prefix(while: { $0 != ":" })), default: 0] += 1
                continue
            }
            answered += 1
            #expect(result.groups.count <= limits.groupsMax)
            #expect(result.groups.allSatisfy { $0.points.count <= limits.pointsMax })
            guard let countPosition = metrics.firstIndex(of: .count), query.service == "checkout" else { continue }
            let counted = result.groups.reduce(0.0) { total, group in
                total + group.points.reduce(0.0) { $0 + ($1.values[countPosition] ?? 0) }
            }
            let width = result.resolution.width
            let expected = events.filter {
                let start = $0.timestamp.floor(toMultipleOf: width)
                return start >= result.from && start < result.to
            }.count
            #expect(counted == Double(expected), "\(query) -> \(result.from)..<\(result.to) at \(result.resolution)")
        }
        // The mix must exercise both sides, or the test proves little.
        #expect(answered > 150, "answered \(answered), refused \(refused)")
        #expect(refused.count >= 3, "refused \(refused)")
    }

    @Test func aQueryOverItsCostIsRefusedNamingTheLimit() {
        let (replica, _) = ReplicaQueryTests.populated()
        func problem(_ query: Query, _ limits: QueryLimits) -> String? {
            do {
                _ = try replica.query(query, now: Self.now, limits: limits)
                return nil
            } catch {
                return error.description
            }
        }
        let day = Query(service: "checkout", from: Self.now - .seconds(86_400), to: Self.now, step: .seconds(60),
                        groupBy: [.operation, .status], metrics: [.count, .quantile(0.5)])
        // 1,440 points x 4 groups x 2 metrics = 11,520 values.
        #expect(problem(day, QueryLimits(valuesMax: 10_000))?.contains("11520 values") == true)
        #expect(problem(day, QueryLimits(valuesMax: 20_000)) == nil)
        #expect(problem(day, QueryLimits(groupsMax: 3))?.hasPrefix("group_by: 4 groups") == true)
        // The replica holds 60 minute buckets in each of 4 series.
        let held = replica.buckets.filter { $0.key.resolution == .minute }.count
        #expect(problem(day, QueryLimits(bucketsMax: held - 1))?.contains("read \(held) time buckets") == true)
        #expect(problem(day, QueryLimits(bucketsMax: held)) == nil)
        var many = day
        many.metrics = Array(repeating: .count, count: 40)
        #expect(problem(many, QueryLimits())?.hasPrefix("metrics: 40 metrics") == true)
        var huge = day
        huge.step = .seconds(Int64.max)
        #expect(problem(huge, QueryLimits())?.hasPrefix("step: must be at most") == true)
        var ancient = day
        ancient.from = Timestamp(millisecondsSinceEpoch: .min)
        #expect(problem(ancient, QueryLimits())?.hasPrefix("from: -9223372036854775808 ms is outside") == true)
    }

    /// A range longer than every retention costs the buckets held, not the instants named.
    @Test func aHugeRangeReadsOnlyTheBucketsHeld() throws {
        let (replica, events) = ReplicaQueryTests.populated()
        let query = Query(service: "checkout", from: Timestamp(millisecondsSinceEpoch: -Timestamp.validMillis.upperBound),
                          to: Timestamp(millisecondsSinceEpoch: Timestamp.validMillis.upperBound), metrics: [.count])
        let answer = try replica.query(query, now: Self.now)
        #expect(answer.groups[0].points.count == 1 && answer.groups[0].points[0].values[0] == Double(events.count))
        // A peer's read of the same range is just as cheap, and holds every bucket.
        let request = ReadRequest(id: 1, service: "checkout", operation: nil, statusClass: nil, resolution: .minute,
                                  from: query.from, to: query.to, latency: true, users: true)
        let read = replica.answer(request, bytesMax: 64 << 20)
        #expect(read.outcome == .buckets && read.buckets.count == replica.buckets.filter { $0.key.resolution == .minute }.count)
    }

    /// A query asked to stop (its client went away) stops within a few thousand buckets read; one
    /// never asked answers exactly as without the condition.
    @Test func aQueryStopsWhenItsCallerSaysSo() throws {
        let (replica, _) = ReplicaQueryTests.populated()
        let query = Query(service: "checkout", from: Self.now - .seconds(86_400), to: Self.now, step: .seconds(60),
                          groupBy: [.operation], metrics: [.count, .quantile(0.99)])
        #expect(try replica.query(query, now: Self.now, stopping: { false }) == replica.query(query, now: Self.now))
        #expect(throws: QueryError.stopped) { try replica.query(query, now: Self.now, stopping: { true }) }
        #expect(throws: QueryError.stopped) {
            try replica.query(query, now: Self.now, joining: [], stopping: { true })
        }
    }

    @Test func aStepOlderThanItsResolutionsRetentionSaysSo() {
        let replica = ReplicaIngestTests.replica(retention: Retention(minute: .seconds(7_200)))
        let old = Query(service: "s", from: Self.now - .seconds(3 * 3_600), to: Self.now, step: .seconds(60),
                        metrics: [.count])
        #expect(throws: QueryError.invalid(parameter: "step", message: "the range starts before the 1m buckets' "
            + "retention (2h), so 1m points there are gone; use a step that is a multiple of 1h")) {
            try replica.query(old, now: Self.now)
        }
    }

    /// A peer's deltas whose bucket starts are near the integer limits, or not on a bucket
    /// boundary, are refused by the decoder and counted; the replica keeps working.
    @Test func deltasWithImpossibleBucketStartsAreRefused() throws {
        var replica = Replica(config: ReplicaConfig(
            id: ReplicaID(region: "a", node: "n1", incarnation: 1), peers: ["b"]))
        let origin = ReplicaID(region: "b", node: "n1", incarnation: 1)
        var aggregate = BucketAggregate(sketchScale: 6, sketchBucketsMax: 160, usersPrecision: 14)
        aggregate.record(ReplicaIngestTests.event(), userHash: 1, isError: false, at: origin)
        let series = SeriesKey(service: "s", operation: "o", statusClass: .success)
        let starts: [Int64] = [.max - 59_999, Int64.max / 60_000 * 60_000, .min, Timestamp.validMillis.upperBound + 60_000,
                               Self.now.millisecondsSinceEpoch + 1]
        var refused: UInt64 = 0
        for wire in ReplicationMessage.protocolVersions {
            for start in starts {
                // Wire version 2 writes bucket numbers (start / width): a start off its boundary
                // cannot be written, and this one becomes a valid bucket.
                if wire >= 2 && start == Self.now.millisecondsSinceEpoch + 1 { continue }
                let batch = DeltaBatch(
                    origin: origin, version: 1, previous: 0,
                    sealedAt: Self.now, buckets: [ReplicatedBucket(
                        key: BucketKey(series: series, resolution: .minute, start: Timestamp(millisecondsSinceEpoch: start)),
                        aggregate: aggregate)])
                _ = replica.receive(ReplicationMessage.deltas([batch]).encoded(protocolVersion: wire), from: "b", now: Self.now)
                refused += 1
                #expect(replica.refusedMessages == refused, "start \(start) at wire version \(wire)")
            }
        }
        #expect(refused == 13)  // 5 starts at version 1, 4 at each of versions 2 and 3
        #expect(replica.bucketCount == 0)
        _ = try replica.query(Query(service: "s", from: Self.now - .seconds(60), to: Self.now, metrics: [.count]),
                              now: Self.now)
    }

    /// Decoded-but-hostile messages: every field valid on its own, the whole a lie (versions that
    /// jump, chains that fork, own origin's batches, state chunks from nowhere, digests claiming
    /// anything). Receiving them never traps, and the replica still answers.
    @Test func decodedButHostileMessagesNeverStopAReplica() throws {
        var random = SeededRandom(seed: 0xBAD)
        let me = ReplicaID(region: "a", node: "n1", incarnation: 1)
        var replica = Replica(config: ReplicaConfig(id: me, peers: ["b", "c"]))
        _ = replica.ingest(EventBatch(id: BatchID(1), client: "c", events: [ReplicaIngestTests.event()]), now: Self.now)
        replica.durable(through: replica.lastSequence)
        let origins = [me, ReplicaID(region: "b", node: "n1", incarnation: 1), ReplicaID(region: "c", node: "n1", incarnation: 9),
                       ReplicaID(0), ReplicaID(.max)]
        let names = ["s", "t", String(repeating: "x", count: 128)]
        func key() -> BucketKey {
            let resolution = Resolution.allCases[Int(random.next() % 3)]
            let width = resolution.width.milliseconds
            let span = Timestamp.validMillis.upperBound / width
            let start = random.next() % 4 == 0
                ? (Int64(bitPattern: random.next()) % span) * width
                : Self.now.floor(toMultipleOf: resolution.width).millisecondsSinceEpoch - Int64(random.next() % 5) * width
            return BucketKey(series: SeriesKey(service: names[Int(random.next() % 3)], operation: "o",
                                               statusClass: StatusClass.allCases[Int(random.next() % 5)]),
                             resolution: resolution, start: Timestamp(millisecondsSinceEpoch: start))
        }
        func aggregate() -> BucketAggregate {
            var value = BucketAggregate(sketchScale: 6, sketchBucketsMax: 160, usersPrecision: 14)
            for _ in 0..<(1 + random.next() % 3) {
                value.record(ReplicaIngestTests.event(latency: Double(random.next() % 10_000_000)),
                             userHash: random.next(), isError: random.next() % 2 == 0,
                             at: origins[Int(random.next() % UInt64(origins.count))])
            }
            return value
        }
        func version() -> UInt64 {
            [0, 1, 2, 3, UInt64(random.next() % 1_000), UInt64.max, UInt64.max - 1, random.next()][Int(random.next() % 8)]
        }
        for round in 0..<2_000 {
            let origin = origins[Int(random.next() % UInt64(origins.count))]
            let message: ReplicationMessage
            switch random.next() % 3 {
            case 0:
                var entries: [Digest.Entry] = []
                for candidate in origins.sorted(by: { $0.rawValue < $1.rawValue }) where random.next() % 2 == 0 {
                    entries.append(Digest.Entry(origin: candidate, version: version(),
                                                currentAsOf: Self.hostileTime(&random).isValid ? Self.now : Self.now))
                }
                let transfers = random.next() % 3 == 0
                    ? [Digest.Transfer(origin: origin, asOf: version(), cursor: key())] : []
                message = .digest(Digest(entries: entries, transfers: transfers, reply: random.next() % 2 == 0))
            case 1:
                var v = version()
                if v == 0 { v = 1 }
                let previous = random.next() % 2 == 0 ? v - 1 : random.next() % v
                message = .deltas([DeltaBatch(origin: origin, version: v, previous: previous, sealedAt: Self.now,
                                              buckets: (0..<(random.next() % 4)).map { _ in
                                                  ReplicatedBucket(key: key(), aggregate: aggregate())
                                              })])
            default:
                let keys = [key(), key()].sorted()
                message = .stateChunk(StateChunk(
                    origin: origin, asOf: version(), asOfTime: Self.now,
                    from: random.next() % 2 == 0 ? nil : keys[0], next: random.next() % 2 == 0 ? nil : keys[1],
                    buckets: [ReplicatedBucket(key: keys[0], aggregate: aggregate())]))
            }
            let peer = ["b", "c", "z"][Int(random.next() % 3)]
            _ = replica.receive(message.encoded(), from: peer, now: Self.now + .milliseconds(Int64(round)))
            if round % 50 == 0 {
                _ = replica.tick(now: Self.now + .milliseconds(Int64(round)))
            }
        }
        let answer = try replica.query(
            Query(service: "checkout", from: Self.now - .seconds(3_600), to: Self.now, metrics: [.count, .quantile(0.5)]),
            now: Self.now)
        #expect(answer.groups[0].points.reduce(0.0) { $0 + ($1.values[0] ?? 0) } == 1)
    }

    /// A log entry from a damaged disk whose event timestamps are impossible is refused when decoded.
    @Test func logEntriesWithImpossibleTimestampsDoNotDecode() {
        var event = ReplicaIngestTests.event()
        event.timestamp = Timestamp(millisecondsSinceEpoch: .max)
        let entry = LogEntry(sequence: 1, acceptedAt: Self.now, client: "c", idempotencyKey: nil, events: [event],
                             receipt: IngestReceipt(accepted: 1, rejected: [], sequence: 1))
        #expect(throws: DecodeError.self) { try LogEntry(encoded: entry.encoded()) }
    }

    /// An event whose timestamp is outside the range is rejected by the replica itself, naming why,
    /// whatever parser produced it.
    @Test func eventsWithImpossibleTimestampsAreRejected() throws {
        var replica = ReplicaIngestTests.replica()
        for millis in [Int64.min, .max, Timestamp.validMillis.upperBound + 1] {
            let actions = replica.ingest(EventBatch(id: BatchID(1), client: "c", events: [
                ReplicaIngestTests.event(at: Timestamp(millisecondsSinceEpoch: millis)),
            ]), now: Self.now)
            let receipt = try #require(actions.compactMap { action -> IngestReceipt? in
                if case .acknowledge(_, let receipt, _) = action { return receipt } else { return nil }
            }.first)
            #expect(receipt.accepted == 0 && receipt.rejected.first?.reason.description.contains("outside") == true)
        }
    }
}
