import Testing
import TallyAggregates
@testable import TallyReplica

/// The replica as a value: call an input, check the actions and the answers. No I/O, no sleeps.
@Suite struct ReplicaIngestTests {
    static let origin = ReplicaID(region: "us-east", node: "a", incarnation: 1)
    /// 2026-11-29T10:00:00Z.
    static let now = Timestamp(millisecondsSinceEpoch: 1_795_946_400_000)

    static func replica(limits: Limits = Limits(), retention: Retention = Retention()) -> Replica {
        Replica(config: ReplicaConfig(id: Self.origin, retention: retention, limits: limits))
    }

    static func event(
        _ service: String = "checkout", operation: String = "POST /pay", status: UInt16 = 200,
        latency: Double = 12_000, user: String? = "u1", at timestamp: Timestamp = Self.now - .seconds(5)
    ) -> Event {
        Event(service: service, operation: operation, status: status, latencyMicros: latency, user: user,
              timestamp: timestamp)
    }

    static func count(_ replica: Replica, _ service: String = "checkout", metric: Metric = .count) throws -> Double? {
        let answer = try replica.query(
            Query(service: service, from: Self.now - .seconds(3_600), to: Self.now + .seconds(60), metrics: [metric]),
            now: Self.now)
        return answer.groups.first?.points.first?.values.first ?? nil
    }

    // MARK: - Acceptance

    @Test func acceptedBatchIsPersistedThenAcknowledged() throws {
        var replica = Self.replica()
        let batch = EventBatch(id: BatchID(1), client: "svc", events: [Self.event(), Self.event(status: 503)])
        let actions = replica.ingest(batch, now: Self.now)
        #expect(actions.count == 2)
        guard case .persist(let entry) = actions[0], case .acknowledge(let id, let receipt, let replayed) = actions[1]
        else {
            Issue.record("expected persist then acknowledge, got \(actions)")
            return
        }
        #expect(entry.sequence == 1 && entry.events.count == 2 && entry.receipt == receipt)
        #expect(id == BatchID(1) && !replayed && receipt.accepted == 2 && receipt.rejected.isEmpty)
        #expect(try Self.count(replica) == 2)
        #expect(try Self.count(replica, metric: .errors) == 1)
        #expect(try Self.count(replica, metric: .errorRate) == 0.5)
        // Every event lands in all three resolutions.
        #expect(replica.bucketCount == 2 * 3)  // two status classes, three resolutions
    }

    @Test func badEventsAreRejectedWithReasonsAndGoodOnesCounted() throws {
        var replica = Self.replica(limits: Limits(nameBytesMax: 16, userBytesMax: 8, latencyMax: .seconds(60)))
        let items: [BatchItem] = [
            .event(Self.event()),
            .event(Self.event(status: 700)),
            .event(Self.event(latency: -1)),
            .event(Self.event(latency: .nan)),
            .event(Self.event(latency: 61_000_000)),
            .event(Self.event("")),
            .event(Self.event(String(repeating: "s", count: 17))),
            .event(Self.event(user: "a-very-long-user")),
            .event(Self.event(at: Self.now + .seconds(3_600))),
            .event(Self.event(at: Self.now - .seconds(6 * 365 * 86_400))),
            .invalid("event 10: field 'status' must be a number"),
            .event(Self.event(operation: "GET /cart")),
        ]
        let actions = replica.ingest(EventBatch(id: BatchID(2), client: "svc", items: items), now: Self.now)
        guard case .acknowledge(_, let receipt, _) = actions.last else {
            Issue.record("no acknowledgement in \(actions)")
            return
        }
        #expect(receipt.accepted == 2)
        let reasons = Dictionary(uniqueKeysWithValues: receipt.rejected.map { ($0.index, $0.reason) })
        #expect(reasons.count == 10)
        #expect(reasons[1] == .invalid("status 700 is not in 100...599"))
        #expect(reasons[2]?.description.contains("latency -1.0") == true)
        #expect(reasons[3]?.description.contains("latency nan") == true)
        #expect(reasons[4]?.description.contains("over the maximum") == true)
        #expect(reasons[5] == .invalid("service is empty"))
        #expect(reasons[6] == .invalid("service is 17 bytes long; at most 16 are allowed"))
        #expect(reasons[7]?.description.contains("user is 16 bytes long") == true)
        #expect(reasons[8] == .futureTimestamp(aheadMillis: 3_600_000, allowedMillis: 300_000))
        #expect(reasons[9]?.code == "expired")
        #expect(reasons[10] == .invalid("event 10: field 'status' must be a number"))
        #expect(try Self.count(replica) == 2)
    }

    @Test func oversizedBatchIsRefusedWhole() throws {
        var replica = Self.replica(limits: Limits(batchEventsMax: 3))
        let actions = replica.ingest(
            EventBatch(id: BatchID(3), client: "svc", events: Array(repeating: Self.event(), count: 4)), now: Self.now)
        #expect(actions == [.reject(batch: BatchID(3), reason: .tooManyEvents(count: 4, limit: 3))])
        #expect(replica.seriesCount == 0 && replica.lastSequence == 0)
    }

