import TallyAggregates
import TallyReplica
import TallyWorkload

/// A deterministic run of a scenario: the real replica code and the real wire encoding, driven
/// by a discrete-event loop in virtual time. Every random choice comes from one seed; there is no
/// wall clock, no sleep and no thread, so a seed replays exactly (`traceHash` shows it).
public struct Simulation {
    public let scenario: Scenario
    public let seed: UInt64
    /// Test only: every region merges replicated counters by adding (see `ReplicaConfig`).
    public var brokenMerge = false

    public init(scenario: Scenario, seed: UInt64) {
        self.scenario = scenario
        self.seed = seed
    }

    /// Virtual time 0 is this wall-clock instant (2026-11-29T00:00:00Z) in every region's clock.
    static let epochMillis: Int64 = 1_795_910_400_000
    /// The time a group commit takes on the simulated disk.
    static let commitMillis: Int64 = 2
    /// Reads for the monotonic-reads check and staleness percentiles: every 5 gossip rounds, and at
    /// least every 5 s. (Reading totals walks every day bucket: at a 1 s sample, a week-long
    /// scenario spent a tenth of its time here.)
    var sampleEvery: Int64 { max(5_000, 5 * self.scenario.gossipInterval.milliseconds) }

    enum Event {
        case tick(Int, generation: Int)
        case traffic(Int)
        case sync(Int, generation: Int)
        case deliver(to: Int, from: Int, bytes: [UInt8])
        case fault(Int)
        case flap(a: Int, b: Int, cut: Bool, until: Int64, period: Int64)
        case resume(Int, generation: Int)
        case spikeEnd
        case sample
        case endOfFaults
        case check
    }

    /// One region: its process (replica, clock), its disk, its clients.
    struct Region {
        let name: String
        var replica: Replica?
        var incarnation: UInt64 = 1
        /// Bumped when the process dies: events scheduled for the old process are void.
        var generation = 0
        var pausedUntil: Int64?
        var disk = Disk()
        var syncScheduled = false
        /// Batches waiting for the disk: their sequence and accepted events per service.
        var unacknowledged: [(sequence: UInt64, services: [Int: UInt64])] = []
        var clockOffsetMillis: Int64 = 0
        var driftPPM: Double = 0
        var trafficOn = true
        var lastCheckpoint: Int64 = 0
        /// Totals read in this process's lifetime, which must never go down.
        var lastRead: UInt64 = 0
        var bytesSent = 0
        var messagesSent = 0
        /// Own batch bytes published by the region's earlier processes (the replica counts its own).
        var publishedBefore: UInt64 = 0

        var publishedBytes: UInt64 { self.publishedBefore + (self.replica?.publishedBatchBytes ?? 0) }

        var isUp: Bool { self.replica != nil }
    }

    /// What a region's disk holds: the checkpointed image, the synced log after it, and appends
    /// not yet synced (lost in a crash).
    struct Disk {
        var image = ReplicaSnapshot()
        var log: [LogEntry] = []
        var unsynced: [LogEntry] = []
        var epoch: UInt32 = 0
    }

