/// StatsD and DogStatsD lines, parsed from a datagram's bytes (issue 13: the StatsD receiver maps
/// them to events). One datagram holds lines separated by `\n`; each line is
///
///     name:value[:value...]|type[|@rate][|#tag:value,tag][|c:container][|T1700000000]
///
/// with type `c` (counter), `g` (gauge), `ms` (timer, milliseconds), `h` (histogram), `d`
/// (distribution) or `s` (set). DogStatsD events (`_e{...}`) and service checks (`_sc|...`) are
/// recognised and refused as unsupported. A malformed line is reported with its reason and never
/// stops the lines after it. Every count is bounded: bytes per datagram, values per line, tags.
public enum StatsD {
    public enum MetricType: String, Sendable, Equatable, CaseIterable {
        case counter = "c"
        case gauge = "g"
        case timer = "ms"
        case histogram = "h"
        case distribution = "d"
        case set = "s"
    }

    public struct Line: Sendable, Equatable {
        public var name: String
        /// The values: numbers for every type but `s`, whose values are the set members' text.
        public var values: [Value]
        public var type: MetricType
        /// `@0.1`: the client sent one in ten; counts are scaled by 1 / rate.
        public var sampleRate: Double
        /// DogStatsD tags in order: `#env:prod,canary` is ("env", "prod"), ("canary", nil).
        public var tags: [(key: String, value: String?)]
        /// DogStatsD `|T<unix seconds>`: when it happened, if the client said.
        public var timestamp: Int64?

        public static func == (lhs: Line, rhs: Line) -> Bool {
            lhs.name == rhs.name && lhs.values == rhs.values && lhs.type == rhs.type && lhs.sampleRate == rhs.sampleRate
                && lhs.tags.map(\.key) == rhs.tags.map(\.key) && lhs.tags.map(\.value) == rhs.tags.map(\.value)
                && lhs.timestamp == rhs.timestamp
        }
    }

    public enum Value: Sendable, Equatable {
        case number(Double)
        case member(String)
    }

    /// Why a line was skipped.
    public struct LineError: Error, Sendable, Equatable, CustomStringConvertible {
        /// 1-based line number within the datagram.
        public var line: Int
        public var reason: String

        public var description: String { "line \(self.line): \(self.reason)" }
    }

    public struct Limits: Sendable, Equatable {
        public var datagramBytesMax = 65_536
        public var valuesPerLineMax = 256
        public var tagsMax = 64
        public var nameBytesMax = 256

        public init() {}
    }

