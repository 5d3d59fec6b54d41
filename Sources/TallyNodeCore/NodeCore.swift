import TallyAggregates
import TallyReplica
import TallySLO

/// One region node's decisions, as a value with no I/O: the replica, and the policies around it
/// that used to live in the node's actor (rate limits, the overload bound, what an acknowledgement
/// waits for, checkpoint timing, tick scheduling, global reads and what each peer can be asked).
///
/// Both shells drive this same value: `TallyNode` (HTTP, SQLite, TLS) and `TallySimulation`
/// (virtual time, a faulty disk and network). Inputs are named for what happened; the returned
/// actions say what to do. Time is an input; nothing here reads a clock or draws a random number,
/// and no dictionary order reaches an action.
///
/// Contract for a shell:
/// - Every `.persist(entry)` MUST be made durable (in any grouping, even out of order) and then
///   reported with `persisted(_:now:)`. An `.acknowledge` is only ever emitted once the log is
///   durable through the sequence it carries, so the shell delivers it as soon as it sees it.
/// - `.storeCheckpoint(c)` MUST NOT become durable before the log through `c.sequence` is; report
///   it with `checkpointStored(_:now:)` (or `checkpointFailed`).
/// - `tick(now:)` MUST be called at (or after) the instant of the last `.scheduleTick(at:)`.
/// - Frames from peers are fed in the order they arrived on their connection.
public struct NodeCore: Sendable {
    /// The node's policies; `NodeConfig` fills it from the config file.
    public struct Config: Sendable, Equatable {
        /// Most batches accepted and not yet acknowledged (waiting for the disk); more are refused
        /// with 503. Reserved when the batch is admitted, so concurrent requests cannot pass it.
        public var pendingBatchesMax: Int
        /// Token bucket per API key: sustained events per second, and burst.
        public var rateLimitEventsPerSecond: Double
        public var rateLimitBurst: Double
        /// Most API keys with a token bucket at once; past it the one idle longest is forgotten
        /// (a forgotten key starts again with a full bucket).
        public var rateLimitClientsMax: Int
        /// How often the replica's changes are checkpointed (counted across restarts: from the
        /// stored image's time).
        public var checkpointInterval: Duration
        /// Retry-After of a 503 for overload.
        public var overloadRetryAfter: Duration
        /// Most global reads waiting for peers at once.
        public var globalReadsMax: Int
        /// How long a global read waits for the other regions.
        public var globalReadTimeout: Duration
        /// Largest answer to a peer's read (the peer frame cap less room for framing).
        public var readAnswerBytesMax: Int
        /// How often the SLOs are evaluated for alerts.
        public var sloEvaluationInterval: Duration
        /// A firing (or resolved) alert is sent again this often.
        public var alertResendInterval: Duration
        /// A peer region not heard from for longer than this makes the view partial: alerts say so.
        public var staleAfter: Duration

        public init(
            pendingBatchesMax: Int = 4_096, rateLimitEventsPerSecond: Double = 1_000_000,
            rateLimitBurst: Double = 2_000_000, rateLimitClientsMax: Int = 65_536,
            checkpointInterval: Duration = .seconds(10), overloadRetryAfter: Duration = .seconds(1),
            globalReadsMax: Int = 64, globalReadTimeout: Duration = .seconds(2), readAnswerBytesMax: Int = 4 << 20,
            sloEvaluationInterval: Duration = .seconds(60), alertResendInterval: Duration = .seconds(60),
            staleAfter: Duration = .seconds(60)
        ) {
            self.sloEvaluationInterval = sloEvaluationInterval
            self.alertResendInterval = alertResendInterval
            self.staleAfter = staleAfter
            self.pendingBatchesMax = pendingBatchesMax
            self.rateLimitEventsPerSecond = rateLimitEventsPerSecond
            self.rateLimitBurst = rateLimitBurst
            self.rateLimitClientsMax = rateLimitClientsMax
            self.checkpointInterval = checkpointInterval
            self.overloadRetryAfter = overloadRetryAfter
            self.globalReadsMax = globalReadsMax
            self.globalReadTimeout = globalReadTimeout
            self.readAnswerBytesMax = readAnswerBytesMax
        }
    }

