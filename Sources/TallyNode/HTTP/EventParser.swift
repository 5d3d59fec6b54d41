#if canImport(Glibc)
import Glibc
#endif

import TallyReplica

/// Parses an ingest body (a JSON array of events, or NDJSON) straight from its UTF-8 bytes.
///
/// Foundation's `JSONDecoder` decodes about 107k events/s here; the node's ingest target needs
/// several times that, so this parser works on the raw bytes and builds `Event` values directly.
/// It is strict where the body is not JSON (the whole batch is refused with the line, column and
/// byte of the problem) and lenient per event: an object with a missing or mistyped field becomes
/// an `.invalid` item with a message naming the field, and the other events are still counted.
///
/// Event object fields:
/// - `service`, `operation`: strings (required);
/// - `status`: integer (required);
/// - `latency`: a number of microseconds, or a string with a unit: `"12ms"`, `"1.5s"`, `"250us"`,
///   `"250µs"`, `"900ns"` (required);
/// - `user`: string or null (optional);
/// - `timestamp`: RFC 3339 string, or a number of milliseconds since the epoch (required).
/// Other fields are ignored.
public enum EventParser {
    public enum Format: Sendable {
        case jsonArray
        case ndjson
    }

    /// The body is not well-formed JSON (or NDJSON): where and why.
    public struct SyntaxError: Error, Equatable, Sendable, CustomStringConvertible {
        public var message: String
        /// Zero-based byte offset of the problem.
        public var offset: Int
        /// One-based line and column of the problem.
        public var line: Int
        public var column: Int

        public var description: String { "\(self.message) at line \(self.line), column \(self.column) (byte \(self.offset))" }
    }

