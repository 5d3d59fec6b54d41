import Foundation
import SwiftProtobuf

/// OTLP/HTTP's two encodings, chosen by the request's `Content-Type`; the answer uses the same.
public enum OTLPEncoding: Sendable, Equatable {
    case protobuf
    case json

    /// `application/x-protobuf` or `application/json` (parameters such as `charset` allowed).
    public init?(contentType: String) {
        let mediaType = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        switch mediaType {
        case "application/x-protobuf", "application/protobuf": self = .protobuf
        case "application/json": self = .json
        default: return nil
        }
    }

    public var contentType: String {
        switch self {
        case .protobuf: "application/x-protobuf"
        case .json: "application/json"
        }
    }
}

/// Encoding and decoding around the receivers: OTLP/JSON requests into protobuf messages, and the
/// answers (`Export*ServiceResponse` with `partial_success`, `google.rpc.Status` for errors).
public enum OTLPCodec {
    /// A body that is not a request of its encoding.
    public struct BodyError: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    static var jsonOptions: JSONDecodingOptions {
        var options = JSONDecodingOptions()
        // OTLP/JSON receivers MUST ignore fields they do not know (newer senders add some).
        options.ignoreUnknownFields = true
        options.messageDepthLimit = 64
        return options
    }

    /// The protobuf encoding of an `ExportTraceServiceRequest` sent in `encoding`, for
    /// `TraceDecoder`. A JSON body is read into the generated message (trace and span ids are hex
    /// in OTLP/JSON, not protobuf JSON's base64; they are fixed up) and serialized again.
    public static func traceRequest(_ body: [UInt8], encoding: OTLPEncoding) throws(BodyError) -> [UInt8] {
        guard encoding == .json else { return body }
        do {
            var request = try Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest(
                jsonUTF8Bytes: body, options: Self.jsonOptions)
            for resource in request.resourceSpans.indices {
                for scope in request.resourceSpans[resource].scopeSpans.indices {
                    for span in request.resourceSpans[resource].scopeSpans[scope].spans.indices {
                        var value = request.resourceSpans[resource].scopeSpans[scope].spans[span]
                        value.traceID = Self.hexID(value.traceID, bytes: 16)
                        value.spanID = Self.hexID(value.spanID, bytes: 8)
                        request.resourceSpans[resource].scopeSpans[scope].spans[span] = value
                    }
                }
            }
            return try request.serializedBytes()
        } catch {
            throw BodyError(description: "malformed OTLP/JSON ExportTraceServiceRequest: \(error)")
        }
    }

    /// An `ExportMetricsServiceRequest` in either encoding.
    public static func metricsRequest(_ body: [UInt8], encoding: OTLPEncoding) throws(BodyError)
        -> Opentelemetry_Proto_Collector_Metrics_V1_ExportMetricsServiceRequest
    {
        do {
            switch encoding {
            case .protobuf:
                var options = BinaryDecodingOptions()
                options.messageDepthLimit = 64
                return try Opentelemetry_Proto_Collector_Metrics_V1_ExportMetricsServiceRequest(
                    serializedBytes: body, options: options)
            case .json:
                return try Opentelemetry_Proto_Collector_Metrics_V1_ExportMetricsServiceRequest(
                    jsonUTF8Bytes: body, options: Self.jsonOptions)
            }
        } catch {
            throw BodyError(description: "malformed ExportMetricsServiceRequest: \(error)")
        }
    }

    /// OTLP/JSON writes ids as hex; protobuf JSON read them as base64, which hex text also is (32
    /// hex digits are 24 base64 bytes). Undo that: base64 again, then hex. An id that was not hex
    /// (a sender using base64 after all) is kept as read.
    static func hexID(_ read: Data, bytes: Int) -> Data {
        guard read.count == bytes * 3 / 2 else { return read }
        let text = Array(read.base64EncodedString().utf8)
        guard text.count == 2 * bytes else { return read }
        var id = Data(capacity: bytes)
        var index = 0
        while index < text.count {
            guard let high = Self.hexDigit(text[index]), let low = Self.hexDigit(text[index + 1]) else { return read }
            id.append(high << 4 | low)
            index += 2
        }
        return id
    }

    private static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    // MARK: - Answers

    /// `ExportTraceServiceResponse`: empty on full success, else `partial_success`.
    public static func traceResponse(rejected: Int, message: String, encoding: OTLPEncoding) -> [UInt8] {
        var response = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceResponse()
        if rejected > 0 || !message.isEmpty {
            response.partialSuccess.rejectedSpans = Int64(rejected)
            response.partialSuccess.errorMessage = message
        }
        return Self.encode(response, encoding)
    }

    /// `ExportMetricsServiceResponse`: empty on full success, else `partial_success`.
    public static func metricsResponse(rejected: Int, message: String, encoding: OTLPEncoding) -> [UInt8] {
        var response = Opentelemetry_Proto_Collector_Metrics_V1_ExportMetricsServiceResponse()
        if rejected > 0 || !message.isEmpty {
            response.partialSuccess.rejectedDataPoints = Int64(rejected)
            response.partialSuccess.errorMessage = message
        }
        return Self.encode(response, encoding)
    }

    /// `google.rpc.Status { int32 code = 1; string message = 2; }`, the body of an OTLP error
    /// answer (code: the gRPC code closest to the HTTP status).
    public static func status(code: Int32, message: String, encoding: OTLPEncoding) -> [UInt8] {
        switch encoding {
        case .json:
            let object: [String: Any] = ["code": code, "message": message]
            return Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data())
        case .protobuf:
            var bytes: [UInt8] = []
            if code != 0 {
                bytes.append(0x08)
                Self.appendVarint(UInt64(bitPattern: Int64(code)), to: &bytes)
            }
            let text = Array(message.utf8)
            if !text.isEmpty {
                bytes.append(0x12)
                Self.appendVarint(UInt64(text.count), to: &bytes)
                bytes += text
            }
            return bytes
        }
    }

    private static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7f) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    private static func encode(_ message: some SwiftProtobuf.Message, _ encoding: OTLPEncoding) -> [UInt8] {
        switch encoding {
        case .protobuf: (try? message.serializedBytes()) ?? []
        case .json: (try? message.jsonUTF8Bytes()) ?? Array("{}".utf8)
        }
    }
}
