import TallyAggregates

/// Everything kept for one series in one time bucket: a CRDT made of CRDTs, merged field by field.
public struct BucketAggregate: Lattice {
    /// A state is its own delta here: replication ships per-origin projections of whole buckets.
    public typealias Delta = BucketAggregate

    public var requests: GCounter
    public var errors: GCounter
    /// Latencies in microseconds; also holds their exact sum, min and max.
    public var latency: LatencySketch
    public var users: HyperLogLog

    public init(sketchScale: Int, sketchBucketsMax: Int, usersPrecision: Int) {
        self.requests = GCounter()
        self.errors = GCounter()
        self.latency = LatencySketch(scale: sketchScale, bucketsMax: sketchBucketsMax)
        self.users = HyperLogLog(precision: usersPrecision)
    }

    public init(delta: BucketAggregate) {
        self = delta
    }

    /// Counts one validated event observed at `origin`.
    @inline(__always)
    /// `userHash` is the XXH3-64 of the user id (hashed once per event, not once per resolution).
    mutating func record(_ event: Event, userHash: UInt64?, isError: Bool, at origin: ReplicaID) {
        self.requests.increment(at: origin)
        if isError { self.errors.increment(at: origin) }
        self.latency.record(event.latencyMicros, at: origin)
        if let userHash { self.users.add(hash: userHash) }
    }

    /// Counts one validated measurement observed at `origin`.
    mutating func record(_ measurement: RequestCounts, isError: Bool, at origin: ReplicaID) {
        if measurement.requests > 0 {
            _ = self.requests.increment(by: measurement.requests, at: origin)
            if isError { _ = self.errors.increment(by: measurement.requests, at: origin) }
        }
        for user in measurement.users { self.users.add(hash: user.hash) }
        if let latency = measurement.latency { self.latency.add(latency, at: origin) }
    }

    /// Drops spare array capacity, once the bucket's time is over.
    mutating func shrinkToFit() {
        self.requests.shrinkToFit()
        self.errors.shrinkToFit()
        self.latency.shrinkToFit()
        self.users.shrinkToFit()
    }

    public mutating func merge(_ other: BucketAggregate) {
        self.requests.merge(other.requests)
        self.errors.merge(other.errors)
        self.latency.merge(other.latency)
        self.users.merge(other.users)
    }

    public mutating func merge(delta: BucketAggregate) {
        self.merge(delta)
    }
}

extension BucketAggregate: Differentiable {
    /// Field by field: the counter slots, sketch buckets and registers that grew.
    public func difference(from older: BucketAggregate) -> BucketAggregate {
        var difference = self
        difference.requests = self.requests.difference(from: older.requests)
        difference.errors = self.errors.difference(from: older.errors)
        difference.latency = self.latency.difference(from: older.latency)
        difference.users = self.users.difference(from: older.users)
        return difference
    }

    /// True when it holds nothing: merging it changes no state.
    public var isEmpty: Bool {
        self.requests.value == 0 && self.errors.value == 0 && self.latency.isEmpty && self.users.isEmpty
    }
}

extension BucketAggregate: VersionedEncoding {
    public static let encodingTag: UInt8 = 0x10
    public static let encodingVersion: UInt8 = 1
    public static let encodingName = "BucketAggregate"

    /// Body: the four aggregates' bodies in order (requests, errors, latency, users).
    public func encode(to writer: inout ByteWriter) {
        self.requests.encode(to: &writer)
        self.errors.encode(to: &writer)
        self.latency.encode(to: &writer)
        self.users.encode(to: &writer)
    }

    public init(from reader: inout ByteReader) throws(DecodeError) {
        self.requests = try GCounter(from: &reader)
        self.errors = try GCounter(from: &reader)
        self.latency = try LatencySketch(from: &reader)
        self.users = try HyperLogLog(from: &reader)
    }
}

extension BucketAggregate {
    /// An estimate of the heap and inline bytes this aggregate holds: the struct itself plus every
    /// array's allocated capacity and header. For memory reports, not accounting.
    public var estimatedBytes: Int {
        MemoryLayout<BucketAggregate>.size + self.requests.heapBytes + self.errors.heapBytes
            + self.latency.heapBytes + self.users.heapBytes
    }
}
