import TallyAggregates
import TallyReplica

/// An alert as Prometheus Alertmanager's API v2 takes it (`POST /api/v2/alerts`). Every region
/// sends the same labels for the same condition (no region label), so Alertmanager keeps one:
/// the way a pair of Prometheus servers is made highly available.
public struct Alert: Sendable, Equatable {
    public var labels: [String: String]
    public var annotations: [String: String]
    public var startsAt: Timestamp
    /// Firing: a little ahead (Alertmanager resolves it then unless it is sent again); resolved: when.
    public var endsAt: Timestamp
    public var resolved: Bool
    /// How long the condition must hold before the alert is sent (not sent to Alertmanager).
    public var pendingFor: Duration = .zero

    /// The identity Alertmanager groups and deduplicates by: the sorted labels.
    public var fingerprint: String {
        self.labels.keys.sorted().map { "\($0)=\(self.labels[$0]!)" }.joined(separator: ",")
    }
}

/// What a region can see when it evaluates: the regions whose state it holds only as of a while
/// ago (cut off, or not answering a global read). Alerts say so.
public struct View: Sendable, Equatable {
    /// Regions behind by more than the staleness bound, with how far.
    public var stale: [(region: String, behind: Duration)]

    public init(stale: [(region: String, behind: Duration)] = []) { self.stale = stale }

    public static func == (lhs: View, rhs: View) -> Bool {
        lhs.stale.map(\.region) == rhs.stale.map(\.region) && lhs.stale.map(\.behind) == rhs.stale.map(\.behind)
    }

    public var isPartial: Bool { !self.stale.isEmpty }

    var description: String {
        self.isPartial
            ? "partial: " + self.stale.map { "\($0.region) \(Self.words($0.behind)) behind" }.joined(separator: ", ")
            : "complete"
    }

    /// `5m4s`, `2h`, `3d4h`: at most two units, whole seconds.
    public static func words(_ duration: Duration) -> String {
        var seconds = max(0, duration.milliseconds / 1_000)
        var parts: [String] = []
        for (unit, size) in [("d", Int64(86_400)), ("h", 3_600), ("m", 60), ("s", 1)] where seconds >= size || (unit == "s" && parts.isEmpty) {
            parts.append("\(seconds / size)\(unit)")
            seconds %= size
            if parts.count == 2 || seconds == 0 { break }
        }
        return parts.joined()
    }
}

/// Turns successive evaluations into the alerts to send: a rule that starts firing is sent at
/// once, a firing one again every `resendEvery` (with `endsAt` four resends ahead, so a region
/// that stops sending lets it lapse instead of leaving it stuck), and one that stops is sent once
/// as resolved. A lost resolution costs at most those four resends; sending it again, as
/// Prometheus does for 15 minutes, would let a region that resolved an alert long ago end the
/// same alert that a region cut off from it has just started firing (Alertmanager replaces an
/// alert whose activity does not overlap; `simulations/partition-alert.yaml` showed it). A value:
/// time is an input, and nothing here sends anything.
public struct AlertTracker: Sendable {
    public var resendEvery: Duration
    /// Firing alerts by fingerprint: when each started, and when it was last sent.
    private var firing: [String: (alert: Alert, lastSent: Timestamp)] = [:]
    /// Conditions holding, not yet for their `pendingFor`: since when.
    private var pending: [String: Timestamp] = [:]

    public init(resendEvery: Duration = .seconds(60)) {
        self.resendEvery = resendEvery
    }

    /// Fingerprints of the alerts firing now, sorted.
    public var firingNow: [String] { self.firing.keys.sorted() }

    /// The alerts firing now, in fingerprint order.
    public var firingAlerts: [Alert] { self.firing.keys.sorted().map { self.firing[$0]!.alert } }

    /// Whether `lastSent` is a resend interval ago (or in the future: a clock stepped back).
    private func due(_ lastSent: Timestamp, now: Timestamp) -> Bool {
        now - lastSent >= self.resendEvery || now < lastSent
    }

