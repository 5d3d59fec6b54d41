import ArgumentParser
import Foundation
import TallyAggregates
import TallyReplica
import TallySLO
import TallyWorkload

/// `tally-bench slo`: 100 SLOs with 30-day windows evaluated on a replica of 10,000 series that
/// hold 30 days of traffic: the time per SLO of the scheduled evaluation (`SLOSpec.evaluate`:
/// the window, six burn-rate windows, the rules) and of a report (the same and its breakdown:
/// steps, operations, regions, calendar history).
struct SLOBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slo", abstract: "SLO evaluation: ms per SLO over 30-day windows on 10,000 series.")

    @Option(help: "Services (each with its SLO).")
    var services = 100
    @Option(help: "Operations per service (x 5 status classes: the series per service).")
    var operations = 20
    @Option(help: "Days of traffic the series hold.")
    var days = 30
    @Option(help: "Hours between two events of a series (1: every hour bucket of the window holds data).")
    var everyHours = 2
    @Option(help: "Timed runs (the median is reported).")
    var runs = 3

    func run() throws {
        let now = Timestamp(millisecondsSinceEpoch: 1_795_953_600_000)
        var replica = Replica(config: ReplicaConfig(id: ReplicaID(region: "bench", node: "a", incarnation: 1)))
        var random = SeededRandom(seed: 5)
        let statuses: [UInt16] = [200, 301, 404, 503, 102]
        var events = 0
        var batch: [Event] = []
        var id: UInt64 = 0
        let began = ContinuousClock.now
        // Oldest first, an event per series every `everyHours`: every series has traffic through the window.
        for hour in stride(from: self.days * 24, to: 0, by: -self.everyHours) {
            let at = now - .seconds(Int64(hour) * 3_600) + .seconds(Int64(random.next() % 3_000))
            for service in 0..<self.services {
                for operation in 0..<self.operations {
                    for status in statuses {
                        batch.append(Event(service: "svc-\(service)", operation: "op-\(operation)", status: status,
                                           latencyMicros: Double(5_000 + random.next() % 400_000), user: nil,
                                           timestamp: at))
                    }
                }
            }
            id += 1
            events += batch.count
            _ = replica.ingest(EventBatch(id: BatchID(id), client: "bench", events: batch), now: now)
            batch.removeAll(keepingCapacity: true)
        }
        _ = replica.tick(now: now)
        let loaded = ContinuousClock.now - began
        print("replica: \(replica.seriesCount) series, \(replica.bucketCount) time buckets, \(events) events over "
            + "\(self.days) days (loaded in \(format(inSeconds(loaded))) s)")

        let specs = try (0..<self.services).map { try Self.spec($0, operations: self.operations) }
        let kinds = Dictionary(grouping: specs, by: Self.kind).mapValues(\.count)
        print("SLOs: \(specs.count) (" + kinds.keys.sorted().map { "\(kinds[$0]!) \($0)" }.joined(separator: ", ") + ")")
        var evaluation: [Double] = []
        var report: [Double] = []
        for _ in 0..<self.runs {
            let started = ContinuousClock.now
            for spec in specs { blackHole(try spec.evaluate(on: replica, now: now)) }
            evaluation.append(inSeconds(ContinuousClock.now - started) * 1_000 / Double(specs.count))
            let reported = ContinuousClock.now
            for spec in specs {
                blackHole(try spec.evaluate(on: replica, now: now))
                blackHole(try spec.breakdown(on: replica, at: now, now: now))
            }
            report.append(inSeconds(ContinuousClock.now - reported) * 1_000 / Double(specs.count))
        }
        evaluation.sort()
        report.sort()
        print(table(["per SLO", "median ms", "best ms"], [
            ["scheduled evaluation (window, 6 burn windows, rules)", format(evaluation[evaluation.count / 2], digits: 2),
             format(evaluation[0], digits: 2)],
            ["report (evaluation + steps, operations, regions, 12 months)", format(report[report.count / 2], digits: 2),
             format(report[0], digits: 2)],
        ]))
    }

    /// A mix of what SLO files hold: availability and latency over rolling 30 days, a calendar
    /// month in a time zone, Timeslices, and SLOs of a few operations.
    static func spec(_ index: Int, operations: Int) throws -> SLOSpec {
        var spec = SLOSpec(name: "svc-\(index)-slo", service: "svc-\(index)",
                           indicator: .availability(badClasses: [.serverError]), objective: try Objective(percent: "99.9"),
                           window: .rolling(.seconds(30 * 86_400)))
        switch index % 10 {
        case 0, 1, 2, 3: break
        case 4, 5, 6: spec.indicator = .latency(thresholdMicros: 300_000)
        case 7: spec.window = .calendar(.month, timeZone: "Europe/Berlin")
        case 8: spec.budgeting = .timeslices(slice: .seconds(300), target: try Objective(percent: "95"))
        default: spec.operations = Set((0..<min(3, operations)).map { "op-\($0)" })
        }
        return spec
    }

    static func kind(_ spec: SLOSpec) -> String {
        if case .timeslices = spec.budgeting { return "timeslices" }
        if case .calendar = spec.window { return "calendar month" }
        if spec.operations != nil { return "3 operations" }
        if case .latency = spec.indicator { return "latency" }
        return "availability"
    }
}
