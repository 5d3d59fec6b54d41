import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
@testable import TallyNode

/// The peer transport against the `openssl` command line (the system's OpenSSL, as another
/// implementation would speak it): `s_client` and `s_server` with the cluster's certificates are
/// accepted; another CA, an expired certificate, TLS 1.2 and no client certificate are refused,
/// each with its reason.
@Suite(.serialized) struct OpenSSLInteropTests: CertificateFixture {
    let directory: String
    let ca: ClusterCertificates.Issued
    let usEast: NodeIdentity
    let euWest: NodeIdentity

    init() throws {
        (self.directory, self.ca) = try Self.makeCA(prefix: "tally-interop")
        self.usEast = try NodeIdentity(region: "us-east", node: "n1")
        self.euWest = try NodeIdentity(region: "eu-west", node: "n1")
    }

    func transport(_ identity: NodeIdentity, files: (certificate: String, key: String), peers: [PeerEndpoint])
        throws -> PeerTransport
    {
        var configuration = PeerTransport.Configuration(
            identity: identity, incarnation: 1, certificatePath: files.certificate, keyPath: files.key,
            caPath: self.caPath, peers: peers)
        configuration.reconnectInitial = .milliseconds(50)
        configuration.reconnectMax = .milliseconds(200)
        return try PeerTransport(configuration: configuration, group: MultiThreadedEventLoopGroup.singleton,
                                 logger: Logger(label: "interop")) { _, _ in }
    }

    /// Runs `openssl` with `arguments` to completion (at most 20 s); its output, both streams.
    static func openssl(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice  // s_client: end of input ends the session
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return (process.terminationStatus, text)
    }

    /// `s_client` to a Tally transport accepting as eu-west; the transport's refusals after it.
    func sClient(_ extra: [String]) async throws -> (status: Int32, output: String, refusals: [String]) {
        let server = try self.transport(self.euWest, files: try self.certificate(self.euWest, name: "eu-west"),
                                        peers: [PeerEndpoint(identity: self.usEast, host: "127.0.0.1", port: 1)])
        let port = try await server.start(host: "127.0.0.1", port: 0)
        let result = try Self.openssl(["s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", self.caPath,
                                       "-verify_return_error", "-brief"] + extra)
        for _ in 0..<100 where server.refusals.isEmpty && result.status != 0 {
            try await Task.sleep(for: .milliseconds(20))
        }
        let refusals = server.refusals
        await server.shutdown()
        return (result.status, result.output, refusals)
    }

    @Test func sClientWithTheClustersCertificateIsAccepted() async throws {
        let files = try self.certificate(self.usEast, name: "us-east")
        let result = try await self.sClient(["-tls1_3", "-cert", files.certificate, "-key", files.key])
        #expect(result.output.contains("Protocol version: TLSv1.3"), "\(result.output)")
        #expect(result.output.contains("Verification: OK"), "\(result.output)")
        #expect(!result.refusals.contains { $0.contains("handshake") || $0.contains("certificate") },
                "\(result.refusals)")
    }

    @Test func sClientWithAnotherCAsCertificateIsRefused() async throws {
        let other = try ClusterCertificates.makeCA(name: "other CA", now: Date(), validFor: 30)
        let files = try self.certificate(self.usEast, name: "wrong-ca", ca: other)
        let result = try await self.sClient(["-tls1_3", "-cert", files.certificate, "-key", files.key])
        #expect(result.refusals.contains { $0.contains("not signed by the cluster CA") }, "\(result.refusals)")
    }

    @Test func sClientWithAnExpiredCertificateIsRefused() async throws {
        let files = try self.certificate(self.usEast, name: "expired", issuedAt: Date().addingTimeInterval(-3 * 86_400))
        let result = try await self.sClient(["-tls1_3", "-cert", files.certificate, "-key", files.key])
        #expect(result.refusals.contains { $0.contains("expired") }, "\(result.refusals)")
    }

    @Test func sClientOnTLS12IsRefused() async throws {
        let files = try self.certificate(self.usEast, name: "us-east")
        let result = try await self.sClient(["-tls1_2", "-cert", files.certificate, "-key", files.key])
        #expect(result.status != 0, "\(result.output)")
        #expect(result.refusals.contains { $0.contains("TLS handshake failed") }, "\(result.refusals)")
    }

    @Test func sClientWithoutACertificateIsRefused() async throws {
        let result = try await self.sClient(["-tls1_3"])
        #expect(result.refusals.contains { $0.contains("TLS handshake failed") }, "\(result.refusals)")
    }

    /// Tally dials `s_server`, which requires and verifies a client certificate: the handshake
    /// completes both ways, and the hello Tally sends arrives over it.
    @Test func tallyDialsSServer() async throws {
        let serverFiles = try self.certificate(self.euWest, name: "eu-west")
        let listener = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).wait()
        let port = listener.localAddress!.port!
        try await listener.close()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = ["s_server", "-accept", "127.0.0.1:\(port)", "-tls1_3", "-cert", serverFiles.certificate,
                             "-key", serverFiles.key, "-CAfile", self.caPath, "-Verify", "1", "-verify_return_error",
                             "-naccept", "1"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = Pipe()  // kept open: s_server would otherwise quit
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        let text = NIOLockedValueBox("")
        output.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            text.withLockedValue { $0 += String(decoding: data, as: UTF8.self) }
        }
        for _ in 0..<250 where !text.withLockedValue({ $0 }).contains("ACCEPT") { try await Task.sleep(for: .milliseconds(20)) }
        let client = try self.transport(self.usEast, files: try self.certificate(self.usEast, name: "us-east"),
                                        peers: [PeerEndpoint(identity: self.euWest, host: "127.0.0.1", port: port)])
        _ = try await client.start(host: "127.0.0.1", port: 0)
        for _ in 0..<250 where !text.withLockedValue({ $0 }).contains("TALY") {
            try await Task.sleep(for: .milliseconds(20))
        }
        try await Task.sleep(for: .milliseconds(300))  // the hello, after the handshake
        output.fileHandleForReading.readabilityHandler = nil
        let seen = text.withLockedValue { $0 }
        #expect(seen.contains("CIPHER is TLS_"), "\(seen)")
        #expect(seen.contains("TALY"), "the hello (magic TALY) arrived over the session: \(seen)")
        #expect(!client.refusals.contains { $0.contains("handshake") || $0.contains("certificate") }, "\(client.refusals)")
        await client.shutdown()
    }
}
