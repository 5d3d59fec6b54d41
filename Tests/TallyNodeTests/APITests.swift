import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
import TallyAggregates
import TallyReplica
@testable import TallyNode

/// The HTTP API through Hummingbird's router test client, on a node with a temporary data dir.
@Suite struct APITests {
    static let secret = "test-secret"
    /// A fixed clock: 2026-11-29T12:00:00Z.
    static let now = Timestamp(millisecondsSinceEpoch: 1_795_953_600_000)

    static func config(directory: String, _ change: (inout NodeConfig) -> Void = { _ in }) throws -> NodeConfig {
        var config = try NodeConfig.parse(yaml: """
            node: test-1
            region: test
            listen: 127.0.0.1:0
            data_dir: \(directory)
            api_keys:
              - name: tester
                sha256: \(NodeConfig.hash(secret: Self.secret).map { String(format: "%02x", $0) }.joined())
            """, file: "test.yaml")
        change(&config)
        return config
    }

    static func withNode<T: Sendable>(_ change: (inout NodeConfig) -> Void = { _ in },
                                      over framework: TestingSetup = .router,
                                      _ body: @escaping @Sendable (Node, any TestClientProtocol) async throws -> T)
        async throws -> T
    {
        let directory = NSTemporaryDirectory() + "tally-api-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = try Self.config(directory: directory, change)
        let node = try await Node.start(config: config, clock: { Self.now })
        defer { Task { await node.stop() } }
        let app = Application(router: API.router(node: node))
        return try await app.test(framework) { client in try await body(node, client) }
    }

    static var auth: HTTPFields { [.authorization: "Bearer \(Self.secret)", .contentType: "application/json"] }

    static func events(_ count: Int, operation: (Int) -> String = { _ in "GET /cart" }, status: UInt16 = 200) -> String {
        let items = (0..<count).map { index in
            "{\"service\":\"cart\",\"operation\":\"\(operation(index))\",\"status\":\(status),\"latency\":\(1_000 + index),"
                + "\"user\":\"u\(index % 7)\",\"timestamp\":\(Self.now.millisecondsSinceEpoch - 1_000)}"
        }
        return "[" + items.joined(separator: ",") + "]"
    }

