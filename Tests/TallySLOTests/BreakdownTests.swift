import Testing
import TallyAggregates
import TallyReplica
@testable import TallySLO

/// A report's breakdown: the steps add up to the window, the operations and regions to its bad
/// events, and each calendar period is evaluated on its own.
@Suite struct BreakdownTests {
    static let now = EvaluationTests.now  // 2026-11-29T10:00:00Z

    /// Two origins (regions) writing to one replica's state: `a` fails 1 in 10 of "pay", `b` none.
    static func replica() -> Replica {
        var replica = Replica(config: ReplicaConfig(id: ReplicaID(region: "a", node: "n1", incarnation: 1)))
        var other = Replica(config: ReplicaConfig(id: ReplicaID(region: "b", node: "n1", incarnation: 1)))
        for hour in 0..<(40 * 24) {
            let at = Self.now - .seconds(Int64(hour) * 3_600 + 60)
            let items: [BatchItem] = (0..<10).map { index in
                .event(Event(service: "checkout", operation: index % 2 == 0 ? "pay" : "cart",
                             status: index == 0 ? 503 : 200, latencyMicros: 1_000, user: nil, timestamp: at))
            }
            _ = replica.ingest(EventBatch(id: BatchID(UInt64(hour + 1)), client: "c", items: items), now: Self.now)
            _ = other.ingest(EventBatch(id: BatchID(UInt64(hour + 1)), client: "c", items: items.map { item in
                guard case .event(var event) = item else { return item }
                event.status = 200
                return .event(event)
            }), now: Self.now)
        }
        // b's state arrives as a peer's would (the CRDT join).
        let buckets = other.buckets.map { ReplicatedBucket(key: $0.key, aggregate: $0.aggregate) }
        return replica.joining([ReadAnswer(id: 1, outcome: .buckets, buckets: buckets)], now: Self.now)
    }

    @Test func stepsOperationsRegionsAndPeriodsAddUp() throws {
        let replica = Self.replica()
        var spec = SLOSpec(name: "c", service: "checkout", indicator: .availability(badClasses: [.serverError]),
                           objective: try Objective(percent: "99"), window: .rolling(.seconds(30 * 86_400)))
        let status = try spec.evaluate(on: replica, now: Self.now)
        let breakdown = try spec.breakdown(on: replica, at: Self.now, now: Self.now)
        #expect(breakdown.steps.reduce(0) { $0 + $1.counts.total } == status.counts.total)
        #expect(breakdown.steps.reduce(0) { $0 + $1.counts.bad } == status.counts.bad)
        #expect(breakdown.operations.map(\.operation) == ["pay", "cart"])  // most bad first
        #expect(breakdown.operations[0].counts.bad == status.counts.bad && breakdown.operations[1].counts.bad == 0)
        let a = ReplicaID(region: "a", node: "n1", incarnation: 1)
        #expect(breakdown.origins?.map(\.origin) == [a])  // b counted no error
        #expect(breakdown.origins?.first?.bad == status.counts.bad)
        // 12 UTC months back from November 2026; October and November hold traffic, 1 in 20 bad.
        #expect(breakdown.periods.count == 12 && breakdown.periodUnit == .calendar(.month, timeZone: "UTC"))
        let november = try #require(breakdown.periods.last)
        #expect(november.current && RFC3339.format(november.from) == "2026-11-01T00:00:00.000Z")
        #expect(november.counts.total == UInt64((28 * 24 + 10) * 20), "\(november.counts)")
        #expect(november.counts.bad * 20 == november.counts.total)
        #expect(!november.met && november.budgetSpent > 4.9)  // 5% bad against a 1% budget
        let october = breakdown.periods[breakdown.periods.count - 2]
        #expect(!october.current && october.counts.total > 0 && october.counts.total < UInt64(31 * 24 * 20))
        // A latency SLI keeps no slot per region.
        spec.indicator = .latency(thresholdMicros: 10_000)
        #expect(try spec.breakdown(on: replica, at: Self.now, now: Self.now).origins == nil)
    }
}
