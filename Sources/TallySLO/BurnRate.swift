import TallyReplica

/// Events over a window: how many there were, and how many were bad (errors, or slower than the
/// latency threshold).
public struct EventCounts: Sendable, Hashable {
    public var total: UInt64
    public var bad: UInt64

    public init(total: UInt64, bad: UInt64) {
        self.total = total
        self.bad = min(bad, total)
    }

    public var good: UInt64 { self.total - self.bad }

    /// The fraction of good events (1 without any event: nothing went wrong).
    public var sli: Double { self.total == 0 ? 1 : Double(self.good) / Double(self.total) }
}

/// A multiple of the budget's sustainable spending rate, in thousandths (14.4 is 14,400): burning
/// at 1 spends the whole budget in exactly the SLO's window.
public struct BurnFactor: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let thousandths: Int

    public init(thousandths: Int) { self.thousandths = thousandths }

    /// Parses `14.4`, `6`, `0.5` (at most 3 decimals, above 0 and at most 1,000).
    public init(parsing text: String, key: String) throws(SLOError) {
        let parts = text.trimmingWhitespace().split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let whole = Int(parts[0]), whole >= 0, whole <= 1_000,
            parts.count == 1 || (1...3).contains(parts[1].count) && parts[1].allSatisfy({ $0.isASCII && $0.isNumber })
        else { throw SLOError(key: key, value: text, message: "must be a burn rate such as 14.4 (at most 3 decimals)") }
        let decimals = parts.count == 2 ? String(parts[1]).padding(toLength: 3, withPad: "0", startingAt: 0) : "000"
        let value = whole * 1_000 + (Int(decimals) ?? 0)
        guard value > 0 && value <= 1_000_000 else {
            throw SLOError(key: key, value: text, message: "must be above 0 and at most 1000")
        }
        self.thousandths = value
    }

    public var value: Double { Double(self.thousandths) / 1_000 }

    public static func < (lhs: BurnFactor, rhs: BurnFactor) -> Bool { lhs.thousandths < rhs.thousandths }

    public var description: String {
        let decimals = self.thousandths % 1_000
        if decimals == 0 { return "\(self.thousandths / 1_000)" }
        var text = String(decimals)
        text = String(repeating: "0", count: 3 - text.count) + text
        while text.hasSuffix("0") { text.removeLast() }
        return "\(self.thousandths / 1_000).\(text)"
    }
}

/// How fast a window's bad events spend the error budget: (bad / total) / (1 - objective). Kept
/// as the exact fraction; compared with a factor in 128-bit integers, never in floating point.
public struct BurnRate: Sendable, Hashable, CustomStringConvertible {
    /// bad x 10^6, and total x budget (parts per million): the rate is their quotient.
    let numerator: UInt128
    let denominator: UInt128

    public init(_ counts: EventCounts, objective: Objective) {
        self.numerator = UInt128(counts.bad) * 1_000_000
        self.denominator = UInt128(counts.total) * UInt128(objective.budgetPartsPerMillion)
    }

    /// No events: no rate (nothing is being spent).
    public var value: Double {
        self.denominator == 0 ? 0 : Double(self.numerator) / Double(self.denominator)
    }

    /// True when the rate is at least `factor`: bad x 10^6 x 1000 >= factor x total x budget,
    /// exactly (each side is below 2^110 for counts below 2^64).
    public func reaches(_ factor: BurnFactor) -> Bool {
        guard self.denominator > 0 else { return false }
        return self.numerator * 1_000 >= UInt128(factor.thousandths) * self.denominator
    }

    public var description: String {
        let value = self.value
        return value >= 100 ? "\(Int(value.rounded()))x" : "\(Double(Int((value * 100).rounded())) / 100)x"
    }
}

/// How urgent an alert is.
public enum Severity: String, Sendable, Hashable, CaseIterable {
    case page
    case ticket
}

