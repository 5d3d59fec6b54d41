import TallyAggregates
import TallyNodeCore
import TallyReplica
import TallySLO
import TallyWorkload

/// A deterministic run of a scenario: the real node core (and the replica inside it) and the real
/// wire encoding, driven by a discrete-event loop in virtual time. Every random choice comes from one seed; there is no
/// wall clock, no sleep and no thread, so a seed replays exactly (`traceHash` shows it).
public struct Simulation {
    public let scenario: Scenario
    public let seed: UInt64
    /// Test only: every region merges replicated counters by adding (see `ReplicaConfig`).
    package var brokenMerge = false
    /// Test only: a starting process is told that every peer agreed its own newest protocol, as a
    /// shell that ignored the handshake would; the checkers must notice in a rolling upgrade.
    package var brokenHandshake = false
    /// Test only: a restore that copies the backup back as it was (its log, its own chain, its
    /// incarnation), as copying the file by hand would; the checkers must notice.
    package var brokenRestore = false

    public init(scenario: Scenario, seed: UInt64) {
        self.scenario = scenario
        self.seed = seed
    }

    /// Virtual time 0 is this wall-clock instant (2026-11-29T00:00:00Z) in every region's clock.
    static let epochMillis: Int64 = 1_795_910_400_000
    /// A group commit collects what was appended this long before it starts.
    static let commitGatherMillis: Int64 = 1
    /// Reads for the monotonic-reads check and staleness percentiles: every 5 gossip rounds, and at
    /// least every 5 s. (Reading totals walks every day bucket: at a 1 s sample, a week-long
    /// scenario spent a tenth of its time here.)
    var sampleEvery: Int64 { max(5_000, 5 * self.scenario.gossipInterval.milliseconds) }

    enum Event {
        case tick(Int, generation: Int, serial: Int)
        case traffic(Int)
        case sync(Int, generation: Int)
        case commitDone(Int, generation: Int, commit: Int)
        /// A message on the connection to the receiver's process `connection` (its generation when
        /// sent): a process that died meanwhile took that connection with it.
        case deliver(to: Int, from: Int, bytes: [UInt8], connection: Int)
        case deliverRead(to: Int, from: Int, bytes: [UInt8], connection: Int)
        case globalRead
        case fault(Int)
        case flap(a: Int, b: Int, cut: Bool, until: Int64, period: Int64)
        case resume(Int, generation: Int)
        case spikeEnd
        case sample
        case endOfFaults
        case check
    }

    /// One region: its process (the node core and its clock), its disk, its clients.
    struct Region {
        let name: String
        var node: NodeCore?
        /// The incarnation the identity file beside the store names (kept when only the store is lost).
        var identityFile: UInt64?
        /// The highest incarnation this region ever started as: a fresh one is above it (in a
        /// real node, the clock supplies a fresh one).
        var incarnationsUsed: UInt64 = 0
        /// Own origins this region forgot with its whole data directory (store and identity file):
        /// nothing tells the new process they were its own, so it may still report them as behind.
        var forgottenOrigins: Set<ReplicaID> = []
        /// Bumped when the process dies: events scheduled for the old process are void.
        var generation = 0
        /// The peer protocols of the release the process runs (a rolling upgrade changes it).
        var release: ClosedRange<UInt16>
        /// Bumped by every `.scheduleTick`: only the latest scheduled tick fires.
        var tickSerial = 0
        var pausedUntil: Int64?
        var lastPauseEnd: Int64 = .min
        var disk = Disk()
        var syncScheduled = false
        /// Batches admitted and not yet answered: their log entry's sequence (nil: no entry) and
        /// accepted events per service.
        var unanswered: [BatchID: (sequence: UInt64?, services: [Int: UInt64])] = [:]
        /// Global reads waiting here: when each started (virtual ms) and whether it is the final
        /// read after convergence.
        var reads: [UInt64: (started: Int64, final: Bool)] = [:]
        var clockOffsetMillis: Int64 = 0
        var driftPPM: Double = 0
        var trafficOn = true
        /// Totals read in this process's lifetime, which must never go down.
        var lastRead: UInt64 = 0
        /// Replication bytes and messages sent (global reads are counted apart: they are not the
        /// cost of replicating an update).
        var bytesSent = 0
        var messagesSent = 0
        var readBytesSent = 0
        /// Own batch bytes published by the region's earlier processes (the replica counts its own).
        var publishedBefore: UInt64 = 0
        /// The last `backup` of its store: the durable image and log.
        var backup: Disk?

        var replica: Replica? { self.node?.replica }

        var publishedBytes: UInt64 { self.publishedBefore + (self.replica?.publishedBatchBytes ?? 0) }

        var isUp: Bool { self.node != nil }
    }

    /// What a region's disk holds: the store (the checkpointed image, the durable log after it, the
    /// incarnation it was created for) and the writes still under way, which a crash loses.
    struct Disk {
        var image = ReplicaSnapshot()
        /// Durable entries after the image, by sequence; may have gaps above `durablePrefix`.
        var log: [LogEntry] = []
        /// Every sequence through this one is durable (in the image or the log).
        var durablePrefix: UInt64 = 0
        var durableAhead: Set<UInt64> = []
        /// Appended, not yet in a commit.
        var queued: [LogEntry] = []
        /// Commits under way, by id.
        var commits: [Int: [LogEntry]] = [:]
        var nextCommit = 0
        /// Checkpoints waiting for the log they cover to be durable, in the order taken.
        var checkpoints: [Checkpoint] = []
        var epoch: UInt32 = 0
        /// The incarnation the store records (nil: a new, empty store).
        var incarnation: UInt64?

        func isDurable(_ sequence: UInt64) -> Bool {
            sequence <= self.durablePrefix || self.durableAhead.contains(sequence)
        }
    }

