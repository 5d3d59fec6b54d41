import TallyAggregates

/// Every bound the replica enforces, in one place. Each has a reason to exist: it keeps one
/// client, one service or one bad input from growing the replica's memory without end.
public struct Limits: Sendable, Equatable {
    /// Most events in one batch; a larger batch is refused whole.
    public var batchEventsMax: Int
    /// Longest service or operation name, in UTF-8 bytes.
    public var nameBytesMax: Int
    /// Longest user id, in UTF-8 bytes.
    public var userBytesMax: Int
    /// Most distinct services; events of further services are rejected.
    public var servicesMax: Int
    /// Most distinct operations per service; events of further operations are rejected.
    public var operationsPerServiceMax: Int
    /// Largest latency accepted.
    public var latencyMax: Duration
    /// How far in the future an event's timestamp may be (client clock skew).
    public var futureSkewMax: Duration
    /// How long an idempotency key is remembered.
    public var idempotencyWindow: Duration
    /// Most idempotency keys remembered; past it the oldest are forgotten first.
    public var idempotencyKeysMax: Int
    /// Longest idempotency key, in UTF-8 bytes.
    public var idempotencyKeyBytesMax: Int
    /// How long a span's fingerprint is remembered (OTLP exporters retry for minutes, not hours).
    public var spanWindow: Duration
    /// Most span fingerprints remembered; past it the oldest are forgotten first (about 30 bytes
    /// each: size it to spans per second times the window).
    public var spanFingerprintsMax: Int
    /// Most cumulative metric streams remembered (OTLP cumulative points are turned into deltas
    /// against them); a point of a further stream is rejected.
    public var metricStreamsMax: Int
    /// A stream without a point for this long is forgotten (its next point counts whole).
    public var metricStreamWindow: Duration
    /// Most bytes of batches or state chunks sent in answer to one digest (the per-round budget).
    public var gossipBytesMax: Int
    /// Most bytes of sealed batches kept per origin for peers that are behind; a peer behind the
    /// oldest gets a state transfer instead.
    public var replicationBufferBytesMax: Int
    /// Most time buckets in one sealed batch (a seal of more makes several batches).
    public var sealBucketsMax: Int
    /// What one query may cost (points, groups, values, buckets read).
    public var query: QueryLimits

    public init(
        batchEventsMax: Int = 10_000, nameBytesMax: Int = 128, userBytesMax: Int = 256,
        servicesMax: Int = 10_000, operationsPerServiceMax: Int = 1_000, latencyMax: Duration = .seconds(3_600),
        futureSkewMax: Duration = .seconds(300), idempotencyWindow: Duration = .seconds(86_400),
        idempotencyKeysMax: Int = 1_000_000, idempotencyKeyBytesMax: Int = 256,
        spanWindow: Duration = .seconds(900), spanFingerprintsMax: Int = 2_000_000,
        metricStreamsMax: Int = 100_000, metricStreamWindow: Duration = .seconds(86_400),
        gossipBytesMax: Int = 256 << 10, replicationBufferBytesMax: Int = 8 << 20, sealBucketsMax: Int = 1_024,
        query: QueryLimits = QueryLimits()
    ) {
        self.batchEventsMax = batchEventsMax
        self.nameBytesMax = nameBytesMax
        self.userBytesMax = userBytesMax
        self.servicesMax = servicesMax
        self.operationsPerServiceMax = operationsPerServiceMax
        self.latencyMax = latencyMax
        self.futureSkewMax = futureSkewMax
        self.idempotencyWindow = idempotencyWindow
        self.idempotencyKeysMax = idempotencyKeysMax
        self.idempotencyKeyBytesMax = idempotencyKeyBytesMax
        self.spanWindow = spanWindow
        self.spanFingerprintsMax = spanFingerprintsMax
        self.metricStreamsMax = metricStreamsMax
        self.metricStreamWindow = metricStreamWindow
        self.gossipBytesMax = gossipBytesMax
        self.replicationBufferBytesMax = replicationBufferBytesMax
        self.sealBucketsMax = sealBucketsMax
        self.query = query
    }
}

extension Limits {
    /// The longest `idempotencyWindow`, `futureSkewMax` or `latencyMax` (one year): a window past
    /// it is no longer a retry window, and bounded durations keep `acceptedAt + window` exact.
    public static let durationLongest: Duration = .seconds(365 * 86_400)
}

/// What a replica is: its identity and the policies that shape its aggregates.
public struct ReplicaConfig: Sendable, Equatable {
    /// This replica's origin id: every slot it writes carries it.
    public var id: ReplicaID
    public var retention: Retention
    public var limits: Limits
    /// Status classes counted as errors.
    public var errorClasses: Set<StatusClass>
    /// Latency sketch resolution (6: 0.54% relative error).
    public var sketchScale: Int
    /// Most latency buckets per origin and time bucket before the lowest collapse.
    public var sketchBucketsMax: Int
    /// Distinct-user sketch precision (14: 0.81% standard error).
    public var usersPrecision: Int
    /// How often `tick` runs (retention, idempotency-key expiry, gossip).
    public var tickInterval: Duration
    /// The peers this replica gossips with, by the names the shell routes messages by. Empty: a
    /// single region, which keeps no replication state at all.
    public var peers: [String]
    /// How often the replica seals its changes and starts an exchange with a peer.
    public var gossipInterval: Duration
    /// The high 32 bits of this replica's own versions: the shell raises it on every start, so a
    /// restarted replica never reuses a version it may already have published.
    public var versionEpoch: UInt32
    /// Seeds the replica's own random choices (which peer to gossip with).
    public var seed: UInt64
    /// The replication wire versions this replica reads, and (the highest) writes its own batches
    /// at: this build's, except in the simulator, which plays older builds during rolling upgrades.
    public var wireVersions: ClosedRange<UInt8> = ReplicationMessage.protocolVersions
    /// Test only, and `package`: no product exposes it. Merges replicated counters by adding
    /// instead of joining, to show that the simulator's checkers catch a broken merge.
    package var brokenMergeForTesting = false

    public init(
        id: ReplicaID, retention: Retention = Retention(), limits: Limits = Limits(),
        errorClasses: Set<StatusClass> = [.serverError], sketchScale: Int = LatencySketch.defaultScale,
        sketchBucketsMax: Int = LatencySketch.defaultBucketsMax, usersPrecision: Int = HyperLogLog.defaultPrecision,
        tickInterval: Duration = .seconds(1), peers: [String] = [], gossipInterval: Duration = .seconds(1),
        versionEpoch: UInt32 = 0, seed: UInt64 = 0
    ) {
        self.id = id
        self.retention = retention
        self.limits = limits
        self.errorClasses = errorClasses
        self.sketchScale = sketchScale
        self.sketchBucketsMax = sketchBucketsMax
        self.usersPrecision = usersPrecision
        self.tickInterval = tickInterval
        self.peers = peers
        self.gossipInterval = gossipInterval
        self.versionEpoch = versionEpoch
        self.seed = seed
    }
}
