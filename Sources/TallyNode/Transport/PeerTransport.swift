import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOTLS
import TallyNodeCore

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
        /// At most one dial every 1-2 s to a peer that keeps failing or refusing, and a reconnect at most
        /// about 2 s after a network heals.
        public var reconnectMax: Duration = .seconds(2)
        public var protocols = Hello.supportedProtocols
        /// A connection that has not finished its TLS handshake and hello by then is closed (one
        /// that never did stayed open for 20 minutes and more).
        public var handshakeTimeout: Duration = .seconds(10)
        /// Most inbound connections still in their handshake at once; more are closed on arrival
        /// (a flood of 11,706 of them grew a node by 214 MB).
        public var handshakingMax = 64
        /// Plaintext, unauthenticated connections (`insecure: true` in the config): no TLS, and a
        /// peer is whoever its hello claims, if the config lists it. The TLS paths are unused.
        public var insecure = false

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
        /// The peers in force (the configuration's, until a reload changes them), by region.
        var peers: [String: PeerEndpoint] = [:]
        /// The same peers in config order, for listings.
        var peerOrder: [PeerEndpoint] = []
        /// Every connection past its hello, either direction: a reload closes those it affects.
        var connections: [ObjectIdentifier: (identity: NodeIdentity, channel: Channel)] = [:]
        var outbound: [NodeIdentity: Channel] = [:]
        var pending: [NodeIdentity: Int] = [:]
        var status: [NodeIdentity: PeerStatus] = [:]
        var refusals: [String] = []
        var listener: Channel?
        var stopped = false
        /// Per peer, how many connections this node dialed got past their hellos: the dialer
        /// resets its backoff only when its own attempt did.
        var establishedOutbound: [NodeIdentity: Int] = [:]
        /// Inbound connections in their handshake, and those already counted out of it.
        var handshaking = 0
        var handshakingChannels: Set<ObjectIdentifier> = []
        /// Regions whose messages are dropped both ways (`setCut`).
        var cut: Set<String> = []
    }

    /// The configuration the transport started with; peers and certificates may since have been
    /// reloaded (`reload`), the rest (identity, limits, protocols) is fixed for its lifetime.
    public let configuration: Configuration
    let group: EventLoopGroup
    let logger: Logger
    let onMessage: @Sendable (NodeIdentity, [UInt8]) -> Void
    let state = NIOLockedValueBox(State())
    /// The TLS contexts and verifier for new connections: replaced whole by a reload (nil: insecure).
    let security: NIOLockedValueBox<Security?>
    let dialers = NIOLockedValueBox<[NodeIdentity: Task<Void, Never>]>([:])
    /// Where `read` frames (global reads) go; nil: they are dropped.
    let readHandler = NIOLockedValueBox<(@Sendable (NodeIdentity, [UInt8]) -> Void)?>(nil)

    /// The lowest protocol version that carries `read` frames.
    public static let readProtocol: UInt16 = NodeCore.globalReadProtocol

    /// A TLS file that cannot be used, named by its config key (`cluster.tls.KEY`) and path.
    public struct TLSFileError: Error, CustomStringConvertible {
        public var key: String
        public var path: String
        public var problem: String
        public var description: String { "cluster.tls.\(self.key): \(self.path) \(self.problem)" }
    }

    /// What a connection is made with: this node's certificate and key, the cluster CA, the peers.
    struct Security {
        var serverContext: OpenSSLContext
        var clientContext: OpenSSLContext
        var verifier: PeerVerifier
        /// The PEM bytes the contexts were made from: a reload that changes none keeps connections.
        var files: [[UInt8]]

        init(certificatePath: String, keyPath: String, caPath: String, peers: [PeerEndpoint]) throws {
            // Each file named, with what is wrong with it.
            for (key, path) in [("certificate", certificatePath), ("key", keyPath), ("ca", caPath)] {
                guard FileManager.default.isReadableFile(atPath: path) else {
                    throw TLSFileError(key: key, path: path, problem: FileManager.default.fileExists(atPath: path)
                        ? "cannot be read (permissions?)" : "does not exist")
                }
            }
            // The system's OpenSSL: it verifies the peer's chain against the CA; `PeerVerifier` then
            // checks the tally:// identity against the config, which replaces host-name checks
            // (peers dial each other by address as often as by name).
            func context(server: Bool) throws -> OpenSSLContext {
                do {
                    return try OpenSSLContext(server: server, certificatePath: certificatePath, keyPath: keyPath,
                                              caPath: caPath)
                } catch let error as OpenSSLContext.FileError {
                    let path = ["certificate": certificatePath, "key": keyPath, "ca": caPath][error.key] ?? ""
                    throw TLSFileError(key: error.key, path: path, problem: error.problem)
                }
            }
            self.serverContext = try context(server: true)
            self.clientContext = try context(server: false)
            let ca = try ClusterCertificates.readCertificate(caPath)
            self.verifier = PeerVerifier(ca: ca, peers: Set(peers.map(\.identity)))
            self.files = try [certificatePath, keyPath, caPath].map { path in
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw ClusterCertificateError.file(path: path, reason: "cannot be read")
                }
                return Array(data)
            }
        }
    }

    public init(configuration: Configuration, group: EventLoopGroup, logger: Logger,
                onMessage: @escaping @Sendable (NodeIdentity, [UInt8]) -> Void) throws
    {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.onMessage = onMessage
        self.security = NIOLockedValueBox(configuration.insecure ? nil : try Security(
            certificatePath: configuration.certificatePath, keyPath: configuration.keyPath,
            caPath: configuration.caPath, peers: configuration.peers))
        if configuration.insecure {
            logger.critical("""
                INSECURE: peer connections are plaintext and unauthenticated (cluster.insecure: true); \
                anyone who can reach the peer port can claim to be a peer. Never run this outside a test.
                """)
        }
        self.state.withLockedValue { state in
            state.peerOrder = configuration.peers
            for peer in configuration.peers {
                state.peers[peer.identity.region] = peer
                state.status[peer.identity] = PeerStatus(identity: peer.identity)
            }
        }
    }

    /// What a reload changed.
    public struct ReloadSummary: Sendable, Equatable {
        public var added: [NodeIdentity] = []
        public var removed: [NodeIdentity] = []
        /// The certificate, key or CA file changed: every connection was closed and is redialed
        /// with the new files.
        public var certificatesChanged = false
    }

    /// Loads the certificate, key and CA files again and replaces the peers. Files that do not load
    /// throw and change nothing. Removed peers are disconnected at once and their frames no longer
    /// delivered; added peers are dialed; new certificate files close every connection, so both
    /// sides handshake again with what is now in force.
    @discardableResult
    public func reload(certificatePath: String, keyPath: String, caPath: String, peers: [PeerEndpoint]) throws
        -> ReloadSummary
    {
        let fresh = self.configuration.insecure
            ? nil : try Security(certificatePath: certificatePath, keyPath: keyPath, caPath: caPath, peers: peers)
        var summary = ReloadSummary()
        let (toClose, added) = self.security.withLockedValue { security in
            summary.certificatesChanged = security?.files != fresh?.files
            security = fresh
            return self.state.withLockedValue { state -> ([Channel], [PeerEndpoint]) in
                let wanted = Dictionary(peers.map { ($0.identity.region, $0) }, uniquingKeysWith: { first, _ in first })
                // A peer whose identity or address changed is removed and added again.
                let removed = state.peers.values.filter { wanted[$0.identity.region] != $0 }
                let added = wanted.values.filter { state.peers[$0.identity.region] != $0 }
                summary.removed = removed.map(\.identity).sorted { $0.uri < $1.uri }
                summary.added = added.map(\.identity).sorted { $0.uri < $1.uri }
                let gone = Set(removed.map(\.identity)).subtracting(added.map(\.identity))
                for identity in gone { state.status[identity] = nil }
                for peer in added where state.status[peer.identity] == nil {
                    state.status[peer.identity] = PeerStatus(identity: peer.identity)
                }
                state.peers = wanted
                state.peerOrder = peers.filter { wanted[$0.identity.region] == $0 }
                let affected = Set(removed.map(\.identity))
                let closing = state.connections.values
                    .filter { summary.certificatesChanged || affected.contains($0.identity) }
                    .map(\.channel)
                return (closing, added.sorted { $0.identity.uri < $1.identity.uri })
            }
        }
        for identity in summary.removed {
            self.dialers.withLockedValue { $0.removeValue(forKey: identity) }?.cancel()
        }
        for channel in toClose {
            channel.writeAndFlush(ByteBuffer(bytes: Frame.goodbye("configuration reloaded").encoded()), promise: nil)
            channel.close(promise: nil)
        }
        for peer in added { self.dial(peer) }
        self.logger.info("peer transport reloaded", metadata: [
            "added": "\(summary.added.map(\.uri))", "removed": "\(summary.removed.map(\.uri))",
            "certificates_changed": "\(summary.certificatesChanged)",
        ])
        return summary
    }

    // MARK: - Listening and dialing

    /// Listens on `host:port` (0: any free port) and starts dialing every peer; returns the port.
    public func start(host: String, port: Int) async throws -> Int {
        let bootstrap = ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                guard self.startHandshake() else {
                    self.logger.warning("peer connection refused: too many handshakes under way", metadata: [
                        "remote": "\(channel.remoteAddress.map { "\($0)" } ?? "unknown")",
                        "limit": "\(self.configuration.handshakingMax)",
                    ])
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in self.endHandshake(channel, closed: true) }
                return channel.eventLoop.makeCompletedFuture {
                    try self.configure(channel, dialed: nil)
                }
            }
        let listener = try await bootstrap.bind(host: host, port: port).get()
        self.state.withLockedValue { $0.listener = listener }
        for peer in self.currentPeers { self.dial(peer) }
        return listener.localAddress?.port ?? port
    }

    /// Counts an inbound connection into its handshake; false when `handshakingMax` are already.
    private func startHandshake() -> Bool {
        self.state.withLockedValue { state in
            guard state.handshaking < self.configuration.handshakingMax else { return false }
            state.handshaking += 1
            return true
        }
    }

    /// An inbound connection finished its handshake, or closed: it stops counting against
    /// `handshakingMax` at the first of the two. Connections past their handshake are remembered
    /// until they close, so each is counted out once.
    func endHandshake(_ channel: Channel, closed: Bool) {
        let id = ObjectIdentifier(channel)
        self.state.withLockedValue { state in
            if closed {
                if state.handshakingChannels.remove(id) == nil { state.handshaking -= 1 }
            } else if state.handshakingChannels.insert(id).inserted {
                state.handshaking -= 1
            }
        }
    }

    /// Stops dialing, says goodbye and closes every connection.
    public func shutdown() async {
        let (channels, listener) = self.state.withLockedValue { state -> ([Channel], Channel?) in
            state.stopped = true
            return (Array(state.outbound.values), state.listener)
        }
        for task in self.dialers.withLockedValue({ $0.values }) { task.cancel() }
        for channel in channels {
            channel.writeAndFlush(ByteBuffer(bytes: Frame.goodbye("shutting down").encoded()), promise: nil)
            try? await channel.close()
        }
        try? await listener?.close()
    }

    func isPeer(_ identity: NodeIdentity) -> Bool {
        self.state.withLockedValue { $0.peers[identity.region]?.identity == identity }
    }

    /// The peers in force, in config order.
    var currentPeers: [PeerEndpoint] { self.state.withLockedValue { $0.peerOrder } }

    private func dial(_ peer: PeerEndpoint) {
        let task = Task {
            var delay = self.configuration.reconnectInitial
            var random = SystemRandomNumberGenerator()
            // Until shutdown, or until a reload removes the peer (or changes its address).
            while !Task.isCancelled && self.state.withLockedValue({ !$0.stopped && $0.peers[peer.identity.region] == peer }) {
                let established = await self.connectOnce(peer)
                if established { delay = self.configuration.reconnectInitial }
                // Jitter in [50%, 100%] of the delay, so peers that lost each other do not redial in step.
                let jittered = delay * Double.random(in: 0.5...1.0, using: &random)
                try? await Task.sleep(for: jittered)
                delay = min(delay * 2, self.configuration.reconnectMax)
            }
        }
        self.dialers.withLockedValue { $0[peer.identity] = task }
    }

    /// One connection to `peer`, until it closes. Returns whether it got as far as the hellos.
    /// (Not whether the peer ever did: a peer that refuses this node after an earlier success is
    /// redialed with the backoff, not 13 times a second.)
    private func connectOnce(_ peer: PeerEndpoint) async -> Bool {
        let before = self.state.withLockedValue { $0.establishedOutbound[peer.identity, default: 0] }
        do {
            let channel = try await ClientBootstrap(group: self.group)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try self.configure(channel, dialed: peer.identity) }
                }
                .connect(host: peer.host, port: peer.port).get()
            try? await channel.closeFuture.get()
            return self.state.withLockedValue { $0.establishedOutbound[peer.identity, default: 0] > before }
        } catch {
            self.state.withLockedValue { $0.status[peer.identity]?.lastError = "\(error)" }
            return false
        }
    }

    private func configure(_ channel: Channel, dialed: NodeIdentity?) throws {
        let verified = NIOLockedValueBox<NodeIdentity?>(nil)
        guard let security = self.security.withLockedValue({ $0 }) else {
            // Insecure: no TLS; the hello alone says who the peer is (`PeerChannelHandler`).
            try channel.pipeline.syncOperations.addHandler(
                PeerChannelHandler(transport: self, verified: verified, dialed: dialed, insecure: true))
            return
        }
        let remote = channel.remoteAddress.map { "\($0)" } ?? "unknown"
        let verifier = security.verifier
        // OpenSSL has verified the chain against the cluster CA; this is the identity check.
        let approve: OpenSSLHandler.Approve = { chain in
            switch await verifier.verify(chain: chain, expected: dialed, now: Date()) {
            case .success(let identity):
                verified.withLockedValue { $0 = identity }
                return nil
            case .failure(let refusal):
                self.refuse(remote: remote, reason: refusal.description)
                return refusal.description
            }
        }
        let tls = try OpenSSLHandler(context: dialed == nil ? security.serverContext : security.clientContext,
                                     approve: approve)
        try channel.pipeline.syncOperations.addHandler(tls)
        try channel.pipeline.syncOperations.addHandler(
            PeerChannelHandler(transport: self, verified: verified, dialed: dialed, insecure: false))
    }

    func refuse(remote: String, reason: String) {
        self.logger.warning("refused peer connection", metadata: ["remote": "\(remote)", "reason": "\(reason)"])
        self.state.withLockedValue { state in
            state.refusals.append("\(remote): \(reason)")
            if state.refusals.count > 100 { state.refusals.removeFirst(state.refusals.count - 100) }
        }
    }

    // MARK: - Connections

    /// A connection passed its hello. False when the peer was removed meanwhile (a reload between
    /// the certificate check and the hello): the caller closes it.
    func established(_ identity: NodeIdentity, version: UInt16, origin: UInt64, channel: Channel, outbound: Bool)
        -> Bool
    {
        let current = self.state.withLockedValue { state -> Bool in
            guard state.peers[identity.region]?.identity == identity else { return false }
            state.connections[ObjectIdentifier(channel)] = (identity, channel)
            if outbound {
                // "Connected" means this node can send to it: on the connection it dialed.
                state.outbound[identity] = channel
                state.pending[identity] = 0
                state.status[identity]?.connected = true
                state.establishedOutbound[identity, default: 0] += 1
            }
            state.status[identity]?.protocolVersion = version
            state.status[identity]?.origin = origin
            state.status[identity]?.lastContact = Date()
            state.status[identity]?.lastError = nil
            return true
        }
        guard current else { return false }
        self.logger.info("peer connected", metadata: [
            "peer": "\(identity.uri)", "direction": "\(outbound ? "out" : "in")", "protocol": "\(version)",
        ])
        return true
    }

    func closed(_ identity: NodeIdentity?, channel: Channel, outbound: Bool, reason: String?) {
        guard let identity else { return }
        self.state.withLockedValue { state in
            state.connections[ObjectIdentifier(channel)] = nil
            if outbound, state.outbound[identity] === channel {
                state.outbound[identity] = nil
                state.status[identity]?.connected = false
            }
            if let reason { state.status[identity]?.lastError = reason }
        }
    }

    func received(_ bytes: [UInt8], from identity: NodeIdentity) {
        if self.admit(bytes.count, from: identity) { self.onMessage(identity, bytes) }
    }

    /// Whether a frame's payload from `identity` may be delivered, counting it when so: not while
    /// its region is cut, and never from a peer a reload removed (its connection is closing).
    private func admit(_ count: Int, from identity: NodeIdentity) -> Bool {
        self.state.withLockedValue { state in
            guard !state.cut.contains(identity.region), state.peers[identity.region]?.identity == identity else {
                return false
            }
            state.status[identity]?.bytesIn += count
            state.status[identity]?.lastContact = Date()
            return true
        }
    }

    /// Test hook: stops (or resumes) reading from every connection, so that peers sending to this
    /// node see a slow receiver (TCP pushes back, their send queues fill).
    func setReading(_ reading: Bool) {
        let channels = self.state.withLockedValue { $0.connections.values.map(\.channel) }
        for channel in channels {
            channel.setOption(ChannelOptions.autoRead, value: reading).whenSuccess {
                if reading { channel.read() }
            }
        }
    }

    /// Global reads: `read` frames from peers go to `handler`.
    public func onRead(_ handler: @escaping @Sendable (NodeIdentity, [UInt8]) -> Void) {
        self.readHandler.withLockedValue { $0 = handler }
    }

    func receivedRead(_ bytes: [UInt8], from identity: NodeIdentity) {
        if self.admit(bytes.count, from: identity), let handler = self.readHandler.withLockedValue({ $0 }) {
            handler(identity, bytes)
        }
    }

    /// Sends a global read's request or answer to the node of `region`; nil when sent, else why
    /// not: not connected, the peer speaks a protocol before reads, or its queue is full.
    public func sendRead(_ bytes: [UInt8], toRegion region: String) -> String? {
        self.enqueue(Self.frame(.read, bytes), toRegion: region, minimumProtocol: Self.readProtocol)
    }

    /// Drops every message to and from `regions` while `isCut` (connections stay up): a network
    /// partition for `tally demo` and the tests, seen by the replicas exactly as a real one.
    package func setCut(_ regions: [String], _ isCut: Bool) {
        self.state.withLockedValue { state in
            if isCut { state.cut.formUnion(regions) } else { state.cut.subtract(regions) }
        }
    }

    /// Sends one replication message to the node of `region`; false when it is not connected or
    /// its queue is full (the message is dropped, and counted).
    @discardableResult
    public func send(_ message: [UInt8], toRegion region: String) -> Bool {
        self.enqueue(Self.frame(.message, message), toRegion: region, minimumProtocol: 1) == nil
    }

    /// Sends one replication message encoded for a connection at `protocolVersion`; nil when sent,
    /// else why not. A connection that agreed another version (the peer restarted on another
    /// release since the node encoded it) does not carry it: the peer could misread it.
    public func send(_ message: [UInt8], toRegion region: String, protocolVersion: UInt16) -> String? {
        self.enqueue(Self.frame(.message, message), toRegion: region, minimumProtocol: 1, exactly: protocolVersion)
    }

    /// A message or read frame written straight into the buffer the channel sends (one copy of the
    /// payload; `Frame.encoded()` makes the same bytes, `FrameTests` checks they agree).
    static func frame(_ kind: Frame.Kind, _ payload: [UInt8]) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 5 + payload.count)
        buffer.writeInteger(UInt32(1 + payload.count))
        buffer.writeInteger(kind.rawValue)
        buffer.writeBytes(payload)
        return buffer
    }

    /// Queues a frame on the connection this node dialed to `region`; nil when queued, else why not.
    /// A frame larger than the queue's limit still goes when nothing is queued, or it never would.
    private func enqueue(_ frame: ByteBuffer, toRegion region: String, minimumProtocol: UInt16,
                         exactly: UInt16? = nil) -> String?
    {
        let size = frame.readableBytes
        let sending: Result<(Channel, PeerEndpoint), PeerUnavailable> = self.state.withLockedValue { state in
            guard let peer = state.peers[region] else { return .failure(.init("not a peer")) }
            guard !state.cut.contains(region), let channel = state.outbound[peer.identity] else {
                return .failure(.init("not connected"))
            }
            let version = state.status[peer.identity]?.protocolVersion ?? 0
            guard version >= minimumProtocol else {
                return .failure(.init("speaks protocol \(version); this needs \(minimumProtocol)"))
            }
            if let exactly, version != exactly {
                state.status[peer.identity]?.messagesDropped += 1
                return .failure(.init("encoded for protocol \(exactly); the connection speaks \(version)"))
            }
            let pending = state.pending[peer.identity, default: 0]
            guard pending == 0 || pending + size <= self.configuration.sendQueueBytesMax else {
                state.status[peer.identity]?.messagesDropped += 1
                return .failure(.init("send queue full"))
            }
            state.pending[peer.identity] = pending + size
            state.status[peer.identity]?.bytesOut += size
            return .success((channel, peer))
        }
        let channel: Channel
        let peer: PeerEndpoint
        switch sending {
        case .success(let found): (channel, peer) = found
        case .failure(let reason): return reason.reason
        }
        let promise = channel.eventLoop.makePromise(of: Void.self)
        promise.futureResult.whenComplete { _ in
            self.state.withLockedValue { $0.pending[peer.identity, default: 0] -= size }
        }
        channel.writeAndFlush(frame, promise: promise)
        return nil
    }

    struct PeerUnavailable: Error {
        var reason: String
        init(_ reason: String) { self.reason = reason }
    }

    public var peers: [PeerStatus] {
        self.state.withLockedValue { state in
            state.peerOrder.compactMap { state.status[$0.identity] }
        }
    }

    /// Loopback ports the OS reports free now (each bound to port 0, then closed): for the demo and
    /// the tests, which must know every node's port before any node starts.
    package static func freeLoopbackPorts(_ count: Int) async throws -> [Int] {
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
    /// No TLS below: send the hello as soon as the connection is up, and take the peer's identity
    /// from its hello (checked against the config only).
    let insecure: Bool
    var decoder: FrameDecoder
    /// The peer, once its hello matched its certificate.
    var peer: NodeIdentity?
    /// The protocol version agreed in the hellos.
    var version: UInt16?
    var closing: String?

    init(transport: PeerTransport, verified: NIOLockedValueBox<NodeIdentity?>, dialed: NodeIdentity?, insecure: Bool) {
        self.transport = transport
        self.verified = verified
        self.dialed = dialed
        self.insecure = insecure
        self.decoder = FrameDecoder(bytesMax: transport.configuration.frameBytesMax)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event as? TLSUserEvent ?? .shutdownCompleted {
            self.sendHello(context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelActive(context: ChannelHandlerContext) {
        if self.insecure { self.sendHello(context: context) }
        let timeout = self.transport.configuration.handshakeTimeout
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)  // the task runs on this loop
        self.deadline = context.eventLoop.scheduleTask(in: .milliseconds(timeout.milliseconds)) {
            guard self.peer == nil else { return }
            self.close(context: bound.value, reason: "no TLS handshake and hello within \(timeout)")
        }
        context.fireChannelActive()
    }

    /// Closes the connection if the handshake and hello are not done in time.
    private var deadline: Scheduled<Void>?

    private func sendHello(context: ChannelHandlerContext) {
        let configuration = self.transport.configuration
        let hello = Hello(protocols: configuration.protocols, node: configuration.identity.node,
                          region: configuration.identity.region, incarnation: configuration.incarnation)
        context.writeAndFlush(NIOAny(ByteBuffer(bytes: Frame.hello(hello).encoded())), promise: nil)
    }

    /// Insecure mode: the identity the hello claims, if the config lists it (and it is the one
    /// dialed); nil after logging the refusal.
    private func claimedIdentity(_ hello: Hello, context: ChannelHandlerContext) -> NodeIdentity? {
        let remote = context.remoteAddress.map { "\($0)" } ?? "unknown"
        guard let identity = try? NodeIdentity(region: hello.region, node: hello.node) else {
            self.refuse(remote: remote, reason: PeerRefusal.handshake(
                "hello names \(hello.region)/\(hello.node), which is not a node name").description)
            return nil
        }
        if let dialed = self.dialed, dialed != identity {
            self.refuse(remote: remote, reason: PeerRefusal.wrongIdentity(expected: dialed, found: identity)
                .description)
            return nil
        }
        guard self.transport.isPeer(identity) else {
            self.refuse(remote: remote, reason: PeerRefusal.notAPeer(identity).description)
            return nil
        }
        return identity
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
            if self.insecure {
                guard let claimed = self.claimedIdentity(hello, context: context) else {
                    throw HandshakeError.unexpectedFrame("hello refused")
                }
                self.verified.withLockedValue { $0 = claimed }
            }
            guard let identity = self.verified.withLockedValue({ $0 }),
                hello.node == identity.node, hello.region == identity.region
            else {
                let remote = context.remoteAddress.map { "\($0)" } ?? "unknown"
                self.refuse(remote: remote, reason: PeerRefusal.handshake(
                    "hello says \(hello.region)/\(hello.node), which is not the certificate's identity").description)
                throw HandshakeError.unexpectedFrame("hello does not match the certificate")
            }
            let version: UInt16
            do {
                version = try Hello.agree(mine: self.transport.configuration.protocols, theirs: hello.protocols)
            } catch {
                let remote = context.remoteAddress.map { "\($0)" } ?? "unknown"
                self.refuse(remote: remote, reason: PeerRefusal.handshake(error.description).description)
                context.writeAndFlush(NIOAny(ByteBuffer(bytes: Frame.goodbye(error.description).encoded())), promise: nil)
                throw error
            }
            guard self.transport.established(identity, version: version, origin: hello.incarnation,
                                             channel: context.channel, outbound: self.dialed != nil)
            else { throw HandshakeError.unexpectedFrame("\(identity.uri) is no longer a peer") }
            self.peer = identity
            self.version = version
            self.deadline?.cancel()
            if self.dialed == nil { self.transport.endHandshake(context.channel, closed: false) }
        case .message(let bytes):
            guard let peer = self.peer else { throw HandshakeError.unexpectedFrame("a message before the hello") }
            self.transport.received(bytes, from: peer)
        case .read(let bytes):
            guard let peer = self.peer, let version = self.version, version >= PeerTransport.readProtocol else {
                throw HandshakeError.unexpectedFrame("a read frame before the hello or below protocol 2")
            }
            self.transport.receivedRead(bytes, from: peer)
        case .goodbye(let reason):
            self.close(context: context, reason: "peer said goodbye: \(reason)")
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let error = error as? OpenSSLHandlerError, self.peer == nil {
            switch error {
            case .handshakeFailed:
                let remote = context.remoteAddress.map { "\($0)" } ?? "unknown"
                self.refuse(remote: remote, reason: error.description)
            case .refused:
                self.refused = true  // the identity check listed it already
            case .truncated, .failed:
                break
            }
        }
        self.close(context: context, reason: "\(error)")
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.transport.closed(self.peer, channel: context.channel, outbound: self.dialed != nil,
                              reason: self.closing ?? "connection closed")
        context.fireChannelInactive()
    }

    /// Closes the connection, saying why in the log: a peer that breaks the protocol (a frame
    /// over the cap, a message before the hello, a second hello, bytes that are no frame) is
    /// refused out loud, never dropped silently. Before the hello the refusal is also listed in
    /// `/v1/cluster`.
    private func close(context: ChannelHandlerContext, reason: String) {
        guard self.closing == nil else { return }
        self.closing = reason
        let remote = context.remoteAddress.map { "\($0)" } ?? "unknown"
        if let peer = self.peer {
            let level: Logger.Level = reason.hasPrefix("peer said goodbye") ? .info : .warning
            self.transport.logger.log(level: level, "closing peer connection", metadata: [
                "peer": "\(peer.uri)", "remote": "\(remote)", "reason": "\(reason)",
            ])
        } else if !self.refused {
            self.refuse(remote: remote, reason: reason)
        }
        context.close(promise: nil)
    }

    /// Logs and lists a refusal once per connection.
    private var refused = false

    private func refuse(remote: String, reason: String) {
        self.refused = true
        self.transport.refuse(remote: remote, reason: reason)
    }
}
