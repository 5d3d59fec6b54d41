import TallyReplica
import TallySLO

/// What Prometheus Alertmanager does with the alerts every region posts, in virtual time: one
/// alert per fingerprint (the sorted labels), merged as its `types.Alert.Merge` and its memory
/// provider's `Put` merge them (the earliest start wins; a newer resolution ends an alert; an
/// alert is active until its `endsAt`), so the run shows what an SRE would see.
struct SimulatedAlertmanager {
    struct Held {
        var alert: Alert
        /// When Alertmanager last took an update of it (its own clock).
        var updatedAt: Timestamp
        /// Active as last observed, and every change of that.
        var active = false
        var transitions: [(at: Timestamp, firing: Bool)] = []
        /// Some update said the sender's view was partial.
        var sawPartial = false
        /// The regions that sent it (deduplication in action).
        var senders: Set<String> = []
    }

    private(set) var alerts: [String: Held] = [:]
    /// Alerts received over all posts.
    private(set) var received = 0

    /// A post from `region` at Alertmanager's instant `now`.
    mutating func receive(_ posted: [Alert], from region: String, now: Timestamp) {
        for incoming in posted {
            self.received += 1
            let key = incoming.fingerprint
            guard var held = self.alerts[key] else {
                var held = Held(alert: incoming, updatedAt: now)
                held.sawPartial = Self.isPartial(incoming)
                held.senders = [region]
                self.alerts[key] = held
                self.observe(key, now: now)
                continue
            }
            let old = held.alert
            // Put: merge only when the activity ranges overlap; otherwise the new one replaces.
            if (incoming.endsAt > old.startsAt && incoming.endsAt < old.endsAt)
                || (incoming.startsAt > old.startsAt && incoming.startsAt < old.endsAt)
            {
                held.alert = Self.merge(old, updatedAt: held.updatedAt, incoming, updatedAt: now, now: now)
            } else {
                held.alert = incoming
            }
            held.updatedAt = now
            held.sawPartial = held.sawPartial || (Self.isPartial(incoming) && !incoming.resolved)
            held.senders.insert(region)
            self.alerts[key] = held
            self.observe(key, now: now)
        }
    }

    /// Alertmanager's merge of an update `new` (the younger) into `old`.
    static func merge(_ old: Alert, updatedAt oldUpdated: Timestamp, _ new: Alert, updatedAt newUpdated: Timestamp,
                      now: Timestamp) -> Alert
    {
        var result = new
        if old.startsAt < new.startsAt { result.startsAt = old.startsAt }
        let newResolved = new.endsAt <= now
        let oldResolved = old.endsAt <= now
        if newResolved {
            if oldResolved && old.endsAt > new.endsAt { result.endsAt = old.endsAt }
        } else if old.endsAt > new.endsAt {
            result.endsAt = old.endsAt
        }
        result.resolved = result.endsAt <= now
        return result
    }

    static func isPartial(_ alert: Alert) -> Bool {
        alert.annotations["view"]?.hasPrefix("partial") == true
    }

    /// Records whether each alert is active at `now` (one whose `endsAt` passed is resolved then).
    mutating func observeAll(now: Timestamp) {
        for key in self.alerts.keys.sorted() { self.observe(key, now: now) }
    }

    private mutating func observe(_ key: String, now: Timestamp) {
        guard var held = self.alerts[key] else { return }
        let active = held.alert.endsAt > now
        if active != held.active {
            held.active = active
            // Firing from when it arrived; resolved from its end (or now, if that was earlier).
            held.transitions.append((active ? now : min(now, held.alert.endsAt), active))
            self.alerts[key] = held
        }
    }

    /// The alerts whose labels include every pair of `labels`, in fingerprint order.
    func matching(_ labels: [String: String]) -> [(fingerprint: String, held: Held)] {
        self.alerts.keys.sorted().compactMap { key in
            let held = self.alerts[key]!  // key from the same dictionary
            return labels.allSatisfy { held.alert.labels[$0.key] == $0.value } ? (key, held) : nil
        }
    }
}
