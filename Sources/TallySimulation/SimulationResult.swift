import TallyReplica

/// What a run found: each checker's verdict, and the figures of the run.
public struct SimulationResult: Sendable {
    public struct Check: Sendable {
        public var name: String
        public var passed: Bool
        public var detail: String
    }

    public var scenario: String
    public var seed: UInt64
    public var regions: [String]
    public var checks: [Check]
    public var timeline: [String]
    /// Convergence after the faults ended: simulated time and gossip rounds; nil if never.
    public var convergenceMillis: Int64?
    public var convergenceRounds: Int?
    public var roundsBound: Int
    /// Replication bytes sent per region (digests, batches, transfers, duplicates).
    public var bytesSent: [Int]
    /// Global reads' request and answer bytes, over all regions.
    public var readBytesSent: Int
    /// Own batches' encoded bytes, summed over regions: each update once.
    public var deltaBytes: UInt64
    public var messagesSent: Int
    /// Replication messages sent, by wire version (both, in a rolling upgrade).
    public var messagesByWire: [UInt8: Int]
    /// Replication bytes sent by kind of message: digests, batches (deltas) and state chunks.
    public var bytesByKind: (digests: Int, deltas: Int, stateChunks: Int)
    public var eventsAcknowledged: UInt64
    public var batchesRefused: Int
    public var staleness: (p50: Int64, p99: Int64, max: Int64)?
    public var simulatedMillis: Int64
    public var traceHash: UInt64

    public var passed: Bool { self.checks.allSatisfy(\.passed) }

    /// Bytes sent (digests, batches, transfers, duplicates: everything) per byte of encoded delta
    /// per other region; 1 would be each delta crossing to each other region once, and nothing else.
    public var bytesPerDelta: Double? {
        guard self.deltaBytes > 0, self.regions.count > 1 else { return nil }
        return Double(self.bytesSent.reduce(0, +)) / (Double(self.deltaBytes) * Double(self.regions.count - 1))
    }

    /// The command that replays this run.
    public func replayCommand(file: String) -> String { "tally sim \(file) --seed \(self.seed)" }
}