    /// Parses `body`; at most `itemsMax` items are parsed, and more is a syntax error that says so
    /// (the caller answers 413). Strings longer than `stringBytesMax` are cut off with a field error.
    public static func parse(_ body: [UInt8], format: Format, itemsMax: Int = 100_000, stringBytesMax: Int = 4_096)
        throws(SyntaxError) -> [BatchItem]
    {
        var items: [BatchItem] = []
        var failure: SyntaxError?
        body.withUnsafeBytes { bytes in
            var scanner = Scanner(bytes: bytes, stringBytesMax: stringBytesMax)
            do throws(SyntaxError) {
                switch format {
                case .jsonArray:
                    try scanner.skipWhitespace()
                    try scanner.expect(UInt8(ascii: "["), "expected '[' to open the array of events")
                    try scanner.skipWhitespace()
                    if try scanner.peek() == UInt8(ascii: "]") {
                        scanner.position += 1
                    } else {
                        while true {
                            guard items.count < itemsMax else {
                                throw scanner.error("more than \(itemsMax) events in one batch")
                            }
                            items.append(try scanner.parseEvent(index: items.count))
                            try scanner.skipWhitespace()
                            let next = try scanner.next("expected ',' or ']' after an event")
                            if next == UInt8(ascii: "]") { break }
                            guard next == UInt8(ascii: ",") else {
                                scanner.position -= 1
                                throw scanner.error("expected ',' or ']' after an event")
                            }
                            try scanner.skipWhitespace()
                        }
                    }
                    try scanner.skipWhitespace()
                    guard scanner.isAtEnd else { throw scanner.error("unexpected data after the array") }
                case .ndjson:
                    while true {
                        try scanner.skipWhitespace()
                        if scanner.isAtEnd { break }
                        guard items.count < itemsMax else {
                            throw scanner.error("more than \(itemsMax) events in one batch")
                        }
                        items.append(try scanner.parseEvent(index: items.count))
                        scanner.skipSpacesAndTabs()
                        if scanner.isAtEnd { break }
                        let next = try scanner.next("expected a newline after an event")
                        if next == UInt8(ascii: "\r"), !scanner.isAtEnd, try scanner.peek() == UInt8(ascii: "\n") {
                            scanner.position += 1
                        } else if next != UInt8(ascii: "\n") {
                            scanner.position -= 1
                            throw scanner.error("expected a newline after an event")
                        }
                    }
                }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        return items
    }
}

/// A cursor over the body's bytes with the JSON productions the event format needs.
struct Scanner {
    let bytes: UnsafeRawBufferPointer
    var position = 0
    let stringBytesMax: Int
    /// Nesting limit for skipped values: deeper is refused rather than recursed into.
    static let depthMax = 64

    init(bytes: UnsafeRawBufferPointer, stringBytesMax: Int) {
        self.bytes = bytes
        self.stringBytesMax = stringBytesMax
    }

    var isAtEnd: Bool { self.position >= self.bytes.count }

    func error(_ message: String) -> EventParser.SyntaxError {
        var line = 1
        var column = 1
        for offset in 0..<min(self.position, self.bytes.count) {
            if self.bytes[offset] == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else if self.bytes[offset] & 0xC0 != 0x80 {
                column += 1
            }
        }
        return EventParser.SyntaxError(message: message, offset: self.position, line: line, column: column)
    }

    func peek() throws(EventParser.SyntaxError) -> UInt8 {
        guard self.position < self.bytes.count else { throw self.error("unexpected end of input") }
        return self.bytes[self.position]
    }

    mutating func next(_ expectation: @autoclosure () -> String) throws(EventParser.SyntaxError) -> UInt8 {
        guard self.position < self.bytes.count else { throw self.error("unexpected end of input: \(expectation())") }
        defer { self.position += 1 }
        return self.bytes[self.position]
    }

    mutating func expect(_ byte: UInt8, _ message: @autoclosure () -> String) throws(EventParser.SyntaxError) {
        guard self.position < self.bytes.count, self.bytes[self.position] == byte else { throw self.error(message()) }
        self.position += 1
    }

    mutating func skipWhitespace() throws(EventParser.SyntaxError) {
        while self.position < self.bytes.count {
            switch self.bytes[self.position] {
            case 0x20, 0x09, 0x0A, 0x0D: self.position += 1
            default: return
            }
        }
    }

    mutating func skipSpacesAndTabs() {
        while self.position < self.bytes.count, self.bytes[self.position] == 0x20 || self.bytes[self.position] == 0x09 {
            self.position += 1
        }
    }

    // MARK: - Events

    /// The fields of one event object, as they are found.
    private struct Fields {
        var service: String?
        var operation: String?
        var status: UInt16?
        var latencyMicros: Double?
        var user: UserID?
        var timestamp: Timestamp?
        var problem: String?

        mutating func fail(_ message: String) {
            if self.problem == nil { self.problem = message }
        }
    }

    mutating func parseEvent(index: Int) throws(EventParser.SyntaxError) -> BatchItem {
        try self.expect(UInt8(ascii: "{"), "expected '{' to open event \(index)")
        var fields = Fields()
        try self.skipWhitespace()
        if try self.peek() == UInt8(ascii: "}") {
            self.position += 1
        } else {
            while true {
                try self.skipWhitespace()
                let key = try self.parseKey()
                try self.skipWhitespace()
                try self.expect(UInt8(ascii: ":"), "expected ':' after a field name")
                try self.skipWhitespace()
                try self.parseField(key, into: &fields)
                try self.skipWhitespace()
                let next = try self.next("expected ',' or '}' in event \(index)")
                if next == UInt8(ascii: "}") { break }
                guard next == UInt8(ascii: ",") else {
                    self.position -= 1
                    throw self.error("expected ',' or '}' in event \(index)")
                }
            }
        }
        if let problem = fields.problem { return .invalid("event \(index): \(problem)") }
        guard let service = fields.service else { return .invalid("event \(index): field 'service' is missing") }
        guard let operation = fields.operation else { return .invalid("event \(index): field 'operation' is missing") }
        guard let status = fields.status else { return .invalid("event \(index): field 'status' is missing") }
        guard let latency = fields.latencyMicros else { return .invalid("event \(index): field 'latency' is missing") }
        guard let timestamp = fields.timestamp else {
            return .invalid("event \(index): field 'timestamp' is missing")
        }
        return .event(Event(service: service, operation: operation, status: status, latencyMicros: latency,
                            userID: fields.user, timestamp: timestamp))
    }

    private enum Key {
        case service, operation, status, latency, user, timestamp, other
    }

    private mutating func parseKey() throws(EventParser.SyntaxError) -> Key {
        try self.expect(UInt8(ascii: "\""), "expected a field name in double quotes")
        let start = self.position
        // Field names of interest have no escapes; anything else is skipped as an unknown field.
        while self.position < self.bytes.count {
            let byte = self.bytes[self.position]
            if byte == UInt8(ascii: "\"") {
                let name = UnsafeRawBufferPointer(rebasing: self.bytes[start..<self.position])
                let key = Self.key(name)
                // Known names are ASCII; any other name must still be valid UTF-8, like all JSON.
                if key == .other && String(validating: name, as: UTF8.self) == nil {
                    self.position = start
                    throw self.error("invalid UTF-8 in a field name")
                }
                self.position += 1
                return key
            }
            if byte == UInt8(ascii: "\\") {
                self.position = start - 1
                _ = try self.parseString(limit: Int.max)
                return .other
            }
            if byte < 0x20 { throw self.error("control character in a field name") }
            self.position += 1
        }
        throw self.error("unterminated field name")
    }

    private static func key(_ name: UnsafeRawBufferPointer) -> Key {
        func equals(_ literal: StaticString) -> Bool {
            name.count == literal.utf8CodeUnitCount
                && memcmp(name.baseAddress!, literal.utf8Start, name.count) == 0  // count > 0: literals are not empty
        }
        switch name.count {
        case 4: return equals("user") ? .user : .other
        case 6: return equals("status") ? .status : .other
        case 7: return equals("service") ? .service : equals("latency") ? .latency : .other
        case 9: return equals("operation") ? .operation : equals("timestamp") ? .timestamp : .other
        default: return .other
        }
    }

    private mutating func parseField(_ key: Key, into fields: inout Fields) throws(EventParser.SyntaxError) {
        let first = try self.peek()
        switch key {
        case .service, .operation:
            let name = key == .service ? "service" : "operation"
            guard first == UInt8(ascii: "\"") else {
                try self.skipValue(depth: 0)
                fields.fail("field '\(name)' must be a string")
                return
            }
            let value = try self.parseString(limit: self.stringBytesMax)
            if value == nil { fields.fail("field '\(name)' is longer than \(self.stringBytesMax) bytes") }
            if key == .service { fields.service = value } else { fields.operation = value }
        case .user:
            if first == UInt8(ascii: "n") {
                try self.expectLiteral("null")
                return
            }
            guard first == UInt8(ascii: "\"") else {
                try self.skipValue(depth: 0)
                fields.fail("field 'user' must be a string or null")
                return
            }
            fields.user = try self.parseUser()
        case .status:
            guard first == UInt8(ascii: "-") || (0x30...0x39).contains(first) else {
                try self.skipValue(depth: 0)
                fields.fail("field 'status' must be an integer")
                return
            }
            let number = try self.parseNumber()
            guard number.isInteger, number.value >= 0, number.value <= Double(UInt16.max) else {
                fields.fail("field 'status' must be an integer status code, not \(self.text(of: number))")
                return
            }
            fields.status = UInt16(number.value)
        case .latency:
            if first == UInt8(ascii: "\"") {
                guard let text = try self.parseString(limit: 64) else {
                    fields.fail("field 'latency' is not a duration")
                    return
                }
                guard let micros = Self.parseDuration(text) else {
                    fields.fail("field 'latency' \"\(text)\" is not a duration such as \"12ms\", \"1.5s\" or \"250us\"")
                    return
                }
                fields.latencyMicros = micros
            } else if first == UInt8(ascii: "-") || (0x30...0x39).contains(first) {
                fields.latencyMicros = try self.parseNumber().value
            } else {
                try self.skipValue(depth: 0)
                fields.fail("field 'latency' must be a number of microseconds or a duration string")
            }
        case .timestamp:
            if first == UInt8(ascii: "\"") {
                guard let text = try self.parseString(limit: 64), let timestamp = RFC3339.parse(text) else {
                    fields.fail("field 'timestamp' is not an RFC 3339 date-time such as \"2026-11-29T10:00:00Z\"")
                    return
                }
                fields.timestamp = timestamp
            } else if first == UInt8(ascii: "-") || (0x30...0x39).contains(first) {
                let number = try self.parseNumber()
                guard number.isInteger, abs(number.value) < 1e15 else {
                    fields.fail("field 'timestamp' must be whole milliseconds since the epoch, not \(self.text(of: number))")
                    return
                }
                fields.timestamp = Timestamp(millisecondsSinceEpoch: Int64(number.value))
            } else {
                try self.skipValue(depth: 0)
                fields.fail("field 'timestamp' must be an RFC 3339 string or epoch milliseconds")
            }
        case .other:
            try self.skipValue(depth: 0)
        }
    }

    /// A user id string, hashed where it lies in the body when it has no escapes (the common case):
    /// no `String` is built for it.
    private mutating func parseUser() throws(EventParser.SyntaxError) -> UserID {
        let start = self.position + 1
        var end = start
        var ascii = true
        while end < self.bytes.count {
            let byte = self.bytes[end]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
            if byte >= 0x80 { ascii = false }
            end += 1
        }
        if end < self.bytes.count && self.bytes[end] == UInt8(ascii: "\"") {
            let slice = UnsafeRawBufferPointer(rebasing: self.bytes[start..<end])
            if ascii || String(validating: slice, as: UTF8.self) != nil {
                self.position = end + 1
                return UserID(utf8: slice)
            }
        }
        // Escapes, control characters or bad UTF-8: the general path reports or unescapes them.
        let value = try self.parseString(limit: Int.max) ?? ""
        return UserID(value)
    }

    /// A duration with a unit, in microseconds.
    static func parseDuration(_ text: String) -> Double? {
        let units: [(String, Double)] = [("ns", 0.001), ("us", 1), ("µs", 1), ("ms", 1_000), ("s", 1_000_000)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            guard !number.isEmpty, number.allSatisfy({ $0.isNumber || $0 == "." }), let value = Double(number) else {
                return nil
            }
            return value * scale
        }
        return nil
    }

    // MARK: - JSON productions

    private mutating func expectLiteral(_ literal: StaticString) throws(EventParser.SyntaxError) {
        let count = literal.utf8CodeUnitCount
        guard self.bytes.count - self.position >= count,
            memcmp(self.bytes.baseAddress! + self.position, literal.utf8Start, count) == 0  // non-empty: count checked
        else {
            throw self.error("invalid literal, expected \(literal)")
        }
        self.position += count
    }

    /// A JSON string; nil (after consuming it) when it is longer than `limit` bytes.
    mutating func parseString(limit: Int) throws(EventParser.SyntaxError) -> String? {
        try self.expect(UInt8(ascii: "\""), "expected a string")
        let start = self.position
        // Fast path: no escapes.
        while self.position < self.bytes.count {
            let byte = self.bytes[self.position]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeRawBufferPointer(rebasing: self.bytes[start..<self.position])
                self.position += 1
                guard slice.count <= limit else { return nil }
                guard let string = String(validating: slice, as: UTF8.self) else {
                    self.position = start
                    throw self.error("invalid UTF-8 in a string")
                }
                return string
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw self.error("control character in a string (escape it)") }
            self.position += 1
        }
        // Slow path: unescape into a buffer.
        var buffer = [UInt8](UnsafeRawBufferPointer(rebasing: self.bytes[start..<self.position]))
        while true {
            guard self.position < self.bytes.count else { throw self.error("unterminated string") }
            let byte = self.bytes[self.position]
            self.position += 1
            if byte == UInt8(ascii: "\"") { break }
            if byte < 0x20 { throw self.error("control character in a string (escape it)") }
            if byte != UInt8(ascii: "\\") {
                buffer.append(byte)
                continue
            }
            let escape = try self.next("unterminated escape")
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): buffer.append(escape)
            case UInt8(ascii: "b"): buffer.append(0x08)
            case UInt8(ascii: "f"): buffer.append(0x0C)
            case UInt8(ascii: "n"): buffer.append(0x0A)
            case UInt8(ascii: "r"): buffer.append(0x0D)
            case UInt8(ascii: "t"): buffer.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try self.parseHex4()
                if (0xD800...0xDBFF).contains(scalar) {
                    guard self.bytes.count - self.position >= 6, self.bytes[self.position] == UInt8(ascii: "\\"),
                        self.bytes[self.position + 1] == UInt8(ascii: "u")
                    else { throw self.error("unpaired surrogate in \\u escape") }
                    self.position += 2
                    let low = try self.parseHex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw self.error("unpaired surrogate in \\u escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    throw self.error("unpaired surrogate in \\u escape")
                }
                // A valid scalar: surrogates were paired or refused just above.
                buffer.append(contentsOf: String(Character(Unicode.Scalar(scalar)!)).utf8)
            default:
                self.position -= 1
                throw self.error("invalid escape '\\\(Character(Unicode.Scalar(escape)))'")
            }
        }
        guard buffer.count <= limit else { return nil }
        guard let string = String(validating: buffer, as: UTF8.self) else {
            throw self.error("invalid UTF-8 in a string")
        }
        return string
    }

