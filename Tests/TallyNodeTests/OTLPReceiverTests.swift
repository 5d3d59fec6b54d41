import CompressNIO
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import SwiftProtobuf
import Testing
import TallyAggregates
import TallyProtocols
import TallyReplica
@testable import TallyNode

/// The OTLP/HTTP receiver through Hummingbird's router test client: answers as the OTLP spec
/// asks (partial_success, google.rpc.Status in the request's encoding, 400/401/413/415), gzip with
/// a cap after decompression, and the cardinality limits holding against a flood of span names.
@Suite struct OTLPReceiverTests {
    typealias Request = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest
    typealias Response = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceResponse

    static func withReceiver<T: Sendable>(_ change: @escaping (inout NodeConfig) -> Void = { _ in },
                                          _ body: @escaping @Sendable (Node, any TestClientProtocol) async throws -> T)
        async throws -> T
    {
        let directory = NSTemporaryDirectory() + "tally-otlp-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var config = try APITests.config(directory: directory)
        config.otlp = OTLPConfig(listenHost: "127.0.0.1", listenPort: 0, apiKeyHeader: "x-api-key")
        change(&config)
        let node = try await Node.start(config: config, clock: { APITests.now })
        defer { Task { await node.stop() } }
        let app = Application(router: OTLPReceiver.router(node: node, config: config.otlp!))
        return try await app.test(.router) { client in try await body(node, client) }
    }

    /// `count` SERVER spans of service `cart`, ending a second before the test clock; names from `name`.
    static func request(_ count: Int, seed: UInt64 = 1, name: (Int) -> String = { _ in "GET /cart" }) -> Request {
        var random = SeededRandom(seed: seed)
        var scope = Opentelemetry_Proto_Trace_V1_ScopeSpans()
        let end = UInt64(APITests.now.millisecondsSinceEpoch - 1_000) * 1_000_000
        scope.spans = (0..<count).map { index in
            var span = Opentelemetry_Proto_Trace_V1_Span()
            span.traceID = Data((0..<16).map { _ in UInt8(truncatingIfNeeded: random.next() | 1) })
            span.spanID = Data((0..<8).map { _ in UInt8(truncatingIfNeeded: random.next() | 1) })
            span.name = name(index)
            span.kind = .server
            span.startTimeUnixNano = end - 2_000_000
            span.endTimeUnixNano = end
            return span
        }
        var resource = Opentelemetry_Proto_Trace_V1_ResourceSpans()
        var attribute = Opentelemetry_Proto_Common_V1_KeyValue()
        attribute.key = "service.name"
        attribute.value.stringValue = "cart"
        resource.resource.attributes = [attribute]
        resource.scopeSpans = [scope]
        var request = Request()
        request.resourceSpans = [resource]
        return request
    }

    static let protobuf: HTTPFields = [.authorization: "Bearer \(APITests.secret)", .contentType: "application/x-protobuf"]

    static func post(_ client: any TestClientProtocol, _ body: [UInt8], headers: HTTPFields = Self.protobuf)
        async throws -> TestResponse
    {
        try await client.execute(uri: "/v1/traces", method: .post, headers: headers, body: ByteBuffer(bytes: body))
    }

    @Test func partialSuccessNamesTheRejectedSpans() async throws {
        try await Self.withReceiver { node, client in
            var request = Self.request(3)
            request.resourceSpans[0].scopeSpans[0].spans[1].spanID = Data(count: 8)
            let response = try await Self.post(client, try request.serializedBytes())
            #expect(response.status == .ok && response.headers[.contentType] == "application/x-protobuf")
            let answer = try Response(serializedBytes: Array(buffer: response.body))
            #expect(answer.partialSuccess.rejectedSpans == 1)
            #expect(answer.partialSuccess.errorMessage.contains("1 of 3 spans rejected: span 1: trace_id must be 16 bytes"))
            #expect(await node.totalRequests(excluding: []) == 2)
            // The same request again: counted once, answered the same way.
            let again = try await Self.post(client, try request.serializedBytes())
            #expect(try Response(serializedBytes: Array(buffer: again.body)).partialSuccess.rejectedSpans == 1)
            #expect(await node.totalRequests(excluding: []) == 2)
        }
    }

