/// One request observed by a service: what a client sends, after parsing.
public struct Event: Sendable, Equatable {
    public var service: String
    public var operation: String
    /// An HTTP-style status code, 100...599.
    public var status: UInt16
    /// Latency in microseconds: finite and non-negative once validated.
    public var latencyMicros: Double
    /// The user, for distinct-user counts; nil when the client did not say.
    public var user: String?
    /// When the request happened (event time, not arrival time).
    public var timestamp: Timestamp

    public init(
        service: String, operation: String, status: UInt16, latencyMicros: Double, user: String? = nil,
        timestamp: Timestamp
    ) {
        self.service = service
        self.operation = operation
        self.status = status
        self.latencyMicros = latencyMicros
        self.user = user
        self.timestamp = timestamp
    }

    public var statusClass: StatusClass { StatusClass(status: self.status) }
    public var seriesKey: SeriesKey {
        SeriesKey(service: self.service, operation: self.operation, statusClass: self.statusClass)
    }
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
