import TallyAggregates

/// What changed in a replica since its previous checkpoint: with the log entries after `sequence`,
/// enough to rebuild the replica without replaying the log before it.
///
/// A checkpoint is a delta. A store applies checkpoints in the order they were taken, each in one
/// transaction with the deletion of the log entries through `sequence` (`ReplicaSnapshot.apply`
/// states the rules; the SQLite store and the simulator's disk both follow them). Recovery is then
/// `Replica(config:restoring:)` from the stored image, and `replay` of every log entry after it.
///
/// Ordering rule for the shell: a checkpoint covers log entries through `sequence`, so it MUST be
/// stored only after every one of those entries is durable; otherwise a crash between the two could
/// leave an entry that is both in the image and in the log, and it would be counted twice.
public struct Checkpoint: Sendable {
    /// The replica's `lastSequence` when the checkpoint was taken.
    public var sequence: UInt64
    public var stateVersion: UInt64
    /// The `now` it was taken at: buckets and keys expired by then are deleted.
    public var takenAt: Timestamp
    /// The position of `newSeries[0]` in the replica's series list (series are only appended).
    public var firstNewSeries: Int
    public var newSeries: [SeriesKey]
    /// Every time bucket changed since the previous checkpoint, at its whole current value.
    public var buckets: [StoredBucket]
    /// Idempotency keys remembered since the previous checkpoint, oldest first.
    public var idempotencyKeys: [IdempotencyRecord]
    /// Span fingerprints remembered since the previous checkpoint, oldest first.
    public var spanFingerprints: [SpanFingerprint]
    /// Cumulative metric streams changed since the previous checkpoint, and the cutoff: streams
    /// last seen before it are forgotten (`MetricStreams.isLive`).
    public var metricStreams: [StreamUpdate]
    public var metricStreamsSeenAfter: Timestamp
    /// Per resolution (by raw value): buckets starting before this many ms are expired.
    public var expiredBefore: [Int64]
    /// Per origin (sorted), the replication chain's head integrated into these buckets. Stored whole
    /// each time (one row per region). After a restart the replica continues from these versions;
    /// peers resend, or transfer, what it integrated after them and lost.
    public var origins: [OriginVersion]
    /// This replica's own chain as of the checkpoint, so a restart continues it (nil: a replica
    /// without peers, which seals nothing): the batches sealed since the previous checkpoint, which
    /// the image adds to those it keeps (`OwnChain.apply`).
    public var ownChain: OwnChain?
    /// Which origin each region runs as (`OriginDirectory`), whole (at most a thousand rows);
    /// nil when it did not change since the previous checkpoint.
    public var originDirectory: [OriginDirectory.Entry]? = nil

    /// True when storing it would change nothing but the expiry of old rows.
    public var isEmpty: Bool {
        self.newSeries.isEmpty && self.buckets.isEmpty && self.idempotencyKeys.isEmpty
            && self.spanFingerprints.isEmpty && self.metricStreams.isEmpty && self.originDirectory == nil
    }
}

/// Where a replica's own replication chain stood when a checkpoint was taken, and its recent own
/// batches. The replica seals its changes as it takes the checkpoint, so the image's own part is
/// exactly its state as of `sealed`. The image keeps the own batches of about one replication
/// buffer (published, or sealed and unpublished then: the checkpoint is stored only once the log
/// they cover is durable), so a restarted replica continues its chain from `sealed`, and serves
/// peers that were behind it, instead of starting a chain they cannot follow (docs/architecture.md,
/// decision 30).
public struct OwnChain: Sendable, Equatable {
    /// The checkpoint's `sequence`: a chain stored with another checkpoint (a store written in
    /// between by a build that does not keep one) does not describe the image and is not used.
    public var sequence: UInt64
    /// The last own version sealed.
    public var sealed: UInt64
    /// Own batches in chain order, ending at `sealed`: in a checkpoint, those sealed since the
    /// previous checkpoint; in an image, all it keeps.
    public var batches: [StoredBatch]
    /// The image drops its own batches below this version (the replica's buffer dropped them).
    public var keepFrom: UInt64

    public init(sequence: UInt64, sealed: UInt64, batches: [StoredBatch], keepFrom: UInt64) {
        self.sequence = sequence
        self.sealed = sealed
        self.batches = batches
        self.keepFrom = keepFrom
    }