extension Simulation {
    func result(_ state: State) -> SimulationResult {
        var checks: [SimulationResult.Check] = []
        let rounds = state.convergedAt.map {
            Int((Double($0 - state.quietStart) / Double(self.scenario.gossipInterval.milliseconds)).rounded(.up))
        }
        // ceil(log2 N) + 4 at 0% loss; twice that on a lossy network.
        let count = self.scenario.regions.count
        var bound = (Int.bitWidth - (count - 1).leadingZeroBitCount) + 4
        if self.scenario.network.loss > 0 { bound *= 2 }
        checks.append(.init(
            name: "convergence", passed: state.convergedAt != nil,
            detail: state.convergedAt == nil
                ? "regions still differ \(Self.format(self.scenario.quiet)) after the faults ended"
                : "equal digests and equal buckets, byte for byte, in every region"))
        checks.append(.init(
            name: "liveness", passed: rounds.map { $0 <= bound } ?? false,
            detail: rounds.map { "converged in \($0) gossip rounds after the heal (bound \(bound))" } ?? "did not converge"))
        var conservation: [String] = []
        // Acknowledged events exactly once; events durable but unanswered when their process died
        // ("in doubt") at most once, and they are on disk, so exactly once too.
        var expected = state.acknowledged
        for (service, count) in state.inDoubt { expected[service, default: 0] += count }
        if state.convergedAt != nil {
            for region in state.regions {
                var totals: [Int: UInt64] = [:]
                for (key, aggregate) in region.replica!.buckets where key.resolution == .day {  // all up when converged
                    totals[Int(key.series.service.dropFirst(4))!, default: 0] += aggregate.requests.value
                }
                if totals != expected {
                    let services = Set(totals.keys).union(expected.keys).sorted()
                    let diffs = services.filter { totals[$0] != expected[$0] }.map {
                        "svc-\($0): \(totals[$0] ?? 0) counted, \(state.acknowledged[$0] ?? 0) acknowledged"
                            + " + \(state.inDoubt[$0] ?? 0) in doubt"
                    }
                    conservation.append("\(region.name): \(diffs.prefix(3).joined(separator: "; "))")
                }
            }
        }
        let acknowledged = state.acknowledged.values.reduce(0, +)
        let inDoubt = state.inDoubt.values.reduce(0, +)
        checks.append(.init(
            name: "conservation", passed: state.convergedAt != nil && conservation.isEmpty,
            detail: conservation.isEmpty
                ? (state.convergedAt == nil ? "not checked: no convergence"
                    : "every region counts the \(acknowledged) acknowledged events exactly once"
                        + (inDoubt > 0 ? " (and \(inDoubt) durable but unanswered at a crash, once)" : ""))
                : conservation.joined(separator: " | ")))
        let early = state.violations.filter { $0.hasPrefix("acknowledgement") }
        checks.append(.init(
            name: "durable acknowledgements", passed: early.isEmpty,
            detail: early.first ?? "every acknowledgement came after its batch and every entry before it were durable"))
        let overload = state.violations.filter { $0.hasPrefix("overload") }
        checks.append(.init(
            name: "overload bound", passed: overload.isEmpty,
            detail: overload.first ?? "at most \(state.mostPending) of \(self.scenario.node.pendingBatchesMax) batches "
                + "waited for the disk; \(state.overloadRefusals) refused with 503"))
        let reads = state.violations.filter { $0.hasPrefix("global reads") }
        checks.append(.init(
            name: "global reads", passed: reads.isEmpty,
            detail: reads.first ?? "\(state.readsComplete) of \(state.readsStarted) reads completed by their deadline "
                + "(\(state.readsMissing) naming missing regions); \(state.finalReadsDone) after convergence equal "
                + "the converged answer"))
        let monotonic = state.violations.filter { $0.hasPrefix("monotonic") }
        checks.append(.init(
            name: "monotonic reads", passed: monotonic.isEmpty,
            detail: monotonic.first ?? "no region's total went down within a process lifetime"))
        let bufferLimit = self.scenario.replicationBufferBytes
        let bounded = state.largestBuffer <= bufferLimit && state.largestUnpublished <= 64
        checks.append(.init(
            name: "bounded memory", passed: bounded,
            detail: "largest per-origin buffer \(state.largestBuffer) B (limit \(bufferLimit)), "
                + "most unpublished batches \(state.largestUnpublished), most held messages \(state.mostHeld)"))
        if !self.scenario.slos.isEmpty {
            let problems = state.violations.filter { $0.hasPrefix("slo") } + self.alertProblems(state)
            let shown = state.alertmanager.matching([:]).filter { !$0.held.transitions.isEmpty }
            checks.append(.init(
                name: "alerts", passed: problems.isEmpty,
                detail: problems.first ?? "\(state.sloEvaluations) evaluations; Alertmanager received "
                    + "\(state.alertmanager.received) alerts from the regions and showed \(shown.count), "
                    + "each as the scenario expects"))
        }
        // Staleness names only origins that still run: one a region replaced (a lost store, a
        // restore) never publishes again, and reported it would look behind for good. The one
        // exception is a region's own origin lost with its whole data directory, at that region:
        // nothing it has left says the origin was its own (its peers do know, from hellos).
        var retiredReported: [String] = []
        if state.convergedAt != nil {
            let live = Set(state.regions.map { $0.replica!.config.id })  // all up when converged
            for region in state.regions {
                let stale = region.replica!.staleness(now: Timestamp(millisecondsSinceEpoch: state.now))
                    .map(\.origin).filter { !live.contains($0) && !region.forgottenOrigins.contains($0) }
                if !stale.isEmpty { retiredReported.append("\(region.name) reports \(stale.count) retired origins") }
            }
        }
        checks.append(.init(
            name: "staleness", passed: retiredReported.isEmpty,
            detail: retiredReported.first ?? (state.convergedAt == nil ? "not checked: no convergence"
                : "every region reports staleness for running origins only")))
        let other = state.violations.filter {
            !["monotonic", "acknowledgement", "overload", "global reads", "slo"].contains(where: $0.hasPrefix)
        }
        let wires = state.messagesByWire.keys.sorted().map { "\(state.messagesByWire[$0]!) at wire v\($0)" }
        checks.append(.init(
            name: "protocol", passed: other.isEmpty,
            detail: other.first ?? "every message decoded, each at its link's wire version "
                + "(\(wires.joined(separator: ", ")))"))
        var staleness: (Int64, Int64, Int64)?
        if !state.staleness.isEmpty {
            let sorted = state.staleness.sorted()
            staleness = (sorted[sorted.count / 2], sorted[min(sorted.count - 1, sorted.count * 99 / 100)], sorted.last!)
        }
        return SimulationResult(
            scenario: self.scenario.name, seed: self.seed, regions: self.scenario.regions, checks: checks,
            timeline: state.timeline, convergenceMillis: state.convergedAt.map { $0 - state.quietStart },
            convergenceRounds: rounds, roundsBound: bound, bytesSent: state.regions.map(\.bytesSent),
            readBytesSent: state.regions.reduce(0) { $0 + $1.readBytesSent },
            deltaBytes: state.regions.reduce(0) { $0 + $1.publishedBytes },
            messagesSent: state.messages, messagesByWire: state.messagesByWire,
            bytesByKind: (state.bytesByKind[0, default: 0], state.bytesByKind[1, default: 0], state.bytesByKind[2, default: 0]),
            eventsAcknowledged: acknowledged, batchesRefused: state.refusedBatches,
            staleness: staleness, simulatedMillis: state.now, traceHash: state.trace.value)
    }

