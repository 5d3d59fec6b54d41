import COpenSSL
import Foundation
import NIOCore
import NIOEmbedded
import Testing
import TallyAggregates
@testable import TallyNode

/// The OpenSSL handler between two embedded channels: bytes carried from one to the other by
/// the test, whole, one at a time, or in seeded random cuts, so every partial-record path of the
/// handshake and of the records after it runs.
@Suite(.serialized) struct OpenSSLHandlerTests: CertificateFixture {
    let directory: String
    let ca: ClusterCertificates.Issued
    let server: OpenSSLContext
    let client: OpenSSLContext

    init() throws {
        let (directory, ca) = try Self.makeCA(prefix: "tally-openssl")
        (self.directory, self.ca) = (directory, ca)
        let server = try Self.certificate(try NodeIdentity(region: "eu-west", node: "n1"), name: "eu-west",
                                          in: directory, clusterCA: ca)
        let client = try Self.certificate(try NodeIdentity(region: "us-east", node: "n1"), name: "us-east",
                                          in: directory, clusterCA: ca)
        self.server = try OpenSSLContext(server: true, certificatePath: server.certificate, keyPath: server.key,
                                         caPath: directory + "/ca.pem")
        self.client = try OpenSSLContext(server: false, certificatePath: client.certificate, keyPath: client.key,
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

    func pair(approveClient: OpenSSLHandler.Approve? = nil, approveServer: OpenSSLHandler.Approve? = nil,
              heldWhileApprovingMax: Int = OpenSSLHandler.defaultHeldWhileApprovingMax) throws -> Pair {
        let allow: OpenSSLHandler.Approve = { _ in nil }
        let pair = Pair(client: EmbeddedChannel(), server: EmbeddedChannel())
        try pair.client.pipeline.syncOperations.addHandler(OpenSSLHandler(context: self.client, approve: approveClient ?? allow))
        try pair.client.pipeline.syncOperations.addHandler(pair.clientSink)
        try pair.server.pipeline.syncOperations.addHandler(OpenSSLHandler(
            context: self.server, approve: approveServer ?? allow, heldWhileApprovingMax: heldWhileApprovingMax))
        try pair.server.pipeline.syncOperations.addHandler(pair.serverSink)
        return pair
    }

    /// Moves every outbound byte from one channel to the other, cut as `cut` says, until neither
    /// side has anything to send and the approvals (run as tasks) have had their turn.
    func pump(_ pair: Pair, beforeEachWrite: () -> Void = {}, cut: (Int) -> [Int]) async throws {
        var idle = 0
        for _ in 0..<2_000 {
            var moved = false
            for (from, to) in [(pair.client, pair.server), (pair.server, pair.client)] {
                while let buffer = try from.readOutbound(as: ByteBuffer.self) {
                    moved = true
                    let bytes = Array(buffer: buffer)
                    var offset = 0
                    for length in cut(bytes.count) where to.isActive {
                        beforeEachWrite()
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

    func connected(_ pair: Pair) async throws {
        try await pair.client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).get()
        try await pair.server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).get()
    }

    static func bytes(_ count: Int, _ random: inout SeededRandom) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    }

    /// Seeded damage to the ciphertext of an open connection: a byte changed, a span overwritten,
    /// or bytes inserted, anywhere in three records. TLS 1.3 authenticates each record with its
    /// header, so the law is: what reaches the next handler is a prefix of what was sent, never
    /// all of it, and the connection ends with an error (at once, or as truncated when the damage
    /// made OpenSSL wait for bytes that never come).
    @Test(arguments: Array(1...16) as [UInt64])
    func damagedCiphertextIsNeverDelivered(seed: UInt64) async throws {
        var random = SeededRandom(seed: seed)
        let pair = try self.pair()
        try await self.connected(pair)
        try await self.pump(pair) { [$0] }
        let message = Self.bytes(40_000, &random)
        pair.client.writeAndFlush(ByteBuffer(bytes: message), promise: nil)
        var ciphertext: [UInt8] = []
        while let buffer = try pair.client.readOutbound(as: ByteBuffer.self) { ciphertext += Array(buffer: buffer) }
        let position = Int(random.next() % UInt64(ciphertext.count))
        let length = min(ciphertext.count - position, Int(random.next() % 64) + 1)
        switch random.next() % 3 {
        case 0:
            ciphertext[position] ^= UInt8(random.next() % 255 + 1)
        case 1:
            for index in position..<position + length { ciphertext[index] ^= UInt8(random.next() % 255 + 1) }
        default:
            ciphertext.insert(contentsOf: Self.bytes(length, &random), at: position)
        }
        try pair.server.writeInbound(ByteBuffer(bytes: ciphertext))
        pair.server.embeddedEventLoop.run()
        if pair.server.isActive { pair.server.pipeline.fireChannelInactive() }
        let received = pair.serverSink.received
        #expect(message.starts(with: received) && received.count < message.count,
                "delivered \(received.count) of \(message.count) bytes, damage at \(position)")
        #expect(!pair.serverSink.errors.isEmpty)
    }

    /// OpenSSL's error queue is per thread, and an event loop thread serves many connections (and
    /// anything else that calls OpenSSL): an error one of them left there must not be taken for
    /// this connection's, which would end a healthy handshake halfway (SSL_get_error looks at the
    /// queue before anything else).
    @Test func anErrorLeftOnTheThreadByOtherCodeDoesNotEndAConnection() async throws {
        let pair = try self.pair()
        try await self.connected(pair)
        let garbage: [UInt8] = [0x30, 0x82, 0xFF]
        let pollute = {
            garbage.withUnsafeBufferPointer { bytes in
                var cursor = bytes.baseAddress
                _ = d2i_X509(nil, &cursor, bytes.count)  // fails, and leaves its errors on the queue
            }
        }
        try await self.pump(pair, beforeEachWrite: pollute) { Array(repeating: 1, count: $0) }  // the handshake
        let message = Array("through the noise".utf8)
        pair.client.writeAndFlush(ByteBuffer(bytes: message), promise: nil)
        try await self.pump(pair, beforeEachWrite: {
            garbage.withUnsafeBufferPointer { bytes in
                var cursor = bytes.baseAddress
                _ = d2i_X509(nil, &cursor, bytes.count)  // fails, and leaves its errors on the queue
            }
        }) { Array(repeating: 1, count: $0) }
        #expect(pair.serverSink.received == message)
        #expect(pair.serverSink.errors.isEmpty && pair.clientSink.errors.isEmpty,
                "\(pair.serverSink.errors) \(pair.clientSink.errors)")
        _ = OpenSSLError.drainQueue()
    }

    /// Random bytes where a handshake should be, to either side, sometimes behind a plausible
    /// record header: a clean refusal (or a wait for more), no plaintext, no handshake announced.
    @Test(arguments: Array(1...16) as [UInt64])
    func randomBytesInPlaceOfAHandshake(seed: UInt64) async throws {
        var random = SeededRandom(seed: seed)
        let pair = try self.pair()
        try await self.connected(pair)
        _ = try pair.client.readOutbound(as: ByteBuffer.self)  // the ClientHello, dropped
        for channel in [pair.server, pair.client] {
            var garbage = Self.bytes(Int(random.next() % 3_000) + 1, &random)
            if random.next() % 2 == 0 {
                let length = UInt16(truncatingIfNeeded: random.next() % 20_000)
                garbage = [0x16, 0x03, 0x03, UInt8(length >> 8), UInt8(length & 0xFF)] + garbage
            }
            for _ in 0..<3 where channel.isActive {
                try channel.writeInbound(ByteBuffer(bytes: garbage))
                channel.embeddedEventLoop.run()
            }
        }
        #expect(pair.serverSink.received.isEmpty && pair.clientSink.received.isEmpty)
        #expect(pair.serverSink.errors.allSatisfy { $0.contains("TLS handshake failed") }, "\(pair.serverSink.errors)")
        #expect(pair.clientSink.errors.allSatisfy { $0.contains("TLS handshake failed") }, "\(pair.clientSink.errors)")
    }

    /// While the identity check decides, what the peer sends is held, up to a limit: past it the
    /// connection is dropped with the reason, and nothing held was passed on.
    @Test func aPeerThatFloodsWhileBeingApprovedIsDropped() async throws {
        let (gate, open) = AsyncStream<Void>.makeStream()
        defer { open.finish() }
        let pair = try self.pair(approveServer: { _ in
            for await _ in gate {}
            return nil
        }, heldWhileApprovingMax: 64 << 10)
        try await self.connected(pair)
        try await self.pump(pair) { [$0] }  // the client is done and approved; the server waits
        var random = SeededRandom(seed: 7)
        pair.client.writeAndFlush(ByteBuffer(bytes: Self.bytes(200_000, &random)), promise: nil)
        try await self.pump(pair) { [$0] }
        #expect(pair.serverSink.received.isEmpty)
        #expect(pair.serverSink.errors.contains { $0.contains("before its identity was approved") }, "\(pair.serverSink.errors)")
        #expect(!pair.server.isActive)
    }

    /// Below the limit the held bytes are delivered, whole, once the check approves.
    @Test func whatArrivesWhileBeingApprovedIsDeliveredAfter() async throws {
        let (gate, open) = AsyncStream<Void>.makeStream()
        let pair = try self.pair(approveServer: { _ in
            for await _ in gate {}
            return nil
        }, heldWhileApprovingMax: 64 << 10)
        try await self.connected(pair)
        try await self.pump(pair) { [$0] }
        var random = SeededRandom(seed: 8)
        let message = Self.bytes(30_000, &random)
        pair.client.writeAndFlush(ByteBuffer(bytes: message), promise: nil)
        try await self.pump(pair) { [$0] }
        #expect(pair.serverSink.received.isEmpty && pair.server.isActive)
        open.finish()
        try await self.pump(pair) { [$0] }
        #expect(pair.serverSink.received == message)
        #expect(pair.serverSink.errors.isEmpty, "\(pair.serverSink.errors)")
    }
}