    /// What the node asks its shell to do.
    public enum Action: Sendable {
        /// Make this log entry durable, then report it with `persisted`.
        case persist(LogEntry)
        /// Answer the batch: its events are counted and durable (the log is durable through
        /// `durableThrough`, which covers the batch and every entry before it).
        case acknowledge(BatchID, IngestReceipt, replayed: Bool, durableThrough: UInt64)
        /// Refuse the batch; nothing of it was counted.
        case refuse(BatchID, Refusal)
        /// Send a replication message to the peer of that region, best effort. It is encoded for
        /// the connection that agreed `protocolVersion`: one at another version must not carry it.
        case send([UInt8], to: String, protocolVersion: UInt16)
        /// Ask a peer for its state of a global read's buckets (a `read` frame).
        case askRead([UInt8], to: String, read: UInt64)
        /// Answer a peer's read (a `read` frame).
        case answerRead([UInt8], to: String)
        /// A global read is complete: every peer answered, or was named missing by its deadline.
        case completeRead(GlobalRead)
        /// Store this checkpoint, after the log through its sequence is durable.
        case storeCheckpoint(Checkpoint)
        /// Call `tick` at this instant (the shell's clock).
        case scheduleTick(at: Timestamp)
        /// Evaluate these SLOs on a snapshot of the replica (off the node's critical path: it reads
        /// every bucket of their windows) and report the outcome with `slosEvaluated(_:now:)`.
        case evaluateSLOs(SLOEvaluationRequest)
        /// Send these alerts (firing and resolved) to every configured Alertmanager.
        case sendAlerts([Alert])
    }

    /// Why a batch was refused, and what the client should do.
    public enum Refusal: Sendable, Equatable, CustomStringConvertible {
        /// The API key's token bucket is empty (429).
        case rateLimited(retryAfter: Duration)
        /// Too many batches are waiting for the disk (503).
        case overloaded(retryAfter: Duration)
        /// The batch itself is refused (413 or 400).
        case batch(BatchRejection)

        public var status: Int {
            switch self {
            case .rateLimited: 429
            case .overloaded: 503
            case .batch(.tooManyEvents): 413
            case .batch(.invalidIdempotencyKey): 400
            }
        }

        /// Whole seconds for a Retry-After header (at least 1), or nil.
        public var retryAfterSeconds: Int? {
            switch self {
            case .rateLimited(let wait), .overloaded(let wait):
                max(1, Int((wait.milliseconds + 999) / 1_000))
            case .batch:
                nil
            }
        }

        public var description: String {
            switch self {
            case .rateLimited: "rate limit for this API key exceeded"
            case .overloaded: "the node is overloaded; retry later"
            case .batch(let rejection): rejection.description
            }
        }
    }

    /// A finished global read: the peers' answers to join into the local state, and who did not answer.
    public struct GlobalRead: Sendable {
        public var id: UInt64
        public var query: Query
        /// Answers in region order.
        public var answers: [(region: String, answer: ReadAnswer)]
        /// Regions that did not answer, and why, in region order.
        public var missing: [(region: String, reason: String)]
        /// When the read completed.
        public var completedAt: Timestamp
        public var deadline: Timestamp
    }

    public enum GlobalReadRefusal: Error, Sendable, CustomStringConvertible {
        case query(QueryError)
        case busy(waiting: Int)

        public var description: String {
            switch self {
            case .query(let error): error.description
            case .busy(let count): "\(count) global reads are already waiting for other regions; retry shortly"
            }
        }
    }

    /// What this node knows of a peer's connection.
    public struct PeerState: Sendable, Equatable {
        public var connected = false
        /// The protocol version negotiated on the connection this node sends on (the last one, while
        /// it is down; nil before any).
        public var protocolVersion: UInt16?

        public init(connected: Bool = false, protocolVersion: UInt16? = nil) {
            self.connected = connected
            self.protocolVersion = protocolVersion
        }
    }

