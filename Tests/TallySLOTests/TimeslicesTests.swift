import Testing
import TallyAggregates
import TallyReplica
@testable import TallySLO

/// Timeslices budgeting: the window in slices, each good when its events meet the slice target;
/// the objective is the share of good slices. Exact figures on a hand-built replica.
@Suite struct TimeslicesTests {
    static let now = EvaluationTests.now

    /// Three hours at 40 requests a minute; in the last `burst` minutes `failing` of each 40 fail.
    static func replica(burst: Int, failing: Int) -> Replica {
        var replica = Replica(config: ReplicaConfig(id: ReplicaID(region: "r", node: "n1", incarnation: 1)))
        for minute in 0..<180 {
            let items: [BatchItem] = (0..<40).map { index in
                .event(Event(service: "checkout", operation: "pay", status: minute < burst && index < failing ? 503 : 200,
                             latencyMicros: 1_000, user: "u\(index)", timestamp: Self.now - .seconds(Int64(60 * minute + 1))))
            }
            _ = replica.ingest(EventBatch(id: BatchID(UInt64(minute + 1)), client: "c", items: items), now: Self.now)
        }
        return replica
    }

    static func spec(target: String) throws -> SLOSpec {
        var spec = SLOSpec(name: "slices", service: "checkout", indicator: .availability(badClasses: [.serverError]),
                           objective: try Objective(percent: "99"), window: .rolling(.seconds(3 * 3_600)))
        spec.budgeting = .timeslices(slice: .seconds(60), target: try Objective(percent: target))
        return spec
    }

    @Test func aBurstCostsTheSlicesItLastedWhateverItsShareOfTraffic() throws {
        // Ten minutes at 10% errors (4 of 40): each of those minutes misses a 95% slice target.
        let replica = Self.replica(burst: 10, failing: 4)
        let status = try Self.spec(target: "95").evaluate(on: replica, now: Self.now)
        // 180 minutes and the (empty) minute holding now: 181 slices, 10 bad.
        #expect(status.counts == EventCounts(total: 181, bad: 10))
        #expect(status.events == 7_200)
        // 99% of 181 slices allows 1.81 bad ones: the budget is gone.
        #expect(status.budget.isExhausted)
        #expect(abs(status.budget.allowedEvents - 1.81) < 1e-9)
        // 1 h: 10 of 61 slices bad = 16.4x; 5 m: 5 of 6 = 83x: the fast page fires. Counted by
        // occurrences, the same hour is 40 of 2,400 requests, 1.7x: no page.
        let fast = status.verdicts[0]
        #expect(fast.firing, "\(fast.longRate) \(fast.shortRate)")
        #expect(abs(fast.longRate.value - 10.0 / 61 / 0.01) < 1e-9 && abs(fast.shortRate.value - 5.0 / 6 / 0.01) < 1e-9)
        var occurrences = try Self.spec(target: "95")
        occurrences.budgeting = .occurrences
        #expect(!(try occurrences.evaluate(on: replica, now: Self.now)).verdicts[0].firing)
    }

    @Test func aSliceMeetingItsTargetIsGoodAndAnEmptyOneToo() throws {
        let replica = Self.replica(burst: 10, failing: 4)
        // 90% good meets an 85% target: no bad slice at all.
        #expect(try Self.spec(target: "85").evaluate(on: replica, now: Self.now).counts == EventCounts(total: 181, bad: 0))
        // Exactly at the target is good: 36 of 40 is 90%.
        #expect(try Self.spec(target: "90").evaluate(on: replica, now: Self.now).counts.bad == 0)
        #expect(try Self.spec(target: "90.0001").evaluate(on: replica, now: Self.now).counts.bad == 10)
    }

    @Test func slicesRoundUpToWholeBucketsOfTheResolutionRead() throws {
        let replica = Self.replica(burst: 10, failing: 4)
        let (width, slices) = try replica.sliceCounts(service: "checkout", from: Self.now - .seconds(3_600),
                                                      to: Self.now, now: Self.now, slice: .seconds(90))
        #expect(width == .seconds(120) && slices.count == 30)
        #expect(slices.reduce(0) { $0 + $1.total } == 2_400)
        #expect(slices.last?.requests(in: [.serverError]) == 8)  // minutes 0 and 1 of the burst
    }

    @Test func theShortFormAndItsErrors() throws {
        let specs = try SLOFile.parse(yaml: """
            slos:
              - {name: a, service: s, objective: 99, budgeting: {timeslices: 5m, target: 95}}
              - {name: b, service: s, objective: 99, budgeting: occurrences}
            """, file: "t.yaml")
        #expect(specs[0].budgeting == .timeslices(slice: .seconds(300), target: try Objective(percent: "95")))
        #expect(specs[1].budgeting == .occurrences)
        for (yaml, key) in [("{timeslices: 10s, target: 95}", "slos[0].budgeting.timeslices"),
                            ("{timeslices: 1m, target: 100}", "slos[0].budgeting.target"),
                            ("{timeslices: 1m, target: 95, extra: 1}", "slos[0].budgeting.extra"),
                            ("sometimes", "slos[0].budgeting")] {
            #expect { _ = try SLOFile.parse(yaml: "slos:\n  - {name: a, service: s, objective: 99, budgeting: \(yaml)}",
                                            file: "t.yaml") } throws: { error in
                (error as? SLOError)?.key == key
            }
        }
    }
}