    struct State {
        var now: Int64 = 0
        var queue = EventQueue<Event>()
        var regions: [Region]
        var random: SeededRandom
        var workload: Workload
        var cut: [[Bool]]
        var held: [[Bool]]
        var heldMessages: [(to: Int, from: Int, bytes: [UInt8], read: Bool, connection: Int)] = []
        var loss: Double
        var duplication: Double
        var spike = 1.0
        var acknowledged: [Int: UInt64] = [:]
        /// Events durable but never acknowledged when their process died: counted, at most once.
        var inDoubt: [Int: UInt64] = [:]
        var refusedBatches = 0
        var overloadRefusals = 0
        var mostPending = 0
        var readsStarted = 0
        var readsComplete = 0
        var readsMissing = 0
        var finalReadsWaiting = 0
        var finalReadsDone = 0
        var trace = XXH3Stream()
        var timeline: [String] = []
        var staleness: [Int64] = []
        var violations: [String] = []
        var largestBuffer = 0
        var largestUnpublished = 0
        var mostHeld = 0
        var faultsOver = false
        var quietStart: Int64 = 0
        var convergedAt: Int64?
        var messages = 0
        /// Replication messages sent, by wire version.
        var messagesByWire: [UInt8: Int] = [:]
        /// Replication bytes sent by message kind (the frame's kind byte: 0 digest, 1 deltas,
        /// 2 state chunk).
        var bytesByKind: [UInt8: Int] = [:]
        var names: Names
        /// One-way base latency (ms) per region pair, from the scenario or the defaults.
        var latency: [[Int64]] = []
        /// Where every region's alerts go, and the error bursts under way (rate, until) by region.
        var alertmanager = SimulatedAlertmanager()
        var errorBursts: [Int: (rate: Double, until: Int64)] = [:]
        var sloEvaluations = 0
    }

    /// The workload's names, built once: formatting them per event showed in the profile.
    struct Names {
        let services: [String]
        let operations: [String]
        let serviceIndex: [String: Int]
        private var users: [Int: UserID] = [:]

        init(_ traffic: Scenario.Traffic) {
            self.services = (0..<traffic.services).map { "svc-\($0)" }
            self.operations = (0..<traffic.operations).map { "op-\($0)" }
            self.serviceIndex = Dictionary(uniqueKeysWithValues: self.services.enumerated().map { ($1, $0) })
        }

        mutating func user(_ rank: Int) -> UserID {
            if let known = self.users[rank] { return known }
            let user = UserID("user-\(rank)")
            self.users[rank] = user
            return user
        }
    }

    public func run() -> SimulationResult {
        let regions = self.scenario.regions.map { Region(name: $0, release: self.scenario.node.startProtocols) }
        var state = State(
            regions: regions, random: SeededRandom(seed: self.seed),
            workload: Workload(services: self.scenario.traffic.services, operations: self.scenario.traffic.operations,
                               users: self.scenario.traffic.users),
            cut: Array(repeating: Array(repeating: false, count: regions.count), count: regions.count),
            held: Array(repeating: Array(repeating: false, count: regions.count), count: regions.count),
            loss: self.scenario.network.loss, duplication: self.scenario.network.duplication,
            names: Names(self.scenario.traffic))
        let names = self.scenario.regions
        state.latency = names.map { from in
            names.map { to in
                (self.scenario.network.latency["\(from)->\(to)"] ?? Scenario.defaultLatency(from, to)).milliseconds
            }
        }
        for index in state.regions.indices {
            self.start(index, &state)
            // Stagger the first batches too.
            state.queue.schedule(.traffic(index), at: Int64(state.random.next() % 100))
        }
        for (index, fault) in self.scenario.faults.enumerated() {
            state.queue.schedule(.fault(index), at: fault.at.milliseconds)
        }
        state.queue.schedule(.sample, at: self.sampleEvery)
        if let every = self.scenario.node.globalReadsEvery {
            state.queue.schedule(.globalRead, at: every.milliseconds)
        }
        state.queue.schedule(.endOfFaults, at: self.scenario.duration.milliseconds)
        let end = (self.scenario.duration + self.scenario.quiet).milliseconds
        // After convergence, a global read at every region; they finish within their timeout.
        let finalReadsEnd = end + NodeCore.Config().globalReadTimeout.milliseconds + 1_000
        while let (time, event) = state.queue.next(), time <= (state.convergedAt == nil ? end : finalReadsEnd) {
            state.now = time
            self.handle(event, &state)
            if state.convergedAt != nil && state.finalReadsWaiting == 0 { break }
        }
        if state.convergedAt != nil && state.finalReadsWaiting > 0 {
            state.violations.append("global reads: \(state.finalReadsWaiting) final reads never completed")
        }
        return self.result(state)
    }

    // MARK: - Processes

    private func config(_ index: Int, incarnation: UInt64, _ state: State) -> ReplicaConfig {
        let region = state.regions[index]
        var config = ReplicaConfig(
            id: ReplicaID(region: region.name, node: "n1", incarnation: incarnation),
            tickInterval: self.scenario.gossipInterval,
            peers: self.scenario.regions.filter { $0 != region.name }, gossipInterval: self.scenario.gossipInterval,
            versionEpoch: region.disk.epoch, seed: self.seed &+ UInt64(index))
        config.brokenMergeForTesting = self.brokenMerge
        config.limits.replicationBufferBytesMax = self.scenario.replicationBufferBytes
        // An older release reads and writes only the wire versions its protocols carry.
        config.wireVersions = 1...NodeCore.wireVersion(forProtocol: region.release.upperBound)
        return config
    }

    /// The protocol the connection between two regions' processes agrees (their hellos): the
    /// highest both releases speak. Every release the scenarios use shares protocol 1.
    private func agreed(_ a: Int, _ b: Int, _ state: State) -> UInt16 {
        min(state.regions[a].release.upperBound, state.regions[b].release.upperBound)
    }

