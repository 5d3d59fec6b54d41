import Foundation
import SwiftProtobuf
import Testing
import TallyAggregates
import TallyReplica
@testable import TallyProtocols

/// The in-place trace decoder against the generated messages: for seeded random requests, walking
/// the bytes gives the events that reading the whole message gives; JSON maps like protobuf; junk,
/// truncations and hostile shapes end in an error or a value, never a trap.
@Suite struct TraceDecoderTests {
    typealias Request = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest
    typealias Span = Opentelemetry_Proto_Trace_V1_Span

    static func attribute(_ key: String, _ value: Opentelemetry_Proto_Common_V1_AnyValue.OneOf_Value) -> Opentelemetry_Proto_Common_V1_KeyValue {
        var attribute = Opentelemetry_Proto_Common_V1_KeyValue()
        attribute.key = key
        attribute.value.value = value
        return attribute
    }

    static func id(_ random: inout SeededRandom, _ count: Int) -> Data {
        Data((0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) })
    }

    static let end: UInt64 = 1_795_946_400_000_000_000

    /// A request of 1...3 resources and 0...20 spans each, with every shape the mapping meets.
    static func request(_ random: inout SeededRandom) -> Request {
        var request = Request()
        for _ in 0..<(1 + Int(random.next() % 3)) {
            var resource = Opentelemetry_Proto_Trace_V1_ResourceSpans()
            switch random.next() % 6 {
            case 0: break  // no service.name
            case 1: resource.resource.attributes = [Self.attribute("service.name", .intValue(7))]
            default:
                resource.resource.attributes = [
                    Self.attribute("host.name", .stringValue("h1")),
                    Self.attribute("service.name", .stringValue("svc-\(random.next() % 3)")),
                ]
            }
            var scope = Opentelemetry_Proto_Trace_V1_ScopeSpans()
            scope.scope.name = "test"
            for _ in 0..<Int(random.next() % 20) {
                var span = Span()
                span.traceID = random.next() % 20 == 0 ? Data(count: 16) : Self.id(&random, 16)
                span.spanID = random.next() % 20 == 0 ? Self.id(&random, 4) : Self.id(&random, 8)
                span.name = random.next() % 30 == 0 ? "" : "op-\(random.next() % 5)"
                span.kind = Span.SpanKind(rawValue: Int(random.next() % 6)) ?? .unspecified
                span.endTimeUnixNano = random.next() % 25 == 0 ? 0 : Self.end - random.next() % 1_000_000_000_000
                span.startTimeUnixNano = span.endTimeUnixNano &- (random.next() % 30 == 0 ? 0 : random.next() % 5_000_000_000)
                if random.next() % 30 == 0 { span.startTimeUnixNano = span.endTimeUnixNano &+ 5 }
                var attributes = [Self.attribute("net.peer.name", .stringValue("x")),
                                  Self.attribute("ignored.array", .arrayValue(.init()))]
                switch random.next() % 6 {
                case 0: attributes.append(Self.attribute("http.response.status_code", .intValue(Int64([200, 201, 404, 503][Int(random.next() % 4)]))))
                case 1: attributes.append(Self.attribute("http.status_code", .stringValue("\(random.next() % 2 == 0 ? 302 : 500)")))
                case 2: attributes.append(Self.attribute("rpc.grpc.status_code", .intValue(Int64(random.next() % 18))))
                case 3: attributes.append(Self.attribute("http.response.status_code", .stringValue("teapot")))
                case 4: attributes += [Self.attribute("http.status_code", .intValue(500)),
                                       Self.attribute("http.response.status_code", .intValue(201))]
                default: break
                }
                if random.next() % 2 == 0 { attributes.append(Self.attribute("http.route", .stringValue("/r/\(random.next() % 4)"))) }
                if random.next() % 10 == 0 { attributes.append(Self.attribute("http.route", .boolValue(true))) }
                if random.next() % 3 == 0 { attributes.append(Self.attribute("enduser.id", .stringValue("u\(random.next() % 50)"))) }
                if random.next() % 8 == 0 { attributes.append(Self.attribute("user.id", .intValue(Int64(random.next() % 50)))) }
                attributes.shuffle(using: &random)
                span.attributes = attributes
                if random.next() % 4 == 0 { span.status.code = .error }
                if random.next() % 5 == 0 { span.events = [.init()] }
                scope.spans.append(span)
            }
            resource.scopeSpans = [scope]
            request.resourceSpans.append(resource)
        }
        return request
    }

    /// The mapping written over the generated message, as docs/integrations.md states it.
    static func reference(_ request: Request, mapping: SpanMapping) -> [(item: BatchItem, fingerprint: UInt64)] {
        func first(_ keys: [String], in attributes: [Opentelemetry_Proto_Common_V1_KeyValue]) -> Opentelemetry_Proto_Common_V1_AnyValue.OneOf_Value? {
            for key in keys {
                for attribute in attributes where attribute.key == key {
                    switch attribute.value.value {
                    case .stringValue?, .intValue?: return attribute.value.value
                    default: continue
                    }
                }
            }
            return nil
        }
        func integer(_ value: Opentelemetry_Proto_Common_V1_AnyValue.OneOf_Value?) -> Int64? {
            switch value {
            case .intValue(let number)?: number
            case .stringValue(let text)?: text.allSatisfy(\.isASCII) && !text.isEmpty && text.count <= 18 && text.allSatisfy(\.isNumber) ? Int64(text) : nil
            default: nil
            }
        }
        var out: [(BatchItem, UInt64)] = []
        var position = -1
        for resource in request.resourceSpans {
            let service: String? = switch first(mapping.service, in: resource.resource.attributes) {
            case .stringValue(let name)?: name.isEmpty ? nil : name
            case .intValue(let number)?: String(number)
            default: nil
            }
            for scope in resource.scopeSpans {
                for span in scope.spans {
                    position += 1
                    guard let kind = SpanKind(rawValue: span.kind.rawValue), mapping.kinds.contains(kind) else { continue }
                    func invalid() { out.append((.invalid("span \(position)"), 0)) }
                    guard span.traceID.count == 16, span.spanID.count == 8, span.traceID.contains(where: { $0 != 0 }),
                        span.spanID.contains(where: { $0 != 0 }), let service,
                        span.endTimeUnixNano != 0, span.endTimeUnixNano >= span.startTimeUnixNano
                    else { invalid(); continue }
                    let operation: String
                    switch first(mapping.operation, in: span.attributes) {
                    case .stringValue(let name)?: operation = name
                    case .intValue(let number)?: operation = String(number)
                    default: operation = span.name
                    }
                    guard !operation.isEmpty else { invalid(); continue }
                    let status: UInt16
                    if let value = first(mapping.status, in: span.attributes) {
                        guard let code = integer(value), (100...599).contains(code) else { invalid(); continue }
                        status = UInt16(code)
                    } else if let code = integer(first(mapping.rpcStatus, in: span.attributes)) {
                        status = SpanMapping.httpStatus(grpc: code)
                    } else {
                        status = span.status.code == .error ? 500 : 200
                    }
                    let user: String? = switch first(mapping.user, in: span.attributes) {
                    case .stringValue(let name)?: name.isEmpty ? nil : name
                    case .intValue(let number)?: String(number)
                    default: nil
                    }
                    let event = Event(service: service, operation: operation, status: status,
                                      latencyMicros: Double(span.endTimeUnixNano - span.startTimeUnixNano) / 1_000,
                                      user: user, timestamp: Timestamp(millisecondsSinceEpoch: Int64(span.endTimeUnixNano / 1_000_000)))
                    let fingerprint = XXH3.hash(Array(span.traceID + span.spanID))
                    out.append((.event(event), fingerprint == 0 ? 1 : fingerprint))
                }
            }
        }
        return out
    }

    /// Invalid items compare by the span they name; their reasons are free text.
    static func same(_ decoded: TraceDecoder.Decoded, _ expected: [(item: BatchItem, fingerprint: UInt64)]) -> Bool {
        guard decoded.items.count == expected.count, decoded.fingerprints == expected.map(\.fingerprint) else { return false }
        for (item, reference) in zip(decoded.items, expected.map(\.item)) {
            switch (item, reference) {
            case (.event(let event), .event(let other)): if event != other { return false }
            case (.invalid(let reason), .invalid(let prefix)): if !reason.hasPrefix(prefix + ":") { return false }
            default: return false
            }
        }
        return true
    }

    @Test func decodingInPlaceMapsLikeTheGeneratedMessage() throws {
        let decoder = TraceDecoder()
        var events = 0
        var invalid = 0
        var skipped = 0
        for seed in 1...60 as ClosedRange<UInt64> {
            var random = SeededRandom(seed: seed)
            let request = Self.request(&random)
            let decoded = try decoder.decode(try request.serializedBytes())
            let expected = Self.reference(request, mapping: decoder.mapping)
            #expect(Self.same(decoded, expected), "seed \(seed): \(decoded.items) vs \(expected.map(\.item))")
            #expect(decoded.spans == request.resourceSpans.reduce(0) { $0 + $1.scopeSpans.reduce(0) { $0 + $1.spans.count } })
            for item in decoded.items {
                if case .event = item { events += 1 } else { invalid += 1 }
            }
            skipped += decoded.skipped
        }
        // The seeds reach every outcome.
        #expect(events > 200 && invalid > 50 && skipped > 200, "\(events) events, \(invalid) invalid, \(skipped) skipped")
    }

    @Test func aConfiguredMappingIsFollowed() throws {
        var random = SeededRandom(seed: 99)
        let mapping = SpanMapping(kinds: [.server, .client, .internal], service: ["service.namespace", "service.name"],
                                  operation: ["net.peer.name"], status: ["http.status_code"], user: ["user.id"])
        for _ in 0..<10 {
            let request = Self.request(&random)
            let decoded = try TraceDecoder(mapping: mapping).decode(try request.serializedBytes())
            #expect(Self.same(decoded, Self.reference(request, mapping: mapping)))
        }
    }

    /// OTLP/JSON, with hex ids, lowerCamelCase keys, enums as integers and 64-bit integers as strings.
    @Test func jsonMapsLikeProtobuf() throws {
        let json = """
            {"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
              "scopeSpans":[{"scope":{"name":"t"},"spans":[
                {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /cart",
                 "kind":2,"startTimeUnixNano":"1795946399000000000","endTimeUnixNano":"1795946399250000000",
                 "attributes":[{"key":"http.response.status_code","value":{"intValue":"503"}},
                               {"key":"enduser.id","value":{"stringValue":"u1"}}],
                 "status":{"code":2},"futureField":{"x":1}},
                {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","name":"client call","kind":3,
                 "startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}
            """
        let bytes = try OTLPCodec.traceRequest(Array(json.utf8), encoding: .json)
        let decoded = try TraceDecoder().decode(bytes)
        #expect(decoded.spans == 2 && decoded.skipped == 1)
        let expected = Event(service: "checkout", operation: "GET /cart", status: 503, latencyMicros: 250_000, user: "u1",
                             timestamp: Timestamp(millisecondsSinceEpoch: 1_795_946_399_250))
        #expect(decoded.items == [.event(expected)])
        var identity: [UInt8] = [0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c]
        identity += [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
        #expect(decoded.fingerprints == [XXH3.hash(identity)])
        #expect(throws: OTLPCodec.BodyError.self) { try OTLPCodec.traceRequest(Array("{\"resourceSpans\":[{".utf8), encoding: .json) }
    }

    /// Every prefix of a valid request, random bytes, and bit flips: an error or a value, never a
    /// trap; and a request past the span cap is refused whole.
    @Test func junkAndTruncationsNeverTrap() throws {
        var random = SeededRandom(seed: 7)
        let bytes = try Self.request(&random).serializedBytes() as [UInt8]
        let decoder = TraceDecoder()
        for length in 0..<bytes.count { _ = try? decoder.decode(Array(bytes[..<length])) }
        for _ in 0..<2_000 {
            var flipped = bytes
            if !flipped.isEmpty { flipped[Int(random.next() % UInt64(flipped.count))] ^= UInt8(1 << (random.next() % 8)) }
            _ = try? decoder.decode(flipped)
            _ = try? decoder.decode((0..<Int(random.next() % 200)).map { _ in UInt8(truncatingIfNeeded: random.next()) })
        }
        // Groups, and a length past the end, are named.
        #expect(throws: TraceDecoder.Failure.self) { try decoder.decode([0x0b]) }
        #expect(throws: TraceDecoder.Failure.self) { try decoder.decode([0x0a, 0x05, 0x01]) }
        var many = Request()
        var resource = Opentelemetry_Proto_Trace_V1_ResourceSpans()
        var scope = Opentelemetry_Proto_Trace_V1_ScopeSpans()
        scope.spans = Array(repeating: Span(), count: 11)
        resource.scopeSpans = [scope]
        many.resourceSpans = [resource]
        #expect(throws: TraceDecoder.Failure.tooManySpans(.init(limit: 10))) {
            try TraceDecoder(limits: .init(spansMax: 10)).decode(try many.serializedBytes())
        }
    }

    /// A value past the limits is one invalid span, and a huge ignored attribute costs nothing.
    @Test func hugeAttributeValuesAreBounded() throws {
        var request = Request()
        var resource = Opentelemetry_Proto_Trace_V1_ResourceSpans()
        resource.resource.attributes = [Self.attribute("service.name", .stringValue("s"))]
        var scope = Opentelemetry_Proto_Trace_V1_ScopeSpans()
        var random = SeededRandom(seed: 3)
        for route in [String(repeating: "r", count: 1 << 20), "/ok"] {
            var span = Span()
            span.traceID = Self.id(&random, 16)
            span.spanID = Self.id(&random, 8)
            span.kind = .server
            span.startTimeUnixNano = Self.end - 1_000
            span.endTimeUnixNano = Self.end
            span.attributes = [Self.attribute("http.route", .stringValue(route)),
                               Self.attribute("blob", .stringValue(String(repeating: "b", count: 1 << 20)))]
            scope.spans.append(span)
        }
        resource.scopeSpans = [scope]
        request.resourceSpans = [resource]
        let decoded = try TraceDecoder().decode(try request.serializedBytes())
        guard decoded.items.count == 2, case .invalid(let reason) = decoded.items[0], case .event(let event) = decoded.items[1] else {
            Issue.record("expected an invalid span then an event, got \(decoded.items)")
            return
        }
        #expect(reason.contains("1048576 bytes; at most 128"))
        #expect(event.operation == "/ok" && event.latencyMicros == 1)
    }
}


@Suite struct ChecksumTests {
    /// The check values of the standards' catalogue ("123456789") and of RFC 1950's definition.
    @Test func knownValues() {
        #expect(Checksum.crc32(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(Checksum.crc32([]) == 0)
        #expect(Checksum.adler32(Array("Wikipedia".utf8)) == 0x11E6_0398)
        #expect(Checksum.adler32([]) == 1)
        // Long input: the modulo runs every 5552 bytes without overflow.
        let long = [UInt8](repeating: 0xFF, count: 100_000)
        var a: UInt64 = 1
        var b: UInt64 = 0
        for byte in long {
            a = (a + UInt64(byte)) % 65_521
            b = (b + a) % 65_521
        }
        #expect(Checksum.adler32(long) == UInt32(b << 16 | a))
    }
}
