import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import NIOCore
import TallyAggregates
import TallyProtocols
import TallyReplica
import TallySLO

/// The request context: who the caller is, once the API key middleware has checked.
public struct TallyRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The API key's name; nil on the unauthenticated routes (`/health`, `/ready`).
    public var client: String?
    /// The connection the request came on: a query looks at it to stop when its client leaves.
    public let channel: any Channel

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.client = nil
        self.channel = source.channel
    }
}

/// `Authorization: Bearer <secret>` against the configured key digests; everything except
/// `/health` and `/ready` answers 401 without a valid key.
struct APIKeyMiddleware: RouterMiddleware {
    let config: NodeConfig
    let node: Node

    func handle(_ request: Request, context: TallyRequestContext,
                next: (Request, TallyRequestContext) async throws -> Response) async throws -> Response
    {
        let path = request.uri.path
        if path == "/health" || path == "/ready" { return try await next(request, context) }
        // The scheme is case-insensitive (RFC 9110, 11.1); the secret is not.
        guard let header = request.headers[.authorization], header.count > 7,
            header.prefix(7).lowercased() == "bearer ",
            let key = self.config.apiKey(forSecret: String(header.dropFirst(7).drop { $0 == " " }))
        else {
            self.node.refused(status: 401)
            return API.error(.unauthorized, "a valid API key is required: Authorization: Bearer <key>",
                             headers: [.wwwAuthenticate: "Bearer"])
        }
        var context = context
        context.client = key.name
        return try await next(request, context)
    }
}

/// Unknown paths answer a JSON 404 and known paths asked with another method a JSON 405 naming
/// the allowed one, before authentication (which routes exist is no secret: docs/api.md lists them).
struct RouteMiddleware: RouterMiddleware {
    let node: Node

    func handle(_ request: Request, context: TallyRequestContext,
                next: (Request, TallyRequestContext) async throws -> Response) async throws -> Response
    {
        guard let methods = API.methods(for: request.uri.path) else {
            self.node.refused(status: 404)
            return API.error(.notFound, "no such path: \(ConfigError.quote(request.uri.path)); see docs/api.md")
        }
        guard methods.contains(request.method) || (request.method == .head && methods.contains(.get)) else {
            self.node.refused(status: 405)
            let allowed = methods.map(\.rawValue).sorted().joined(separator: ", ")
            return API.error(.methodNotAllowed, "\(request.uri.path) takes \(allowed), not \(request.method.rawValue)",
                             headers: [.allow: allowed])
        }
        return try await next(request, context)
    }
}

/// The node's HTTP API (JSON).
public enum API {
    /// Every path the API serves, and its methods.
    static let routes: [String: [HTTPRequest.Method]] = [
        "/health": [.get], "/ready": [.get], "/v1/events": [.post], "/v1/query": [.get], "/v1/series": [.get],
        "/v1/cluster": [.get], "/metrics": [.get], "/v1/slo": [.get, .post], "/v1/export/prometheus": [.get],
    ]

    /// The methods `path` takes, or nil for no such path (`/v1/slo/{name}` takes GET).
    static func methods(for path: String) -> [HTTPRequest.Method]? {
        if let methods = Self.routes[path] { return methods }
        if path.hasPrefix("/v1/slo/"), path.count > "/v1/slo/".count, !path.dropFirst(8).contains("/") { return [.get] }
        return nil
    }

    /// The HTTP/1.1 server for a node: slow clients are cut off (`RequestDeadlineHandler`), idle
    /// connections closed, and at most `limits.connections_max` connections open at once (more
    /// wait in the listen backlog).
    public static func server(_ config: NodeConfig) -> HTTPServerBuilder {
        let timeouts = config.httpTimeouts
        return .http1(configuration: .init(
            additionalChannelHandlers: [
                RequestDeadlineHandler(
                    headTimeout: .milliseconds(timeouts.head.milliseconds),
                    bodyTimeout: .milliseconds(timeouts.body.milliseconds),
                    keepAliveTimeout: .milliseconds(timeouts.keepAlive.milliseconds)),
                ClientPresenceHandler(),
            ],
            idleTimeout: .milliseconds(timeouts.keepAlive.milliseconds)))
    }