    /// Starts (or restarts) the region's process from its disk, as the node does: the identity
    /// the store and the identity file agree on, the image, the log after it.
    private func start(_ index: Int, _ state: inout State) {
        state.regions[index].disk.epoch += 1
        let disk = state.regions[index].disk
        // A fresh incarnation, when one is needed: above any this region had (deterministic).
        let fresh = state.regions[index].incarnationsUsed + 1
        let decision = Incarnation.choose(
            stored: disk.incarnation, storeHoldsData: disk.image.sequence > 0 || !disk.log.isEmpty,
            identityFile: state.regions[index].identityFile, fresh: fresh)
        if case .new(_, let reason) = decision, state.regions[index].identityFile != nil {
            state.timeline.append("\(Self.format(.milliseconds(state.now))): \(state.regions[index].name) starts as a new origin: \(reason)")
        }
        state.regions[index].incarnationsUsed = max(state.regions[index].incarnationsUsed, decision.incarnation)
        // The origin the identity file named, when the process starts as another (as the node's
        // `identity` reports it): retired in the origin directory.
        let ranBefore = state.regions[index].identityFile.flatMap { $0 == decision.incarnation ? nil : [
            self.config(index, incarnation: $0, state).id] } ?? []
        state.regions[index].disk.incarnation = decision.incarnation
        state.regions[index].identityFile = decision.incarnation
        var replica = Replica(config: self.config(index, incarnation: decision.incarnation, state), restoring: disk.image)
        for entry in disk.log { replica.replay(entry) }
        state.regions[index].disk.durablePrefix = replica.lastSequence
        state.regions[index].disk.durableAhead = []
        let now = self.localTime(index, state)
        var node = NodeCore(
            replica: replica,
            config: NodeCore.Config(pendingBatchesMax: self.scenario.node.pendingBatchesMax,
                                    checkpointInterval: self.scenario.checkpointInterval),
            imageTakenAt: disk.image.takenAt, now: now, region: state.regions[index].name, ranBefore: ranBefore)
        // Every start loads the scenario's SLOs; the first tick (scheduled below) evaluates them.
        for case .sendAlerts in node.setSLOs(self.scenario.slos, now: now) {
            preconditionFailure("a starting process has no alerts to resolve")
        }
        // Its connections come up at once, at the protocol each pair agrees; every peer that is up
        // sees the new connection too (after an upgrade, at a newer protocol).
        for (peer, name) in self.scenario.regions.enumerated() where peer != index {
            let version = self.brokenHandshake ? state.regions[index].release.upperBound : self.agreed(index, peer, state)
            // The hello names the peer's origin; a peer that is down sends none yet.
            _ = node.peerConnected(name, protocolVersion: version, origin: state.regions[peer].replica?.config.id, now: now)
        }
        state.regions[index].node = node
        for peer in state.regions.indices where peer != index && state.regions[peer].isUp {
            let version = self.agreed(index, peer, state)
            let peerNow = self.localTime(peer, state)
            let name = state.regions[index].name
            let origin = node.replica.config.id
            let actions = Self.mutate(&state.regions[peer]) {
                $0.peerConnected(name, protocolVersion: version, origin: origin, now: peerNow)
            }
            self.carryOut(actions, from: peer, &state)
        }
        state.regions[index].lastRead = 0
        state.regions[index].pausedUntil = nil
        // Stagger the first tick so regions do not act in lockstep.
        self.scheduleTick(index, at: state.now + Int64(state.random.next() % UInt64(self.scenario.gossipInterval.milliseconds)),
                          &state)
    }

    private func scheduleTick(_ index: Int, at time: Int64, _ state: inout State) {
        state.regions[index].tickSerial += 1
        state.queue.schedule(.tick(index, generation: state.regions[index].generation,
                                   serial: state.regions[index].tickSerial), at: time)
    }

    /// The process dies. Writes under way are lost; a batch whose entry was already durable but
    /// not yet acknowledged is "in doubt": counted once, though its client was never told.
    private func crash(_ index: Int, losingStore: Bool = false, _ state: inout State) {
        guard state.regions[index].isUp else { return }
        if !losingStore {
            for (_, batch) in state.regions[index].unanswered {
                guard let sequence = batch.sequence, state.regions[index].disk.isDurable(sequence) else { continue }
                for (service, count) in batch.services { state.inDoubt[service, default: 0] += count }
            }
        }
        state.regions[index].publishedBefore = state.regions[index].publishedBytes
        state.regions[index].node = nil
        state.regions[index].generation += 1
        state.regions[index].disk.queued = []
        state.regions[index].disk.commits = [:]
        state.regions[index].disk.checkpoints = []
        state.regions[index].unanswered = [:]  // never acknowledged: the clients were not told
        state.regions[index].reads = [:]
        state.regions[index].syncScheduled = false
    }

    /// Runs `body` on the region's node core, moved out of its optional and back: mutating it through
    /// `node!` copied the whole value in and out on every call. The region MUST be up.
    @inline(__always)
    static func mutate<Result>(_ region: inout Region, _ body: (inout NodeCore) -> Result) -> Result {
        var node = region.node.take()!  // callers check isUp
        let result = body(&node)
        region.node = node
        return result
    }

    /// The region's clock: virtual time plus its offset and drift.
    private func localTime(_ index: Int, _ state: State) -> Timestamp {
        let region = state.regions[index]
        let drift = Int64((Double(state.now) * region.driftPPM / 1_000_000).rounded())
        return Timestamp(millisecondsSinceEpoch: Self.epochMillis + state.now + region.clockOffsetMillis + drift)
    }

    private func isPaused(_ index: Int, _ state: State) -> Bool {
        state.regions[index].pausedUntil.map { $0 > state.now } ?? false
    }

    // MARK: - The loop

