import Testing
import TallyAggregates
@testable import TallyReplica

/// Checkpoints are deltas folded into a durable image; recovery is "restore the image, replay the
/// log after it". The law: at any moment, recovering from (image, remaining log) gives the same
/// replica as one that never checkpointed and only ever ingested, and it goes on answering every
/// later batch the same way.
@Suite struct CheckpointTests {
    static let origin = ReplicaID(region: "eu-west", node: "n1", incarnation: 7)
    static let start = Timestamp(millisecondsSinceEpoch: 1_795_946_400_000)

    static func config() -> ReplicaConfig {
        // Short retentions so that buckets and keys expire within a run; a small key capacity so
        // that keys are also evicted early.
        ReplicaConfig(
            id: Self.origin, retention: Retention(minute: .seconds(600), hour: .seconds(7_200), day: .seconds(86_400)),
            limits: Limits(operationsPerServiceMax: 6, idempotencyWindow: .seconds(900), idempotencyKeysMax: 40,
                           spanWindow: .seconds(300), spanFingerprintsMax: 60, metricStreamsMax: 5,
                           metricStreamWindow: .seconds(400)))
    }

    /// The disk of a shell: checkpoints folded into an image, plus the log after it.
    struct Disk {
        var image = ReplicaSnapshot()
        var log: [LogEntry] = []

        mutating func store(_ checkpoint: Checkpoint) {
            self.image.apply(checkpoint)
            self.log.removeAll { $0.sequence <= checkpoint.sequence }
        }

        func recover(_ config: ReplicaConfig) -> Replica {
            var replica = Replica(config: config, restoring: self.image)
            for entry in self.log { replica.replay(entry) }
            return replica
        }
    }

    static func batch(_ id: UInt64, now: Timestamp, random: inout SeededRandom) -> EventBatch {
        let count = Int(random.next() % 12)
        let items: [BatchItem] = (0..<count).map { _ in
            // Mostly recent events, some late (older buckets, some past retention), some from the future.
            let ageSeconds: Int64 = switch random.next() % 10 {
            case 0: Int64(random.next() % 200_000)
            case 1: -Int64(random.next() % 600)
            default: Int64(random.next() % 120)
            }
            let status: UInt16 = [200, 201, 302, 404, 500, 503][Int(random.next() % 6)]
            if random.next() % 10 == 0 {
                // An OTLP cumulative point: streams restart (new start), points are resent, some
                // go backwards (a reset), and there are more streams than the limit of 5.
                let stream = random.next() % 7
                let start = random.next() % 3
                let requests = random.next() % 40
                let latency = requests == 0 ? nil : try! LatencyBuckets(
                    scale: 6, zeroCount: 0, buckets: [.init(index: Int32(600 + stream), count: requests)],
                    sum: Double(requests) * 1_000, minimum: 900, maximum: 1_100)
                return .cumulative(CumulativePoint(stream: stream, start: start, totals: RequestCounts(
                    service: "svc-\(stream % 3)", operation: "op-\(stream)", status: status,
                    timestamp: now - .seconds(ageSeconds), requests: requests, latency: latency)))
            }
            if random.next() % 8 == 0 {
                // A StatsD counter or set: requests without latency, users without requests.
                return .counts(RequestCounts(
                    service: "svc-\(random.next() % 3)", operation: "op-\(random.next() % 9)", status: status,
                    timestamp: now - .seconds(ageSeconds), requests: random.next() % 3 == 0 ? 0 : random.next() % 50,
                    users: (0..<Int(random.next() % 3)).map { _ in UserID("user-\(random.next() % 500)") }))
            }
            return .event(Event(
                service: "svc-\(random.next() % 3)", operation: "op-\(random.next() % 9)", status: status,
                latencyMicros: Double(1 + random.next() % 2_000_000),
                user: random.next() % 4 == 0 ? nil : "user-\(random.next() % 500)",
                timestamp: now - .seconds(ageSeconds)))
        }
        // Keys repeat: some batches are retries of earlier ones.
        let key: String? = random.next() % 3 == 0 ? nil : "k\(random.next() % 60)"
        // Some batches are spans: fingerprints repeat across batches (retries, re-batched), some
        // items have none; they expire (300 s) and are evicted (60 kept).
        let fingerprints: [UInt64] = random.next() % 2 == 0 ? [] : items.map { _ in random.next() % 100 }
        return EventBatch(id: BatchID(id), client: "client-\(random.next() % 2)", idempotencyKey: key, items: items,
                          fingerprints: fingerprints)
    }

