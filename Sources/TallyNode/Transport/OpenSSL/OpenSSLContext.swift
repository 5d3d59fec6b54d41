import COpenSSL
import Foundation
import X509

/// What OpenSSL said went wrong, with OpenSSL's own error queue appended.
public struct OpenSSLError: Error, CustomStringConvertible, Sendable {
    public let description: String

    init(_ what: String) {
        let queue = OpenSSLError.drainQueue()
        self.description = queue.isEmpty ? what : "\(what): \(queue.joined(separator: "; "))"
    }

    /// OpenSSL's thread-local error queue, oldest first, emptied (so the next call starts clean).
    static func drainQueue() -> [String] {
        var messages: [String] = []
        while true {
            let code = ERR_get_error()
            guard code != 0 else { return messages }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            messages.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
    }
}

/// An OpenSSL 3 `SSL_CTX` for the peer transport, from the system's libssl: TLS 1.3 only, this
/// node's certificate chain and key, the cluster CA as the only trust anchor, and a certificate
/// required of the peer, which OpenSSL verifies against that CA during the handshake. Tally's own
/// check of the peer's identity against the config runs after it (`PeerVerifier`).
///
/// The system's OpenSSL configuration applies: `OPENSSL_CONF` and the distribution's crypto
/// policy, the FIPS provider included when that configuration activates it (docs/transport.md).
final class OpenSSLContext: @unchecked Sendable {  // SSL_CTX is safe to share once configured
    let pointer: OpaquePointer
    let isServer: Bool

    /// A file OpenSSL would not take, by its config key (`certificate`, `key`, `ca`).
    struct FileError: Error {
        var key: String
        var problem: String
    }

    init(server: Bool, certificatePath: String, keyPath: String, caPath: String) throws {
        _ = OpenSSLError.drainQueue()
        guard let method = server ? TLS_server_method() : TLS_client_method(), let context = SSL_CTX_new(method) else {
            throw OpenSSLError("cannot create an OpenSSL context")
        }
        self.pointer = context
        self.isServer = server
        guard tally_ssl_ctx_tls13_only(context) == 1 else { throw OpenSSLError("cannot restrict OpenSSL to TLS 1.3") }
        tally_ssl_ctx_set_modes(context)
        func problem(_ what: String) -> String { OpenSSLError(what).description }
        guard SSL_CTX_use_certificate_chain_file(context, certificatePath) == 1 else {
            throw FileError(key: "certificate", problem: problem("is not a PEM certificate chain OpenSSL takes"))
        }
        guard SSL_CTX_use_PrivateKey_file(context, keyPath, SSL_FILETYPE_PEM) == 1 else {
            throw FileError(key: "key", problem: problem("is not a PEM private key OpenSSL takes"))
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw FileError(key: "key", problem: problem("does not belong to the certificate \(certificatePath)"))
        }
        guard SSL_CTX_load_verify_locations(context, caPath, nil) == 1 else {
            throw FileError(key: "ca", problem: problem("is not a PEM certificate OpenSSL takes"))
        }
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, openSSLVerifyCallback)
    }

    deinit {
        SSL_CTX_free(self.pointer)
    }
}

/// What OpenSSL's chain verification found wrong, kept for the refusal's reason: OpenSSL's
/// error code, its text, and the certificate it was looking at (DER).
final class VerificationRecord {
    var code: Int32 = 0
    var message = ""
    var certificate: [UInt8]?

    /// The refusal in Tally's words (the ones `PeerVerifier` uses), from OpenSSL's verdict.
    func refusal() -> PeerRefusal {
        let leaf = self.certificate.flatMap { try? Certificate(derEncoded: $0) }
        switch self.code {
        case X509_V_ERR_CERT_HAS_EXPIRED:
            return leaf.map { .expired($0.notValidAfter) } ?? .untrusted(self.message)
        case X509_V_ERR_CERT_NOT_YET_VALID:
            return leaf.map { .notYetValid($0.notValidBefore) } ?? .untrusted(self.message)
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
             X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN,
             X509_V_ERR_CERT_SIGNATURE_FAILURE, X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
            return .notSignedByClusterCA(issuer: leaf.map { "\($0.issuer)" } ?? "unknown")
        default:
            return .untrusted(self.message.isEmpty ? "OpenSSL error \(self.code)" : self.message)
        }
    }
}

/// OpenSSL's verification callback: keeps OpenSSL's verdict (`ok`) and, when it is a refusal,
/// notes why in the connection's `VerificationRecord` (the SSL's app data).
private func openSSLVerifyCallback(_ ok: Int32, _ store: OpaquePointer?) -> Int32 {
    guard ok == 0, let store, let ssl = tally_ssl_of_store_ctx(store), let data = tally_ssl_get_app_data(ssl) else {
        return ok
    }
    let record = Unmanaged<VerificationRecord>.fromOpaque(data).takeUnretainedValue()
    guard record.code == 0 else { return ok }  // the first failure says it best
    record.code = X509_STORE_CTX_get_error(store)
    record.message = String(cString: X509_verify_cert_error_string(Int(record.code)))
    if let certificate = X509_STORE_CTX_get_current_cert(store) { record.certificate = derBytes(certificate) }
    return ok
}

/// A certificate's DER encoding, in a buffer of its own size.
func derBytes(_ certificate: OpaquePointer) -> [UInt8]? {
    let size = tally_x509_der_length(certificate)
    guard size > 0 else { return nil }
    var bytes = [UInt8](repeating: 0, count: Int(size))
    let length = bytes.withUnsafeMutableBufferPointer {
        tally_x509_der(certificate, $0.baseAddress, Int32($0.count))
    }
    return length == size ? bytes : nil
}
