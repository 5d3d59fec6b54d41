import TallyAggregates
import TallyReplica

/// An OTLP `ExportTraceServiceRequest` in protobuf, turned into events in one pass over its bytes.
///
/// Spans of the mapped kinds become events (`SpanMapping`); every other field is skipped in place
/// (events, links, other attributes), so a request costs no allocation per unused field. Each event
/// carries its span's fingerprint (XXH3-64 of trace id and span id), so that the replica counts a
/// retried span once. A span that cannot be an event (ids of the wrong length or zero, no service,
/// an end before its start, a name or user longer than the limits) is an `.invalid` item, which the
/// replica reports as rejected, and the spans around it still count.
///
/// The JSON encoding goes through the generated messages (`OTLPJSON`) and then through here, so both
/// encodings map spans by the same code.
public struct TraceDecoder: Sendable {
    public struct Limits: Sendable, Equatable {
        /// Longest service or operation name, in UTF-8 bytes (the replica's `nameBytesMax`).
        public var nameBytesMax: Int
        /// Longest user id, in UTF-8 bytes.
        public var userBytesMax: Int
        /// Most spans in one request, of any kind; more is a malformed request (413).
        public var spansMax: Int

        public init(nameBytesMax: Int = 128, userBytesMax: Int = 256, spansMax: Int = 100_000) {
            self.nameBytesMax = nameBytesMax
            self.userBytesMax = userBytesMax
            self.spansMax = spansMax
        }
    }

    /// What a request held.
    public struct Decoded: Sendable {
        /// One per span of a mapped kind, in request order.
        public var items: [BatchItem] = []
        /// One per item: its span's fingerprint, 0 for an invalid item.
        public var fingerprints: [UInt64] = []
        /// Every span in the request, of any kind.
        public var spans = 0
        /// Spans skipped for their kind.
        public var skipped = 0
    }

    /// A request over `Limits.spansMax` spans.
    public struct TooManySpans: Error, Equatable, CustomStringConvertible {
        public var limit: Int
        public var description: String { "more than \(self.limit) spans in one request" }
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case malformed(WireError)
        case tooManySpans(TooManySpans)

        public var description: String {
            switch self {
            case .malformed(let error): "malformed ExportTraceServiceRequest: \(error)"
            case .tooManySpans(let error): error.description
            }
        }
    }

    public let mapping: SpanMapping
    public let limits: Limits
    private let kinds: UInt64
    private let serviceKeys: [[UInt8]]
    private let operationKeys: [[UInt8]]
    private let statusKeys: [[UInt8]]
    private let rpcStatusKeys: [[UInt8]]
    private let userKeys: [[UInt8]]

    public init(mapping: SpanMapping = SpanMapping(), limits: Limits = Limits()) {
        self.mapping = mapping
        self.limits = limits
        self.kinds = mapping.kinds.reduce(0) { $0 | 1 << UInt64($1.rawValue) }
        self.serviceKeys = mapping.service.map { Array($0.utf8) }
        self.operationKeys = mapping.operation.map { Array($0.utf8) }
        self.statusKeys = mapping.status.map { Array($0.utf8) }
        self.rpcStatusKeys = mapping.rpcStatus.map { Array($0.utf8) }
        self.userKeys = mapping.user.map { Array($0.utf8) }
    }

    public func decode(_ bytes: [UInt8]) throws(Failure) -> Decoded {
        var decoded = Decoded()
        let result: Failure? = bytes.withUnsafeBytes { buffer -> Failure? in
            do {
                try self.decodeRequest(WireReader(buffer), into: &decoded)
                return nil
            } catch let error as WireError {
                return .malformed(error)
            } catch let error as TooManySpans {
                return .tooManySpans(error)
            } catch {
                return .malformed(WireError(at: 0, "\(error)"))
            }
        }
        if let result { throw result }
        return decoded
    }

    // MARK: - Messages

    /// ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
    private func decodeRequest(_ request: WireReader, into decoded: inout Decoded) throws {
        var request = request
        while let field = try request.nextField() {
            if field.number == 1 {
                try request.expect(.lengthDelimited, field.type, field: "resource_spans")
                try self.decodeResourceSpans(try request.readMessage(), into: &decoded)
            } else {
                try request.skip(field.type)
            }
        }
    }