    @Test func operationCardinalityLimitRejectsTheOverflow() throws {
        var replica = Self.replica(limits: Limits(servicesMax: 2, operationsPerServiceMax: 100))
        let events = (0..<1_000).map { Self.event(operation: "op-\($0)") }
        let actions = replica.ingest(EventBatch(id: BatchID(4), client: "svc", events: events), now: Self.now)
        guard case .acknowledge(_, let receipt, _) = actions.last else { return }
        #expect(receipt.accepted == 100 && receipt.rejected.count == 900)
        #expect(receipt.rejected.allSatisfy { $0.reason == .operationLimit(service: "checkout", limit: 100) })
        // Known operations keep being accepted; new services stop at the service limit.
        let more = [Self.event(operation: "op-5"), Self.event("search"), Self.event("billing")]
        guard case .acknowledge(_, let second, _) = replica.ingest(
            EventBatch(id: BatchID(5), client: "svc", events: more), now: Self.now).last
        else { return }
        #expect(second.accepted == 2 && second.rejected == [EventRejection(index: 2, reason: .serviceLimit(limit: 2))])
        #expect(replica.seriesCount == 101)
    }

    /// A million distinct operation names cost the replica no more than its limit allows.
    @Test func aMillionOperationNamesAreBoundedByTheLimit() throws {
        var replica = Self.replica(limits: Limits(batchEventsMax: 10_000, operationsPerServiceMax: 1_000))
        var accepted = 0
        var limited = 0
        for batchNumber in 0..<100 {
            let events = (0..<10_000).map { Self.event(operation: "op-\(batchNumber * 10_000 + $0)") }
            let actions = replica.ingest(EventBatch(id: BatchID(UInt64(batchNumber)), client: "c", events: events),
                                         now: Self.now)
            guard case .acknowledge(_, let receipt, _) = actions.last else { continue }
            accepted += receipt.accepted
            limited += receipt.rejected.filter { $0.reason.code == "operation_limit" }.count
        }
        #expect(accepted == 1_000 && limited == 999_000)
        #expect(replica.seriesCount == 1_000 && replica.bucketCount == 3_000)
    }

    // MARK: - Idempotency

    @Test func retriedKeyGetsTheFirstAnswerAndCountsOnce() throws {
        var replica = Self.replica()
        let batch = EventBatch(id: BatchID(6), client: "svc", idempotencyKey: "k-1", events: [Self.event()])
        let first = replica.ingest(batch, now: Self.now)
        guard case .acknowledge(_, let receipt, false) = first.last else {
            Issue.record("\(first)")
            return
        }
        var retry = batch
        retry.id = BatchID(7)
        let second = replica.ingest(retry, now: Self.now + .seconds(30))
        #expect(second == [.acknowledge(batch: BatchID(7), receipt: receipt, replayed: true)])
        #expect(try Self.count(replica) == 1)
        // The key is scoped to the client.
        var other = batch
        other.client = "another-svc"
        _ = replica.ingest(other, now: Self.now)
        #expect(try Self.count(replica) == 2)
    }

    @Test func keyIsForgottenAfterItsWindow() throws {
        var replica = Self.replica(limits: Limits(idempotencyWindow: .seconds(60)))
        let batch = EventBatch(id: BatchID(8), client: "svc", idempotencyKey: "k", events: [Self.event()])
        _ = replica.ingest(batch, now: Self.now)
        _ = replica.tick(now: Self.now + .seconds(61))
        let again = replica.ingest(batch, now: Self.now + .seconds(61))
        guard case .acknowledge(_, _, let replayed) = again.last else { return }
        #expect(!replayed)
    }

    @Test func invalidIdempotencyKeyIsRefused() {
        var replica = Self.replica()
        let key = String(repeating: "k", count: 257)
        let actions = replica.ingest(
            EventBatch(id: BatchID(9), client: "svc", idempotencyKey: key, events: [Self.event()]), now: Self.now)
        guard case .reject(_, .invalidIdempotencyKey) = actions.first else {
            Issue.record("\(actions)")
            return
        }
    }

    // MARK: - Retention

    @Test func lateEventCountsOnlyWhereItsBucketIsKept() throws {
        var replica = Self.replica()
        // Three days old: past the 48 h of minutes, within the 90 days of hours.
        let late = Self.event(at: Self.now - .seconds(3 * 86_400))
        _ = replica.ingest(EventBatch(id: BatchID(10), client: "svc", events: [late]), now: Self.now)
        #expect(replica.bucketCount == 2)
        #expect(replica.buckets.map(\.key.resolution) == [.hour, .day])
    }

