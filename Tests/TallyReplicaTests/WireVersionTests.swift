import Testing
import TallyAggregates
@testable import TallyReplica

/// The replication wire versions: every message means the same at either version, a reader takes
/// only the versions its release speaks, and version 2's bucket numbers cannot trap or misalign.
@Suite struct WireVersionTests {
    /// Messages of every kind a replica makes, from a seeded cluster's traffic.
    static func messages(seed: UInt64) -> [ReplicationMessage] {
        var cluster = ReplicationTests.Cluster(size: 3, seed: seed)
        var messages: [ReplicationMessage] = []
        for round in 0..<6 {
            cluster.ingest(at: round % 3, events: 1 + Int(seed % 40))
            cluster.now = cluster.now + .seconds(1)
            for replica in 0..<3 { cluster.tick(replica) }
            while !cluster.network.inFlight.isEmpty {
                let message = cluster.network.inFlight.removeFirst()
                messages.append(try! ReplicationMessage(encoded: message.bytes))  // the replica's own encoding
                // Region 2 never hears region 0 directly: it needs relays and, later, transfers.
                if message.from == 0 && message.to == 2 { continue }
                cluster.send(cluster.replicas[message.to].receive(message.bytes, from: cluster.names[message.from],
                                                                  now: cluster.now), from: message.to)
            }
        }
        let origin = cluster.replicas[0].config.id
        messages.append(.stateChunk(cluster.replicas[1].stateChunk(of: origin, from: nil, budget: 1 << 20,
                                                                   now: cluster.now).chunk))
        return messages
    }

    @Test(arguments: 1...6 as ClosedRange<UInt64>)
    func everyMessageMeansTheSameAtEitherVersion(seed: UInt64) throws {
        let messages = Self.messages(seed: seed)
        #expect(messages.contains { if case .deltas = $0 { true } else { false } })
        #expect(messages.contains { if case .stateChunk = $0 { true } else { false } })
        for message in messages {
            let v1 = message.encoded(protocolVersion: 1)
            let v2 = message.encoded(protocolVersion: 2)
            let v3 = message.encoded(protocolVersion: 3)
            #expect(v1[1] == 1 && v2[1] == 2 && v3[1] == 3)
            #expect(try ReplicationMessage(encoded: v1) == message)
            #expect(try ReplicationMessage(encoded: v2) == message)
            #expect(try ReplicationMessage(encoded: v3) == message)
            // Version 3 changes what a receiver takes, not the encoding.
            #expect(v3.dropFirst(2) == v2.dropFirst(2))
            #expect(throws: DecodeError.unsupportedVersion(type: "ReplicationMessage", version: 3)) {
                try ReplicationMessage(encoded: v3, versions: 1...2)
            }
            // Bucket numbers are never longer than milliseconds.
            #expect(v2.count <= v1.count)
            // An older release takes version 1 and refuses 2, naming it.
            #expect(try ReplicationMessage(encoded: v1, versions: 1...1) == message)
            #expect(throws: DecodeError.unsupportedVersion(type: "ReplicationMessage", version: 2)) {
                try ReplicationMessage(encoded: v2, versions: 1...1)
            }
        }
    }

    @Test func aBufferedBatchIsReencodedForAPeerOnTheOtherVersion() throws {
        let messages = Self.messages(seed: 3)
        for case .deltas(let batches) in messages {
            for batch in batches {
                for (from, to) in [(UInt8(1), UInt8(2)), (2, 1), (1, 1), (2, 2), (3, 1), (1, 3), (2, 3), (3, 3)] {
                    let buffered = StoredBatch(version: batch.version, previous: batch.previous, wire: from,
                                               bytes: batch.encoded(wireVersion: from))
                    let bytes = try #require(buffered.bytes(at: to))
                    #expect(bytes == batch.encoded(wireVersion: to))
                    #expect(try DeltaBatch(encoded: bytes[...], wireVersion: to) == batch)
                }
            }
        }
    }

    @Test func aReplicaOnTheOlderReleaseCountsAVersion2MessageAndKeepsGoing() {
        var config = ReplicaConfig(id: ReplicaID(region: "eu-west", node: "n1", incarnation: 1), peers: ["us-east"])
        config.wireVersions = 1...1
        var old = Replica(config: config)
        let digest = ReplicationMessage.digest(Digest(entries: [], transfers: [], reply: true))
        #expect(old.receive(digest.encoded(protocolVersion: 2), from: "us-east", now: ReplicationTests.start).isEmpty)
        #expect(old.refusedMessages == 1)
        // Version 1 it answers; and it never sends above its release, whatever it is told.
        old.setWireVersion(2, for: "us-east")
        #expect(old.wireVersion(for: "us-east") == 1)
        _ = old.receive(digest.encoded(protocolVersion: 1), from: "us-east", now: ReplicationTests.start)
        #expect(old.refusedMessages == 1)
    }

    /// Version 2 writes a bucket's number; a hostile number must not overflow the multiplication,
    /// land outside the timestamp range, or anywhere but a bucket boundary.
    @Test(arguments: [Int64.max, Int64.min, Int64.max / 60_000, 1 << 50, -(1 << 50)])
    func aHostileBucketNumberIsRefusedNamingTheKey(number: Int64) {
        var body = ByteWriter()
        body.writeUInt8(0x20)
        body.writeUInt8(2)
        body.writeUInt8(2)  // state chunk
        body.writeVarint(2)
        body.writeString("svc")
        body.writeString("op")
        body.writeUInt64LE(7)  // origin
        body.writeVarint(1)  // asOf
        body.writeZigZag(1_795_910_400_000)  // asOfTime
        body.writeUInt8(1)  // from: a key
        body.writeVarint(0)
        body.writeVarint(1)
        body.writeUInt8(2)  // status class
        body.writeUInt8(0)  // resolution: minute
        body.writeZigZag(number)
        body.writeUInt8(0)  // next: none
        body.writeVarint(0)  // no buckets
        #expect(throws: DecodeError.self) { try ReplicationMessage(encoded: body.bytes) }
        do {
            _ = try ReplicationMessage(encoded: body.bytes)
        } catch {
            #expect("\(error)".contains("BucketKey start"), "\(error)")
        }
    }
}