    /// ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
    /// The resource may follow its spans in the bytes: read it first, then the spans.
    private func decodeResourceSpans(_ message: WireReader, into decoded: inout Decoded) throws {
        var scan = message
        var service: AttributeValue?
        var serviceRank = Int.max
        while let field = try scan.nextField() {
            guard field.number == 1 else {
                try scan.skip(field.type)
                continue
            }
            try scan.expect(.lengthDelimited, field.type, field: "resource")
            // Resource { repeated KeyValue attributes = 1; }
            var resource = try scan.readMessage()
            while let field = try resource.nextField() {
                guard field.number == 1 else {
                    try resource.skip(field.type)
                    continue
                }
                try resource.expect(.lengthDelimited, field.type, field: "resource attribute")
                try self.readAttribute(try resource.readMessage(), keys: self.serviceKeys, rank: &serviceRank, into: &service)
            }
        }
        var serviceName: String?
        var serviceProblem: String?
        switch service {
        case .string(let bytes)?:
            if bytes.isEmpty {
                serviceProblem = "the resource's \(self.mapping.service.first ?? "service") is empty"
            } else if bytes.count > self.limits.nameBytesMax {
                serviceProblem = "the resource's service name is \(bytes.count) bytes; at most \(self.limits.nameBytesMax)"
            } else if let name = String(validating: bytes, as: UTF8.self) {
                serviceName = name
            } else {
                serviceProblem = "the resource's service name is not UTF-8"
            }
        case .int(let value)?:
            serviceName = String(value)
        case nil:
            serviceProblem = "the resource has no \(self.mapping.service.joined(separator: " or ")) attribute"
        }
        var spans = message
        while let field = try spans.nextField() {
            guard field.number == 2 else {
                try spans.skip(field.type)
                continue
            }
            try spans.expect(.lengthDelimited, field.type, field: "scope_spans")
            // ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }
            var scope = try spans.readMessage()
            while let field = try scope.nextField() {
                guard field.number == 2 else {
                    try scope.skip(field.type)
                    continue
                }
                try scope.expect(.lengthDelimited, field.type, field: "span")
                decoded.spans += 1
                guard decoded.spans <= self.limits.spansMax else { throw TooManySpans(limit: self.limits.spansMax) }
                try self.decodeSpan(try scope.readMessage(), service: serviceName, serviceProblem: serviceProblem,
                                    into: &decoded)
            }
        }
    }

