import Testing
import TallyAggregates
@testable import TallyReplica

/// Global reads: a region joins its peers' answers into a copy of its state and queries that.
/// Because the join is the replication merge, the answer must equal what the region answers
/// once replication has converged, whatever was replicated before.
@Suite struct GlobalReadTests {
    static let metrics: [Metric] = [.count, .errors, .quantile(0.99), .max, .mean, .uniqueUsers]

    func query(at now: Timestamp, step: Duration? = nil, operation: String? = nil) -> Query {
        Query(service: "svc-1", operation: operation, from: now - .seconds(7_200), to: now, step: step,
              groupBy: [.operation], metrics: Self.metrics)
    }

    /// Replica 0 asks the others (through the wire encodings) and joins their answers.
    func globalRead(_ cluster: ReplicationTests.Cluster, _ query: Query) throws -> QueryResult {
        let request = try cluster.replicas[0].readRequest(for: query, id: 7, now: cluster.now)
        let decoded = try ReadRequest(encoded: request.encoded())
        #expect(decoded == request)
        let answers = try cluster.replicas.dropFirst().map { replica in
            try ReadAnswer(encoded: replica.answer(decoded, bytesMax: 1 << 20).encoded())
        }
        return try cluster.replicas[0].query(query, now: cluster.now, joining: answers)
    }

    @Test(arguments: 1...8 as ClosedRange<UInt64>)
    func aGlobalReadBeforeConvergenceEqualsTheConvergedAnswer(seed: UInt64) throws {
        var cluster = ReplicationTests.Cluster(size: 3, seed: seed)
        for round in 0..<6 {
            for replica in 0..<3 { cluster.ingest(at: replica, events: 40 + round) }
            // Half the messages lost: every replica is partly behind the others.
            cluster.round(loss: 0.5)
        }
        for replica in 0..<3 { cluster.ingest(at: replica, events: 25) }  // and some never gossiped
        let queries = [self.query(at: cluster.now), self.query(at: cluster.now, step: .seconds(600)),
                       self.query(at: cluster.now, operation: "op-2")]
        let global = try queries.map { try self.globalRead(cluster, $0) }
        let local = try queries.map { try cluster.replicas[0].query($0, now: cluster.now) }
        #expect(global != local, "replica 0 was already current: the test shows nothing")
        let before = cluster.replicas[0].buckets.map { $0.aggregate.encoded() }
        #expect(before == cluster.replicas[0].buckets.map { $0.aggregate.encoded() })  // the read changed nothing
        while !cluster.converged { cluster.round(loss: 0) }
        for (query, answer) in zip(queries, global) {
            #expect(try cluster.replicas[0].query(query, now: cluster.now) == answer)
        }
    }

    @Test func answersShipOnlyThePartsTheMetricsNeedAndRefuseWhatDoesNotFit() throws {
        var cluster = ReplicationTests.Cluster(size: 2, seed: 3)
        cluster.ingest(at: 1, events: 200)
        let countsOnly = Query(service: "svc-1", from: cluster.now - .seconds(7_200), to: cluster.now, metrics: [.count])
        let request = try cluster.replicas[0].readRequest(for: countsOnly, id: 1, now: cluster.now)
        #expect(!request.latency && !request.users)
        let answer = cluster.replicas[1].answer(request, bytesMax: 1 << 20)
        #expect(answer.outcome == .buckets && !answer.buckets.isEmpty)
        #expect(answer.buckets.allSatisfy { $0.aggregate.latency.isEmpty && $0.aggregate.users.isEmpty })
        #expect(answer.buckets.allSatisfy { $0.aggregate.requests.value > 0 })
        let full = try cluster.replicas[0].readRequest(
            for: self.query(at: cluster.now), id: 2, now: cluster.now)
        #expect(full.latency && full.users)
        let tooLarge = cluster.replicas[1].answer(full, bytesMax: 100)
        #expect(tooLarge.outcome == .tooLarge && tooLarge.buckets.isEmpty)
        #expect(try ReadAnswer(encoded: tooLarge.encoded()) == tooLarge)
    }

    @Test(arguments: 1...20 as ClosedRange<UInt64>)
    func truncatedOrCorruptedReadFramesThrowAndNeverTrap(seed: UInt64) throws {
        var cluster = ReplicationTests.Cluster(size: 2, seed: seed)
        cluster.ingest(at: 1, events: 30)
        let request = try cluster.replicas[0].readRequest(for: self.query(at: cluster.now), id: seed, now: cluster.now)
        let answer = cluster.replicas[1].answer(request, bytesMax: 1 << 20)
        var random = SeededRandom(seed: seed)
        for bytes in [request.encoded(), answer.encoded()] {
            for cut in 0..<bytes.count {
                let prefix = Array(bytes.prefix(cut))
                #expect(throws: DecodeError.self) { try ReadRequest(encoded: prefix) }
                #expect(throws: DecodeError.self) { try ReadAnswer(encoded: prefix) }
            }
            // Flipped bytes decode to something or throw; they never trap.
            for _ in 0..<50 {
                var corrupted = bytes
                corrupted[Int(random.next() % UInt64(bytes.count))] ^= UInt8(1 + random.next() % 255)
                _ = try? ReadRequest(encoded: corrupted)
                _ = try? ReadAnswer(encoded: corrupted)
            }
        }
    }
}