    /// Everything observable, after expiring both at the same `now`.
    @discardableResult
    static func assertSame(_ live: Replica, _ reference: Replica, now: Timestamp, _ context: String) -> Bool {
        var live = live
        var reference = reference
        _ = live.tick(now: now)
        _ = reference.tick(now: now)
        let liveKeys: [BucketKey] = live.buckets.map(\.key)
        let referenceKeys: [BucketKey] = reference.buckets.map(\.key)
        let liveBytes: [[UInt8]] = live.buckets.map { $0.aggregate.encoded() }
        let referenceBytes: [[UInt8]] = reference.buckets.map { $0.aggregate.encoded() }
        var problems: [String] = []
        if liveKeys != referenceKeys {
            problems.append("bucket keys: \(Set(liveKeys).symmetricDifference(referenceKeys).sorted().prefix(5))")
        } else if let index = liveBytes.indices.first(where: { liveBytes[$0] != referenceBytes[$0] }) {
            problems.append("bucket \(liveKeys[index]) differs")
        }
        if live.series.map(\.key) != reference.series.map(\.key) { problems.append("series") }
        let liveRecords = live.idempotency.records
        let referenceRecords = reference.idempotency.records
        if liveRecords != referenceRecords {
            func names(_ records: [IdempotencyRecord]) -> [String] {
                records.map { "\($0.client)/\($0.key)@\($0.receipt.sequence)" }
            }
            let live = names(liveRecords)
            let reference = names(referenceRecords)
            problems.append("idempotency keys: only live \(live.filter { !reference.contains($0) }), "
                + "only reference \(reference.filter { !live.contains($0) })")
        }
        let window = live.config.limits.metricStreamWindow
        let liveStreams = live.streams.states.filter { MetricStreams.isLive($0.value, now: now, window: window) }
        let referenceStreams = reference.streams.states.filter { MetricStreams.isLive($0.value, now: now, window: window) }
        if liveStreams != referenceStreams {
            problems.append("metric streams: live \(liveStreams.keys.sorted()), reference \(referenceStreams.keys.sorted())")
        }
        let liveSpans = live.spans.entries.map { "\($0.key)@\($0.expiresAt)" }
        let referenceSpans = reference.spans.entries.map { "\($0.key)@\($0.expiresAt)" }
        if liveSpans != referenceSpans {
            problems.append("span fingerprints: live \(liveSpans.prefix(8)), reference \(referenceSpans.prefix(8))")
        }
        if live.lastSequence != reference.lastSequence {
            problems.append("sequence \(live.lastSequence) vs \(reference.lastSequence)")
        }
        for problem in problems { Issue.record("\(context): \(problem)") }
        return problems.isEmpty
    }

    @Test(arguments: 1...12 as ClosedRange<UInt64>)
    func recoveryFromImageAndLogEqualsNeverCheckpointing(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        let config = Self.config()
        var reference = Replica(config: config)
        var live = Replica(config: config)
        var disk = Disk()
        var now = Self.start
        for step in 1...400 as ClosedRange<UInt64> {
            now = now + .milliseconds(Int64(random.next() % 20_000))
            let batch = Self.batch(step, now: now, random: &random)
            let expected = reference.ingest(batch, now: now)
            let actions = live.ingest(batch, now: now)
            guard actions == expected else {
                // Stop at the first divergence: everything after it differs too.
                Issue.record("seed \(seed) step \(step): answers differ\nlive: \(actions)\nreference: \(expected)")
                return
            }
            for case .persist(let entry) in actions { disk.log.append(entry) }
            switch random.next() % 20 {
            case 0, 1, 2:
                disk.store(live.checkpoint(now: now))
            case 3:
                _ = live.tick(now: now)
                _ = reference.tick(now: now)
            case 4:
                // Crash and restart: everything in memory is gone; the disk has every entry.
                live = disk.recover(config)
                guard Self.assertSame(live, reference, now: now, "seed \(seed) step \(step) after recovery") else {
                    return
                }
            default:
                break
            }
        }
        disk.store(live.checkpoint(now: now))
        Self.assertSame(disk.recover(config), reference, now: now, "seed \(seed) final recovery")
        Self.assertSame(live, reference, now: now, "seed \(seed) final live")
    }