    @Test func jsonIsAnsweredInJSONAndErrorsAreRPCStatuses() async throws {
        try await Self.withReceiver { node, client in
            var json = Self.protobuf
            json[.contentType] = "application/json"
            let body = """
                {"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},
                 "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
                 "name":"GET /x","kind":2,"startTimeUnixNano":"1795953598000000000","endTimeUnixNano":"1795953599000000000"}]}]}]}
                """
            let ok = try await Self.post(client, Array(body.utf8), headers: json)
            #expect(ok.status == .ok && ok.headers[.contentType] == "application/json")
            #expect(String(buffer: ok.body) == "{}")
            #expect(await node.totalRequests(excluding: []) == 1)
            let bad = try await Self.post(client, Array("{\"resourceSpans\": 7}".utf8), headers: json)
            #expect(bad.status == .badRequest)
            let status = try #require(try JSONSerialization.jsonObject(with: Data(buffer: bad.body)) as? [String: Any])
            #expect(status["code"] as? Int == 3 && (status["message"] as? String)?.contains("malformed") == true)
            // Protobuf junk: a 400 with a protobuf google.rpc.Status naming the byte.
            let junk = try await Self.post(client, [0x0a, 0xff, 0xff, 0x01])
            #expect(junk.status == .badRequest && String(decoding: Array(buffer: junk.body), as: UTF8.self).contains("at byte"))
        }
    }

    @Test func keysTypesAndSizesAreChecked() async throws {
        try await Self.withReceiver { node, client in
            let body = try Self.request(2).serializedBytes() as [UInt8]
            #expect(try await Self.post(client, body, headers: [.contentType: "application/x-protobuf"]).status == .unauthorized)
            let header = HTTPField.Name("x-api-key")!
            #expect(try await Self.post(client, body, headers: [header: APITests.secret, .contentType: "application/x-protobuf"]).status == .ok)
            var text = Self.protobuf
            text[.contentType] = "text/plain"
            #expect(try await Self.post(client, body, headers: text).status == .unsupportedMediaType)
            var zstd = Self.protobuf
            zstd[.contentEncoding] = "zstd"
            #expect(try await Self.post(client, body, headers: zstd).status == .unsupportedMediaType)
            // gzip: a real body decompresses; a bomb stops at the cap (413); junk is a 400.
            var gzip = Self.protobuf
            gzip[.contentEncoding] = "gzip"
            var plain = ByteBuffer(bytes: try Self.request(5, seed: 2).serializedBytes() as [UInt8])
            let compressed = try plain.compress(with: .gzip())
            #expect(try await Self.post(client, Array(buffer: compressed), headers: gzip).status == .ok)
            var zeros = ByteBuffer(repeating: 0, count: 64 << 20)
            let bomb = try zeros.compress(with: .gzip())
            #expect(bomb.readableBytes < 1 << 20)
            let refused = try await Self.post(client, Array(buffer: bomb), headers: gzip)
            #expect(refused.status == .contentTooLarge)
            #expect(String(decoding: Array(buffer: refused.body), as: UTF8.self).contains("decompressed"))
            #expect(try await Self.post(client, [0x1f, 0x8b, 0x08, 0x00, 0x01], headers: gzip).status == .badRequest)
            #expect(await node.totalRequests(excluding: []) == 2 + 5)
        }
    }

    /// Distinct span names past the operation limit are rejected (and said so), the series held
    /// stay bounded, and the spans of known operations still count.
    @Test func aFloodOfSpanNamesIsBoundedByTheOperationLimit() async throws {
        try await Self.withReceiver({ $0.limits.operationsPerServiceMax = 100 }) { node, client in
            var rejected: Int64 = 0
            // A million distinct span names, in 50 exports of 20,000.
            for round in 0..<50 {
                let request = Self.request(20_000, seed: UInt64(round) + 10) { "op-\(round)-\($0)" }
                let response = try await Self.post(client, try request.serializedBytes())
                #expect(response.status == .ok)
                let answer = try Response(serializedBytes: Array(buffer: response.body))
                rejected += answer.partialSuccess.rejectedSpans
                if round == 0 { #expect(answer.partialSuccess.errorMessage.contains("already has 100 operations")) }
            }
            #expect(rejected == 1_000_000 - 100)
            #expect(await node.catalog().first?.operations.count == 100)
        }
    }
}