    public private(set) var replica: Replica
    public let config: Config

    // Ingest.
    private var rateLimits: [String: TokenBucket] = [:]
    /// Acknowledgements waiting for the disk, in the order of the sequence each waits for.
    private var pending: [PendingAcknowledgement] = []
    private var pendingHead = 0
    /// The log is durable through this sequence.
    public private(set) var durableThrough: UInt64
    /// Sequences reported durable above `durableThrough` (a disk that finishes commits out of
    /// order), as disjoint ranges sorted by start. At most one per pending batch.
    private var durableAhead: [ClosedRange<UInt64>] = []

    // Checkpoints.
    /// When the last checkpoint was taken (the stored image's time after a restart; nil: never).
    public private(set) var lastCheckpoint: Timestamp?
    /// The sequence of a checkpoint handed to the shell and not yet stored.
    public private(set) var checkpointInFlight: UInt64?

    // Ticks.
    private var nextReplicaTick: Timestamp
    public private(set) var nextTick: Timestamp

    // Peers and global reads.
    public private(set) var peers: [String: PeerState] = [:]
    /// When each peer region was last heard from (a replication message or a read frame).
    var lastHeard: [String: Timestamp] = [:]
    /// When this process started: a peer not heard from since counts as behind by that long.
    let startedAt: Timestamp

    // SLOs and alerts (NodeCore+SLO.swift).
    public internal(set) var slos: [SLOSpec] = []
    var alerts: AlertTracker
    var nextEvaluation: Timestamp
    /// The evaluation handed to the shell and not reported yet, and when.
    var evaluationInFlight: (id: UInt64, since: Timestamp)?
    var nextEvaluationID: UInt64 = 0
    /// The outcome of the last evaluation reported.
    public internal(set) var lastEvaluation: SLOEvaluation?
    private var reads: [UInt64: PendingRead] = [:]
    private var nextReadID: UInt64 = 0

    struct PendingAcknowledgement: Sendable {
        var batch: BatchID
        var receipt: IngestReceipt
        var replayed: Bool
        var waitsFor: UInt64
    }

    struct PendingRead: Sendable {
        var query: Query
        var deadline: Timestamp
        /// Peers asked that have not answered yet, sorted.
        var owed: [String]
        var answers: [(region: String, answer: ReadAnswer)] = []
        var missing: [(region: String, reason: String)] = []
    }

    /// A node around `replica`, restored from its durable image and log (everything in it is
    /// durable). `imageTakenAt`: when the stored image's checkpoint was taken, so the checkpoint
    /// interval counts across restarts (nil: no image yet). `region`: the region this node runs,
    /// announced as its origin's (`OriginDirectory`), after `ranBefore`, the origins it ran as
    /// before that its image does not name (a lost store's, from the identity file): those are
    /// retired, and never counted as behind.
    public init(replica: Replica, config: Config, imageTakenAt: Timestamp?, now: Timestamp,
                region: String? = nil, ranBefore: [ReplicaID] = [])
    {
        self.replica = replica
        if let region {
            for old in ranBefore where old != replica.config.id && !replica.originDirectory.knows(old) {
                self.replica.announce(old, region: region)
            }
            self.replica.announce(replica.config.id, region: region)
        }
        self.config = config
        self.durableThrough = replica.lastSequence
        self.replica.durable(through: replica.lastSequence)
        self.lastCheckpoint = imageTakenAt
        self.nextReplicaTick = now
        self.nextTick = now
        self.startedAt = now
        self.alerts = AlertTracker(resendEvery: config.alertResendInterval)
        self.nextEvaluation = now
        for peer in replica.config.peers { self.peers[peer] = PeerState() }
    }

    /// Acknowledgements waiting for the disk: never more than `config.pendingBatchesMax`.
    public var pendingCount: Int { self.pending.count - self.pendingHead }

    /// Global reads waiting for peers.
    public var globalReadsWaiting: Int { self.reads.count }

    // MARK: - Ingest