    /// The image's chain after storing `newer`, the chain of the next checkpoint.
    public mutating func apply(_ newer: OwnChain) {
        self.batches.removeAll { $0.version < newer.keepFrom || $0.version >= (newer.batches.first?.version ?? .max) }
        self.batches += newer.batches
        self.sequence = newer.sequence
        self.sealed = newer.sealed
        self.keepFrom = newer.keepFrom
    }
}

/// A counted span's fingerprint, as a checkpoint stores it, and when it is forgotten.
public struct SpanFingerprint: Sendable, Equatable {
    public var fingerprint: UInt64
    public var expiresAt: Timestamp
    /// Orders fingerprints as they were counted: the oldest are forgotten first when the ledger is
    /// full, so a restore must put them back in this order to forget the same ones.
    public var ordinal: UInt64

    public init(fingerprint: UInt64, expiresAt: Timestamp, ordinal: UInt64) {
        self.fingerprint = fingerprint
        self.expiresAt = expiresAt
        self.ordinal = ordinal
    }
}

/// An origin's replication chain head as stored: its version and the origin time it was current as of.
public struct OriginVersion: Sendable, Equatable {
    public var origin: ReplicaID
    public var version: UInt64
    public var currentAsOf: Timestamp

    public init(origin: ReplicaID, version: UInt64, currentAsOf: Timestamp) {
        self.origin = origin
        self.version = version
        self.currentAsOf = currentAsOf
    }
}

/// The address of a time bucket in a stored image: series by position, resolution, start (ms).
public struct BucketAddress: Hashable, Comparable, Sendable {
    public var series: Int
    public var resolution: Resolution
    public var start: Int64

    public init(series: Int, resolution: Resolution, start: Int64) {
        self.series = series
        self.resolution = resolution
        self.start = start
    }

    public static func < (lhs: BucketAddress, rhs: BucketAddress) -> Bool {
        (lhs.series, lhs.resolution.rawValue, lhs.start) < (rhs.series, rhs.resolution.rawValue, rhs.start)
    }
}

public struct StoredBucket: Sendable {
    public var address: BucketAddress
    public var aggregate: BucketAggregate

    public init(address: BucketAddress, aggregate: BucketAggregate) {
        self.address = address
        self.aggregate = aggregate
    }
}

/// A replica's durable image: the fold of its checkpoints, as a store holds it.
///
/// `apply` is the reference semantics of storing a checkpoint; the SQLite store does the same with
/// upserts and deletes, and the simulator's disk keeps exactly this value.
public struct ReplicaSnapshot: Sendable {
    public var sequence: UInt64 = 0
    public var stateVersion: UInt64 = 0
    /// When the last checkpoint applied was taken; nil before the first. A restarted node counts
    /// its checkpoint interval from here, so restarts cannot postpone checkpoints forever.
    public var takenAt: Timestamp?
    public var series: [SeriesKey] = []
    public private(set) var buckets: [BucketAddress: BucketAggregate] = [:]
    /// Per resolution (by raw value), the addresses held per bucket start: expiry finds what to
    /// delete here instead of filtering every bucket at every checkpoint (with 48 h of minute
    /// buckets that filter was two thirds of a week-long simulation).
    private var addressesByStart: [[Int64: [BucketAddress]]] = Array(repeating: [:], count: Resolution.allCases.count)
    /// By client and key; restored in the order of their receipts' sequences.
    public var idempotencyKeys: [IdempotencyRecord.Name: IdempotencyRecord] = [:]
    /// Span fingerprints and when each is forgotten; restored in that order.
    public var spanFingerprints: [UInt64: SpanFingerprint] = [:]
    /// Cumulative metric streams' last totals.
    public var metricStreams: [UInt64: StreamState] = [:]
    /// Replication chain heads, sorted by origin.
    public var origins: [OriginVersion] = []
    /// The replica's own chain as of the last checkpoint that kept one.
    public var ownChain: OwnChain?
    /// The origin directory as of the last checkpoint.
    public var originDirectory: [OriginDirectory.Entry] = []

    public init() {}

    /// Upserts one bucket (a store loading its image uses this too).
    public mutating func store(_ aggregate: BucketAggregate, at address: BucketAddress) {
        if self.buckets.updateValue(aggregate, forKey: address) == nil {
            self.addressesByStart[address.resolution.rawValue][address.start, default: []].append(address)
        }
    }

