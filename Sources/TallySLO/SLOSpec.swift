import TallyReplica

/// One SLO: what is measured (a service's requests, maybe some operations only), what a good
/// event is, the objective, the window, and the alert rules.
public struct SLOSpec: Sendable, Equatable {
    public var name: String
    public var service: String
    /// Only these operations (nil: every operation of the service).
    public var operations: Set<String>?
    public var indicator: Indicator
    public var objective: Objective
    public var window: TimeWindow
    /// The multi-window burn-rate rules (the Workbook's by default).
    public var rules: [BurnRateRule]
    /// No alert fires on a long window with fewer events than this (a few errors at tiny traffic
    /// burn at thousands of x).
    public var minimumEvents: UInt64
    /// Where an alert's runbook lives, carried into its annotations.
    public var runbook: String?
    /// Planned maintenance: the time buckets starting in these intervals count toward neither the
    /// budget nor the alerts (sorted, disjoint).
    public var maintenance: [Interval] = []
    /// What the SLO is for, in words (OpenSLO's `description`).
    public var description: String?
    /// What the objective counts: good events (`Occurrences`), or good time slices (`Timeslices`).
    public var budgeting: Budgeting = .occurrences

    /// OpenSLO's budgeting methods.
    public enum Budgeting: Sendable, Hashable, CustomStringConvertible {
        /// The objective is the share of good events.
        case occurrences
        /// The window is cut into slices of `slice`; a slice is good when its events meet `target`
        /// (one without events is good: nothing went wrong in it), and the objective is the share
        /// of good slices. A burst of errors costs the slices it lasted, whatever the traffic.
        case timeslices(slice: Duration, target: Objective)

        public var description: String {
            switch self {
            case .occurrences: "occurrences"
            case .timeslices(let slice, let target): "timeslices of \(slice.shortDescription), each good at \(target)"
            }
        }
    }

    /// [from, to).
    public struct Interval: Sendable, Hashable {
        public var from: Timestamp
        public var to: Timestamp

        public init(from: Timestamp, to: Timestamp) {
            self.from = from
            self.to = to
        }
    }

    public enum Indicator: Sendable, Equatable, CustomStringConvertible {
        /// Good: a request whose status class is not one of `badClasses`.
        case availability(badClasses: Set<StatusClass>)
        /// Good: a request no slower than the threshold (microseconds). The sketch brackets the count
        /// between bounds; verdicts count the requests whose bucket straddles it as bad.
        case latency(thresholdMicros: Double)

        public var description: String {
            switch self {
            case .availability(let classes):
                "availability (bad: \(classes.sorted().map(\.description).joined(separator: ", ")))"
            case .latency(let micros): "latency <= \(Self.format(micros: micros))"
            }
        }

        static func format(micros: Double) -> String {
            if micros >= 1_000_000, micros.truncatingRemainder(dividingBy: 1_000_000) == 0 { return "\(Int(micros / 1_000_000))s" }
            if micros >= 1_000, micros.truncatingRemainder(dividingBy: 1_000) == 0 { return "\(Int(micros / 1_000))ms" }
            return "\(micros)us"
        }
    }

    public init(name: String, service: String, operations: Set<String>? = nil, indicator: Indicator,
                objective: Objective, window: TimeWindow = .rolling(.seconds(30 * 86_400)),
                rules: [BurnRateRule] = BurnRateRule.workbook, minimumEvents: UInt64 = 100, runbook: String? = nil)
    {
        self.name = name
        self.service = service
        self.operations = operations
        self.indicator = indicator
        self.objective = objective
        self.window = window
        self.rules = rules
        self.minimumEvents = minimumEvents
        self.runbook = runbook
    }
}
