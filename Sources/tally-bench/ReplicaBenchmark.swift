import ArgumentParser
import Foundation
import MallocInterposerSwift
import TallyAggregates
import TallyReplica
import TallyWorkload

/// `tally-bench replica`: decoded events into all three resolutions, on one core, and the memory
/// held per series-bucket, on the load generator's workload.
struct ReplicaBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replica", abstract: "Replica ingest: events/s into every resolution, bytes per time bucket.")

    @Option(help: "Events to ingest per run.")
    var events = 1_000_000
    @Option(help: "Timed runs (the median is reported).")
    var runs = 5
    @Option(help: "Events per batch.")
    var batch = 1_000
    @Option(help: "Services, operations per service, users: the load generator's defaults.")
    var services = 5
    @Option var operations = 10
    @Option var users = 10_000
    @Option(help: "Simulated seconds the events are spread over (sets how many minute buckets they touch).")
    var seconds = 600

    func run() throws {
        let workload = BenchmarkWorkload(events: self.events, seconds: self.seconds, services: self.services,
                                         operations: self.operations, users: self.users)
        let now = workload.now
        let batches = workload.batches(of: self.batch, users: self.users)
        let config = ReplicaConfig(id: ReplicaID(region: "bench", node: "a", incarnation: 1))
        var samples: [Double] = []
        var replica = Replica(config: config)
        for _ in 0..<self.runs {
            replica = Replica(config: config)
            let began = ContinuousClock.now
            for batch in batches { blackHole(replica.ingest(batch, now: now)) }
            samples.append(Double(self.events) / inSeconds(ContinuousClock.now - began))
        }
        samples.sort()
        let unsettled = replica.bucketBytes
        // As a running node does every second: expire, and settle the buckets whose time is over.
        _ = replica.tick(now: now)
        let sizes = replica.bucketBytes
        print("tally-bench replica: \(self.events) events in batches of \(self.batch), \(self.services) services x "
              + "\(self.operations) operations, \(self.users) Zipf users, over \(self.seconds) s of event time")
        print(table(["figure", "value", "target"], [
            ["ingest, events/s, one core (median of \(self.runs))", format(samples[samples.count / 2], digits: 0),
             samples[samples.count / 2] >= 3_000_000 ? "ok (>= 3,000,000)" : "MISSED (>= 3,000,000)"],
            ["ingest, events/s, best run", format(samples.last ?? 0, digits: 0), ""],
            ["series", "\(replica.seriesCount)", ""],
            ["time buckets (1m + 1h + 1d)", "\(sizes.count)", ""],
            ["bytes per time bucket, median", "\(sizes[sizes.count / 2])",
             sizes[sizes.count / 2] <= 2_048 ? "ok (<= 2,048)" : "MISSED (<= 2,048)"],
            ["bytes per time bucket, p90 / max", "\(sizes[sizes.count * 9 / 10]) / \(sizes.last ?? 0)", ""],
            ["bytes per time bucket, median, before tick settles closed buckets", "\(unsettled[unsettled.count / 2])", ""],
        ]))
    }
}
