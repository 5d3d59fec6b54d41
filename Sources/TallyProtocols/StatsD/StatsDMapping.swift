import TallyReplica

/// How StatsD and DogStatsD lines become Tally items (docs/integrations.md):
///
/// - `ms`, `h`, `d` (timers, histograms, distributions): each value is one request with that
///   latency (milliseconds by default, `timer_unit`); at `@rate` it stands for `1 / rate` requests.
/// - `c` (counters): the value (over the rate) is a count of requests, with no latency: they count
///   for availability and rates, not for latency quantiles.
/// - `s` (sets): each member is a user of the series, for distinct-user counts.
/// - `g` (gauges): not requests; skipped and counted as such.
///
/// The series comes from DogStatsD tags (`service`, `operation`, `status`, `user` by default);
/// without a service tag, the metric name up to its first `.` is the service and the rest the
/// operation (`checkout.get_cart` is service `checkout`, operation `get_cart`). A status is a code
/// (`503`), a class (`5xx`), or `ok`/`error`; without one, 200.
public struct StatsDMapping: Sendable, Equatable {
    public var serviceTag: String
    public var operationTag: String
    public var statusTag: String
    public var userTag: String
    /// Microseconds per unit of a timer's, histogram's or distribution's value (1000: milliseconds).
    public var timerUnitMicros: Double
    /// Most requests one sampled timer value may stand for (`@0.0001` would be 10,000).
    public var copiesMax: Int

    public init(serviceTag: String = "service", operationTag: String = "operation", statusTag: String = "status",
                userTag: String = "user", timerUnitMicros: Double = 1_000, copiesMax: Int = 1_000)
    {
        self.serviceTag = serviceTag
        self.operationTag = operationTag
        self.statusTag = statusTag
        self.userTag = userTag
        self.timerUnitMicros = timerUnitMicros
        self.copiesMax = copiesMax
    }

    /// What a datagram (or a TCP chunk of lines) held.
    public struct Mapped: Sendable {
        public var items: [BatchItem] = []
        /// Lines that became items.
        public var lines = 0
        /// Lines that did not parse or map, with the first few reasons.
        public var invalid = 0
        public var reasons: [String] = []
        /// Gauges, and DogStatsD events and service checks: valid, but not requests.
        public var skipped = 0

        public init() {}
    }

    /// Parses and maps one datagram's lines; `now` stamps lines without a `T` timestamp.
    ///
    /// The common line (`name:number|ms|@rate|#tags`, printable ASCII) is mapped straight from
    /// the datagram's bytes (`fastItems`); any other line goes through `StatsD.line` and
    /// `items(_:now:)`, and both give the same items (a seeded test holds them equal).
    public func map(_ bytes: [UInt8], now: Timestamp, limits: StatsD.Limits = StatsD.Limits(), into mapped: inout Mapped) {
        let usable = min(bytes.count, limits.datagramBytesMax)
        var number = 0
        bytes.withUnsafeBufferPointer { buffer in
            var start = 0
            while start <= usable {
                var newline = start
                while newline < usable && buffer[newline] != UInt8(ascii: "\n") { newline += 1 }
                number += 1
                var end = newline
                if end > start && buffer[end - 1] == UInt8(ascii: "\r") { end -= 1 }
                if end > start {
                    let line = UnsafeBufferPointer(rebasing: buffer[start..<end])
                    if let items = self.fastItems(line, now: now, limits: limits) {
                        mapped.lines += 1
                        mapped.items += items
                    } else {
                        self.slowMap(Array(line), number: number, now: now, limits: limits, into: &mapped)
                    }
                }
                if newline >= usable { break }
                start = newline + 1
            }
        }
        if bytes.count > limits.datagramBytesMax {
            mapped.invalid += 1
            if mapped.reasons.count < 5 {
                mapped.reasons.append("line \(number): the datagram is \(bytes.count) bytes; only the first "
                    + "\(limits.datagramBytesMax) were read")
            }
        }
    }

    /// One line through the full parser.
    private func slowMap(_ line: [UInt8], number: Int, now: Timestamp, limits: StatsD.Limits, into mapped: inout Mapped) {
        switch StatsD.line(line, limits: limits) {
        case .failure(let reason):
            if reason.text.hasSuffix("which Tally does not take") {
                mapped.skipped += 1
            } else {
                mapped.invalid += 1
                if mapped.reasons.count < 5 { mapped.reasons.append(StatsD.LineError(line: number, reason: reason.text).description) }
            }
        case .success(let parsed):
            switch self.items(parsed, now: now) {
            case .success(let items):
                if items.isEmpty {
                    mapped.skipped += 1
                } else {
                    mapped.lines += 1
                    mapped.items += items
                }
            case .failure(let reason):
                mapped.invalid += 1
                if mapped.reasons.count < 5 { mapped.reasons.append("\(parsed.name): \(reason.message)") }
            }
        }
    }