    @Test func checkpointHoldsOnlyWhatChanged() {
        var replica = Replica(config: Self.config())
        let event = Event(service: "a", operation: "b", status: 200, latencyMicros: 10, user: "u",
                          timestamp: Self.start - .seconds(1))
        _ = replica.ingest(EventBatch(id: BatchID(1), client: "c", events: [event]), now: Self.start)
        let first = replica.checkpoint(now: Self.start)
        #expect(first.newSeries.count == 1 && first.buckets.count == 3 && first.sequence == 1)
        let idle = replica.checkpoint(now: Self.start)
        #expect(idle.isEmpty && idle.firstNewSeries == 1 && idle.sequence == 1)
        // A later event of the same minute changes the same three buckets, and only those.
        _ = replica.ingest(EventBatch(id: BatchID(2), client: "c", idempotencyKey: "k", events: [event]),
                           now: Self.start)
        let second = replica.checkpoint(now: Self.start)
        #expect(second.newSeries.isEmpty && second.buckets.count == 3 && second.idempotencyKeys.count == 1)
        #expect(second.buckets.allSatisfy { $0.aggregate.requests.value == 2 })
    }

    @Test func imageDropsWhatExpiredByTheCheckpointsTime() {
        let config = Self.config()
        var replica = Replica(config: config)
        let event = Event(service: "a", operation: "b", status: 200, latencyMicros: 10, user: "u",
                          timestamp: Self.start - .seconds(1))
        _ = replica.ingest(EventBatch(id: BatchID(1), client: "c", idempotencyKey: "k", events: [event]),
                           now: Self.start)
        var disk = Disk()
        disk.store(replica.checkpoint(now: Self.start))
        #expect(disk.image.buckets.count == 3 && disk.image.idempotencyKeys.count == 1)
        // Past the minute retention (600 s) and the key window (900 s), before the hour's.
        disk.store(replica.checkpoint(now: Self.start + .seconds(1_000)))
        #expect(disk.image.buckets.keys.map(\.resolution).sorted { $0.rawValue < $1.rawValue } == [.hour, .day])
        #expect(disk.image.idempotencyKeys.isEmpty)
        #expect(disk.log.isEmpty)
    }
}

/// The span ledger's law: within the span window, an event with a fingerprint is counted once,
/// however its retries are batched, and what is counted is exactly the distinct fingerprints.
@Suite struct SpanFingerprintTests {
    static let origin = ReplicaID(region: "eu-west", node: "n1", incarnation: 7)
    static let start = Timestamp(millisecondsSinceEpoch: 1_795_946_400_000)

    static func span(_ fingerprint: UInt64, status: UInt16 = 200) -> Event {
        Event(service: "checkout", operation: "GET /cart", status: status, latencyMicros: Double(fingerprint % 997 + 1),
              timestamp: Self.start - .seconds(1))
    }

    @Test(arguments: 1...8 as ClosedRange<UInt64>)
    func distinctFingerprintsAreCountedOnce(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var replica = Replica(config: ReplicaConfig(id: Self.origin))
        var distinct = Set<UInt64>()
        var accepted = 0
        var duplicates = 0
        var sent = 0
        for id in 1...200 as ClosedRange<UInt64> {
            let fingerprints = (0..<Int(random.next() % 30)).map { _ in 1 + random.next() % 2_000 }
            let batch = EventBatch(id: BatchID(id), client: "otlp", items: fingerprints.map { .event(Self.span($0)) },
                                   fingerprints: fingerprints)
            distinct.formUnion(fingerprints)
            sent += fingerprints.count
            for case .acknowledge(_, let receipt, _) in replica.ingest(batch, now: Self.start) {
                accepted += receipt.accepted
                duplicates += receipt.duplicates
            }
        }
        #expect(accepted == distinct.count)
        #expect(accepted + duplicates == sent)
        let total = replica.buckets.filter { $0.key.resolution == .minute }.reduce(0) { $0 + $1.aggregate.requests.value }
        #expect(total == UInt64(distinct.count))
    }

