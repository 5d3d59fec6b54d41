import AsyncHTTPClient
import ArgumentParser
import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
import TallyAggregates
import TallyNode
import TallyReplica
import TallyWorkload

/// `tally demo`: three regions on this machine, replicating over mutual TLS, through a partition.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a three-region cluster on loopback through a partition, and watch it converge.",
        usage: "tally demo [--rate <rate>] [--phase <seconds>] [--keep] [<options>]",
        discussion: """
            Creates a CA and three region nodes (us-east, eu-west, ap-south) on free loopback ports, \
            with data in a temporary directory (or --dir). Services write to their nearest region; \
            ap-south is cut off while both sides keep writing; the network heals; the view shows each \
            region's totals and staleness until every region agrees. Traffic stops at the heal, so the \
            convergence time is the partition's backlog crossing. Exits non-zero if they do not agree.
            """)

    static let regions = ["us-east", "eu-west", "ap-south"]

    @Option(help: "Directory for certificates, configs and data (default: a new temporary directory).")
    var dir: String?
    @Option(help: "Events per second, over all regions.")
    var rate = 3_000
    @Option(help: "Seconds of traffic before the cut, and of the cut.")
    var phase = 5
    @Option(help: "Seconds allowed for convergence after the heal.")
    var timeout = 30
    @Option(help: "Milliseconds between gossip rounds (a node's default).")
    var gossip = Int(NodeConfig.ClusterConfig.defaultGossipInterval.components.seconds * 1_000
        + NodeConfig.ClusterConfig.defaultGossipInterval.components.attoseconds / 1_000_000_000_000_000)
    @Flag(help: "Keep the cluster running after the report, to explore it with curl (Ctrl-C stops it).")
    var keep = false

    /// Writes one line to standard output at once: `print` is block-buffered into a file or a pipe,
    /// so `tally demo > file` showed nothing until the end.
    static func say(_ line: String = "") {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// Returns the name of the first SIGINT or SIGTERM after this call; until then they no longer
    /// end the process, so the cluster can be stopped and its files removed.
    static func waitForStopSignal() async -> String {
        await withCheckedContinuation { (continuation: CheckedContinuation<String, Never>) in
            let once = NIOLockedValueBox<CheckedContinuation<String, Never>?>(continuation)
            var sources: [DispatchSourceSignal] = []
            for (number, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")] {
                signal(number, SIG_IGN)  // delivered to the source instead
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler {
                    once.withLockedValue { waiting in
                        waiting?.resume(returning: name)
                        waiting = nil
                    }
                }
                source.resume()
                sources.append(source)
            }
            // The sources live as long as the process: the demo exits after the first signal.
            Self.signalSources = sources
        }
    }

    /// Written once, before any of the sources can fire, and never read: it only keeps them alive.
    nonisolated(unsafe) private static var signalSources: [DispatchSourceSignal] = []

    func run() async throws {
        guard self.rate > 0, self.rate <= 200_000, self.phase > 0, self.timeout > 0, self.gossip >= 10 else {
            throw ValidationError("--rate must be 1 to 200000, --phase and --timeout positive, --gossip at least 10")
        }
        let directory = self.dir ?? (NSTemporaryDirectory() + "tally-demo-\(UUID().uuidString.prefix(8))")
        var logger = Logger(label: "tally.demo")
        // The view is the output (stdout); refusals and failures go to stderr.
        logger.logLevel = .warning
        let cluster = try await DemoCluster.create(in: directory, regions: Self.regions, gossipMillis: self.gossip,
                                                   logger: logger)
        Self.say("three regions on loopback, data and certificates in \(directory)")
        for member in cluster.members {
            Self.say("  \(member.config.region.padding(toLength: 9, withPad: " ", startingAt: 0)) "
                + "http://127.0.0.1:\(member.httpPort)  peers on 127.0.0.1:\(member.config.cluster!.listenPort)")
        }
        Self.say("")

        var traffic = DemoTraffic(rate: self.rate, regions: Self.regions.count)
        let start = ContinuousClock.now
        func elapsed() -> Double {
            let time = ContinuousClock.now - start
            return Double(time.components.seconds) + Double(time.components.attoseconds) / 1e18
        }
        let phase = Double(self.phase)
        var cut = false
        var healedAt: Double?
        var agreedAt: Double?
        var lastView = -1.0
        while true {
            let now = elapsed()
            if !cut && now >= phase && healedAt == nil {
                cut = true
                Self.say(String(format: "%5.1fs  ap-south cut off from the others (both sides keep writing)", now))
                await cluster.cut("ap-south", true)
            }
            if cut && now >= 2 * phase {
                cut = false
                healedAt = now
                Self.say(String(format: "%5.1fs  network healed; traffic stops", now))
                await cluster.cut("ap-south", false)
            }
            if healedAt == nil {
                await traffic.send(until: now, to: cluster)
            }
            let view = await cluster.view()
            let agree = healedAt != nil && view.agree(acknowledged: traffic.acknowledged)
            if now - lastView >= 0.5 || agree {
                lastView = now
                Self.say(view.line(at: now, acknowledged: traffic.acknowledged, agree: agree))
            }
            if agree, let healedAt {
                agreedAt = now
                Self.say(String(format: "%5.1fs  every region agrees: %d events, each counted once, %.2f s after the heal",
                             now, traffic.acknowledged, now - healedAt))
                break
            }
            if let healedAt, now - healedAt > Double(self.timeout) { break }
            try await Task.sleep(for: .milliseconds(50))
        }

        Self.say("")
        Self.say("report")
        Self.say("  events sent \(traffic.sent), acknowledged \(traffic.acknowledged), refused \(traffic.refused)")
        let totals = await cluster.totals()
        Self.say("  totals: " + zip(Self.regions, totals).map { "\($0) \($1)" }.joined(separator: ", "))
        if let agreedAt, let healedAt {
            Self.say(String(format: "  convergence after the heal: %.2f s (gossip every %d ms)", agreedAt - healedAt,
                         self.gossip))
        } else {
            Self.say("  the regions did not agree within \(self.timeout) s of the heal")
        }
        Self.say("  write acknowledgement p99: " + traffic.ackP99.map { String(format: "%.1f ms", $0) }.joined())
        for line in await cluster.latencyReport(services: DemoTraffic.services) { Self.say("  \(line)") }
        if self.keep {
            let member = cluster.members[0]
            Self.say("""

                the cluster keeps running; try:
                  curl -H "Authorization: Bearer \(DemoCluster.secret)" "http://127.0.0.1:\(member.httpPort)/v1/query?service=checkout&metrics=count,p99&group_by=status"
                  curl -H "Authorization: Bearer \(DemoCluster.secret)" "http://127.0.0.1:\(member.httpPort)/metrics"
                  curl -H "Authorization: Bearer \(DemoCluster.secret)" "http://127.0.0.1:\(member.httpPort)/v1/slo"
                  tally slo report --spec deploy/slo/tally.yaml --node http://127.0.0.1:\(member.httpPort) --key \(DemoCluster.secret)
                  tally slo report --spec deploy/slo/tally.yaml --node http://127.0.0.1:\(member.httpPort) --key \(DemoCluster.secret) --format html --output report.html
                Ctrl-C (or SIGTERM) stops it.
                """)
            let signal = await Self.waitForStopSignal()
            Self.say("\n\(signal): stopping the cluster")
            await cluster.stop()
            if self.dir == nil { try? FileManager.default.removeItem(atPath: directory) }
            return
        }
        Self.say("")
        Self.say("to keep the cluster running and explore it with curl: tally demo --keep")
        await cluster.stop()
        if agreedAt == nil { throw ExitCode(1) }
        if self.dir == nil { try? FileManager.default.removeItem(atPath: directory) }
    }
}

