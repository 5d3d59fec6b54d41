import TallyProtocols
import TallyReplica

/// The `otlp` section: the OTLP/HTTP receiver (docs/integrations.md). Absent: no receiver.
public struct OTLPConfig: Sendable, Equatable {
    public var listenHost: String
    public var listenPort: Int
    /// A header that carries an API key itself (`x-api-key: SECRET`), besides `Authorization: Bearer`.
    public var apiKeyHeader: String?
    /// Largest body as sent (compressed or not); 413 above.
    public var bodyBytesMax: Int
    /// Largest body once decompressed (a gzip bomb stops here); 413 above.
    public var decompressedBytesMax: Int
    /// How spans become events.
    public var spans: SpanMapping
    /// Most spans in one export request.
    public var spansPerRequestMax: Int

    public init(listenHost: String, listenPort: Int = 4318, apiKeyHeader: String? = nil, bodyBytesMax: Int = 4 << 20,
                decompressedBytesMax: Int = 32 << 20, spans: SpanMapping = SpanMapping(), spansPerRequestMax: Int = 100_000)
    {
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.apiKeyHeader = apiKeyHeader
        self.bodyBytesMax = bodyBytesMax
        self.decompressedBytesMax = decompressedBytesMax
        self.spans = spans
        self.spansPerRequestMax = spansPerRequestMax
    }
}

extension RawConfig {
    struct RawOTLP: Decodable {
        var listen: String?
        var api_key_header: String?
        var body_bytes_max: Int?
        var decompressed_bytes_max: Int?
        var spans_per_request_max: Int?
        var spans: RawSpans?

        struct RawSpans: Decodable {
            var kinds: [String]?
            var service: [String]?
            var operation: [String]?
            var status: [String]?
            var rpc_status: [String]?
            var user: [String]?
        }
    }
}

extension OTLPConfig {
    static let knownKeys: [String: Set<String>] = [
        "otlp": ["listen", "api_key_header", "body_bytes_max", "decompressed_bytes_max", "spans_per_request_max", "spans"],
        "otlp.spans": ["kinds", "service", "operation", "status", "rpc_status", "user"],
    ]

    /// The section as read, checked: every error names `otlp.KEY` and the value.
    static func parse(_ raw: RawConfig.RawOTLP, defaultHost: String, file: String) throws(ConfigError) -> OTLPConfig {
        func fail(_ key: String, _ value: String?, _ message: String) -> ConfigError {
            ConfigError(file: file, key: "otlp.\(key)", value: value, message: message)
        }
        var config = OTLPConfig(listenHost: defaultHost)
        if let listen = raw.listen {
            (config.listenHost, config.listenPort) = try NodeConfig.address("otlp.listen", listen, file: file)
        }
        if let header = raw.api_key_header {
            let allowed = header.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
            guard !header.isEmpty, header.utf8.count <= 64, allowed else {
                throw fail("api_key_header", header, "must be an HTTP header name (letters, digits, '-', '_')")
            }
            guard header.lowercased() != "authorization" else {
                throw fail("api_key_header", header, "is always read as 'Bearer KEY'; name another header")
            }
            config.apiKeyHeader = header.lowercased()
        }
        func bounded(_ key: String, _ value: Int?, _ range: ClosedRange<Int>, _ fallback: Int) throws(ConfigError) -> Int {
            guard let value else { return fallback }
            guard range.contains(value) else { throw fail(key, "\(value)", "must be \(range.lowerBound) to \(range.upperBound)") }
            return value
        }
        config.bodyBytesMax = try bounded("body_bytes_max", raw.body_bytes_max, 1_024...(256 << 20), config.bodyBytesMax)
        config.decompressedBytesMax = try bounded(
            "decompressed_bytes_max", raw.decompressed_bytes_max, config.bodyBytesMax...(1 << 30),
            max(config.decompressedBytesMax, config.bodyBytesMax))
        config.spansPerRequestMax = try bounded("spans_per_request_max", raw.spans_per_request_max, 1...10_000_000,
                                                config.spansPerRequestMax)
        if let spans = raw.spans {
            var mapping = SpanMapping()
            if let kinds = spans.kinds {
                guard !kinds.isEmpty else { throw fail("spans.kinds", "[]", "must list at least one span kind") }
                var set: Set<SpanKind> = []
                for (index, name) in kinds.enumerated() {
                    guard let kind = SpanKind(name: name), kind != .unspecified else {
                        throw fail("spans.kinds[\(index)]", name, "must be server, consumer, client, producer or internal")
                    }
                    set.insert(kind)
                }
                mapping.kinds = set
            }
            func names(_ key: String, _ value: [String]?, _ fallback: [String], empty: Bool = false) throws(ConfigError) -> [String] {
                guard let value else { return fallback }
                guard empty || !value.isEmpty else { throw fail("spans.\(key)", "[]", "must list at least one attribute") }
                guard value.count <= 16 else { throw fail("spans.\(key)", "\(value.count) names", "lists at most 16") }
                for (index, name) in value.enumerated() where name.isEmpty || name.utf8.count > 255 {
                    throw fail("spans.\(key)[\(index)]", name, "must be an attribute name of 1 to 255 bytes")
                }
                return value
            }
            mapping.service = try names("service", spans.service, mapping.service)
            mapping.operation = try names("operation", spans.operation, mapping.operation, empty: true)
            mapping.status = try names("status", spans.status, mapping.status, empty: true)
            mapping.rpcStatus = try names("rpc_status", spans.rpc_status, mapping.rpcStatus, empty: true)
            mapping.user = try names("user", spans.user, mapping.user, empty: true)
            config.spans = mapping
        }
        return config
    }

    /// The trace decoder for this config and the replica's limits.
    func traceDecoder(_ limits: Limits) -> TraceDecoder {
        TraceDecoder(mapping: self.spans, limits: TraceDecoder.Limits(
            nameBytesMax: limits.nameBytesMax, userBytesMax: limits.userBytesMax, spansMax: self.spansPerRequestMax))
    }
}
