/// How an OTLP span becomes a Tally event (docs/integrations.md). Each list is tried in order and
/// the first attribute present wins; the defaults follow OpenTelemetry's semantic conventions
/// (HTTP and RPC spans, stable and the older names).
public struct SpanMapping: Sendable, Equatable {
    /// The span kinds that are requests served (SERVER, CONSUMER by default); spans of the other
    /// kinds (CLIENT, INTERNAL, PRODUCER) are the calling side or internal work, and are skipped.
    public var kinds: Set<SpanKind>
    /// Resource attributes naming the service.
    public var service: [String]
    /// Span attributes naming the operation; without one, the span's name.
    public var operation: [String]
    /// Span attributes holding an HTTP status code (an integer, or its decimal text).
    public var status: [String]
    /// Span attributes holding a gRPC status code, mapped to the HTTP status gRPC's own gateway
    /// uses (`SpanMapping.httpStatus(grpc:)`), when no HTTP status is present.
    public var rpcStatus: [String]
    /// Span attributes holding the user (a string, or an integer as its decimal text).
    public var user: [String]

    public init(
        kinds: Set<SpanKind> = [.server, .consumer], service: [String] = ["service.name"],
        operation: [String] = ["http.route"], status: [String] = ["http.response.status_code", "http.status_code"],
        rpcStatus: [String] = ["rpc.grpc.status_code"], user: [String] = ["enduser.id", "user.id"]
    ) {
        self.kinds = kinds
        self.service = service
        self.operation = operation
        self.status = status
        self.rpcStatus = rpcStatus
        self.user = user
    }

    /// The HTTP status for a gRPC status code (google.rpc.Code), as grpc-gateway maps them; an
    /// unknown code is a server error.
    public static func httpStatus(grpc code: Int64) -> UInt16 {
        switch code {
        case 0: 200  // OK
        case 1: 499  // CANCELLED (client closed request)
        case 2: 500  // UNKNOWN
        case 3: 400  // INVALID_ARGUMENT
        case 4: 504  // DEADLINE_EXCEEDED
        case 5: 404  // NOT_FOUND
        case 6: 409  // ALREADY_EXISTS
        case 7: 403  // PERMISSION_DENIED
        case 8: 429  // RESOURCE_EXHAUSTED
        case 9: 400  // FAILED_PRECONDITION
        case 10: 409  // ABORTED
        case 11: 400  // OUT_OF_RANGE
        case 12: 501  // UNIMPLEMENTED
        case 13: 500  // INTERNAL
        case 14: 503  // UNAVAILABLE
        case 15: 500  // DATA_LOSS
        case 16: 401  // UNAUTHENTICATED
        default: 500
        }
    }
}

/// OTLP's span kinds (opentelemetry/proto/trace/v1/trace.proto).
public enum SpanKind: Int, Sendable, CaseIterable, CustomStringConvertible {
    case unspecified = 0
    case `internal` = 1
    case server = 2
    case client = 3
    case producer = 4
    case consumer = 5

    public init?(name: String) {
        guard let kind = Self.allCases.first(where: { $0.description == name.lowercased() }) else { return nil }
        self = kind
    }

    public var description: String {
        switch self {
        case .unspecified: "unspecified"
        case .internal: "internal"
        case .server: "server"
        case .client: "client"
        case .producer: "producer"
        case .consumer: "consumer"
        }
    }
}