/// The three nodes, their HTTP servers, and the knobs the demo turns.
struct DemoCluster {
    static let secret = "demo-key"

    struct Member {
        var config: NodeConfig
        var node: Node
        var httpPort: Int
        /// The member's HTTP server, under a service group of its own with no signal handling
        /// (the demo decides what SIGINT and SIGTERM do) so it can be shut down gracefully.
        var services: ServiceGroup
        var server: Task<Void, Error>
    }

    var members: [Member]

    static func create(in directory: String, regions: [String], gossipMillis: Int, logger: Logger) async throws
        -> DemoCluster
    {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let ports = try await PeerTransport.freeLoopbackPorts(2 * regions.count)
        // Every region counts its own requests and evaluates Tally's own SLOs on them.
        let slos = (directory as NSString).appendingPathComponent("tally-slo.yaml")
        try SelfObservation.sloSpec.write(toFile: slos, atomically: true, encoding: .utf8)
        let layout = try LoopbackCluster.make(
            in: directory, regions: regions, httpPorts: regions.indices.map { ports[2 * $0] },
            peerPorts: regions.indices.map { ports[2 * $0 + 1] }, gossipInterval: "\(gossipMillis)ms", secret: Self.secret,
            extra: "observe_self: true\nslo_files: [\(slos)]")
        var members: [Member] = []
        for (index, (region, yaml)) in zip(regions, layout.members.map(\.yaml)).enumerated() {
            let configPath = (directory as NSString).appendingPathComponent("\(region)/tally.yaml")
            try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
            let config = try NodeConfig.load(path: configPath)
            try FileManager.default.createDirectory(atPath: config.dataDirectory, withIntermediateDirectories: true)
            let node = try await Node.start(config: config, logger: logger)
            let app = Application(
                router: API.router(node: node), server: API.server(config),
                configuration: API.configuration(config, host: "127.0.0.1", port: ports[2 * index]),
                logger: logger)
            let services = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: logger))
            let server = Task { try await services.run() }
            members.append(Member(config: config, node: node, httpPort: ports[2 * index], services: services,
                                  server: server))
        }
        return DemoCluster(members: members)
    }


    /// Cuts `region` off from the others (its peer messages, both ways, are dropped), or heals it.
    func cut(_ region: String, _ isCut: Bool) async {
        for member in self.members {
            if member.config.region == region {
                await member.node.transport?.setCut(self.members.map(\.config.region).filter { $0 != region }, isCut)
            } else {
                await member.node.transport?.setCut([region], isCut)
            }
        }
    }

    func totals() async -> [UInt64] {
        var totals: [UInt64] = []
        for member in self.members { totals.append(await member.node.totalRequests(excluding: SelfObservation.services)) }
        return totals
    }

    struct View {
        var regions: [String]
        var totals: [UInt64]
        var stalenessMax: [Double?]

        /// Every region counts each acknowledged event of the demo's traffic once. (Versions are
        /// not compared: each region writes its own requests as events every second.)
        func agree(acknowledged: Int) -> Bool {
            self.totals.allSatisfy { $0 == UInt64(acknowledged) }
        }

        func line(at time: Double, acknowledged: Int, agree: Bool) -> String {
            let columns = zip(self.regions, zip(self.totals, self.stalenessMax)).map { region, value in
                let stale = value.1.map { String(format: "%.1fs", $0) } ?? "-"
                return "\(region) \(String(value.0).padding(toLength: 7, withPad: " ", startingAt: 0)) (behind \(stale))"
            }
            return String(format: "%5.1fs  ", time) + columns.joined(separator: "  ")
                + "  acked \(acknowledged)" + (agree ? "  = all agree" : "")
        }
    }

    func view() async -> View {
        var view = View(regions: [], totals: [], stalenessMax: [])
        for member in self.members {
            view.regions.append(member.config.region)
            view.totals.append(await member.node.totalRequests(excluding: SelfObservation.services))
            let behind = await member.node.staleness().compactMap(\.behind).map { Double($0.milliseconds) / 1_000 }
            view.stalenessMax.append(behind.max())
        }
        return view
    }

    /// p99 latency and request count per service, from the merged aggregates of the first region.
    func latencyReport(services: [String]) async -> [String] {
        let now = Node.wallClock()
        var lines: [String] = []
        for service in services {
            let query = Query(service: service, from: now - .seconds(3_600), to: now + .seconds(60),
                              metrics: [.count, .quantile(0.99)])
            guard let (result, _) = try? await self.members[0].node.query(query),
                let values = result.groups.first?.points.first?.values
            else { continue }
            let count = values[0].map { Int($0) } ?? 0
            let p99 = values[1].map { String(format: "%.1f ms", $0 / 1_000) } ?? "-"
            lines.append("\(service): \(count) requests, p99 latency \(p99) (as every region now reports it)")
        }
        return lines
    }

    func stop() async {
        for member in self.members {
            await member.services.triggerGracefulShutdown()
            try? await member.server.value  // its error, if any, was logged
            await member.node.stop()
        }
    }
}