    private func handle(_ event: Event, _ state: inout State) {
        switch event {
        case .tick(let index, let generation, let serial):
            guard state.regions[index].generation == generation, state.regions[index].isUp,
                state.regions[index].tickSerial == serial
            else { return }
            if let until = state.regions[index].pausedUntil, until > state.now {
                state.queue.schedule(.tick(index, generation: generation, serial: serial), at: until)
                return
            }
            let now = self.localTime(index, state)
            let actions = Self.mutate(&state.regions[index]) { $0.tick(now: now) }
            state.trace.add(1, UInt64(index), UInt64(bitPattern: state.now))
            self.carryOut(actions, from: index, &state)
        case .traffic(let index):
            self.sendTraffic(index, &state)
        case .sync(let index, let generation):
            guard state.regions[index].generation == generation, state.regions[index].isUp else { return }
            self.sync(index, &state)
        case .commitDone(let index, let generation, let commit):
            guard state.regions[index].generation == generation, state.regions[index].isUp else { return }
            self.commitDone(index, commit: commit, &state)
        case .deliver(let to, let from, let bytes, let connection):
            self.deliver(bytes, to: to, from: from, read: false, connection: connection, &state)
        case .deliverRead(let to, let from, let bytes, let connection):
            self.deliver(bytes, to: to, from: from, read: true, connection: connection, &state)
        case .globalRead:
            guard !state.faultsOver, let every = self.scenario.node.globalReadsEvery else { return }
            state.queue.schedule(.globalRead, at: state.now + every.milliseconds)
            let index = Int(state.random.next() % UInt64(state.regions.count))
            self.startGlobalRead(at: index, final: false, &state)
        case .fault(let position):
            self.apply(self.scenario.faults[position], &state)
        case .flap(let a, let b, let cut, let until, let period):
            guard !state.faultsOver else { return }
            state.cut[a][b] = cut
            state.cut[b][a] = cut
            if state.now + period < until {
                state.queue.schedule(.flap(a: a, b: b, cut: !cut, until: until, period: period), at: state.now + period)
            } else {
                state.cut[a][b] = false
                state.cut[b][a] = false
            }
        case .resume(let index, let generation):
            guard state.regions[index].generation == generation else { return }
            state.regions[index].pausedUntil = nil
            state.regions[index].lastPauseEnd = state.now
        case .spikeEnd:
            state.spike = 1
        case .sample:
            self.sample(&state)
            if !state.faultsOver { state.queue.schedule(.sample, at: state.now + self.sampleEvery) }
        case .endOfFaults:
            self.endFaults(&state)
        case .check:
            if self.converged(state) {
                state.convergedAt = state.now
                for index in state.regions.indices { self.startGlobalRead(at: index, final: true, &state) }
            } else {
                state.queue.schedule(.check, at: state.now + self.scenario.gossipInterval.milliseconds / 4)
            }
        }
    }

    private func sendTraffic(_ index: Int, _ state: inout State) {
        guard !state.faultsOver else { return }
        let traffic = self.scenario.traffic
        let perRegion = traffic.eventsPerSecond / Double(state.regions.count) * state.spike
        if perRegion > 0 {
            let interval = max(1, Int64((Double(traffic.batch) / perRegion * 1_000).rounded()))
            state.queue.schedule(.traffic(index), at: state.now + interval)
        }
        guard state.regions[index].trafficOn, state.regions[index].isUp, !self.isPaused(index, state) else {
            state.refusedBatches += 1
            return
        }
        let now = self.localTime(index, state)
        var items: [BatchItem] = []
        items.reserveCapacity(traffic.batch)
        // Extra draws only when a scenario sets an error rate: the other scenarios' runs stay as they were.
        let burst = state.errorBursts[index].flatMap { $0.until > state.now ? $0.rate : nil }
        for _ in 0..<traffic.batch {
            var request = state.workload.request(using: &state.random)
            if let rate = burst ?? traffic.errorRate {
                let failed = state.random.nextUnit() < rate
                request.status = failed ? 500 : (request.status >= 500 ? 200 : request.status)
            }
            items.append(.event(TallyReplica.Event(
                service: state.names.services[request.service], operation: state.names.operations[request.operation],
                status: request.status, latencyMicros: Double(request.latencyMicros),
                userID: state.names.user(request.user),
                timestamp: now - .milliseconds(Int64(state.random.next() % 2_000)))))
        }
        let batch = EventBatch(id: BatchID(state.random.next()), client: "client-\(index)", items: items)
        let sequenceBefore = state.regions[index].replica!.lastSequence  // isUp checked
        let actions = Self.mutate(&state.regions[index]) { $0.ingest(batch, now: now) }
        state.trace.add(2, UInt64(index), UInt64(bitPattern: state.now))
        var services: [Int: UInt64] = [:]
        var sequence: UInt64?
        for case .persist(let entry) in actions {
            for event in entry.events { services[state.names.serviceIndex[event.service]!, default: 0] += 1 }
            sequence = entry.sequence
        }
        if state.regions[index].replica!.lastSequence == sequenceBefore { sequence = nil }
        state.regions[index].unanswered[batch.id] = (sequence, services)
        state.mostPending = max(state.mostPending, state.regions[index].node!.pendingCount)
        if state.regions[index].node!.pendingCount > self.scenario.node.pendingBatchesMax {
            state.violations.append("overload: \(state.regions[index].name) holds \(state.regions[index].node!.pendingCount) "
                + "batches waiting for the disk, over its bound of \(self.scenario.node.pendingBatchesMax)")
        }
        self.carryOut(actions, from: index, &state)
    }

    /// A group commit starts: everything appended so far goes to the disk together, and finishes
    /// after the disk's commit time and jitter (so a later commit may finish first).
    private func sync(_ index: Int, _ state: inout State) {
        state.regions[index].syncScheduled = false
        let entries = state.regions[index].disk.queued
        guard !entries.isEmpty else { return }
        state.regions[index].disk.queued = []
        let id = state.regions[index].disk.nextCommit
        state.regions[index].disk.nextCommit += 1
        state.regions[index].disk.commits[id] = entries
        let jitter = self.scenario.disk.commitJitter.milliseconds
        let latency = self.scenario.disk.commit.milliseconds + (jitter > 0 ? Int64(state.random.next() % UInt64(jitter + 1)) : 0)
        state.queue.schedule(.commitDone(index, generation: state.regions[index].generation, commit: id),
                             at: state.now + max(1, latency))
    }

    /// A group commit finished: its entries are durable; the core releases what this covers, and
    /// checkpoints whose log is now durable are stored.
    private func commitDone(_ index: Int, commit: Int, _ state: inout State) {
        guard let entries = state.regions[index].disk.commits.removeValue(forKey: commit),
            let first = entries.first?.sequence, let last = entries.last?.sequence
        else { return }
        var disk = state.regions[index].disk
        let position = disk.log.firstIndex { $0.sequence > first } ?? disk.log.endIndex
        disk.log.insert(contentsOf: entries, at: position)
        for entry in entries where entry.sequence > disk.durablePrefix { disk.durableAhead.insert(entry.sequence) }
        while disk.durableAhead.remove(disk.durablePrefix + 1) != nil { disk.durablePrefix += 1 }
        state.regions[index].disk = disk
        let now = self.localTime(index, state)
        let actions = Self.mutate(&state.regions[index]) { $0.persisted(first...last, now: now) }
        state.trace.add(4, UInt64(index), UInt64(bitPattern: state.now), last)
        self.carryOut(actions, from: index, &state)
        self.storeReadyCheckpoints(index, &state)
    }