    @Test func aRejectedSpanIsNotRememberedAndAnExpiredOneCountsAgain() {
        var replica = Replica(config: ReplicaConfig(id: Self.origin, limits: Limits(spanWindow: .seconds(60))))
        func ingest(_ events: [Event], _ fingerprints: [UInt64], at now: Timestamp) -> IngestReceipt? {
            let batch = EventBatch(id: BatchID(1), client: "otlp", items: events.map { .event($0) },
                                   fingerprints: fingerprints)
            for case .acknowledge(_, let receipt, _) in replica.ingest(batch, now: now) { return receipt }
            return nil
        }
        var future = Self.span(7)
        future.timestamp = Self.start + .seconds(3_600)
        #expect(ingest([future], [7], at: Self.start)?.rejected.count == 1)
        // Rejected, so not remembered: the same span with a valid time counts.
        #expect(ingest([Self.span(7)], [7], at: Self.start)?.accepted == 1)
        #expect(ingest([Self.span(7), Self.span(7)], [7, 7], at: Self.start + .seconds(59))?.duplicates == 2)
        // Past the window it is a new span again (and a fingerprint of 0 is never deduplicated).
        #expect(ingest([Self.span(7)], [7], at: Self.start + .seconds(61))?.accepted == 1)
        #expect(ingest([Self.span(0), Self.span(0)], [0, 0], at: Self.start + .seconds(61))?.accepted == 2)
    }
}

/// Measurements (StatsD counters and sets): requests without latency, users without requests,
/// checked like events, and bounded.
@Suite struct MeasurementTests {
    static let origin = ReplicaID(region: "eu-west", node: "n1", incarnation: 7)
    static let now = Timestamp(millisecondsSinceEpoch: 1_795_946_400_000)

    @Test func countersAndSetsCountWhatTheySay() {
        var replica = Replica(config: ReplicaConfig(id: Self.origin))
        let items: [BatchItem] = [
            .counts(RequestCounts(service: "cart", operation: "GET /", status: 200, timestamp: Self.now, requests: 40)),
            .counts(RequestCounts(service: "cart", operation: "GET /", status: 503, timestamp: Self.now, requests: 2)),
            .counts(RequestCounts(service: "cart", operation: "GET /", status: 200, timestamp: Self.now, requests: 0,
                                     users: (0..<30).map { UserID("u\($0)") })),
            .event(Event(service: "cart", operation: "GET /", status: 200, latencyMicros: 900, user: "u1", timestamp: Self.now)),
            .counts(RequestCounts(service: "cart", operation: "GET /", status: 200, timestamp: Self.now,
                                     requests: RequestCounts.requestsMax + 1)),
            .counts(RequestCounts(service: "cart", operation: "GET /", status: 200, timestamp: Self.now, requests: 1,
                                     latency: try! LatencyBuckets(scale: 2, zeroCount: 0, buckets: [.init(index: 40, count: 1)],
                                                                  sum: 1_000, minimum: 1_000, maximum: 1_000))),
            .counts(RequestCounts(service: "cart", operation: "GET /", status: 200, timestamp: Self.now, requests: 3,
                                     latency: try! LatencyBuckets(scale: 8, zeroCount: 1, buckets: [.init(index: 2_600, count: 2)],
                                                                  sum: 2_250, minimum: 0, maximum: 1_150))),
            .counts(RequestCounts(service: "", operation: "GET /", status: 200, timestamp: Self.now, requests: 1)),
            .counts(RequestCounts(service: "cart", operation: "GET /", status: 200, timestamp: Self.now + .seconds(3_600),
                                     requests: 1)),
        ]
        let actions = replica.ingest(EventBatch(id: BatchID(1), client: "statsd", items: items), now: Self.now)
        guard case .acknowledge(_, let receipt, _) = actions.last else {
            Issue.record("no answer: \(actions)")
            return
        }
        #expect(receipt.accepted == 5 && receipt.rejected.map(\.index) == [4, 5, 7, 8])
        #expect(receipt.rejected[1].reason.description.contains("coarser than the sketch's 6"))
        #expect(receipt.rejected[0].reason.description.contains("at most 4294967296"))
        let minute = replica.buckets.filter { $0.key.resolution == .minute }
        #expect(minute.reduce(0) { $0 + $1.aggregate.requests.value } == 46)
        #expect(minute.reduce(0) { $0 + $1.aggregate.errors.value } == 2)
        // One timed event and a point of three: the counters' requests have no latency.
        #expect(minute.reduce(0) { $0 + $1.aggregate.latency.count } == 4)
        #expect(minute.reduce(0) { $0 + $1.aggregate.latency.sum } == 900 + 2_250)
        let users = minute.first { $0.key.series.statusClass == .success }?.aggregate.users.cardinality ?? 0
        #expect(abs(users - 30) < 2)
        // Replayed from its log entry, the state is the same.
        var replayed = Replica(config: ReplicaConfig(id: Self.origin))
        for case .persist(let entry) in actions { replayed.replay(try! LogEntry(encoded: entry.encoded())) }
        #expect(replayed.buckets.map { $0.aggregate.encoded() } == replica.buckets.map { $0.aggregate.encoded() })
    }
}