/// Services writing to their nearest region: each service lives in one region.
struct DemoTraffic {
    static let services = ["checkout", "search", "profile", "payments", "catalog", "auth"]

    let rate: Int
    let regions: Int
    var random = SeededRandom(seed: 42)
    let workload = Workload(services: 6, operations: 4, users: 5_000)
    var sentUntil = 0.0
    var sent = 0
    var acknowledged = 0
    var refused = 0
    var ackMillis: [Double] = []

    init(rate: Int, regions: Int) {
        self.rate = rate
        self.regions = regions
    }

    var ackP99: [Double] {
        guard !self.ackMillis.isEmpty else { return [] }
        let sorted = self.ackMillis.sorted()
        return [sorted[min(sorted.count - 1, sorted.count * 99 / 100)]]
    }

    /// Sends the events due by `time` (seconds since the start), a batch per service.
    mutating func send(until time: Double, to cluster: DemoCluster) async {
        let due = Int(time * Double(self.rate)) - self.sent
        guard due >= 50 else { return }
        let now = Node.wallClock()
        var byService: [Int: [String]] = [:]
        for _ in 0..<due {
            let request = self.workload.request(using: &self.random)
            byService[request.service, default: []].append(
                "{\"service\":\"\(Self.services[request.service])\",\"operation\":\"op-\(request.operation)\","
                    + "\"status\":\(request.status),\"latency\":\(request.latencyMicros),\"user\":\"user-\(request.user)\","
                    + "\"timestamp\":\(now.millisecondsSinceEpoch)}")
        }
        self.sent += due
        for (service, items) in byService.sorted(by: { $0.key < $1.key }) {
            let member = cluster.members[service % cluster.members.count]  // its nearest region
            let started = ContinuousClock.now
            // Over HTTP, as a service would send them: the node counts these requests as its own
            // events too (observe_self), for Tally's own SLOs.
            let accepted = await Self.post(items, to: member.httpPort)
            let took = ContinuousClock.now - started
            if let accepted {
                self.acknowledged += accepted
                self.refused += items.count - accepted
                self.ackMillis.append(Double(took.components.attoseconds) / 1e15 + Double(took.components.seconds) * 1_000)
            } else {
                self.refused += items.count
            }
        }
    }

    /// `POST /v1/events` of NDJSON lines; the count accepted, or nil when the node refused the batch.
    static func post(_ lines: [String], to port: Int) async -> Int? {
        let body = lines.joined(separator: "\n") + "\n"
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/events")
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(DemoCluster.secret)")
        request.headers.add(name: "Content-Type", value: "application/x-ndjson")
        request.body = .bytes(ByteBuffer(string: body))
        guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(30)),
            let data = try? await response.body.collect(upTo: 16 << 20), response.status.code == 200,
            let answer = try? JSONSerialization.jsonObject(with: Data(buffer: data)) as? [String: Any]
        else { return nil }
        return answer["accepted"] as? Int
    }
}