    /// Each `expect_alerts` entry against what the simulated Alertmanager showed.
    func alertProblems(_ state: State) -> [String] {
        var problems: [String] = []
        for expected in self.scenario.expectedAlerts {
            var labels = ["slo": expected.slo, "alertname": expected.alertname]
            if let severity = expected.severity { labels["severity"] = severity }
            if let long = expected.longWindow { labels["long_window"] = long }
            let name = labels.keys.sorted().map { "\($0)=\(labels[$0]!)" }.joined(separator: ",")
            let found = state.alertmanager.matching(labels)
            let firings = found.flatMap { $0.held.transitions.filter(\.firing).map(\.at) }.sorted()
            func at(_ time: Timestamp) -> Duration { .milliseconds(time.millisecondsSinceEpoch - Self.epochMillis) }
            if expected.never {
                if let first = firings.first { problems.append("alerts: {\(name)} fired at \(Self.format(at(first))); expected never") }
                continue
            }
            guard let first = firings.first else {
                problems.append("alerts: {\(name)} never fired")
                continue
            }
            if let after = expected.firesAfter, at(first) < after {
                problems.append("alerts: {\(name)} fired at \(Self.format(at(first))), before \(Self.format(after))")
            }
            if let before = expected.firesBefore, at(first) > before {
                problems.append("alerts: {\(name)} first fired at \(Self.format(at(first))), after \(Self.format(before))")
            }
            if let before = expected.resolvedBefore {
                for (_, held) in found {
                    guard let last = held.transitions.last else { continue }
                    if last.firing || at(last.at) > before {
                        problems.append("alerts: {\(name)} "
                            + (last.firing ? "still firing at the end of the run" : "resolved at \(Self.format(at(last.at)))")
                            + ", expected resolved by \(Self.format(before))")
                    }
                }
            }
            if let partial = expected.partial, found.contains(where: \.held.sawPartial) != partial {
                problems.append("alerts: {\(name)} " + (partial ? "never said its view was partial"
                                                                  : "said its view was partial"))
            }
        }
        return problems
    }
}