/// Cumulative points become deltas: each request is counted once whatever is resent, a reset
/// counts from zero, and a replayed log gives the same streams.
@Suite struct CumulativeStreamTests {
    static let origin = ReplicaID(region: "eu-west", node: "n1", incarnation: 7)
    static let now = Timestamp(millisecondsSinceEpoch: 1_795_946_400_000)

    static func point(_ requests: UInt64, start: UInt64 = 1, stream: UInt64 = 9) -> BatchItem {
        .cumulative(CumulativePoint(stream: stream, start: start, totals: RequestCounts(
            service: "cart", operation: "GET /", status: 200, timestamp: Self.now, requests: requests,
            latency: try! LatencyBuckets(scale: 6, zeroCount: 0, buckets: [.init(index: 640, count: requests)],
                                         sum: Double(requests) * 1_000, minimum: 1_000, maximum: 1_000))))
    }

    @Test func deltasAreCountedOnce() {
        var replica = Replica(config: ReplicaConfig(id: Self.origin))
        var log: [LogEntry] = []
        // 10, then 25 (15 new), 25 again (a retry: nothing), a restart of the sender (start 2) at 4,
        // then 9 (5 new): 10 + 15 + 4 + 5 = 34.
        for (id, item) in [Self.point(10), Self.point(25), Self.point(25), Self.point(4, start: 2), Self.point(9, start: 2)].enumerated() {
            for case .persist(let entry) in replica.ingest(EventBatch(id: BatchID(UInt64(id)), client: "otlp", items: [item]),
                                                           now: Self.now) { log.append(entry) }
        }
        let minute = replica.buckets.filter { $0.key.resolution == .minute }
        #expect(minute.reduce(0) { $0 + $1.aggregate.requests.value } == 34)
        #expect(minute.reduce(0) { $0 + $1.aggregate.latency.count } == 34)
        var replayed = Replica(config: ReplicaConfig(id: Self.origin))
        for entry in log { replayed.replay(try! LogEntry(encoded: entry.encoded())) }
        #expect(replayed.streams.states == replica.streams.states)
        // After the restart (replay), a resent point is still recognised: nothing new.
        _ = replayed.ingest(EventBatch(id: BatchID(9), client: "otlp", items: [Self.point(9, start: 2)]), now: Self.now)
        #expect(replayed.buckets.filter { $0.key.resolution == .minute }.reduce(0) { $0 + $1.aggregate.requests.value } == 34)
    }

    /// Two hostile points of one stream whose buckets first agree at a very coarse scale: the
    /// difference is placed back without computing a value (a representative there is subnormal
    /// or infinite, and `ExponentialBuckets.index(of:)` trapped on it), and counts stay exact.
    @Test func extremeBucketsThatAgreeOnlyWhenCoarseDoNotTrap() {
        func point(_ buckets: [LatencySketch.Bucket], _ requests: UInt64) -> BatchItem {
            .cumulative(CumulativePoint(stream: 1, start: 1, totals: RequestCounts(
                service: "cart", operation: "GET /", status: 200, timestamp: Self.now, requests: requests,
                latency: try! LatencyBuckets(scale: 6, zeroCount: 0, buckets: buckets, sum: 10, minimum: 1, maximum: 1_000))))
        }
        var replica = Replica(config: ReplicaConfig(id: Self.origin))
        // 5 values near 2^-1000, then those 5 near 2^-990 and 3 near 2^1000 (indices at scale 6).
        _ = replica.ingest(EventBatch(id: BatchID(1), client: "otlp", items: [point([.init(index: -64_000, count: 5)], 5)]),
                           now: Self.now)
        _ = replica.ingest(EventBatch(id: BatchID(2), client: "otlp", items: [
            point([.init(index: -63_360, count: 5), .init(index: 64_000, count: 3)], 8)]), now: Self.now)
        let minute = replica.buckets.filter { $0.key.resolution == .minute }
        #expect(minute.reduce(0) { $0 + $1.aggregate.requests.value } == 8)
    }
}