    @Test func tickDropsExpiredBuckets() throws {
        var replica = Self.replica()
        _ = replica.ingest(EventBatch(id: BatchID(11), client: "svc", events: [Self.event()]), now: Self.now)
        #expect(replica.bucketCount == 3)
        let actions = replica.tick(now: Self.now + .seconds(49 * 3_600))
        #expect(actions == [.scheduleTick(after: .seconds(1))])
        #expect(replica.buckets.map(\.key.resolution) == [.hour, .day])
    }

    // MARK: - Recovery and determinism

    /// Replaying the persisted entries into a fresh replica rebuilds the same state, byte for byte,
    /// and remembers the idempotency keys.
    @Test(arguments: [1, 2, 3] as [UInt64])
    func replayRebuildsExactlyTheAcknowledgedState(seed: UInt64) throws {
        var random = SeededRandom(seed: seed)
        var replica = Self.replica(limits: Limits(operationsPerServiceMax: 20))
        var log: [LogEntry] = []
        for batchNumber in 0..<200 {
            let now = Self.now + .seconds(Int64(batchNumber))
            let events = (0..<Int.random(in: 0...20, using: &random)).map { _ in
                Self.randomEvent(&random, now: now)
            }
            let key = Int.random(in: 0..<3, using: &random) == 0 ? "key-\(Int.random(in: 0..<50, using: &random))" : nil
            let batch = EventBatch(id: BatchID(UInt64(batchNumber)), client: "svc", idempotencyKey: key, events: events)
            for action in replica.ingest(batch, now: now) {
                if case .persist(let entry) = action { log.append(entry) }
            }
        }
        var recovered = Self.replica(limits: Limits(operationsPerServiceMax: 20))
        for entry in log {
            // Through the encoding, as the store will keep it.
            recovered.replay(try LogEntry(encoded: entry.encoded()))
        }
        #expect(Self.firstDifference(recovered, replica) == nil)
        #expect(recovered.lastSequence == replica.lastSequence)
        for entry in log where entry.idempotencyKey != nil {
            let retry = EventBatch(id: BatchID(999), client: entry.client, idempotencyKey: entry.idempotencyKey,
                                   events: [Self.event()])
            let actions = recovered.ingest(retry, now: Self.now + .seconds(300))
            // A key's retries were answered without a log entry, so each key has exactly one entry.
            #expect(actions == [.acknowledge(batch: BatchID(999), receipt: entry.receipt, replayed: true)])
        }
    }

    @Test func sameInputsGiveTheSameActionsAndBytes() {
        func run() -> ([Action], [UInt8]) {
            var random = SeededRandom(seed: 77)
            var replica = Self.replica()
            var actions: [Action] = []
            for batchNumber in 0..<50 {
                let now = Self.now + .seconds(Int64(batchNumber))
                let events = (0..<10).map { _ in Self.randomEvent(&random, now: now) }
                actions += replica.ingest(EventBatch(id: BatchID(UInt64(batchNumber)), client: "c", events: events),
                                          now: now)
            }
            return (actions, Self.digest(replica))
        }
        let (actionsA, bytesA) = run()
        let (actionsB, bytesB) = run()
        #expect(actionsA == actionsB)
        #expect(bytesA == bytesB, "digests \(XXH3.hash(bytesA)) and \(XXH3.hash(bytesB)) differ")
    }

    // MARK: - Helpers

    static func randomEvent(_ random: inout SeededRandom, now: Timestamp) -> Event {
        let services = ["checkout", "search", "auth"]
        let statuses: [UInt16] = [200, 200, 200, 201, 304, 404, 500, 503, 700]
        return Event(
            service: services.randomElement(using: &random)!,  // non-empty literal
            operation: "op-\(Int.random(in: 0..<30, using: &random))",
            status: statuses.randomElement(using: &random)!,  // non-empty literal
            latencyMicros: Double.random(in: 100...2_000_000, using: &random),
            user: Bool.random(using: &random) ? "user-\(Int.random(in: 0..<500, using: &random))" : nil,
            timestamp: now - .milliseconds(Int64.random(in: -10_000...7_200_000, using: &random)))
    }

    /// The first time bucket whose aggregate differs between two replicas, or nil when none does.
    static func firstDifference(_ a: Replica, _ b: Replica) -> String? {
        let left = a.buckets
        let right = b.buckets
        for (x, y) in zip(left, right) where x.key != y.key || x.aggregate.encoded() != y.aggregate.encoded() {
            return "\(x.key) differs from \(y.key)"
        }
        return left.count == right.count ? nil : "\(left.count) buckets vs \(right.count)"
    }

    /// Every bucket's key and encoding, in key order: equal digests mean equal states.
    static func digest(_ replica: Replica) -> [UInt8] {
        var bytes: [UInt8] = []
        for (key, aggregate) in replica.buckets {
            bytes += Array("\(key)".utf8)
            bytes += aggregate.encoded()
        }
        return bytes
    }
}
