import Crypto
import Foundation
import SwiftASN1
import X509

/// Who a node is, as its certificate states it: the URI subject alternative name
/// `tally://REGION/NODE`. A peer is accepted only if this matches the config entry it connects as.
public struct NodeIdentity: Hashable, Sendable, CustomStringConvertible {
    public var region: String
    public var node: String

    public static let scheme = "tally"

    public init(region: String, node: String) throws(ClusterCertificateError) {
        for (field, value) in [("region", region), ("node", node)] where !Self.isValidName(value) {
            throw .invalidName(field: field, value: value)
        }
        self.region = region
        self.node = node
    }

    /// Names are DNS labels: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'.
    public static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...63).contains(bytes.count), bytes.first != UInt8(ascii: "-"), bytes.last != UInt8(ascii: "-") else {
            return false
        }
        return bytes.allSatisfy { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-") }
    }

    public var uri: String { "\(Self.scheme)://\(self.region)/\(self.node)" }
    public var description: String { "\(self.node) in \(self.region)" }

    /// The identity a `tally://REGION/NODE` URI names, or nil if it names none.
    public init?(uri: String) {
        let prefix = "\(Self.scheme)://"
        guard uri.hasPrefix(prefix) else { return nil }
        let parts = uri.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let identity = try? NodeIdentity(region: String(parts[0]), node: String(parts[1])) else {
            return nil
        }
        self = identity
    }

    /// The identity in `certificate`: exactly one `tally://` URI among its subject alternative names.
    public init(certificate: Certificate) throws(ClusterCertificateError) {
        let names: SubjectAlternativeNames?
        do {
            names = try certificate.extensions.subjectAlternativeNames
        } catch {
            throw .malformed("subject alternative names: \(error)")
        }
        var found: [NodeIdentity] = []
        for case .uniformResourceIdentifier(let uri) in names ?? SubjectAlternativeNames([]) {
            if let identity = NodeIdentity(uri: uri) { found.append(identity) }
        }
        guard found.count == 1, let identity = found.first else {
            throw found.isEmpty ? .noIdentity : .severalIdentities(found.map(\.uri))
        }
        self = identity
    }
}

public enum ClusterCertificateError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidName(field: String, value: String)
    case invalidAddress(String)
    case noIdentity
    case severalIdentities([String])
    case malformed(String)
    case file(path: String, reason: String)

    public var description: String {
        switch self {
        case .invalidName(let field, let value):
            "\(field) \"\(value)\" is not a DNS label (1 to 63 of a-z, 0-9 and '-', not at either end)"
        case .invalidAddress(let value): "\"\(value)\" is not an IPv4 or IPv6 address"
        case .noIdentity: "the certificate names no tally://REGION/NODE identity (subject alternative name URI)"
        case .severalIdentities(let uris): "the certificate names several identities: \(uris.joined(separator: ", "))"
        case .malformed(let reason): "malformed certificate: \(reason)"
        case .file(let path, let reason): "\(path): \(reason)"
        }
    }
}

/// The cluster's certificate authority and the node certificates it issues, as PEM files with
/// predictable names: `ca.pem` and `ca-key.pem`; `NODE.pem` and `NODE-key.pem` beside a copy of
/// `ca.pem`. Keys are P-256, certificates are X.509 v3 signed with ECDSA-SHA256.
public enum ClusterCertificates {
    public static let caCertificateFile = "ca.pem"
    public static let caKeyFile = "ca-key.pem"
    public static func certificateFile(node: String) -> String { "\(node).pem" }
    public static func keyFile(node: String) -> String { "\(node)-key.pem" }

    public struct Issued: Sendable {
        public var certificate: Certificate
        public var key: P256.Signing.PrivateKey
    }

