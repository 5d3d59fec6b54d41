import Foundation
import NIOCore
import NIOEmbedded
import Testing
import TallyAggregates
@testable import TallyNode

/// The OpenSSL handler between two embedded channels: bytes carried from one to the other by
/// the test, whole, one at a time, or in seeded random cuts, so every partial-record path of the
/// handshake and of the records after it runs.
@Suite(.serialized) struct OpenSSLHandlerTests {
    let directory: String
    let server: OpenSSLContext
    let client: OpenSSLContext

    init() throws {
        let directory = NSTemporaryDirectory() + "tally-openssl-\(UUID().uuidString)"
        self.directory = directory
        let ca = try ClusterCertificates.makeCA(name: "test CA", now: Date(), validFor: 30)
        try ClusterCertificates.writeCA(ca, to: directory, overwrite: false)
        func files(_ region: String) throws -> (String, String) {
            let identity = try NodeIdentity(region: region, node: "n1")
            let issued = try ClusterCertificates.issueNode(identity, dnsNames: [], ipAddresses: ["127.0.0.1"], ca: ca,
                                                           now: Date(), validFor: 1)
            let path = directory + "/" + region
            try ClusterCertificates.writeNode(issued, identity: identity, ca: ca.certificate, to: path, overwrite: true)
            return (path + "/n1.pem", path + "/n1-key.pem")
        }
        let (serverCertificate, serverKey) = try files("eu-west")
        let (clientCertificate, clientKey) = try files("us-east")
        self.server = try OpenSSLContext(server: true, certificatePath: serverCertificate, keyPath: serverKey,
                                         caPath: directory + "/ca.pem")
        self.client = try OpenSSLContext(server: false, certificatePath: clientCertificate, keyPath: clientKey,
                                         caPath: directory + "/ca.pem")
    }

    /// Collects what reaches the end of a pipeline: plaintext, errors, and whether it went inactive.
    final class Sink: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        var received: [UInt8] = []
        var errors: [String] = []
        var inactive = false
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            self.received += Array(buffer: self.unwrapInboundIn(data))
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { self.errors.append("\(error)") }
        func channelInactive(context: ChannelHandlerContext) { self.inactive = true }
    }

    struct Pair {
        let client: EmbeddedChannel
        let server: EmbeddedChannel
        let clientSink = Sink()
        let serverSink = Sink()
    }

    func pair(approveClient: OpenSSLHandler.Approve? = nil) throws -> Pair {
        let allow: OpenSSLHandler.Approve = { _ in nil }
        let pair = Pair(client: EmbeddedChannel(), server: EmbeddedChannel())
        try pair.client.pipeline.syncOperations.addHandler(OpenSSLHandler(context: self.client, approve: approveClient ?? allow))
        try pair.client.pipeline.syncOperations.addHandler(pair.clientSink)
        try pair.server.pipeline.syncOperations.addHandler(OpenSSLHandler(context: self.server, approve: allow))
        try pair.server.pipeline.syncOperations.addHandler(pair.serverSink)
        return pair
    }

    /// Moves every outbound byte from one channel to the other, cut as `cut` says, until neither
    /// side has anything to send and the approvals (run as tasks) have had their turn.
    func pump(_ pair: Pair, cut: (Int) -> [Int]) async throws {
        var idle = 0
        for _ in 0..<2_000 {
            var moved = false
            for (from, to) in [(pair.client, pair.server), (pair.server, pair.client)] {
                while let buffer = try from.readOutbound(as: ByteBuffer.self) {
                    moved = true
                    let bytes = Array(buffer: buffer)
                    var offset = 0
                    for length in cut(bytes.count) where to.isActive {
                        try to.writeInbound(ByteBuffer(bytes: bytes[offset..<offset + length]))
                        offset += length
                    }
                }
            }
            pair.client.embeddedEventLoop.run()
            pair.server.embeddedEventLoop.run()
            if moved {
                idle = 0
            } else {
                idle += 1
                if idle > 5 { return }
                try await Task.sleep(for: .milliseconds(2))  // an approval runs as a task
            }
        }
    }

    func roundTrip(cut: @escaping (Int) -> [Int]) async throws {
        let pair = try self.pair()
        try await pair.client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).get()
        try await pair.server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).get()
        // Written before the handshake: held until the peer is approved, then sent.
        let early = pair.client.eventLoop.makePromise(of: Void.self)
        pair.client.writeAndFlush(ByteBuffer(bytes: Array("hello from us-east".utf8)), promise: early)
        try await self.pump(pair, cut: cut)
        try await early.futureResult.get()
        #expect(pair.serverSink.received == Array("hello from us-east".utf8))
        // Records larger than one TLS record (16 KiB), both ways.
        var random = SeededRandom(seed: 3)
        let big = (0..<70_000).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        pair.server.writeAndFlush(ByteBuffer(bytes: big), promise: nil)
        pair.client.writeAndFlush(ByteBuffer(bytes: big.reversed()), promise: nil)
        try await self.pump(pair, cut: cut)
        #expect(pair.clientSink.received == big)
        #expect(pair.serverSink.received == Array("hello from us-east".utf8) + big.reversed())
        // close_notify: the client closes; the server sees it, answers and closes too, no error.
        pair.client.close(promise: nil)
        try await self.pump(pair, cut: cut)
        #expect(pair.server.isActive == false && pair.serverSink.inactive)
        #expect(pair.serverSink.errors.isEmpty && pair.clientSink.errors.isEmpty,
                "\(pair.serverSink.errors) \(pair.clientSink.errors)")
    }

    @Test func aHandshakeAndRecordsWhole() async throws {
        try await self.roundTrip { [$0] }
    }

    @Test func aHandshakeAndRecordsByteByByte() async throws {
        try await self.roundTrip { Array(repeating: 1, count: $0) }
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func aHandshakeAndRecordsInRandomCuts(seed: UInt64) async throws {
        var random = SeededRandom(seed: seed)
        try await self.roundTrip { count in
            var cuts: [Int] = []
            var left = count
            while left > 0 {
                let length = min(left, Int(random.next() % 700) + 1)
                cuts.append(length)
                left -= length
            }
            return cuts
        }
    }

    @Test func aConnectionThatEndsWithoutCloseNotifyIsTruncated() async throws {
        let pair = try self.pair()
        try await pair.client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).get()
        try await pair.server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).get()
        try await self.pump(pair) { [$0] }
        pair.server.pipeline.fireChannelInactive()  // the TCP connection just went away
        #expect(pair.serverSink.errors.contains { $0.contains("without TLS close_notify") }, "\(pair.serverSink.errors)")
    }

    @Test func aRefusalByTheIdentityCheckSendsNothingAndCloses() async throws {
        let pair = try self.pair(approveClient: { _ in "tally://eu-west/n1 is not a peer in this node's config" })
        try await pair.client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).get()
        try await pair.server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).get()
        let early = pair.client.eventLoop.makePromise(of: Void.self)
        pair.client.writeAndFlush(ByteBuffer(bytes: [1, 2, 3]), promise: early)
        try await self.pump(pair) { [$0] }
        await #expect(throws: (any Error).self) { try await early.futureResult.get() }
        #expect(pair.serverSink.received.isEmpty)
        #expect(pair.clientSink.errors.contains { $0.contains("is not a peer") }, "\(pair.clientSink.errors)")
    }
}
