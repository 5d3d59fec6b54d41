import Testing
import TallyAggregates
import TallyReplica
@testable import TallySLO

/// SLOs evaluated on a replica's state: the error burst that must page, the trickle that must
/// not, and a latency SLI's bounds.
@Suite struct EvaluationTests {
    static let now = Timestamp(millisecondsSinceEpoch: 1_795_946_400_000)

    /// A replica holding `perMinute` requests a minute over the last `minutes`, of which those in
    /// the last `burstMinutes` fail at `burstErrorPercent`, and 0.05% of the others.
    static func replica(minutes: Int, perMinute: Int, burstMinutes: Int, burstErrorPercent: Int) -> Replica {
        var replica = Replica(config: ReplicaConfig(id: ReplicaID(region: "r", node: "n1", incarnation: 1)))
        var random = SeededRandom(seed: 3)
        var batch = 0
        for minute in 0..<minutes {
            let inBurst = minute < burstMinutes
            let items: [BatchItem] = (0..<perMinute).map { index in
                let failing = inBurst ? Int(random.next() % 100) < burstErrorPercent : random.next() % 2_000 == 0
                return .event(Event(service: "checkout", operation: "pay", status: failing ? 503 : 200,
                                    latencyMicros: Double(20_000 + random.next() % 400_000), user: "u\(index)",
                                    timestamp: Self.now - .seconds(Int64(60 * minute + 1))))
            }
            batch += 1
            _ = replica.ingest(EventBatch(id: BatchID(UInt64(batch)), client: "c", items: items), now: Self.now)
        }
        return replica
    }

    static let availability = SLOSpec(name: "checkout", service: "checkout", indicator: .availability(badClasses: [.serverError]),
                                      objective: try! Objective(percent: "99.9"))

    @Test func anErrorBurstPagesOnTheFastRuleOnly() throws {
        // Three days of traffic; the last 10 minutes fail at 5% (50x the budget's rate).
        let replica = Self.replica(minutes: 3 * 1_440, perMinute: 40, burstMinutes: 10, burstErrorPercent: 5)
        let status = try Self.availability.evaluate(on: replica, now: Self.now)
        let fast = status.verdicts[0]
        // 1 h: 10 of 60 minutes at 5% -> about 0.83% errors, 8.3x; 5 m: 50x. 14.4x needs both.
        #expect(fast.shortRate.value > 14.4)
        #expect(!fast.firing, "1h at \(fast.longRate) is below 14.4x")
        // The same burst over half an hour pages.
        let longer = Self.replica(minutes: 3 * 1_440, perMinute: 40, burstMinutes: 30, burstErrorPercent: 5)
        let paging = try Self.availability.evaluate(on: longer, now: Self.now)
        #expect(paging.verdicts[0].firing, "1h \(paging.verdicts[0].longRate), 5m \(paging.verdicts[0].shortRate)")
        #expect(paging.verdicts[0].longRate.value > 14.4 && paging.verdicts[0].longRate.value < 30)
        #expect(!paging.verdicts[2].firing)  // 3 days at about 0.4x: no ticket
        #expect(paging.budget.spent > 0 && paging.budget.spent < 1)
        #expect(paging.burnRates.map(\.window) == [300, 1_800, 3_600, 21_600, 86_400, 259_200].map { Duration.seconds($0) })
        #expect(paging.timeToExhaustion != nil)
    }

    @Test func aTrickleOfErrorsAtTinyTrafficDoesNotPage() throws {
        // Two requests a minute, half of them failing for the last hour: hundreds of x, 120 events.
        let replica = Self.replica(minutes: 180, perMinute: 2, burstMinutes: 60, burstErrorPercent: 50)
        var spec = Self.availability
        spec.minimumEvents = 500
        let status = try spec.evaluate(on: replica, now: Self.now)
        #expect(!status.verdicts[0].firing)
        #expect(status.verdicts[0].suppressed?.contains("fewer than the minimum of 500") == true)
        spec.minimumEvents = 10
        #expect(try spec.evaluate(on: replica, now: Self.now).verdicts[0].firing)
    }

    @Test func aLatencySLIReportsBothBoundsAndJudgesOnTheLowerOne() throws {
        let replica = Self.replica(minutes: 60, perMinute: 100, burstMinutes: 0, burstErrorPercent: 0)
        let spec = SLOSpec(name: "fast", service: "checkout", indicator: .latency(thresholdMicros: 300_000),
                           objective: try Objective(percent: "90"), window: .rolling(.seconds(3_600)))
        let status = try spec.evaluate(on: replica, now: Self.now)
        let bounds = try #require(status.goodBounds)
        #expect(bounds.certain <= bounds.possible)
        #expect(status.counts.good == bounds.certain)
        #expect(status.counts.total == 6_000)
        // Latencies are uniform in 20..420 ms: about 70% at most 300 ms.
        #expect(abs(status.counts.sli - 0.7) < 0.03, "\(status.counts.sli)")
    }

    /// A burst inside planned maintenance spends no budget and pages nobody; the same burst
    /// outside it does. The maintenance buckets are left out exactly.
    @Test func maintenanceIsLeftOutOfTheBudgetAndTheAlerts() throws {
        let replica = Self.replica(minutes: 3 * 1_440, perMinute: 40, burstMinutes: 30, burstErrorPercent: 5)
        var spec = Self.availability
        let plain = try spec.evaluate(on: replica, now: Self.now)
        #expect(plain.verdicts[0].firing)
        // The burst's 30 minutes (and a minute either side) are maintenance.
        spec.maintenance = [SLOSpec.Interval(from: Self.now - .seconds(31 * 60), to: Self.now + .seconds(60))]
        let planned = try spec.evaluate(on: replica, now: Self.now)
        #expect(!planned.verdicts.contains { $0.firing })
        #expect(planned.counts.total < plain.counts.total && plain.counts.bad - planned.counts.bad >= 40)  // the burst
        #expect(planned.budget.spent < plain.budget.spent)
        // Parts are read at the window's resolution (hours, for 30 days), and an hour that overlaps
        // maintenance is left out whole: the total is the whole less those hours.
        let left = try replica.windowCounts(service: "checkout", from: Self.now - .seconds(3_600),
                                            to: Self.now + .seconds(3_600), now: Self.now, resolution: .hour)
        #expect(planned.counts.total == plain.counts.total - left.total)
        #expect(spec.countedParts(from: Self.now - .seconds(7_200), to: Self.now, width: .seconds(60)).map(\.to)
            == [Self.now - .seconds(31 * 60)])
        #expect(spec.countedParts(from: Self.now - .seconds(7_200), to: Self.now, width: .seconds(3_600)).map(\.to)
            == [Self.now - .seconds(3_600)])
    }
}
