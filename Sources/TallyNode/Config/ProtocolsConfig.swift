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
    /// Most spans in one export request (and metric data points).
    public var spansPerRequestMax: Int
    /// Which metrics become measurements, and how.
    public var metrics = MetricsMapping()

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
        var metrics: RawMetrics?

        struct RawMetrics: Decodable {
            var names: [String]?
            var operation: [String]?
            var status: [String]?
        }

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
        "otlp": ["listen", "api_key_header", "body_bytes_max", "decompressed_bytes_max", "spans_per_request_max", "spans",
                 "metrics"],
        "otlp.metrics": ["names", "operation", "status"],
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
        if let metrics = raw.metrics {
            for (key, value) in [("names", metrics.names), ("operation", metrics.operation), ("status", metrics.status)] {
                guard let value else { continue }
                guard !value.isEmpty || key != "names", value.count <= 16,
                    value.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 255 })
                else { throw fail("metrics.\(key)", "\(value)", "must list 1 to 16 names of 1 to 255 bytes") }
            }
            config.metrics.names = metrics.names ?? config.metrics.names
            config.metrics.operation = metrics.operation ?? config.metrics.operation
            config.metrics.status = metrics.status ?? config.metrics.status
        }
        return config
    }

    /// The metrics decoder for this config, the replica's limits and its sketch scale.
    func metricsDecoder(_ limits: Limits, sketchScale: Int) -> MetricsDecoder {
        MetricsDecoder(mapping: self.metrics, limits: MetricsDecoder.Limits(
            nameBytesMax: limits.nameBytesMax, pointsMax: self.spansPerRequestMax), sketchScale: sketchScale)
    }

    /// The trace decoder for this config and the replica's limits.
    func traceDecoder(_ limits: Limits) -> TraceDecoder {
        TraceDecoder(mapping: self.spans, limits: TraceDecoder.Limits(
            nameBytesMax: limits.nameBytesMax, userBytesMax: limits.userBytesMax, spansMax: self.spansPerRequestMax))
    }
}

/// The `statsd` section: StatsD / DogStatsD over UDP and TCP (docs/integrations.md). Absent: none.
public struct StatsDConfig: Sendable, Equatable {
    /// UDP address; nil: no UDP listener.
    public var udp: (host: String, port: Int)?
    /// TCP address (newline-separated lines); nil: no TCP listener.
    public var tcp: (host: String, port: Int)?
    /// The client name its items are counted under (rate limits, `/metrics`): StatsD has no keys.
    public var client: String
    public var mapping: StatsDMapping
    /// The UDP socket's receive buffer: what absorbs a burst while the node is busy.
    public var receiveBufferBytes: Int
    /// Most items waiting for the node; past it, lines are dropped and counted.
    public var pendingItemsMax: Int
    /// Most TCP connections open at once (the node's `limits.connections_max`).
    public var connectionsMax = 1_024

    public static func == (lhs: StatsDConfig, rhs: StatsDConfig) -> Bool {
        lhs.udp?.host == rhs.udp?.host && lhs.udp?.port == rhs.udp?.port && lhs.tcp?.host == rhs.tcp?.host
            && lhs.tcp?.port == rhs.tcp?.port && lhs.client == rhs.client && lhs.mapping == rhs.mapping
            && lhs.receiveBufferBytes == rhs.receiveBufferBytes && lhs.pendingItemsMax == rhs.pendingItemsMax
            && lhs.connectionsMax == rhs.connectionsMax
    }

    public init(udp: (host: String, port: Int)?, tcp: (host: String, port: Int)? = nil, client: String = "statsd",
                mapping: StatsDMapping = StatsDMapping(), receiveBufferBytes: Int = 8 << 20, pendingItemsMax: Int = 200_000)
    {
        self.udp = udp
        self.tcp = tcp
        self.client = client
        self.mapping = mapping
        self.receiveBufferBytes = receiveBufferBytes
        self.pendingItemsMax = pendingItemsMax
    }
}

extension RawConfig {
    struct RawStatsD: Decodable {
        var udp: String?
        var tcp: String?
        var client: String?
        var tags: RawTags?
        var timer_unit: String?
        var receive_buffer_bytes: Int?
        var pending_items_max: Int?

        struct RawTags: Decodable {
            var service: String?
            var operation: String?
            var status: String?
            var user: String?
        }
    }
}

extension StatsDConfig {
    static let knownKeys: [String: Set<String>] = [
        "statsd": ["udp", "tcp", "client", "tags", "timer_unit", "receive_buffer_bytes", "pending_items_max"],
        "statsd.tags": ["service", "operation", "status", "user"],
    ]

    static func parse(_ raw: RawConfig.RawStatsD, defaultHost: String, file: String) throws(ConfigError) -> StatsDConfig {
        func fail(_ key: String, _ value: String?, _ message: String) -> ConfigError {
            ConfigError(file: file, key: "statsd.\(key)", value: value, message: message)
        }
        // UDP on 8125 unless only TCP is given.
        var config = StatsDConfig(udp: raw.tcp != nil && raw.udp == nil ? nil : (defaultHost, 8125))
        if let udp = raw.udp { config.udp = try NodeConfig.address("statsd.udp", udp, file: file) }
        if let tcp = raw.tcp { config.tcp = try NodeConfig.address("statsd.tcp", tcp, file: file) }
        if let client = raw.client {
            guard !client.isEmpty, client.utf8.count <= 64 else { throw fail("client", client, "must be 1 to 64 bytes") }
            config.client = client
        }
        if let tags = raw.tags {
            for (key, value) in [("service", tags.service), ("operation", tags.operation), ("status", tags.status),
                                 ("user", tags.user)]
            {
                if let value, value.isEmpty || value.utf8.count > 200 || value.contains(where: { ",|#:".contains($0) }) {
                    throw fail("tags.\(key)", value, "must be a tag key of 1 to 200 bytes without , | # or :")
                }
            }
            config.mapping.serviceTag = tags.service ?? config.mapping.serviceTag
            config.mapping.operationTag = tags.operation ?? config.mapping.operationTag
            config.mapping.statusTag = tags.status ?? config.mapping.statusTag
            config.mapping.userTag = tags.user ?? config.mapping.userTag
        }
        if let unit = raw.timer_unit {
            let units: [String: Double] = ["ns": 0.001, "us": 1, "ms": 1_000, "s": 1_000_000]
            guard let micros = units[unit] else { throw fail("timer_unit", unit, "must be ns, us, ms or s") }
            config.mapping.timerUnitMicros = micros
        }
        if let bytes = raw.receive_buffer_bytes {
            guard (64 << 10...(1 << 30)).contains(bytes) else {
                throw fail("receive_buffer_bytes", "\(bytes)", "must be 65536 to 1073741824")
            }
            config.receiveBufferBytes = bytes
        }
        if let pending = raw.pending_items_max {
            guard (1_000...10_000_000).contains(pending) else {
                throw fail("pending_items_max", "\(pending)", "must be 1000 to 10000000")
            }
            config.pendingItemsMax = pending
        }
        return config
    }
}