    struct State {
        var now: Int64 = 0
        var queue = EventQueue<Event>()
        var regions: [Region]
        var random: SeededRandom
        var workload: Workload
        var cut: [[Bool]]
        var held: [[Bool]]
        var heldMessages: [(to: Int, from: Int, bytes: [UInt8])] = []
        var loss: Double
        var duplication: Double
        var spike = 1.0
        var acknowledged: [Int: UInt64] = [:]
        var refusedBatches = 0
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
        var names: Names
        /// One-way base latency (ms) per region pair, from the scenario or the defaults.
        var latency: [[Int64]] = []
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
        let regions = self.scenario.regions.map { Region(name: $0) }
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
            // Stagger the first batches so regions do not act in lockstep.
            state.queue.schedule(.traffic(index), at: Int64(state.random.next() % 100))
        }
        for (index, fault) in self.scenario.faults.enumerated() {
            state.queue.schedule(.fault(index), at: fault.at.milliseconds)
        }
        state.queue.schedule(.sample, at: self.sampleEvery)
        state.queue.schedule(.endOfFaults, at: self.scenario.duration.milliseconds)
        let end = (self.scenario.duration + self.scenario.quiet).milliseconds
        while let (time, event) = state.queue.next(), time <= end {
            state.now = time
            self.handle(event, &state)
            if state.convergedAt != nil { break }
        }
        return self.result(state)
    }

    // MARK: - Processes

    private func config(_ index: Int, _ state: State) -> ReplicaConfig {
        let region = state.regions[index]
        var config = ReplicaConfig(
            id: ReplicaID(region: region.name, node: "n1", incarnation: region.incarnation),
            tickInterval: self.scenario.gossipInterval,
            peers: self.scenario.regions.filter { $0 != region.name }, gossipInterval: self.scenario.gossipInterval,
            versionEpoch: region.disk.epoch, seed: self.seed &+ UInt64(index))
        config.brokenMergeForTesting = self.brokenMerge
        config.limits.replicationBufferBytesMax = self.scenario.replicationBufferBytes
        return config
    }

    /// Starts (or restarts) the region's process from its disk.
    private func start(_ index: Int, _ state: inout State) {
        state.regions[index].disk.epoch += 1
        var replica = Replica(config: self.config(index, state), restoring: state.regions[index].disk.image)
        for entry in state.regions[index].disk.log { replica.replay(entry) }
        replica.durable(through: replica.lastSequence)
        state.regions[index].replica = replica
        state.regions[index].lastRead = 0
        state.regions[index].pausedUntil = nil
        let generation = state.regions[index].generation
        state.queue.schedule(.tick(index, generation: generation),
                             at: state.now + Int64(state.random.next() % UInt64(self.scenario.gossipInterval.milliseconds)))
    }

    private func crash(_ index: Int, _ state: inout State) {
        guard state.regions[index].isUp else { return }
        state.regions[index].publishedBefore = state.regions[index].publishedBytes
        state.regions[index].replica = nil
        state.regions[index].generation += 1
        state.regions[index].disk.unsynced = []
        state.regions[index].unacknowledged = []  // never acknowledged: the clients were not told
        state.regions[index].syncScheduled = false
    }

    /// Runs `body` on the region's replica, moved out of its optional and back: mutating it through
    /// `replica!` copied the whole replica value in and out on every call. The region MUST be up.
    @inline(__always)
    static func mutate<Result>(_ region: inout Region, _ body: (inout Replica) -> Result) -> Result {
        var replica = region.replica.take()!  // callers check isUp
        let result = body(&replica)
        region.replica = replica
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
        case .tick(let index, let generation):
            guard state.regions[index].generation == generation, state.regions[index].isUp else { return }
            if let until = state.regions[index].pausedUntil, until > state.now {
                state.queue.schedule(.tick(index, generation: generation), at: until)
                return
            }
            let now = self.localTime(index, state)
            let actions = Self.mutate(&state.regions[index]) { $0.tick(now: now) }
            state.trace.add(1, UInt64(index), UInt64(bitPattern: state.now))
            self.carryOut(actions, from: index, &state)
            state.queue.schedule(.tick(index, generation: generation),
                                 at: state.now + self.scenario.gossipInterval.milliseconds)
        case .traffic(let index):
            self.sendTraffic(index, &state)
        case .sync(let index, let generation):
            guard state.regions[index].generation == generation, state.regions[index].isUp else { return }
            self.sync(index, &state)
        case .deliver(let to, let from, let bytes):
            self.deliver(bytes, to: to, from: from, &state)
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
        for _ in 0..<traffic.batch {
            let request = state.workload.request(using: &state.random)
            items.append(.event(TallyReplica.Event(
                service: state.names.services[request.service], operation: state.names.operations[request.operation],
                status: request.status, latencyMicros: Double(request.latencyMicros),
                userID: state.names.user(request.user),
                timestamp: now - .milliseconds(Int64(state.random.next() % 2_000)))))
        }
        let batch = EventBatch(id: BatchID(state.random.next()), client: "client-\(index)", items: items)
        let actions = Self.mutate(&state.regions[index]) { $0.ingest(batch, now: now) }
        state.trace.add(2, UInt64(index), UInt64(bitPattern: state.now))
        for action in actions {
            guard case .persist(let entry) = action else { continue }
            var services: [Int: UInt64] = [:]
            for event in entry.events { services[state.names.serviceIndex[event.service]!, default: 0] += 1 }
            state.regions[index].disk.unsynced.append(entry)
            state.regions[index].unacknowledged.append((entry.sequence, services))
            if !state.regions[index].syncScheduled {
                state.regions[index].syncScheduled = true
                state.queue.schedule(.sync(index, generation: state.regions[index].generation),
                                     at: state.now + Self.commitMillis)
            }
        }
    }

    /// A group commit: every appended entry becomes durable; their batches are acknowledged (and
    /// counted as acknowledged), the replica may publish them, and a checkpoint is taken when due.
    private func sync(_ index: Int, _ state: inout State) {
        state.regions[index].syncScheduled = false
        state.regions[index].disk.log += state.regions[index].disk.unsynced
        state.regions[index].disk.unsynced = []
        for (_, services) in state.regions[index].unacknowledged {
            for (service, count) in services { state.acknowledged[service, default: 0] += count }
        }
        state.regions[index].unacknowledged = []
        Self.mutate(&state.regions[index]) { $0.durable(through: $0.lastSequence) }
        if state.now - state.regions[index].lastCheckpoint >= self.scenario.checkpointInterval.milliseconds {
            state.regions[index].lastCheckpoint = state.now
            let now = self.localTime(index, state)
            let checkpoint = Self.mutate(&state.regions[index]) { $0.checkpoint(now: now) }
            state.regions[index].disk.image.apply(checkpoint)
            state.regions[index].disk.log.removeAll { $0.sequence <= checkpoint.sequence }
        }
    }

    private func carryOut(_ actions: [Action], from index: Int, _ state: inout State) {
        for case .send(let bytes, let peer) in actions {
            guard let to = self.scenario.regions.firstIndex(of: peer) else { continue }
            state.regions[index].bytesSent += bytes.count
            state.regions[index].messagesSent += 1
            state.messages += 1
            if state.cut[index][to] { continue }
            if state.held[index][to] {
                state.heldMessages.append((to, index, bytes))
                state.mostHeld = max(state.mostHeld, state.heldMessages.count)
                continue
            }
            if state.random.nextUnit() < state.loss { continue }
            let copies = state.random.nextUnit() < state.duplication ? 2 : 1
            for _ in 0..<copies { self.transmit(bytes, to: to, from: index, &state) }
        }
    }

    private func transmit(_ bytes: [UInt8], to: Int, from: Int, _ state: inout State) {
        let base = state.latency[from][to]
        let delay = Int64((Double(base) * (1 + self.scenario.network.jitter * state.random.nextUnit())).rounded())
        state.queue.schedule(.deliver(to: to, from: from, bytes: bytes), at: state.now + max(1, delay))
    }

    private func deliver(_ bytes: [UInt8], to: Int, from: Int, _ state: inout State) {
        guard state.regions[to].isUp else { return }
        if let until = state.regions[to].pausedUntil, until > state.now {
            state.queue.schedule(.deliver(to: to, from: from, bytes: bytes), at: until)
            return
        }
        let now = self.localTime(to, state)
        let peer = self.scenario.regions[from]
        let (actions, refused) = Self.mutate(&state.regions[to]) { replica in
            let before = replica.refusedMessages
            return (replica.receive(bytes, from: peer, now: now), replica.refusedMessages > before)
        }
        if refused {
            state.violations.append("a message a replica encoded did not decode at \(self.scenario.regions[to])")
        }
        state.trace.add(3, UInt64(to), UInt64(bitPattern: state.now), XXH3.hash(bytes))
        self.carryOut(actions, from: to, &state)
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
            self.crash(region, &state)
            state.regions[region].disk = Disk()
            state.regions[region].incarnation += 1
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
        for message in held { self.transmit(message.bytes, to: message.to, from: message.from, &state) }
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
        state.queue.schedule(.check, at: state.now + Self.commitMillis + 1)
    }

    // MARK: - Observations

    private func sample(_ state: inout State) {
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
        case .pause(let name, let duration): return "pause \(name) for \(format(duration))"
        case .clockOffset(let name, let by): return "clock \(name) \(by.milliseconds >= 0 ? "+" : "")\(by.milliseconds) ms"
        case .clockDrift(let name, let ppm): return "clock drift \(name) \(ppm) ppm"
        case .spike(let factor, let duration): return "traffic x\(factor) for \(format(duration))"
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
