import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import Testing
@testable import TallyNode

/// Two transports on loopback with real certificates: one dials, the other accepts.
@Suite(.serialized) struct PeerTransportTests: CertificateFixture {
    let directory: String
    let ca: ClusterCertificates.Issued
    let usEast: NodeIdentity
    let euWest: NodeIdentity

    init() throws {
        (self.directory, self.ca) = try Self.makeCA(prefix: "tally-tls")
        self.usEast = try NodeIdentity(region: "us-east", node: "n1")
        self.euWest = try NodeIdentity(region: "eu-west", node: "n1")
    }

    func transport(_ identity: NodeIdentity, files: (certificate: String, key: String), peers: [PeerEndpoint],
                   group: EventLoopGroup, inbox: NIOLockedValueBox<[(NodeIdentity, [UInt8])]>) throws -> PeerTransport
    {
        var configuration = PeerTransport.Configuration(
            identity: identity, incarnation: 1, certificatePath: files.certificate, keyPath: files.key,
            caPath: self.caPath, peers: peers)
        configuration.reconnectInitial = .milliseconds(20)
        configuration.reconnectMax = .milliseconds(200)
        return try PeerTransport(configuration: configuration, group: group, logger: Logger(label: "test")) { peer, bytes in
            inbox.withLockedValue { $0.append((peer, bytes)) }
        }
    }

