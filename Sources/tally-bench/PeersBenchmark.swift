import ArgumentParser
import Foundation
import Histogram
import TallyAggregates
import TallyNode
import TallyReplica
import TallyWorkload

/// `tally-bench peers`: one workload, in one run, into Tally and into what a team would pick
/// instead on this machine: Redis 7 doing the equivalent per-event work, pipelined, with and
/// without an fsync per write; and hdrhistogram-swift against the latency sketch in process.
///
/// What each side computes differs, and the table says so: Redis keeps one aggregate per key and
/// merges nothing (its counters cannot be replicated by joining, its HyperLogLog is the only
/// mergeable part), while Tally keeps per-origin CRDTs that every region can join.
struct PeersBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peers", abstract: "The same workload into Tally, Redis (pipelined, with and without fsync) and hdrhistogram.")

    @Option(help: "Events per run.")
    var events = 500_000
    @Option(help: "Timed runs of each system (the median is reported).")
    var runs = 3
    @Option(help: "Events per batch: a Tally batch, a Redis pipeline.")
    var batch = 1_000
    @Option(help: "Simulated seconds the events are spread over.")
    var seconds = 600

    func run() async throws {
        let workload = BenchmarkWorkload(events: self.events, seconds: self.seconds)
        let (requests, times, now) = (workload.requests, workload.times, workload.now)
        // Tally: decoded events, as the HTTP layer hands them to the replica.
        let tallyBatches = workload.batches(of: self.batch, users: 10_000)
        let config = ReplicaConfig(id: ReplicaID(region: "bench", node: "a", incarnation: 1))
        var inMemory: [Double] = []
        var durable: [Double] = []
        for run in 0..<self.runs {
            inMemory.append(Self.rate(self.events) {
                var replica = Replica(config: config)
                for batch in tallyBatches { blackHole(replica.ingest(batch, now: now)) }
            })
            let directory = NSTemporaryDirectory() + "tally-bench-peers-\(getpid())-\(run)"
            try? FileManager.default.removeItem(atPath: directory)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let store = try EventStore(directory: directory)
            var replica = Replica(config: config)
            let began = ContinuousClock.now
            for batch in tallyBatches {
                for case .persist(let entry) in replica.ingest(batch, now: now) {
                    try await store.append(entry)
                    try await store.waitDurable(through: entry.sequence)
                }
            }
            durable.append(Double(self.events) / inSeconds(ContinuousClock.now - began))
        }

        // Redis: the same events as pipelines of RESP commands, encoded before the clock starts.
        let pipelines = stride(from: 0, to: self.events, by: self.batch).map { offset in
            var writer = RESPWriter()
            for index in offset..<min(offset + self.batch, self.events) {
                Self.redisCommands(for: requests[index], at: times[index], into: &writer)
            }
            return writer
        }
        let commands = pipelines.reduce(0) { $0 + $1.commands }
        var redis: [Double] = []
        var redisDurable: [Double] = []
        for fsyncAlways in [false, true] {
            for _ in 0..<self.runs {
                let server = try RedisServer(fsyncAlways: fsyncAlways)
                defer { server.stop() }
                let connection = try RedisConnection(port: server.port)
                let began = ContinuousClock.now
                for pipeline in pipelines { try connection.exchange(pipeline.bytes, replies: pipeline.commands) }
                let rate = Double(self.events) / inSeconds(ContinuousClock.now - began)
                if fsyncAlways { redisDurable.append(rate) } else { redis.append(rate) }
            }
        }

        // In process: the sketch's record against hdrhistogram-swift's, alternating runs.
        let harness = Harness(runs: max(self.runs, 3))
        let latencies = requests.map { Double($0.latencyMicros) }
        let record = AggregatesBenchmark.compareRecord(harness: harness, latencies: latencies,
                                                       operations: min(self.events * 4, 4_000_000))

        let tally = median(inMemory)
        let tallyDurable = median(durable)
        print("tally-bench peers: \(self.events) events (5 services x 10 operations, 10,000 Zipf users, "
              + "\(self.seconds) s of event time), \(self.batch) per batch or pipeline, median of \(self.runs) runs")
        print(table(["system", "events/s", "Tally / it"], [
            ["Tally replica, in process, one core", format(tally, digits: 0), ""],
            ["Redis 7, persistence off, one pipelining client", format(median(redis), digits: 0),
             format(tally / median(redis), digits: 2)],
            ["Tally replica + log, SQLite synchronous=FULL, a commit per batch", format(tallyDurable, digits: 0), ""],
            ["Redis 7, appendonly yes, appendfsync always", format(median(redisDurable), digits: 0),
             format(tallyDurable / median(redisDurable), digits: 2)],
        ]))
        print()
        if let record {
            print(table(["in process, per value", "ns", "ratio"], [
                ["Tally latency sketch record", format(record.a.nanosMedian, digits: 2),
                 format(record.ratio, digits: 2) + (record.ratio <= 1 ? " ok (<= 1)" : " MISSED (<= 1)")],
                ["hdrhistogram-swift record (3 significant digits)", format(record.b.nanosMedian, digits: 2), ""],
            ]))
            print()
        }
        print("""
            What each side computes per event:
              Tally: request and error G-counters, a latency sketch (0.55% relative error on every quantile) and a
                HyperLogLog of users, in each of the minute, hour and day buckets of the event's series: per-origin
                CRDTs any region can join; the durable row also logs the event for exactly-once replay.
              Redis: \(format(Double(commands) / Double(self.events), digits: 2)) commands (\(commands) in all): INCR of a request counter per resolution (and of an error
                counter per resolution for a 5xx), HINCRBY of the event's latency bucket in the minute's hash, PFADD
                of the user to the minute's HyperLogLog. One aggregate per key, merged with nothing; the commands
                are encoded before the clock starts, the server parses them (the client and server share the
                machine's two cores with nothing else of the benchmark running).
            """)
    }

    /// The Redis commands equivalent to counting one event.
    static func redisCommands(for request: Workload.Request, at time: Timestamp, into writer: inout RESPWriter) {
        let millis = time.millisecondsSinceEpoch
        let series = Array("\(request.service):\(request.operation):\(request.status / 100)".utf8)
        let resolutions: [(String, Int64)] = [("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        for (name, width) in resolutions {
            let key = Array("\(name):\(millis / width):".utf8) + series
            writer.command("INCR", key + Array(":r".utf8))
            if request.status >= 500 { writer.command("INCR", key + Array(":e".utf8)) }
        }
        let minute = Array("m:\(millis / 60_000):".utf8) + series
        let bucket = ExponentialBuckets.index(of: Double(request.latencyMicros), scale: LatencySketch.defaultScale)
        writer.command("HINCRBY", minute + Array(":l".utf8), Array("\(bucket)".utf8), Array("1".utf8))
        writer.command("PFADD", minute + Array(":u".utf8), Array("user-\(request.user)".utf8))
    }

    static func rate(_ events: Int, _ body: () -> Void) -> Double {
        let began = ContinuousClock.now
        body()
        return Double(events) / inSeconds(ContinuousClock.now - began)
    }
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? .nan : sorted[sorted.count / 2]
}