    /// The items of a common line, straight from its bytes; nil for anything else (the full
    /// parser then decides, with its reasons): one value, type `ms`, `h`, `d` or `c`, optional
    /// `@rate` and `#tags`, printable ASCII only.
    func fastItems(_ line: UnsafeBufferPointer<UInt8>, now: Timestamp, limits: StatsD.Limits) -> [BatchItem]? {
        for byte in line where byte < 0x20 || byte > 0x7e { return nil }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > 0, colon <= limits.nameBytesMax,
            line[0] != UInt8(ascii: "_")
        else { return nil }
        guard let bar = line[colon...].firstIndex(of: UInt8(ascii: "|")) else { return nil }
        let valueRange = (colon + 1)..<bar
        guard !line[valueRange].contains(UInt8(ascii: ":")), let value = Self.number(line, valueRange), value >= 0 else {
            return nil
        }
        var position = bar + 1
        var typeEnd = position
        while typeEnd < line.count && line[typeEnd] != UInt8(ascii: "|") { typeEnd += 1 }
        let type: StatsD.MetricType
        switch typeEnd - position {
        case 1 where line[position] == UInt8(ascii: "c"): type = .counter
        case 1 where line[position] == UInt8(ascii: "h"): type = .histogram
        case 1 where line[position] == UInt8(ascii: "d"): type = .distribution
        case 2 where line[position] == UInt8(ascii: "m") && line[position + 1] == UInt8(ascii: "s"): type = .timer
        default: return nil
        }
        position = typeEnd
        var rate = 1.0
        var tags: [(key: Range<Int>, value: Range<Int>?)] = []
        var sawRate = false
        var sawTags = false
        while position < line.count {
            // At a '|': the next section runs to the next '|'.
            let sectionStart = position + 1
            var sectionEnd = sectionStart
            while sectionEnd < line.count && line[sectionEnd] != UInt8(ascii: "|") { sectionEnd += 1 }
            guard sectionEnd > sectionStart else { return nil }
            switch line[sectionStart] {
            case UInt8(ascii: "@") where !sawRate:
                guard let parsed = Self.number(line, (sectionStart + 1)..<sectionEnd), parsed > 0, parsed <= 1 else { return nil }
                rate = parsed
                sawRate = true
            case UInt8(ascii: "#") where !sawTags:
                var tagStart = sectionStart + 1
                while tagStart <= sectionEnd {
                    var tagEnd = tagStart
                    while tagEnd < sectionEnd && line[tagEnd] != UInt8(ascii: ",") { tagEnd += 1 }
                    if tagEnd > tagStart {
                        if let separator = line[tagStart..<tagEnd].firstIndex(of: UInt8(ascii: ":")) {
                            tags.append((tagStart..<separator, (separator + 1)..<tagEnd))
                        } else {
                            tags.append((tagStart..<tagEnd, nil))
                        }
                    }
                    tagStart = tagEnd + 1
                }
                guard tags.count <= limits.tagsMax else { return nil }
                sawTags = true
            default:
                return nil
            }
            position = sectionEnd
        }
        func text(_ range: Range<Int>) -> String { String(decoding: UnsafeBufferPointer(rebasing: line[range]), as: UTF8.self) }
        func equals(_ range: Range<Int>, _ key: String) -> Bool {
            key.utf8.count == range.count && key.utf8.elementsEqual(line[range])
        }
        // As `items(_:now:)`: each mapped tag's last occurrence wins, and a tag without a value
        // unsets it.
        var service: Range<Int>??
        var operation: Range<Int>??
        var status: Range<Int>??
        var user: Range<Int>??
        for tag in tags {
            if equals(tag.key, self.serviceTag) { service = .some(tag.value) }
            else if equals(tag.key, self.operationTag) { operation = .some(tag.value) }
            else if equals(tag.key, self.statusTag) { status = .some(tag.value) }
            else if equals(tag.key, self.userTag) { user = .some(tag.value) }
        }
        let name = 0..<colon
        var serviceName: String
        var operationName: String
        if let service = service ?? nil {
            serviceName = text(service)
            operationName = (operation ?? nil).map(text) ?? text(name)
        } else if let dot = line[name].firstIndex(of: UInt8(ascii: ".")), dot > 0, dot + 1 < colon {
            serviceName = text(0..<dot)
            operationName = (operation ?? nil).map(text) ?? text((dot + 1)..<colon)
        } else {
            serviceName = text(name)
            operationName = (operation ?? nil).map(text) ?? text(name)
        }
        guard !serviceName.isEmpty, !operationName.isEmpty else { return nil }
        guard let code = Self.status((status ?? nil).map(text)) else { return nil }
        let userName = (user ?? nil).map(text)
        switch type {
        case .timer, .histogram, .distribution:
            let copies = Int(min(Double(self.copiesMax), max(1, (1 / rate).rounded())))
            let event = Event(service: serviceName, operation: operationName, status: code,
                              latencyMicros: value * self.timerUnitMicros, user: userName, timestamp: now)
            return Array(repeating: .event(event), count: copies)
        case .counter:
            let requests = (value / rate).rounded()
            guard requests <= Double(RequestCounts.requestsMax) else { return nil }
            return [.counts(RequestCounts(service: serviceName, operation: operationName, status: code, timestamp: now,
                                          requests: UInt64(requests), users: userName.map { [UserID($0)] } ?? []))]
        default:
            return nil
        }
    }

