import TallyAggregates

/// One request observed by a service: what a client sends, after parsing.
public struct Event: Sendable, Equatable {
    public var service: String
    public var operation: String
    /// An HTTP-style status code, 100...599.
    public var status: UInt16
    /// Latency in microseconds: finite and non-negative once validated.
    public var latencyMicros: Double
    /// The user, for distinct-user counts; nil when the client did not say. Only its hash is kept.
    public var user: UserID?
    /// When the request happened (event time, not arrival time).
    public var timestamp: Timestamp

    public init(
        service: String, operation: String, status: UInt16, latencyMicros: Double, userID: UserID?,
        timestamp: Timestamp
    ) {
        self.service = service
        self.operation = operation
        self.status = status
        self.latencyMicros = latencyMicros
        self.user = userID
        self.timestamp = timestamp
    }

    public init(
        service: String, operation: String, status: UInt16, latencyMicros: Double, user: String? = nil,
        timestamp: Timestamp
    ) {
        self.init(service: service, operation: operation, status: status, latencyMicros: latencyMicros,
                  userID: user.map(UserID.init), timestamp: timestamp)
    }

    public var statusClass: StatusClass { StatusClass(status: self.status) }
    public var seriesKey: SeriesKey {
        SeriesKey(service: self.service, operation: self.operation, statusClass: self.statusClass)
    }
}

/// What a protocol that aggregates before it sends reports for one series at one time: a StatsD
/// counter (requests, with no latency), set (distinct users, with no requests), or an OTLP
/// histogram point (requests with their latencies, already bucketed). Requests counted without
/// latencies are not seen by latency SLIs and quantiles, which read the sketch; availability and
/// rates, which read the request counters, see every request.
public struct RequestCounts: Sendable, Equatable {
    public var service: String
    public var operation: String
    /// An HTTP-style status code, 100...599.
    public var status: UInt16
    public var timestamp: Timestamp
    /// Requests to add, at most `RequestCounts.requestsMax`.
    public var requests: UInt64
    /// Users seen, at most `RequestCounts.usersMax`.
    public var users: [UserID]
    /// The latencies of the requests (at a scale at least the sketch's), or nil.
    public var latency: LatencyBuckets?

    /// The most requests one measurement may add: a counter of more is malformed input, and the
    /// bound keeps 64-bit counters far from overflow.
    public static let requestsMax: UInt64 = 1 << 32
    public static let usersMax = 1_024

    public init(service: String, operation: String, status: UInt16, timestamp: Timestamp, requests: UInt64,
                users: [UserID] = [], latency: LatencyBuckets? = nil)
    {
        self.latency = latency
        self.service = service
        self.operation = operation
        self.status = status
        self.timestamp = timestamp
        self.requests = requests
        self.users = users
    }

    public var seriesKey: SeriesKey {
        SeriesKey(service: self.service, operation: self.operation, statusClass: StatusClass(status: self.status))
    }

    /// The fields `Replica.admit` checks, as an event (latency 0 is always valid).
    var asEvent: Event {
        Event(service: self.service, operation: self.operation, status: self.status, latencyMicros: 0, userID: nil,
              timestamp: self.timestamp)
    }
}

/// A user id as the aggregates need it: its stable hash (for the distinct-user sketch) and its
/// length (for the size limit). The id itself is never stored: the parser hashes it in place in the
/// request body, which saves building a `String` per event, and keeps user ids out of the log.
public struct UserID: Hashable, Sendable, CustomStringConvertible {
    /// XXH3-64 of the id's UTF-8 bytes.
    public var hash: UInt64
    public var byteCount: Int

    public init(hash: UInt64, byteCount: Int) {
        self.hash = hash
        self.byteCount = byteCount
    }

    public init(_ user: String) {
        self.init(hash: XXH3.hash(user), byteCount: user.utf8.count)
    }

    public init(utf8 bytes: UnsafeRawBufferPointer) {
        self.init(hash: XXH3.hash(bytes), byteCount: bytes.count)
    }

    public var description: String { "user#\(String(self.hash, radix: 16))" }
}

/// The class of an HTTP-style status: its first digit.
public enum StatusClass: UInt8, CaseIterable, Comparable, Sendable, CustomStringConvertible {
    case informational = 1
    case success = 2
    case redirection = 3
    case clientError = 4
    case serverError = 5

    /// The class of a status in 100...599 (callers validate the range first).
    public init(status: UInt16) {
        precondition((100...599).contains(status), "status \(status) reached StatusClass unvalidated")
        self = StatusClass(rawValue: UInt8(status / 100))!  // 1...5 by the precondition
    }

    /// Parses "2xx" (also "2XX" or "2").
    public init?(parsing text: String) {
        let lowered = text.lowercased()
        let digit = lowered.hasSuffix("xx") ? String(lowered.dropLast(2)) : lowered
        guard digit.count == 1, let value = UInt8(digit), let statusClass = StatusClass(rawValue: value) else {
            return nil
        }
        self = statusClass
    }

    public var description: String { "\(self.rawValue)xx" }

    public static func < (lhs: StatusClass, rhs: StatusClass) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// What a series is kept for: one service's operation, by status class.
public struct SeriesKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var service: String
    public var operation: String
    public var statusClass: StatusClass

    public init(service: String, operation: String, statusClass: StatusClass) {
        self.service = service
        self.operation = operation
        self.statusClass = statusClass
    }

    public static func < (lhs: SeriesKey, rhs: SeriesKey) -> Bool {
        (lhs.service, lhs.operation, lhs.statusClass) < (rhs.service, rhs.operation, rhs.statusClass)
    }

    public var description: String { "\(self.service)/\(self.operation)/\(self.statusClass)" }
}
