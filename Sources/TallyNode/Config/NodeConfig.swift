import Crypto
import Foundation
import TallyAggregates
import TallyNodeCore
import TallySLO
import TallyProtocols
import TallyReplica
import Yams

/// One node's configuration, decoded once from its YAML file into typed values.
///
/// Every error names the file, the key and the bad value (`ConfigError`). Only `node`, `region`,
/// `listen` and `data_dir` are required; everything else has a production default.
public struct NodeConfig: Sendable, Equatable {
    public var node: String
    public var region: String
    public var listenHost: String
    public var listenPort: Int
    public var dataDirectory: String
    public var apiKeys: [APIKey]
    public var limits: Limits
    public var retention: Retention
    public var errorClasses: Set<StatusClass>
    /// Largest request body accepted (413 above).
    public var bodyBytesMax: Int
    /// Most batches waiting for durability before new ones are refused with 503.
    public var pendingBatchesMax: Int
    /// Token bucket per API key: sustained events per second and burst.
    public var rateLimitEventsPerSecond: Double
    public var rateLimitBurst: Double
    /// How often the replica's changed state is checkpointed and the log before it deleted; the
    /// most log a restart replays.
    public var checkpointInterval: Duration
    /// Replication with other regions over mutual TLS; nil: a single region.
    public var cluster: ClusterConfig?
    /// Most HTTP connections open at once (`limits.connections_max`).
    public var connectionsMax = 1_024
    /// How long a client may take: for a request's headers, for its body after them, and idle
    /// between requests on a kept-alive connection (`limits.request_head_timeout`, ...).
    public var httpTimeouts = HTTPTimeouts()
    /// SLO spec files (`slo_files`), read at start and on SIGHUP (docs/slo.md).
    public var sloFiles: [String] = []
    /// Where alerts go and how often SLOs are evaluated (`alerting`).
    public var alerting = Alerting()
    /// Count the node's own API requests and peer freshness as events (`observe_self`), for
    /// Tally's own SLOs (`deploy/slo/tally.yaml`).
    public var observeSelf = false
    /// The OTLP/HTTP receiver (`otlp`); nil: none.
    public var otlp: OTLPConfig?
    /// The StatsD listeners (`statsd`); nil: none.
    public var statsd: StatsDConfig?
    /// Classic histogram bounds of the Prometheus export, in microseconds (`prometheus.buckets`).
    public var prometheusBuckets: [Double] = PrometheusExposition.defaultBuckets

    /// The `alerting` section: every region sends the same alerts to every Alertmanager listed,
    /// which keeps one of each (docs/slo.md, "Alerts").
    public struct Alerting: Sendable, Equatable {
        /// Alertmanager base URLs (`http://host:9093`); alerts are posted to `/api/v2/alerts`.
        public var alertmanagers: [String] = []
        public var evaluateEvery: Duration = .seconds(60)
        public var resendEvery: Duration = .seconds(60)
        /// A peer region not heard from for longer makes the view partial.
        public var staleAfter: Duration = .seconds(60)
        /// The link in each alert back to its SLO (nil: this node's listen address).
        public var generatorURL: String?
    }

    public struct HTTPTimeouts: Sendable, Equatable {
        public var head: Duration = .seconds(10)
        public var body: Duration = .seconds(30)
        public var keepAlive: Duration = .seconds(60)
    }

    /// The `cluster` section: this node's peer listener, its TLS files and its peers.
    public struct ClusterConfig: Sendable, Equatable {
        /// A node's gossip interval unless the config says otherwise: short enough that replication
        /// lag stays under a second at 100k events/s (docs/transport.md, "Figures").
        public static let defaultGossipInterval: Duration = .milliseconds(250)
        /// 4 MiB: at 100k events/s over three regions a region's changes in one round need about
        /// 300 KiB; the replica's own default (256 KiB, the simulator's) made lag grow under load.
        public static let defaultGossipBytesMax = 4 << 20
        public static let gossipBytesRange = (64 << 10)...(64 << 20)