    static func json(_ body: ByteBuffer) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any])
    }

    @Test func healthNeedsNoKeyAndEverythingElseDoes() async throws {
        try await Self.withNode { _, client in
            try await client.execute(uri: "/health", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/ready", method: .get) { #expect($0.status == .ok) }
            for path in ["/v1/query?service=cart", "/v1/series", "/metrics"] {
                try await client.execute(uri: path, method: .get) { #expect($0.status == .unauthorized, "\(path)") }
            }
            try await client.execute(uri: "/v1/events", method: .post,
                                     headers: [.authorization: "Bearer wrong", .contentType: "application/json"],
                                     body: ByteBuffer(string: "[]")) { #expect($0.status == .unauthorized) }
        }
    }

    /// Over a real loopback connection (`.live`: a server on 127.0.0.1 and an HTTP client).
    @Test func postThenQueryCountsExactlyAndCachesWithETag() async throws {
        try await Self.withNode(over: .live) { _, client in
            try await client.execute(uri: "/v1/events", method: .post, headers: Self.auth,
                                     body: ByteBuffer(string: Self.events(100))) { response in
                #expect(response.status == .ok)
                let answer = try Self.json(response.body)
                #expect(answer["accepted"] as? Int == 100 && answer["rejected_count"] as? Int == 0)
            }
            let uri = "/v1/query?service=cart&from=2026-11-29T11:00:00Z&to=2026-11-29T12:00:00Z&metrics=count,p50,max,unique_users"
            let etag = try await client.execute(uri: uri, method: .get, headers: Self.auth) { response in
                #expect(response.status == .ok)
                let answer = try Self.json(response.body)
                #expect(answer["resolution"] as? String == "1h")
                // A single region has no other origin to be behind.
                #expect((answer["staleness"] as? [String: Any])?.isEmpty == true)
                let groups = try #require(answer["groups"] as? [[String: Any]])
                let points = try #require(groups.first?["points"] as? [[String: Any]])
                let values = try #require(points.first?["values"] as? [String: Any])
                #expect(values["count"] as? Double == 100)
                #expect(values["max"] as? Double == 1_099)
                #expect(values["unique_users"] as? Double == 7)
                let p50 = try #require(values["p50"] as? Double)
                #expect(abs(p50 - 1_049) / 1_049 < 0.0055)
                return try #require(response.headers[.eTag])
            }
            var conditional = Self.auth
            conditional[.ifNoneMatch] = etag
            try await client.execute(uri: uri, method: .get, headers: conditional) { #expect($0.status == .notModified) }
            // New data, new tag.
            try await client.execute(uri: "/v1/events", method: .post, headers: Self.auth,
                                     body: ByteBuffer(string: Self.events(1))) { #expect($0.status == .ok) }
            try await client.execute(uri: uri, method: .get, headers: conditional) { #expect($0.status == .ok) }
        }
    }

    @Test func retriedIdempotencyKeyIsAnsweredOnceAndCountedOnce() async throws {
        try await Self.withNode { _, client in
            var headers = Self.auth
            headers[.idempotencyKey] = "batch-42"
            for attempt in 0..<3 {
                try await client.execute(uri: "/v1/events", method: .post, headers: headers,
                                         body: ByteBuffer(string: Self.events(10))) { response in
                    #expect(response.status == .ok)
                    let replayed = try Self.json(response.body)["replayed"] as? Bool
                    #expect(replayed == (attempt > 0))
                    #expect(response.headers[.idempotentReplayed] == (attempt > 0 ? "true" : nil))
                }
            }
            try await client.execute(uri: "/v1/query?service=cart&from=2026-11-29T11:00:00Z&to=2026-11-29T12:00:00Z",
                                     method: .get, headers: Self.auth) { response in
                let groups = try #require(try Self.json(response.body)["groups"] as? [[String: Any]])
                let points = try #require(groups.first?["points"] as? [[String: Any]])
                #expect((points.first?["values"] as? [String: Any])?["count"] as? Double == 10)
            }
        }
    }

    @Test func badBodiesGetClear4xx() async throws {
        try await Self.withNode({ $0.bodyBytesMax = 64 * 1_024 }) { _, client in
            func post(_ body: String, contentType: String = "application/json") async throws -> (HTTPResponse.Status, String) {
                var headers = Self.auth
                headers[.contentType] = contentType
                return try await client.execute(uri: "/v1/events", method: .post, headers: headers,
                                                body: ByteBuffer(string: body)) { response in
                    (response.status, (try? Self.json(response.body)["error"] as? String) ?? "")
                }
            }
            let truncated = try await post("[{\"service\": \"cart\", \"operation\":")
            #expect(truncated.0 == .badRequest && truncated.1.contains("line 1"))
            let tooLarge = try await post(String(repeating: " ", count: 10 << 20) + "[]")
            #expect(tooLarge.0 == .contentTooLarge)
            let wrongType = try await post("[]", contentType: "text/csv")
            #expect(wrongType.0 == .unsupportedMediaType)
            let nanLiteral = try await post("[{\"latency\": NaN}]")
            #expect(nanLiteral.0 == .badRequest)
            // Per-event problems are not request errors: 200 with reasons.
            let negative = Self.events(1).replacingOccurrences(of: "\"latency\":1000", with: "\"latency\":-5")
            let (status, _) = try await post(negative)
            #expect(status == .ok)
        }
    }

    @Test func handWrittenJSONEscapesLikeTheSpec() throws {
        let text = "a\"b\\c\nd\u{01}é\t"
        let literal = API.jsonString(text)
        #expect(literal == "\"a\\\"b\\\\c\\nd\\u0001é\\t\"")
        let decoded = try JSONSerialization.jsonObject(with: Data(literal.utf8), options: .fragmentsAllowed) as? String
        #expect(decoded == text)
    }

    @Test func invalidUTF8IsRefused() async throws {
        try await Self.withNode { _, client in
            // In a value ("cart") and in a field name ("operation"): a lead byte followed by ASCII.
            for position in [14, 20] {
                var body = Array(Self.events(1).utf8)
                body[position] = 0xC3
                try await client.execute(uri: "/v1/events", method: .post, headers: Self.auth,
                                         body: ByteBuffer(bytes: body)) { #expect($0.status == .badRequest) }
            }
        }
    }

    @Test func operationCardinalityIsBoundedPerService() async throws {
        try await Self.withNode({ $0.limits.operationsPerServiceMax = 50 }) { node, client in
            try await client.execute(uri: "/v1/events", method: .post, headers: Self.auth,
                                     body: ByteBuffer(string: Self.events(5_000, operation: { "op-\($0)" }))) { response in
                let answer = try Self.json(response.body)
                #expect(answer["accepted"] as? Int == 50 && answer["rejected_count"] as? Int == 4_950)
                let first = try #require((answer["rejected"] as? [[String: Any]])?.first)
                #expect(first["code"] as? String == "operation_limit")
            }
            #expect(await node.catalog().first?.operations.count == 50)
        }
    }

    @Test func rateLimitAnswers429WithRetryAfter() async throws {
        try await Self.withNode({ $0.rateLimitEventsPerSecond = 10; $0.rateLimitBurst = 20 }) { _, client in
            try await client.execute(uri: "/v1/events", method: .post, headers: Self.auth,
                                     body: ByteBuffer(string: Self.events(20))) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/events", method: .post, headers: Self.auth,
                                     body: ByteBuffer(string: Self.events(5))) { response in
                #expect(response.status == .tooManyRequests)
                #expect(response.headers[.retryAfter] == "1")
            }
        }
    }

    @Test func overloadAnswers503WithRetryAfter() async throws {
        try await Self.withNode({ $0.pendingBatchesMax = 0 }) { _, client in
            try await client.execute(uri: "/v1/events", method: .post, headers: Self.auth,
                                     body: ByteBuffer(string: Self.events(1))) { response in
                #expect(response.status == .serviceUnavailable && response.headers[.retryAfter] == "1")
            }
        }
    }

    @Test func badQueriesNameTheParameter() async throws {
        try await Self.withNode { _, client in
            for (query, fragment) in [("", "service"), ("service=a&from=yesterday", "from"), ("service=a&step=90s", "step"),
                                      ("service=a&metrics=p999x", "metrics"), ("service=a&group_by=region", "group_by"),
                                      ("service=a&status=9xx", "status")] {
                try await client.execute(uri: "/v1/query?\(query)", method: .get, headers: Self.auth) { response in
                    #expect(response.status == .badRequest, "\(query)")
                    let message = try Self.json(response.body)["error"] as? String
                    #expect(message?.hasPrefix(fragment) == true, "\(query)")
                }
            }
        }
    }

    /// Hostile query parameters through the HTTP layer: each is a 400 naming the parameter, and the
    /// node still answers afterwards. `from=-9223372036854775808` used to stop the node.
    @Test func hostileQueryParametersAre400sAndTheNodeStaysUp() async throws {
        try await Self.withNode { _, client in
            try await client.execute(uri: "/v1/events", method: .post, headers: Self.auth,
                                     body: ByteBuffer(string: Self.events(10))) { #expect($0.status == .ok) }
            let fixed = ["from=-9223372036854775808", "to=9223372036854775807", "from=9223372036854775807",
                         "step=9223372036854775807", "step=-60", "step=0", "from=0&to=1000000000000000&step=60",
                         "metrics=" + Array(repeating: "count", count: 100).joined(separator: ","),
                         "from=-1000000000000001", "step=1m&from=0"]
            var random = SeededRandom(seed: 7)
            let pieces = ["-9223372036854775808", "9223372036854775807", "0", "-1", "60", "1e9", "%00", "+", "1m",
                          "99999999999999999999", "2026-11-29T11:00:00Z", "\u{10FFFF}", ""]
            var queries = fixed
            for _ in 0..<200 {
                let names = ["from", "to", "step", "metrics", "group_by", "status", "operation"]
                queries.append((0..<3).map { _ in
                    "\(names[Int(random.next() % UInt64(names.count))])=\(pieces[Int(random.next() % UInt64(pieces.count))])"
                }.joined(separator: "&"))
            }
            for query in queries {
                let uri = "/v1/query?service=cart&" + (query.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? "")
                try await client.execute(uri: uri, method: .get, headers: Self.auth) { response in
                    #expect(response.status == .ok || response.status == .badRequest, "\(query): \(response.status)")
                    if response.status == .badRequest {
                        let message = try Self.json(response.body)["error"] as? String
                        #expect(message?.isEmpty == false)
                    }
                }
            }
            try await client.execute(uri: "/v1/query?service=cart&from=\(Self.now.millisecondsSinceEpoch - 3_600_000)",
                                     method: .get, headers: Self.auth) { response in
                #expect(response.status == .ok)
                let groups = try #require(try Self.json(response.body)["groups"] as? [[String: Any]])
                let points = try #require(groups.first?["points"] as? [[String: Any]])
                #expect((points.first?["values"] as? [String: Any])?["count"] as? Double == 10)
            }
        }
    }

    @Test func aPlusInTheQueryStringIsASpace() async throws {
        try await Self.withNode { _, client in
            let body = "[{\"service\":\"my svc\",\"operation\":\"GET /a b\",\"status\":200,\"latency\":5,"
                + "\"timestamp\":\(Self.now.millisecondsSinceEpoch - 1_000)}]"
            try await client.execute(uri: "/v1/events", method: .post, headers: Self.auth,
                                     body: ByteBuffer(string: body)) { #expect($0.status == .ok) }
            for query in ["service=my+svc&operation=GET+%2Fa+b", "service=my%20svc&operation=GET%20/a%20b"] {
                try await client.execute(uri: "/v1/query?\(query)", method: .get, headers: Self.auth) { response in
                    let answer = try Self.json(response.body)
                    #expect(answer["service"] as? String == "my svc", "\(query)")
                    let groups = try #require(answer["groups"] as? [[String: Any]])
                    let points = try #require(groups.first?["points"] as? [[String: Any]])
                    #expect((points.first?["values"] as? [String: Any])?["count"] as? Double == 1, "\(query)")
                }
            }
        }
    }

    @Test func theBearerSchemeIsCaseInsensitiveAndRefusalsAreCounted() async throws {
        try await Self.withNode { _, client in
            for scheme in ["bearer", "BEARER", "Bearer"] {
                try await client.execute(uri: "/v1/series", method: .get,
                                         headers: [.authorization: "\(scheme) \(Self.secret)"]) {
                    #expect($0.status == .ok, "\(scheme)")
                }
            }
            try await client.execute(uri: "/v1/series", method: .get, headers: [.authorization: "Bearer nope"]) {
                #expect($0.status == .unauthorized)
            }
            try await client.execute(uri: "/v1/series", method: .get, headers: [.authorization: "Basic abc"]) {
                #expect($0.status == .unauthorized)
            }
            try await client.execute(uri: "/metrics", method: .get, headers: Self.auth) { response in
                let text = String(buffer: response.body)
                #expect(text.contains("tally_http_requests_refused_total{status=\"401\"} 2"))
                // Every status the node refuses with is there from the start, so rate() sees the first one.
                for status in NodeMetrics.refusalStatuses where status != 401 {
                    #expect(text.contains("tally_http_requests_refused_total{status=\"\(status)\"} 0"), "\(status)")
                }
            }
        }
    }

    @Test func unknownRoutesAndWrongMethodsAnswerJSON() async throws {
        try await Self.withNode { _, client in
            try await client.execute(uri: "/v2/nothing", method: .get, headers: Self.auth) { response in
                #expect(response.status == .notFound && response.headers[.contentType] == "application/json")
                let message = try Self.json(response.body)["error"] as? String
                #expect(message?.contains("/v2/nothing") == true)
            }
            try await client.execute(uri: "/v1/events", method: .get, headers: Self.auth) { response in
                #expect(response.status == .methodNotAllowed && response.headers[.allow] == "POST")
                let status = try Self.json(response.body)["status"] as? Int
                #expect(status == 405)
            }
            try await client.execute(uri: "/v1/query?service=a", method: .delete) { response in
                #expect(response.status == .methodNotAllowed)
            }
        }
    }

    @Test func metricsUseThePrometheusTextContentType() async throws {
        try await Self.withNode { _, client in
            try await client.execute(uri: "/v1/events", method: .post, headers: Self.auth,
                                     body: ByteBuffer(string: Self.events(3))) { #expect($0.status == .ok) }
            try await client.execute(uri: "/metrics", method: .get, headers: Self.auth) { response in
                #expect(response.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
                let text = String(buffer: response.body)
                #expect(text.contains("tally_ingest_events_accepted_total 3"))
                #expect(text.contains("tally_series 1"))
                #expect(text.contains("# TYPE tally_group_commit_seconds histogram"))
                #expect(text.contains("tally_group_commit_seconds_bucket{le=\"+Inf\"}"))
                // One batch answered, after its commit: one acknowledgement observed.
                #expect(text.contains("tally_ingest_acknowledgement_seconds_count 1\n"), "\(text)")
                #expect(text.contains("tally_replication_messages_refused_total 0"))
                #expect(!text.contains("tally_replication_staleness_seconds"), "a single region has no other origin")
                #expect(response.headers[.requestID]?.count ?? 0 > 0, "every answer carries its request id")
            }
        }
    }

    /// A store deleted or truncated to nothing, with the identity file left beside it: the node
    /// comes back as a new origin (it used to reuse the old one, and its peers' larger slots for it
    /// hid everything it counted afterwards); a plain restart keeps its origin.
    @Test func aLostStoreNeverRunsUnderItsOldIdentity() async throws {
        for damage in ["delete", "truncate"] {
            let directory = NSTemporaryDirectory() + "tally-identity-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let config = try Self.config(directory: directory)
            let events = try EventParser.parse(Array(Self.events(5).utf8), format: .jsonArray)
            // The nodes (and their SQLite pools) are gone before the files are damaged, as they are
            // when an operator finds a node down: truncating a file SQLite has mapped is a SIGBUS.
            func run(_ at: Timestamp) async throws -> ReplicaID {
                let node = try await Node.start(config: config, clock: { at })
                _ = await node.ingest(items: events, client: "tester", idempotencyKey: nil)
                await node.stop()
                return node.replicaID
            }
            let first = try await run(Self.now)
            #expect(try await run(Self.now + .seconds(1)) == first, "a plain restart keeps the origin")
            let store = (directory as NSString).appendingPathComponent("tally.sqlite")
            if damage == "delete" {
                try FileManager.default.removeItem(atPath: store)
            } else {
                try Data().write(to: URL(fileURLWithPath: store))
            }
            for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: store + suffix) }
            let fresh = try await Node.start(config: config, clock: { Self.now + .seconds(2) })
            #expect(fresh.replicaID != first, "\(damage): the old origin was reused")
            #expect(fresh.replicaID.rawValue != 0)
            let file = try String(contentsOfFile: (directory as NSString).appendingPathComponent("incarnation"),
                                  encoding: .utf8)
            #expect(UInt64(file.trimmingCharacters(in: .whitespacesAndNewlines)) != nil)
            await fresh.stop()
            // And it stays the new origin across a restart.
            let freshID = fresh.replicaID
            #expect(try await run(Self.now + .seconds(3)) == freshID)
        }
    }

    /// SIGTERM (stop) takes a last checkpoint, so a restart replays no log.
    @Test func aStopCheckpointsSoTheNextStartReplaysNothing() async throws {
        let directory = NSTemporaryDirectory() + "tally-stop-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = try Self.config(directory: directory) { $0.checkpointInterval = .seconds(3_600) }
        let events = try EventParser.parse(Array(Self.events(5).utf8), format: .jsonArray)
        for round in 0..<3 {
            let node = try await Node.start(config: config, clock: { Self.now + .seconds(Int64(round)) })
            for _ in 0..<4 { _ = await node.ingest(items: events, client: "tester", idempotencyKey: nil) }
            await node.stop()
        }
        let store = try EventStore(directory: directory)
        let (image, log) = try await store.recover()
        #expect(log.isEmpty && image.sequence == 12)
    }

    @Test func acknowledgedEventsSurviveARestart() async throws {
        let directory = NSTemporaryDirectory() + "tally-restart-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = try Self.config(directory: directory)
        let first = try await Node.start(config: config, clock: { Self.now })
        let events = try EventParser.parse(Array(Self.events(25).utf8), format: .jsonArray)
        #expect(await first.ingest(items: events, client: "tester", idempotencyKey: "k") == .accepted(
            IngestReceipt(accepted: 25, rejected: [], sequence: 1), replayed: false))
        await first.stop()
        let second = try await Node.start(config: config, clock: { Self.now })
        #expect(second.replicaID == first.replicaID)
        let answer = try await second.query(Query(service: "cart", from: Self.now - .seconds(3_600), to: Self.now,
                                                  metrics: [.count]))
        #expect(answer.0.groups[0].points[0].values == [25])
        #expect(await second.ingest(items: events, client: "tester", idempotencyKey: "k") == .accepted(
            IngestReceipt(accepted: 25, rejected: [], sequence: 1), replayed: true))
        await second.stop()
    }
}
