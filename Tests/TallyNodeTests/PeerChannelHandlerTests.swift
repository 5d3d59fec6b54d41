import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing
@testable import TallyNode

/// The peer port's protocol rules in an `EmbeddedChannel` on its virtual clock: every violation
/// closes the connection and is refused out loud, with its reason, and nothing reaches the node.
@Suite struct PeerChannelHandlerTests {
    static let usEast = try! NodeIdentity(region: "us-east", node: "n1")
    static let euWest = try! NodeIdentity(region: "eu-west", node: "n1")

    /// An insecure transport (no TLS to set up) of eu-west that knows us-east, never started, and
    /// an inbound connection to it.
    static func connection(protocols: ClosedRange<UInt16> = Hello.supportedProtocols) throws
        -> (channel: EmbeddedChannel, transport: PeerTransport, delivered: NIOLockedValueBox<[[UInt8]]>)
    {
        var configuration = PeerTransport.Configuration(
            identity: Self.euWest, incarnation: 1, certificatePath: "", keyPath: "", caPath: "",
            peers: [PeerEndpoint(identity: Self.usEast, host: "127.0.0.1", port: 1)])
        configuration.insecure = true
        configuration.protocols = protocols
        configuration.frameBytesMax = 1_024
        let delivered = NIOLockedValueBox<[[UInt8]]>([])
        let transport = try PeerTransport(configuration: configuration, group: MultiThreadedEventLoopGroup.singleton,
                                          logger: Logger(label: "test")) { _, bytes in
            delivered.withLockedValue { $0.append(bytes) }
        }
        let channel = EmbeddedChannel(handler: PeerChannelHandler(
            transport: transport, verified: NIOLockedValueBox(nil), dialed: nil, insecure: true))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        // The handler says hello first (insecure: no TLS handshake to wait for).
        let hello = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(hello.readableBytes > 8)
        return (channel, transport, delivered)
    }

    static func hello(_ identity: NodeIdentity = Self.usEast, protocols: ClosedRange<UInt16> = Hello.supportedProtocols)
        -> ByteBuffer
    {
        ByteBuffer(bytes: Frame.hello(Hello(protocols: protocols, node: identity.node, region: identity.region,
                                            incarnation: 7)).encoded())
    }

    /// Sends `bytes` on a fresh connection; returns whether it closed and the refusals listed.
    static func violation(_ bytes: [ByteBuffer]) throws -> (closed: Bool, refusals: [String], delivered: Int) {
        let (channel, transport, delivered) = try Self.connection()
        for buffer in bytes where channel.isActive { try channel.writeInbound(buffer) }
        channel.embeddedEventLoop.run()
        return (!channel.isActive, transport.refusals, delivered.withLockedValue { $0.count })
    }

    @Test func aMessageBeforeTheHelloIsRefused() throws {
        let result = try Self.violation([ByteBuffer(bytes: Frame.message([1, 2, 3]).encoded())])
        #expect(result.closed && result.delivered == 0)
        #expect(result.refusals.contains { $0.contains("a message before the hello") }, "\(result.refusals)")
    }

    @Test func bytesThatAreNoFrameAreRefusedNamingWhy() throws {
        let unknownKind = try Self.violation([ByteBuffer(bytes: [0, 0, 0, 1, 9])])
        #expect(unknownKind.closed)
        #expect(unknownKind.refusals.contains { $0.contains("frame kind 9") }, "\(unknownKind.refusals)")
        let tooLong = try Self.violation([ByteBuffer(bytes: [0, 0x10, 0, 0, 2])])
        #expect(tooLong.closed)
        #expect(tooLong.refusals.contains { $0.contains("over the limit of 1024") }, "\(tooLong.refusals)")
        let empty = try Self.violation([ByteBuffer(bytes: [0, 0, 0, 0])])
        #expect(empty.closed && empty.refusals.contains { $0.contains("length 0") }, "\(empty.refusals)")
    }

    @Test func aStrangerOrAnImpossibleHelloIsRefused() throws {
        let stranger = try Self.violation([Self.hello(try NodeIdentity(region: "ap-south", node: "n9"))])
        #expect(stranger.closed)
        #expect(stranger.refusals.contains { $0.contains("tally://ap-south/n9 is not a peer") }, "\(stranger.refusals)")
        var garbled = ByteBuffer(bytes: [0, 0, 0, 5, 1])
        garbled.writeBytes(Array("TALX".utf8))
        let notTally = try Self.violation([garbled])
        #expect(notTally.closed && notTally.refusals.contains { $0.contains("malformed hello") }, "\(notTally.refusals)")
    }

    @Test func noProtocolInCommonIsRefusedWithAGoodbyeNamingBothRanges() throws {
        let (channel, transport, _) = try Self.connection(protocols: 1...2)
        try channel.writeInbound(Self.hello(protocols: 5...6))
        #expect(!channel.isActive)
        #expect(transport.refusals.contains { $0.contains("this node speaks 1...2, the peer 5...6") }, "\(transport.refusals)")
        let goodbye = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: goodbye).contains("no protocol version in common"))
    }

    @Test func aSecondHelloOrAReadBelowProtocol2ClosesTheConnection() throws {
        let second = try Self.violation([Self.hello(), Self.hello()])
        #expect(second.closed)
        let (channel, transport, _) = try Self.connection()
        try channel.writeInbound(Self.hello(protocols: 1...1))
        #expect(channel.isActive)
        #expect(transport.peers.first?.protocolVersion == 1)
        try? channel.writeInbound(ByteBuffer(bytes: Frame.read([1]).encoded()))
        #expect(!channel.isActive)
    }

    @Test func aConnectionThatNeverSaysHelloIsClosedAtTheHandshakeDeadline() throws {
        let (channel, transport, _) = try Self.connection()
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
        #expect(transport.refusals.contains { $0.contains("no TLS handshake and hello within 10") }, "\(transport.refusals)")
    }

    @Test func afterTheHelloMessagesReachTheNodeInOrder() throws {
        let (channel, _, delivered) = try Self.connection()
        try channel.writeInbound(Self.hello())
        for byte in UInt8(1)...5 { try channel.writeInbound(ByteBuffer(bytes: Frame.message([byte]).encoded())) }
        #expect(channel.isActive)
        #expect(delivered.withLockedValue { $0 } == [[1], [2], [3], [4], [5]])
    }
}