    /// Stores the waiting checkpoints whose log entries are all durable, in order (the store's rule).
    private func storeReadyCheckpoints(_ index: Int, _ state: inout State) {
        while let checkpoint = state.regions[index].disk.checkpoints.first,
            checkpoint.sequence <= state.regions[index].disk.durablePrefix
        {
            state.regions[index].disk.checkpoints.removeFirst()
            state.regions[index].disk.image.apply(checkpoint)
            state.regions[index].disk.log.removeAll { $0.sequence <= checkpoint.sequence }
            let now = self.localTime(index, state)
            let actions = Self.mutate(&state.regions[index]) { $0.checkpointStored(checkpoint.sequence, now: now) }
            self.carryOut(actions, from: index, &state)
        }
    }

    /// Carries out a node core's actions, checking what the simulator can see of them.
    private func carryOut(_ actions: [NodeCore.Action], from index: Int, _ state: inout State) {
        for action in actions {
            switch action {
            case .persist(let entry):
                state.regions[index].disk.queued.append(entry)
                if !state.regions[index].syncScheduled {
                    state.regions[index].syncScheduled = true
                    state.queue.schedule(.sync(index, generation: state.regions[index].generation),
                                         at: state.now + Self.commitGatherMillis)
                }
            case .acknowledge(let batch, _, _, let durableThrough):
                guard let answered = state.regions[index].unanswered.removeValue(forKey: batch) else {
                    state.violations.append("acknowledgement: \(batch) at \(state.regions[index].name) answered twice or never sent")
                    continue
                }
                let disk = state.regions[index].disk
                if durableThrough > disk.durablePrefix || answered.sequence.map({ !disk.isDurable($0) || $0 > durableThrough }) == true {
                    state.violations.append("acknowledgement: \(batch) at \(state.regions[index].name) acknowledged "
                        + "through \(durableThrough) while the disk is durable through \(disk.durablePrefix)")
                }
                for (service, count) in answered.services { state.acknowledged[service, default: 0] += count }
            case .refuse(let batch, let refusal):
                state.regions[index].unanswered.removeValue(forKey: batch)
                state.refusedBatches += 1
                if case .overloaded = refusal { state.overloadRefusals += 1 }
            case .send(let bytes, let peer, let version):
                self.checkWire(bytes, to: peer, from: index, protocolVersion: version, &state)
                self.send(bytes, to: peer, from: index, read: false, &state)
            case .askRead(let bytes, let peer, _), .answerRead(let bytes, let peer):
                self.send(bytes, to: peer, from: index, read: true, &state)
            case .completeRead(let read):
                self.completed(read, at: index, &state)
            case .storeCheckpoint(let checkpoint):
                state.regions[index].disk.checkpoints.append(checkpoint)
                self.storeReadyCheckpoints(index, &state)
            case .scheduleTick(let at):
                let delay = (at - self.localTime(index, state)).milliseconds
                self.scheduleTick(index, at: state.now + max(1, delay), &state)
            case .evaluateSLOs(let request):
                // In line: the node runs the same evaluation off its actor on a snapshot.
                let evaluation = request.evaluate(on: state.regions[index].replica!)  // acting means up
                state.sloEvaluations += 1
                for failure in evaluation.failures {
                    state.violations.append("slo: \(state.regions[index].name) could not evaluate \(failure.slo): \(failure.reason)")
                }
                let now = self.localTime(index, state)
                let actions = Self.mutate(&state.regions[index]) { $0.slosEvaluated(evaluation, now: now) }
                self.carryOut(actions, from: index, &state)
            case .sendAlerts(let alerts):
                state.trace.add(7, UInt64(index), UInt64(bitPattern: state.now), UInt64(alerts.count))
                self.alertmanagerReceives(alerts, from: index, &state)
            }
        }
    }

    /// Rolling upgrades: a replication message is tagged with the protocol its link agreed, and
    /// encoded at the wire version that protocol carries, or the peer may misread it.
    private func checkWire(_ bytes: [UInt8], to peer: String, from index: Int, protocolVersion: UInt16,
                           _ state: inout State)
    {
        guard let to = self.scenario.regions.firstIndex(of: peer) else { return }
        let agreed = self.agreed(index, to, state)
        let wire = bytes.count > 1 ? bytes[1] : 0
        state.messagesByWire[wire, default: 0] += 1
        if protocolVersion != agreed || wire != NodeCore.wireVersion(forProtocol: agreed) {
            state.violations.append("wire versions: \(state.regions[index].name) sent \(peer) a message at wire "
                + "version \(wire) tagged protocol \(protocolVersion); their connection agreed protocol \(agreed), "
                + "which carries wire version \(NodeCore.wireVersion(forProtocol: agreed))")
        }
    }

    /// Puts a message on the simulated network: cut, held, lost or duplicated as the faults say.
    private func send(_ bytes: [UInt8], to peer: String, from index: Int, read: Bool, _ state: inout State) {
        guard let to = self.scenario.regions.firstIndex(of: peer) else { return }
        if read {
            state.regions[index].readBytesSent += bytes.count
        } else {
            state.regions[index].bytesSent += bytes.count
            if bytes.count > 2 { state.bytesByKind[bytes[2], default: 0] += bytes.count }
            state.regions[index].messagesSent += 1
            state.messages += 1
        }
        if state.cut[index][to] { return }
        let connection = state.regions[to].generation
        if state.held[index][to] {
            state.heldMessages.append((to, index, bytes, read, connection))
            state.mostHeld = max(state.mostHeld, state.heldMessages.count)
            return
        }
        if state.random.nextUnit() < state.loss { return }
        let copies = state.random.nextUnit() < state.duplication ? 2 : 1
        for _ in 0..<copies { self.transmit(bytes, to: to, from: index, read: read, connection: connection, &state) }
    }

