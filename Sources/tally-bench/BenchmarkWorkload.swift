import TallyAggregates
import TallyReplica
import TallyWorkload

/// The load generator's workload as the benchmarks feed it: requests drawn from `Workload` with a
/// fixed seed, spread evenly over `seconds` of event time, and cut into batches of decoded events.
/// One definition, so that `replica` and `peers` measure the same events.
struct BenchmarkWorkload {
    static let start = Timestamp(millisecondsSinceEpoch: 1_795_953_600_000)

    let requests: [Workload.Request]
    let times: [Timestamp]
    /// The end of the events' time: the replica's `now`.
    let now: Timestamp

    init(events: Int, seconds: Int, services: Int = 5, operations: Int = 10, users: Int = 10_000) {
        var random = SeededRandom(seed: 11)
        let workload = Workload(services: services, operations: operations, users: users)
        self.requests = (0..<events).map { _ in workload.request(using: &random) }
        self.times = (0..<events).map {
            Self.start + .milliseconds(Int64($0) * Int64(seconds) * 1_000 / Int64(events))
        }
        self.now = Self.start + .seconds(Int64(seconds))
    }

    /// The events in batches of `size`, as the HTTP layer hands them to the replica.
    func batches(of size: Int, users: Int) -> [EventBatch] {
        let userNames = (0..<users).map { "user-\($0)" }
        return stride(from: 0, to: self.requests.count, by: size).map { offset in
            EventBatch(id: BatchID(UInt64(offset)), client: "bench",
                       events: (offset..<min(offset + size, self.requests.count)).map {
                self.requests[$0].event(users: userNames, at: self.times[$0])
            })
        }
    }
}

extension Workload.Request {
    /// This request as the event the HTTP layer would decode: service and operation named as the
    /// benchmarks name them (`svc-3`, `op-7`) unless given, the user from `users`.
    func event(users: [String], at timestamp: Timestamp, service: String? = nil, operation: String? = nil,
               status: UInt16? = nil) -> Event
    {
        Event(service: service ?? "svc-\(self.service)", operation: operation ?? "op-\(self.operation)",
              status: status ?? self.status, latencyMicros: Double(self.latencyMicros), user: users[self.user],
              timestamp: timestamp)
    }
}

/// A duration in seconds, as a `Double`.
func inSeconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}