    /// A batch arrived from an authenticated client (`batch.client` is the API key's name).
    public mutating func ingest(_ batch: EventBatch, now: Timestamp) -> [Action] {
        var actions: [Action] = []
        var limit = self.rateLimits[batch.client] ?? TokenBucket(
            rate: self.config.rateLimitEventsPerSecond, burst: self.config.rateLimitBurst, now: now)
        let wait = limit.take(Double(max(batch.items.count, 1)), now: now)
        self.remember(limit, for: batch.client)
        if let wait {
            actions.append(.refuse(batch.id, .rateLimited(retryAfter: .milliseconds(Int64((wait * 1_000).rounded(.up))))))
            return actions
        }
        guard self.pendingCount < self.config.pendingBatchesMax else {
            actions.append(.refuse(batch.id, .overloaded(retryAfter: self.config.overloadRetryAfter)))
            return actions
        }
        for action in self.replica.ingest(batch, now: now) {
            switch action {
            case .persist(let entry):
                actions.append(.persist(entry))
            case .acknowledge(let id, let receipt, let replayed):
                // Every answer waits for every entry before it, including a replayed answer whose
                // first batch may still be on its way to the disk.
                let waitsFor = self.replica.lastSequence
                self.pending.append(PendingAcknowledgement(batch: id, receipt: receipt, replayed: replayed,
                                                           waitsFor: waitsFor))
                precondition(self.pendingCount <= self.config.pendingBatchesMax,
                             "pending \(self.pendingCount) over \(self.config.pendingBatchesMax)")
            case .reject(let id, let reason):
                actions.append(.refuse(id, .batch(reason)))
            case .scheduleTick, .send:
                break  // ingest neither schedules nor sends: sending happens on ticks and receipts
            }
        }
        self.release(into: &actions)
        return actions
    }

    /// The log entries with these sequences are durable (a commit finished). Commits may finish
    /// in any order; acknowledgements follow the contiguous durable prefix.
    public mutating func persisted(_ sequences: ClosedRange<UInt64>, now: Timestamp) -> [Action] {
        var actions: [Action] = []
        if sequences.upperBound > self.durableThrough {
            let range = max(sequences.lowerBound, self.durableThrough + 1)...sequences.upperBound
            if range.lowerBound == self.durableThrough + 1 {
                self.durableThrough = range.upperBound
            } else {
                self.insertAhead(range)
            }
            while let first = self.durableAhead.first, first.lowerBound <= self.durableThrough + 1 {
                self.durableThrough = max(self.durableThrough, first.upperBound)
                self.durableAhead.removeFirst()
            }
            // Own changes through this entry may now be published to peers.
            self.replica.durable(through: self.durableThrough)
        }
        self.release(into: &actions)
        return actions
    }

    private mutating func insertAhead(_ range: ClosedRange<UInt64>) {
        var merged = range
        var kept: [ClosedRange<UInt64>] = []
        for existing in self.durableAhead {
            if existing.upperBound &+ 1 < merged.lowerBound || merged.upperBound &+ 1 < existing.lowerBound {
                kept.append(existing)
            } else {
                merged = min(existing.lowerBound, merged.lowerBound)...max(existing.upperBound, merged.upperBound)
            }
        }
        kept.append(merged)
        kept.sort { $0.lowerBound < $1.lowerBound }
        self.durableAhead = kept
    }

    /// Delivers every waiting acknowledgement the durable log now covers, in order.
    private mutating func release(into actions: inout [Action]) {
        while self.pendingHead < self.pending.count, self.pending[self.pendingHead].waitsFor <= self.durableThrough {
            let done = self.pending[self.pendingHead]
            actions.append(.acknowledge(done.batch, done.receipt, replayed: done.replayed,
                                        durableThrough: self.durableThrough))
            self.pendingHead += 1
        }
        if self.pendingHead == self.pending.count {
            self.pending.removeAll(keepingCapacity: true)
            self.pendingHead = 0
        } else if self.pendingHead >= 1_024 && self.pendingHead * 2 >= self.pending.count {
            self.pending.removeFirst(self.pendingHead)
            self.pendingHead = 0
        }
    }

