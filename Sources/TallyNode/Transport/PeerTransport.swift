import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// A peer as the config names it: who it is and where to dial it.
public struct PeerEndpoint: Sendable, Equatable {
    public var identity: NodeIdentity
    public var host: String
    public var port: Int

    public init(identity: NodeIdentity, host: String, port: Int) {
        self.identity = identity
        self.host = host
        self.port = port
    }
}

/// The node's connections to its peers: TCP, TLS 1.3 only, mutual authentication against the
/// cluster CA, then a hello each way, then replication messages in frames.
///
/// Each node dials every peer and sends only on the connections it dialed; connections it accepts
/// only receive. So there is one connection per direction and no tie-breaking. A connection is
/// used only after both checks: the certificate (`PeerVerifier`) and the hello (the same identity,
/// a protocol version in common). A refused peer's frames are never delivered. Sends go into a
/// bounded per-connection queue; a full queue drops the message (gossip resends what matters), so a
/// slow peer never holds up the others. A lost connection is redialed with exponential backoff and
/// jitter.
public final class PeerTransport: Sendable {
    public struct Configuration: Sendable {
        public var identity: NodeIdentity
        public var incarnation: UInt64
        public var certificatePath: String
        public var keyPath: String
        public var caPath: String
        public var peers: [PeerEndpoint]
        public var frameBytesMax = Frame.defaultBytesMax
        /// Bytes written to a connection and not yet sent, above which messages to it are dropped.
        public var sendQueueBytesMax = 4 << 20
        public var reconnectInitial: Duration = .milliseconds(100)
        public var reconnectMax: Duration = .seconds(5)
        public var protocols = Hello.supportedProtocols

        public init(identity: NodeIdentity, incarnation: UInt64, certificatePath: String, keyPath: String,
                    caPath: String, peers: [PeerEndpoint])
        {
            self.identity = identity
            self.incarnation = incarnation
            self.certificatePath = certificatePath
            self.keyPath = keyPath
            self.caPath = caPath
            self.peers = peers
        }
    }

    /// What the transport knows of a peer, for `/v1/cluster` and the tests.
    public struct PeerStatus: Sendable {
        public var identity: NodeIdentity
        public var connected = false
        public var protocolVersion: UInt16?
        /// The peer's replica id (origin), from its hello.
        public var origin: UInt64?
        public var lastContact: Date?
        public var bytesIn = 0
        public var bytesOut = 0
        public var messagesDropped = 0
        public var lastError: String?
    }

    struct State {
        var outbound: [NodeIdentity: Channel] = [:]
        var pending: [NodeIdentity: Int] = [:]
        var status: [NodeIdentity: PeerStatus] = [:]
        var refusals: [String] = []
        var listener: Channel?
        var stopped = false
        /// Regions whose messages are dropped both ways (`setCut`).
        var cut: Set<String> = []
    }

    public let configuration: Configuration
    let group: EventLoopGroup
    let logger: Logger
    let onMessage: @Sendable (NodeIdentity, [UInt8]) -> Void
    let state = NIOLockedValueBox(State())
    let serverContext: NIOSSLContext
    let clientContext: NIOSSLContext
    let verifier: PeerVerifier
    let dialers = NIOLockedValueBox<[Task<Void, Never>]>([])