    /// The listener's settings for a node: its address and the connection bound.
    public static func configuration(_ config: NodeConfig, host: String? = nil, port: Int? = nil)
        -> ApplicationConfiguration
    {
        ApplicationConfiguration(
            address: .hostname(host ?? config.listenHost, port: port ?? config.listenPort), serverName: "tally",
            availableConnectionsDelegate: MaximumAvailableConnections(config.connectionsMax))
    }

    /// A router for `node`, with authentication.
    public static func router(node: Node) -> Router<TallyRequestContext> {
        let router = Router(context: TallyRequestContext.self)
        // Outermost: every answer, refusals included, is counted, timed and carries its request id.
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: RequestIDMiddleware())
        if let observation = node.selfObservation {
            router.add(middleware: SelfObservationMiddleware(observation: observation, clock: { node.currentTime() }))
        }
        router.add(middleware: RouteMiddleware(node: node))
        router.add(middleware: APIKeyMiddleware(config: node.config, node: node))
        router.get("/health") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ok\n"))) }
        router.get("/ready") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ready\n"))) }
        router.post("/v1/events") { request, context in try await Self.ingest(request, context: context, node: node) }
        router.get("/v1/query") { request, context in try await Self.query(request, context: context, node: node) }
        router.get("/v1/series") { _, _ in
            let catalog = await node.catalog()
            let services = catalog.map { ["name": $0.service, "operations": $0.operations] as [String: Any] }
            return Self.json(["services": services])
        }
        router.get("/v1/cluster") { _, _ in try await Self.cluster(node: node) }
        router.get("/v1/slo") { request, _ in try await Self.slos(request, node: node, named: nil) }
        router.post("/v1/slo") { request, _ in try await Self.postedSLOs(request, node: node) }
        router.get("/v1/slo/:name") { request, context in
            try await Self.slos(request, node: node, named: context.parameters.get("name") ?? "")
        }
        router.get("/v1/export/prometheus") { request, _ in
            let series: [PrometheusExposition.Series]
            do {
                series = try await node.exportedSeries()
            } catch {
                return Self.error(.serviceUnavailable, "\(error)")
            }
            var headers = HTTPFields()
            let buckets = node.config.prometheusBuckets
            if PrometheusExposition.wantsProtobuf(accept: request.headers[.accept]) {
                headers[.contentType] = PrometheusExposition.protobufContentType
                let bytes = PrometheusExposition.protobuf(series, buckets: buckets)
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
            }
            headers[.contentType] = PrometheusExposition.textContentType
            let text = PrometheusExposition.text(series, buckets: buckets)
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.get("/metrics") { _, _ in
            let text = await node.metricsText()
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        return router
    }

    // MARK: - Ingest

    static func ingest(_ request: Request, context: TallyRequestContext, node: Node) async throws -> Response {
        let format: EventParser.Format
        let contentType = request.headers[.contentType]?.lowercased() ?? "application/json"
        if contentType.hasPrefix("application/x-ndjson") {
            format = .ndjson
        } else if contentType.hasPrefix("application/json") {
            format = .jsonArray
        } else {
            node.refused(status: 415)
            return Self.error(.unsupportedMediaType,
                              "Content-Type must be application/json (an array) or application/x-ndjson")
        }
        let config = node.config
        var body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: config.bodyBytesMax)
        } catch is NIOTooManyBytesError {
            node.refused(status: 413)
            return Self.error(.contentTooLarge, "the body is larger than \(config.bodyBytesMax) bytes")
        }
        let bytes = body.readBytes(length: body.readableBytes) ?? []
        let items: [BatchItem]
        do {
            items = try EventParser.parse(
                bytes, format: format, itemsMax: config.limits.batchEventsMax,
                stringBytesMax: max(config.limits.nameBytesMax, config.limits.userBytesMax) * 4)
        } catch {
            let tooMany = error.message.hasPrefix("more than")
            node.refused(status: tooMany ? 413 : 400)
            return Self.error(tooMany ? .contentTooLarge : .badRequest, "malformed body: \(error)")
        }
        let key = request.headers[.idempotencyKey]
        // The middleware set the client on every route but /health and /ready.
        let client = context.client ?? ""
        switch await node.ingest(items: items, client: client, idempotencyKey: key) {
        case .accepted(let receipt, let replayed):
            var headers = HTTPFields()
            headers[.contentType] = "application/json"
            if replayed { headers[.idempotentReplayed] = "true" }
            // Written by hand: the answer to every batch, and JSONSerialization showed in profiles.
            var text = "{\"accepted\":\(receipt.accepted),\"rejected\":["
            for (position, rejection) in receipt.rejected.enumerated() {
                if position > 0 { text += "," }
                text += "{\"code\":\"\(rejection.reason.code)\",\"index\":\(rejection.index),\"reason\":"
                text += Self.jsonString(rejection.reason.description) + "}"
            }
            text += "],\"rejected_count\":\(receipt.rejected.count),\"replayed\":\(replayed),"
            text += "\"sequence\":\(receipt.sequence)}"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
        case .refused(let reason):
            switch reason {
            case .tooManyEvents: return Self.error(.contentTooLarge, reason.description)
            case .invalidIdempotencyKey: return Self.error(.badRequest, reason.description)
            }
        case .overloaded(let seconds):
            return Self.error(.serviceUnavailable, "the node is overloaded; retry later",
                              headers: [.retryAfter: "\(seconds)"])
        case .rateLimited(let seconds):
            return Self.error(.tooManyRequests, "rate limit for this API key exceeded",
                              headers: [.retryAfter: "\(seconds)"])
        case .unavailable(let message):
            return Self.error(.serviceUnavailable, "storage unavailable: \(message)", headers: [.retryAfter: "5"])
        }
    }

    // MARK: - Query

    static func query(_ request: Request, context: TallyRequestContext, node: Node) async throws -> Response {
        let parameters = Self.formParameters(request.uri.query)
        func value(_ name: String) -> String? { parameters[name] }
        let now = await node.now
        let query: Query
        do {
            query = try Self.parseQuery(value, now: now)
        } catch {
            return Self.error(.badRequest, error.description)
        }
        // A query whose client has gone stops (within a few thousand buckets read), and is counted.
        let presence = await ClientPresenceHandler.presence(on: context.channel)
        let stopping: @Sendable () -> Bool = { presence?.isGone ?? false }
        let started = ContinuousClock.now
        switch value("consistency") ?? "local" {
        case "local":
            break
        case "global":
            let response = try await Self.globalQuery(query, node: node, stopping: stopping)
            if response.status == .ok { node.metrics.answeredQuery(after: ContinuousClock.now - started, global: true) }
            return response
        case let other:
            return Self.error(.badRequest, "consistency: '\(other)' is neither local nor global")
        }
        let result: QueryResult
        let version: UInt64
        do {
            (result, version) = try await node.query(query, stopping: stopping)
            node.metrics.answeredQuery(after: ContinuousClock.now - started, global: false)
        } catch .stopped {
            return await Self.stopped(node: node)
        } catch {
            return Self.error(.badRequest, error.description)
        }
        // The boot id: the state version restarts from the stored image after a restart.
        let query16 = String(XXH3.hash(request.uri.query ?? ""), radix: 16)
        let etag = "\"\(String(node.bootID, radix: 36)).\(version)-\(query16)\""
        if let ifNoneMatch = request.headers[.ifNoneMatch], ifNoneMatch == etag {
            return Response(status: .notModified, headers: [.eTag: etag])
        }
        // Per other origin, how far behind it this answer is (seconds; null: nothing of it yet).
        var staleness: [String: Any] = [:]
        for (origin, behind) in await node.staleness() {
            staleness["\(origin)"] = behind.map { Double($0.milliseconds) / 1_000 } ?? NSNull()
        }
        return Self.json(Self.answer(query, result, staleness: staleness), headers: [.eTag: etag])
    }

    /// The answer to a query stopped because its client went away: nobody reads it, but the
    /// status says what happened (nginx's 499) should a proxy in between log it.
    static func stopped(node: Node) async -> Response {
        await node.queryStopped()
        return Self.error(.init(code: 499, reasonPhrase: "Client Closed Request"), QueryError.stopped.description)
    }

    /// `consistency=global`: this region's state joined with every answering region's. Origins
    /// whose region answered are current (staleness 0); the others keep this region's staleness,
    /// an upper bound (an answering region may know more of them). No ETag: the answer depends on
    /// other regions' state.
    static func globalQuery(_ query: Query, node: Node, stopping: @escaping @Sendable () -> Bool) async throws
        -> Response
    {
        let answer: Node.GlobalAnswer
        do {
            answer = try await node.globalQuery(query, stopping: stopping)
        } catch .query(.stopped) {
            return await Self.stopped(node: node)
        } catch .busy {
            return Self.error(.serviceUnavailable, Node.GlobalReadError.busy(waiting: Node.globalReadsMax).description,
                              headers: [.retryAfter: "1"])
        } catch {
            return Self.error(.badRequest, error.description)
        }
        var staleness: [String: Any] = [:]
        for (origin, behind) in await node.staleness() {
            let seconds: Double? = answer.answeredOrigins.contains(origin.rawValue)
                ? 0 : behind.map { Double($0.milliseconds) / 1_000 }
            staleness["\(origin)"] = seconds ?? NSNull()
        }
        var object = Self.answer(query, answer.result, staleness: staleness)
        object["consistency"] = "global"
        object["regions"] = [
            "answered": [node.config.region] + answer.answered,
            "missing": answer.missing.map { ["region": $0.region, "reason": $0.reason] },
        ] as [String: Any]
        return Self.json(object)
    }

    /// A query answer's JSON object.
    static func answer(_ query: Query, _ result: QueryResult, staleness: [String: Any]) -> [String: Any] {
        let groups = result.groups.map { group -> [String: Any] in
            var object: [String: Any] = [:]
            if let operation = group.operation { object["operation"] = operation }
            if let statusClass = group.statusClass { object["status"] = "\(statusClass)" }
            object["points"] = group.points.map { point -> [String: Any] in
                var values: [String: Any] = [:]
                for (metric, value) in zip(result.metrics, point.values) { values["\(metric)"] = value ?? NSNull() }
                return ["start": RFC3339.format(point.start), "values": values, "approximate": point.approximate]
            }
            return object
        }
        return [
            "service": query.service, "resolution": "\(result.resolution)", "from": RFC3339.format(result.from),
            "to": RFC3339.format(result.to), "step_seconds": Double(result.step.milliseconds) / 1_000,
            "metrics": result.metrics.map(\.description), "groups": groups, "staleness": staleness,
        ]
    }

    /// A query string's parameters as HTML forms (and Python's `requests`) encode them: `+` is a
    /// space, `%XX` a byte; the first of a repeated name counts. Malformed escapes stay as written.
    static func formParameters(_ query: String?) -> [String: String] {
        var parameters: [String: String] = [:]
        for pair in (query ?? "").split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = Self.formDecode(parts[0])
            if parameters[name] == nil { parameters[name] = parts.count > 1 ? Self.formDecode(parts[1]) : "" }
        }
        return parameters
    }

    static func formDecode(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var utf8 = text.utf8[...]
        func hex(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"), utf8.count >= 2, let high = hex(utf8[utf8.startIndex]),
                let low = hex(utf8[utf8.index(after: utf8.startIndex)])
            {
                bytes.append(high << 4 | low)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The query parameters, checked one by one; errors name the parameter and the bad value.
    static func parseQuery(_ value: (String) -> String?, now: Timestamp) throws(QueryError) -> Query {
        guard let service = value("service"), !service.isEmpty else {
            throw .invalid(parameter: "service", message: "is required")
        }
        func time(_ name: String) throws(QueryError) -> Timestamp? {
            guard let text = value(name) else { return nil }
            if let millis = Int64(text) { return Timestamp(millisecondsSinceEpoch: millis) }
            guard let timestamp = RFC3339.parse(text) else {
                throw .invalid(parameter: name, message: "'\(text)' is neither RFC 3339 nor epoch milliseconds")
            }
            return timestamp
        }
        let to = try time("to") ?? now
        let from = try time("from") ?? (to - .seconds(3_600))
        var step: Duration?
        if let text = value("step") {
            if let seconds = Int64(text) {
                step = .seconds(seconds)
            } else if let duration = Duration.parse(text) {
                step = duration
            } else {
                throw .invalid(parameter: "step", message: "'\(text)' is not a duration such as 60, 60s, 5m or 1h")
            }
        }
        var statusClass: StatusClass?
        if let text = value("status") {
            guard let parsed = StatusClass(parsing: text) else {
                throw .invalid(parameter: "status", message: "'\(text)' is not a status class such as 2xx or 5xx")
            }
            statusClass = parsed
        }
        var groupBy: [GroupBy] = []
        for name in (value("group_by") ?? "").split(separator: ",") where !name.isEmpty {
            guard let group = GroupBy(rawValue: String(name)) else {
                throw .invalid(parameter: "group_by", message: "'\(name)' is not operation or status")
            }
            if !groupBy.contains(group) { groupBy.append(group) }
        }
        var metrics: [Metric] = []
        for name in (value("metrics") ?? "count").split(separator: ",") where !name.isEmpty {
            metrics.append(try Metric(parsing: String(name)))
        }
        return Query(service: service, operation: value("operation"), statusClass: statusClass, from: from, to: to,
                     step: step, groupBy: groupBy, metrics: metrics)
    }

    // MARK: - Cluster

    /// This node, its peers as the transport sees them (connection, protocol, last contact, bytes,
    /// drops, last error), how stale this node is about each, and the last refused connections.
    static func cluster(node: Node) async throws -> Response {
        var staleness: [UInt64: Double?] = [:]
        for (origin, behind) in await node.staleness() {
            staleness[origin.rawValue] = behind.map { Double($0.milliseconds) / 1_000 }
        }
        let transport = await node.transport
        let peers: [[String: Any]] = (transport?.peers ?? []).map { peer in
            var entry: [String: Any] = [
                "node": peer.identity.node, "region": peer.identity.region, "connected": peer.connected,
                "bytes_in": peer.bytesIn, "bytes_out": peer.bytesOut, "messages_dropped": peer.messagesDropped,
            ]
            entry["protocol"] = peer.protocolVersion.map { Int($0) } ?? NSNull()
            entry["origin"] = peer.origin.map { String($0, radix: 16) } ?? NSNull()
            entry["last_contact"] = peer.lastContact.map { RFC3339.format(Timestamp(millisecondsSinceEpoch:
                Int64($0.timeIntervalSince1970 * 1_000))) } ?? NSNull()
            entry["last_error"] = peer.lastError ?? NSNull()
            let behind = peer.origin.flatMap { staleness[$0] } ?? nil
            entry["staleness_seconds"] = behind ?? NSNull()
            return entry
        }
        return Self.json([
            "node": node.config.node, "region": node.config.region, "origin": String(node.replicaID.rawValue, radix: 16),
            "peers": peers, "refusals": Array((transport?.refusals ?? []).suffix(10)),
        ])
    }

    // MARK: - Responses

    static func json(_ object: [String: Any], status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        // Objects built here hold only JSON types: serialization cannot fail.
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// A JSON string literal for `text` (RFC 8259 escaping).
    static func jsonString(_ text: String) -> String { JSONText.string(text) }

    static func error(_ status: HTTPResponse.Status, _ message: String, headers: HTTPFields = [:]) -> Response {
        Self.json(["error": message, "status": status.code], status: status, headers: headers)
    }
}

extension HTTPField.Name {
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!  // a valid token
    static let idempotentReplayed = HTTPField.Name("Idempotent-Replayed")!  // a valid token
}

extension Node {
    /// Counts a request refused before ingest. Off the actor: a storm of refusals (a client with
    /// a wrong key) must not queue behind ingest, nor ingest behind it.
    nonisolated func refused(status: Int) {
        self.metrics.refusedRequest(status: status)
    }
}

// MARK: - SLOs

extension API {
    /// `GET /v1/slo` (every SLO of the config's spec files) and `GET /v1/slo/{name}`: each
    /// evaluated now on this region's state, with how each number was computed.
    static func slos(_ request: Request, node: Node, named name: String?) async throws -> Response {
        let at: Timestamp?
        do {
            at = try Self.instant(request)
        } catch {
            return Self.error(.badRequest, error.description)
        }
        let global: Bool
        do {
            global = try Self.globalConsistency(request)
        } catch {
            return Self.error(.badRequest, error.description)
        }
        let evaluated: SLOAnswer
        do {
            evaluated = try await Self.evaluate(node: node, named: name, specs: nil, at: at, breakdown: name != nil,
                                                global: global)
        } catch {
            return Self.error(.badRequest, error.description)
        }
        if let name {
            guard let status = evaluated.statuses.first else {
                return Self.error(.notFound, "no SLO named \(ConfigError.quote(name)); GET /v1/slo lists them")
            }
            var object = Self.slo(status.status, breakdown: status.breakdown, region: node.config.region,
                                  origins: evaluated.origins)
            object.merge(evaluated.consistency) { _, new in new }
            return Self.json(object)
        }
        return Self.json(evaluated.object(region: node.config.region))
    }

    /// SLOs evaluated for an answer: their statuses, the origins' regions, and the consistency.
    struct SLOAnswer {
        var statuses: [(status: SLOStatus, breakdown: SLOBreakdown?)]
        var origins: [ReplicaID: String]
        /// `consistency`, and at global consistency the regions answered and missing.
        var consistency: [String: Any]

        func object(region: String) -> [String: Any] {
            var object: [String: Any] = ["region": region, "slos": self.statuses.map {
                API.slo($0.status, breakdown: $0.breakdown, region: region, origins: self.origins)
            }]
            object.merge(self.consistency) { _, new in new }
            return object
        }
    }

    static func evaluate(node: Node, named name: String?, specs: [SLOSpec]?, at: Timestamp?, breakdown: Bool,
                         global: Bool) async throws(QueryError) -> SLOAnswer
    {
        let origins = await node.originRegions()
        guard global else {
            let statuses = try await node.sloStatuses(named: name, specs: specs, at: at, breakdown: breakdown)
            return SLOAnswer(statuses: statuses, origins: origins, consistency: [
                "consistency": "local",
                "consistency_how": "this region's state: what other regions counted is here once replicated "
                    + "(GET /v1/cluster shows how far behind each is)",
            ])
        }
        let (statuses, view) = try await node.sloStatusesGlobally(named: name, specs: specs, at: at, breakdown: breakdown)
        return SLOAnswer(statuses: statuses, origins: origins, consistency: [
            "consistency": "global",
            "regions": [
                "answered": view.answered,
                "missing": view.missing.map { ["region": $0.region, "reason": $0.reason] },
            ] as [String: Any],
            "consistency_how": "this region's state joined with the buckets of the last "
                + "\(View.words(view.horizon)) that every answering region holds (older ones are replicated already); "
                + (view.missing.isEmpty ? "every region answered"
                    : "a region that did not answer is counted as far as it has replicated here"),
        ])
    }

    /// `?consistency=local` (the default) or `global`.
    static func globalConsistency(_ request: Request) throws(QueryError) -> Bool {
        switch Self.formParameters(request.uri.query)["consistency"] {
        case nil, "local": return false
        case "global": return true
        case let other?:
            throw .invalid(parameter: "consistency", message: "\(ConfigError.quote(other)) is neither local nor global")
        }
    }

    /// `?at=` (RFC 3339 or epoch milliseconds), or nil for now.
    static func instant(_ request: Request) throws(QueryError) -> Timestamp? {
        guard let text = Self.formParameters(request.uri.query)["at"] else { return nil }
        guard let at = RFC3339.parse(text) ?? Int64(text).map(Timestamp.init(millisecondsSinceEpoch:)), at.isValid else {
            throw .invalid(parameter: "at", message: "\(ConfigError.quote(text)) is neither RFC 3339 nor epoch milliseconds")
        }
        return at
    }

    /// `POST /v1/slo`: a spec file in the body (the short form, docs/slo.md), evaluated on this
    /// region's state now or `?at=`: what `tally slo report` asks.
    static func postedSLOs(_ request: Request, node: Node) async throws -> Response {
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: SLOFile.bytesMax)
        } catch {
            return Self.error(.contentTooLarge, "an SLO spec file is at most \(SLOFile.bytesMax) bytes")
        }
        let specs: [SLOSpec]
        let at: Timestamp?
        do {
            specs = try SLOFile.parse(yaml: String(buffer: body), file: "request body")
            at = try Self.instant(request)
        } catch {
            return Self.error(.badRequest, "\(error)")
        }
        let evaluated: SLOAnswer
        do {
            evaluated = try await Self.evaluate(node: node, named: nil, specs: specs, at: at, breakdown: true,
                                                global: try Self.globalConsistency(request))
        } catch {
            return Self.error(.badRequest, error.description)
        }
        return Self.json(evaluated.object(region: node.config.region))
    }

    static func slo(_ status: SLOStatus, breakdown: SLOBreakdown?, region: String, origins: [ReplicaID: String])
        -> [String: Any]
    {
        var object = Self.slo(status, region: region)
        guard let breakdown else { return object }
        func counts(_ counts: EventCounts) -> [String: Any] { ["total": counts.total, "bad": counts.bad] }
        object["history"] = [
            "step_seconds": Double(breakdown.stepWidth.milliseconds) / 1_000,
            "steps": breakdown.steps.map { step -> [String: Any] in
                ["from": RFC3339.format(step.from), "total": step.counts.total, "bad": step.counts.bad]
            },
            "how": "the window's requests in equal steps (maintenance not left out), from this region's state",
        ] as [String: Any]
        var spent: [String: Any] = [
            "by_operation": breakdown.operations.prefix(50).map { ["operation": $0.operation] .merging(counts($0.counts)) { a, _ in a } },
            "how": "bad requests per operation over the window; per region: the counters' slot of the region that "
                + "counted them (its current incarnation; earlier ones are named by origin id)",
        ]
        if let byOrigin = breakdown.origins {
            spent["by_region"] = byOrigin.map { entry -> [String: Any] in
                ["region": origins[entry.origin] ?? "origin \(entry.origin)", "bad": entry.bad]
            }
        } else {
            spent["by_region_unavailable"] = "a latency sketch does not keep one slot per region"
        }
        object["budget_spent_by"] = spent
        object["periods"] = [
            "unit": breakdown.periodUnit.description,
            "items": breakdown.periods.map { period -> [String: Any] in
                ["from": RFC3339.format(period.from), "to": RFC3339.format(period.to), "total": period.counts.total,
                 "bad": period.counts.bad, "met": period.met, "budget_spent": period.budgetSpent,
                 "current": period.current]
            },
            "how": "each calendar period evaluated on its own; met when its bad events stayed within the objective's "
                + "allowance (a period older than the retention of day buckets shows no traffic)",
        ] as [String: Any]
        return object
    }

    static func slo(_ status: SLOStatus, region: String) -> [String: Any] {
        let spec = status.spec
        let budget = status.budget
        var sli: [String: Any] = [
            "value": status.counts.sli, "good": status.counts.good, "bad": status.counts.bad, "total": status.counts.total,
            "how": "good / total over the time buckets starting in the window, from this region's state (\(region))",
        ]
        if let bounds = status.goodBounds {
            sli["good_bounds"] = ["certain": bounds.certain, "possible": bounds.possible]
            sli["how"] = "requests no slower than the threshold / all requests, from the latency sketch; the requests "
                + "of the sketch bucket the threshold falls in count as bad (good_bounds gives both sides)"
        }
        if case .timeslices(let slice, let target) = spec.budgeting, let width = status.sliceWidth {
            sli["unit"] = "slices"
            sli["slice_seconds"] = Double(width.milliseconds) / 1_000
            sli["requests"] = status.events
            sli["how"] = "good slices / all slices: the window in slices of \(width.shortDescription)"
                + (width > slice ? " (\(slice.shortDescription) asked; the window is read in buckets of "
                    + "\(width.shortDescription), and a slice is at least one)" : "")
                + ", a slice good when at least \(target) of its requests are (one without requests is good); "
                + "\(status.events) requests"
        }
        var object: [String: Any] = [
            "name": spec.name, "service": spec.service, "objective": spec.objective.description,
            "indicator": spec.indicator.description, "window": spec.window.description,
            "window_from": RFC3339.format(status.window.from), "window_to": RFC3339.format(status.window.to),
            "evaluated_at": RFC3339.format(status.at), "sli": sli, "budgeting": spec.budgeting.description,
            "budget": [
                "allowed_events": budget.allowedEvents, "spent": budget.spent, "remaining": budget.remaining,
                "total_minutes": budget.totalMinutes, "remaining_minutes": budget.remainingMinutes,
                "exhausted": budget.isExhausted,
                "how": "allowed = total x (1 - objective); spent = bad / allowed; minutes = window x (1 - objective) x remaining",
            ] as [String: Any],
            "burn_rates": Dictionary(uniqueKeysWithValues: status.burnRates.map {
                ($0.window.shortDescription, ["rate": $0.rate.value, "bad": $0.counts.bad, "total": $0.counts.total] as [String: Any])
            }),
            "alerts": status.verdicts.map { verdict -> [String: Any] in
                var alert: [String: Any] = [
                    "severity": verdict.rule.severity.rawValue, "burn_rate_threshold": verdict.rule.factor.value,
                    "long_window": verdict.rule.long.shortDescription, "short_window": verdict.rule.short.shortDescription,
                    "long_rate": verdict.longRate.value, "short_rate": verdict.shortRate.value, "firing": verdict.firing,
                    "budget_spent_when_firing": verdict.rule.budgetSpent(of: budget.window),
                ]
                if let suppressed = verdict.suppressed { alert["suppressed"] = suppressed }
                return alert
            },
        ]
        if let operations = spec.operations { object["operations"] = operations.sorted() }
        if let exhaustion = status.timeToExhaustion { object["time_to_exhaustion_seconds"] = Double(exhaustion.milliseconds) / 1_000 }
        if let runbook = spec.runbook { object["runbook"] = runbook }
        return object
    }
}