    /// Stores `checkpoint`: appends its new series, upserts its buckets and keys, deletes what
    /// expired by its time. Checkpoints MUST be applied in the order they were taken.
    public mutating func apply(_ checkpoint: Checkpoint) {
        precondition(checkpoint.sequence >= self.sequence, "checkpoint \(checkpoint.sequence) after \(self.sequence)")
        precondition(checkpoint.firstNewSeries == self.series.count,
                     "checkpoint's series start at \(checkpoint.firstNewSeries), image has \(self.series.count)")
        self.series += checkpoint.newSeries
        for bucket in checkpoint.buckets { self.store(bucket.aggregate, at: bucket.address) }
        for resolution in Resolution.allCases {
            let cutoff = checkpoint.expiredBefore[resolution.rawValue]
            let expired = self.addressesByStart[resolution.rawValue].keys.filter { $0 < cutoff }
            for start in expired {
                for address in self.addressesByStart[resolution.rawValue].removeValue(forKey: start) ?? [] {
                    self.buckets.removeValue(forKey: address)
                }
            }
        }
        self.idempotencyKeys = self.idempotencyKeys.filter { $0.value.expiresAt > checkpoint.takenAt }
        for record in checkpoint.idempotencyKeys {
            self.idempotencyKeys[record.name] = record
        }
        self.spanFingerprints = self.spanFingerprints.filter { $0.value.expiresAt > checkpoint.takenAt }
        for span in checkpoint.spanFingerprints {
            self.spanFingerprints[span.fingerprint] = span
        }
        self.metricStreams = self.metricStreams.filter { $0.value.lastSeen >= checkpoint.metricStreamsSeenAfter }
        for update in checkpoint.metricStreams { self.metricStreams[update.stream] = update.state }
        self.sequence = checkpoint.sequence
        self.stateVersion = checkpoint.stateVersion
        self.takenAt = checkpoint.takenAt
        self.origins = checkpoint.origins
        if let directory = checkpoint.originDirectory { self.originDirectory = directory }
        if let newer = checkpoint.ownChain, self.ownChain != nil {
            self.ownChain!.apply(newer)
        } else {
            self.ownChain = checkpoint.ownChain
        }
    }
}

extension Replica {
    /// Takes what changed since the last checkpoint (see `Checkpoint`), and marks it saved.
    public mutating func checkpoint(now: Timestamp) -> Checkpoint {
        // Own changes are sealed first, so the image's own part is the chain's state as of its
        // last version (`OwnChain`).
        let replicating = !self.config.peers.isEmpty
        if replicating { self.seal(now: now) }
        let first = self.savedSeriesCount
        let newSeries = self.series[first...].map(\.key)
        self.savedSeriesCount = self.series.count
        var buckets: [StoredBucket] = []
        for id in self.dirtySeries {
            self.series[Int(id.rawValue)].takeDirty(series: Int(id.rawValue), into: &buckets)
        }
        self.dirtySeries.removeAll(keepingCapacity: true)
        let expiredBefore = Resolution.allCases.map { resolution in
            // Kept while start + width + retention > now (`SeriesState.expire`).
            now.millisecondsSinceEpoch - resolution.width.milliseconds
                - self.config.retention[resolution].milliseconds + 1
        }
        // Remote merges are in `buckets` (they mark them changed), own changes are in the log: the
        // chain heads stored with them are exactly what these buckets contain.
        let origins = self.chainHeads
        return Checkpoint(
            sequence: self.lastSequence, stateVersion: self.stateVersion, takenAt: now, firstNewSeries: first,
            newSeries: newSeries, buckets: buckets, idempotencyKeys: self.idempotency.takeUnsaved(),
            spanFingerprints: self.spans.takeUnsaved().map {
                SpanFingerprint(fingerprint: $0.key, expiresAt: $0.expiresAt, ordinal: $0.ordinal)
            },
            metricStreams: self.streams.takeChanged(), metricStreamsSeenAfter: now - self.config.limits.metricStreamWindow,
            expiredBefore: expiredBefore, origins: origins,
            ownChain: replicating ? self.takeOwnChain() : nil, originDirectory: self.takeOriginDirectory())
    }

    /// The origin directory when it changed since the last checkpoint (nil: it did not).
    private mutating func takeOriginDirectory() -> [OriginDirectory.Entry]? {
        guard self.replication.directoryChanged else { return nil }
        self.replication.directoryChanged = false
        return self.replication.directory.entries
    }