/// What an older build wrote to its disk still reads: a version-1 log entry and receipt (before
/// duplicates and span fingerprints) decode to the same entry with none of either.
@Suite struct StoredVersionTests {
    @Test func aVersionOneLogEntryAndReceiptStillDecode() throws {
        let event = Event(service: "checkout", operation: "GET /cart", status: 200, latencyMicros: 1_500,
                          user: "u1", timestamp: Timestamp(millisecondsSinceEpoch: 1_795_946_400_000))
        let receipt = IngestReceipt(accepted: 1, rejected: [], sequence: 3)
        let entry = LogEntry(sequence: 3, acceptedAt: Timestamp(millisecondsSinceEpoch: 1_795_946_401_000),
                             client: "c", idempotencyKey: "k", events: [event], receipt: receipt)
        let current = entry.encoded()
        #expect(current[1] == 2)
        // Version 1's body is version 2's without the trailing duplicates (0), fingerprint count (0),
        // measurement count (0) and stream count (0).
        var v1 = Array(current.dropLast(4))
        v1[1] = 1
        #expect(try LogEntry(encoded: v1) == entry)
        var receiptV1 = Array(receipt.encoded().dropLast(1))
        receiptV1[1] = 1
        #expect(try IngestReceipt(encoded: receiptV1) == receipt)
        // Version 2 round-trips its new fields; a version from the future is refused by name.
        var spans = entry
        spans.events.append(event)
        spans.fingerprints = [42, 7]
        spans.receipt.duplicates = 2
        spans.measurements = [RequestCounts(service: "checkout", operation: "requests", status: 503,
                                          timestamp: event.timestamp, requests: 12, users: [UserID("u1"), UserID("u2")],
                                          latency: try LatencyBuckets(scale: 7, zeroCount: 1, buckets: [.init(index: -3, count: 4),
                                                                      .init(index: 900, count: 7)], sum: 1e6, minimum: 0, maximum: 9e5))]
        spans.measurementsAfter = [1]
        #expect(try LogEntry(encoded: spans.encoded()) == spans)
        var future = current
        future[1] = 3
        #expect(throws: DecodeError.self) { try LogEntry(encoded: future) }
    }
}
