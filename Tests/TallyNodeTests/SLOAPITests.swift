import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import TallyReplica
import TallySLO
@testable import TallyNode

/// `GET /v1/slo` and `GET /v1/slo/{name}` for the SLOs of the config's spec files, and the
/// files' errors at start and on reload.
@Suite struct SLOAPITests {
    static func specFile(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "tally-slo-\(UUID().uuidString).yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static let spec = """
        slos:
          - name: checkout-availability
            service: checkout
            objective: 99
            window: 1d
            minimum_events: 10
          - name: checkout-latency
            service: checkout
            objective: 90
            sli: latency <= 300ms
            window: 1d
        """

    @Test func everySLOIsEvaluatedOnTheNodesStateAndSaysHow() async throws {
        let file = try Self.specFile(Self.spec)
        defer { try? FileManager.default.removeItem(atPath: file) }
        try await APITests.withNode({ $0.sloFiles = [file] }) { node, client in
            // 200 requests in the last minutes, 20% failing: 20x a 99% budget.
            var items: [BatchItem] = []
            for index in 0..<200 {
                let status: UInt16 = index % 5 == 0 ? 503 : 200
                let latency = Double(100_000 + index * 1_000)
                let at = APITests.now - .seconds(Int64(index))
                items.append(.event(Event(service: "checkout", operation: "pay", status: status, latencyMicros: latency,
                                          user: "u\(index)", timestamp: at)))
            }
            guard case .accepted = await node.ingest(items: items, client: "t", idempotencyKey: nil) else {
                Issue.record("not accepted")
                return
            }
            try await client.execute(uri: "/v1/slo", method: .get, headers: APITests.auth) { response in
                #expect(response.status == .ok)
                let json = try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
                let slos = try #require(json["slos"] as? [[String: Any]])
                #expect(slos.map { $0["name"] as? String } == ["checkout-availability", "checkout-latency"])
                let sli = try #require(slos[0]["sli"] as? [String: Any])
                #expect(sli["total"] as? Int == 200 && sli["bad"] as? Int == 40, "\(sli)")
                #expect((sli["how"] as? String)?.contains("time buckets") == true)
                let alerts = try #require(slos[0]["alerts"] as? [[String: Any]])
                #expect(alerts.first?["firing"] as? Bool == true, "\(alerts)")
                #expect((slos[1]["sli"] as? [String: Any])?["good_bounds"] != nil)
            }
            try await client.execute(uri: "/v1/slo/checkout-latency", method: .get, headers: APITests.auth) { response in
                #expect(response.status == .ok)
                let json = try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
                #expect(json["indicator"] as? String == "latency <= 300ms")
            }
            try await client.execute(uri: "/v1/slo/nothing-here", method: .get, headers: APITests.auth) {
                #expect($0.status == .notFound)
            }
            try await client.execute(uri: "/v1/slo/a/b", method: .get, headers: APITests.auth) {
                #expect($0.status == .notFound)
            }
            // A spec file posted (what `tally slo report` sends) is evaluated as given, now or at ?at=.
            let posted = ByteBuffer(string: "slos:\n  - {name: posted, service: checkout, objective: 95, window: 1h}\n")
            try await client.execute(uri: "/v1/slo", method: .post, headers: APITests.auth, body: posted) { response in
                #expect(response.status == .ok)
                let json = try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
                let slos = try #require(json["slos"] as? [[String: Any]])
                #expect(slos.map { $0["name"] as? String } == ["posted"])
                #expect((slos[0]["sli"] as? [String: Any])?["total"] as? Int == 200)
            }
            let earlier = RFC3339.format(APITests.now - .seconds(100))
            try await client.execute(uri: "/v1/slo?at=\(earlier)", method: .post, headers: APITests.auth, body: posted) { response in
                let json = try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
                let slos = try #require(json["slos"] as? [[String: Any]])
                // The minute bucket holding `at` counts whole: the events 61...199 s old.
                #expect((slos[0]["sli"] as? [String: Any])?["total"] as? Int == 139, "\(slos)")
            }
            let bad = ByteBuffer(string: "slos:\n  - {name: posted, service: checkout, objective: 101}\n")
            try await client.execute(uri: "/v1/slo", method: .post, headers: APITests.auth, body: bad) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("request body: slos[0].objective"))
            }
            try await client.execute(uri: "/v1/slo?at=tomorrow", method: .get, headers: APITests.auth) {
                #expect($0.status == .badRequest)
            }
            try await client.execute(uri: "/v1/slo", method: .delete, headers: APITests.auth) {
                #expect($0.status == .methodNotAllowed)
            }
        }
    }

    @Test func aSpecFileThatDoesNotLoadStopsTheStartAndIsRefusedOnReload() async throws {
        let bad = try Self.specFile("slos:\n  - {name: a, service: s, objective: 100}\n")
        let good = try Self.specFile(Self.spec)
        defer {
            try? FileManager.default.removeItem(atPath: bad)
            try? FileManager.default.removeItem(atPath: good)
        }
        let directory = NSTemporaryDirectory() + "tally-slo-node-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            _ = try await Node.start(config: try APITests.config(directory: directory) { $0.sloFiles = [bad] })
            Issue.record("a node started with a bad SLO file")
        } catch {
            #expect("\(error)".contains("slo_files: \(bad): slos[0].objective: '100' must be below 100%"), "\(error)")
        }
        let node = try await Node.start(config: try APITests.config(directory: directory + "-2") { $0.sloFiles = [good] })
        defer { Task { await node.stop() } }
        #expect(await node.slos.count == 2)
        var broken = await node.config
        broken.sloFiles = [bad]
        await #expect(throws: Node.ReloadError.self) { try await node.reload(broken) }
        #expect(await node.slos.count == 2)
        var none = await node.config
        none.sloFiles = []
        let notes = try await node.reload(none)
        #expect(notes.contains("SLOs: 0 from 0 files"), "\(notes)")
        #expect(await node.slos.isEmpty)
        try? FileManager.default.removeItem(atPath: directory + "-2")
    }
}

/// `observe_self`: the node's own requests become events of service `tally`, for its own SLOs.
@Suite struct SelfObservationTests {
    @Test func everyRequestIsAnEventOfItsRouteWithItsStatus() async throws {
        try await APITests.withNode({ $0.observeSelf = true }) { node, client in
            try await client.execute(uri: "/v1/events", method: .post, headers: APITests.auth,
                                     body: ByteBuffer(string: APITests.events(3))) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/query?service=cart", method: .get, headers: [:]) {
                #expect($0.status == .unauthorized)
            }
            try await client.execute(uri: "/v1/slo/none", method: .get, headers: APITests.auth) {
                #expect($0.status == .notFound)
            }
            try await client.execute(uri: "/no/such/path", method: .get, headers: APITests.auth) {
                #expect($0.status == .notFound)
            }
            // Ingested within a second or two, as one batch.
            var operations: [String] = []
            for _ in 0..<50 {
                try await Task.sleep(for: .milliseconds(100))
                operations = await node.catalog().first { $0.service == SelfObservation.service }?.operations ?? []
                if operations.count >= 4 { break }
            }
            #expect(operations == ["GET /v1/query", "GET /v1/slo/{name}", "GET other", "POST /v1/events"], "\(operations)")
            // Their statuses are kept: an SLO over them sees the 401 as a 4xx, the ingest as good.
            let spec = try #require(try SLOFile.parse(yaml: """
                slos:
                  - {name: q, service: tally, operations: ["GET /v1/query"], objective: 99, bad: [4xx], window: 1h}
                  - {name: i, service: tally, operations: ["POST /v1/events"], objective: 99, bad: [4xx, 5xx], window: 1h}
                """, file: "t.yaml"))
            let statuses = try await node.sloStatuses(specs: spec).map(\.status.counts)
            #expect(statuses == [EventCounts(total: 1, bad: 1), EventCounts(total: 1, bad: 0)])
        }
    }

    @Test func theShippedSpecIsTheOneTheNodeCarries() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy/slo/tally.yaml").path
        #expect(try String(contentsOfFile: path, encoding: .utf8) == SelfObservation.sloSpec)
        let specs = try SLOFile.parse(yaml: SelfObservation.sloSpec, file: "tally.yaml")
        #expect(specs.map(\.name) == ["tally-ingest-availability", "tally-ack-latency", "tally-replication-freshness",
                                      "tally-query-latency"])
        #expect(specs.allSatisfy { SelfObservation.services.contains($0.service) })
    }
}