    public init(configuration: Configuration, group: EventLoopGroup, logger: Logger,
                onMessage: @escaping @Sendable (NodeIdentity, [UInt8]) -> Void) throws
    {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.onMessage = onMessage
        let chain = try NIOSSLCertificate.fromPEMFile(configuration.certificatePath).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: configuration.keyPath, format: .pem)
        let roots = try NIOSSLCertificate.fromPEMFile(configuration.caPath)
        func tls(_ base: TLSConfiguration) -> TLSConfiguration {
            var tls = base
            tls.certificateChain = chain
            tls.privateKey = .privateKey(key)
            tls.minimumTLSVersion = .tlsv13
            tls.maximumTLSVersion = .tlsv13
            // Identity is checked by `PeerVerifier` (the tally:// name against the config), which
            // replaces host-name checks: peers dial each other by address as often as by name.
            tls.certificateVerification = .noHostnameVerification
            tls.trustRoots = .certificates(roots)
            return tls
        }
        self.serverContext = try NIOSSLContext(configuration: tls(.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))))
        self.clientContext = try NIOSSLContext(configuration: tls(.makeClientConfiguration()))
        let ca = try ClusterCertificates.readCertificate(configuration.caPath)
        self.verifier = PeerVerifier(ca: ca, peers: Set(configuration.peers.map(\.identity)))
        self.state.withLockedValue { state in
            for peer in configuration.peers { state.status[peer.identity] = PeerStatus(identity: peer.identity) }
        }
    }

    // MARK: - Listening and dialing

    /// Listens on `host:port` (0: any free port) and starts dialing every peer; returns the port.
    public func start(host: String, port: Int) async throws -> Int {
        let bootstrap = ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try self.configure(channel, dialed: nil)
                }
            }
        let listener = try await bootstrap.bind(host: host, port: port).get()
        self.state.withLockedValue { $0.listener = listener }
        for peer in self.configuration.peers { self.dial(peer) }
        return listener.localAddress?.port ?? port
    }

    /// Stops dialing, says goodbye and closes every connection.
    public func shutdown() async {
        let (channels, listener) = self.state.withLockedValue { state -> ([Channel], Channel?) in
            state.stopped = true
            return (Array(state.outbound.values), state.listener)
        }
        for task in self.dialers.withLockedValue({ $0 }) { task.cancel() }
        for channel in channels {
            channel.writeAndFlush(ByteBuffer(bytes: Frame.goodbye("shutting down").encoded()), promise: nil)
            try? await channel.close()
        }
        try? await listener?.close()
    }

    private func dial(_ peer: PeerEndpoint) {
        let task = Task {
            var delay = self.configuration.reconnectInitial
            var random = SystemRandomNumberGenerator()
            while !Task.isCancelled && !self.state.withLockedValue({ $0.stopped }) {
                let established = await self.connectOnce(peer)
                if established { delay = self.configuration.reconnectInitial }
                // Jitter in [50%, 100%] of the delay, so peers that lost each other do not redial in step.
                let jittered = delay * Double.random(in: 0.5...1.0, using: &random)
                try? await Task.sleep(for: jittered)
                delay = min(delay * 2, self.configuration.reconnectMax)
            }
        }
        self.dialers.withLockedValue { $0.append(task) }
    }

    /// One connection to `peer`, until it closes. Returns whether it got as far as the hellos.
    private func connectOnce(_ peer: PeerEndpoint) async -> Bool {
        do {
            let channel = try await ClientBootstrap(group: self.group)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try self.configure(channel, dialed: peer.identity) }
                }
                .connect(host: peer.host, port: peer.port).get()
            try? await channel.closeFuture.get()
            return self.state.withLockedValue { $0.status[peer.identity]?.protocolVersion != nil }
        } catch {
            self.state.withLockedValue { $0.status[peer.identity]?.lastError = "\(error)" }
            return false
        }
    }

    private func configure(_ channel: Channel, dialed: NodeIdentity?) throws {
        let verified = NIOLockedValueBox<NodeIdentity?>(nil)
        let callback: NIOSSLCustomVerificationCallback = { certificates, promise in
            let chain = certificates.compactMap { try? $0.toDERBytes() }
            let remote = channel.remoteAddress.map { "\($0)" } ?? "unknown"
            Task {
                switch await self.verifier.verify(chain: chain, expected: dialed, now: Date()) {
                case .success(let identity):
                    verified.withLockedValue { $0 = identity }
                    promise.succeed(.certificateVerified)
                case .failure(let refusal):
                    self.refuse(remote: remote, reason: refusal.description)
                    promise.succeed(.failed)
                }
            }
        }
        let tls: ChannelHandler = dialed == nil
            ? NIOSSLServerHandler(context: self.serverContext, customVerificationCallback: callback)
            : try NIOSSLClientHandler(context: self.clientContext, serverHostname: nil, customVerificationCallback: callback)
        try channel.pipeline.syncOperations.addHandler(tls)
        try channel.pipeline.syncOperations.addHandler(
            PeerChannelHandler(transport: self, verified: verified, dialed: dialed))
    }

    func refuse(remote: String, reason: String) {
        self.logger.warning("refused peer connection", metadata: ["remote": "\(remote)", "reason": "\(reason)"])
        self.state.withLockedValue { state in
            state.refusals.append("\(remote): \(reason)")
            if state.refusals.count > 100 { state.refusals.removeFirst(state.refusals.count - 100) }
        }
    }

    // MARK: - Connections

    func established(_ identity: NodeIdentity, version: UInt16, origin: UInt64, channel: Channel, outbound: Bool) {
        self.state.withLockedValue { state in
            if outbound {
                state.outbound[identity] = channel
                state.pending[identity] = 0
            }
            state.status[identity]?.connected = true
            state.status[identity]?.protocolVersion = version
            state.status[identity]?.origin = origin
            state.status[identity]?.lastContact = Date()
            state.status[identity]?.lastError = nil
        }
        self.logger.info("peer connected", metadata: [
            "peer": "\(identity.uri)", "direction": "\(outbound ? "out" : "in")", "protocol": "\(version)",
        ])
    }

    func closed(_ identity: NodeIdentity?, channel: Channel, outbound: Bool, reason: String?) {
        guard let identity else { return }
        self.state.withLockedValue { state in
            if outbound, state.outbound[identity] === channel {
                state.outbound[identity] = nil
                state.status[identity]?.connected = false
            }
            if let reason { state.status[identity]?.lastError = reason }
        }
    }

    func received(_ bytes: [UInt8], from identity: NodeIdentity) {
        let isCut = self.state.withLockedValue { state in
            guard !state.cut.contains(identity.region) else { return true }
            state.status[identity]?.bytesIn += bytes.count
            state.status[identity]?.lastContact = Date()
            return false
        }
        if !isCut { self.onMessage(identity, bytes) }
    }

    /// Drops every message to and from `regions` while `isCut` (connections stay up): a network
    /// partition for `tally demo` and the tests, seen by the replicas exactly as a real one.
    public func setCut(_ regions: [String], _ isCut: Bool) {
        self.state.withLockedValue { state in
            if isCut { state.cut.formUnion(regions) } else { state.cut.subtract(regions) }
        }
    }

    /// Sends one replication message to the node of `region`; false when it is not connected or
    /// its queue is full (the message is dropped, and counted).
    @discardableResult
    public func send(_ message: [UInt8], toRegion region: String) -> Bool {
        guard let peer = self.configuration.peers.first(where: { $0.identity.region == region }) else { return false }
        let frame = Frame.message(message).encoded()
        let channel: Channel? = self.state.withLockedValue { state in
            guard !state.cut.contains(region), let channel = state.outbound[peer.identity] else { return nil }
            let pending = state.pending[peer.identity, default: 0]
            guard pending + frame.count <= self.configuration.sendQueueBytesMax else {
                state.status[peer.identity]?.messagesDropped += 1
                return nil
            }
            state.pending[peer.identity] = pending + frame.count
            state.status[peer.identity]?.bytesOut += frame.count
            return channel
        }
        guard let channel else { return false }
        let promise = channel.eventLoop.makePromise(of: Void.self)
        promise.futureResult.whenComplete { _ in
            self.state.withLockedValue { $0.pending[peer.identity, default: 0] -= frame.count }
        }
        channel.writeAndFlush(ByteBuffer(bytes: frame), promise: promise)
        return true
    }

    public var peers: [PeerStatus] {
        self.state.withLockedValue { state in
            self.configuration.peers.compactMap { state.status[$0.identity] }
        }
    }

    /// Loopback ports the OS reports free now (each bound to port 0, then closed): for the demo and
    /// the tests, which must know every node's port before any node starts.
    public static func freeLoopbackPorts(_ count: Int) async throws -> [Int] {
        var channels: [Channel] = []
        for _ in 0..<count {
            channels.append(try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(host: "127.0.0.1", port: 0).get())
        }
        let ports = channels.compactMap { $0.localAddress?.port }
        for channel in channels { try await channel.close() }
        return ports
    }

    /// The last refusals (at most 100), each "remote: reason".
    public var refusals: [String] { self.state.withLockedValue { $0.refusals } }
}