/// A multi-window burn-rate alert (the SRE Workbook, chapter 5): it fires when both the long and
/// the short window burn at `factor` or more. The long window makes it significant (it has spent
/// `budgetSpent(of:)` of the budget by the time it fires); the short one makes it stop soon after
/// the burning does.
public struct BurnRateRule: Sendable, Hashable {
    public var severity: Severity
    public var factor: BurnFactor
    public var long: Duration
    public var short: Duration
    /// How long both windows must keep burning before the alert is sent (OpenSLO's `alertAfter`,
    /// Prometheus's `for`); zero: at once.
    public var alertAfter: Duration = .zero
    /// Where its alerts go (OpenSLO's notification targets): the `notify` label, which
    /// Alertmanager routes match on.
    public var notify: [String] = []

    public init(severity: Severity, factor: BurnFactor, long: Duration, short: Duration, alertAfter: Duration = .zero,
                notify: [String] = [])
    {
        self.severity = severity
        self.factor = factor
        self.long = long
        self.short = short
        self.alertAfter = alertAfter
        self.notify = notify
    }

    /// The Workbook's defaults: page at 14.4x over 1 h and 5 m (2% of a 30-day budget), page at
    /// 6x over 6 h and 30 m (5%), ticket at 1x over 3 d and 6 h (10%).
    public static let workbook: [BurnRateRule] = [
        BurnRateRule(severity: .page, factor: BurnFactor(thousandths: 14_400), long: .seconds(3_600), short: .seconds(300)),
        BurnRateRule(severity: .page, factor: BurnFactor(thousandths: 6_000), long: .seconds(6 * 3_600),
                     short: .seconds(1_800)),
        BurnRateRule(severity: .ticket, factor: BurnFactor(thousandths: 1_000), long: .seconds(3 * 86_400),
                     short: .seconds(6 * 3_600)),
    ]

    /// The share of the budget of an SLO over `window` spent by burning at exactly `factor` for
    /// the long window: factor x long / window (14.4 x 1 h / 30 d = 0.02).
    public func budgetSpent(of window: Duration) -> Double {
        Double(self.factor.thousandths) * Double(self.long.milliseconds) / (Double(window.milliseconds) * 1_000)
    }

    /// The same, exactly, as a fraction: (factor x long, 1000 x window) in milliseconds.
    public func budgetSpentFraction(of window: Duration) -> (numerator: UInt128, denominator: UInt128) {
        (UInt128(self.factor.thousandths) * UInt128(max(0, self.long.milliseconds)),
         1_000 * UInt128(max(1, window.milliseconds)))
    }

    /// Whether the rule fires for these windows' counts. Below `minimumEvents` in the long window
    /// it does not (a handful of errors at tiny traffic would burn at thousands of x), and says so.
    /// Under Timeslices budgeting the counts are slices; `longEvents` is then the long window's
    /// requests, which the guard compares instead.
    public func evaluate(long: EventCounts, short: EventCounts, objective: Objective, minimumEvents: UInt64,
                         longEvents: UInt64? = nil) -> RuleVerdict
    {
        let events = longEvents ?? long.total
        let longRate = BurnRate(long, objective: objective)
        let shortRate = BurnRate(short, objective: objective)
        let burning = longRate.reaches(self.factor) && shortRate.reaches(self.factor)
        var suppressed: String?
        if burning && events < minimumEvents {
            suppressed = "\(events) events in \(self.long.shortDescription), fewer than the minimum of "
                + "\(minimumEvents) for an alert: \(long.bad) bad \(long.bad == 1 ? "one" : "ones") would burn at \(longRate)"
        }
        return RuleVerdict(rule: self, longRate: longRate, shortRate: shortRate, firing: burning && suppressed == nil,
                           suppressed: suppressed)
    }
}

/// One rule's outcome: both windows' rates, whether it fires, and what the traffic guard held back.
public struct RuleVerdict: Sendable, Hashable {
    public var rule: BurnRateRule
    public var longRate: BurnRate
    public var shortRate: BurnRate
    public var firing: Bool
    /// Why a rule whose windows both burn does not fire (too little traffic); nil otherwise.
    public var suppressed: String?
}
