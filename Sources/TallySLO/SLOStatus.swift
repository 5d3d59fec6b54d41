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
    /// The requests in the window (equal to `counts.total` unless budgeting counts time slices).
    public var events: UInt64
    /// For a latency SLI: good requests as bounds (the verdicts use `certain`).
    public var goodBounds: (certain: UInt64, possible: UInt64)?
    /// Under Timeslices budgeting, the width of the window's slices as read: the spec's, or one
    /// bucket of the resolution the window reads at when that is wider (a 30-day window reads hours).
    public var sliceWidth: Duration? = nil
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

    /// The buckets an evaluation as of `at` reads, per resolution: [from, to) ranges (each window
    /// at the resolution it reads at). A global-consistency evaluation asks every region for
    /// the recent part of these.
    public func reads(on replica: Replica, at: Timestamp, now: Timestamp) -> [Resolution: (from: Timestamp, to: Timestamp)] {
        var reads: [Resolution: (from: Timestamp, to: Timestamp)] = [:]
        let end = at + .milliseconds(1)
        for from in [self.window.bounds(at: at).from] + self.burnWindows.map({ at - $0 }) {
            let resolution = replica.windowResolution(from: from, now: now)
            let known = reads[resolution]
            reads[resolution] = (min(known?.from ?? from, from), end)
        }
        return reads
    }

    /// What one window of an SLO measured: the counts its objective is about (events, or time
    /// slices under Timeslices budgeting), the requests behind them, and for a latency SLI the
    /// good requests' bounds.
    struct Measured {
        var counts: EventCounts
        var events: UInt64
        var goodBounds: (certain: UInt64, possible: UInt64)?
        /// Under Timeslices budgeting, the slices' width as read (at least one bucket).
        var sliceWidth: Duration? = nil
    }

    /// Good and bad events (or slices) in [from, to) on `replica`, maintenance left out: every part
    /// is read at the resolution the whole window reads at, so a bucket is in one part or excluded,
    /// never both.
    func measure(on replica: Replica, from: Timestamp, to: Timestamp, now: Timestamp, resolution: Resolution? = nil)
        throws(QueryError) -> Measured
    {
        let whole = try replica.windowCounts(service: self.service, operations: self.operations, from: from, to: to,
                                             now: now, resolution: resolution)
        let parts = self.countedParts(from: from, to: to, width: whole.resolution.width)
        var window = whole
        if !self.maintenance.isEmpty {
            window = WindowCounts(resolution: whole.resolution, from: whole.from, to: whole.to,
                                  sketchScale: replica.config.sketchScale)
            for part in parts {
                window.add(try replica.windowCounts(service: self.service, operations: self.operations, from: part.from,
                                                    to: part.to, now: now, resolution: whole.resolution))
            }
        }
        let (events, goodBounds) = self.events(in: window)
        guard case .timeslices(let slice, let target) = self.budgeting else {
            return Measured(counts: events, events: events.total, goodBounds: goodBounds)
        }
        var good: UInt64 = 0
        var bad: UInt64 = 0
        var width = slice
        for part in parts {
            let (read, slices) = try replica.sliceCounts(service: self.service, operations: self.operations, from: part.from,
                                                      to: part.to, now: now, slice: slice, resolution: whole.resolution)
            width = read
            for counts in slices {
                let inSlice = self.events(in: counts).counts
                // Good when good / total >= target, exactly: good x 10^6 >= target x total.
                if UInt128(inSlice.good) * 1_000_000 >= UInt128(target.partsPerMillion) * UInt128(inSlice.total) {
                    good += 1
                } else {
                    bad += 1
                }
            }
        }
        return Measured(counts: EventCounts(total: good + bad, bad: bad), events: events.total, goodBounds: goodBounds,
                        sliceWidth: width)
    }

    /// Good and bad requests of one window's counts, by the SLI.
    func events(in window: WindowCounts) -> (counts: EventCounts, goodBounds: (certain: UInt64, possible: UInt64)?) {
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
        let measured = try self.measure(on: replica, from: bounds.from, to: now + .milliseconds(1), now: clock)
        var rates: [(window: Duration, counts: EventCounts, rate: BurnRate)] = []
        var events: [Duration: UInt64] = [:]
        for window in self.burnWindows {
            let inWindow = try self.measure(on: replica, from: now - window, to: now + .milliseconds(1), now: clock)
            rates.append((window, inWindow.counts, BurnRate(inWindow.counts, objective: self.objective)))
            events[window] = inWindow.events
        }
        func over(_ window: Duration) -> EventCounts {
            rates.first { $0.window == window }?.counts ?? EventCounts(total: 0, bad: 0)
        }
        let verdicts = self.rules.map { rule in
            rule.evaluate(long: over(rule.long), short: over(rule.short), objective: self.objective,
                          minimumEvents: self.minimumEvents, longEvents: events[rule.long])
        }
        return SLOStatus(
            spec: self, at: now, window: bounds, counts: measured.counts, events: measured.events,
            goodBounds: measured.goodBounds, sliceWidth: measured.sliceWidth,
            budget: ErrorBudget(objective: self.objective, window: self.window.length(at: now), counts: measured.counts),
            burnRates: rates, verdicts: verdicts)
    }
}
