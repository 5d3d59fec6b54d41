import Foundation
import Logging
import Synchronization
import Testing
@testable import TallyNode

/// The node's log lines as JSON, and the names swift-metrics hands Prometheus.
@Suite struct OperationsTests {
    final class Lines: Sendable {
        let lines = Mutex<[String]>([])
    }

    @Test func aJSONLogLineIsOneObjectWithItsMetadata() throws {
        let captured = Lines()
        var logger = Logger(label: "tally") { label in
            JSONLogHandler(label: label) { line in captured.lines.withLock { $0.append(line) } }
        }
        logger[metadataKey: "hb.request.id"] = "abc123"
        logger.info("answered", metadata: ["status": "503", "quote": "a \"b\"\nc"])
        logger.debug("not written at info")
        let lines = captured.lines.withLock { $0 }
        #expect(lines.count == 1)
        let line = try #require(lines.first)
        #expect(line.hasSuffix("}\n") && line.filter { $0 == "\n" }.count == 1, "one line: \(line)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object["message"] == "answered" && object["level"] == "info" && object["label"] == "tally")
        #expect(object["hb.request.id"] == "abc123" && object["status"] == "503" && object["quote"] == "a \"b\"\nc")
        #expect(object["time"]?.hasSuffix("Z") == true)
    }

    @Test func swiftMetricsNamesBecomePrometheusNames() {
        let (name, labels) = NodeMetrics.sanitize("http.server.request.duration", [("http.request.method", "GET")])
        #expect(name == "tally_http_request_duration_seconds")
        #expect(NodeMetrics.sanitize("hb.requests", []).0 == "tally_http_requests_total")
        #expect(NodeMetrics.sanitize("some.other-name", []).0 == "tally_some_other_name")
        #expect(labels.map(\.0) == ["http_request_method"] && labels.map(\.1) == ["GET"])
        #expect(NodeMetrics.sanitize("tally_x", []).0 == "tally_x")
        #expect(NodeMetrics.sanitize("9lives-ü", []).0 == "tally__9lives__")
    }
}