        /// The largest peer frame: a full answer and room for its framing.
        public var frameBytesMax: Int { self.gossipBytesMax + (1 << 20) }

        public var listenHost: String
        public var listenPort: Int
        /// The address peers dial this node by (`advertise: host:port`), when it differs from
        /// `listen` (a wildcard, a NAT, a load balancer); `tally config check` requires every peer's
        /// entry for this node to name it.
        public var advertise: String?
        /// The TLS files; empty when `insecure`.
        public var certificatePath: String
        public var keyPath: String
        public var caPath: String
        public var gossipInterval: Duration
        /// Most bytes of batches in one answer to a peer's digest. Peer frames are capped at this
        /// plus 1 MiB (`frameBytesMax`).
        public var gossipBytesMax = Self.defaultGossipBytesMax
        public var peers: [Peer]
        /// `insecure: true`: plaintext and unauthenticated peer connections (a peer is whoever its
        /// hello says). For a throwaway test on one machine only; the node logs it loudly and
        /// `tally config check` reports it.
        public var insecure = false
        /// The peer protocols this node offers (`NodeCore.protocols`); tests play an older release
        /// with a lower top, which also keeps its replication wire version at what that release had.
        package var protocols = NodeCore.protocols

        public struct Peer: Sendable, Equatable {
            public var node: String
            public var region: String
            public var host: String
            public var port: Int
        }
    }

    public struct APIKey: Sendable, Equatable {
        public var name: String
        /// SHA-256 of the secret, 32 bytes; the secret itself is never stored.
        public var sha256: [UInt8]

        public init(name: String, sha256: [UInt8]) {
            self.name = name
            self.sha256 = sha256
        }
    }

    /// SHA-256 of a bearer secret, as kept in the config (`tally config hash-key` prints it).
    public static func hash(secret: String) -> [UInt8] {
        Array(SHA256.hash(data: Array(secret.utf8)))
    }

    /// The API key whose secret this is, comparing digests in constant time.
    public func apiKey(forSecret secret: String) -> APIKey? {
        let digest = Self.hash(secret: secret)
        var found: APIKey?
        for key in self.apiKeys {
            var difference: UInt8 = 0
            for (a, b) in zip(key.sha256, digest) { difference |= a ^ b }
            if difference == 0 && found == nil { found = key }
        }
        return found
    }
}

/// A configuration problem: which file, which key, which value, and what is wrong with it.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public var file: String
    public var key: String
    public var value: String?
    public var message: String

    public var description: String {
        if let value { return "\(self.file): \(self.key): \(self.message) (got \(Self.quote(value)))" }
        return "\(self.file): \(self.key): \(Self.quote(self.message, limit: 400))"
    }

    /// At most `limit` characters of a value from the file: an error must not echo a 100 MB value.
    static func quote(_ text: String, limit: Int = 80) -> String {
        guard text.count > limit else { return text }
        return "\(text.prefix(limit))... (\(text.utf8.count) bytes)"
    }
}

