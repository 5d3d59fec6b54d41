// libFuzzer target over the inputs a region takes from outside: request bodies through the event
// parser (and OTLP trace bodies and StatsD datagrams) and into the replica's ingest, and peer bytes through the wire decoders and into the
// replica's receive and read paths. Built and run by Tests/fuzz/run.sh (swiftc -sanitize=fuzzer);
// not part of the package, so `swift build` never sees it.
import TallyAggregates
import TallyReplica

let now = Timestamp(millisecondsSinceEpoch: 1_795_946_400_000)
nonisolated(unsafe) var replica = Replica(config: ReplicaConfig(
    id: ReplicaID(region: "a", node: "n1", incarnation: 1), peers: ["b", "c"]))
nonisolated(unsafe) var batches: UInt64 = 0
let traceDecoder = TraceDecoder(limits: .init(spansMax: 1_000))

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let selector = data[0]
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch selector % 8 {
    case 0, 1:
        // A request body, then the batch the node would build from it.
        guard let items = try? EventParser.parse(bytes, format: selector % 2 == 0 ? .jsonArray : .ndjson,
                                                 itemsMax: 1_000, stringBytesMax: 1_024)
        else { return 0 }
        batches &+= 1
        _ = replica.ingest(EventBatch(id: BatchID(batches), client: "fuzz", items: items), now: now)
        replica.durable(through: replica.lastSequence)
    case 2:
        // A replication message from a peer.
        _ = replica.receive(bytes, from: "b", now: now)
    case 3:
        if let request = try? ReadRequest(encoded: bytes) {
            _ = replica.answer(request, bytesMax: 1 << 20)
        }
        if let answer = try? ReadAnswer(encoded: bytes) {
            _ = try? replica.query(Query(service: "s", from: now - .seconds(3_600), to: now, metrics: [.count]),
                                   now: now, joining: [answer])
        }
    case 4:
        // A log entry from a damaged disk: decode, and replay it into a fresh replica.
        if let entry = try? LogEntry(encoded: bytes), entry.sequence > 0 {
            var fresh = Replica(config: ReplicaConfig(id: ReplicaID(region: "a", node: "n1", incarnation: 1)))
            fresh.replay(entry)
            _ = fresh.tick(now: now)
        }
    case 6:
        // An OTLP/HTTP trace export body: decoded in place, then ingested with its span fingerprints.
        guard let decoded = try? traceDecoder.decode(bytes) else { return 0 }
        batches &+= 1
        _ = replica.ingest(EventBatch(id: BatchID(batches), client: "otlp", items: decoded.items,
                                      fingerprints: decoded.fingerprints), now: now)
        replica.durable(through: replica.lastSequence)
    case 7:
        // A StatsD datagram: lines mapped to events and counts, then ingested.
        var mapped = StatsDMapping.Mapped()
        StatsDMapping().map(bytes, now: now, into: &mapped)
        batches &+= 1
        _ = replica.ingest(EventBatch(id: BatchID(batches), client: "statsd", items: mapped.items), now: now)
        replica.durable(through: replica.lastSequence)
    default:
        _ = replica.tick(now: now + .milliseconds(Int64(bytes.count)))
    }
    return 0
}