    private func transmit(_ bytes: [UInt8], to: Int, from: Int, read: Bool, connection: Int, _ state: inout State) {
        let base = state.latency[from][to]
        let delay = Int64((Double(base) * (1 + self.scenario.network.jitter * state.random.nextUnit())).rounded())
        self.schedule(bytes, to: to, from: from, read: read, connection: connection, at: state.now + max(1, delay), &state)
    }

    private func schedule(_ bytes: [UInt8], to: Int, from: Int, read: Bool, connection: Int, at time: Int64,
                          _ state: inout State)
    {
        state.queue.schedule(read ? .deliverRead(to: to, from: from, bytes: bytes, connection: connection)
                                  : .deliver(to: to, from: from, bytes: bytes, connection: connection), at: time)
    }

    private func deliver(_ bytes: [UInt8], to: Int, from: Int, read: Bool, connection: Int, _ state: inout State) {
        // The receiving process died since: the connection the message was on is gone.
        guard state.regions[to].isUp, state.regions[to].generation == connection else { return }
        if let until = state.regions[to].pausedUntil, until > state.now {
            self.schedule(bytes, to: to, from: from, read: read, connection: connection, at: until, &state)
            return
        }
        let now = self.localTime(to, state)
        let peer = self.scenario.regions[from]
        let actions: [NodeCore.Action]
        if read {
            let (readActions, refused) = Self.mutate(&state.regions[to]) { $0.receivedRead(bytes, from: peer, now: now) }
            // A late answer (its read already completed at the deadline) is refused by design.
            if let refused, !refused.hasPrefix("an answer to no read") {
                state.violations.append("a read frame a node encoded was refused at \(self.scenario.regions[to]): \(refused)")
            }
            actions = readActions
        } else {
            let (messageActions, refused) = Self.mutate(&state.regions[to]) { node in
                let before = node.replica.refusedMessages
                return (node.received(bytes, from: peer, now: now), node.replica.refusedMessages > before)
            }
            if refused {
                state.violations.append("a message a replica encoded did not decode at \(self.scenario.regions[to])")
            }
            actions = messageActions
        }
        state.trace.add(read ? 5 : 3, UInt64(to), UInt64(bitPattern: state.now), XXH3.hash(bytes))
        self.carryOut(actions, from: to, &state)
    }

    // MARK: - Global reads

    /// The query every simulated global read asks: one service, the last hour, every metric kind.
    private func readQuery(at index: Int, _ state: inout State) -> Query {
        let now = self.localTime(index, state)
        let service = state.names.services[Int(state.random.next() % UInt64(state.names.services.count))]
        return Query(service: service, from: now - .seconds(3_600), to: now + .seconds(60), groupBy: [.status],
                     metrics: [.count, .errors, .quantile(0.99), .uniqueUsers])
    }

    private func startGlobalRead(at index: Int, final: Bool, _ state: inout State) {
        guard state.regions[index].isUp, !self.isPaused(index, state) else { return }
        let query = self.readQuery(at: index, &state)
        let now = self.localTime(index, state)
        let started: Result<(id: UInt64, actions: [NodeCore.Action]), NodeCore.GlobalReadRefusal> =
            Self.mutate(&state.regions[index]) { node in
                do throws(NodeCore.GlobalReadRefusal) {
                    return .success(try node.startGlobalRead(query, now: now))
                } catch {
                    return .failure(error)
                }
            }
        switch started {
        case .success(let (id, actions)):
            state.readsStarted += 1
            if final { state.finalReadsWaiting += 1 }
            state.regions[index].reads[id] = (state.now, final)
            state.trace.add(6, UInt64(index), UInt64(bitPattern: state.now))
            self.carryOut(actions, from: index, &state)
        case .failure(.busy):
            break  // bounded by design; a final read is never refused (reads before it completed)
        case .failure(.query(let error)):
            state.violations.append("global reads: \(state.regions[index].name) refused its own query: \(error)")
        }
    }

    /// A global read completed: by its deadline (unless the process was paused meanwhile), and,
    /// when every region answered after convergence, equal to the region's converged local answer.
    private func completed(_ read: NodeCore.GlobalRead, at index: Int, _ state: inout State) {
        guard let started = state.regions[index].reads.removeValue(forKey: read.id) else { return }
        state.readsComplete += 1
        if !read.missing.isEmpty { state.readsMissing += 1 }
        let timeout = NodeCore.Config().globalReadTimeout.milliseconds
        if state.now - started.started > timeout, state.regions[index].lastPauseEnd < started.started {
            state.violations.append("global reads: read \(read.id) at \(state.regions[index].name) completed "
                + "\(state.now - started.started) ms after it started, past its \(timeout) ms deadline")
        }
        guard started.final else { return }
        state.finalReadsWaiting -= 1
        let replica = state.regions[index].replica!  // completing here means it is up
        let now = self.localTime(index, state)
        guard read.missing.isEmpty else {
            // On a lossy network a request or an answer may be lost: named missing, as it must be.
            if self.scenario.network.loss == 0 {
                state.violations.append("global reads: after convergence on a loss-free network "
                    + "\(state.regions[index].name) missed \(read.missing)")
            }
            return
        }
        do {
            let joined = try replica.query(read.query, now: now, joining: read.answers.map(\.answer))
            let local = try replica.query(read.query, now: now)
            if joined != local {
                state.violations.append("global reads: at \(state.regions[index].name) the joined answer differs from "
                    + "the converged local one for \(read.query.service)")
            }
            state.finalReadsDone += 1
        } catch {
            state.violations.append("global reads: \(error)")
        }
    }

    // MARK: - Faults

