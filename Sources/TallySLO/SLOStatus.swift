import TallyAggregates
import TallyReplica

/// An SLO evaluated at one instant on one replica's state: the SLI over the window, the budget,
/// the burn rate over each alert window, and every rule's verdict.
public struct SLOStatus: Sendable {
    public var spec: SLOSpec
    public var at: Timestamp
    /// The window's bounds, and the counts over the buckets that start in it.
    public var window: (from: Timestamp, to: Timestamp)
    public var counts: EventCounts
    /// For a latency SLI: good requests as bounds (the verdicts use `certain`).
    public var goodBounds: (certain: UInt64, possible: UInt64)?
    public var budget: ErrorBudget
    /// Burn rate per window length, for every window the rules name (and 1 day), shortest first.
    public var burnRates: [(window: Duration, counts: EventCounts, rate: BurnRate)]
    public var verdicts: [RuleVerdict]

    /// How long the budget left lasts at the 1 h burn rate (nil: nothing is burning).
    public var timeToExhaustion: Duration? {
        guard let hour = self.burnRates.first(where: { $0.window == .seconds(3_600) }) else { return nil }
        return self.budget.timeToExhaustion(at: hour.rate)
    }
}

extension SLOSpec {
    /// The burn-rate windows this SLO's rules read, with the report's standard ones (5m, 30m, 1h,
    /// 6h, 1d, 3d), each once, shortest first.
    public var burnWindows: [Duration] {
        var windows = Set([300, 1_800, 3_600, 6 * 3_600, 86_400, 3 * 86_400].map { Duration.seconds($0) })
        for rule in self.rules { windows.formUnion([rule.long, rule.short]) }
        return windows.sorted()
    }

    /// [from, to) less the maintenance intervals, each widened to whole buckets of `width` (a
    /// bucket that overlaps maintenance at all is left out: its errors may be the maintenance's):
    /// the parts an SLO counts, in order.
    func countedParts(from: Timestamp, to: Timestamp, width: Duration) -> [Interval] {
        var parts: [Interval] = []
        var cursor = from
        for maintenance in self.maintenance {
            let start = maintenance.from.floor(toMultipleOf: width)
            let lastStart = (maintenance.to - .milliseconds(1)).floor(toMultipleOf: width)
            let pause = Interval(from: start, to: lastStart + width)
            guard pause.to > cursor && pause.from < to else { continue }
            if pause.from > cursor { parts.append(Interval(from: cursor, to: pause.from)) }
            cursor = max(cursor, pause.to)
        }
        if cursor < to { parts.append(Interval(from: cursor, to: to)) }
        return parts
    }

    /// Good and bad events in [from, to) on `replica`, maintenance left out: every part is read at
    /// the resolution the whole window reads at, so a bucket is in one part or excluded, never both.
    func counts(on replica: Replica, from: Timestamp, to: Timestamp, now: Timestamp) throws(QueryError)
        -> (EventCounts, (certain: UInt64, possible: UInt64)?)
    {
        let whole = try replica.windowCounts(service: self.service, operations: self.operations, from: from, to: to,
                                             now: now)
        var window = whole
        if !self.maintenance.isEmpty {
            window = WindowCounts(resolution: whole.resolution, from: whole.from, to: whole.to,
                                  sketchScale: replica.config.sketchScale)
            for part in self.countedParts(from: from, to: to, width: whole.resolution.width) {
                window.add(try replica.windowCounts(service: self.service, operations: self.operations, from: part.from,
                                                    to: part.to, now: now, resolution: whole.resolution))
            }
        }
        switch self.indicator {
        case .availability(let bad):
            return (EventCounts(total: window.total, bad: window.requests(in: bad)), nil)
        case .latency(let threshold):
            let total = window.latency.count
            let good = window.latency.countAtMost(threshold)
            return (EventCounts(total: total, bad: total - min(total, good.certain)), good)
        }
    }

    /// The SLO at `now` on `replica`'s state: the SLI and budget over the window (a calendar
    /// window up to now), and the rules' verdicts over their windows.
    public func evaluate(on replica: Replica, now: Timestamp) throws(QueryError) -> SLOStatus {
        try self.evaluate(on: replica, at: now, now: now)
    }

    /// The same as of an earlier instant `at` (the windows end there), on the state as it is at
    /// `now` (which decides the resolutions retention still holds).
    public func evaluate(on replica: Replica, at: Timestamp, now clock: Timestamp) throws(QueryError) -> SLOStatus {
        guard at <= clock else {
            throw .invalid(parameter: "at", message: "\(RFC3339.format(at)) is in the future")
        }
        let now = at
        let bounds = self.window.bounds(at: now)
        // Through now, the bucket holding now included (a calendar window's end may be ahead).
        let (counts, goodBounds) = try self.counts(on: replica, from: bounds.from, to: now + .milliseconds(1), now: clock)
        var rates: [(window: Duration, counts: EventCounts, rate: BurnRate)] = []
        for window in self.burnWindows {
            let (windowCounts, _) = try self.counts(on: replica, from: now - window, to: now + .milliseconds(1), now: clock)
            rates.append((window, windowCounts, BurnRate(windowCounts, objective: self.objective)))
        }
        func over(_ window: Duration) -> EventCounts {
            rates.first { $0.window == window }?.counts ?? EventCounts(total: 0, bad: 0)
        }
        let verdicts = self.rules.map { rule in
            rule.evaluate(long: over(rule.long), short: over(rule.short), objective: self.objective,
                          minimumEvents: self.minimumEvents)
        }
        return SLOStatus(
            spec: self, at: now, window: bounds, counts: counts, goodBounds: goodBounds,
            budget: ErrorBudget(objective: self.objective, window: self.window.length(at: now), counts: counts),
            burnRates: rates, verdicts: verdicts)
    }
}
