import COpenSSL
import NIOCore
import NIOTLS

/// TLS on the system's OpenSSL as a NIO channel handler: the ciphertext goes in and out through
/// two memory BIOs, the plaintext to and from the next handler. OpenSSL runs the handshake and
/// verifies the peer's chain against the cluster CA; then `approve` (Tally's identity check, which
/// may take a while) decides, and until it has, nothing the peer sent is passed on and nothing
/// written is sent; once it has, `TLSUserEvent.handshakeCompleted` goes up the pipeline. A refusal closes the connection; its reason travels as the error.
///
/// Closing sends `close_notify` first; a peer's `close_notify` closes this side too; a connection
/// that ends without one after the handshake is reported as truncated (`OpenSSLHandlerError`), so
/// the last bytes read are never taken for a whole stream by mistake.
final class OpenSSLHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Tally's check of the peer, given its certificate chain (leaf first, DER) once OpenSSL has
    /// verified it: nil to go on, or the refusal's reason.
    typealias Approve = @Sendable (_ chain: [[UInt8]]) async -> String?

    private enum State {
        case handshaking
        /// The handshake is done; `approve` is deciding.
        case approving
        case open
        case closed
    }

    private let sslContext: OpenSSLContext
    private let ssl: OpaquePointer
    private let network: OpaquePointer  // ciphertext from the peer, for OpenSSL to read
    private let output: OpaquePointer  // ciphertext OpenSSL wrote, for the peer
    private let record = VerificationRecord()
    private let approve: Approve
    private var state = State.handshaking
    private var pendingWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var receivedCloseNotify = false
    /// Largest plaintext read per SSL_read (one TLS record holds at most 16 KiB).
    private static let readChunk = 16_384
    /// Most ciphertext held unread while the identity check decides. In TLS 1.3 the client is
    /// done first and may send what its transport queued (at most `sendQueueBytesMax`, 4 MiB by
    /// default) before this side has approved it; anything past that is a peer to drop.
    private let heldWhileApprovingMax: Int
    static let defaultHeldWhileApprovingMax = 16 << 20

    init(context: OpenSSLContext, approve: @escaping Approve,
         heldWhileApprovingMax: Int = OpenSSLHandler.defaultHeldWhileApprovingMax) throws(OpenSSLError) {
        guard let ssl = SSL_new(context.pointer) else { throw OpenSSLError("cannot create an OpenSSL connection") }
        guard let network = BIO_new(BIO_s_mem()), let output = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw OpenSSLError("cannot create OpenSSL memory buffers")
        }
        SSL_set_bio(ssl, network, output)  // the SSL owns them from here
        if context.isServer { SSL_set_accept_state(ssl) } else { SSL_set_connect_state(ssl) }
        self.sslContext = context
        self.ssl = ssl
        self.network = network
        self.output = output
        self.approve = approve
        self.heldWhileApprovingMax = heldWhileApprovingMax
        _ = tally_ssl_set_app_data(ssl, Unmanaged.passUnretained(self.record).toOpaque())
    }

    deinit {
        SSL_free(self.ssl)
    }

    // MARK: - Inbound

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        if !self.sslContext.isServer { self.handshake(context: context) }  // the ClientHello
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        guard self.state != .closed else { return }
        while buffer.readableBytes > 0 {
            let written = buffer.withUnsafeReadableBytes { BIO_write(self.network, $0.baseAddress, Int32($0.count)) }
            guard written > 0 else {
                self.fail(context: context, OpenSSLHandlerError.failed(OpenSSLError("cannot buffer incoming bytes").description))
                return
            }
            buffer.moveReaderIndex(forwardBy: Int(written))
        }
        switch self.state {
        case .handshaking: self.handshake(context: context)
        case .open: self.readPlaintext(context: context)
        case .approving:  // held in the BIO until approved, up to a limit
            if tally_bio_pending(self.network) > self.heldWhileApprovingMax {
                self.fail(context: context, OpenSSLHandlerError.failed(
                    "the peer sent more than \(self.heldWhileApprovingMax) bytes before its identity was approved"))
            }
        case .closed: break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let wasOpen = self.state == .open || self.state == .approving
        self.state = .closed
        self.failPendingWrites(ChannelError.ioOnClosedChannel)
        if wasOpen && !self.receivedCloseNotify {
            context.fireErrorCaught(OpenSSLHandlerError.truncated)
        }
        context.fireChannelInactive()
    }

    private func handshake(context: ChannelHandlerContext) {
        ERR_clear_error()  // SSL_get_error reads the thread's queue: another connection's leftovers would mislead it
        let result = SSL_do_handshake(self.ssl)
        self.flushOutput(context: context, promise: nil)
        guard result == 1 else {
            let error = SSL_get_error(self.ssl, result)
            if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE { return }
            let reason: String
            if self.record.code != 0 {
                reason = self.record.refusal().description
            } else if SSL_get_verify_result(self.ssl) != Int(X509_V_OK) {
                reason = String(cString: X509_verify_cert_error_string(SSL_get_verify_result(self.ssl)))
            } else {
                reason = Self.describe(OpenSSLError("handshake").description)
            }
            self.fail(context: context, OpenSSLHandlerError.handshakeFailed(reason))
            return
        }
        self.state = .approving
        let chain = self.peerChain()
        let approve = self.approve
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        Task {
            let refusal = await approve(chain)
            loop.execute {
                let (handler, context) = bound.value
                guard handler.state == .approving else { return }
                if let refusal {
                    handler.fail(context: context, OpenSSLHandlerError.refused(refusal))
                    return
                }
                handler.state = .open
                // As NIOSSL announces it: the next handler sends its hello on this.
                context.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: nil))
                let writes = handler.pendingWrites
                handler.pendingWrites = []
                for (buffer, promise) in writes { handler.encrypt(buffer, context: context, promise: promise) }
                context.flush()
                handler.readPlaintext(context: context)  // what arrived meanwhile
            }
        }
    }

    /// OpenSSL's handshake error, without the library's file-and-line noise.
    private static func describe(_ text: String) -> String {
        text.replacingOccurrences(of: "error:", with: "")
    }

    /// The peer's chain, leaf first. A server's list leaves the client's leaf out; it is added.
    private func peerChain() -> [[UInt8]] {
        var chain: [[UInt8]] = []
        if let leaf = SSL_get1_peer_certificate(self.ssl) {
            if let bytes = derBytes(leaf) { chain.append(bytes) }
            X509_free(leaf)
        }
        if let stack = SSL_get_peer_cert_chain(self.ssl) {
            for index in 0..<OPENSSL_sk_num(stack) {
                guard let certificate = OPENSSL_sk_value(stack, index), let bytes = derBytes(OpaquePointer(certificate))
                else { continue }
                if bytes != chain.first { chain.append(bytes) }
            }
        }
        return chain
    }

    private func readPlaintext(context: ChannelHandlerContext) {
        var delivered = false
        reading: while self.state == .open {
            var buffer = context.channel.allocator.buffer(capacity: Self.readChunk)
            var result: Int32 = 0
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.readChunk) { bytes in
                ERR_clear_error()
                result = SSL_read(self.ssl, bytes.baseAddress, Int32(min(bytes.count, Int(Int32.max))))
                return Int(max(0, result))
            }
            if result > 0 {
                delivered = true
                context.fireChannelRead(self.wrapInboundOut(buffer))
                continue
            }
            let error = SSL_get_error(self.ssl, result)
            switch error {
            case SSL_ERROR_WANT_READ:
                break reading
            case SSL_ERROR_ZERO_RETURN:
                // The peer's close_notify: answer it and close.
                self.receivedCloseNotify = true
                if delivered { context.fireChannelReadComplete() }
                delivered = false
                self.shutdownAndClose(context: context, promise: nil)
                break reading
            default:
                self.fail(context: context, OpenSSLHandlerError.failed(Self.describe(OpenSSLError("read").description)))
                return
            }
        }
        if delivered { context.fireChannelReadComplete() }
        self.flushOutput(context: context, promise: nil)  // post-handshake messages (key updates)
    }

    // MARK: - Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = self.unwrapOutboundIn(data)
        switch self.state {
        case .handshaking, .approving:
            self.pendingWrites.append((buffer, promise))
        case .open:
            self.encrypt(buffer, context: context, promise: promise)
        case .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    func flush(context: ChannelHandlerContext) {
        if self.state == .open { context.flush() }
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all, self.state != .closed else {
            context.close(mode: mode, promise: promise)
            return
        }
        self.shutdownAndClose(context: context, promise: promise)
    }

    private func encrypt(_ buffer: ByteBuffer, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        var buffer = buffer
        while buffer.readableBytes > 0 {
            ERR_clear_error()
            let written = buffer.withUnsafeReadableBytes {
                SSL_write(self.ssl, $0.baseAddress, Int32(min($0.count, Int(Int32.max))))
            }
            guard written > 0 else {
                let error = OpenSSLHandlerError.failed(Self.describe(OpenSSLError("write").description))
                promise?.fail(error)
                self.fail(context: context, error)
                return
            }
            buffer.moveReaderIndex(forwardBy: Int(written))
        }
        self.flushOutput(context: context, promise: promise, flush: false)
    }

    /// Sends what OpenSSL wrote to its output BIO; `promise` goes with the last of it.
    private func flushOutput(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?, flush: Bool = true) {
        var wrote = false
        while tally_bio_pending(self.output) > 0 {
            let pending = Int(tally_bio_pending(self.output))
            var buffer = context.channel.allocator.buffer(capacity: pending)
            let read = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { bytes in
                Int(max(0, BIO_read(self.output, bytes.baseAddress, Int32(bytes.count))))
            }
            guard read > 0 else { break }
            let last = tally_bio_pending(self.output) == 0
            context.write(self.wrapOutboundOut(buffer), promise: last ? promise : nil)
            wrote = wrote || last
        }
        if !wrote { promise?.succeed() }
        if flush { context.flush() }
    }

    private func shutdownAndClose(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        if self.state == .open || self.state == .approving {
            _ = SSL_shutdown(self.ssl)  // queues our close_notify
            ERR_clear_error()  // a shutdown's complaints (the peer already gone) are not the next call's
            self.flushOutput(context: context, promise: nil)
        }
        self.state = .closed
        self.failPendingWrites(ChannelError.ioOnClosedChannel)
        context.close(promise: promise)
    }

    private func fail(context: ChannelHandlerContext, _ error: OpenSSLHandlerError) {
        guard self.state != .closed else { return }
        self.state = .closed
        self.failPendingWrites(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    private func failPendingWrites(_ error: any Error) {
        let writes = self.pendingWrites
        self.pendingWrites = []
        for (_, promise) in writes { promise?.fail(error) }
    }
}

/// Why an OpenSSL connection ended.
enum OpenSSLHandlerError: Error, CustomStringConvertible, Equatable {
    /// The handshake failed: the peer's certificate was refused by OpenSSL (the reason in Tally's
    /// words where it has them), or the peer refused ours, or spoke something other than TLS 1.3.
    case handshakeFailed(String)
    /// OpenSSL accepted the peer; Tally's check did not.
    case refused(String)
    /// The connection ended without the peer's close_notify.
    case truncated
    case failed(String)

    var description: String {
        switch self {
        case .handshakeFailed(let reason): "TLS handshake failed: \(reason)"
        case .refused(let reason): reason
        case .truncated: "the connection ended without TLS close_notify"
        case .failed(let reason): "TLS failed: \(reason)"
        }
    }
}