    private mutating func remember(_ limit: TokenBucket, for client: String) {
        if self.rateLimits[client] == nil && self.rateLimits.count >= self.config.rateLimitClientsMax {
            // Forget the key idle longest (ties by name): a full bucket is what it would have had.
            let idlest = self.rateLimits.min { ($0.value.updated, $0.key) < ($1.value.updated, $1.key) }
            if let idlest { self.rateLimits.removeValue(forKey: idlest.key) }
        }
        self.rateLimits[client] = limit
    }

    // MARK: - Time

    /// The timer the last `.scheduleTick` asked for fired: the replica's tick when due (retention,
    /// gossip), a checkpoint when due, and global reads past their deadline.
    public mutating func tick(now: Timestamp) -> [Action] {
        var actions: [Action] = []
        if now >= self.nextReplicaTick {
            for action in self.replica.tick(now: now) {
                switch action {
                case .send(let bytes, let peer): self.send(bytes, to: peer, into: &actions)
                case .scheduleTick(let after): self.nextReplicaTick = now + after
                case .persist, .acknowledge, .reject: break  // a tick neither persists nor answers
                }
            }
            if self.nextReplicaTick <= now { self.nextReplicaTick = now + self.replica.config.tickInterval }
        }
        self.checkpointIfDue(now: now, into: &actions)
        self.expireReads(now: now, into: &actions)
        self.evaluateIfDue(now: now, into: &actions)
        self.scheduleNextTick(into: &actions)
        return actions
    }

    mutating func scheduleNextTick(into actions: inout [Action]) {
        var next = self.nextReplicaTick
        for read in self.reads.values where read.deadline < next { next = read.deadline }
        if !self.slos.isEmpty && self.nextEvaluation < next { next = self.nextEvaluation }
        self.nextTick = next
        actions.append(.scheduleTick(at: next))
    }

    private mutating func checkpointIfDue(now: Timestamp, into actions: inout [Action]) {
        guard self.checkpointInFlight == nil else { return }
        if let last = self.lastCheckpoint, now - last < self.config.checkpointInterval, now >= last { return }
        self.takeCheckpoint(now: now, into: &actions)
    }

    private mutating func takeCheckpoint(now: Timestamp, into actions: inout [Action]) {
        self.lastCheckpoint = now
        let checkpoint = self.replica.checkpoint(now: now)
        self.checkpointInFlight = checkpoint.sequence
        actions.append(.storeCheckpoint(checkpoint))
    }

    /// The last `.storeCheckpoint` is durable.
    public mutating func checkpointStored(_ sequence: UInt64, now: Timestamp) -> [Action] {
        if self.checkpointInFlight == sequence { self.checkpointInFlight = nil }
        return []
    }

    /// The node is stopping (SIGTERM): take a last checkpoint, so the next start replays nothing.
    /// Acknowledgements still waiting for the disk go on as usual.
    public mutating func stopping(now: Timestamp) -> [Action] {
        var actions: [Action] = []
        if self.checkpointInFlight == nil { self.takeCheckpoint(now: now, into: &actions) }
        return actions
    }

    // MARK: - Peers

    // MARK: - Protocol versions

    /// The peer protocol versions this build speaks (the handshake picks the highest both do).
    /// 1: replication messages at wire version 1. 2: also `read` frames (global reads).
    /// 3: replication messages at wire version 2 (bucket starts as bucket numbers).
    /// 4: at wire version 3 (a restarted origin's batches are offered to peers ahead of its
    /// checkpoint: architecture decision 30).
    public static let protocols: ClosedRange<UInt16> = 1...4

    /// The peer protocol that carries read frames.
    public static let globalReadProtocol: UInt16 = 2

    /// The replication wire version a connection at `protocolVersion` carries.
    public static func wireVersion(forProtocol protocolVersion: UInt16) -> UInt8 {
        protocolVersion >= 4 ? 3 : protocolVersion >= 3 ? 2 : 1
    }

