import Foundation
import SwiftASN1
import X509

/// Decides whether a TLS peer may talk to this node: its certificate chains to the cluster CA and
/// is valid now (RFC 5280, swift-certificates' verifier), and it names a node the config lists,
/// the very one dialed when this side dialed. Every refusal says why, for the log line.
public struct PeerVerifier: Sendable {
    public let ca: Certificate
    /// The identities the config lists as peers.
    public let peers: Set<NodeIdentity>

    public init(ca: Certificate, peers: Set<NodeIdentity>) {
        self.ca = ca
        self.peers = peers
    }

    /// Verifies a peer's certificate chain (leaf first, DER) at `now`. `expected`: the peer this
    /// side dialed (nil when it accepted the connection).
    public func verify(chain: [[UInt8]], expected: NodeIdentity?, now: Date) async -> Result<NodeIdentity, PeerRefusal> {
        guard let leafBytes = chain.first else { return .failure(.noCertificate) }
        let leaf: Certificate
        var intermediates: [Certificate] = []
        do {
            leaf = try Certificate(derEncoded: leafBytes)
            intermediates = try chain.dropFirst().map { try Certificate(derEncoded: $0) }
        } catch {
            return .failure(.malformed("\(error)"))
        }
        var verifier = Verifier(rootCertificates: CertificateStore([self.ca])) {
            RFC5280Policy(validationTime: now)
        }
        let result = await verifier.validate(leaf: leaf, intermediates: CertificateStore(intermediates))
        guard case .validCertificate = result else {
            if now > leaf.notValidAfter { return .failure(.expired(leaf.notValidAfter)) }
            if now < leaf.notValidBefore { return .failure(.notYetValid(leaf.notValidBefore)) }
            if leaf.issuer != self.ca.subject || !self.ca.publicKey.isValidSignature(leaf.signature, for: leaf) {
                return .failure(.notSignedByClusterCA(issuer: "\(leaf.issuer)"))
            }
            if case .couldNotValidate(let failures) = result {
                return .failure(.untrusted(failures.map { "\($0.policyFailureReason)" }.joined(separator: "; ")))
            }
            return .failure(.untrusted("unknown reason"))
        }
        let identity: NodeIdentity
        do {
            identity = try NodeIdentity(certificate: leaf)
        } catch {
            return .failure(.noIdentity("\(error)"))
        }
        if let expected, expected != identity { return .failure(.wrongIdentity(expected: expected, found: identity)) }
        guard self.peers.contains(identity) else { return .failure(.notAPeer(identity)) }
        return .success(identity)
    }
}

/// Why a peer was refused; its data is never merged.
public enum PeerRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    case noCertificate
    case malformed(String)
    case expired(Date)
    case notYetValid(Date)
    case notSignedByClusterCA(issuer: String)
    case untrusted(String)
    case noIdentity(String)
    case wrongIdentity(expected: NodeIdentity, found: NodeIdentity)
    case notAPeer(NodeIdentity)
    /// The hello names someone other than the certificate, or no protocol is common.
    case handshake(String)

    public var description: String {
        switch self {
        case .noCertificate: "presented no client certificate"
        case .malformed(let reason): "certificate does not parse: \(reason)"
        case .expired(let date): "certificate expired at \(date)"
        case .notYetValid(let date): "certificate is not valid before \(date)"
        case .notSignedByClusterCA(let issuer): "certificate is not signed by the cluster CA (issuer: \(issuer))"
        case .untrusted(let reason): "certificate does not verify against the cluster CA: \(reason)"
        case .noIdentity(let reason): "certificate names no node: \(reason)"
        case .wrongIdentity(let expected, let found): "dialed \(expected.uri) but the certificate is \(found.uri)"
        case .notAPeer(let identity): "\(identity.uri) is not a peer in this node's config"
        case .handshake(let reason): "handshake: \(reason)"
        }
    }
}
