import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import TallyAggregates
import TallyNode
import TallyReplica
import TallyWorkload

/// `tally load`: realistic traffic against a node, with exact expected totals checked at the end.
struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send realistic event traffic to a node and check that it counted exactly what it acknowledged.",
        discussion: """
            Events have log-normal latencies (median 20 ms), a few percent of 5xx errors and \
            Zipf-distributed users. Every batch carries an idempotency key and is retried with the \
            same key until the node answers it (connection errors, 429, 503), so a node that \
            crashes and restarts in the middle still counts each acknowledged event once. At the end \
            the node's counts per service are compared with the acknowledged totals; a difference \
            exits non-zero.
            """)

    @Option(help: "The node's base URL.")
    var target = "http://127.0.0.1:7070"
    @Option(help: "API key secret sent as Authorization: Bearer.")
    var key = "dev-key"
    @Option(help: "Events per second to offer (0: as fast as the node answers).")
    var rate = 10_000
    @Option(help: "Seconds to send for.")
    var duration = 10.0
    @Option(help: "Distinct services.")
    var services = 5
    @Option(help: "Distinct operations per service.")
    var operations = 10
    @Option(help: "Distinct users (Zipf, s = 1.1).")
    var users = 10_000
    @Option(help: "Events per batch.")
    var batch = 500
    @Option(help: "Batches in flight at once.")
    var concurrency = 8
    @Option(help: "Seed for the generated traffic.")
    var seed: UInt64 = 1
    @Option(help: "Seconds to keep retrying an unanswered batch before giving up.")
    var retryFor = 120.0
    @Flag(help: "Skip the final comparison with the node's counts.")
    var noVerify = false
    @Option(help: "Services are named PREFIX0, PREFIX1, ...: loads sent to different regions use different prefixes.")
    var servicePrefix = "svc-"
    @Option(help: "Write the acknowledged events per service to this file as JSON, for a cluster-wide check.")
    var acknowledged: String?
    @Option(help: "What to send: events (POST /v1/events), otlp (spans to --target's /v1/traces), statsd (--target udp://HOST:PORT).")
    var `protocol` = "events"
    @Option(help: "The node's API base URL, for its /metrics (otlp, statsd).")
    var api = "http://127.0.0.1:7070"
    @Option(help: "Timer lines per UDP datagram (statsd).")
    var linesPerDatagram = 20

    func validate() throws {
        guard self.rate >= 0, self.duration > 0, self.services > 0, self.operations > 0, self.users > 0,
            self.batch > 0, self.concurrency > 0, (1...1_000).contains(self.linesPerDatagram)
        else {
            throw ValidationError(
                "rate must be >= 0; duration, services, operations, users, batch, concurrency > 0; lines-per-datagram 1...1000")
        }
        guard ["events", "otlp", "statsd"].contains(self.protocol) else {
            throw ValidationError("--protocol must be events, otlp or statsd, not '\(self.protocol)'")
        }
    }

    func run() async throws {
        switch self.protocol {
        case "otlp": return try await self.runOTLP()
        case "statsd": return try await self.runStatsD()
        default: break
        }
        let generator = TrafficGenerator(services: self.services, operations: self.operations, users: self.users,
                                         seed: self.seed, servicePrefix: self.servicePrefix)
        let totalBatches = self.rate == 0
            ? Int.max : max(1, Int((Double(self.rate) * self.duration / Double(self.batch)).rounded()))
        let interval = self.rate == 0 ? Duration.zero : .seconds(Double(self.batch) / Double(self.rate))
        let tally = LoadTally(services: self.services)
        let client = HTTPClient.shared
        // Keys are unique to this run (a second run with the same seed must not be answered from
        // the first run's keys) and stable within it (a retry reuses its batch's key).
        let run = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        // Every event is stamped inside this window; the node's counts in it are read before and
        // after, so events already there (an earlier run) do not disturb the comparison.
        let windowStart = Node.wallClock() - .seconds(120)
        let windowEnd = windowStart + .seconds(Int64(self.duration + self.retryFor) + 360)
        var before: [Int] = []
        if !self.noVerify {
            for service in 0..<self.services {
                before.append(try await self.count(service: "\(self.servicePrefix)\(service)", from: windowStart, to: windowEnd,
                                                   client: client))
            }
        }
        let started = ContinuousClock.now
        let deadline = started + .seconds(self.duration)
        let shared = Shared()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<self.concurrency {
                group.addTask {
                    while true {
                        let index = await shared.next()
                        guard index < totalBatches else { return }
                        let due = started + interval * index
                        if interval > .zero {
                            if due >= deadline { return }
                            try await Task.sleep(until: due, clock: .continuous)
                        } else if ContinuousClock.now >= deadline {
                            return
                        }
                        let (body, services) = generator.batch(index: index, count: self.batch, at: Node.wallClock())
                        let sent = ContinuousClock.now
                        let answer = try await self.send(body, key: "load-\(run)-\(index)", client: client,
                                                         tally: tally)
                        await tally.record(services: services, answer: answer, latency: ContinuousClock.now - sent)
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - started
        let summary = await tally.summary(elapsed: elapsed)
        print(summary.text)
        let expected = await tally.acceptedPerService
        if let path = self.acknowledged {
            let perService = Dictionary(uniqueKeysWithValues: expected.enumerated().map { ("\(self.servicePrefix)\($0)", $1) })
            let json = try JSONSerialization.data(withJSONObject: perService, options: [.sortedKeys])
            try json.write(to: URL(fileURLWithPath: path))
        }
        guard !self.noVerify else { return }
        var reported: [Int] = []
        for service in 0..<self.services {
            let after = try await self.count(service: "\(self.servicePrefix)\(service)", from: windowStart, to: windowEnd,
                                             client: client)
            reported.append(after - before[service])
        }
        let total = reported.reduce(0, +)
        let verdict = reported == expected ? "equal to" : "DIFFERENT FROM"
        print("node reports: \(total) new events (\(verdict) the acknowledged \(expected.reduce(0, +)))")
        if reported != expected {
            for (service, (got, want)) in zip(reported, expected).enumerated() where got != want {
                print("  \(self.servicePrefix)\(service): node \(got), acknowledged \(want)")
            }
            throw ExitCode.failure
        }
    }

    /// Sends one batch until the node answers it; retries keep the idempotency key.
    func send(_ body: [UInt8], key: String, client: HTTPClient, tally: LoadTally) async throws -> [String: Any] {
        let giveUp = ContinuousClock.now + .seconds(self.retryFor)
        var attempt = 0
        while true {
            attempt += 1
            if attempt > 1 { await tally.retried() }
            var request = HTTPClientRequest(url: self.target + "/v1/events")
            request.method = .POST
            request.headers.add(name: "Authorization", value: "Bearer \(self.key)")
            request.headers.add(name: "Content-Type", value: "application/x-ndjson")
            request.headers.add(name: "Idempotency-Key", value: key)
            request.body = .bytes(ByteBuffer(bytes: body))
            do {
                let response = try await client.execute(request, timeout: .seconds(30))
                let data = try await response.body.collect(upTo: 16 << 20)
                switch response.status.code {
                case 200:
                    let object = try JSONSerialization.jsonObject(with: Data(buffer: data)) as? [String: Any]
                    return object ?? [:]
                case 429, 503:
                    let wait = Double(response.headers.first(name: "Retry-After") ?? "1") ?? 1
                    try await Task.sleep(for: .seconds(min(wait, 5)))
                default:
                    throw CommandFailure(message: "batch \(key): HTTP \(response.status.code): \(String(buffer: data))")
                }
            } catch let error as CommandFailure {
                throw error
            } catch {
                // Connection refused or reset: the node may be restarting. Same key, again.
                guard ContinuousClock.now < giveUp else {
                    throw CommandFailure(message: "batch \(key): no answer after \(self.retryFor) s: \(error)")
                }
                try await Task.sleep(for: .milliseconds(min(50 * attempt, 1_000)))
            }
        }
    }

    func count(service: String, from: Timestamp, to: Timestamp, client: HTTPClient) async throws -> Int {
        var request = HTTPClientRequest(
            url: "\(self.target)/v1/query?service=\(service)&from=\(from.millisecondsSinceEpoch)"
                + "&to=\(to.millisecondsSinceEpoch)&metrics=count")
        request.headers.add(name: "Authorization", value: "Bearer \(self.key)")
        let response = try await client.execute(request, timeout: .seconds(30))
        let data = try await response.body.collect(upTo: 16 << 20)
        guard response.status.code == 200,
            let object = try JSONSerialization.jsonObject(with: Data(buffer: data)) as? [String: Any],
            let groups = object["groups"] as? [[String: Any]]
        else { throw CommandFailure(message: "query for \(service) failed: \(String(buffer: data))") }
        var total = 0.0
        for group in groups {
            for point in group["points"] as? [[String: Any]] ?? [] {
                total += (point["values"] as? [String: Any])?["count"] as? Double ?? 0
            }
        }
        return Int(total)
    }
}

/// Hands out batch numbers to the senders.
actor Shared {
    private var counter = 0
    func next() -> Int {
        defer { self.counter += 1 }
        return self.counter
    }
}

/// What the node acknowledged, kept exactly.
actor LoadTally {
    private(set) var acceptedPerService: [Int]
    private var sentEvents = 0
    private var batches = 0
    private var accepted = 0
    private var rejected = 0
    private var retries = 0
    private var replayed = 0
    private var ackLatency = LatencySketch()
    private static let origin = ReplicaID(0)

    init(services: Int) {
        self.acceptedPerService = Array(repeating: 0, count: services)
    }

    func retried() { self.retries += 1 }

    func record(services: [Int], answer: [String: Any], latency: Duration) {
        self.batches += 1
        self.sentEvents += services.count
        if answer["replayed"] as? Bool == true { self.replayed += 1 }
        self.accepted += answer["accepted"] as? Int ?? 0
        self.rejected += answer["rejected_count"] as? Int ?? 0
        let rejectedIndexes = Set((answer["rejected"] as? [[String: Any]] ?? []).compactMap { $0["index"] as? Int })
        for (index, service) in services.enumerated() where !rejectedIndexes.contains(index) {
            self.acceptedPerService[service] += 1
        }
        let micros = Double(latency.components.seconds) * 1e6 + Double(latency.components.attoseconds) / 1e12
        self.ackLatency.record(micros, at: Self.origin)
    }

    func summary(elapsed: Duration) -> (text: String, accepted: Int) {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let quantiles = self.ackLatency.quantiles([0.5, 0.9, 0.99, 1]) ?? []
        let named = zip(["p50", "p90", "p99", "max"], quantiles)
            .map { "\($0) \(String(format: "%.1f", $1.value / 1_000)) ms" }.joined(separator: ", ")
        let text = """
            sent: \(self.sentEvents) events in \(self.batches) batches (\(self.retries) retries, \(self.replayed) answered from the idempotency log)
            acknowledged: \(self.accepted) events accepted, \(self.rejected) rejected
            throughput: \(Int(Double(self.accepted) / max(seconds, 0.001))) events/s acknowledged over \(String(format: "%.1f", seconds)) s
            ack latency: \(named)
            """
        return (text, self.accepted)
    }
}

/// Deterministic traffic: a batch's events depend only on the seed and the batch number, so a
/// retried batch carries exactly the same events.
struct TrafficGenerator: Sendable {
    let workload: Workload
    let seed: UInt64
    /// `{"service":"PREFIX`, the bytes before each event's service number.
    let serviceOpening: [UInt8]

    init(services: Int, operations: Int, users: Int, seed: UInt64, servicePrefix: String = "svc-") {
        self.workload = Workload(services: services, operations: operations, users: users)
        self.seed = seed
        self.serviceOpening = Array("{\"service\":\"\(servicePrefix)".utf8)
    }

    /// The body of batch `index` (NDJSON) and the service of each event in it, written straight to
    /// bytes: the generator shares the machine with the node, so it must be cheap.
    func batch(index: Int, count: Int, at now: Timestamp) -> (body: [UInt8], services: [Int]) {
        var random = SeededRandom(seed: self.seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(index))
        var body: [UInt8] = []
        body.reserveCapacity(count * 130)
        var services: [Int] = []
        services.reserveCapacity(count)
        let timestamp = now.millisecondsSinceEpoch
        for _ in 0..<count {
            let request = self.workload.request(using: &random)
            services.append(request.service)
            body.append(contentsOf: self.serviceOpening)
            Self.append(request.service, to: &body)
            Self.append("\",\"operation\":\"op-", to: &body)
            Self.append(request.operation, to: &body)
            Self.append("\",\"status\":", to: &body)
            Self.append(Int(request.status), to: &body)
            Self.append(",\"latency\":", to: &body)
            Self.append(request.latencyMicros, to: &body)
            Self.append(",\"user\":\"user-", to: &body)
            Self.append(request.user, to: &body)
            Self.append("\",\"timestamp\":", to: &body)
            Self.append(Int(timestamp), to: &body)
            Self.append("}\n", to: &body)
        }
        return (body, services)
    }

    static func append(_ text: StaticString, to body: inout [UInt8]) {
        body.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    static func append(_ value: Int, to body: inout [UInt8]) {
        var value = value
        if value < 0 {
            body.append(UInt8(ascii: "-"))
            value = -value
        }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[count] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
                count += 1
            } while value > 0
            for position in stride(from: count - 1, through: 0, by: -1) { body.append(buffer[position]) }
        }
    }
}