    /// A replication message the replica encoded for `peer`, tagged with that peer's protocol; one
    /// to a peer whose protocol is not known yet is dropped (no connection could carry it; gossip
    /// sends what matters again).
    private func send(_ bytes: [UInt8], to peer: String, into actions: inout [Action]) {
        guard let version = self.peers[peer]?.protocolVersion else { return }
        actions.append(.send(bytes, to: peer, protocolVersion: version))
    }

    // MARK: - Peers

    /// The connection this node sends to `region` on is up, at `protocolVersion`: replication
    /// messages to it are encoded at the wire version that protocol carries from now on. `origin`:
    /// the origin the peer's hello names, which `region` runs as from now on (`OriginDirectory`).
    public mutating func peerConnected(_ region: String, protocolVersion: UInt16, origin: ReplicaID? = nil,
                                       now: Timestamp) -> [Action]
    {
        guard self.peers[region] != nil else { return [] }
        if let origin { self.replica.announce(origin, region: region) }
        self.peers[region] = PeerState(connected: true, protocolVersion: protocolVersion)
        self.replica.setWireVersion(Self.wireVersion(forProtocol: protocolVersion), for: region)
        return []
    }

    /// That connection went away (it is redialed by the shell). Reads it owed are named missing.
    public mutating func peerDisconnected(_ region: String, reason: String, now: Timestamp) -> [Action] {
        guard let peer = self.peers[region] else { return [] }
        self.peers[region] = PeerState(connected: false, protocolVersion: peer.protocolVersion)
        var actions: [Action] = []
        for id in self.reads.keys.sorted() { self.fail(read: id, region: region, reason: reason, now: now, into: &actions) }
        return actions
    }

    /// A replication message from the node of `region`, authenticated by the transport.
    public mutating func received(_ bytes: [UInt8], from region: String, now: Timestamp) -> [Action] {
        var actions: [Action] = []
        self.heard(from: region, now: now)
        for case .send(let reply, let peer) in self.replica.receive(bytes, from: region, now: now) {
            self.send(reply, to: peer, into: &actions)
        }
        return actions
    }

    /// The peers the replica gossips with changed (a config reload); false if none are left.
    public mutating func setPeers(_ regions: [String]) -> Bool {
        guard self.replica.setPeers(regions) else { return false }
        var peers: [String: PeerState] = [:]
        for region in regions { peers[region] = self.peers[region] ?? PeerState() }
        self.peers = peers
        return true
    }

    // MARK: - Global reads

    /// Starts a global read of `query`: asks every connected peer that speaks global reads, names
    /// the others. The read completes (`.completeRead`) when every asked peer answered, failed, or
    /// the deadline passed; possibly at once.
    public mutating func startGlobalRead(_ query: Query, now: Timestamp) throws(GlobalReadRefusal)
        -> (id: UInt64, actions: [Action])
    {
        let request: ReadRequest
        do {
            request = try self.replica.readRequest(for: query, id: 0, now: now)
        } catch {
            throw .query(error)
        }
        return try self.startGlobalRead(request, describedBy: query, now: now)
    }

    /// Starts a global read of exactly these buckets (`request`'s id is replaced): what an SLO
    /// evaluated at global consistency asks for. `query` only describes it in the completion.
    public mutating func startGlobalRead(_ request: ReadRequest, describedBy query: Query, now: Timestamp)
        throws(GlobalReadRefusal) -> (id: UInt64, actions: [Action])
    {
        guard self.reads.count < self.config.globalReadsMax else { throw .busy(waiting: self.reads.count) }
        self.nextReadID &+= 1
        let id = self.nextReadID
        var request = request
        request.id = id
        var actions: [Action] = []
        var read = PendingRead(query: query, deadline: now + self.config.globalReadTimeout, owed: [])
        let bytes = request.encoded()
        for region in self.peers.keys.sorted() {
            let peer = self.peers[region]!  // key from the same dictionary
            if !peer.connected {
                read.missing.append((region, "not connected"))
            } else if let version = peer.protocolVersion, version < Self.globalReadProtocol {
                read.missing.append((region, "speaks protocol \(version), which has no global reads"))
            } else {
                read.owed.append(region)
                actions.append(.askRead(bytes, to: region, read: id))
            }
        }
        self.reads[id] = read
        self.completeIfDone(id, now: now, into: &actions)
        self.scheduleNextTick(into: &actions)
        return (id, actions)
    }

