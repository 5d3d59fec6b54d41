import Testing
import TallyAggregates
import TallySLO
@testable import TallyNodeCore
@testable import TallyReplica

/// SLO evaluation on the core's schedule: asked for at each interval, one at a time; the alerts
/// follow the evaluation reported; the view says which peers have gone quiet.
@Suite struct SLOSchedulingTests {
    static let now = NodeCoreTests.now
    static let spec = SLOSpec(name: "s-availability", service: "s", indicator: .availability(badClasses: [.serverError]),
                              objective: try! Objective(partsPerMillion: 990_000), window: .rolling(.seconds(86_400)),
                              minimumEvents: 10)

    static func requests(_ actions: [NodeCore.Action]) -> [SLOEvaluationRequest] {
        actions.compactMap { if case .evaluateSLOs(let request) = $0 { request } else { nil } }
    }

    static func alerts(_ actions: [NodeCore.Action]) -> [Alert] {
        actions.flatMap { action -> [Alert] in if case .sendAlerts(let alerts) = action { alerts } else { [] } }
    }

    static func failing(_ count: Int, at time: Timestamp) -> EventBatch {
        EventBatch(id: BatchID(UInt64(time.millisecondsSinceEpoch)), client: "c", events: (0..<count).map { index in
            Event(service: "s", operation: "o", status: 503, latencyMicros: 100, user: "u\(index)", timestamp: time)
        })
    }

    @Test func evaluationsFollowTheIntervalOneAtATimeAndAlertsFollowThem() throws {
        var core = NodeCoreTests.core(NodeCore.Config(sloEvaluationInterval: .seconds(60)))
        #expect(Self.requests(core.tick(now: Self.now)).isEmpty)  // no SLOs, nothing to evaluate
        _ = core.setSLOs([Self.spec], now: Self.now)
        _ = core.ingest(Self.failing(50, at: Self.now - .seconds(30)), now: Self.now)
        _ = core.persisted(1...core.replica.lastSequence, now: Self.now)
        let first = try #require(Self.requests(core.tick(now: Self.now)).first)
        #expect(first.specs == [Self.spec] && first.at == Self.now)
        // None again while it is under way, even when the next is due.
        #expect(Self.requests(core.tick(now: Self.now + .seconds(61))).isEmpty)
        let sent = Self.alerts(core.slosEvaluated(first.evaluate(on: core.replica), now: Self.now + .seconds(61)))
        #expect(sent.contains { $0.labels["severity"] == "page" && $0.labels["long_window"] == "1h" }, "\(sent)")
        #expect(!core.firingAlerts.isEmpty)
        // A report for an evaluation nobody waits for changes nothing.
        #expect(core.slosEvaluated(first.evaluate(on: core.replica), now: Self.now + .seconds(62)).isEmpty)
        let second = try #require(Self.requests(core.tick(now: Self.now + .seconds(121))).first)
        #expect(second.id != first.id)
        // One never reported is given up after two intervals.
        #expect(Self.requests(core.tick(now: Self.now + .seconds(200))).isEmpty)
        #expect(Self.requests(core.tick(now: Self.now + .seconds(242))).count == 1)
        // The tick after an evaluation is due no later than the next evaluation.
        #expect(core.nextTick <= Self.now + .seconds(242) + .seconds(60))
    }

    @Test func anSLORemovedResolvesItsAlertsAtOnce() throws {
        var core = NodeCoreTests.core()
        _ = core.setSLOs([Self.spec], now: Self.now)
        _ = core.ingest(Self.failing(50, at: Self.now - .seconds(30)), now: Self.now)
        _ = core.persisted(1...core.replica.lastSequence, now: Self.now)
        let request = try #require(Self.requests(core.tick(now: Self.now)).first)
        #expect(!Self.alerts(core.slosEvaluated(request.evaluate(on: core.replica), now: Self.now)).isEmpty)
        let resolved = Self.alerts(core.setSLOs([], now: Self.now + .seconds(5)))
        #expect(!resolved.isEmpty && resolved.allSatisfy(\.resolved))
        #expect(core.firingAlerts.isEmpty)
    }

    @Test func aPeerNotHeardFromMakesTheViewPartial() throws {
        var core = NodeCoreTests.core(NodeCore.Config(staleAfter: .seconds(60)), peers: ["b", "c"])
        _ = core.setSLOs([Self.spec], now: Self.now)
        #expect(!core.view(now: Self.now + .seconds(30)).isPartial)  // just started: give peers time
        // b speaks (a message that does not decode still proves the link is up), c never does.
        _ = core.received([0xFF], from: "b", now: Self.now + .seconds(50))
        let view = core.view(now: Self.now + .seconds(100))
        #expect(view.stale.map(\.region) == ["c"] && view.stale.first?.behind == .seconds(100))
        let request = try #require(Self.requests(core.tick(now: Self.now + .seconds(100))).first)
        #expect(request.view == view)
        // A region that is not a peer is not a view.
        _ = core.received([0xFF], from: "z", now: Self.now + .seconds(100))
        #expect(core.view(now: Self.now + .seconds(200)).stale.map(\.region) == ["b", "c"])
    }
}
