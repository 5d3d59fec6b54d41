import Testing
import TallyAggregates
import TallyReplica
@testable import TallyNode

@Suite struct EventParserTests {
    static func parse(_ text: String, _ format: EventParser.Format = .jsonArray) throws -> [BatchItem] {
        try EventParser.parse(Array(text.utf8), format: format)
    }

    static let noon = Timestamp(millisecondsSinceEpoch: 1_795_953_600_000)  // 2026-11-29T12:00:00Z

    @Test func parsesEveryFieldForm() throws {
        let items = try Self.parse("""
            [
              {"service": "checkout", "operation": "POST /pay", "status": 200, "latency": 12500,
               "user": "u-1", "timestamp": "2026-11-29T12:00:00Z"},
              {"timestamp": 1795953600123, "latency": "1.5ms", "status": 503, "user": null,
               "operation": "GET /cart", "service": "cart", "extra": {"nested": [1, 2.5e3, "x", true, null]}},
              {"service": "s\\u00e9rvice \\"q\\" \\ud83d\\ude00", "operation": "o", "status": 404,
               "latency": "250us", "timestamp": "2026-11-29T13:00:00.5+01:00"}
            ]
            """)
        #expect(items == [
            .event(Event(service: "checkout", operation: "POST /pay", status: 200, latencyMicros: 12_500, user: "u-1",
                         timestamp: Self.noon)),
            .event(Event(service: "cart", operation: "GET /cart", status: 503, latencyMicros: 1_500, user: nil,
                         timestamp: Timestamp(millisecondsSinceEpoch: 1_795_953_600_123))),
            .event(Event(service: "sérvice \"q\" 😀", operation: "o", status: 404, latencyMicros: 250,
                         timestamp: Self.noon + .milliseconds(500))),
        ])
    }

    @Test func ndjsonWithBlankLinesAndCRLF() throws {
        let body = "{\"service\":\"a\",\"operation\":\"o\",\"status\":200,\"latency\":1,\"timestamp\":0}\r\n\n"
            + "  {\"service\":\"b\",\"operation\":\"o\",\"status\":200,\"latency\":\"2s\",\"timestamp\":1}  \n"
        let items = try Self.parse(body, .ndjson)
        #expect(items.count == 2)
        #expect(items[1] == .event(Event(service: "b", operation: "o", status: 200, latencyMicros: 2_000_000,
                                         timestamp: Timestamp(millisecondsSinceEpoch: 1))))
    }

    @Test func badFieldsRejectTheEventNotTheBatch() throws {
        let items = try Self.parse("""
            [{"service": "a", "operation": "o", "status": 200, "latency": 1, "timestamp": 0},
             {"service": 5, "operation": "o", "status": 200, "latency": 1, "timestamp": 0},
             {"service": "a", "status": 200, "latency": 1, "timestamp": 0},
             {"service": "a", "operation": "o", "status": 200.5, "latency": 1, "timestamp": 0},
             {"service": "a", "operation": "o", "status": "200", "latency": 1, "timestamp": 0},
             {"service": "a", "operation": "o", "status": 200, "latency": "fast", "timestamp": 0},
             {"service": "a", "operation": "o", "status": 200, "latency": 1, "timestamp": "yesterday"},
             {"service": "a", "operation": "o", "status": 200, "latency": 1, "timestamp": "2026-02-30T00:00:00Z"},
             {"service": "a", "operation": "o", "status": 200, "latency": 1}]
            """)
        #expect(items.count == 9)
        guard case .event = items[0] else {
            Issue.record("first event should parse")
            return
        }
        let messages = items.dropFirst().map { item -> String in
            if case .invalid(let message) = item { return message }
            return "parsed"
        }
        #expect(messages == [
            "event 1: field 'service' must be a string",
            "event 2: field 'operation' is missing",
            "event 3: field 'status' must be an integer status code, not 200.5",
            "event 4: field 'status' must be an integer",
            "event 5: field 'latency' \"fast\" is not a duration such as \"12ms\", \"1.5s\" or \"250us\"",
            "event 6: field 'timestamp' is not an RFC 3339 date-time such as \"2026-11-29T10:00:00Z\"",
            "event 7: field 'timestamp' is not an RFC 3339 date-time such as \"2026-11-29T10:00:00Z\"",
            "event 8: field 'timestamp' is missing",
        ])
    }

    @Test func hugeStringIsAFieldErrorNotAnAllocation() throws {
        let huge = String(repeating: "x", count: 100_000)
        let items = try EventParser.parse(
            Array("[{\"service\":\"\(huge)\",\"operation\":\"o\",\"status\":200,\"latency\":1,\"timestamp\":0}]".utf8),
            format: .jsonArray, stringBytesMax: 1_024)
        #expect(items == [.invalid("event 0: field 'service' is longer than 1024 bytes")])
    }

    @Test func syntaxErrorsSayWhere() {
        func failure(_ text: String) -> String? {
            do {
                _ = try Self.parse(text)
                return nil
            } catch {
                return "\(error)"
            }
        }
        #expect(failure("") == "expected '[' to open the array of events at line 1, column 1 (byte 0)")
        #expect(failure("{}") == "expected '[' to open the array of events at line 1, column 1 (byte 0)")
        #expect(failure("[{\"service\": \"a\",\n \"status\": 20x}]")
            == "expected ',' or '}' in event 0 at line 2, column 14 (byte 31)")
        #expect(failure("[{\"a\": 1}] trailing") == "unexpected data after the array at line 1, column 12 (byte 11)")
        #expect(failure("[{\"a\": \"\u{01}\"}]")?.hasPrefix("control character in a string") == true)
        #expect(failure("[{\"a\": 01}]")?.hasPrefix("invalid number (leading zero)") == true)
        #expect(failure(String(repeating: "[", count: 10) + "]") != nil)
        let deep = "[{\"a\": " + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}]"
        #expect(failure(deep)?.hasPrefix("values nested deeper than 64 levels") == true)
    }

    @Test func invalidUTF8IsASyntaxError() {
        var body = Array("[{\"service\": \"ab\", \"operation\": \"o\", \"status\": 200, \"latency\": 1, \"timestamp\": 0}]".utf8)
        body[15] = 0xFF
        #expect(throws: EventParser.SyntaxError.self) { try EventParser.parse(body, format: .jsonArray) }
    }

    @Test func tooManyEventsIsRefused() {
        let one = "{\"service\":\"a\",\"operation\":\"o\",\"status\":200,\"latency\":1,\"timestamp\":0}"
        let body = "[" + Array(repeating: one, count: 11).joined(separator: ",") + "]"
        #expect(throws: EventParser.SyntaxError.self) {
            try EventParser.parse(Array(body.utf8), format: .jsonArray, itemsMax: 10)
        }
    }

    /// Truncations and corruptions of a valid body parse or fail with a SyntaxError; never trap.
    @Test func truncationsAndCorruptionsNeverTrap() {
        let body = Array("""
            [{"service": "checkout", "operation": "POST /pay", "status": 200, "latency": "12ms",
              "user": "u\\u00e9", "timestamp": "2026-11-29T12:00:00.250Z", "x": [1, {"y": null}]},
             {"service": "a", "operation": "o", "status": 500, "latency": 1e3, "timestamp": 1795953600000}]
            """.utf8)
        for length in 0..<body.count {
            #expect(throws: EventParser.SyntaxError.self) { try EventParser.parse(Array(body[..<length]), format: .jsonArray) }
        }
        var random = SeededRandom(seed: 3)
        for _ in 0..<5_000 {
            var corrupted = body
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                corrupted[Int.random(in: 0..<corrupted.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
            _ = try? EventParser.parse(corrupted, format: .jsonArray)
            _ = try? EventParser.parse(corrupted, format: .ndjson)
        }
    }

    // MARK: - RFC 3339

    @Test func rfc3339RoundTripsAndRejectsImpossibleDates() {
        var random = SeededRandom(seed: 9)
        for _ in 0..<2_000 {
            let timestamp = Timestamp(millisecondsSinceEpoch: Int64.random(in: -62_000_000_000_000...253_000_000_000_000,
                                                                           using: &random))
            #expect(RFC3339.parse(RFC3339.format(timestamp)) == timestamp, "\(RFC3339.format(timestamp))")
        }
        #expect(RFC3339.format(Self.noon) == "2026-11-29T12:00:00.000Z")
        #expect(RFC3339.parse("2026-11-29T14:30:00+02:30") == Self.noon)
        #expect(RFC3339.parse("2024-02-29T00:00:00Z") != nil)
        for bad in ["2023-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-11-29T24:00:00Z", "2026-11-29T12:00:00",
                    "2026-11-29T12:00:00.Z", "2026-11-29T12:00:00+0200", "29/11/2026"] {
            #expect(RFC3339.parse(bad) == nil, "\(bad)")
        }
    }
}