/// Frames in, after TLS: the hello exchange, then messages to the transport.
final class PeerChannelHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    let transport: PeerTransport
    let verified: NIOLockedValueBox<NodeIdentity?>
    let dialed: NodeIdentity?
    var decoder: FrameDecoder
    /// The peer, once its hello matched its certificate.
    var peer: NodeIdentity?
    var closing: String?

    init(transport: PeerTransport, verified: NIOLockedValueBox<NodeIdentity?>, dialed: NodeIdentity?) {
        self.transport = transport
        self.verified = verified
        self.dialed = dialed
        self.decoder = FrameDecoder(bytesMax: transport.configuration.frameBytesMax)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event as? TLSUserEvent ?? .shutdownCompleted {
            let configuration = self.transport.configuration
            let hello = Hello(protocols: configuration.protocols, node: configuration.identity.node,
                              region: configuration.identity.region, incarnation: configuration.incarnation)
            context.writeAndFlush(NIOAny(ByteBuffer(bytes: Frame.hello(hello).encoded())), promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        self.decoder.append(buffer.readBytes(length: buffer.readableBytes) ?? [])
        do {
            while let frame = try self.decoder.next() {
                try self.handle(frame, context: context)
            }
        } catch {
            self.close(context: context, reason: "\(error)")
        }
    }

    private func handle(_ frame: Frame, context: ChannelHandlerContext) throws {
        switch frame {
        case .hello(let hello):
            guard self.peer == nil else { throw HandshakeError.unexpectedFrame("a second hello") }
            guard let identity = self.verified.withLockedValue({ $0 }),
                hello.node == identity.node, hello.region == identity.region
            else {
                let remote = context.remoteAddress.map { "\($0)" } ?? "unknown"
                self.transport.refuse(remote: remote, reason: PeerRefusal.handshake(
                    "hello says \(hello.region)/\(hello.node), which is not the certificate's identity").description)
                throw HandshakeError.unexpectedFrame("hello does not match the certificate")
            }
            let version: UInt16
            do {
                version = try Hello.agree(mine: self.transport.configuration.protocols, theirs: hello.protocols)
            } catch {
                let remote = context.remoteAddress.map { "\($0)" } ?? "unknown"
                self.transport.refuse(remote: remote, reason: PeerRefusal.handshake(error.description).description)
                context.writeAndFlush(NIOAny(ByteBuffer(bytes: Frame.goodbye(error.description).encoded())), promise: nil)
                throw error
            }
            self.peer = identity
            self.transport.established(identity, version: version, origin: hello.incarnation, channel: context.channel,
                                       outbound: self.dialed != nil)
        case .message(let bytes):
            guard let peer = self.peer else { throw HandshakeError.unexpectedFrame("a message before the hello") }
            self.transport.received(bytes, from: peer)
        case .goodbye(let reason):
            self.close(context: context, reason: "peer said goodbye: \(reason)")
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let error = error as? NIOSSLError, case .handshakeFailed = error, self.peer == nil {
            let remote = context.remoteAddress.map { "\($0)" } ?? "unknown"
            self.transport.refuse(remote: remote, reason: "TLS handshake failed: \(error)")
        }
        self.close(context: context, reason: "\(error)")
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.transport.closed(self.peer, channel: context.channel, outbound: self.dialed != nil,
                              reason: self.closing ?? "connection closed")
        context.fireChannelInactive()
    }

    private func close(context: ChannelHandlerContext, reason: String) {
        guard self.closing == nil else { return }
        self.closing = reason
        context.close(promise: nil)
    }
}