    /// A plain decimal number (digits, at most one '.'), as `Double(String)` reads it; nil for
    /// anything else (signs, exponents, hex, inf, nan go to the full parser).
    static func number(_ line: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Double? {
        guard !range.isEmpty, range.count <= 24 else { return nil }
        var dots = 0
        var integer: UInt64 = 0
        for index in range {
            let byte = line[index]
            if byte == UInt8(ascii: ".") {
                dots += 1
            } else if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                integer = integer &* 10 &+ UInt64(byte - UInt8(ascii: "0"))
            } else {
                return nil
            }
        }
        guard dots <= 1, line[range.lowerBound] != UInt8(ascii: "."), line[range.upperBound - 1] != UInt8(ascii: ".") else {
            return nil
        }
        // Integers of up to 15 digits are exact; the rest is read as Double(String) reads it.
        if dots == 0 && range.count <= 15 { return Double(integer) }
        let value = Double(String(decoding: UnsafeBufferPointer(rebasing: line[range]), as: UTF8.self))
        return value.flatMap { $0.isFinite ? $0 : nil }
    }

    public struct Problem: Error, Equatable {
        public var message: String
    }

    /// The items of one parsed line: none for a gauge.
    public func items(_ line: StatsD.Line, now: Timestamp) -> Result<[BatchItem], Problem> {
        var service: String?
        var operation: String?
        var statusText: String?
        var user: String?
        for tag in line.tags {
            switch tag.key {
            case self.serviceTag: service = tag.value
            case self.operationTag: operation = tag.value
            case self.statusTag: statusText = tag.value
            case self.userTag: user = tag.value
            default: break
            }
        }
        if service == nil {
            if let dot = line.name.firstIndex(of: "."), dot != line.name.startIndex,
                line.name.index(after: dot) != line.name.endIndex
            {
                service = String(line.name[..<dot])
                operation = operation ?? String(line.name[line.name.index(after: dot)...])
            } else {
                service = line.name
            }
        }
        guard let service, !service.isEmpty else { return .failure(Problem(message: "the service tag is empty")) }
        let operationName = operation ?? line.name
        guard !operationName.isEmpty else { return .failure(Problem(message: "the operation tag is empty")) }
        guard let status = Self.status(statusText) else {
            return .failure(Problem(message: "status '\(statusText ?? "")' is not a code 100...599, a class such as 5xx, ok or error"))
        }
        var timestamp = now
        if let seconds = line.timestamp {
            let (millis, overflow) = seconds.multipliedReportingOverflow(by: 1_000)
            guard !overflow, Timestamp.validMillis.contains(millis) else {
                return .failure(Problem(message: "timestamp T\(seconds) is out of range"))
            }
            timestamp = Timestamp(millisecondsSinceEpoch: millis)
        }
        let copies = Int(min(Double(self.copiesMax), max(1, (1 / line.sampleRate).rounded())))
        switch line.type {
        case .gauge:
            return .success([])
        case .timer, .histogram, .distribution:
            var items: [BatchItem] = []
            for value in line.values {
                guard case .number(let number) = value, number.isFinite, number >= 0 else {
                    return .failure(Problem(message: "a \(line.type.rawValue) value must be a number at least 0"))
                }
                let event = Event(service: service, operation: operationName, status: status,
                                  latencyMicros: number * self.timerUnitMicros, user: user, timestamp: timestamp)
                items += repeatElement(.event(event), count: copies)
            }
            return .success(items)
        case .counter:
            var total = 0.0
            for value in line.values {
                guard case .number(let number) = value, number.isFinite, number >= 0 else {
                    return .failure(Problem(message: "a counter's value must be a number at least 0 (Tally counts requests)"))
                }
                total += number / line.sampleRate
            }
            let requests = total.rounded()
            guard requests <= Double(RequestCounts.requestsMax) else {
                return .failure(Problem(message: "counter value \(total) is over \(RequestCounts.requestsMax)"))
            }
            return .success([.counts(RequestCounts(
                service: service, operation: operationName, status: status, timestamp: timestamp,
                requests: UInt64(requests), users: user.map { [UserID($0)] } ?? []))])
        case .set:
            var users: [UserID] = []
            for value in line.values {
                switch value {
                case .member(let member): users.append(UserID(member))
                case .number(let number): users.append(UserID(number == number.rounded() && abs(number) < 1e15 ? "\(Int64(number))" : "\(number)"))
                }
            }
            return .success([.counts(RequestCounts(
                service: service, operation: operationName, status: status, timestamp: timestamp, requests: 0,
                users: Array(users.prefix(RequestCounts.usersMax))))])
        }
    }

    /// `503`, `5xx`, `ok`, `error`, or none (200).
    static func status(_ text: String?) -> UInt16? {
        guard let text else { return 200 }
        switch text.lowercased() {
        case "ok", "success": return 200
        case "error", "fail", "failure": return 500
        default: break
        }
        if let code = UInt16(text), (100...599).contains(code) { return code }
        if let statusClass = StatusClass(parsing: text), text.count == 3 { return UInt16(statusClass.rawValue) * 100 }
        return nil
    }
}
