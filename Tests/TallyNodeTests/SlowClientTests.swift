import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Testing
import TallyReplica
@testable import TallyNode

/// The HTTP front door over real loopback: clients too slow with their headers or body are cut off
/// at the configured deadlines, while a normal request on the same server is answered.
@Suite struct SlowClientTests {
    /// The node's HTTP server on a free loopback port, as `tally serve` builds it, once it listens.
    static func serve(_ node: Node, config: NodeConfig) async throws -> (port: Int, ServiceGroup, Task<Void, Error>) {
        let port = try await PeerTransport.freeLoopbackPorts(1)[0]
        let app = Application(router: API.router(node: node), server: API.server(config),
                              configuration: API.configuration(config, host: "127.0.0.1", port: port),
                              logger: Logger(label: "test"))
        let services = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [],
                                                         logger: Logger(label: "test")))
        let server = Task { try await services.run() }
        try await Self.waitUntilListening(port: port)
        return (port, services, server)
    }

    /// Returns once the server accepts connections on `port` (the whole suite in parallel can take
    /// a while to get there), or throws after 10 s.
    static func waitUntilListening(port: Int) async throws {
        for _ in 0..<200 {
            if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: port).get()
            {
                try? await channel.close()
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        _ = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
    }

    /// Opens a raw connection, writes `bytes`, and returns how long until the server closed it.
    static func secondsUntilClosed(port: Int, sending bytes: String, dripping: Bool) async throws -> Double {
        // The clock starts before the connection, so it is running whenever the server's deadline
        // starts (at accept): on a loaded machine this task may resume late after connecting, and a
        // clock started then read the 1 s deadline as 0.65 s (a CI flake).
        let started = ContinuousClock.now
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port).get()
        // Without a deadline the server never closes: give up after 8 s (the expectations then fail).
        let giveUp = channel.eventLoop.scheduleTask(in: .seconds(8)) { channel.close(promise: nil) }
        defer { giveUp.cancel() }
        if dripping {
            // A byte every 200 ms, never finishing the headers.
            let drip = Task {
                for byte in bytes.utf8 {
                    try? await channel.writeAndFlush(ByteBuffer(bytes: [byte]))
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
            defer { drip.cancel() }
            try await channel.closeFuture.get()
        } else {
            try await channel.writeAndFlush(ByteBuffer(string: bytes))
            try await channel.closeFuture.get()
        }
        let elapsed = ContinuousClock.now - started
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    @Test func slowHeadersAndAMissingBodyAreCutOff() async throws {
        let directory = NSTemporaryDirectory() + "tally-slow-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = try APITests.config(directory: directory) {
            $0.httpTimeouts = NodeConfig.HTTPTimeouts(head: .seconds(1), body: .milliseconds(1_500), keepAlive: .seconds(5))
        }
        let node = try await Node.start(config: config, clock: { APITests.now })
        let (port, services, server) = try await Self.serve(node, config: config)
        defer { server.cancel() }
        async let headers = Self.secondsUntilClosed(
            port: port, sending: "GET /v1/series HTTP/1.1\r\nHost: x\r\nX-Slow: " + String(repeating: "a", count: 100),
            dripping: true)
        async let body = Self.secondsUntilClosed(
            port: port, sending: "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(APITests.secret)\r\n"
                + "Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n[", dripping: false)
        let (headerSeconds, bodySeconds) = try await (headers, body)
        // Deadlines of 1 s and 1.5 s (after the head): generous upper bounds for a loaded machine.
        #expect(headerSeconds >= 0.9 && headerSeconds < 6, "slow headers held the connection \(headerSeconds) s")
        #expect(bodySeconds >= 1.4 && bodySeconds < 6, "a missing body held the connection \(bodySeconds) s")
        await services.triggerGracefulShutdown()
        await node.stop()
    }

    /// A client that asks for a large query and hangs up: the query stops (counted in /metrics)
    /// instead of working for nobody, and the node answers the next client.
    @Test func aQueryWhoseClientHangsUpStops() async throws {
        let directory = NSTemporaryDirectory() + "tally-gone-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = try APITests.config(directory: directory)
        let node = try await Node.start(config: config, clock: { APITests.now })
        // About 29,000 minute buckets: a day of minutes for each of 20 operations.
        for minute in stride(from: 0, to: 1_440, by: 48) {
            let items = (0..<(48 * 20)).map { index in
                BatchItem.event(Event(
                    service: "checkout", operation: "op-\(index % 20)", status: index % 7 == 0 ? 503 : 200,
                    latencyMicros: Double(1_000 + index), user: "u\(index)",
                    timestamp: APITests.now - .seconds(Int64(60 * (minute + index / 20)))))
            }
            guard case .accepted = await node.ingest(items: items, client: "test", idempotencyKey: nil) else {
                Issue.record("batch not accepted")
                return
            }
        }
        let (port, services, server) = try await Self.serve(node, config: config)
        defer { server.cancel() }
        let from = (APITests.now - .seconds(86_400)).millisecondsSinceEpoch
        let request = "GET /v1/query?service=checkout&from=\(from)&step=1m&group_by=operation"
            + "&metrics=count,errors,p50,p99,unique_users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(APITests.secret)\r\n\r\n"
        var stopped = false
        for _ in 0..<5 where !stopped {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: port).get()
            try await channel.writeAndFlush(ByteBuffer(string: request))
            try await channel.close()
            for _ in 0..<100 where !stopped {
                stopped = await node.metricsText().contains("tally_queries_stopped_total 1\n")
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        #expect(stopped, "no query stopped after its client hung up, five times over")
        // The same query from a client that waits is answered in full.
        let (status, _) = try await Self.exchange(port: port, request: request)
        #expect(status.hasPrefix("HTTP/1.1 200"), "\(status)")
        await services.triggerGracefulShutdown()
        await node.stop()
    }

    /// Sends `request` on a new connection and returns the status line and what followed, once the
    /// server has sent a complete answer (or closed).
    static func exchange(port: Int, request: String) async throws -> (status: String, rest: String) {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port)
            .flatMapThrowing { channel in
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }.get()
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: request))
            var text = ""
            for try await chunk in inbound {
                text += String(buffer: chunk)
                if let end = text.range(of: "\r\n\r\n"), let length = text[..<end.lowerBound]
                    .split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("content-length:") })
                    .flatMap({ Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }),
                    text.utf8.count - text[..<end.upperBound].utf8.count >= length
                {
                    break
                }
            }
            let status = String(text.prefix { $0 != "\r" })
            return (status, text)
        }
    }
}
