import TallyReplica

/// An SLO's error budget over its window: how many bad events the objective allows for the
/// traffic seen, how many were spent, and what is left, in events, as a share, and as the
/// minutes of total outage it equals.
public struct ErrorBudget: Sendable, Hashable {
    public var objective: Objective
    public var window: Duration
    public var counts: EventCounts

    public init(objective: Objective, window: Duration, counts: EventCounts) {
        self.objective = objective
        self.window = window
        self.counts = counts
    }

    /// Bad events the objective allows for this traffic: total x (1 - objective).
    public var allowedEvents: Double {
        Double(self.counts.total) * Double(self.objective.budgetPartsPerMillion) / 1_000_000
    }

    /// The share of the budget spent: bad / allowed (above 1 when it is blown; 0 without traffic).
    public var spent: Double {
        let allowed = self.allowedEvents
        return allowed == 0 ? 0 : Double(self.counts.bad) / allowed
    }

    /// The share left: 1 - spent (negative once blown).
    public var remaining: Double { 1 - self.spent }

    /// True once more bad events happened than the objective allows, exactly:
    /// bad x 10^6 > total x budget.
    public var isExhausted: Bool {
        UInt128(self.counts.bad) * 1_000_000 > UInt128(self.counts.total) * UInt128(self.objective.budgetPartsPerMillion)
    }

    /// The whole budget as minutes of total outage over the window (43.2 for 99.9% over 30 days).
    public var totalMinutes: Double {
        Double(self.window.milliseconds) / 60_000 * Double(self.objective.budgetPartsPerMillion) / 1_000_000
    }

    /// What is left, in the same minutes (negative once blown).
    public var remainingMinutes: Double { self.totalMinutes * self.remaining }

    /// How long the budget left lasts at `rate`: remaining x window / rate. Nil when nothing is
    /// being spent, zero once it is gone.
    public func timeToExhaustion(at rate: BurnRate) -> Duration? {
        let value = rate.value
        guard value > 0 else { return nil }
        let remaining = max(0, self.remaining)
        let millis = remaining * Double(self.window.milliseconds) / value
        return .milliseconds(Int64(min(millis, Double(Limits.durationLongest.milliseconds) * 100)))
    }
}