    /// The shell could not send a read request to `region` (its queue is full, the connection
    /// just went away).
    public mutating func readNotSent(_ read: UInt64, to region: String, reason: String, now: Timestamp) -> [Action] {
        var actions: [Action] = []
        self.fail(read: read, region: region, reason: reason, now: now, into: &actions)
        return actions
    }

    /// A `read` frame from the node of `region`: a request to answer from this replica, or an
    /// answer to a read waiting here. Anything else (bytes that do not decode, an answer nobody
    /// waits for, a second answer) changes nothing; it is counted by the shell.
    public mutating func receivedRead(_ bytes: [UInt8], from region: String, now: Timestamp)
        -> (actions: [Action], refused: String?)
    {
        var actions: [Action] = []
        self.heard(from: region, now: now)
        if let request = try? ReadRequest(encoded: bytes) {
            let answer = self.replica.answer(request, bytesMax: self.config.readAnswerBytesMax)
            actions.append(.answerRead(answer.encoded(), to: region))
            return (actions, nil)
        }
        guard let answer = try? ReadAnswer(encoded: bytes) else { return ([], "a read frame that does not decode") }
        guard var read = self.reads[answer.id], let position = read.owed.firstIndex(of: region) else {
            return ([], "an answer to no read waiting for \(region)")
        }
        read.owed.remove(at: position)
        if answer.outcome == .tooLarge {
            read.missing.append((region, "its answer would exceed one message; narrow the range, filters or metrics"))
        } else {
            read.answers.append((region, answer))
        }
        self.reads[answer.id] = read
        self.completeIfDone(answer.id, now: now, into: &actions)
        return (actions, nil)
    }

    private mutating func fail(read id: UInt64, region: String, reason: String, now: Timestamp,
                               into actions: inout [Action])
    {
        guard var read = self.reads[id], let position = read.owed.firstIndex(of: region) else { return }
        read.owed.remove(at: position)
        read.missing.append((region, reason))
        self.reads[id] = read
        self.completeIfDone(id, now: now, into: &actions)
    }

    private mutating func expireReads(now: Timestamp, into actions: inout [Action]) {
        for id in self.reads.keys.sorted() {
            guard var read = self.reads[id], read.deadline <= now else { continue }
            for region in read.owed { read.missing.append((region, "no answer within \(self.config.globalReadTimeout)")) }
            read.owed = []
            self.reads[id] = read
            self.completeIfDone(id, now: now, into: &actions)
        }
    }

    private mutating func completeIfDone(_ id: UInt64, now: Timestamp, into actions: inout [Action]) {
        guard let read = self.reads[id], read.owed.isEmpty else { return }
        self.reads.removeValue(forKey: id)
        actions.append(.completeRead(GlobalRead(
            id: id, query: read.query, answers: read.answers.sorted { $0.region < $1.region },
            missing: read.missing.sorted { $0.region < $1.region }, completedAt: now, deadline: read.deadline)))
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
struct TokenBucket: Sendable {
    let rate: Double
    let burst: Double
    var tokens: Double
    var updated: Timestamp

    init(rate: Double, burst: Double, now: Timestamp) {
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now
    }

    /// Takes `count` tokens (a batch larger than the burst costs the whole burst, so it can pass),
    /// or returns how many seconds until they would be there, taking none.
    mutating func take(_ count: Double, now: Timestamp) -> Double? {
        let elapsed = Double(max(0, (now - self.updated).milliseconds)) / 1_000
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = max(self.updated, now)
        let cost = min(count, self.burst)
        if cost <= self.tokens {
            self.tokens -= cost
            return nil
        }
        return (cost - self.tokens) / self.rate
    }
}
