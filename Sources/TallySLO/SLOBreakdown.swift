import TallyAggregates
import TallyReplica

/// What a report shows beyond the headline: the window in steps (the SLI, the budget burning down
/// and the traffic, for the charts), who spent the budget (by operation, by origin region), and
/// the compliance of past calendar periods.
public struct SLOBreakdown: Sendable {
    public struct Step: Sendable, Hashable {
        public var from: Timestamp
        public var to: Timestamp
        /// The requests of the step (events, whatever the budgeting method).
        public var counts: EventCounts
    }

    public struct Period: Sendable, Hashable {
        public var from: Timestamp
        public var to: Timestamp
        public var counts: EventCounts
        /// The objective held over the period (true without traffic: nothing went wrong).
        public var met: Bool
        /// The share of its budget the period spent (0 without traffic).
        public var budgetSpent: Double
        /// The period is still under way at the report's instant.
        public var current: Bool
    }

    public var steps: [Step]
    public var stepWidth: Duration
    /// Every operation of the service (only the SLO's, when it names some), most bad first.
    public var operations: [(operation: String, counts: EventCounts)]
    /// Bad requests per origin, most first (availability SLIs: the counters keep one slot per
    /// origin; a latency sketch does not, so nil).
    public var origins: [(origin: ReplicaID, bad: UInt64)]?
    public var periods: [Period]
    /// The unit of `periods`: the window's own for a calendar window, months (UTC) for a rolling one.
    public var periodUnit: TimeWindow
}

extension SLOSpec {
    /// The breakdown of the SLO's window as of `at` on `replica` (state as of `now`), in about
    /// `steps` steps, with the last `periods` calendar periods.
    public func breakdown(on replica: Replica, at: Timestamp, now: Timestamp, steps: Int = 48, periods: Int = 12)
        throws(QueryError) -> SLOBreakdown
    {
        let bounds = self.window.bounds(at: at)
        let end = at + .milliseconds(1)
        let span = max(end - bounds.from, .seconds(60))
        let (width, slices) = try replica.sliceCounts(
            service: self.service, operations: self.operations, from: bounds.from, to: end, now: now,
            slice: .milliseconds(max(60_000, span.milliseconds / Int64(max(1, steps)))))
        let timeline = slices.map { SLOBreakdown.Step(from: $0.from, to: $0.to, counts: self.events(in: $0).counts) }

        // One pass: per operation, and per origin for an availability SLI.
        var byOrigin = false
        if case .availability = self.indicator { byOrigin = true }
        let perOperation = try replica.windowCountsByOperation(
            service: self.service, operations: self.operations, from: bounds.from, to: end, now: now, byOrigin: byOrigin)
        var operations = perOperation.map { ($0.key, self.events(in: $0.value).counts) }
        operations.sort { ($0.1.bad, $1.0) > ($1.1.bad, $0.0) }
        var origins: [(origin: ReplicaID, bad: UInt64)]?
        if case .availability(let bad) = self.indicator {
            var total: [ReplicaID: UInt64] = [:]
            for counts in perOperation.values {
                for (origin, count) in counts.requestsByOrigin(in: bad) { total[origin, default: 0] &+= count }
            }
            origins = total.map { ($0.key, $0.value) }.sorted { ($0.bad, $1.origin) > ($1.bad, $0.origin) }
        }

        let unit: TimeWindow
        if case .calendar = self.window { unit = self.window } else { unit = .calendar(.month, timeZone: "UTC") }
        var history: [SLOBreakdown.Period] = []
        var cursor = at
        for _ in 0..<max(0, min(periods, 120)) {
            let period = unit.bounds(at: cursor)
            let to = min(period.to, end)
            // A whole period is read at the coarsest resolution that holds it exactly (days for a
            // UTC month; hours where the zone's midnight is not UTC's): the same counts, fewer buckets.
            let exact = self.coarsestExact(replica, from: period.from, to: to, now: now)
            let measured = try self.measure(on: replica, from: period.from, to: to, now: now, resolution: exact)
            let budget = ErrorBudget(objective: self.objective, window: period.to - period.from, counts: measured.counts)
            history.append(SLOBreakdown.Period(
                from: period.from, to: period.to, counts: measured.counts, met: !budget.isExhausted,
                budgetSpent: budget.spent, current: period.to > end))
            guard period.from.isValid, (period.from - .milliseconds(1)).isValid else { break }
            cursor = period.from - .milliseconds(1)
        }
        return SLOBreakdown(steps: timeline, stepWidth: width, operations: operations, origins: origins,
                            periods: history.reversed(), periodUnit: unit)
    }

    /// The coarsest resolution whose buckets tile [from, to) exactly and that retention still holds
    /// from `from` on (nil: let the window choose, as an evaluation does). Not for Timeslices: its
    /// slices are at least a bucket wide.
    func coarsestExact(_ replica: Replica, from: Timestamp, to: Timestamp, now: Timestamp) -> Resolution? {
        guard case .occurrences = self.budgeting, self.maintenance.isEmpty else { return nil }
        return Resolution.allCases.reversed().first { resolution in
            let width = resolution.width
            return from.floor(toMultipleOf: width) == from && (to.floor(toMultipleOf: width) == to || to > now)
                && replica.config.retention.keeps(resolution, bucketStart: from, now: now)
        }
    }
}