    /// The own chain as a checkpoint taken now keeps it: the batches sealed since the last one,
    /// and where the image's start (the oldest batch the buffer keeps, or the next sealed).
    private mutating func takeOwnChain() -> OwnChain {
        let wire = self.config.wireVersions.upperBound
        let after = self.replication.checkpointedSealed
        let buffer = self.replication.origins[self.config.id]?.buffer ?? []
        var batches = Array(buffer[buffer.firstIndex(above: after)...])
        for pending in self.replication.unpublished where pending.batch.version > after {
            batches.append(StoredBatch(version: pending.batch.version, previous: pending.batch.previous, wire: wire,
                                       bytes: pending.batch.encoded(wireVersion: wire)))
        }
        let sealed = self.replication.sealedVersion
        self.replication.checkpointedSealed = sealed
        let keepFrom = buffer.first?.version ?? self.replication.unpublished.first?.batch.version ?? sealed &+ 1
        return OwnChain(sequence: self.lastSequence, sealed: sealed, batches: batches, keepFrom: keepFrom)
    }

    /// A replica rebuilt from its durable image; replay the log entries after `snapshot.sequence`
    /// next. The restored replica has nothing unsaved: its next checkpoint holds only later changes.
    public init(config: ReplicaConfig, restoring snapshot: ReplicaSnapshot) {
        self.init(config: config)
        for key in snapshot.series { _ = self.addSeries(key) }
        for (address, aggregate) in snapshot.buckets.sorted(by: { $0.key < $1.key }) {
            precondition(address.series < self.series.count, "bucket of unknown series \(address.series)")
            self.series[address.series].restore(address.resolution, start: address.start, aggregate)
        }
        let keys = snapshot.idempotencyKeys.values.sorted {
            ($0.receipt.sequence, $0.client, $0.key) < ($1.receipt.sequence, $1.client, $1.key)
        }
        for record in keys {
            self.idempotency.insert(client: record.client, key: record.key, receipt: record.receipt,
                                    expiresAt: record.expiresAt)
        }
        self.idempotency.markSaved()
        for span in snapshot.spanFingerprints.values.sorted(by: { $0.ordinal < $1.ordinal }) {
            self.spans.insert(span.fingerprint, true, expiresAt: span.expiresAt, ordinal: span.ordinal)
        }
        self.spans.markSaved()
        for (stream, state) in snapshot.metricStreams.sorted(by: { $0.key < $1.key }) {
            self.streams.set(StreamUpdate(stream: stream, state: state))
        }
        _ = self.streams.takeChanged()
        for stored in snapshot.origins where stored.origin != config.id {
            var state = OriginState()
            state.version = stored.version
            state.currentAsOf = stored.currentAsOf
            self.replication.origins[stored.origin] = state
        }
        self.replication.directory = OriginDirectory(entries: snapshot.originDirectory)
        self.continueOwnChain(snapshot)
        self.savedSeriesCount = self.series.count
        self.lastSequence = snapshot.sequence
        self.stateVersion = snapshot.stateVersion
    }
}

extension Replica {
    /// A restarted replica continues its own chain from the version its image is exact as of: its
    /// first batch follows it, and its replayed events are differences from the restored buckets.
    /// The image's own batches are its buffer again (those unpublished at the checkpoint are
    /// published now: the log they cover is durable). Without a usable chain (a store from an
    /// older build, or one that does not hang together) the replica starts a new chain as before
    /// and its peers take a state transfer: slower, never wrong.
    private mutating func continueOwnChain(_ snapshot: ReplicaSnapshot) {
        let own = self.config.id
        guard !self.config.peers.isEmpty, let chain = snapshot.ownChain, chain.sequence == snapshot.sequence,
            chain.sealed < self.replication.sealedVersion  // the new epoch is above every old version
        else { return }
        let head = snapshot.origins.first { $0.origin == own }
        var state = OriginState()
        state.currentAsOf = head?.currentAsOf ?? state.currentAsOf
        if let first = chain.batches.first {
            state.version = first.previous
            for batch in chain.batches {
                guard batch.previous == state.version, batch.version > batch.previous,
                    self.config.wireVersions.contains(batch.wire)
                else { return }
                state.append(batch, limit: self.config.limits.replicationBufferBytesMax)
            }
        } else {
            // Nothing sealed since the oldest batch the buffer kept: the head is the sealed version.
            guard head?.version == chain.sealed else { return }
            state.version = chain.sealed
        }
        guard state.version == chain.sealed else { return }
        self.replication.origins[own] = state
        self.replication.sealedVersion = chain.sealed
        self.replication.checkpointedSealed = chain.sealed
    }
}