extension NodeConfig {
    /// Reads and validates the YAML file at `path`.
    public static func load(path: String) throws(ConfigError) -> NodeConfig {
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int, size > Self.fileBytesMax {
            throw ConfigError(file: path, key: "(file)", value: nil,
                              message: "is \(size) bytes; a config file is at most \(Self.fileBytesMax)")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, key: "(file)", value: nil, message: "cannot be read")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, key: "(file)", value: nil, message: "is not UTF-8 text")
        }
        return try Self.parse(yaml: text, file: path)
    }

    /// The largest config file read (1 MiB): a node's config is a few kilobytes.
    public static let fileBytesMax = 1 << 20
    /// Most YAML nodes in a config, counting every alias as the nodes it stands for: an alias
    /// bomb (a billion nodes from a few lines) is refused before anything walks it.
    public static let yamlNodesMax = 100_000

    /// Validates YAML text; `file` names it in errors.
    public static func parse(yaml text: String, file: String) throws(ConfigError) -> NodeConfig {
        guard text.utf8.count <= Self.fileBytesMax else {
            throw ConfigError(file: file, key: "(file)", value: nil,
                              message: "is \(text.utf8.count) bytes; a config file is at most \(Self.fileBytesMax)")
        }
        if let line = Self.firstAlias(in: text) {
            throw ConfigError(file: file, key: "(line \(line))", value: nil, message: "uses a YAML alias (*name); "
                + "config files refuse aliases (a few lines of them can expand to billions of nodes): write the "
                + "value out, or quote it if the * is part of the text")
        }
        try Self.refuseUnknownKeys(yaml: text, file: file)
        let raw: RawConfig
        do {
            raw = try YAMLDecoder().decode(RawConfig.self, from: text)
        } catch let error as DecodingError {
            throw Self.describe(error, file: file)
        } catch {
            throw ConfigError(file: file, key: "(document)", value: nil, message: "is not valid YAML: \(error)")
        }
        func fail(_ key: String, _ value: String?, _ message: String) -> ConfigError {
            ConfigError(file: file, key: key, value: value, message: message)
        }
        func name(_ key: String, _ value: String) throws(ConfigError) -> String {
            guard !value.isEmpty, value.utf8.count <= 64,
                value.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") })
            else { throw fail(key, value, "must be 1 to 64 letters, digits, '-', '_' or '.'") }
            return value
        }
        let node = try name("node", raw.node)
        let region = try name("region", raw.region)
        guard let colon = raw.listen.lastIndex(of: ":"), let port = Int(raw.listen[raw.listen.index(after: colon)...]),
            (0...65_535).contains(port), colon != raw.listen.startIndex
        else { throw fail("listen", raw.listen, "must be host:port with a port in 0...65535") }
        var host = String(raw.listen[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !raw.data_dir.isEmpty else { throw fail("data_dir", raw.data_dir, "must not be empty") }

        var apiKeys: [APIKey] = []
        for (index, key) in (raw.api_keys ?? []).enumerated() {
            let keyName = try name("api_keys[\(index)].name", key.name)
            let hex = key.sha256.lowercased()
            guard hex.count == 64, let digest = Self.bytes(hex: hex) else {
                throw fail("api_keys[\(index)].sha256", key.sha256, "must be 64 hex digits (tally config hash-key)")
            }
            guard !apiKeys.contains(where: { $0.name == keyName }) else {
                throw fail("api_keys[\(index)].name", keyName, "is used by another key")
            }
            apiKeys.append(APIKey(name: keyName, sha256: digest))
        }

        let rawLimits = raw.limits ?? RawConfig.RawLimits()
        let defaults = Limits()
        // Every number has a range: a value the config accepts must work, and arithmetic on it
        // (a rate times two, a time plus a window) must not overflow.
        func bounded(_ key: String, _ value: Int?, _ range: ClosedRange<Int>, _ fallback: Int) throws(ConfigError) -> Int {
            guard let value else { return fallback }
            guard range.contains(value) else {
                throw fail(key, "\(value)", "must be \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }
        func duration(_ key: String, _ value: String?, _ fallback: Duration,
                      range: ClosedRange<Duration> = .milliseconds(1)...Limits.durationLongest) throws(ConfigError) -> Duration {
            guard let value else { return fallback }
            guard let parsed = Duration.parse(value), parsed > .zero else {
                throw fail(key, value, "must be a positive duration such as 300ms, 30s, 5m, 48h, 90d or 5y")
            }
            guard range.contains(parsed) else {
                throw fail(key, value, "must be \(range.lowerBound.shortDescription) to \(range.upperBound.shortDescription)")
            }
            return parsed
        }
        let idempotency = raw.idempotency ?? RawConfig.RawIdempotency()
        let limits = Limits(
            batchEventsMax: try bounded("limits.batch_events_max", rawLimits.batch_events_max, 1...1_000_000,
                                        defaults.batchEventsMax),
            nameBytesMax: try bounded("limits.name_bytes_max", rawLimits.name_bytes_max, 1...4_096, defaults.nameBytesMax),
            userBytesMax: try bounded("limits.user_bytes_max", rawLimits.user_bytes_max, 1...4_096, defaults.userBytesMax),
            servicesMax: try bounded("limits.services_max", rawLimits.services_max, 1...1_000_000, defaults.servicesMax),
            operationsPerServiceMax: try bounded(
                "limits.operations_per_service_max", rawLimits.operations_per_service_max, 1...1_000_000,
                defaults.operationsPerServiceMax),
            latencyMax: try duration("limits.latency_max", rawLimits.latency_max, defaults.latencyMax),
            futureSkewMax: try duration("limits.future_skew_max", rawLimits.future_skew_max, defaults.futureSkewMax),
            idempotencyWindow: try duration("idempotency.window", idempotency.window, defaults.idempotencyWindow),
            idempotencyKeysMax: try bounded("idempotency.keys_max", idempotency.keys_max, 1...100_000_000,
                                            defaults.idempotencyKeysMax),
            spanWindow: try duration("idempotency.span_window", idempotency.span_window, defaults.spanWindow,
                                     range: .seconds(1)...(.seconds(86_400))),
            spanFingerprintsMax: try bounded("idempotency.span_fingerprints_max", idempotency.span_fingerprints_max,
                                             1...100_000_000, defaults.spanFingerprintsMax))
        let rawRetention = raw.retention ?? RawConfig.RawRetention()
        let retentionDefaults = Retention()
        let retention = Retention(
            minute: try duration("retention.minute", rawRetention.minute, retentionDefaults.minute,
                                 range: .seconds(60)...Retention.longest),
            hour: try duration("retention.hour", rawRetention.hour, retentionDefaults.hour,
                               range: .seconds(60)...Retention.longest),
            day: try duration("retention.day", rawRetention.day, retentionDefaults.day,
                              range: .seconds(60)...Retention.longest))
        var errorClasses: Set<StatusClass> = [.serverError]
        if let classes = raw.errors {
            errorClasses = []
            for (index, text) in classes.enumerated() {
                guard let statusClass = StatusClass(parsing: text) else {
                    throw fail("errors[\(index)]", text, "must be a status class such as 4xx or 5xx")
                }
                errorClasses.insert(statusClass)
            }
        }
        var cluster: ClusterConfig?
        if let rawCluster = raw.cluster {
            // Identities go into certificates as tally://REGION/NODE: DNS labels only.
            for (key, value) in [("node", node), ("region", region)] where !NodeIdentity.isValidName(value) {
                throw fail(key, value, "must be a DNS label (a-z, 0-9, '-') when the node has a cluster section")
            }
            let (peerHost, peerPort) = try Self.address("cluster.listen", rawCluster.listen, file: file)
            let insecure = rawCluster.insecure ?? false
            let tls: RawConfig.RawCluster.RawTLS
            switch (insecure, rawCluster.tls) {
            case (false, let files?): tls = files
            case (false, nil):
                throw fail("cluster.tls", nil, "is required (certificate, key, ca): peers talk over mutual TLS only, "
                    + "unless the section says insecure: true")
            case (true, nil): tls = .init(certificate: "", key: "", ca: "")
            case (true, _?):
                throw fail("cluster.insecure", "true", "contradicts cluster.tls: remove one (a node is not half secure)")
            }
            if let advertise = rawCluster.advertise {
                let (host, port) = try Self.address("cluster.advertise", advertise, file: file)
                guard port > 0, !host.isEmpty, host != "0.0.0.0", host != "::" else {
                    throw fail("cluster.advertise", advertise, "must be an address peers can dial: a host and a port, no wildcard")
                }
            }
            let gossipBytesMax = try bounded("cluster.gossip_bytes_max", rawCluster.gossip_bytes_max,
                                             ClusterConfig.gossipBytesRange, ClusterConfig.defaultGossipBytesMax)
            var peers: [ClusterConfig.Peer] = []
            for (index, peer) in (rawCluster.peers ?? []).enumerated() {
                let key = "cluster.peers[\(index)]"
                for (field, value) in [("node", peer.node), ("region", peer.region)] where !NodeIdentity.isValidName(value) {
                    throw fail("\(key).\(field)", value, "must be a DNS label (a-z, 0-9, '-')")
                }
                guard peer.region != region else { throw fail("\(key).region", peer.region, "is this node's own region") }
                guard !peers.contains(where: { $0.region == peer.region }) else {
                    throw fail("\(key).region", peer.region, "is listed twice (one node per region)")
                }
                let (host, port) = try Self.address("\(key).address", peer.address, file: file)
                guard port > 0 else { throw fail("\(key).address", peer.address, "needs a port") }
                peers.append(ClusterConfig.Peer(node: peer.node, region: peer.region, host: host, port: port))
            }
            guard !peers.isEmpty else {
                throw fail("cluster.peers", "[]", "must list at least one peer (a single region has no cluster section)")
            }
            cluster = ClusterConfig(
                listenHost: peerHost, listenPort: peerPort, advertise: rawCluster.advertise, certificatePath: tls.certificate, keyPath: tls.key,
                caPath: tls.ca,
                gossipInterval: try duration("cluster.gossip_interval", rawCluster.gossip_interval,
                                             ClusterConfig.defaultGossipInterval,
                                             range: .milliseconds(10)...(.seconds(3_600))),
                gossipBytesMax: gossipBytesMax, peers: peers, insecure: insecure)
        }
        let timeoutRange: ClosedRange<Duration> = .milliseconds(100)...(.seconds(3_600))
        let timeouts = HTTPTimeouts(
            head: try duration("limits.request_head_timeout", rawLimits.request_head_timeout, .seconds(10), range: timeoutRange),
            body: try duration("limits.request_body_timeout", rawLimits.request_body_timeout, .seconds(30), range: timeoutRange),
            keepAlive: try duration("limits.keep_alive_timeout", rawLimits.keep_alive_timeout, .seconds(60),
                                    range: timeoutRange))
        let connectionsMax = try bounded("limits.connections_max", rawLimits.connections_max, 1...100_000, 1_024)
        let sloFiles = raw.slo_files ?? []
        guard sloFiles.count <= 100 else { throw fail("slo_files", "\(sloFiles.count) files", "lists at most 100 files") }
        for (index, path) in sloFiles.enumerated() where path.isEmpty || path.utf8.count > 4_096 {
            throw fail("slo_files[\(index)]", path, "must be a path of 1 to 4096 bytes")
        }
        var alerting = Alerting()
        if let rawAlerting = raw.alerting {
            let urls = rawAlerting.alertmanagers ?? []
            guard urls.count <= 16 else { throw fail("alerting.alertmanagers", "\(urls.count) URLs", "lists at most 16") }
            for (index, url) in urls.enumerated() {
                guard Self.isHTTPURL(url) else {
                    throw fail("alerting.alertmanagers[\(index)]", url,
                               "must be an http:// or https:// URL with a host, such as http://127.0.0.1:9093")
                }
            }
            alerting.alertmanagers = urls.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
            let range: ClosedRange<Duration> = .seconds(1)...(.seconds(3_600))
            alerting.evaluateEvery = try duration("alerting.evaluate_every", rawAlerting.evaluate_every, .seconds(60),
                                                  range: range)
            alerting.resendEvery = try duration("alerting.resend_every", rawAlerting.resend_every, .seconds(60),
                                                range: range)
            alerting.staleAfter = try duration("alerting.stale_after", rawAlerting.stale_after, .seconds(60),
                                               range: range)
            if let url = rawAlerting.generator_url {
                guard Self.isHTTPURL(url) else {
                    throw fail("alerting.generator_url", url, "must be an http:// or https:// URL with a host")
                }
                alerting.generatorURL = url
            }
        }
        let otlp = try raw.otlp.map { (section) throws(ConfigError) in
            try OTLPConfig.parse(section, defaultHost: host, file: file)
        }
        var statsd = try raw.statsd.map { (section) throws(ConfigError) in
            try StatsDConfig.parse(section, defaultHost: host, file: file)
        }
        statsd?.connectionsMax = connectionsMax
        var prometheusBuckets = PrometheusExposition.defaultBuckets
        if let buckets = raw.prometheus?.buckets {
            guard (1...64).contains(buckets.count) else {
                throw fail("prometheus.buckets", "\(buckets.count) bounds", "must list 1 to 64 durations")
            }
            prometheusBuckets = []
            for (index, text) in buckets.enumerated() {
                let bound = try duration("prometheus.buckets[\(index)]", text, .zero)
                let micros = Double(bound.components.seconds) * 1e6 + Double(bound.components.attoseconds) / 1e12
                guard micros > (prometheusBuckets.last ?? 0) else {
                    throw fail("prometheus.buckets[\(index)]", text, "must be longer than the bound before it")
                }
                prometheusBuckets.append(micros)
            }
        }
        let rate = Double(try bounded("limits.rate_limit_events_per_second",
                                      rawLimits.rate_limit_events_per_second, 1...1_000_000_000, 1_000_000))
        return NodeConfig(
            node: node, region: region, listenHost: host, listenPort: port, dataDirectory: raw.data_dir,
            apiKeys: apiKeys, limits: limits, retention: retention, errorClasses: errorClasses,
            bodyBytesMax: try bounded("limits.body_bytes_max", rawLimits.body_bytes_max, 1_024...(256 << 20), 4 << 20),
            pendingBatchesMax: try bounded("limits.pending_batches_max", rawLimits.pending_batches_max, 1...1_000_000,
                                           4_096),
            rateLimitEventsPerSecond: rate,
            rateLimitBurst: Double(try bounded("limits.rate_limit_burst", rawLimits.rate_limit_burst,
                                               1...2_000_000_000, Int(rate) * 2)),
            checkpointInterval: try duration(
                "storage.checkpoint_interval", raw.storage?.checkpoint_interval, .seconds(10),
                range: .milliseconds(100)...(.seconds(86_400))),
            cluster: cluster, connectionsMax: connectionsMax, httpTimeouts: timeouts, sloFiles: sloFiles,
            alerting: alerting, observeSelf: raw.observe_self ?? false, otlp: otlp, statsd: statsd,
            prometheusBuckets: prometheusBuckets)
    }

    /// `http://host[:port][/path]` or https, at most 2048 bytes, without user info, query or spaces.
    static func isHTTPURL(_ text: String) -> Bool {
        guard text.utf8.count <= 2_048, !text.contains(where: \.isWhitespace), let url = URL(string: text),
            url.scheme == "http" || url.scheme == "https", let host = url.host, !host.isEmpty, url.user == nil,
            url.query == nil, url.fragment == nil
        else { return false }
        return url.port.map { (1...65_535).contains($0) } ?? true
    }

    /// `host:port` (IPv6 in brackets) with a port in 0...65535.
    static func address(_ key: String, _ text: String, file: String) throws(ConfigError) -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65_535).contains(port), colon != text.startIndex
        else { throw ConfigError(file: file, key: key, value: text, message: "must be host:port with a port in 0...65535") }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    /// The keys each section may hold; anything else is a typo, and a typo in a limit would
    /// otherwise silently leave the default in force.
    static let knownKeys: [String: Set<String>] = [
        "": ["node", "region", "listen", "data_dir", "api_keys", "limits", "retention", "idempotency", "errors",
             "storage", "cluster", "slo_files", "alerting", "observe_self", "otlp", "prometheus", "statsd"],
        "prometheus": ["buckets"],
        "alerting": ["alertmanagers", "evaluate_every", "resend_every", "stale_after", "generator_url"],
        "api_keys[]": ["name", "sha256"],
        "cluster": ["listen", "advertise", "gossip_interval", "gossip_bytes_max", "tls", "peers", "insecure"],
        "cluster.tls": ["certificate", "key", "ca"],
        "cluster.peers[]": ["node", "region", "address"],
        "limits": ["body_bytes_max", "connections_max", "request_head_timeout", "request_body_timeout",
                   "keep_alive_timeout", "batch_events_max", "name_bytes_max", "user_bytes_max", "services_max",
                   "operations_per_service_max", "latency_max", "future_skew_max", "pending_batches_max",
                   "rate_limit_events_per_second", "rate_limit_burst"],
        "retention": ["minute", "hour", "day"],
        "idempotency": ["window", "keys_max", "span_window", "span_fingerprints_max"],
        "storage": ["checkpoint_interval"],
    ].merging(OTLPConfig.knownKeys) { first, _ in first }.merging(StatsDConfig.knownKeys) { first, _ in first }

    private static func refuseUnknownKeys(yaml text: String, file: String) throws(ConfigError) {
        let root: Yams.Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ConfigError(file: file, key: "(document)", value: nil, message: "is not valid YAML: \(error)")
        }
        guard let root, let mapping = root.mapping else {
            throw ConfigError(file: file, key: "(document)", value: nil, message: "must be a mapping of keys to values")
        }
        var budget = Self.yamlNodesMax
        guard Self.count(root, within: &budget) else {
            throw ConfigError(file: file, key: "(document)", value: nil, message: "holds more than \(Self.yamlNodesMax) "
                + "YAML nodes once its aliases are expanded (an alias bomb?)")
        }
        func check(_ mapping: Yams.Node.Mapping, section: String, path: String) throws(ConfigError) {
            let allowed = Self.knownKeys[section] ?? []
            for (key, value) in mapping {
                guard let name = key.scalar?.string else {
                    throw ConfigError(file: file, key: path.isEmpty ? "(document)" : path, value: nil,
                                      message: "has a key that is a mapping or a list; keys are plain names")
                }
                let keyPath = path.isEmpty ? name : "\(path).\(name)"
                guard allowed.contains(name) else {
                    throw ConfigError(file: file, key: keyPath, value: nil,
                                      message: "is not a known key (known: \(allowed.sorted().joined(separator: ", ")))")
                }
                let child = section.isEmpty ? name : "\(section).\(name)"
                if let nested = value.mapping, Self.knownKeys[child] != nil {
                    try check(nested, section: child, path: keyPath)
                } else if let items = value.sequence, Self.knownKeys[child + "[]"] != nil {
                    for (index, item) in items.enumerated() {
                        if let nested = item.mapping {
                            try check(nested, section: child + "[]", path: "\(keyPath)[\(index)]")
                        }
                    }
                }
            }
        }
        try check(mapping, section: "", path: "")
    }

    /// The line of the first YAML alias (`YAMLText.firstAlias`): refused before parsing.
    static func firstAlias(in text: String) -> Int? { YAMLText.firstAlias(in: text) }

    /// Counts `node` and everything under it (an alias counts as what it stands for) against
    /// `budget`; false as soon as the budget runs out, so a bomb is never walked whole.
    static func count(_ node: Yams.Node, within budget: inout Int) -> Bool {
        budget -= 1
        guard budget >= 0 else { return false }
        switch node {
        case .scalar, .alias:
            return true
        case .mapping(let mapping):
            for (key, value) in mapping {
                guard Self.count(key, within: &budget), Self.count(value, within: &budget) else { return false }
            }
            return true
        case .sequence(let sequence):
            for item in sequence where !Self.count(item, within: &budget) { return false }
            return true
        }
    }

    static func bytes(hex: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) ?? hex.endIndex
            guard let byte = UInt8(hex[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        return bytes
    }

    private static func describe(_ error: DecodingError, file: String) -> ConfigError {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { key in key.intValue.map { "[\($0)]" } ?? key.stringValue }
            return keys.reduce("") { $0.isEmpty || $1.hasPrefix("[") ? $0 + $1 : $0 + "." + $1 }
        }
        switch error {
        case .keyNotFound(let key, let context):
            let parent = path(context)
            return ConfigError(file: file, key: parent.isEmpty ? key.stringValue : "\(parent).\(key.stringValue)",
                               value: nil, message: "is required")
        case .typeMismatch(let type, let context):
            let names: [ObjectIdentifier: String] = [
                ObjectIdentifier(Int.self): "an integer", ObjectIdentifier(String.self): "a string",
                ObjectIdentifier(Double.self): "a number",
            ]
            let name = names[ObjectIdentifier(type)] ?? (context.debugDescription.contains("Array") ? "a list" : "\(type)")
            return ConfigError(file: file, key: path(context), value: nil, message: "must be \(name)")
        case .valueNotFound(let type, let context):
            return ConfigError(file: file, key: path(context), value: nil, message: "must be a \(type), not null")
        case .dataCorrupted(let context):
            let key = path(context)
            return ConfigError(file: file, key: key.isEmpty ? "(document)" : key, value: nil,
                               message: context.debugDescription)
        @unknown default:
            return ConfigError(file: file, key: "(document)", value: nil, message: "\(error)")
        }
    }
}

/// The file's shape, before validation. Unknown keys are refused so that a typo is not ignored.
struct RawConfig: Decodable {
    var node: String
    var region: String
    var listen: String
    var data_dir: String
    var api_keys: [RawAPIKey]?
    var limits: RawLimits?
    var retention: RawRetention?
    var idempotency: RawIdempotency?
    var errors: [String]?
    var storage: RawStorage?
    var cluster: RawCluster?
    var slo_files: [String]?
    var alerting: RawAlerting?
    var observe_self: Bool?
    var otlp: RawOTLP?
    var prometheus: RawPrometheus?
    var statsd: RawStatsD?

    struct RawPrometheus: Decodable {
        var buckets: [String]?
    }

    struct RawAlerting: Decodable {
        var alertmanagers: [String]?
        var evaluate_every: String?
        var resend_every: String?
        var stale_after: String?
        var generator_url: String?
    }

    struct RawCluster: Decodable {
        var listen: String
        var gossip_interval: String?
        var gossip_bytes_max: Int?
        var advertise: String?
        var tls: RawTLS?
        var peers: [RawPeer]?
        var insecure: Bool?

        struct RawTLS: Decodable {
            var certificate: String
            var key: String
            var ca: String
        }

        struct RawPeer: Decodable {
            var node: String
            var region: String
            var address: String
        }
    }

    struct RawStorage: Decodable {
        var checkpoint_interval: String?
    }

    struct RawAPIKey: Decodable {
        var name: String
        var sha256: String
    }

    struct RawLimits: Decodable {
        var body_bytes_max: Int?
        var batch_events_max: Int?
        var name_bytes_max: Int?
        var user_bytes_max: Int?
        var services_max: Int?
        var operations_per_service_max: Int?
        var latency_max: String?
        var future_skew_max: String?
        var pending_batches_max: Int?
        var rate_limit_events_per_second: Int?
        var rate_limit_burst: Int?
        var connections_max: Int?
        var request_head_timeout: String?
        var request_body_timeout: String?
        var keep_alive_timeout: String?
    }

    struct RawRetention: Decodable {
        var minute: String?
        var hour: String?
        var day: String?
    }

    struct RawIdempotency: Decodable {
        var window: String?
        var keys_max: Int?
        var span_window: String?
        var span_fingerprints_max: Int?
    }
}

extension NodeConfig {
    /// The node core's policies from this config. `frameBytesMax`: the peer frame cap, less room
    /// for framing, bounds answers to peers' reads.
    func core(frameBytesMax: Int) -> NodeCore.Config {
        NodeCore.Config(
            pendingBatchesMax: self.pendingBatchesMax, rateLimitEventsPerSecond: self.rateLimitEventsPerSecond,
            rateLimitBurst: self.rateLimitBurst, checkpointInterval: self.checkpointInterval,
            readAnswerBytesMax: max(frameBytesMax - 64 * 1_024, 64 * 1_024),
            sloEvaluationInterval: self.alerting.evaluateEvery, alertResendInterval: self.alerting.resendEvery,
            staleAfter: self.alerting.staleAfter)
    }
}
