import Crypto
import Foundation
import Testing
import X509
@testable import TallyNode

@Suite struct CertificateTests {
    static func temporaryDirectory() -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tally-certs-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func aNodeCertificateIsSignedByTheCAAndNamesItsIdentity() throws {
        let now = Date()
        let ca = try ClusterCertificates.makeCA(name: "test CA", now: now, validFor: 10)
        let identity = try NodeIdentity(region: "eu-west", node: "n1")
        let node = try ClusterCertificates.issueNode(identity, dnsNames: ["n1.eu-west.example"],
                                                     ipAddresses: ["127.0.0.1", "::1"], ca: ca, now: now, validFor: 1)
        #expect(ca.certificate.publicKey.isValidSignature(node.certificate.signature, for: node.certificate))
        #expect(try NodeIdentity(certificate: node.certificate) == identity)
        #expect(node.certificate.issuer == ca.certificate.subject)
        #expect(node.certificate.notValidAfter > now && node.certificate.notValidAfter < now.addingTimeInterval(2 * 86_400))
        let names = try #require(try node.certificate.extensions.subjectAlternativeNames)
        #expect(names.contains(.dnsName("n1.eu-west.example")))
        #expect(names.contains(.uniformResourceIdentifier("tally://eu-west/n1")))
        // A certificate from another CA does not verify against this one.
        let other = try ClusterCertificates.makeCA(name: "other CA", now: now, validFor: 10)
        #expect(!other.certificate.publicKey.isValidSignature(node.certificate.signature, for: node.certificate))
        // The CA itself names no node identity.
        #expect(throws: ClusterCertificateError.noIdentity) { try NodeIdentity(certificate: ca.certificate) }
    }

    @Test func badNamesAndAddressesAreRefused() throws {
        #expect(throws: ClusterCertificateError.invalidName(field: "region", value: "EU West")) {
            try NodeIdentity(region: "EU West", node: "n1")
        }
        #expect(throws: ClusterCertificateError.invalidName(field: "node", value: "-n1")) {
            try NodeIdentity(region: "eu-west", node: "-n1")
        }
        #expect(NodeIdentity(uri: "tally://eu-west/n1/extra") == nil)
        #expect(NodeIdentity(uri: "https://eu-west/n1") == nil)
        let ca = try ClusterCertificates.makeCA(name: "test CA", now: Date(), validFor: 10)
        #expect(throws: ClusterCertificateError.invalidAddress("300.1.1.1")) {
            try ClusterCertificates.issueNode(try NodeIdentity(region: "a", node: "b"), dnsNames: [],
                                              ipAddresses: ["300.1.1.1"], ca: ca, now: Date(), validFor: 1)
        }
    }

    @Test func filesHavePredictableNamesPrivateKeysAndNoSilentOverwrite() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ca = try ClusterCertificates.makeCA(name: "test CA", now: Date(), validFor: 10)
        try ClusterCertificates.writeCA(ca, to: directory, overwrite: false)
        #expect(throws: ClusterCertificateError.self) { try ClusterCertificates.writeCA(ca, to: directory, overwrite: false) }
        let read = try ClusterCertificates.readCA(from: directory)
        #expect(read.certificate == ca.certificate && read.key.rawRepresentation == ca.key.rawRepresentation)
        let keyPath = (directory as NSString).appendingPathComponent("ca-key.pem")
        let mode = try FileManager.default.attributesOfItem(atPath: keyPath)[.posixPermissions] as? Int
        #expect(mode == 0o600)

        let identity = try NodeIdentity(region: "us-east", node: "n2")
        let node = try ClusterCertificates.issueNode(identity, dnsNames: ["localhost"], ipAddresses: [], ca: read,
                                                     now: Date(), validFor: 1)
        let nodeDirectory = (directory as NSString).appendingPathComponent("n2")
        try ClusterCertificates.writeNode(node, identity: identity, ca: read.certificate, to: nodeDirectory, overwrite: false)
        for file in ["n2.pem", "n2-key.pem", "ca.pem"] {
            #expect(FileManager.default.fileExists(atPath: (nodeDirectory as NSString).appendingPathComponent(file)))
        }
        let certificate = try ClusterCertificates.readCertificate((nodeDirectory as NSString).appendingPathComponent("n2.pem"))
        #expect(try NodeIdentity(certificate: certificate) == identity)

        // A key that does not match the CA certificate is refused, naming the file.
        let other = try ClusterCertificates.makeCA(name: "other", now: Date(), validFor: 1)
        try Data((other.key.pemRepresentation + "\n").utf8).write(to: URL(fileURLWithPath: keyPath))
        #expect(throws: ClusterCertificateError.file(path: keyPath, reason: "does not match the certificate in \((directory as NSString).appendingPathComponent("ca.pem"))")) {
            try ClusterCertificates.readCA(from: directory)
        }
    }
}
