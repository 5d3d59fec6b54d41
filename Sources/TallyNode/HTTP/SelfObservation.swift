import Foundation
import HTTPTypes
import Hummingbird
import NIOConcurrencyHelpers
import TallyReplica

/// Tally's own requests as Tally events (`observe_self: true`), so its own SLOs are evaluated
/// like any service's (`deploy/slo/tally.yaml`): every API request is an event of service
/// `tally`, operation `METHOD /route`, with its status and how long the node took; every 10 s,
/// each peer region's freshness (how long since this node last heard from it) is an event of
/// service `tally-replication`, operation the peer's region, with that time as its latency.
///
/// Requests are recorded here, off the node's actor, into a bounded buffer; the node ingests
/// what it holds as one batch a second (through the same core, log and replication as any
/// batch). Past `eventsMax` waiting, events are dropped and counted.
public final class SelfObservation: Sendable {
    public static let service = "tally"
    public static let replicationService = "tally-replication"
    /// The services self-observation writes.
    public static let services: Set<String> = [SelfObservation.service, SelfObservation.replicationService]

    /// Tally's own SLOs over these events: `deploy/slo/tally.yaml`, word for word (a test compares
    /// them), so `tally demo` can evaluate them wherever it runs.
    public static let sloSpec = #"""
# Tally's own SLOs: a node with `observe_self: true` counts its own API requests as events of
# service `tally` (operation `METHOD /route`) and, every 10 s, each peer region's freshness (how
# long since it last heard from it) as an event of service `tally-replication` whose latency is
# that time. List this file in `slo_files` to evaluate and alert on them like any service's.
slos:
  - name: tally-ingest-availability
    service: tally
    operations: ["POST /v1/events"]
    objective: 99.9
    sli: availability
    bad: [5xx]            # a 4xx is the client's (a bad body, a missing key), not Tally's
    window: 30d
    runbook: docs/slo.md#runbook-tally-ingest-availability
  - name: tally-ack-latency
    service: tally
    operations: ["POST /v1/events"]
    objective: 99
    sli: latency <= 100ms  # from the request's arrival to its durable acknowledgement
    window: 30d
    runbook: docs/slo.md#runbook-tally-ack-latency
  - name: tally-replication-freshness
    service: tally-replication
    objective: 99
    sli: latency <= 30s    # each peer region heard from within 30 s
    window: 30d
    minimum_events: 10
    runbook: docs/slo.md#runbook-tally-replication-freshness
  - name: tally-query-latency
    service: tally
    operations: ["GET /v1/query", "GET /v1/slo", "GET /v1/slo/{name}", "POST /v1/slo"]
    objective: 99
    sli: latency <= 1s
    window: 30d
    minimum_events: 20
    runbook: docs/slo.md#runbook-tally-query-latency

"""#
    public let eventsMax: Int
    private let state = NIOLockedValueBox((events: [BatchItem](), dropped: UInt64(0)))

    public init(eventsMax: Int = 50_000) {
        self.eventsMax = eventsMax
    }

    /// Events dropped because the buffer was full.
    public var dropped: UInt64 { self.state.withLockedValue { $0.dropped } }

    func record(_ event: Event) {
        self.state.withLockedValue { state in
            guard state.events.count < self.eventsMax else {
                state.dropped += 1
                return
            }
            state.events.append(.event(event))
        }
    }

    /// Everything recorded since the last drain.
    func drain() -> [BatchItem] {
        self.state.withLockedValue { state in
            defer { state.events = [] }
            return state.events
        }
    }

    /// The route a path belongs to: a bounded set of operation names (an unknown path is `other`).
    static func route(_ method: HTTPRequest.Method, _ path: String) -> String {
        if API.routes[path] != nil { return "\(method.rawValue) \(path)" }
        if API.methods(for: path) != nil, path.hasPrefix("/v1/slo/") { return "\(method.rawValue) /v1/slo/{name}" }
        return "\(method.rawValue) other"
    }
}

/// Times every request and records it (outermost, so refusals count too).
struct SelfObservationMiddleware: RouterMiddleware {
    let observation: SelfObservation
    let clock: @Sendable () -> Timestamp

    func handle(_ request: Request, context: TallyRequestContext,
                next: (Request, TallyRequestContext) async throws -> Response) async throws -> Response
    {
        let started = ContinuousClock.now
        let route = SelfObservation.route(request.method, request.uri.path)
        func record(_ status: Int) {
            let elapsed = ContinuousClock.now - started
            let micros = Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12
            self.observation.record(Event(service: SelfObservation.service, operation: route, status: UInt16(status),
                                          latencyMicros: max(micros, 1), userID: nil, timestamp: self.clock()))
        }
        do {
            let response = try await next(request, context)
            record(response.status.code)
            return response
        } catch let error as HTTPResponseError {
            record(error.status.code)
            throw error
        } catch {
            record(500)
            throw error
        }
    }
}