    private func apply(_ fault: Scenario.Fault, _ state: inout State) {
        let names = self.scenario.regions
        func index(_ name: String) -> Int { names.firstIndex(of: name)! }  // the parser checked every name
        state.timeline.append("\(Self.format(fault.at)): \(Self.describe(fault.action))")
        switch fault.action {
        case .partition(let groups):
            for a in groups.indices {
                for b in groups.indices where a != b {
                    for x in groups[a] { for y in groups[b] { state.cut[index(x)][index(y)] = true } }
                }
            }
        case .oneWay(let from, let to):
            for x in from { for y in to where x != y { state.cut[index(x)][index(y)] = true } }
        case .heal:
            self.heal(&state)
        case .flap(let a, let b, let period, let until):
            state.queue.schedule(.flap(a: index(a), b: index(b), cut: true, until: until.milliseconds,
                                       period: period.milliseconds), at: state.now)
        case .hold(let from, let to):
            for x in from { for y in to where x != y { state.held[index(x)][index(y)] = true } }
        case .release:
            self.release(&state)
        case .loss(let rate):
            state.loss = rate
        case .duplication(let rate):
            state.duplication = rate
        case .crash(let name):
            self.crash(index(name), &state)
        case .restart(let name):
            if !state.regions[index(name)].isUp { self.start(index(name), &state) }
        case .diskLoss(let name):
            let region = index(name)
            self.crash(region, losingStore: true, &state)
            let lost = state.regions[region].disk
            state.regions[region].disk = Disk()
            state.regions[region].disk.epoch = lost.epoch
            if let incarnation = lost.incarnation {
                state.regions[region].forgottenOrigins.insert(self.config(region, incarnation: incarnation, state).id)
            }
            state.regions[region].identityFile = nil  // the whole data directory is gone
            self.start(region, &state)
        case .storeLoss(let name):
            let region = index(name)
            self.crash(region, losingStore: true, &state)
            let lost = state.regions[region].disk
            state.regions[region].disk = Disk()  // the identity file beside it stays
            state.regions[region].disk.epoch = lost.epoch
            self.start(region, &state)
        case .backup(let name):
            let region = index(name)
            let disk = state.regions[region].disk
            var copy = Disk()
            copy.image = disk.image
            copy.log = disk.log.filter { disk.isDurable($0.sequence) }
            copy.incarnation = disk.incarnation
            state.regions[region].backup = copy
        case .restore(let name):
            let region = index(name)
            guard let backup = state.regions[region].backup else {
                preconditionFailure("the scenario parser refuses a restore without a backup before it")
            }
            self.crash(region, losingStore: true, &state)
            let epoch = state.regions[region].disk.epoch
            var restored = Disk()
            restored.image = Restore.image(
                ofBackup: backup.image,
                origin: self.config(region, incarnation: backup.incarnation ?? 0, state).id, region: name)
            restored.epoch = epoch
            var incarnation = Restore.incarnation(replacing: backup.incarnation,
                                                  fresh: state.regions[region].incarnationsUsed + 1)
            if self.brokenRestore {
                restored = backup
                restored.epoch = epoch
                restored.durablePrefix = backup.log.last?.sequence ?? backup.image.sequence
                incarnation = backup.incarnation ?? incarnation
            }
            restored.incarnation = incarnation
            state.regions[region].disk = restored
            state.regions[region].identityFile = incarnation
            state.timeline.append("\(Self.format(fault.at)): \(name) restored as incarnation \(incarnation), "
                + "\(self.brokenRestore ? 0 : backup.log.count) log entries after the backup's checkpoint dropped")
            self.start(region, &state)
        case .upgrade(let name), .downgrade(let name):
            let region = index(name)
            if case .upgrade = fault.action {
                state.regions[region].release = NodeCore.protocols
            } else {
                state.regions[region].release = self.scenario.node.startProtocols
            }
            self.crash(region, &state)
            self.start(region, &state)
        case .pause(let name, let duration):
            let region = index(name)
            state.regions[region].pausedUntil = state.now + duration.milliseconds
            state.queue.schedule(.resume(region, generation: state.regions[region].generation),
                                 at: state.now + duration.milliseconds)
        case .clockOffset(let name, let by):
            state.regions[index(name)].clockOffsetMillis += by.milliseconds
        case .clockDrift(let name, let ppm):
            state.regions[index(name)].driftPPM = ppm
        case .spike(let factor, let duration):
            state.spike = factor
            state.queue.schedule(.spikeEnd, at: state.now + duration.milliseconds)
        case .errors(let name, let rate, let duration):
            state.errorBursts[index(name)] = (rate, state.now + duration.milliseconds)
        case .stopTraffic(let name):
            state.regions[index(name)].trafficOn = false
        case .startTraffic(let name):
            state.regions[index(name)].trafficOn = true
        }
    }

    private func heal(_ state: inout State) {
        let count = state.regions.count
        state.cut = Array(repeating: Array(repeating: false, count: count), count: count)
        self.release(&state)
        state.loss = self.scenario.network.loss
        state.duplication = self.scenario.network.duplication
    }

    private func release(_ state: inout State) {
        let count = state.regions.count
        state.held = Array(repeating: Array(repeating: false, count: count), count: count)
        let held = state.heldMessages
        state.heldMessages = []
        for message in held {
            self.transmit(message.bytes, to: message.to, from: message.from, read: message.read,
                          connection: message.connection, &state)
        }
    }

    /// The end of the scenario's duration: every fault heals, every region runs, traffic stops.
    private func endFaults(_ state: inout State) {
        state.timeline.append("\(Self.format(self.scenario.duration)): faults end, traffic stops, quiet period")
        state.faultsOver = true
        self.heal(&state)
        for index in state.regions.indices {
            if !state.regions[index].isUp { self.start(index, &state) }
            state.regions[index].pausedUntil = nil
        }
        // Let the last commits land before measuring: they are acknowledged work too.
        state.quietStart = state.now
        state.queue.schedule(.check, at: state.now + Self.commitGatherMillis + self.scenario.disk.commit.milliseconds
            + self.scenario.disk.commitJitter.milliseconds + 1)
    }

    // MARK: - Observations

