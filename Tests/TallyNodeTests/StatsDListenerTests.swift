import Foundation
import NIOCore
import NIOPosix
import Testing
import TallyAggregates
import TallyReplica
@testable import TallyNode

/// The StatsD listeners in process: a datagram's lines reach the node; TCP connections past the
/// bound are closed as they open, and a line past 64 KiB closes its connection, not the others.
@Suite struct StatsDListenerTests {
    static func withListener(_ body: @escaping @Sendable (Node, StatsDListener) async throws -> Void) async throws {
        let directory = NSTemporaryDirectory() + "tally-statsd-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = try APITests.config(directory: directory)
        let node = try await Node.start(config: config, clock: { APITests.now })
        var statsd = StatsDConfig(udp: ("127.0.0.1", 0), tcp: ("127.0.0.1", 0))
        statsd.connectionsMax = 2
        let listener = try await StatsDListener.start(node: node, config: statsd)
        do {
            try await body(node, listener)
        } catch {
            await listener.stop()
            await node.stop()
            throw error
        }
        await listener.stop()
        await node.stop()
    }

    static func connect(_ address: SocketAddress) async throws -> any Channel {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(to: address).get()
    }

    static func waitUntil(_ condition: () async -> Bool) async throws {
        for _ in 0..<300 where !(await condition()) { try await Task.sleep(for: .milliseconds(10)) }
    }

    @Test func linesReachTheNodeAndConnectionsAreBounded() async throws {
        try await Self.withListener { node, listener in
            let udp = listener.addresses[0]
            let tcp = listener.addresses[1]
            let sender = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(host: "127.0.0.1", port: 0).get()
            let datagram = "shop.cart:12|ms\nshop.cart:bad|ms\nshop.cart:5|c"
            try await sender.writeAndFlush(AddressedEnvelope(remoteAddress: udp, data: ByteBuffer(string: datagram)))
            try await Self.waitUntil { await node.totalRequests(excluding: []) == 6 }
            #expect(await node.totalRequests(excluding: []) == 6)
            try await sender.close()

            let first = try await Self.connect(tcp)
            let second = try await Self.connect(tcp)
            let third = try await Self.connect(tcp)
            // The third is over the bound of 2: closed by the listener.
            try await third.closeFuture.get()
            try await first.writeAndFlush(ByteBuffer(string: "shop.tcp:7|ms\n"))
            try await Self.waitUntil { await node.totalRequests(excluding: []) == 7 }
            #expect(await node.totalRequests(excluding: []) == 7)
            // A line that never ends: past 64 KiB the connection is closed; the other one goes on.
            try await second.writeAndFlush(ByteBuffer(repeating: UInt8(ascii: "x"), count: 70_000))
            try await second.closeFuture.get()
            try await first.writeAndFlush(ByteBuffer(string: "shop.tcp:8|ms\n"))
            try await Self.waitUntil { await node.totalRequests(excluding: []) == 8 }
            #expect(await node.totalRequests(excluding: []) == 8)
            try await first.close()
            // A closed connection frees its place.
            let again = try await Self.connect(tcp)
            try await again.writeAndFlush(ByteBuffer(string: "shop.tcp:9|ms\n"))
            try await Self.waitUntil { await node.totalRequests(excluding: []) == 9 }
            #expect(await node.totalRequests(excluding: []) == 9)
            try await again.close()
        }
    }
}
