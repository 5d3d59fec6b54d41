import CompressNIO
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import NIOCore
import TallyAggregates
import TallyProtocols
import TallyReplica

/// OTLP/HTTP (opentelemetry.io/docs/specs/otlp/#otlphttp) on its own listener, 4318 by default:
/// `POST /v1/traces` and `POST /v1/metrics` in protobuf or JSON, gzip or not. Same API keys as the event API, as
/// `Authorization: Bearer KEY` or in `otlp.api_key_header`.
///
/// Answers as the spec asks: 200 with `partial_success` naming how many spans were rejected and why;
/// 400 for a body that does not decode and 413 for one too large (not retryable); 429 and 503 with
/// `Retry-After` when the node is rate limiting or overloaded (retryable). A retry is safe: spans
/// are counted once by trace and span id (`EventBatch.fingerprints`), whatever part of an export
/// had been counted before it failed.
public enum OTLPReceiver {
    static let paths: [String: [HTTPRequest.Method]] = ["/v1/traces": [.post], "/v1/metrics": [.post]]

    /// The router for the OTLP listener.
    public static func router(node: Node, config: OTLPConfig) -> Router<TallyRequestContext> {
        let router = Router(context: TallyRequestContext.self)
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: RequestIDMiddleware())
        let decoder = config.traceDecoder(node.config.limits)
        router.post("/v1/traces") { request, _ in
            await Self.traces(request, node: node, config: config, decoder: decoder)
        }
        let metrics = config.metricsDecoder(node.config.limits, sketchScale: LatencySketch.defaultScale)
        router.post("/v1/metrics") { request, _ in
            await Self.metrics(request, node: node, config: config, decoder: metrics)
        }
        return router
    }

    /// The listener's address and the node's connection bound.
    public static func configuration(_ nodeConfig: NodeConfig, _ config: OTLPConfig, port: Int? = nil)
        -> ApplicationConfiguration
    {
        ApplicationConfiguration(
            address: .hostname(config.listenHost, port: port ?? config.listenPort), serverName: "tally-otlp",
            availableConnectionsDelegate: MaximumAvailableConnections(nodeConfig.connectionsMax))
    }

    // MARK: - Signals

    /// What differs between `/v1/traces` and `/v1/metrics`.
    enum Signal: String, Sendable {
        case spans
        case points

        func response(rejected: Int, message: String, encoding: OTLPEncoding) -> [UInt8] {
            switch self {
            case .spans: OTLPCodec.traceResponse(rejected: rejected, message: message, encoding: encoding)
            case .points: OTLPCodec.metricsResponse(rejected: rejected, message: message, encoding: encoding)
            }
        }
    }

    /// A request's items, or the answer refusing it.
    struct Decoded {
        var items: [BatchItem]
        var fingerprints: [UInt64]
        /// Items skipped (spans of other kinds, metrics not mapped), for `/metrics`.
        var skipped: Int
        /// Warnings for `partial_success.error_message`.
        var notes: [String]
    }

    struct Refusal: Error {
        var status: HTTPResponse.Status
        var message: String
    }

    static func traces(_ request: Request, node: Node, config: OTLPConfig, decoder: TraceDecoder) async -> Response {
        await Self.export(request, node: node, config: config, signal: .spans) { body, encoding throws(Refusal) in
            do {
                let decoded = try decoder.decode(try OTLPCodec.traceRequest(body, encoding: encoding))
                return Decoded(items: decoded.items, fingerprints: decoded.fingerprints, skipped: decoded.skipped, notes: [])
            } catch let error as TraceDecoder.Failure {
                if case .tooManySpans = error { throw Refusal(status: .contentTooLarge, message: error.description) }
                throw Refusal(status: .badRequest, message: error.description)
            } catch {
                throw Refusal(status: .badRequest, message: "\(error)")
            }
        }
    }

    static func metrics(_ request: Request, node: Node, config: OTLPConfig, decoder: MetricsDecoder) async -> Response {
        await Self.export(request, node: node, config: config, signal: .points) { body, encoding throws(Refusal) in
            do {
                let decoded = try decoder.decode(try OTLPCodec.metricsRequest(body, encoding: encoding))
                return Decoded(items: decoded.items, fingerprints: [], skipped: decoded.skippedMetrics, notes: decoded.notes)
            } catch let error as MetricsDecoder.TooManyPoints {
                throw Refusal(status: .contentTooLarge, message: error.description)
            } catch {
                throw Refusal(status: .badRequest, message: "\(error)")
            }
        }
    }

    /// One export request: authenticate, read the body, decode it, ingest its items in batches the
    /// replica takes, and answer as OTLP asks.
    static func export(_ request: Request, node: Node, config: OTLPConfig, signal: Signal,
                       decode: ([UInt8], OTLPEncoding) throws(Refusal) -> Decoded) async -> Response
    {
        let encoding = OTLPEncoding(contentType: request.headers[.contentType] ?? "") ?? .protobuf
        func refuse(_ status: HTTPResponse.Status, _ message: String) async -> Response {
            node.refused(status: Int(status.code))
            return Self.error(status, message, encoding: encoding)
        }
        guard let client = Self.client(request, node: node, config: config) else {
            return await refuse(.unauthorized, "a valid API key is required: Authorization: Bearer KEY"
                + (config.apiKeyHeader.map { " or \($0): KEY" } ?? ""))
        }
        guard OTLPEncoding(contentType: request.headers[.contentType] ?? "") != nil else {
            return await refuse(.unsupportedMediaType, "Content-Type must be application/x-protobuf or application/json")
        }
        let body: [UInt8]
        switch await Self.body(request, config: config) {
        case .success(let bytes): body = bytes
        case .failure(let failure): return await refuse(failure.status, failure.message)
        }
        let decoded: Decoded
        do {
            decoded = try decode(body, encoding)
        } catch {
            return await refuse(error.status, error.message)
        }
        await node.recordOTLP(signal, "skipped", decoded.skipped)
        // In batches the replica takes; a retry after a failure halfway counts the first part once
        // (spans by their ids).
        let chunk = max(node.config.limits.batchEventsMax, 1)
        var accepted = 0
        var duplicates = 0
        var rejections: [String] = []
        var rejected = 0
        var start = 0
        while start < decoded.items.count {
            let end = min(start + chunk, decoded.items.count)
            let outcome = await node.ingest(
                items: Array(decoded.items[start..<end]), client: client, idempotencyKey: nil,
                fingerprints: decoded.fingerprints.isEmpty ? [] : Array(decoded.fingerprints[start..<end]))
            let refusal: Response
            switch outcome {
            case .accepted(let receipt, _):
                accepted += receipt.accepted
                duplicates += receipt.duplicates
                rejected += receipt.rejected.count
                for rejection in receipt.rejected.prefix(max(0, 3 - rejections.count)) {
                    rejections.append(Self.reason(decoded.items[start + rejection.index], rejection.reason))
                }
                start = end
                continue
            case .refused(let reason):
                refusal = Self.error(.contentTooLarge, reason.description, encoding: encoding)
            case .overloaded(let seconds):
                refusal = Self.error(.serviceUnavailable, "the node is overloaded; retry later", encoding: encoding,
                                     retryAfter: seconds)
            case .rateLimited(let seconds):
                refusal = Self.error(.tooManyRequests, "rate limit for this API key exceeded", encoding: encoding,
                                     retryAfter: seconds)
            case .unavailable(let message):
                refusal = Self.error(.serviceUnavailable, "storage unavailable: \(message)", encoding: encoding, retryAfter: 5)
            }
            await node.recordOTLP(signal, "refused", decoded.items.count - start)
            await node.recordOTLP(signal, "accepted", accepted)
            return refusal
        }
        await node.recordOTLP(signal, "accepted", accepted)
        await node.recordOTLP(signal, "duplicate", duplicates)
        await node.recordOTLP(signal, "rejected", rejected)
        var message = decoded.notes.joined(separator: "; ")
        if rejected > 0 {
            if !message.isEmpty { message += "; " }
            message += "\(rejected) of \(decoded.items.count) \(signal.rawValue) rejected: " + rejections.joined(separator: "; ")
            if rejected > rejections.count { message += "; ..." }
        }
        var headers = HTTPFields()
        headers[.contentType] = encoding.contentType
        let bytes = signal.response(rejected: rejected, message: message, encoding: encoding)
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// One rejection, for `partial_success.error_message`.
    static func reason(_ item: BatchItem, _ reason: RejectionReason) -> String {
        item.subject.map { "\($0): \(reason.description)" } ?? reason.description
    }

    // MARK: - Requests

    /// The API key's name, from `Authorization: Bearer KEY` or the configured header.
    static func client(_ request: Request, node: Node, config: OTLPConfig) -> String? {
        if let header = request.headers[.authorization], header.count > 7, header.prefix(7).lowercased() == "bearer ",
            let key = node.config.apiKey(forSecret: String(header.dropFirst(7).drop { $0 == " " }))
        {
            return key.name
        }
        if let name = config.apiKeyHeader, let field = HTTPField.Name(name), let secret = request.headers[field],
            let key = node.config.apiKey(forSecret: secret.trimmingCharacters(in: .whitespaces))
        {
            return key.name
        }
        return nil
    }

    struct BodyFailure: Error {
        var status: HTTPResponse.Status
        var message: String
    }

    /// The body, decompressed: at most `body_bytes_max` as sent and `decompressed_bytes_max` after.
    static func body(_ request: Request, config: OTLPConfig) async -> Result<[UInt8], BodyFailure> {
        var buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: config.bodyBytesMax)
        } catch {
            return .failure(BodyFailure(status: .contentTooLarge, message: "the body is larger than \(config.bodyBytesMax) bytes"))
        }
        let coding = (request.headers[.contentEncoding] ?? "identity").lowercased().trimmingCharacters(in: .whitespaces)
        let algorithm: CompressionAlgorithm
        switch coding {
        case "identity", "": return .success(buffer.readBytes(length: buffer.readableBytes) ?? [])
        case "gzip", "x-gzip": algorithm = .gzip()
        case "deflate": algorithm = .zlib()
        default:
            return .failure(BodyFailure(status: .unsupportedMediaType,
                                        message: "Content-Encoding \(coding) is not supported (gzip, deflate or none)"))
        }
        let compressed = buffer.readableBytesView
        do {
            var inflated = try buffer.decompress(with: algorithm, maxSize: config.decompressedBytesMax)
            let bytes = inflated.readBytes(length: inflated.readableBytes) ?? []
            // The inflater stops quietly at the end of its input: a truncated stream is caught by
            // its trailer (gzip: CRC-32 and size; zlib: Adler-32), which must match what came out.
            guard Self.trailerMatches(Array(compressed), bytes, gzip: coding != "deflate") else {
                return .failure(BodyFailure(status: .badRequest,
                                            message: "the \(coding) body is truncated or corrupt (its checksum does not match)"))
            }
            return .success(bytes)
        } catch let error as CompressNIOError where error == .bufferOverflow {
            return .failure(BodyFailure(status: .contentTooLarge,
                                        message: "the body is larger than \(config.decompressedBytesMax) bytes decompressed"))
        } catch {
            return .failure(BodyFailure(status: .badRequest, message: "the \(coding) body does not decompress: \(error)"))
        }
    }

    /// True when the stream's trailer checks what was inflated: gzip ends in CRC-32 and the size
    /// mod 2^32 (little-endian), zlib in Adler-32 (big-endian).
    static func trailerMatches(_ compressed: [UInt8], _ inflated: [UInt8], gzip: Bool) -> Bool {
        if gzip {
            guard compressed.count >= 18 else { return false }
            let tail = compressed.suffix(8).map(UInt32.init)
            let crc = tail[0] | tail[1] << 8 | tail[2] << 16 | tail[3] << 24
            let size = tail[4] | tail[5] << 8 | tail[6] << 16 | tail[7] << 24
            return size == UInt32(truncatingIfNeeded: inflated.count) && crc == Checksum.crc32(inflated)
        } else {
            guard compressed.count >= 6 else { return false }
            let tail = compressed.suffix(4).map(UInt32.init)
            return tail[0] << 24 | tail[1] << 16 | tail[2] << 8 | tail[3] == Checksum.adler32(inflated)
        }
    }

    /// An OTLP error answer: `google.rpc.Status` in the request's encoding.
    static func error(_ status: HTTPResponse.Status, _ message: String, encoding: OTLPEncoding, retryAfter: Int? = nil)
        -> Response
    {
        // The gRPC code closest to the HTTP status (OTLP's own table, in reverse).
        let code: Int32 = switch status.code {
        case 400: 3  // INVALID_ARGUMENT
        case 401: 16  // UNAUTHENTICATED
        case 413: 8  // RESOURCE_EXHAUSTED
        case 429: 8
        case 503: 14  // UNAVAILABLE
        default: 2  // UNKNOWN
        }
        var headers = HTTPFields()
        headers[.contentType] = encoding.contentType
        if let retryAfter { headers[.retryAfter] = "\(retryAfter)" }
        let bytes = OTLPCodec.status(code: code, message: message, encoding: encoding)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}