    private func sample(_ state: inout State) {
        self.alertmanagerObserves(&state)
        for index in state.regions.indices where state.regions[index].isUp {
            let replica = state.regions[index].replica!  // isUp checked
            let total = replica.totalRequests(at: .day)
            if total < state.regions[index].lastRead {
                state.violations.append(
                    "monotonic reads: \(state.regions[index].name) read \(total) after \(state.regions[index].lastRead) at \(Self.format(.milliseconds(state.now)))")
            }
            state.regions[index].lastRead = total
            for (_, behind) in replica.staleness(now: self.localTime(index, state)) {
                if let behind { state.staleness.append(behind.milliseconds) }
            }
            let buffers = replica.replicationBuffers
            state.largestBuffer = max(state.largestBuffer, buffers.largestOriginBytes)
            state.largestUnpublished = max(state.largestUnpublished, buffers.unpublished)
        }
    }

    /// Alertmanager's clock: virtual time on the scenario's epoch (no skew of its own).
    private func alertmanagerTime(_ state: State) -> Timestamp {
        Timestamp(millisecondsSinceEpoch: Self.epochMillis + state.now)
    }

    private func alertmanagerReceives(_ alerts: [Alert], from index: Int, _ state: inout State) {
        let before = state.alertmanager.alerts.mapValues(\.transitions.count)
        state.alertmanager.receive(alerts, from: state.regions[index].name, now: self.alertmanagerTime(state))
        self.noteAlertTransitions(since: before, &state)
    }

    private func alertmanagerObserves(_ state: inout State) {
        let before = state.alertmanager.alerts.mapValues(\.transitions.count)
        state.alertmanager.observeAll(now: self.alertmanagerTime(state))
        self.noteAlertTransitions(since: before, &state)
    }

    /// The alert timeline: every change Alertmanager shows, in the run's timeline.
    private func noteAlertTransitions(since before: [String: Int], _ state: inout State) {
        for (key, held) in state.alertmanager.matching([:]) where held.transitions.count > before[key] ?? 0 {
            for transition in held.transitions[(before[key] ?? 0)...] {
                let at = Duration.milliseconds(transition.at.millisecondsSinceEpoch - Self.epochMillis)
                let labels = held.alert.labels
                var text = "\(Self.format(at)): alertmanager: \(labels["alertname"] ?? "") \(labels["slo"] ?? "")"
                if let severity = labels["severity"] { text += " \(severity)" }
                if let long = labels["long_window"], let short = labels["short_window"] { text += " \(long)/\(short)" }
                if transition.firing {
                    text += " firing"
                    if let long = held.alert.annotations["burn_rate_long"] { text += " at \(long.prefix(5))x" }
                    text += " (view \(held.alert.annotations["view"] ?? "complete"))"
                } else {
                    text += " resolved"
                }
                state.timeline.append(text)
            }
        }
    }

    /// Equal digests everywhere, then equal buckets, byte for byte.
    private func converged(_ state: State) -> Bool {
        let replicas = state.regions.compactMap(\.replica)
        guard replicas.count == state.regions.count, let first = replicas.first else { return false }
        let digest = first.versions
        for replica in replicas.dropFirst() {
            let other = replica.versions
            guard other.count == digest.count,
                zip(other, digest).allSatisfy({ $0.origin == $1.origin && $0.version == $1.version })
            else { return false }
        }
        let bytes = first.buckets.map { $0.aggregate.encoded() }
        return replicas.dropFirst().allSatisfy { $0.buckets.map { $0.aggregate.encoded() } == bytes }
    }

    static func format(_ duration: Duration) -> String {
        let millis = duration.milliseconds
        if millis % 86_400_000 == 0 && millis > 0 { return "\(millis / 86_400_000)d" }
        if millis % 3_600_000 == 0 && millis > 0 { return "\(millis / 3_600_000)h" }
        if millis % 60_000 == 0 && millis >= 600_000 { return "\(millis / 60_000)m" }
        if millis >= 600_000 { return "\(millis / 60_000)m\(format(.milliseconds(millis % 60_000)))" }
        if millis % 1_000 == 0 { return "\(millis / 1_000)s" }
        return "\(Double(millis) / 1_000)s"
    }

    static func describe(_ action: Scenario.Action) -> String {
        switch action {
        case .partition(let groups): return "partition \(groups.map { $0.joined(separator: "+") }.joined(separator: " | "))"
        case .oneWay(let from, let to): return "one-way cut \(from.joined(separator: "+")) -> \(to.joined(separator: "+"))"
        case .heal: return "heal"
        case .flap(let a, let b, let period, let until): return "flap \(a)<->\(b) every \(format(period)) until \(format(until))"
        case .hold(let from, let to): return "hold \(from.joined(separator: "+")) -> \(to.joined(separator: "+"))"
        case .release: return "release held messages"
        case .loss(let rate): return "loss \(rate)"
        case .duplication(let rate): return "duplication \(rate)"
        case .crash(let name): return "crash \(name)"
        case .restart(let name): return "restart \(name)"
        case .diskLoss(let name): return "disk loss \(name) (new incarnation)"
        case .storeLoss(let name): return "store loss \(name) (identity file kept)"
        case .backup(let name): return "backup \(name)"
        case .restore(let name): return "restore \(name) from its backup (new incarnation)"
        case .upgrade(let name): return "upgrade \(name) to this build (protocols \(NodeCore.protocols))"
        case .downgrade(let name): return "downgrade \(name) to the release it started on"
        case .pause(let name, let duration): return "pause \(name) for \(format(duration))"
        case .clockOffset(let name, let by): return "clock \(name) \(by.milliseconds >= 0 ? "+" : "")\(by.milliseconds) ms"
        case .clockDrift(let name, let ppm): return "clock drift \(name) \(ppm) ppm"
        case .spike(let factor, let duration): return "traffic x\(factor) for \(format(duration))"
        case .errors(let name, let rate, let duration):
            return "\(Int((rate * 100).rounded()))% of \(name)'s requests fail with 5xx for \(format(duration))"
        case .stopTraffic(let name): return "traffic to \(name) stops"
        case .startTraffic(let name): return "traffic to \(name) starts"
        }
    }
}

/// An incremental XXH3 over the run's events: the trace hash. Same seed, same hash.
struct XXH3Stream {
    private var state: UInt64 = 0x9E37_79B9_7F4A_7C15

    mutating func add(_ values: UInt64...) {
        for value in values { self.state = XXH3.hash(value, seed: self.state) }
    }

    var value: UInt64 { self.state }
}