    /// Span { bytes trace_id = 1; bytes span_id = 2; string name = 5; SpanKind kind = 6;
    /// fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8; repeated KeyValue attributes = 9;
    /// Status status = 15; }   Status { StatusCode code = 3; }
    private func decodeSpan(_ message: WireReader, service: String?, serviceProblem: String?,
                            into decoded: inout Decoded) throws
    {
        var span = message
        var traceID = UnsafeRawBufferPointer(start: nil, count: 0)
        var spanID = UnsafeRawBufferPointer(start: nil, count: 0)
        var name = UnsafeRawBufferPointer(start: nil, count: 0)
        var kind: UInt64 = 0
        var start: UInt64 = 0
        var end: UInt64 = 0
        var statusCode: UInt64 = 0
        var operation: AttributeValue?
        var operationRank = Int.max
        var status: AttributeValue?
        var statusRank = Int.max
        var rpcStatus: AttributeValue?
        var rpcStatusRank = Int.max
        var user: AttributeValue?
        var userRank = Int.max
        while let field = try span.nextField() {
            switch field.number {
            case 1:
                try span.expect(.lengthDelimited, field.type, field: "span trace_id")
                traceID = try span.readBytes()
            case 2:
                try span.expect(.lengthDelimited, field.type, field: "span span_id")
                spanID = try span.readBytes()
            case 5:
                try span.expect(.lengthDelimited, field.type, field: "span name")
                name = try span.readBytes()
            case 6:
                try span.expect(.varint, field.type, field: "span kind")
                kind = try span.readVarint()
            case 7:
                try span.expect(.fixed64, field.type, field: "span start_time_unix_nano")
                start = try span.readFixed64()
            case 8:
                try span.expect(.fixed64, field.type, field: "span end_time_unix_nano")
                end = try span.readFixed64()
            case 15:
                try span.expect(.lengthDelimited, field.type, field: "span status")
                var statusMessage = try span.readMessage()
                while let field = try statusMessage.nextField() {
                    if field.number == 3 {
                        try statusMessage.expect(.varint, field.type, field: "span status code")
                        statusCode = try statusMessage.readVarint()
                    } else {
                        try statusMessage.skip(field.type)
                    }
                }
            default:
                try span.skip(field.type)
            }
        }
        guard kind < 64, self.kinds & (1 << kind) != 0 else {
            decoded.skipped += 1
            return
        }
        // A second pass, for a span of a mapped kind only: its attributes (the kind may follow them).
        var second = message
        while let field = try second.nextField() {
            guard field.number == 9 else {
                try second.skip(field.type)
                continue
            }
            try second.expect(.lengthDelimited, field.type, field: "span attribute")
            // KeyValue { string key = 1; AnyValue value = 2; }: its key is compared with each
            // mapped name of each role.
            var reader = try second.readMessage()
            var keyRange: UnsafeRawBufferPointer?
            var value: WireReader?
            while let field = try reader.nextField() {
                switch (field.number, field.type) {
                case (1, .lengthDelimited): keyRange = try reader.readBytes()
                case (2, .lengthDelimited): value = try reader.readMessage()
                default: try reader.skip(field.type)
                }
            }
            guard let key = keyRange, let value else { continue }
            if let rank = Self.rank(of: key, in: self.operationKeys) {
                Self.keep(try Self.value(value), rank: rank, best: &operationRank, into: &operation)
            } else if let rank = Self.rank(of: key, in: self.statusKeys) {
                Self.keep(try Self.value(value), rank: rank, best: &statusRank, into: &status)
            } else if let rank = Self.rank(of: key, in: self.rpcStatusKeys) {
                Self.keep(try Self.value(value), rank: rank, best: &rpcStatusRank, into: &rpcStatus)
            } else if let rank = Self.rank(of: key, in: self.userKeys) {
                Self.keep(try Self.value(value), rank: rank, best: &userRank, into: &user)
            }
        }
        let position = decoded.spans - 1
        func invalid(_ reason: String) {
            decoded.items.append(.invalid("span \(position): \(reason)"))
            decoded.fingerprints.append(0)
        }
        guard traceID.count == 16, spanID.count == 8, traceID.contains(where: { $0 != 0 }),
            spanID.contains(where: { $0 != 0 })
        else {
            return invalid("trace_id must be 16 bytes and span_id 8, neither all zero (got \(traceID.count) and \(spanID.count) bytes)")
        }
        guard let service else { return invalid(serviceProblem ?? "no service") }
        guard end != 0 else { return invalid("end_time_unix_nano is 0 (the span has not ended)") }
        guard end >= start else { return invalid("ends before it starts (\(end) < \(start) ns)") }
        let operationName: String
        switch operation {
        case .string(let bytes)?:
            guard let text = self.name(bytes, role: "operation", into: invalid) else { return }
            operationName = text
        case .int(let value)?:
            operationName = String(value)
        case nil:
            guard let text = self.name(name, role: "name", into: invalid) else { return }
            operationName = text
        }
        let code: UInt16
        if let status {
            guard let value = status.integer, (100...599).contains(value) else {
                return invalid("\(self.mapping.status[statusRank]) is not an HTTP status 100...599")
            }
            code = UInt16(value)
        } else if let value = rpcStatus?.integer {
            code = SpanMapping.httpStatus(grpc: value)
        } else {
            // Status ERROR without a status attribute is a server error; UNSET and OK succeed.
            code = statusCode == 2 ? 500 : 200
        }
        var userID: UserID?
        switch user {
        case .string(let bytes)?:
            guard bytes.count <= self.limits.userBytesMax else {
                return invalid("user is \(bytes.count) bytes; at most \(self.limits.userBytesMax)")
            }
            userID = bytes.isEmpty ? nil : UserID(utf8: bytes)
        case .int(let value)?:
            userID = UserID(String(value))
        case nil:
            break
        }
        let event = Event(
            service: service, operation: operationName, status: code,
            latencyMicros: Double(end - start) / 1_000, userID: userID,
            timestamp: Timestamp(millisecondsSinceEpoch: Int64(end / 1_000_000)))
        decoded.items.append(.event(event))
        var identity = [UInt8](repeating: 0, count: 24)
        identity.withUnsafeMutableBytes { target in
            target.copyMemory(from: traceID)
            UnsafeMutableRawBufferPointer(rebasing: target[16...]).copyMemory(from: spanID)
        }
        let fingerprint = XXH3.hash(identity)
        decoded.fingerprints.append(fingerprint == 0 ? 1 : fingerprint)
    }

