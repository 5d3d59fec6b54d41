import TallyAggregates

/// One sealed batch of an origin's changes: the differences of the time buckets its events
/// touched since its previous seal. Batches of one origin form a chain (`previous`); a replica
/// integrates a batch only when it follows the last one it integrated.
public struct DeltaBatch: Sendable, Equatable {
    public var origin: ReplicaID
    public var version: UInt64
    /// The version this batch follows; 0 for the first batch of the origin.
    public var previous: UInt64
    /// The origin's clock when it sealed the batch: staleness is measured against it.
    public var sealedAt: Timestamp
    public var buckets: [ReplicatedBucket]

    public init(origin: ReplicaID, version: UInt64, previous: UInt64, sealedAt: Timestamp,
                buckets: [ReplicatedBucket])
    {
        self.origin = origin
        self.version = version
        self.previous = previous
        self.sealedAt = sealedAt
        self.buckets = buckets
    }
}

/// A time bucket's part shipped between replicas, addressed by names (series ids are local).
public struct ReplicatedBucket: Sendable, Equatable {
    public var key: BucketKey
    public var aggregate: BucketAggregate

    public init(key: BucketKey, aggregate: BucketAggregate) {
        self.key = key
        self.aggregate = aggregate
    }
}

extension BucketAggregate {
    /// The part written by `origin` (its counter slots and histogram) plus every user register:
    /// distinct users are not kept per origin, and registers merge by max whoever ships them.
    public func projection(of origin: ReplicaID) -> BucketAggregate {
        var part = self
        part.requests = GCounter(delta: self.requests.delta(of: origin))
        part.errors = GCounter(delta: self.errors.delta(of: origin))
        part.latency = self.latency.projection(of: origin)
        return part
    }

    /// The part `origin` wrote since `older`, plus every user register that grew: what a replica
    /// seals of its own changes. Equal to `projection(of:).difference(from: older.projection(of:))`.
    public func difference(from older: BucketAggregate, origin: ReplicaID) -> BucketAggregate {
        var part = self
        let requests = self.requests.value(of: origin)
        part.requests = requests > older.requests.value(of: origin)
            ? GCounter(delta: GCounter.Delta(origin: origin, value: requests)) : GCounter()
        let errors = self.errors.value(of: origin)
        part.errors = errors > older.errors.value(of: origin)
            ? GCounter(delta: GCounter.Delta(origin: origin, value: errors)) : GCounter()
        part.latency = self.latency.difference(from: older.latency, origin: origin)
        part.users = older.users.isEmpty ? self.users : self.users.difference(from: older.users)
        return part
    }

    /// True when `origin` counted anything in this bucket.
    public func hasPart(of origin: ReplicaID) -> Bool {
        self.requests.value(of: origin) > 0
    }
}

/// The messages replicas exchange (see docs/replication.md).
public enum ReplicationMessage: Sendable, Equatable {
    /// What the sender holds, per origin; `reply` asks the receiver to answer with its own digest.
    case digest(Digest)
    /// Batches the receiver lacks, each origin's in chain order.
    case deltas([DeltaBatch])
    /// Part of a state transfer of one origin.
    case stateChunk(StateChunk)
}

public struct Digest: Sendable, Equatable {
    /// Per origin: the last batch integrated, and the origin time it is known current as of.
    public typealias Entry = OriginVersion

    /// A state transfer in progress at the sender of the digest: continue it from `cursor`.
    public struct Transfer: Sendable, Equatable {
        public var origin: ReplicaID
        public var asOf: UInt64
        public var cursor: BucketKey

        public init(origin: ReplicaID, asOf: UInt64, cursor: BucketKey) {
            self.origin = origin
            self.asOf = asOf
            self.cursor = cursor
        }
    }

    /// Sorted by origin.
    public var entries: [Entry]
    /// Sorted by origin.
    public var transfers: [Transfer]
    public var reply: Bool

    public init(entries: [Entry], transfers: [Transfer], reply: Bool) {
        self.entries = entries
        self.transfers = transfers
        self.reply = reply
    }
}

/// Every bucket of one origin's part from `from` (inclusive; nil: the first) up to `next`
/// (exclusive; nil: the last), as of the sender's version `asOf` of that origin.
public struct StateChunk: Sendable, Equatable {
    public var origin: ReplicaID
    public var asOf: UInt64
    public var asOfTime: Timestamp
    public var from: BucketKey?
    public var next: BucketKey?
    public var buckets: [ReplicatedBucket]

    public init(origin: ReplicaID, asOf: UInt64, asOfTime: Timestamp, from: BucketKey?, next: BucketKey?,
                buckets: [ReplicatedBucket])
    {
        self.origin = origin
        self.asOf = asOf
        self.asOfTime = asOfTime
        self.from = from
        self.next = next
        self.buckets = buckets
    }
}