    private mutating func parseHex4() throws(EventParser.SyntaxError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = try self.next("incomplete \\u escape")
            let digit: UInt32
            switch byte {
            case 0x30...0x39: digit = UInt32(byte - 0x30)
            case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
            case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
            default:
                self.position -= 1
                throw self.error("invalid hex digit in \\u escape")
            }
            value = value << 4 | digit
        }
        return value
    }

    struct Number {
        var value: Double
        var isInteger: Bool
        /// Where the number's text is in the body, for error messages.
        var range: Range<Int>
    }

    /// The text of a number, for an error message.
    func text(of number: Number) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: self.bytes[number.range]), as: UTF8.self)
    }

    /// A JSON number (RFC 8259 grammar).
    mutating func parseNumber() throws(EventParser.SyntaxError) -> Number {
        let start = self.position
        var isInteger = true
        if self.position < self.bytes.count, self.bytes[self.position] == UInt8(ascii: "-") { self.position += 1 }
        let digitsStart = self.position
        while self.position < self.bytes.count, (0x30...0x39).contains(self.bytes[self.position]) { self.position += 1 }
        let integerDigits = self.position - digitsStart
        guard integerDigits > 0 else { throw self.error("invalid number") }
        if integerDigits > 1 && self.bytes[digitsStart] == UInt8(ascii: "0") {
            throw self.error("invalid number (leading zero)")
        }
        if self.position < self.bytes.count, self.bytes[self.position] == UInt8(ascii: ".") {
            isInteger = false
            self.position += 1
            let fractionStart = self.position
            while self.position < self.bytes.count, (0x30...0x39).contains(self.bytes[self.position]) {
                self.position += 1
            }
            guard self.position > fractionStart else { throw self.error("invalid number (no digits after '.')") }
        }
        if self.position < self.bytes.count, self.bytes[self.position] | 0x20 == UInt8(ascii: "e") {
            isInteger = false
            self.position += 1
            if self.position < self.bytes.count,
                self.bytes[self.position] == UInt8(ascii: "+") || self.bytes[self.position] == UInt8(ascii: "-")
            {
                self.position += 1
            }
            let exponentStart = self.position
            while self.position < self.bytes.count, (0x30...0x39).contains(self.bytes[self.position]) {
                self.position += 1
            }
            guard self.position > exponentStart else { throw self.error("invalid number (no exponent digits)") }
        }
        let slice = UnsafeRawBufferPointer(rebasing: self.bytes[start..<self.position])
        if isInteger && integerDigits <= 15 {
            var value: Int64 = 0
            for byte in slice where byte != UInt8(ascii: "-") { value = value * 10 + Int64(byte - 0x30) }
            return Number(value: Double(slice.first == UInt8(ascii: "-") ? -value : value), isInteger: true,
                          range: start..<self.position)
        }
        // ASCII digits, signs, '.' and 'e' only: valid UTF-8 by construction.
        let text = String(decoding: slice, as: UTF8.self)
        guard let value = Double(text), value.isFinite else { throw self.error("number \(text) is out of range") }
        return Number(value: value, isInteger: isInteger && value == value.rounded(), range: start..<self.position)
    }

    /// Skips any JSON value, refusing nesting deeper than `depthMax`.
    mutating func skipValue(depth: Int) throws(EventParser.SyntaxError) {
        guard depth < Self.depthMax else { throw self.error("values nested deeper than \(Self.depthMax) levels") }
        switch try self.peek() {
        case UInt8(ascii: "\""):
            _ = try self.parseString(limit: Int.max)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let close: UInt8 = self.bytes[self.position] == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
            let isObject = close == UInt8(ascii: "}")
            self.position += 1
            try self.skipWhitespace()
            if try self.peek() == close {
                self.position += 1
                return
            }
            while true {
                try self.skipWhitespace()
                if isObject {
                    _ = try self.parseString(limit: Int.max)
                    try self.skipWhitespace()
                    try self.expect(UInt8(ascii: ":"), "expected ':' after a field name")
                    try self.skipWhitespace()
                }
                try self.skipValue(depth: depth + 1)
                try self.skipWhitespace()
                let next = try self.next("unterminated \(isObject ? "object" : "array")")
                if next == close { return }
                guard next == UInt8(ascii: ",") else {
                    self.position -= 1
                    throw self.error("expected ',' or '\(Character(Unicode.Scalar(close)))'")
                }
            }
        case UInt8(ascii: "t"): try self.expectLiteral("true")
        case UInt8(ascii: "f"): try self.expectLiteral("false")
        case UInt8(ascii: "n"): try self.expectLiteral("null")
        default: _ = try self.parseNumber()
        }
    }
}
