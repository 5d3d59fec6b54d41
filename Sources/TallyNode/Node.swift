import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import TallyAggregates
import TallyNodeCore
import TallyProtocols
import TallyReplica
import TallySLO

/// A region node's shell: the `NodeCore` (the replica and every decision around it) owned by one
/// actor, and the I/O it asks for: the SQLite log and checkpoints, the peer transport, the timer.
///
/// The actor decides nothing: each input (a request, a durable commit, a frame, a tick) goes to
/// the core, and the actions that come back are carried out. While one group commit is being
/// written the next batches are applied and join the following commit. Queries run off the actor
/// on a snapshot of the replica.
public actor Node {
    public let config: NodeConfig
    public nonisolated let replicaID: ReplicaID
    private var core: NodeCore
    private let store: EventStore
    private let clock: @Sendable () -> Timestamp
    private let logger: Logger
    private var nextBatch: UInt64 = 0
    /// Answers the core gave for batches whose requests have not picked them up yet (an
    /// acknowledgement released by another request's commit). At most one per pending batch.
    private var outcomes: [BatchID: IngestOutcome] = [:]
    private var tickTask: Task<Void, Never>?
    /// `stop` ran (a second call does nothing).
    private var stopped = false
    /// The SLOs of the config's `slo_files` (read at start and on SIGHUP).
    public private(set) var slos: [SLOSpec] = []
    /// Differs on every start: ETags carry it, since the state version restarts from the image.
    public nonisolated let bootID = UInt64.random(in: 1...UInt64.max)
    /// The node's own metrics (`/metrics`); `tally serve` bootstraps swift-metrics with its registry.
    public nonisolated let metrics: NodeMetrics
    /// The connections to the other regions (nil: a single region).
    public private(set) var transport: PeerTransport?
    /// Frames from each peer, in arrival order, bounded (`PeerInbox`).
    private var inbox: PeerInbox?
    /// The cluster section in force: the config's, or the last one a reload applied.
    private var clusterInForce: NodeConfig.ClusterConfig?
    /// Global reads waiting for the core to complete them, by read id.
    private var reads: [UInt64: CheckedContinuation<NodeCore.GlobalRead, Never>] = [:]
    /// Each peer's connection as last told to the core.
    private var peerStates: [String: NodeCore.PeerState] = [:]
    /// The origin each peer's last hello named, as last told to the core.
    private var peerOrigins: [String: UInt64] = [:]
    /// Where alerts go (nil: no Alertmanager configured; alerts are still tracked and reported).
    public nonisolated let alertmanager: AlertmanagerClient?
    /// The node's own requests as events (nil: `observe_self` is off).
    public nonisolated let selfObservation: SelfObservation?
    private var selfTask: Task<Void, Never>?
    /// SLO evaluations run and failed, and alerts handed to the Alertmanager client.
    private var sloEvaluations: UInt64 = 0
    private var sloEvaluationFailures: UInt64 = 0

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
        let slos: [SLOSpec]
        do {
            slos = try Self.loadSLOs(config)
        } catch {
            throw NodeStartError(reason: "slo_files: \(error)")
        }
        let metrics = NodeMetrics()
        let store = try EventStore(directory: config.dataDirectory, onFailure: onStorageFailure) { commit, checkpoint in
            metrics.stored(commit: commit, checkpoint: checkpoint)
        }
        let started = ContinuousClock.now
        let (image, entries) = try await store.recover()
        let (identity, ranBefore) = try await Self.identity(
            directory: config.dataDirectory, config: config, store: store,
            storeHoldsData: image.sequence > 0 || !entries.isEmpty, clock: clock, logger: logger)
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
            replicaConfig.wireVersions = 1...NodeCore.wireVersion(forProtocol: cluster.protocols.upperBound)
        }
        var replica = Replica(config: replicaConfig, restoring: image)
        for entry in entries { replica.replay(entry) }
        let core = NodeCore(replica: replica, config: config.core(
            frameBytesMax: config.cluster?.frameBytesMax ?? Frame.defaultBytesMax), imageTakenAt: image.takenAt,
            now: clock(), region: config.region, ranBefore: ranBefore)
        logger.info("recovered", metadata: [
            "checkpoint_sequence": "\(image.sequence)", "time_buckets": "\(image.buckets.count)",
            "log_entries": "\(entries.count)", "sequence": "\(replica.lastSequence)",
            "duration": "\(ContinuousClock.now - started)",
        ])
        let node = Node(config: config, core: core, store: store, metrics: metrics, clock: clock, logger: logger)
        await node.setSLOs(slos)
        if let cluster = config.cluster {
            try await node.startTransport(cluster, incarnation: identity.rawValue)
        }
        await node.startTicking()
        await node.startObservingSelf()
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
        configuration.protocols = cluster.protocols
        configuration.frameBytesMax = cluster.frameBytesMax
        let inbox = PeerInbox(framesMax: PeerInbox.defaultFramesMax) { [weak self] frame, region in
            await self?.deliver(frame, from: region)
        }
        let transport = try PeerTransport(
            configuration: configuration, group: MultiThreadedEventLoopGroup.singleton, logger: self.logger
        ) { peer, bytes in
            inbox.post(.message(bytes), from: peer.region)
        }
        transport.onRead { peer, bytes in
            inbox.post(.read(bytes), from: peer.region)
        }
        self.inbox = inbox
        let port: Int
        do {
            port = try await transport.start(host: cluster.listenHost, port: cluster.listenPort)
        } catch {
            throw NodeStartError(reason: "cluster.listen \(cluster.listenHost):\(cluster.listenPort): cannot listen "
                + "for peers: \(Self.describe(error))")
        }
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
        // SLO specs first: a file that does not load leaves everything as it was.
        let slos: [SLOSpec]
        do {
            slos = try Self.loadSLOs(new)
        } catch {
            throw ReloadError(reason: "slo_files: \(error) (the running SLOs are kept)")
        }
        var notes = try self.reloadCluster(new)
        self.setSLOs(slos)
        notes.append("SLOs: \(slos.count) from \(new.sloFiles.count) file\(new.sloFiles.count == 1 ? "" : "s")")
        return notes
    }

    /// Every SLO of the config's spec files; a name used twice is refused.
    static func loadSLOs(_ config: NodeConfig) throws(SLOError) -> [SLOSpec] {
        var specs: [SLOSpec] = []
        var files: [String: String] = [:]
        for file in config.sloFiles {
            for spec in try SLOFile.load(path: file) {
                if let other = files[spec.name] {
                    throw SLOError(file: file, key: "name", value: spec.name, message: "is also an SLO in \(other)")
                }
                files[spec.name] = file
                specs.append(spec)
            }
        }
        return specs
    }

    private func setSLOs(_ slos: [SLOSpec]) {
        self.slos = slos
        self.carryOut(self.core.setSLOs(slos, now: self.clock()))
    }

    /// An evaluation the core asked for finished (off this actor).
    private func evaluated(_ evaluation: SLOEvaluation) {
        self.sloEvaluations += 1
        self.sloEvaluationFailures += UInt64(evaluation.failures.count)
        for failure in evaluation.failures {
            self.logger.warning("SLO not evaluated", metadata: ["slo": "\(failure.slo)", "reason": "\(failure.reason)"])
        }
        self.carryOut(self.core.slosEvaluated(evaluation, now: self.clock()))
    }

    /// The alerts firing as of the last evaluation, and when it ran.
    public func alertState() -> (firing: [Alert], evaluatedAt: Timestamp?, view: View?) {
        (self.core.firingAlerts, self.core.lastEvaluation?.at, self.core.lastEvaluation?.view)
    }

    /// The link each alert carries back to its SLO on this node.
    var generatorURL: String {
        self.config.alerting.generatorURL ?? "http://\(self.config.listenHost):\(self.config.listenPort)/v1/slo"
    }

    /// The SLOs evaluated on this region's state, off this actor: the config's (`named`: that one
    /// only), or `specs` given by a client; as of now, or of an earlier instant `at`; with the
    /// report's breakdown when asked for.
    public nonisolated func sloStatuses(named name: String? = nil, specs given: [SLOSpec]? = nil, at: Timestamp? = nil,
                                        breakdown: Bool = false)
        async throws(QueryError) -> [(status: SLOStatus, breakdown: SLOBreakdown?)]
    {
        let (replica, now, configured) = await self.sloSnapshot()
        var statuses: [(status: SLOStatus, breakdown: SLOBreakdown?)] = []
        for spec in given ?? configured where name == nil || spec.name == name {
            let status = try spec.evaluate(on: replica, at: at ?? now, now: now)
            statuses.append((status, breakdown ? try spec.breakdown(on: replica, at: at ?? now, now: now) : nil))
        }
        return statuses
    }

    /// Which regions a global-consistency SLO evaluation heard from, and how far back it asked.
    public struct GlobalSLOView: Sendable {
        public var answered: [String]
        public var missing: [(region: String, reason: String)]
        /// Buckets newer than this were read from every answering region; older ones are taken as
        /// replicated (the horizon covers the furthest any origin is behind, plus 5 minutes).
        public var horizon: Duration
    }

    /// The SLOs evaluated at global consistency: this region's state joined with the recent
    /// buckets every answering region holds of each SLO's service (global reads, the CRDT join),
    /// so events not yet replicated here count too; the regions that did not answer are named.
    public func sloStatusesGlobally(named name: String? = nil, specs given: [SLOSpec]? = nil, at: Timestamp? = nil,
                                    breakdown: Bool = false) async throws(QueryError)
        -> (statuses: [(status: SLOStatus, breakdown: SLOBreakdown?)], view: GlobalSLOView)
    {
        let now = self.clock()
        let at = at ?? now
        let specs = (given ?? self.slos).filter { name == nil || $0.name == name }
        // Everything older than the furthest-behind origin (and a margin) is already here.
        let behind = self.core.replica.staleness(now: now).compactMap(\.behind).max() ?? .zero
        let horizon = min(max(behind, .zero) + .seconds(300), .seconds(86_400))
        var requests: [ReadRequest] = []
        for spec in specs {
            let latency: Bool
            if case .latency = spec.indicator { latency = true } else { latency = false }
            for (resolution, range) in spec.reads(on: self.core.replica, at: at, now: now).sorted(by: { $0.key < $1.key }) {
                let request = ReadRequest(id: 0, service: spec.service, operation: nil, statusClass: nil,
                                          resolution: resolution, from: max(range.from, at - horizon), to: range.to,
                                          latency: latency, users: false)
                if !requests.contains(request) { requests.append(request) }
            }
        }
        var answers: [ReadAnswer] = []
        var answered: Set<String> = []
        var missing: [String: String] = [:]
        for request in requests {
            self.notePeers(now: self.clock())
            let query = Query(service: request.service, from: request.from, to: request.to, metrics: [.count])
            let started: (id: UInt64, actions: [NodeCore.Action])
            do {
                started = try self.core.startGlobalRead(request, describedBy: query, now: self.clock())
            } catch {
                for region in self.core.peers.keys { missing[region] = missing[region] ?? "\(error)" }
                continue
            }
            let read = await withCheckedContinuation { continuation in
                self.reads[started.id] = continuation
                self.carryOut(started.actions)
            }
            for (region, answer) in read.answers {
                answered.insert(region)
                answers.append(answer)
            }
            for (region, reason) in read.missing { missing[region] = missing[region] ?? reason }
        }
        let joined = self.core.replica.joining(answers, now: now)
        var statuses: [(status: SLOStatus, breakdown: SLOBreakdown?)] = []
        for spec in specs {
            let status = try spec.evaluate(on: joined, at: at, now: now)
            statuses.append((status, breakdown ? try spec.breakdown(on: joined, at: at, now: now) : nil))
        }
        let view = GlobalSLOView(
            answered: [self.config.region] + answered.subtracting(missing.keys).sorted(),
            missing: missing.keys.sorted().map { ($0, missing[$0]!) }, horizon: horizon)
        return (statuses, view)
    }

    /// The region each origin this node can name belongs to: its own, and each connected peer's
    /// current incarnation (from its hello). Earlier incarnations are not named.
    public func originRegions() -> [ReplicaID: String] {
        var names = [self.replicaID: self.config.region]
        for peer in self.transport?.peers ?? [] {
            guard let incarnation = peer.origin else { continue }
            names[ReplicaID(region: peer.identity.region, node: peer.identity.node, incarnation: incarnation)]
                = peer.identity.region
        }
        return names
    }

    private func sloSnapshot() -> (Replica, Timestamp, [SLOSpec]) { (self.core.replica, self.clock(), self.slos) }

    /// Every series' converged totals by the region that received them, for the Prometheus export:
    /// computed off this actor on a snapshot. Origins this node cannot name (a peer not connected
    /// since this node started, or an earlier incarnation) are labelled `origin-<id>`.
    public nonisolated func exportedSeries() async throws(Replica.TotalsTooLarge) -> [PrometheusExposition.Series] {
        let (replica, _) = await self.snapshot()
        let regions = await self.originRegions()
        let totals = try replica.dayTotals()
        var series: [PrometheusExposition.Series] = []
        var positions: [String: Int] = [:]
        for total in totals {
            let region = regions[total.origin] ?? "origin-\(total.origin)"
            let id = "\(total.key.service)\u{0}\(total.key.operation)\u{0}\(total.key.statusClass)\u{0}\(region)"
            if let position = positions[id] {
                series[position].requests &+= total.requests
                series[position].errors &+= total.errors
                series[position].latency.add(total.latency)
            } else {
                positions[id] = series.count
                series.append(PrometheusExposition.Series(
                    service: total.key.service, operation: total.key.operation, status: "\(total.key.statusClass)",
                    region: region, requests: total.requests, errors: total.errors, latency: total.latency))
            }
        }
        return series
    }

    /// The cluster part of a reload: peers and TLS files.
    private func reloadCluster(_ reloaded: NodeConfig) throws(ReloadError) -> [String] {
        var new = reloaded
        new.sloFiles = self.config.sloFiles  // applied by the caller
        guard let cluster = new.cluster, let running = self.clusterInForce, let transport = self.transport else {
            if new.cluster == nil && self.clusterInForce == nil {
                return new == self.config ? ["nothing changed"] : ["changes wait for a restart (a single region reloads nothing)"]
            }
            throw ReloadError(reason: new.cluster == nil
                ? "the cluster section was removed: leaving the cluster needs a restart"
                : "a cluster section was added: joining a cluster needs a restart")
        }
        var notes: [String] = []
        var certificateWarnings: [String] = []
        if !cluster.insecure {
            // Files every peer would refuse must not replace working ones: the node would cut
            // itself off, every peer refusing it many times a second.
            let (fatal, warnings, _) = ClusterCheck.certificateProblems(config: new, cluster: cluster, now: Date())
            guard fatal.isEmpty else {
                throw ReloadError(reason: fatal.joined(separator: "; ") + " (the running certificates are kept)")
            }
            certificateWarnings = warnings
        }
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
        guard self.core.setPeers(cluster.peers.map(\.region)) else {
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
        return notes + certificateWarnings
    }

    /// A socket error in words: NIO says `bind(descriptor:ptr:bytes:): Address already in use (errno: 98)`.
    public static func describe(_ error: any Error) -> String {
        let text = "\(error)"
        // NIO's bind errors are IOErrors; a wrapper may hide one, whose text still names its errno.
        let code = (error as? IOError)?.errnoCode
        func means(_ errno: CInt) -> Bool { code == errno || text.contains("errno: \(errno))") || text.hasSuffix("errno: \(errno)") }
        if means(EADDRINUSE) { return "the address is already in use (another process listens there)" }
        if means(EADDRNOTAVAIL) { return "the address is not one of this machine's" }
        if means(EACCES) { return "permission denied (a port below 1024 needs privileges)" }
        return text
    }

    /// Why a node could not start, naming the file, address or key.
    public struct NodeStartError: Error, CustomStringConvertible, Sendable {
        public var reason: String
        public var description: String { self.reason }
    }

    /// Why a reloaded config was not applied.
    public struct ReloadError: Error, CustomStringConvertible, Sendable {
        public var reason: String
        public var description: String { self.reason }
    }

    /// A frame from the node of `region`, already authenticated by the transport, in the order it
    /// arrived on its connection.
    func deliver(_ frame: PeerInbox.Frame, from region: String) {
        let now = self.clock()
        switch frame {
        case .message(let bytes):
            self.carryOut(self.core.received(bytes, from: region, now: now))
        case .read(let bytes):
            let (actions, refused) = self.core.receivedRead(bytes, from: region, now: now)
            if let refused {
                self.metrics.refusedRead()
                self.logger.warning("peer read frame refused", metadata: ["region": "\(region)", "reason": "\(refused)"])
            }
            self.carryOut(actions)
        }
    }

    /// Carries out the core's actions (all but `.persist`, which only `ingest` receives and awaits).
    private func carryOut(_ actions: [NodeCore.Action]) {
        for action in actions {
            switch action {
            case .persist(let entry):
                preconditionFailure("the core asked to persist entry \(entry.sequence) outside ingest")
            case .acknowledge(let batch, let receipt, let replayed, _):
                self.metrics.record(receipt, replayed: replayed)
                self.outcomes[batch] = .accepted(receipt, replayed: replayed)
            case .refuse(let batch, let refusal):
                switch refusal {
                case .rateLimited:
                    self.metrics.batch("rate_limited")
                    self.outcomes[batch] = .rateLimited(retryAfterSeconds: refusal.retryAfterSeconds ?? 1)
                case .overloaded:
                    self.metrics.batch("overloaded")
                    self.outcomes[batch] = .overloaded(retryAfterSeconds: refusal.retryAfterSeconds ?? 1)
                case .batch(let rejection):
                    self.metrics.batch("refused")
                    self.outcomes[batch] = .refused(rejection)
                }
            case .send(let bytes, let region, let version):
                // Dropped and counted when it cannot go; a connection that agreed another version
                // since the last look is news for the core (the next messages go at its version).
                if let transport = self.transport, transport.send(bytes, toRegion: region, protocolVersion: version) != nil {
                    self.notePeers(now: self.clock())
                }
            case .askRead(let bytes, let region, let read):
                let reason = self.transport.map { $0.sendRead(bytes, toRegion: region) } ?? "no transport"
                if let reason {
                    self.carryOut(self.core.readNotSent(read, to: region, reason: reason, now: self.clock()))
                }
            case .answerRead(let bytes, let region):
                _ = self.transport?.sendRead(bytes, toRegion: region)
            case .completeRead(let read):
                self.reads.removeValue(forKey: read.id)?.resume(returning: read)
            case .storeCheckpoint(let checkpoint):
                // Encoding runs off this actor, so ingest goes on meanwhile; the store writes it
                // once the log entries it covers are durable.
                let store = self.store
                Task {
                    let encoded = await EncodedCheckpoint.encode(checkpoint)
                    do {
                        try await store.store(encoded)
                    } catch {
                        return  // a failed store fails stop and reports itself
                    }
                    self.checkpointQueued(checkpoint.sequence)  // the task runs on this actor
                }
            case .scheduleTick(let at):
                // The loop sleeps until the last schedule; an earlier one wakes it to sleep anew.
                if at < self.sleepingUntil { self.sleeping?.cancel() }
            case .evaluateSLOs(let request):
                // Reads every bucket of each SLO's windows: on a snapshot, off this actor.
                let replica = self.core.replica
                Task.detached { [weak self] in
                    let evaluation = request.evaluate(on: replica)
                    await self?.evaluated(evaluation)
                }
            case .sendAlerts(let alerts):
                for alert in alerts {
                    self.logger.info(alert.resolved ? "alert resolved" : "alert firing", metadata: [
                        "alert": "\(alert.fingerprint)", "summary": "\(alert.annotations["summary"] ?? "")",
                    ])
                }
                guard let alertmanager = self.alertmanager else { continue }
                let body = Alert.alertmanagerBody(alerts, generatorURL: self.generatorURL)
                Task.detached { await alertmanager.post(body: body, count: alerts.count) }
            }
        }
    }

    private func checkpointQueued(_ sequence: UInt64) {
        self.carryOut(self.core.checkpointStored(sequence, now: self.clock()))
    }

    private init(config: NodeConfig, core: NodeCore, store: EventStore, metrics: NodeMetrics,
                 clock: @escaping @Sendable () -> Timestamp, logger: Logger)
    {
        self.config = config
        self.metrics = metrics
        self.replicaID = core.replica.config.id
        self.core = core
        self.store = store
        self.clock = clock
        self.logger = logger
        self.alertmanager = config.alerting.alertmanagers.isEmpty
            ? nil : AlertmanagerClient(urls: config.alerting.alertmanagers)
        self.selfObservation = config.observeSelf ? SelfObservation() : nil
    }

    /// Once a second, what `selfObservation` recorded goes in as one batch; every 10 s with each
    /// peer region's freshness.
    private func startObservingSelf() {
        guard let observation = self.selfObservation else { return }
        self.selfTask = Task { [weak self] in
            var second = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                second += 1
                guard let self else { return }
                await self.ingestSelf(observation.drain(), freshness: second % 10 == 0)
            }
        }
    }

    private func ingestSelf(_ recorded: [BatchItem], freshness: Bool) async {
        var items = recorded
        if freshness {
            let now = self.clock()
            for (region, silent) in self.core.peerSilence(now: now) {
                items.append(.event(Event(service: SelfObservation.replicationService, operation: region, status: 200,
                                          latencyMicros: Double(max(silent.milliseconds, 0)) * 1_000 + 1, userID: nil,
                                          timestamp: now)))
            }
        }
        let limit = self.config.limits.batchEventsMax
        var start = 0
        while start < items.count {
            let part = Array(items[start..<min(items.count, start + limit)])
            start += limit
            _ = await self.ingest(items: part, client: "tally-self", idempotencyKey: nil)
        }
    }

    /// The node's clock (the system's, unless a test gave another).
    public nonisolated func currentTime() -> Timestamp { self.clock() }

    /// Milliseconds since the epoch from the system clock.
    public static let wallClock: @Sendable () -> Timestamp = {
        Timestamp(millisecondsSinceEpoch: Int64((Date().timeIntervalSince1970 * 1_000).rounded(.down)))
    }

    /// This node's replica id: region, node and the incarnation its store belongs to
    /// (`Incarnation.choose`): a node whose store was lost comes back as a new origin, whatever
    /// the identity file beside it says. The file is kept in step for operators to read.
    /// Also returns the origin the identity file named when the node starts as another: it ran as
    /// that one before, and it is retired (`OriginDirectory`).
    static func identity(directory: String, config: NodeConfig, store: EventStore, storeHoldsData: Bool,
                         clock: () -> Timestamp, logger: Logger) async throws
        -> (id: ReplicaID, ranBefore: [ReplicaID])
    {
        let path = (directory as NSString).appendingPathComponent("incarnation")
        let file = (try? String(contentsOfFile: path, encoding: .utf8))
            .flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        let stored = try await store.incarnation()
        // A fresh incarnation from the clock, above the file's so the two can never be equal.
        let fresh = max(UInt64(max(clock().millisecondsSinceEpoch, 1)), (file ?? 0) &+ 1)
        let decision = Incarnation.choose(stored: stored, storeHoldsData: storeHoldsData, identityFile: file, fresh: fresh)
        switch decision {
        case .reuse:
            break
        case .adopt(let incarnation):
            try await store.record(incarnation: incarnation)
        case .new(let incarnation, let reason):
            if file != nil {
                logger.warning("starting as a new origin", metadata: [
                    "reason": "\(reason)", "incarnation": "\(incarnation)", "store": "\(store.path)",
                ])
            }
            try await store.record(incarnation: incarnation)
        }
        if file != decision.incarnation {
            do {
                try "\(decision.incarnation)\n".write(toFile: path, atomically: true, encoding: .utf8)
            } catch {
                throw NodeStartError(reason: "cannot write the identity file \(path): \(error.localizedDescription)")
            }
        }
        let ranBefore = file.flatMap { $0 == decision.incarnation ? nil : [
            ReplicaID(region: config.region, node: config.node, incarnation: $0)] } ?? []
        return (ReplicaID(region: config.region, node: config.node, incarnation: decision.incarnation), ranBefore)
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
        self.tick()
        self.tickTask = Task { [weak self] in
            while !Task.isCancelled {
                guard let sleep = await self?.sleepUntilNextTick() else { return }
                await sleep.value
                await self?.tick()
            }
        }
    }

    /// The tick loop's current sleep: cancelled to wake it early when the core's schedule moves
    /// forward (a global read's deadline).
    private var sleeping: Task<Void, Never>?
    private var sleepingUntil = Timestamp(millisecondsSinceEpoch: Timestamp.validMillis.upperBound)

    /// A sleep until the tick the core scheduled (at most a second, should the clock jump).
    private func sleepUntilNextTick() -> Task<Void, Never> {
        let now = self.clock()
        let wait = min(max(self.core.nextTick - now, .zero), .seconds(1))
        self.sleepingUntil = now + wait
        let sleep = Task { _ = try? await Task.sleep(for: wait) }
        self.sleeping = sleep
        return sleep
    }

    private func tick() {
        let now = self.clock()
        self.notePeers(now: now)
        self.carryOut(self.core.tick(now: now))
    }

    /// Tells the core which peer connections came up or went down since the last look.
    private func notePeers(now: Timestamp) {
        guard let transport = self.transport else { return }
        for peer in transport.peers {
            let region = peer.identity.region
            let state = NodeCore.PeerState(connected: peer.connected && peer.protocolVersion != nil,
                                           protocolVersion: peer.protocolVersion)
            // A peer that restarted as a new origin between two looks is still connected, at the
            // same protocol: its hello's origin tells the core anyway.
            let originChanged = state.connected && peer.origin != nil && self.peerOrigins[region] != peer.origin
            guard self.peerStates[region] != state || originChanged else { continue }
            self.peerStates[region] = state
            if state.connected, let version = state.protocolVersion {
                if let origin = peer.origin { self.peerOrigins[region] = origin }
                self.carryOut(self.core.peerConnected(region, protocolVersion: version, origin: peer.origin.map { ReplicaID($0) },
                                                      now: now))
            } else {
                self.carryOut(self.core.peerDisconnected(region, reason: peer.lastError ?? "not connected", now: now))
            }
        }
    }

    /// Stops the timer after a last checkpoint (SIGTERM drains: in-flight batches still complete),
    /// and closes the peer connections.
    public func stop() async {
        guard !self.stopped else { return }
        self.stopped = true
        self.tickTask?.cancel()
        self.selfTask?.cancel()
        // A checkpoint already on its way is stored first: checkpoints are stored in order.
        for _ in 0..<1_000 where self.core.checkpointInFlight != nil {
            try? await Task.sleep(for: .milliseconds(5))
        }
        for case .storeCheckpoint(let checkpoint) in self.core.stopping(now: self.clock()) {
            let encoded = await EncodedCheckpoint.encode(checkpoint)
            try? await self.store.store(encoded)  // a failed store fails stop and reports itself
        }
        await self.store.flush()
        await self.transport?.shutdown()
        self.inbox?.finish()
    }

    // MARK: - Ingest

    /// A batch from an authenticated client: the core admits it (rate limit, overload bound) and
    /// applies it; this request's task writes its log entry, waits for the commit, reports it to
    /// the core, and returns the answer the core gave.
    /// `fingerprints`: empty, or one per item (`EventBatch.fingerprints`: OTLP spans).
    public func ingest(items: [BatchItem], client: String, idempotencyKey: String?, fingerprints: [UInt64] = [])
        async -> IngestOutcome
    {
        let arrived = ContinuousClock.now
        self.nextBatch += 1
        let id = BatchID(self.nextBatch)
        let actions = self.core.ingest(
            EventBatch(id: id, client: client, idempotencyKey: idempotencyKey, items: items, fingerprints: fingerprints),
            now: self.clock())
        // What the answer waits for: every entry so far (a replayed answer's batch may still be on
        // its way to the disk). Read before any await, as the core did.
        let waitsFor = self.core.replica.lastSequence
        for action in actions {
            guard case .persist(let entry) = action else { continue }
            do {
                try await self.store.append(entry)
            } catch {
                return .unavailable("\(error)")
            }
        }
        self.carryOut(actions.filter { if case .persist = $0 { false } else { true } })
        if let outcome = self.outcomes.removeValue(forKey: id) { return outcome }
        do {
            try await self.store.waitDurable(through: waitsFor)
        } catch {
            self.metrics.batch("failed")
            return .unavailable("\(error)")
        }
        self.carryOut(self.core.persisted(0...waitsFor, now: self.clock()))
        guard let outcome = self.outcomes.removeValue(forKey: id) else {
            preconditionFailure("the core did not answer \(id) once the log was durable through \(waitsFor)")
        }
        if case .accepted = outcome { self.metrics.acknowledged(after: ContinuousClock.now - arrived) }
        return outcome
    }

    /// Counts what the node did with a batch of StatsD items (`tally_statsd_items_total`).
    func recordStatsD(_ outcome: IngestOutcome, items: Int) {
        switch outcome {
        case .accepted(let receipt, _):
            self.metrics.statsd(items: ["accepted": UInt64(receipt.accepted), "rejected": UInt64(receipt.rejected.count)])
        default:
            self.metrics.statsd(items: ["refused": UInt64(items)])
        }
    }

    func recordStatsDCounts(_ counts: StatsDCounts) {
        self.metrics.statsd(datagrams: counts.datagrams, lines: [
            "mapped": counts.mapped, "invalid": counts.invalid, "skipped": counts.skipped, "dropped": counts.dropped,
        ])
    }

    /// Counts OTLP spans or metric points by outcome (`tally_otlp_spans_total`, `tally_otlp_points_total`).
    func recordOTLP(_ signal: OTLPReceiver.Signal, _ outcome: String, _ count: Int) {
        guard count > 0 else { return }
        switch signal {
        case .spans: self.metrics.otlp(spans: outcome, count)
        case .points: self.metrics.otlp(points: outcome, count)
        }
    }

    // MARK: - Reads

    /// Answers a local read. The query runs off this actor, on a snapshot of the replica (a value:
    /// taking it copies nothing until the next ingest writes), so a query within its cost bound
    /// never holds up ingest, and ingest never changes a query's answer halfway.
    /// `stopping` is asked every few thousand buckets read (the client went away: `.stopped`).
    public nonisolated func query(_ query: Query, stopping: (@Sendable () -> Bool)? = nil) async throws(QueryError)
        -> (QueryResult, version: UInt64)
    {
        let (replica, now) = await self.snapshot()
        return (try replica.query(query, now: now, stopping: stopping), replica.stateVersion)
    }

    /// A query stopped because its client went away (`/metrics`).
    func queryStopped() {
        self.metrics.queryStopped()
    }

    /// The replica as it is now, and the time.
    func snapshot() -> (Replica, Timestamp) {
        (self.core.replica, self.clock())
    }

    public func catalog() -> [(service: String, operations: [String])] {
        self.core.replica.catalog
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
    public static let globalReadsMax = NodeCore.Config().globalReadsMax

    public typealias GlobalReadError = NodeCore.GlobalReadRefusal

    /// Answers `query` with every reachable region's state (`consistency=global`): the core asks
    /// each peer for its buckets of the query and completes the read when all answered or its
    /// deadline passed; the answers are joined (the CRDT merge, so nothing is counted twice) off
    /// this actor, and the regions that did not answer are named.
    public func globalQuery(_ query: Query, stopping: (@Sendable () -> Bool)? = nil) async throws(GlobalReadError)
        -> GlobalAnswer
    {
        let now = self.clock()
        self.notePeers(now: now)  // the core decides whom to ask from the connections as they are now
        let (id, actions) = try self.core.startGlobalRead(query, now: now)
        let read = await withCheckedContinuation { continuation in
            self.reads[id] = continuation
            self.carryOut(actions)
        }
        let answered = read.answers.map(\.region)
        let origins = Set((self.transport?.peers ?? []).filter { answered.contains($0.identity.region) }
            .compactMap(\.origin))
        let result: QueryResult
        do {
            result = try await Self.join(query, on: self.core.replica, now: self.clock(), answers: read.answers.map(\.answer),
                                         stopping: stopping)
        } catch {
            throw .query(error)
        }
        return GlobalAnswer(result: result, answered: answered, missing: read.missing,
                            answeredOrigins: origins.union([self.replicaID.rawValue]))
    }

    /// Joins peers' answers into a copy of `replica` and answers `query` from it, off this actor.
    private nonisolated static func join(_ query: Query, on replica: Replica, now: Timestamp, answers: [ReadAnswer],
                                         stopping: (@Sendable () -> Bool)?) async throws(QueryError) -> QueryResult
    {
        try replica.query(query, now: now, joining: answers, stopping: stopping)
    }

    /// Requests counted in every day bucket: what `tally demo` compares across regions.
    public func totalRequests(excluding services: Set<String> = []) -> UInt64 {
        self.core.replica.totalRequests(at: .day, excluding: services)
    }

    /// Per origin, the last version integrated: equal in every region means converged.
    public func versions() -> [(origin: ReplicaID, version: UInt64)] {
        self.core.replica.versions
    }

    /// How far behind each other origin this node is (empty without peers).
    public func staleness() -> [(origin: ReplicaID, behind: Duration?)] {
        self.core.replica.staleness(now: self.clock())
    }
    public var stateVersion: UInt64 { self.core.replica.stateVersion }

    /// The Prometheus text exposition of the node's metrics.
    public func metricsText() async -> String {
        let entries = await self.store.committedEntries
        let logEntries = await self.store.durableSequence - self.store.checkpointSequence
        return self.metrics.exposition(NodeMetrics.State(
            queueDepth: self.core.pendingCount, committedEntries: entries, logEntriesAfterCheckpoint: logEntries,
            staleness: self.core.replica.staleness(now: self.clock()), refusedMessages: self.core.replica.refusedMessages,
            storageBytes: self.store.sizeBytes(), series: self.core.replica.seriesCount,
            timeBuckets: self.core.replica.bucketCount, peerFramesDropped: self.inbox?.dropped ?? [:],
            sloEvaluations: self.sloEvaluations, sloEvaluationFailures: self.sloEvaluationFailures, slos: self.slos.count,
            firing: self.core.firingAlerts, alertsSent: self.alertmanager?.outcomes ?? [:]))
    }
}

/// A node is a service of the process's `ServiceGroup` (`tally serve`): it runs (its tick loop and
/// its peer transport with it) until the group shuts down gracefully, then stops (a last
/// checkpoint, the log flushed, peers told goodbye). Listed before the HTTP server, it stops after
/// it: the group shuts services down in reverse order, so in-flight batches are answered first.
extension Node: Service {
    public nonisolated func run() async throws {
        try? await gracefulShutdown()  // returns on graceful shutdown; throws when cancelled
        await self.stop()
    }
}