    private func name(_ bytes: UnsafeRawBufferPointer, role: String, into invalid: (String) -> Void) -> String? {
        guard !bytes.isEmpty else {
            invalid("the \(role) is empty")
            return nil
        }
        guard bytes.count <= self.limits.nameBytesMax else {
            invalid("the \(role) is \(bytes.count) bytes; at most \(self.limits.nameBytesMax)")
            return nil
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            invalid("the \(role) is not UTF-8")
            return nil
        }
        return text
    }

    // MARK: - Attributes

    /// An attribute value an event can use: text (in place) or an integer.
    enum AttributeValue {
        case string(UnsafeRawBufferPointer)
        case int(Int64)

        /// An integer, or decimal text of one.
        var integer: Int64? {
            switch self {
            case .int(let value):
                return value
            case .string(let bytes):
                guard !bytes.isEmpty, bytes.count <= 18, bytes.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
                return bytes.reduce(0) { $0 * 10 + Int64($1 - 0x30) }
            }
        }
    }

    /// Keeps `value` when it ranks before the best found so far.
    private static func keep(_ value: AttributeValue?, rank: Int, best: inout Int, into found: inout AttributeValue?) {
        guard let value, rank < best else { return }
        found = value
        best = rank
    }

    /// The position of `key` in `keys`, or nil.
    private static func rank(of key: UnsafeRawBufferPointer, in keys: [[UInt8]]) -> Int? {
        for (rank, candidate) in keys.enumerated() where candidate.count == key.count {
            if candidate.withUnsafeBytes({ $0.elementsEqual(key) }) { return rank }
        }
        return nil
    }

    /// KeyValue { string key = 1; AnyValue value = 2; }: when the key is one of `keys` and ranks
    /// before what was found so far, its value.
    private func readAttribute(_ message: WireReader, keys: [[UInt8]], rank: inout Int,
                               into found: inout AttributeValue?) throws
    {
        var reader = message
        var key: UnsafeRawBufferPointer?
        var value: WireReader?
        while let field = try reader.nextField() {
            switch (field.number, field.type) {
            case (1, .lengthDelimited): key = try reader.readBytes()
            case (2, .lengthDelimited): value = try reader.readMessage()
            default: try reader.skip(field.type)
            }
        }
        guard let key, let value, let position = Self.rank(of: key, in: keys), position < rank,
            let decoded = try Self.value(value)
        else { return }
        found = decoded
        rank = position
    }

    /// AnyValue { string string_value = 1; bool bool_value = 2; int64 int_value = 3; ... }: the
    /// string or integer it holds (the last one set, as protobuf's oneof reads), else nil.
    private static func value(_ message: WireReader) throws -> AttributeValue? {
        var reader = message
        var value: AttributeValue?
        while let field = try reader.nextField() {
            switch (field.number, field.type) {
            case (1, .lengthDelimited): value = .string(try reader.readBytes())
            case (3, .varint): value = .int(Int64(bitPattern: try reader.readVarint()))
            default:
                try reader.skip(field.type)
                if [2, 4, 5, 6, 7].contains(field.number) { value = nil }
            }
        }
        return value
    }
}
