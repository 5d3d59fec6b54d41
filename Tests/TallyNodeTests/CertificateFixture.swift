import Foundation
@testable import TallyNode

/// A cluster CA written to a fresh temporary directory, and node certificates issued by it into
/// subdirectories: the set-up the transport and TLS suites share.
protocol CertificateFixture {
    var directory: String { get }
    var ca: ClusterCertificates.Issued { get }
}

extension CertificateFixture {
    /// A new CA (valid 30 days) in a new directory named after `prefix`.
    static func makeCA(prefix: String) throws -> (directory: String, ca: ClusterCertificates.Issued) {
        let directory = NSTemporaryDirectory() + "\(prefix)-\(UUID().uuidString)"
        let ca = try ClusterCertificates.makeCA(name: "test CA", now: Date(), validFor: 30)
        try ClusterCertificates.writeCA(ca, to: directory, overwrite: false)
        return (directory, ca)
    }

    var caPath: String { self.directory + "/ca.pem" }

    /// Writes a certificate for `identity` (signed by `ca`, or the cluster CA; for localhost and
    /// 127.0.0.1) into `directory/name`; its certificate and key files.
    func certificate(_ identity: NodeIdentity, name: String, ca: ClusterCertificates.Issued? = nil,
                     issuedAt: Date = Date(), days: Int = 1) throws -> (certificate: String, key: String)
    {
        try Self.certificate(identity, name: name, in: self.directory, clusterCA: self.ca, issuer: ca,
                             issuedAt: issuedAt, days: days)
    }

    /// The same, before the suite exists (in its `init`).
    static func certificate(_ identity: NodeIdentity, name: String, in directory: String,
                            clusterCA: ClusterCertificates.Issued, issuer: ClusterCertificates.Issued? = nil,
                            issuedAt: Date = Date(), days: Int = 1) throws -> (certificate: String, key: String)
    {
        let path = directory + "/" + name
        let issued = try ClusterCertificates.issueNode(identity, dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"],
                                                       ca: issuer ?? clusterCA, now: issuedAt, validFor: days)
        try ClusterCertificates.writeNode(issued, identity: identity, ca: clusterCA.certificate, to: path, overwrite: true)
        return (path + "/\(identity.node).pem", path + "/\(identity.node)-key.pem")
    }
}