    /// The alerts to send after evaluating `statuses` at `now`, in fingerprint order.
    public mutating func update(_ statuses: [SLOStatus], view: View, now: Timestamp) -> [Alert] {
        var current: [String: Alert] = [:]
        for status in statuses {
            for alert in Self.conditions(of: status, view: view, now: now) { current[alert.fingerprint] = alert }
        }
        // A condition with a hold fires once it has held that long; one that stops starts over.
        for key in self.pending.keys where current[key] == nil { self.pending.removeValue(forKey: key) }
        for (key, alert) in current where alert.pendingFor > .zero && self.firing[key] == nil {
            let since = min(self.pending[key] ?? now, now)
            self.pending[key] = since
            if now - since < alert.pendingFor { current.removeValue(forKey: key) }
        }
        var out: [Alert] = []
        for key in Set(current.keys).union(self.firing.keys).sorted() {
            switch (current[key], self.firing[key]) {
            case (var alert?, let known?):
                alert.startsAt = known.alert.startsAt
                alert.endsAt = now + self.resendEvery * 4
                if self.due(known.lastSent, now: now) {
                    out.append(alert)
                    self.firing[key] = (alert, now)
                } else {
                    self.firing[key] = (alert, known.lastSent)
                }
            case (var alert?, nil):
                alert.startsAt = self.pending.removeValue(forKey: key) ?? now
                alert.endsAt = now + self.resendEvery * 4
                out.append(alert)
                self.firing[key] = (alert, now)
            case (nil, let known?):
                var alert = known.alert
                alert.endsAt = now
                alert.resolved = true
                out.append(alert)
                self.firing.removeValue(forKey: key)
            case (nil, nil):
                break
            }
        }
        return out
    }

    /// Every alert condition of one evaluation: each firing burn-rate rule, and the budget gone.
    static func conditions(of status: SLOStatus, view: View, now: Timestamp) -> [Alert] {
        let spec = status.spec
        var common = ["slo": spec.name, "service": spec.service]
        if let operations = spec.operations { common["operations"] = operations.sorted().joined(separator: ",") }
        var annotations = [
            "objective": spec.objective.description,
            "sli": spec.indicator.description,
            "window": spec.window.description,
            "budget_remaining": Self.percent(status.budget.remaining),
            "view": view.description,
        ]
        if let runbook = spec.runbook { annotations["runbook_url"] = runbook }
        var alerts: [Alert] = []
        for verdict in status.verdicts where verdict.firing {
            let rule = verdict.rule
            var labels = common
            labels["alertname"] = "TallySLOBurnRate"
            labels["severity"] = rule.severity.rawValue
            labels["long_window"] = rule.long.shortDescription
            labels["short_window"] = rule.short.shortDescription
            if !rule.notify.isEmpty { labels["notify"] = rule.notify.joined(separator: ",") }
            var notes = annotations
            notes["summary"] = "\(spec.name): error budget burning at \(verdict.longRate) over \(rule.long.shortDescription) "
                + "and \(verdict.shortRate) over \(rule.short.shortDescription) (threshold \(rule.factor)x)"
            notes["burn_rate_long"] = "\(verdict.longRate.value)"
            notes["burn_rate_short"] = "\(verdict.shortRate.value)"
            notes["description"] = "At \(rule.factor)x for \(rule.long.shortDescription), \(Self.percent(rule.budgetSpent(of: status.budget.window))) "
                + "of the budget is spent: both windows are at or above it. Computed from \(status.counts.total) events "
                + "in the window, \(status.counts.bad) bad." + (view.isPartial ? " This region's view is \(view.description)." : "")
            alerts.append(Alert(labels: labels, annotations: notes, startsAt: now, endsAt: now, resolved: false,
                                pendingFor: rule.alertAfter))
        }
        // The traffic guard holds here too: a window of a few events is "exhausted" by one error.
        if status.budget.isExhausted && status.events >= spec.minimumEvents {
            var labels = common
            labels["alertname"] = "TallySLOBudgetExhausted"
            labels["severity"] = Severity.ticket.rawValue
            var notes = annotations
            notes["summary"] = "\(spec.name): the error budget for \(spec.window) is gone (\(Self.percent(status.budget.spent)) spent)"
            notes["description"] = "\(status.counts.bad) bad of \(status.counts.total) events; the objective allows "
                + "\(Int(status.budget.allowedEvents.rounded(.down)))." + (view.isPartial ? " This region's view is \(view.description)." : "")
            alerts.append(Alert(labels: labels, annotations: notes, startsAt: now, endsAt: now, resolved: false))
        }
        return alerts
    }

    static func percent(_ fraction: Double) -> String {
        "\(Double(Int((fraction * 1_000).rounded())) / 10)%"
    }
}

extension Alert {
    /// The body of `POST /api/v2/alerts` for these alerts: a JSON array, keys sorted.
    public static func alertmanagerBody(_ alerts: [Alert], generatorURL: String) -> String {
        func string(_ text: String) -> String { JSONText.string(text) }
        func object(_ map: [String: String]) -> String {
            "{" + map.keys.sorted().map { "\(string($0)):\(string(map[$0]!))" }.joined(separator: ",") + "}"
        }
        let items = alerts.map { alert in
            "{\"annotations\":\(object(alert.annotations)),\"endsAt\":\(string(RFC3339.format(alert.endsAt))),"
                + "\"generatorURL\":\(string(generatorURL)),\"labels\":\(object(alert.labels)),"
                + "\"startsAt\":\(string(RFC3339.format(alert.startsAt)))}"
        }
        return "[" + items.joined(separator: ",") + "]"
    }
}
