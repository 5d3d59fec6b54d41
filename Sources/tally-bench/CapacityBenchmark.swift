import ArgumentParser
import Foundation
import TallyAggregates
import TallyReplica
import TallyWorkload

/// `tally-bench capacity`: the per-unit figures `docs/capacity.md` sizes regions and fleets from.
/// Memory and disk per time bucket at each resolution (so per series over the retention), log bytes
/// per event, and replication bytes per event between two replicas gossiping at the node's
/// default interval.
struct CapacityBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capacity",
        abstract: "Memory and disk per series and time bucket, log and replication bytes per event.")

    @Option(help: "Series sampled (each busy every minute of two days of event time).")
    var series = 10
    @Option(help: "Events per series per minute.")
    var perMinute = 60
    @Option(help: "Distinct users (Zipf), as the load generator's workload.")
    var users = 10_000
    @Option(help: "Events per second into one replica for the replication figure.")
    var rate = 100_000
    @Option(help: "Seconds of traffic for the replication figure.")
    var seconds = 10
    @Option(help: "Series the replication traffic spreads over (services x operations x status classes).")
    var wireServices = 5
    @Option var wireOperations = 10

    func validate() throws {
        guard (1...1_000).contains(self.series), (1...10_000).contains(self.perMinute),
              (1...1_000_000).contains(self.users), (1_000...10_000_000).contains(self.rate),
              (1...600).contains(self.seconds), (1...100).contains(self.wireServices),
              (1...100).contains(self.wireOperations)
        else { throw ValidationError("an option is outside its range (see --help)") }
    }

    func run() throws {
        let buckets = self.bucketFigures()
        let wire = self.replicationFigures()
        let retention = Retention()
        func perSeries(_ perBucket: (Resolution) -> Int) -> Int {
            Resolution.allCases.reduce(0) { total, resolution in
                total + Int(retention[resolution] / resolution.width) * perBucket(resolution)
            }
        }
        print("tally-bench capacity: \(self.series) series x \(self.perMinute) events/min over 2 days of event time, "
              + "\(self.users) Zipf users; replication: \(self.rate) events/s for \(self.seconds) s over "
              + "\(self.wireServices * self.wireOperations) operations, gossip every 250 ms")
        var rows: [[String]] = []
        for resolution in Resolution.allCases {
            let figure = buckets[resolution]!
            rows.append(["time bucket (\(resolution)), memory / disk, median bytes", "\(figure.memory) / \(figure.disk)",
                         "\(figure.count) buckets, \(figure.events) events each"])
        }
        rows.append(["a series busy every minute over the default retention (48 h of minutes, 90 d of hours, 5 y of days), memory",
                     format(Double(perSeries { buckets[$0]!.memory }) / 1_048_576, digits: 1) + " MiB", ""])
        rows.append(["... the same on disk (encoded aggregates, before SQLite's own overhead)",
                     format(Double(perSeries { buckets[$0]!.disk }) / 1_048_576, digits: 1) + " MiB", ""])
        rows.append(["... of which the 48 h of minute buckets (memory)",
                     format(Double(Int(retention.minute / Resolution.minute.width) * buckets[.minute]!.memory) / 1_048_576,
                            digits: 1) + " MiB", ""])
        rows.append(["log entry bytes per event (batches of 1,000)", format(wire.logBytesPerEvent, digits: 1), ""])
        rows.append(["replication bytes per event, origin to peer / peer to origin",
                     format(wire.forward, digits: 2) + " / " + format(wire.backward, digits: 2),
                     "converged: \(wire.converged)"])
        print(table(["figure", "value", "note"], rows))
    }

    struct BucketFigure {
        var memory: Int
        var disk: Int
        var count: Int
        var events: Int
    }

    /// Two days of events, `perMinute` per series per minute, settled by a tick: the median bucket
    /// of each resolution, in memory (`estimatedBytes` and its slot) and encoded (what a checkpoint
    /// writes as the bucket row's blob).
    func bucketFigures() -> [Resolution: BucketFigure] {
        let start = Timestamp(millisecondsSinceEpoch: 1_795_910_400_000)  // a midnight, UTC
        let minutes = 2 * 1_440
        let now = start + .seconds(Int64(minutes) * 60)
        var replica = Replica(config: ReplicaConfig(id: ReplicaID(region: "capacity", node: "a", incarnation: 1)))
        var random = SeededRandom(seed: 5)
        let workload = Workload(services: 1, operations: 1, users: self.users)
        let userNames = (0..<self.users).map { "user-\($0)" }
        var batch: [Event] = []
        var batchNumber: UInt64 = 0
        for minute in 0..<minutes {
            for index in 0..<self.perMinute {
                for series in 0..<self.series {
                    let request = workload.request(using: &random)
                    let at = start + .milliseconds(Int64(minute) * 60_000 + Int64(index) * 60_000 / Int64(self.perMinute))
                    batch.append(request.event(users: userNames, at: at, service: "svc", operation: "op-\(series)",
                                               status: 200))
                    if batch.count == 1_000 {
                        batchNumber += 1
                        _ = replica.ingest(EventBatch(id: BatchID(batchNumber), client: "bench", events: batch), now: now)
                        batch.removeAll(keepingCapacity: true)
                    }
                }
            }
        }
        if !batch.isEmpty {
            _ = replica.ingest(EventBatch(id: BatchID(batchNumber + 1), client: "bench", events: batch), now: now)
        }
        _ = replica.tick(now: now)  // settles every bucket whose time is over
        let slot = MemoryLayout<Int64>.stride + MemoryLayout<BucketAggregate>.stride - MemoryLayout<BucketAggregate>.size
        var figures: [Resolution: BucketFigure] = [:]
        for resolution in Resolution.allCases {
            let held = replica.buckets.filter { $0.key.resolution == resolution }
            let memory = held.map { $0.aggregate.estimatedBytes + slot }.sorted()
            let disk = held.map { bucket in
                var writer = ByteWriter()
                bucket.aggregate.encode(to: &writer)
                return writer.bytes.count
            }.sorted()
            let events = self.perMinute * Int(resolution.width / Resolution.minute.width)
            figures[resolution] = BucketFigure(memory: memory[memory.count / 2], disk: disk[disk.count / 2],
                                               count: held.count, events: events)
        }
        return figures
    }

    /// Replica A takes `rate` events/s in batches of 1,000 and gossips with B every 250 ms (the
    /// node's default), messages delivered at once: the bytes each way per event A accepted, and
    /// the log entries' encoded bytes per event.
    func replicationFigures() -> (forward: Double, backward: Double, logBytesPerEvent: Double, converged: Bool) {
        let round = Duration.milliseconds(250)
        func config(_ node: String, peer: String) -> ReplicaConfig {
            ReplicaConfig(id: ReplicaID(region: node, node: "n1", incarnation: 1), tickInterval: round, peers: [peer],
                          gossipInterval: round, seed: 3)
        }
        var replicas = ["a": Replica(config: config("a", peer: "b")), "b": Replica(config: config("b", peer: "a"))]
        var random = SeededRandom(seed: 9)
        let workload = Workload(services: self.wireServices, operations: self.wireOperations, users: self.users)
        let userNames = (0..<self.users).map { "user-\($0)" }
        var bytes = ["a": 0, "b": 0]  // sent by each
        var logBytes = 0
        var accepted = 0
        var now = Timestamp(millisecondsSinceEpoch: 1_795_953_600_000)
        var batchNumber: UInt64 = 0
        let perRound = self.rate / 4
        /// Carries out a replica's actions: makes log entries durable at once and delivers sends.
        func carry(_ actions: [Action], of name: String) {
            var pending: [(to: String, bytes: [UInt8], from: String)] = []
            func handle(_ actions: [Action], of name: String) {
                for action in actions {
                    switch action {
                    case .persist(let entry):
                        var writer = ByteWriter()
                        entry.encode(to: &writer)
                        logBytes += writer.bytes.count
                        replicas[name]!.durable(through: entry.sequence)
                    case .send(let message, let peer):
                        bytes[name]! += message.count
                        pending.append((peer, message, name))
                    case .acknowledge(_, let receipt, _):
                        accepted += receipt.accepted
                    default:
                        break
                    }
                }
            }
            handle(actions, of: name)
            while !pending.isEmpty {
                let message = pending.removeFirst()
                handle(replicas[message.to]!.receive(message.bytes, from: message.from, now: now), of: message.to)
            }
        }
        for _ in 0..<(self.seconds * 4) {
            var events: [Event] = []
            events.reserveCapacity(1_000)
            for index in 0..<perRound {
                let request = workload.request(using: &random)
                events.append(request.event(users: userNames,
                                            at: now + .milliseconds(Int64(index) * 250 / Int64(perRound))))
                if events.count == 1_000 || index == perRound - 1 {
                    batchNumber += 1
                    carry(replicas["a"]!.ingest(EventBatch(id: BatchID(batchNumber), client: "bench", events: events),
                                                now: now + .milliseconds(250)), of: "a")
                    events.removeAll(keepingCapacity: true)
                }
            }
            now = now + round
            carry(replicas["a"]!.tick(now: now), of: "a")
            carry(replicas["b"]!.tick(now: now), of: "b")
        }
        // A few more rounds without traffic, so the last changes arrive.
        for _ in 0..<8 {
            now = now + round
            carry(replicas["a"]!.tick(now: now), of: "a")
            carry(replicas["b"]!.tick(now: now), of: "b")
        }
        let converged = replicas["a"]!.totalRequests(at: .minute) == replicas["b"]!.totalRequests(at: .minute)
            && replicas["b"]!.totalRequests(at: .minute) == UInt64(accepted)
        let events = Double(max(accepted, 1))
        return (Double(bytes["a"]!) / events, Double(bytes["b"]!) / events, Double(logBytes) / events, converged)
    }
}