    /// A self-signed CA that may sign node certificates only (path length 0).
    public static func makeCA(name: String, now: Date, validFor days: Int) throws -> Issued {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName {
            OrganizationName("Tally")
            CommonName(name)
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: Certificate.PublicKey(key.publicKey))
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(Double(days) * 86_400),
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
            issuerPrivateKey: Certificate.PrivateKey(key))
        return Issued(certificate: certificate, key: key)
    }

    /// A node certificate for mutual TLS (server and client authentication), naming the node's
    /// identity as a URI and the names and addresses peers dial it by.
    public static func issueNode(_ identity: NodeIdentity, dnsNames: [String], ipAddresses: [String], ca: Issued,
                                 now: Date, validFor days: Int) throws -> Issued
    {
        let key = P256.Signing.PrivateKey()
        var names: [GeneralName] = [.uniformResourceIdentifier(identity.uri)]
        names += dnsNames.map { .dnsName($0) }
        for address in ipAddresses {
            guard let bytes = Self.addressBytes(address) else { throw ClusterCertificateError.invalidAddress(address) }
            names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
        }
        let subject = try DistinguishedName {
            OrganizationName("Tally")
            OrganizationalUnitName(identity.region)
            CommonName(identity.node)
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([.serverAuth, .clientAuth])
            SubjectAlternativeNames(names)
            SubjectKeyIdentifier(hash: Certificate.PublicKey(key.publicKey))
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(Double(days) * 86_400),
            issuer: ca.certificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions, issuerPrivateKey: Certificate.PrivateKey(ca.key))
        return Issued(certificate: certificate, key: key)
    }

    /// 4 or 16 bytes for an IPv4 or IPv6 address in text, or nil.
    static func addressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    // MARK: - Files

    public static func writeCA(_ ca: Issued, to directory: String, overwrite: Bool) throws {
        try Self.write(ca, certificate: Self.caCertificateFile, key: Self.caKeyFile, in: directory, overwrite: overwrite)
    }

    /// Writes `NODE.pem`, `NODE-key.pem` and a copy of the CA certificate, `ca.pem`.
    public static func writeNode(_ node: Issued, identity: NodeIdentity, ca: Certificate, to directory: String,
                                 overwrite: Bool) throws
    {
        try Self.write(node, certificate: Self.certificateFile(node: identity.node), key: Self.keyFile(node: identity.node),
                       in: directory, overwrite: overwrite)
        let caPath = (directory as NSString).appendingPathComponent(Self.caCertificateFile)
        try Self.writeFile(caPath, try ca.serializeAsPEM().pemString + "\n", private: false, overwrite: true)
    }

    public static func readCA(from directory: String) throws -> Issued {
        let certificatePath = (directory as NSString).appendingPathComponent(Self.caCertificateFile)
        let keyPath = (directory as NSString).appendingPathComponent(Self.caKeyFile)
        let certificate = try Self.readCertificate(certificatePath)
        let key: P256.Signing.PrivateKey
        do {
            key = try P256.Signing.PrivateKey(pemRepresentation: try Self.readText(keyPath))
        } catch let error as ClusterCertificateError {
            throw error
        } catch {
            throw ClusterCertificateError.file(path: keyPath, reason: "not a P-256 private key in PEM (\(error))")
        }
        guard key.publicKey.rawRepresentation == P256.Signing.PublicKey(certificate.publicKey)?.rawRepresentation else {
            throw ClusterCertificateError.file(path: keyPath, reason: "does not match the certificate in \(certificatePath)")
        }
        return Issued(certificate: certificate, key: key)
    }

    public static func readCertificate(_ path: String) throws -> Certificate {
        do {
            return try Certificate(pemEncoded: try Self.readText(path))
        } catch let error as ClusterCertificateError {
            throw error
        } catch {
            throw ClusterCertificateError.file(path: path, reason: "not an X.509 certificate in PEM (\(error))")
        }
    }

    static func readText(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ClusterCertificateError.file(path: path, reason: "cannot be read")
        }
        return text
    }

    private static func write(_ issued: Issued, certificate: String, key: String, in directory: String,
                              overwrite: Bool) throws
    {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let keyPath = (directory as NSString).appendingPathComponent(key)
        let certificatePath = (directory as NSString).appendingPathComponent(certificate)
        try Self.writeFile(keyPath, issued.key.pemRepresentation + "\n", private: true, overwrite: overwrite)
        try Self.writeFile(certificatePath, try issued.certificate.serializeAsPEM().pemString + "\n", private: false,
                           overwrite: overwrite)
    }

    /// Writes `text`; a private key is readable by its owner only. Refuses to replace a file unless
    /// `overwrite`: a CA key written over is every node certificate lost.
    private static func writeFile(_ path: String, _ text: String, private isPrivate: Bool, overwrite: Bool) throws {
        if !overwrite && FileManager.default.fileExists(atPath: path) {
            throw ClusterCertificateError.file(path: path, reason: "exists; pass --force to replace it")
        }
        let attributes: [FileAttributeKey: Any] = [.posixPermissions: isPrivate ? 0o600 : 0o644]
        guard FileManager.default.createFile(atPath: path, contents: nil, attributes: attributes) else {
            throw ClusterCertificateError.file(path: path, reason: "cannot be created")
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw ClusterCertificateError.file(path: path, reason: "cannot be written")
        }
        defer { try? handle.close() }
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data(text.utf8))
        try FileManager.default.setAttributes(attributes, ofItemAtPath: path)
    }
}