    /// Every line of a datagram: the ones that parse, and why each other one did not. A datagram
    /// over `limits.datagramBytesMax` is parsed up to that many bytes, and the cut is reported.
    public static func parse(_ bytes: [UInt8], limits: Limits = Limits()) -> (lines: [Line], errors: [LineError]) {
        var lines: [Line] = []
        var errors: [LineError] = []
        let usable = bytes.count > limits.datagramBytesMax ? Array(bytes[..<limits.datagramBytesMax]) : bytes
        var number = 0
        for raw in usable.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            number += 1
            var line = raw
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            if line.isEmpty { continue }
            switch Self.line(Array(line), limits: limits) {
            case .success(let parsed): lines.append(parsed)
            case .failure(let reason): errors.append(LineError(line: number, reason: reason.text))
            }
        }
        if bytes.count > limits.datagramBytesMax {
            errors.append(LineError(line: number, reason: "the datagram is \(bytes.count) bytes; only the first "
                + "\(limits.datagramBytesMax) were read"))
        }
        return (lines, errors)
    }

    struct Reason: Error {
        var text: String
    }

    /// One line. Works on the line's UTF-8 bytes (`String.UTF8View` slices), not on `Character`s:
    /// splitting by character breaks graphemes, which was most of the parse's cost.
    static func line(_ bytes: [UInt8], limits: Limits) -> Result<Line, Reason> {
        guard let text = String(validating: bytes, as: UTF8.self) else { return .failure(Reason(text: "is not UTF-8")) }
        let utf8 = text.utf8
        if utf8.starts(with: "_e{".utf8) { return .failure(Reason(text: "is a DogStatsD event, which Tally does not take")) }
        if utf8.starts(with: "_sc|".utf8) { return .failure(Reason(text: "is a DogStatsD service check, which Tally does not take")) }
        let sections = utf8.split(separator: UInt8(ascii: "|"), omittingEmptySubsequences: false)
        guard sections.count >= 2, let colon = sections[0].firstIndex(of: UInt8(ascii: ":")) else {
            return .failure(Reason(text: "must be name:value|type"))
        }
        let nameBytes = sections[0][..<colon]
        guard !nameBytes.isEmpty, nameBytes.count <= limits.nameBytesMax else {
            return .failure(Reason(text: "the metric name must be 1 to \(limits.nameBytesMax) bytes"))
        }
        let name = String(Substring(nameBytes))
        guard let type = Self.type(sections[1]) else {
            return .failure(Reason(text: "the type \(Self.quote(Substring(sections[1]))) is not c, g, ms, h, d or s"))
        }
        let rawValues = sections[0][sections[0].index(after: colon)...]
            .split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
        guard rawValues.count <= limits.valuesPerLineMax else {
            return .failure(Reason(text: "\(rawValues.count) values; at most \(limits.valuesPerLineMax) per line"))
        }
        var values: [Value] = []
        values.reserveCapacity(rawValues.count)
        for raw in rawValues {
            if type == .set {
                guard !raw.isEmpty else { return .failure(Reason(text: "a set member is empty")) }
                values.append(.member(String(Substring(raw))))
                continue
            }
            // Gauges may say +3 or -3 (relative); the others are plain numbers. No nan, inf or hex.
            let number = Substring(raw)
            guard !raw.contains(where: { $0 == UInt8(ascii: "n") || $0 == UInt8(ascii: "N") || $0 == UInt8(ascii: "x") }),
                let value = Double(number), value.isFinite
            else {
                return .failure(Reason(text: "the value \(Self.quote(number)) is not a finite number"))
            }
            if type != .gauge && value < 0 {
                return .failure(Reason(text: "the value \(Self.quote(number)) is negative"))
            }
            values.append(.number(value))
        }
        var parsed = Line(name: name, values: values, type: type, sampleRate: 1, tags: [], timestamp: nil)
        for section in sections.dropFirst(2) {
            switch section.first {
            case UInt8(ascii: "@"):
                guard let rate = Double(Substring(section.dropFirst())), rate > 0, rate <= 1 else {
                    return .failure(Reason(text: "the sample rate \(Self.quote(Substring(section))) must be in (0, 1]"))
                }
                parsed.sampleRate = rate
            case UInt8(ascii: "#"):
                let tags = section.dropFirst().split(separator: UInt8(ascii: ","), omittingEmptySubsequences: true)
                guard tags.count <= limits.tagsMax else {
                    return .failure(Reason(text: "\(tags.count) tags; at most \(limits.tagsMax)"))
                }
                parsed.tags = tags.map { tag in
                    guard let colon = tag.firstIndex(of: UInt8(ascii: ":")) else { return (String(Substring(tag)), nil) }
                    return (String(Substring(tag[..<colon])), String(Substring(tag[tag.index(after: colon)...])))
                }
            case UInt8(ascii: "T"):
                guard let seconds = Int64(Substring(section.dropFirst())), seconds >= 0, seconds <= 32_503_680_000 else {
                    return .failure(Reason(text: "the timestamp \(Self.quote(Substring(section))) must be unix seconds"))
                }
                parsed.timestamp = seconds
            default:
                if section.starts(with: "c:".utf8) || section.starts(with: "e:".utf8) || section.starts(with: "card:".utf8) {
                    continue  // container id, external data, cardinality: metadata Tally does not keep
                }
                return .failure(Reason(text: "the field \(Self.quote(Substring(section))) is not @rate, #tags, T<time> or c:<container>"))
            }
        }
        return .success(parsed)
    }

    /// The type field's bytes as a type: `c`, `g`, `ms`, `h`, `d`, `s`.
    static func type(_ field: Substring.UTF8View) -> MetricType? {
        switch field.count {
        case 1:
            switch field.first {
            case UInt8(ascii: "c"): .counter
            case UInt8(ascii: "g"): .gauge
            case UInt8(ascii: "h"): .histogram
            case UInt8(ascii: "d"): .distribution
            case UInt8(ascii: "s"): .set
            default: nil
            }
        case 2: field.elementsEqual("ms".utf8) ? .timer : nil
        default: nil
        }
    }

    static func quote(_ text: some StringProtocol) -> String {
        text.count > 40 ? "'\(text.prefix(40))...'" : "'\(text)'"
    }
}
