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
    public func map(_ bytes: [UInt8], now: Timestamp, limits: StatsD.Limits = StatsD.Limits(), into mapped: inout Mapped) {
        let (lines, errors) = StatsD.parse(bytes, limits: limits)
        for error in errors {
            if error.reason.hasSuffix("which Tally does not take") {
                mapped.skipped += 1
            } else {
                mapped.invalid += 1
                if mapped.reasons.count < 5 { mapped.reasons.append(error.description) }
            }
        }
        for line in lines {
            switch self.items(line, now: now) {
            case .success(let items):
                if items.isEmpty {
                    mapped.skipped += 1
                } else {
                    mapped.lines += 1
                    mapped.items += items
                }
            case .failure(let reason):
                mapped.invalid += 1
                if mapped.reasons.count < 5 { mapped.reasons.append("\(line.name): \(reason.message)") }
            }
        }
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
