import TallyReplica
import TallySLO

/// SLOs evaluated on a schedule, and the alerts that follow: the same decisions in the node and
/// in the simulator.
///
/// Every `sloEvaluationInterval` the core asks its shell to evaluate the SLOs
/// (`.evaluateSLOs`): an evaluation reads every bucket of each SLO's windows, so the node runs it
/// on a snapshot off its actor while ingest goes on. The shell reports the outcome
/// (`slosEvaluated`), and the core's `AlertTracker` turns it into the alerts to send
/// (`.sendAlerts`): new ones at once, firing ones again every resend interval, resolved ones for a
/// while after. What the view was (which peer regions have not been heard from lately) is decided
/// here when the evaluation is asked for, and carried in every alert.
extension NodeCore {
    /// The SLOs to evaluate changed (start, a reload): evaluated at the next tick. Alerts of an SLO
    /// no longer listed resolve at the next evaluation.
    public mutating func setSLOs(_ specs: [SLOSpec], now: Timestamp) -> [Action] {
        self.slos = specs
        self.nextEvaluation = min(self.nextEvaluation, now)
        var actions: [Action] = []
        if specs.isEmpty {
            // Nothing left to evaluate: whatever fired resolves now, not at the next evaluation.
            let alerts = self.alerts.update([], view: self.view(now: now), now: now)
            if !alerts.isEmpty { actions.append(.sendAlerts(alerts)) }
            return actions
        }
        self.scheduleNextTick(into: &actions)
        return actions
    }

    /// Which peer regions this node has not heard from within `staleAfter`, and for how long.
    public func view(now: Timestamp) -> View {
        View(stale: self.peerSilence(now: now).filter { $0.silent > self.config.staleAfter }.map { ($0.region, $0.silent) })
    }

    /// Per peer region (sorted), how long since this node heard from it (or since it started,
    /// when it has not yet): replication freshness.
    public func peerSilence(now: Timestamp) -> [(region: String, silent: Duration)] {
        self.peers.keys.sorted().map { region in
            (region, max(.zero, now - max(self.lastHeard[region] ?? self.startedAt, self.startedAt)))
        }
    }

    mutating func heard(from region: String, now: Timestamp) {
        guard self.peers[region] != nil else { return }
        self.lastHeard[region] = max(self.lastHeard[region] ?? now, now)
    }

    /// Asks for an evaluation when one is due and none is under way (one the shell never reported,
    /// its process busy or the report lost, is given up after two intervals).
    mutating func evaluateIfDue(now: Timestamp, into actions: inout [Action]) {
        guard !self.slos.isEmpty, now >= self.nextEvaluation else { return }
        if let inFlight = self.evaluationInFlight, now - inFlight.since < self.config.sloEvaluationInterval * 2,
            now >= inFlight.since
        {
            return
        }
        self.nextEvaluationID &+= 1
        self.evaluationInFlight = (self.nextEvaluationID, now)
        self.nextEvaluation = now + self.config.sloEvaluationInterval
        actions.append(.evaluateSLOs(SLOEvaluationRequest(
            id: self.nextEvaluationID, specs: self.slos, at: now, view: self.view(now: now))))
    }

    /// The shell evaluated the SLOs it was asked to (`.evaluateSLOs`): the alerts to send follow.
    /// A report for an evaluation given up on, or asked for before the SLOs changed, is dropped.
    public mutating func slosEvaluated(_ evaluation: SLOEvaluation, now: Timestamp) -> [Action] {
        guard let inFlight = self.evaluationInFlight, inFlight.id == evaluation.id else { return [] }
        self.evaluationInFlight = nil
        self.lastEvaluation = evaluation
        let alerts = self.alerts.update(evaluation.statuses, view: evaluation.view, now: now)
        return alerts.isEmpty ? [] : [.sendAlerts(alerts)]
    }

    /// The alerts firing as of the last evaluation, in fingerprint order.
    public var firingAlerts: [Alert] { self.alerts.firingAlerts }
}

/// An evaluation the core asks its shell for: these SLOs, as of `at`, with the view the core had.
public struct SLOEvaluationRequest: Sendable {
    public var id: UInt64
    public var specs: [SLOSpec]
    public var at: Timestamp
    public var view: View

    /// Evaluates every SLO on `replica` (a snapshot of the core's): pure, so the node runs it off
    /// its actor and the simulator in line. An SLO that cannot be evaluated (a window over the
    /// query limits) is named with the reason, and its alerts resolve.
    public func evaluate(on replica: Replica) -> SLOEvaluation {
        var statuses: [SLOStatus] = []
        var failures: [(slo: String, reason: String)] = []
        for spec in self.specs {
            do {
                statuses.append(try spec.evaluate(on: replica, now: self.at))
            } catch {
                failures.append((spec.name, error.description))
            }
        }
        return SLOEvaluation(id: self.id, at: self.at, view: self.view, statuses: statuses, failures: failures)
    }
}

/// What an evaluation found: each SLO's status, and those it could not evaluate.
public struct SLOEvaluation: Sendable {
    public var id: UInt64
    public var at: Timestamp
    public var view: View
    public var statuses: [SLOStatus]
    public var failures: [(slo: String, reason: String)]
}
