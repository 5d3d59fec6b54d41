import Foundation
import SwiftASN1
import Testing
import X509
@testable import TallyNode

@Suite struct PeerVerifierTests {
    static func der(_ certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    let now = Date()
    let ca: ClusterCertificates.Issued
    let euWest: NodeIdentity
    let verifier: PeerVerifier

    init() throws {
        self.ca = try ClusterCertificates.makeCA(name: "test CA", now: self.now, validFor: 30)
        self.euWest = try NodeIdentity(region: "eu-west", node: "n1")
        self.verifier = PeerVerifier(ca: self.ca.certificate, peers: [self.euWest, try NodeIdentity(region: "ap-south", node: "n1")])
    }

    func chain(_ identity: NodeIdentity, ca: ClusterCertificates.Issued? = nil, issuedAt: Date? = nil, days: Int = 1) throws -> [[UInt8]] {
        let node = try ClusterCertificates.issueNode(identity, dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"],
                                                     ca: ca ?? self.ca, now: issuedAt ?? self.now, validFor: days)
        return [try Self.der(node.certificate)]
    }

    @Test func aConfiguredPeerWithACurrentCertificateIsAccepted() async throws {
        #expect(await self.verifier.verify(chain: try self.chain(self.euWest), expected: nil, now: self.now) == .success(self.euWest))
        #expect(await self.verifier.verify(chain: try self.chain(self.euWest), expected: self.euWest, now: self.now)
            == .success(self.euWest))
    }

    @Test func anExpiredCertificateIsRefused() async throws {
        let old = try self.chain(self.euWest, issuedAt: self.now.addingTimeInterval(-3 * 86_400), days: 1)
        guard case .failure(.expired) = await self.verifier.verify(chain: old, expected: nil, now: self.now) else {
            Issue.record("an expired certificate was not refused as expired")
            return
        }
    }

    @Test func aCertificateFromAnotherCAIsRefused() async throws {
        let other = try ClusterCertificates.makeCA(name: "test CA", now: self.now, validFor: 30)  // same name, other key
        guard case .failure(.notSignedByClusterCA) = await self.verifier.verify(
            chain: try self.chain(self.euWest, ca: other), expected: nil, now: self.now)
        else {
            Issue.record("a certificate from another CA was not refused")
            return
        }
    }

    @Test func theWrongIdentityIsRefused() async throws {
        let apSouth = try NodeIdentity(region: "ap-south", node: "n1")
        // Dialed eu-west, answered by ap-south (a valid cluster member, but not the one dialed).
        #expect(await self.verifier.verify(chain: try self.chain(apSouth), expected: self.euWest, now: self.now)
            == .failure(.wrongIdentity(expected: self.euWest, found: apSouth)))
        // A node the config does not list.
        let stranger = try NodeIdentity(region: "us-west", node: "n9")
        #expect(await self.verifier.verify(chain: try self.chain(stranger), expected: nil, now: self.now)
            == .failure(.notAPeer(stranger)))
    }

    @Test func noCertificateOrGarbageIsRefused() async {
        #expect(await self.verifier.verify(chain: [], expected: nil, now: self.now) == .failure(.noCertificate))
        guard case .failure(.malformed) = await self.verifier.verify(chain: [[1, 2, 3]], expected: nil, now: self.now) else {
            Issue.record("garbage was not refused as malformed")
            return
        }
        #expect(PeerRefusal.noCertificate.description == "presented no client certificate")
    }
}