    /// Polls `condition` for up to 5 s.
    func eventually(_ condition: () -> Bool) async -> Bool {
        for _ in 0..<250 {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return condition()
    }

    /// eu-west accepts; us-east dials with `dialer`'s certificate. Returns what eu-west received and refused.
    func exchange(dialer: (certificate: String, key: String), as identity: NodeIdentity? = nil)
        async throws -> (received: [(NodeIdentity, [UInt8])], refusals: [String], sent: Bool)
    {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let inbox = NIOLockedValueBox<[(NodeIdentity, [UInt8])]>([])
        let unused = NIOLockedValueBox<[(NodeIdentity, [UInt8])]>([])
        let server = try self.transport(
            self.euWest, files: try self.certificate(self.euWest, name: "eu-west"),
            peers: [PeerEndpoint(identity: self.usEast, host: "127.0.0.1", port: 1)], group: group, inbox: inbox)
        let port = try await server.start(host: "127.0.0.1", port: 0)
        let client = try self.transport(
            identity ?? self.usEast, files: dialer,
            peers: [PeerEndpoint(identity: self.euWest, host: "127.0.0.1", port: port)], group: group, inbox: unused)
        _ = try await client.start(host: "127.0.0.1", port: 0)
        var sent = false
        _ = await self.eventually {
            sent = client.send([1, 2, 3], toRegion: "eu-west")
            return sent || !server.refusals.isEmpty
        }
        if sent { _ = await self.eventually { !inbox.withLockedValue { $0 }.isEmpty } }
        let result = (inbox.withLockedValue { $0 }, server.refusals, sent)
        await client.shutdown()
        await server.shutdown()
        try await group.shutdownGracefully()
        return result
    }

    @Test func twoConfiguredPeersExchangeMessages() async throws {
        let result = try await self.exchange(dialer: try self.certificate(self.usEast, name: "us-east"))
        #expect(result.sent)
        #expect(result.received.count == 1 && result.received.first?.0 == self.usEast && result.received.first?.1 == [1, 2, 3])
        #expect(result.refusals.isEmpty)
    }

    @Test func aCertificateFromAnotherCAIsRefused() async throws {
        let other = try ClusterCertificates.makeCA(name: "other CA", now: Date(), validFor: 30)
        let result = try await self.exchange(dialer: try self.certificate(self.usEast, name: "wrong-ca", ca: other))
        #expect(result.received.isEmpty && !result.sent)
        #expect(result.refusals.contains { $0.contains("not signed by the cluster CA") }, "\(result.refusals)")
    }

    @Test func anExpiredCertificateIsRefused() async throws {
        let files = try self.certificate(self.usEast, name: "expired", issuedAt: Date().addingTimeInterval(-3 * 86_400))
        let result = try await self.exchange(dialer: files)
        #expect(result.received.isEmpty && !result.sent)
        #expect(result.refusals.contains { $0.contains("expired") }, "\(result.refusals)")
    }

    @Test func aNodeNotInTheConfigIsRefused() async throws {
        let stranger = try NodeIdentity(region: "ap-south", node: "n7")
        let result = try await self.exchange(dialer: try self.certificate(stranger, name: "stranger"), as: stranger)
        #expect(result.received.isEmpty && !result.sent)
        #expect(result.refusals.contains { $0.contains("tally://ap-south/n7 is not a peer") }, "\(result.refusals)")
    }

    @Test func aServerWithAnotherNodesCertificateIsRefusedByTheDialer() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let inbox = NIOLockedValueBox<[(NodeIdentity, [UInt8])]>([])
        // ap-south answers at the address us-east's config gives for eu-west (a DNS mix-up, say).
        let apSouth = try NodeIdentity(region: "ap-south", node: "n1")
        let impostor = try self.transport(
            apSouth, files: try self.certificate(apSouth, name: "ap-south"),
            peers: [PeerEndpoint(identity: self.usEast, host: "127.0.0.1", port: 1)], group: group, inbox: inbox)
        let port = try await impostor.start(host: "127.0.0.1", port: 0)
        let client = try self.transport(
            self.usEast, files: try self.certificate(self.usEast, name: "us-east"),
            peers: [PeerEndpoint(identity: self.euWest, host: "127.0.0.1", port: port)], group: group, inbox: inbox)
        _ = try await client.start(host: "127.0.0.1", port: 0)
        #expect(await self.eventually {
            client.refusals.contains { $0.contains("dialed tally://eu-west/n1 but the certificate is tally://ap-south/n1") }
        }, "\(client.refusals)")
        #expect(!client.send([3], toRegion: "eu-west"))
        #expect(inbox.withLockedValue { $0 }.isEmpty)
        await client.shutdown()
        await impostor.shutdown()
        try await group.shutdownGracefully()
    }

    @Test func aClientWithoutACertificateIsRefused() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let inbox = NIOLockedValueBox<[(NodeIdentity, [UInt8])]>([])
        let server = try self.transport(
            self.euWest, files: try self.certificate(self.euWest, name: "eu-west"),
            peers: [PeerEndpoint(identity: self.usEast, host: "127.0.0.1", port: 1)], group: group, inbox: inbox)
        let port = try await server.start(host: "127.0.0.1", port: 0)
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv13
        tls.certificateVerification = .none
        let context = try NIOSSLContext(configuration: tls)
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: nil))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        // A message frame without any certificate or hello: it must never arrive.
        try? await channel.writeAndFlush(ByteBuffer(bytes: Frame.message([9]).encoded()))
        #expect(await self.eventually { !server.refusals.isEmpty }, "no refusal logged")
        #expect(server.refusals.contains { $0.contains("TLS handshake failed") }, "\(server.refusals)")
        #expect(inbox.withLockedValue { $0 }.isEmpty)
        try? await channel.close()
        await server.shutdown()
        try await group.shutdownGracefully()
    }

    // MARK: - Reloads (SIGHUP)

    /// eu-west listening with `serverPeers`, us-east dialing it with `dialer`'s files.
    func pair(serverPeers: [PeerEndpoint], dialer: (certificate: String, key: String), group: EventLoopGroup,
              inbox: NIOLockedValueBox<[(NodeIdentity, [UInt8])]>) async throws
        -> (server: PeerTransport, client: PeerTransport, serverFiles: (certificate: String, key: String))
    {
        let serverFiles = try self.certificate(self.euWest, name: "eu-west")
        let server = try self.transport(self.euWest, files: serverFiles, peers: serverPeers, group: group, inbox: inbox)
        let port = try await server.start(host: "127.0.0.1", port: 0)
        let unused = NIOLockedValueBox<[(NodeIdentity, [UInt8])]>([])
        let client = try self.transport(
            self.usEast, files: dialer, peers: [PeerEndpoint(identity: self.euWest, host: "127.0.0.1", port: port)],
            group: group, inbox: unused)
        _ = try await client.start(host: "127.0.0.1", port: 0)
        return (server, client, serverFiles)
    }

    /// A peer that accepted this node once and then refuses it (a reload removed it there) is
    /// redialed with the backoff: it was redialed about 13 times a second, because the backoff
    /// reset whenever the peer had ever completed a hello.
    @Test func aPeerThatRefusesAfterAnEarlierSuccessIsRedialedWithBackoff() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let inbox = NIOLockedValueBox<[(NodeIdentity, [UInt8])]>([])
        let usEastEndpoint = PeerEndpoint(identity: self.usEast, host: "127.0.0.1", port: 1)
        let (server, client, serverFiles) = try await self.pair(
            serverPeers: [usEastEndpoint], dialer: try self.certificate(self.usEast, name: "us-east"), group: group,
            inbox: inbox)
        #expect(await self.eventually { client.peers.first?.connected == true })
        _ = try server.reload(certificatePath: serverFiles.certificate, keyPath: serverFiles.key, caPath: self.caPath,
                              peers: [])
        #expect(await self.eventually { client.peers.first?.connected == false })
        let before = server.refusals.filter { $0.contains("is not a peer") }.count
        try await Task.sleep(for: .seconds(3))
        let redials = server.refusals.filter { $0.contains("is not a peer") }.count - before
        // These transports back off from 20 ms doubling to 200 ms (jitter down to half): about 18
        // dials in 3 s. Reset to 20 ms each time, as before, it was a handshake and 10-20 ms a dial.
        // (Each dial adds two refusals, and the list keeps 100, so a flood shows as 50.)
        #expect(redials >= 1 && redials <= 30, "\(redials) redials in 3 s")
        await client.shutdown()
        await server.shutdown()
    }

    @Test func aReloadAddsAPeerAndRemovesItAgain() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let inbox = NIOLockedValueBox<[(NodeIdentity, [UInt8])]>([])
        let ghost = PeerEndpoint(identity: try NodeIdentity(region: "ap-south", node: "n1"), host: "127.0.0.1", port: 1)
        let (server, client, serverFiles) = try await self.pair(
            serverPeers: [ghost], dialer: try self.certificate(self.usEast, name: "us-east"), group: group, inbox: inbox)
        // Not yet a peer of eu-west: refused.
        #expect(await self.eventually { server.refusals.contains { $0.contains("tally://us-east/n1 is not a peer") } })
        let usEastEndpoint = PeerEndpoint(identity: self.usEast, host: "127.0.0.1", port: 1)
        let added = try server.reload(certificatePath: serverFiles.certificate, keyPath: serverFiles.key,
                                      caPath: self.caPath, peers: [ghost, usEastEndpoint])
        #expect(added == PeerTransport.ReloadSummary(added: [self.usEast], removed: [], certificatesChanged: false))
        #expect(await self.eventually { client.send([7], toRegion: "eu-west") && !inbox.withLockedValue { $0 }.isEmpty })
        #expect(inbox.withLockedValue { $0 }.first?.0 == self.usEast)
        #expect(server.peers.map(\.identity.region) == ["ap-south", "us-east"])

        // Removed again: the connection closes, and nothing it sends is delivered from then on.
        let removed = try server.reload(certificatePath: serverFiles.certificate, keyPath: serverFiles.key,
                                        caPath: self.caPath, peers: [ghost])
        #expect(removed.removed == [self.usEast] && removed.added.isEmpty)
        #expect(server.peers.map(\.identity.region) == ["ap-south"])
        let delivered = inbox.withLockedValue { $0.count }
        #expect(await self.eventually { client.peers.first?.connected == false })
        for _ in 0..<20 {
            client.send([8], toRegion: "eu-west")
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(inbox.withLockedValue { $0.count } == delivered)
        await client.shutdown()
        await server.shutdown()
        try await group.shutdownGracefully()
    }

    @Test func aReloadWithNewCertificatesRedialsWithThem() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let inbox = NIOLockedValueBox<[(NodeIdentity, [UInt8])]>([])
        // us-east starts with a certificate from another CA, so eu-west refuses it...
        let other = try ClusterCertificates.makeCA(name: "other CA", now: Date(), validFor: 30)
        let files = try self.certificate(self.usEast, name: "rotating", ca: other)
        let (server, client, _) = try await self.pair(
            serverPeers: [PeerEndpoint(identity: self.usEast, host: "127.0.0.1", port: 1)], dialer: files, group: group,
            inbox: inbox)
        #expect(await self.eventually { server.refusals.contains { $0.contains("not signed by the cluster CA") } })
        // ...until the operator writes a good one in its place and sends SIGHUP.
        _ = try self.certificate(self.usEast, name: "rotating")
        let summary = try client.reload(certificatePath: files.certificate, keyPath: files.key, caPath: self.caPath,
                                        peers: client.currentPeers)
        #expect(summary.certificatesChanged && summary.added.isEmpty && summary.removed.isEmpty)
        #expect(await self.eventually { client.send([5], toRegion: "eu-west") && !inbox.withLockedValue { $0 }.isEmpty })
        await client.shutdown()
        await server.shutdown()
        try await group.shutdownGracefully()
    }

    /// A message encoded for one protocol version does not go on a connection that agreed another
    /// (the peer restarted on another release since): dropped, counted, and the reason says so.
    @Test func aMessageEncodedForAnotherProtocolIsNotSent() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let inbox = NIOLockedValueBox<[(NodeIdentity, [UInt8])]>([])
        let (server, client, _) = try await self.pair(
            serverPeers: [PeerEndpoint(identity: self.usEast, host: "127.0.0.1", port: 1)],
            dialer: try self.certificate(self.usEast, name: "us-east"), group: group, inbox: inbox)
        #expect(await self.eventually { client.peers.first?.connected == true })
        let agreed = try #require(client.peers.first?.protocolVersion)
        #expect(agreed == Hello.supportedProtocols.upperBound)
        let reason = client.send([9], toRegion: "eu-west", protocolVersion: agreed - 1)
        #expect(reason == "encoded for protocol \(agreed - 1); the connection speaks \(agreed)")
        #expect(client.peers.first?.messagesDropped == 1)
        #expect(client.send([10], toRegion: "eu-west", protocolVersion: agreed) == nil)
        #expect(await self.eventually { inbox.withLockedValue { $0.map(\.1) }.contains([10]) })
        #expect(!inbox.withLockedValue { $0.map(\.1) }.contains([9]))
        await client.shutdown()
        await server.shutdown()
        try await group.shutdownGracefully()
    }

    @Test func aReloadWhoseFilesDoNotLoadChangesNothing() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let inbox = NIOLockedValueBox<[(NodeIdentity, [UInt8])]>([])
        let files = try self.certificate(self.usEast, name: "us-east")
        let (server, client, _) = try await self.pair(
            serverPeers: [PeerEndpoint(identity: self.usEast, host: "127.0.0.1", port: 1)], dialer: files, group: group,
            inbox: inbox)
        #expect(await self.eventually { client.send([1], toRegion: "eu-west") })
        let missing = (self.directory as NSString).appendingPathComponent("nowhere/n1-key.pem")
        #expect(throws: (any Error).self) {
            try client.reload(certificatePath: files.certificate, keyPath: missing, caPath: self.caPath, peers: [])
        }
        // The peers and the connection are as they were.
        #expect(client.peers.map(\.identity) == [self.euWest])
        #expect(client.send([2], toRegion: "eu-west"))
        #expect(await self.eventually { inbox.withLockedValue { $0.map(\.1) }.contains([2]) })
        await client.shutdown()
        await server.shutdown()
        try await group.shutdownGracefully()
    }

    @Test func insecureTransportsTalkPlaintextButStillOnlyToConfiguredPeers() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let inbox = NIOLockedValueBox<[(NodeIdentity, [UInt8])]>([])
        let unused = NIOLockedValueBox<[(NodeIdentity, [UInt8])]>([])
        func insecure(_ identity: NodeIdentity, peers: [PeerEndpoint],
                      inbox: NIOLockedValueBox<[(NodeIdentity, [UInt8])]>) throws -> PeerTransport
        {
            var configuration = PeerTransport.Configuration(
                identity: identity, incarnation: 1, certificatePath: "", keyPath: "", caPath: "", peers: peers)
            configuration.insecure = true
            configuration.reconnectInitial = .milliseconds(20)
            configuration.reconnectMax = .milliseconds(200)
            return try PeerTransport(configuration: configuration, group: group, logger: Logger(label: "test")) {
                peer, bytes in inbox.withLockedValue { $0.append((peer, bytes)) }
            }
        }
        let server = try insecure(self.euWest, peers: [PeerEndpoint(identity: self.usEast, host: "127.0.0.1", port: 1)],
                                  inbox: inbox)
        let port = try await server.start(host: "127.0.0.1", port: 0)
        let target = [PeerEndpoint(identity: self.euWest, host: "127.0.0.1", port: port)]
        let client = try insecure(self.usEast, peers: target, inbox: unused)
        _ = try await client.start(host: "127.0.0.1", port: 0)
        #expect(await self.eventually { client.send([4, 2], toRegion: "eu-west") })
        #expect(await self.eventually { inbox.withLockedValue { $0 }.contains { $0.0 == self.usEast && $0.1 == [4, 2] } })
        // A node the config does not list is refused even without TLS.
        let stranger = try insecure(try NodeIdentity(region: "sa-east", node: "n9"), peers: target, inbox: unused)
        _ = try await stranger.start(host: "127.0.0.1", port: 0)
        #expect(await self.eventually { server.refusals.contains { $0.contains("tally://sa-east/n9 is not a peer") } })
        // The stranger redials, and between its dial and the server's refusal it may count itself
        // connected; whatever it sends meanwhile is never delivered (checked below).
        for _ in 0..<10 {
            _ = stranger.send([6], toRegion: "eu-west")
            try await Task.sleep(for: .milliseconds(20))
        }
        // And a TLS node does not talk to an insecure one.
        let secure = try self.transport(self.usEast, files: try self.certificate(self.usEast, name: "us-east"),
                                        peers: target, group: group, inbox: unused)
        _ = try await secure.start(host: "127.0.0.1", port: 0)
        try await Task.sleep(for: .milliseconds(300))
        #expect(!secure.send([7], toRegion: "eu-west"))
        #expect(!inbox.withLockedValue { $0 }.contains { $0.1 == [6] || $0.1 == [7] })
        for transport in [client, stranger, secure, server] { await transport.shutdown() }
        try await group.shutdownGracefully()
    }

    @Test func duringARollingUpgradeOldAndNewAgreeOnTheOldProtocol() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let inbox = NIOLockedValueBox<[(NodeIdentity, [UInt8])]>([])
        let oldInbox = NIOLockedValueBox<[(NodeIdentity, [UInt8])]>([])
        // eu-west still runs the release before global reads (protocol 1 only); us-east is new.
        var oldConfiguration = PeerTransport.Configuration(
            identity: self.euWest, incarnation: 1, certificatePath: try self.certificate(self.euWest, name: "old").certificate,
            keyPath: try self.certificate(self.euWest, name: "old").key, caPath: self.caPath,
            peers: [PeerEndpoint(identity: self.usEast, host: "127.0.0.1", port: 1)])
        oldConfiguration.protocols = 1...1
        oldConfiguration.reconnectInitial = .milliseconds(20)
        let old = try PeerTransport(configuration: oldConfiguration, group: group, logger: Logger(label: "test")) {
            peer, bytes in oldInbox.withLockedValue { $0.append((peer, bytes)) }
        }
        let oldPort = try await old.start(host: "127.0.0.1", port: 0)
        let new = try self.transport(
            self.usEast, files: try self.certificate(self.usEast, name: "new"),
            peers: [PeerEndpoint(identity: self.euWest, host: "127.0.0.1", port: oldPort)], group: group, inbox: inbox)
        let newPort = try await new.start(host: "127.0.0.1", port: 0)
        _ = try old.reload(certificatePath: oldConfiguration.certificatePath, keyPath: oldConfiguration.keyPath,
                           caPath: self.caPath, peers: [PeerEndpoint(identity: self.usEast, host: "127.0.0.1", port: newPort)])
        // Replication flows both ways at protocol 1...
        #expect(await self.eventually { new.send([1], toRegion: "eu-west") && old.send([2], toRegion: "us-east") })
        #expect(await self.eventually { oldInbox.withLockedValue { $0 }.contains { $0.1 == [1] } })
        #expect(await self.eventually { inbox.withLockedValue { $0 }.contains { $0.1 == [2] } })
        #expect(new.peers.first?.protocolVersion == 1 && old.peers.first?.protocolVersion == 1)
        // ...and the new node does not send the old one a frame it cannot read: it says why.
        #expect(new.sendRead([0x21], toRegion: "eu-west") == "speaks protocol 1; this needs 2")
        #expect(old.refusals.isEmpty && new.refusals.isEmpty)
        await new.shutdown()
        await old.shutdown()
        try await group.shutdownGracefully()
    }

    @Test func aSlowPeerFillsOnlyItsOwnBoundedQueue() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let slowInbox = NIOLockedValueBox<[(NodeIdentity, [UInt8])]>([])
        let fastInbox = NIOLockedValueBox<[(NodeIdentity, [UInt8])]>([])
        let unused = NIOLockedValueBox<[(NodeIdentity, [UInt8])]>([])
        let apSouth = try NodeIdentity(region: "ap-south", node: "n1")
        let anyPeer = [PeerEndpoint(identity: self.usEast, host: "127.0.0.1", port: 1)]
        let slow = try self.transport(self.euWest, files: try self.certificate(self.euWest, name: "eu-west"),
                                      peers: anyPeer, group: group, inbox: slowInbox)
        let fast = try self.transport(apSouth, files: try self.certificate(apSouth, name: "ap-south"),
                                      peers: anyPeer, group: group, inbox: fastInbox)
        let slowPort = try await slow.start(host: "127.0.0.1", port: 0)
        let fastPort = try await fast.start(host: "127.0.0.1", port: 0)
        var configuration = PeerTransport.Configuration(
            identity: self.usEast, incarnation: 1, certificatePath: try self.certificate(self.usEast, name: "us-east").certificate,
            keyPath: try self.certificate(self.usEast, name: "us-east").key, caPath: self.caPath,
            peers: [PeerEndpoint(identity: self.euWest, host: "127.0.0.1", port: slowPort),
                    PeerEndpoint(identity: apSouth, host: "127.0.0.1", port: fastPort)])
        configuration.sendQueueBytesMax = 256 << 10
        let sender = try PeerTransport(configuration: configuration, group: group, logger: Logger(label: "test")) {
            peer, bytes in unused.withLockedValue { $0.append((peer, bytes)) }
        }
        _ = try await sender.start(host: "127.0.0.1", port: 0)
        #expect(await self.eventually { sender.peers.allSatisfy(\.connected) })
        #expect(await self.eventually { slow.state.withLockedValue { !$0.connections.isEmpty } })
        slow.setReading(false)
        // 64 MiB at eu-west, which reads nothing: the kernel's buffers fill, then the queue, then
        // messages are dropped and counted. ap-south gets every one of its messages meanwhile.
        let chunk = [UInt8](repeating: 7, count: 64 << 10)
        var refused = 0
        for index in 0..<1_024 {
            if !sender.send(chunk, toRegion: "eu-west") { refused += 1 }
            #expect(sender.send([UInt8(truncatingIfNeeded: index)], toRegion: "ap-south"))
            if index % 64 == 0 { try await Task.sleep(for: .milliseconds(5)) }
        }
        #expect(refused > 0, "the slow peer's queue never filled")
        let dropped = sender.peers.first { $0.identity == self.euWest }?.messagesDropped ?? 0
        #expect(dropped == refused)
        #expect(sender.state.withLockedValue { $0.pending[self.euWest] ?? 0 } <= (256 << 10) + (64 << 10) + 5)
        #expect(await self.eventually { fastInbox.withLockedValue { $0.count } == 1_024 })
        // The slow peer reads again: what was queued arrives, and sending works again.
        slow.setReading(true)
        #expect(await self.eventually { sender.send([1], toRegion: "eu-west") })
        #expect(await self.eventually { slowInbox.withLockedValue { $0.contains { $0.1 == [1] } } })
        for transport in [sender, slow, fast] { await transport.shutdown() }
        try await group.shutdownGracefully()
    }
}
