import Foundation
import Logging
import NIOCore
import NIOPosix
import TallyAggregates
import TallyReplica

/// A region node's core: the replica, its durable log and the policies around them (rate limits,
/// overload), owned by one actor. The HTTP layer calls it; it carries out the replica's actions.
///
/// The replica is mutated only here, one input at a time; awaiting durability happens outside that
/// critical section, so while one group commit is being written the next batches are applied and
/// join the following commit.
public actor Node {
    public let config: NodeConfig
    public nonisolated let replicaID: ReplicaID
    private var replica: Replica
    private let store: EventStore
    private let clock: @Sendable () -> Timestamp
    private let logger: Logger
    private var nextBatch: UInt64 = 0
    private var inFlight = 0
    private var buckets: [String: TokenBucket] = [:]
    private var tickTask: Task<Void, Never>?
    private var lastCheckpoint: Timestamp
    /// A checkpoint is being encoded and queued; the next waits for it, as they must be stored in order.
    private var checkpointInFlight = false
    /// Differs on every start: ETags carry it, since the state version restarts from the image.
    public nonisolated let bootID = UInt64.random(in: 1...UInt64.max)
    public private(set) var metrics = NodeMetrics()
    /// The connections to the other regions (nil: a single region).
    public private(set) var transport: PeerTransport?
    /// The cluster section in force: the config's, or the last one a reload applied.
    private var clusterInForce: NodeConfig.ClusterConfig?
    /// Global reads waiting for their peers' answers, by request id.
    private var pendingReads: [UInt64: PendingRead] = [:]
    private var nextReadID: UInt64 = 0

    /// What became of an ingest request.
    public enum IngestOutcome: Sendable, Equatable {
        case accepted(IngestReceipt, replayed: Bool)
        case refused(BatchRejection)
        /// Too many batches are waiting for the disk: try again later.
        case overloaded(retryAfterSeconds: Int)
        /// The client's token bucket is empty.
        case rateLimited(retryAfterSeconds: Int)
        /// The store failed; the node is stopping.
        case unavailable(String)
    }

    /// Opens the store in the configured data directory, restores its image and replays the log after it.
    public static func start(
        config: NodeConfig, clock: @escaping @Sendable () -> Timestamp = Node.wallClock,
        logger: Logger = Logger(label: "tally.node"),
        onStorageFailure: @escaping @Sendable (EventStore.StoreError) -> Void = { _ in }
    ) async throws -> Node {
        let store = try EventStore(directory: config.dataDirectory, onFailure: onStorageFailure)
        let identity = try Self.identity(directory: config.dataDirectory, config: config, clock: clock)
        let started = ContinuousClock.now
        let (image, entries) = try await store.recover()
        var replicaConfig = ReplicaConfig(
            id: identity, retention: config.retention, limits: config.limits, errorClasses: config.errorClasses)
        if let cluster = config.cluster {
            replicaConfig.peers = cluster.peers.map(\.region)
            replicaConfig.gossipInterval = cluster.gossipInterval
            replicaConfig.limits.gossipBytesMax = cluster.gossipBytesMax
            replicaConfig.tickInterval = min(replicaConfig.tickInterval, cluster.gossipInterval)
            // Each start seals under a new epoch: a version shipped before a crash is never reused.
            replicaConfig.versionEpoch = try Self.nextEpoch(directory: config.dataDirectory)
            replicaConfig.seed = UInt64.random(in: 1...UInt64.max)
        }
        var replica = Replica(config: replicaConfig, restoring: image)
        for entry in entries { replica.replay(entry) }
        replica.durable(through: replica.lastSequence)
        logger.info("recovered", metadata: [
            "checkpoint_sequence": "\(image.sequence)", "time_buckets": "\(image.buckets.count)",
            "log_entries": "\(entries.count)", "sequence": "\(replica.lastSequence)",
            "duration": "\(ContinuousClock.now - started)",
        ])
        let node = Node(config: config, replica: replica, store: store, clock: clock, logger: logger)
        if let cluster = config.cluster {
            try await node.startTransport(cluster, incarnation: identity.rawValue)
        }
        await node.startTicking()
        return node
    }

    /// Listens for peers and dials them; their messages go to `receive`.
    private func startTransport(_ cluster: NodeConfig.ClusterConfig, incarnation: UInt64) async throws {
        var configuration = PeerTransport.Configuration(
            identity: try NodeIdentity(region: self.config.region, node: self.config.node), incarnation: incarnation,
            certificatePath: cluster.certificatePath, keyPath: cluster.keyPath, caPath: cluster.caPath,
            peers: try cluster.peers.map {
                PeerEndpoint(identity: try NodeIdentity(region: $0.region, node: $0.node), host: $0.host, port: $0.port)
            })
        configuration.insecure = cluster.insecure
        configuration.frameBytesMax = cluster.frameBytesMax
        let transport = try PeerTransport(
            configuration: configuration, group: MultiThreadedEventLoopGroup.singleton, logger: self.logger
        ) { [weak self] peer, bytes in
            Task { await self?.receive(bytes, from: peer.region) }
        }
        transport.onRead { [weak self] peer, bytes in
            Task { await self?.receiveRead(bytes, from: peer.region) }
        }
        let port = try await transport.start(host: cluster.listenHost, port: cluster.listenPort)
        self.transport = transport
        self.clusterInForce = cluster
        self.logger.info("peer transport listening", metadata: [
            "address": "\(cluster.listenHost):\(port)", "peers": "\(cluster.peers.map(\.region))",
        ])
    }

    /// Applies a reloaded config (SIGHUP): the cluster's peers and TLS files take effect at once;
    /// any other change waits for a restart, and the answer says which. A config that cannot take
    /// effect (another node or region, a cluster section added or removed, certificate files that
    /// do not load) throws and changes nothing.
    public func reload(_ new: NodeConfig) throws(ReloadError) -> [String] {
        guard new.node == self.config.node, new.region == self.config.region else {
            throw ReloadError(reason: "the config is for \(new.region)/\(new.node), this node is "
                + "\(self.config.region)/\(self.config.node)")
        }
        guard let cluster = new.cluster, let running = self.clusterInForce, let transport = self.transport else {
            if new.cluster == nil && self.clusterInForce == nil {
                return new == self.config ? ["nothing changed"] : ["changes wait for a restart (a single region reloads nothing)"]
            }
            throw ReloadError(reason: new.cluster == nil
                ? "the cluster section was removed: leaving the cluster needs a restart"
                : "a cluster section was added: joining a cluster needs a restart")
        }
        var notes: [String] = []
        let summary: PeerTransport.ReloadSummary
        do {
            summary = try transport.reload(
                certificatePath: cluster.certificatePath, keyPath: cluster.keyPath, caPath: cluster.caPath,
                peers: try cluster.peers.map {
                    PeerEndpoint(identity: try NodeIdentity(region: $0.region, node: $0.node), host: $0.host, port: $0.port)
                })
        } catch {
            throw ReloadError(reason: "cluster.tls: \(error)")
        }
        guard self.replica.setPeers(cluster.peers.map(\.region)) else {
            throw ReloadError(reason: "cluster.peers: a cluster node needs at least one peer")  // parse refuses none
        }
        self.clusterInForce = cluster
        notes.append("peers added: \(summary.added.map(\.uri)), removed: \(summary.removed.map(\.uri))")
        notes.append(summary.certificatesChanged ? "certificates changed: every peer connection was redialed"
                                                 : "certificates unchanged")
        var rest = new
        rest.cluster = self.config.cluster
        var restart: [String] = []
        if rest != self.config { restart.append("settings outside cluster.peers and cluster.tls") }
        if cluster.listenHost != running.listenHost || cluster.listenPort != running.listenPort {
            restart.append("cluster.listen")
        }
        if cluster.gossipInterval != running.gossipInterval { restart.append("cluster.gossip_interval") }
        if cluster.gossipBytesMax != running.gossipBytesMax { restart.append("cluster.gossip_bytes_max") }
        if cluster.insecure != running.insecure { restart.append("cluster.insecure") }
        if !restart.isEmpty { notes.append("changed, effective at the next restart: \(restart.joined(separator: ", "))") }
        return notes
    }

    /// Why a reloaded config was not applied.
    public struct ReloadError: Error, CustomStringConvertible, Sendable {
        public var reason: String
        public var description: String { self.reason }
    }

    /// A replication message from the node of `region`, already authenticated by the transport.
    func receive(_ bytes: [UInt8], from region: String) {
        let actions = self.replica.receive(bytes, from: region, now: self.clock())
        self.carryOut(actions)
    }

    /// Sends what the replica asked to send; the transport drops what it cannot queue.
    private func carryOut(_ actions: [Action]) {
        guard let transport = self.transport else { return }
        for case .send(let bytes, let region) in actions { transport.send(bytes, toRegion: region) }
    }

    private init(config: NodeConfig, replica: Replica, store: EventStore, clock: @escaping @Sendable () -> Timestamp,
                 logger: Logger)
    {
        self.config = config
        self.replicaID = replica.config.id
        self.replica = replica
        self.store = store
        self.clock = clock
        self.logger = logger
        self.lastCheckpoint = clock()
    }

    /// Milliseconds since the epoch from the system clock.
    public static let wallClock: @Sendable () -> Timestamp = {
        Timestamp(millisecondsSinceEpoch: Int64((Date().timeIntervalSince1970 * 1_000).rounded(.down)))
    }

    /// This data directory's replica id: region, node and an incarnation chosen when the directory
    /// was first used, so a node that lost its disk comes back as a new origin.
    static func identity(directory: String, config: NodeConfig, clock: () -> Timestamp) throws -> ReplicaID {
        let path = (directory as NSString).appendingPathComponent("incarnation")
        let incarnation: UInt64
        if let text = try? String(contentsOfFile: path, encoding: .utf8),
            let value = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines))
        {
            incarnation = value
        } else {
            incarnation = UInt64(max(clock().millisecondsSinceEpoch, 1))
            try "\(incarnation)\n".write(toFile: path, atomically: true, encoding: .utf8)
        }
        return ReplicaID(region: config.region, node: config.node, incarnation: incarnation)
    }

    /// A number this data directory never handed out before: the replica's version epoch, so that
    /// batches sealed after a restart never reuse a version shipped before it.
    static func nextEpoch(directory: String) throws -> UInt32 {
        let path = (directory as NSString).appendingPathComponent("epoch")
        let last = (try? String(contentsOfFile: path, encoding: .utf8))
            .flatMap { UInt32($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        let next = last &+ 1 == 0 ? 1 : last &+ 1
        try "\(next)\n".write(toFile: path, atomically: true, encoding: .utf8)
        return next
    }

    private func startTicking() {
        _ = self.replica.tick(now: self.clock())
        let interval = self.replica.config.tickInterval
        self.tickTask = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                await self?.tick()
            }
        }
    }

    private func tick() {
        let now = self.clock()
        self.carryOut(self.replica.tick(now: now))
        if now - self.lastCheckpoint >= self.config.checkpointInterval {
            self.checkpoint(now: now)
        }
    }

    /// Takes a checkpoint of what changed and hands it to the store, which writes it once the log
    /// entries it covers are durable. Encoding runs off this actor, so ingest goes on meanwhile.
    private func checkpoint(now: Timestamp) {
        guard !self.checkpointInFlight else { return }
        self.lastCheckpoint = now
        let checkpoint = self.replica.checkpoint(now: now)
        self.checkpointInFlight = true
        Task {
            let encoded = await EncodedCheckpoint.encode(checkpoint)
            try? await self.store.store(encoded)  // a failed store fails stop and reports itself
            self.checkpointQueued()
        }
    }

    private func checkpointQueued() {
        self.checkpointInFlight = false
    }

    /// Stops the timer; in-flight batches still complete.
    public func stop() async {
        self.tickTask?.cancel()
        await self.transport?.shutdown()
    }

    // MARK: - Ingest

    public func ingest(items: [BatchItem], client: String, idempotencyKey: String?) async -> IngestOutcome {
        let now = self.clock()
        let eventCount = Double(max(items.count, 1))
        var bucket = self.buckets[client] ?? TokenBucket(
            rate: self.config.rateLimitEventsPerSecond, burst: self.config.rateLimitBurst, now: now)
        if let wait = bucket.take(eventCount, now: now) {
            self.buckets[client] = bucket
            self.metrics.batches["rate_limited", default: 0] += 1
            return .rateLimited(retryAfterSeconds: max(1, Int(wait.rounded(.up))))
        }
        self.buckets[client] = bucket
        guard self.inFlight < self.config.pendingBatchesMax else {
            self.metrics.batches["overloaded", default: 0] += 1
            return .overloaded(retryAfterSeconds: 1)
        }
        self.nextBatch += 1
        let batch = EventBatch(id: BatchID(self.nextBatch), client: client, idempotencyKey: idempotencyKey, items: items)
        let actions = self.replica.ingest(batch, now: now)
        // Every acknowledgement waits for all entries persisted before it, including a replayed
        // answer whose first batch may still be on its way to the disk.
        let durableThrough = self.replica.lastSequence
        for action in actions {
            switch action {
            case .persist(let entry):
                do {
                    try await self.store.append(entry)
                } catch {
                    return .unavailable("\(error)")
                }
            case .acknowledge(_, let receipt, let replayed):
                self.inFlight += 1
                defer { self.inFlight -= 1 }
                do {
                    try await self.store.waitDurable(through: durableThrough)
                } catch {
                    self.metrics.batches["failed", default: 0] += 1
                    return .unavailable("\(error)")
                }
                // Own changes through this entry may now be published to peers.
                self.replica.durable(through: durableThrough)
                self.metrics.record(receipt, replayed: replayed)
                return .accepted(receipt, replayed: replayed)
            case .reject(_, let reason):
                self.metrics.batches["refused", default: 0] += 1
                return .refused(reason)
            case .scheduleTick, .send:
                break  // ingest neither schedules nor sends: sending happens on ticks and receipts
            }
        }
        preconditionFailure("replica.ingest returned no answer for a batch: \(actions)")
    }

    func recordRefused(status: Int) {
        self.metrics.refusedRequest(status: status)
    }

    // MARK: - Reads

    /// Answers a local read. The query runs off this actor, on a snapshot of the replica (a value:
    /// taking it copies nothing until the next ingest writes), so a query within its cost bound
    /// never holds up ingest, and ingest never changes a query's answer halfway.
    public nonisolated func query(_ query: Query) async throws(QueryError) -> (QueryResult, version: UInt64) {
        let (replica, now) = await self.snapshot()
        return (try replica.query(query, now: now), replica.stateVersion)
    }

    /// The replica as it is now, and the time.
    func snapshot() -> (Replica, Timestamp) {
        (self.replica, self.clock())
    }

    public func catalog() -> [(service: String, operations: [String])] {
        self.replica.catalog
    }

    public var now: Timestamp { self.clock() }

    // MARK: - Global reads

    /// A global read's answer: the query over this region's state joined with every answering
    /// region's, which regions answered, and why the others did not.
    public struct GlobalAnswer: Sendable {
        public var result: QueryResult
        public var answered: [String]
        public var missing: [(region: String, reason: String)]
        /// Origins whose region answered: their data is current as of the read.
        public var answeredOrigins: Set<UInt64>
    }

    /// Most global reads waiting for peers at once; more are refused (HTTP 503), so a burst of
    /// them cannot pile up answers in memory.
    public static let globalReadsMax = 64

    public enum GlobalReadError: Error, CustomStringConvertible {
        case query(QueryError)
        case busy(inFlight: Int)

        public var description: String {
            switch self {
            case .query(let error): error.description
            case .busy(let count): "\(count) global reads are already waiting for other regions; retry shortly"
            }
        }
    }

    struct PendingRead {
        var waiting: Set<String>
        var answers: [String: ReadAnswer] = [:]
        var continuation: CheckedContinuation<Void, Never>?
    }

    /// Answers `query` with every reachable region's state (`consistency=global`): asks each peer
    /// for its buckets of the query, waits up to `timeout` for the answers, joins them (the CRDT
    /// merge, so nothing is counted twice) and names the regions that did not answer.
    public func globalQuery(_ query: Query, timeout: Duration) async throws(GlobalReadError) -> GlobalAnswer {
        guard self.pendingReads.count < Self.globalReadsMax else { throw .busy(inFlight: self.pendingReads.count) }
        self.nextReadID &+= 1
        let id = self.nextReadID
        let request: ReadRequest
        do {
            request = try self.replica.readRequest(for: query, id: id, now: self.clock())
        } catch {
            throw .query(error)
        }
        var missing: [(region: String, reason: String)] = []
        var waiting: Set<String> = []
        if let transport = self.transport {
            let bytes = request.encoded()
            for peer in transport.peers {
                if let reason = transport.sendRead(bytes, toRegion: peer.identity.region) {
                    missing.append((peer.identity.region, reason))
                } else {
                    waiting.insert(peer.identity.region)
                }
            }
        }
        if !waiting.isEmpty {
            self.pendingReads[id] = PendingRead(waiting: waiting)
            let timer = Task { [weak self] in
                try? await Task.sleep(for: timeout)
                await self?.finishRead(id)
            }
            await withCheckedContinuation { continuation in
                self.pendingReads[id]?.continuation = continuation
            }
            timer.cancel()
        }
        let pending = self.pendingReads.removeValue(forKey: id) ?? PendingRead(waiting: [])
        for region in pending.waiting.sorted() {
            missing.append((region, "no answer within \(timeout)"))
        }
        var answers: [ReadAnswer] = []
        var answered: [String] = []
        for region in pending.answers.keys.sorted() {
            let answer = pending.answers[region]!  // key from the same dictionary
            if answer.outcome == .tooLarge {
                missing.append((region, "its answer would exceed one message; narrow the range, filters or metrics"))
            } else {
                answers.append(answer)
                answered.append(region)
            }
        }
        let origins = Set((self.transport?.peers ?? []).filter { answered.contains($0.identity.region) }
            .compactMap(\.origin))
        let result: QueryResult
        do {
            result = try await Self.join(query, on: self.replica, now: self.clock(), answers: answers)
        } catch {
            throw .query(error)
        }
        return GlobalAnswer(result: result, answered: answered, missing: missing.sorted { $0.region < $1.region },
                            answeredOrigins: origins.union([self.replicaID.rawValue]))
    }

    /// Joins peers' answers into a copy of `replica` and answers `query` from it, off this actor.
    private nonisolated static func join(_ query: Query, on replica: Replica, now: Timestamp,
                                         answers: [ReadAnswer]) async throws(QueryError) -> QueryResult {
        try replica.query(query, now: now, joining: answers)
    }

    /// Resumes a waiting global read (all answered, or its time is up).
    private func finishRead(_ id: UInt64) {
        self.pendingReads[id]?.continuation?.resume()
        self.pendingReads[id]?.continuation = nil
    }

    /// A `read` frame from a peer: a request to answer from this replica, or an answer to a read
    /// waiting here. Bytes that do not decode are counted with the refused replication messages.
    func receiveRead(_ bytes: [UInt8], from region: String) {
        if let request = try? ReadRequest(encoded: bytes) {
            let frameBytesMax = self.transport?.configuration.frameBytesMax ?? Frame.defaultBytesMax
            let answer = self.replica.answer(request, bytesMax: frameBytesMax - 64 * 1_024)
            _ = self.transport?.sendRead(answer.encoded(), toRegion: region)
        } else if let answer = try? ReadAnswer(encoded: bytes) {
            guard var pending = self.pendingReads[answer.id], pending.waiting.remove(region) != nil else { return }
            pending.answers[region] = answer
            self.pendingReads[answer.id] = pending
            if pending.waiting.isEmpty { self.finishRead(answer.id) }
        } else {
            self.metrics.refusedReads += 1
        }
    }

    /// How far behind each other origin this node is (empty without peers).
    /// Requests counted in every day bucket: what `tally demo` compares across regions.
    public func totalRequests() -> UInt64 {
        self.replica.totalRequests(at: .day)
    }

    /// Per origin, the last version integrated: equal in every region means converged.
    public func versions() -> [(origin: ReplicaID, version: UInt64)] {
        self.replica.versions
    }

    public func staleness() -> [(origin: ReplicaID, behind: Duration?)] {
        self.replica.staleness(now: self.clock())
    }
    public var stateVersion: UInt64 { self.replica.stateVersion }

    /// The Prometheus text exposition of the node's metrics.
    public func metricsText() async -> String {
        let commits = await self.store.commits
        let entries = await self.store.committedEntries
        let commitDuration = await self.store.commitDuration
        let checkpoints = await self.store.checkpointsWritten
        let checkpointDuration = await self.store.checkpointDuration
        let logEntries = await self.store.durableSequence - self.store.checkpointSequence
        return self.metrics.exposition(
            queueDepth: self.inFlight, commits: commits, committedEntries: entries, commitDuration: commitDuration,
            checkpoints: checkpoints, checkpointDuration: checkpointDuration, logEntriesAfterCheckpoint: logEntries,
            staleness: self.replica.staleness(now: self.clock()), refusedMessages: self.replica.refusedMessages,
            storageBytes: self.store.sizeBytes(), series: self.replica.seriesCount,
            timeBuckets: self.replica.bucketCount)
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
