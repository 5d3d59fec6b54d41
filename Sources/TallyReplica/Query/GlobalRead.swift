import TallyAggregates

/// A global read (`consistency=global`): the asking region sends each reachable peer a
/// `ReadRequest` naming the buckets its query reads; each peer answers with its whole state of
/// those buckets (every origin's slots, not a query result), and the asker joins the answers into
/// a copy of its own buckets and runs the query on that. The join is the CRDT merge replication
/// uses, so the answer is exact: every event any answering region holds is counted once, however
/// many regions hold it.
///
/// ```
/// request:  tag 0x21, version u8, id varint, service string, operation 0 | 1 string,
///           status class 0 | 1 u8, resolution u8, from zigzag, to zigzag, parts u8
///           (bit 0 latency sketches, bit 1 distinct-user registers; counters always)
/// answer:   tag 0x22, version u8, id varint, outcome u8 (0 buckets follow, 1 too large),
///           strings, buckets: count, per bucket: key, BucketAggregate body (as in replication)
/// ```
public struct ReadRequest: Sendable, Equatable {
    public var id: UInt64
    public var service: String
    public var operation: String?
    public var statusClass: StatusClass?
    public var resolution: Resolution
    /// Bucket starts in [from, to).
    public var from: Timestamp
    public var to: Timestamp
    /// Latency sketches are shipped only when a metric needs them (quantiles, mean, max).
    public var latency: Bool
    /// Distinct-user registers are shipped only for `unique_users`.
    public var users: Bool

    public init(id: UInt64, service: String, operation: String?, statusClass: StatusClass?, resolution: Resolution,
                from: Timestamp, to: Timestamp, latency: Bool, users: Bool)
    {
        self.id = id
        self.service = service
        self.operation = operation
        self.statusClass = statusClass
        self.resolution = resolution
        self.from = from
        self.to = to
        self.latency = latency
        self.users = users
    }

    static let tag: UInt8 = 0x21
    static let versions: ClosedRange<UInt8> = 1...1

    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        writer.writeUInt8(Self.tag)
        writer.writeUInt8(Self.versions.upperBound)
        writer.writeVarint(self.id)
        writer.writeString(self.service)
        if let operation = self.operation {
            writer.writeUInt8(1)
            writer.writeString(operation)
        } else {
            writer.writeUInt8(0)
        }
        if let statusClass = self.statusClass {
            writer.writeUInt8(1)
            writer.writeUInt8(statusClass.rawValue)
        } else {
            writer.writeUInt8(0)
        }
        writer.writeUInt8(UInt8(self.resolution.rawValue))
        writer.writeZigZag(self.from.millisecondsSinceEpoch)
        writer.writeZigZag(self.to.millisecondsSinceEpoch)
        writer.writeUInt8((self.latency ? 1 : 0) | (self.users ? 2 : 0))
        return writer.bytes
    }

    public init(encoded bytes: [UInt8]) throws(DecodeError) {
        var reader = ByteReader(bytes)
        _ = try reader.readHeader(tag: Self.tag, type: "ReadRequest", versions: Self.versions)
        self.id = try reader.readVarint("ReadRequest id")
        self.service = try reader.readString("ReadRequest service")
        self.operation = try reader.readUInt8("ReadRequest operation flag") == 0
            ? nil : try reader.readString("ReadRequest operation")
        if try reader.readUInt8("ReadRequest status flag") == 0 {
            self.statusClass = nil
        } else {
            let raw = try reader.readUInt8("ReadRequest status class")
            guard let statusClass = StatusClass(rawValue: raw) else {
                throw .invalidValue(field: "ReadRequest status class", value: "\(raw)")
            }
            self.statusClass = statusClass
        }
        let rawResolution = try reader.readUInt8("ReadRequest resolution")
        guard let resolution = Resolution(rawValue: Int(rawResolution)) else {
            throw .invalidValue(field: "ReadRequest resolution", value: "\(rawResolution)")
        }
        self.resolution = resolution
        self.from = try reader.readTimestamp("ReadRequest from")
        self.to = try reader.readTimestamp("ReadRequest to")
        let parts = try reader.readUInt8("ReadRequest parts")
        guard parts < 4 else { throw .invalidValue(field: "ReadRequest parts", value: "\(parts)") }
        self.latency = parts & 1 != 0
        self.users = parts & 2 != 0
        try reader.expectEnd()
    }
}

/// A peer's answer to a `ReadRequest`.
public struct ReadAnswer: Sendable, Equatable {
    public enum Outcome: UInt8, Sendable {
        case buckets = 0
        /// The buckets would not fit in one message: narrow the range, the filters or the metrics.
        case tooLarge = 1
    }

    public var id: UInt64
    public var outcome: Outcome
    public var buckets: [ReplicatedBucket]

    public init(id: UInt64, outcome: Outcome, buckets: [ReplicatedBucket]) {
        self.id = id
        self.outcome = outcome
        self.buckets = buckets
    }

    static let tag: UInt8 = 0x22
    static let versions: ClosedRange<UInt8> = 1...1

    public func encoded() -> [UInt8] {
        var strings = ReplicationMessage.StringTable()
        var body = ByteWriter()
        ReplicationMessage.write(self.buckets, to: &body, strings: &strings, wire: 1)
        var writer = ByteWriter(capacity: body.bytes.count + 64)
        writer.writeUInt8(Self.tag)
        writer.writeUInt8(Self.versions.upperBound)
        writer.writeVarint(self.id)
        writer.writeUInt8(self.outcome.rawValue)
        strings.write(to: &writer)
        writer.writeBytes(body.bytes)
        return writer.bytes
    }

    public init(encoded bytes: [UInt8]) throws(DecodeError) {
        var reader = ByteReader(bytes)
        _ = try reader.readHeader(tag: Self.tag, type: "ReadAnswer", versions: Self.versions)
        self.id = try reader.readVarint("ReadAnswer id")
        let raw = try reader.readUInt8("ReadAnswer outcome")
        guard let outcome = Outcome(rawValue: raw) else { throw .invalidValue(field: "ReadAnswer outcome", value: "\(raw)") }
        self.outcome = outcome
        let strings = try ReplicationMessage.readStrings(from: &reader)
        self.buckets = try ReplicationMessage.readBuckets(from: &reader, strings: strings, wire: 1)
        try reader.expectEnd()
    }
}

extension Replica {
    /// What to ask each peer for to answer `query` globally: the query's series filters, and the
    /// resolution and range it reads. Throws what `query` would.
    public func readRequest(for query: Query, id: UInt64, now: Timestamp, limits: QueryLimits? = nil)
        throws(QueryError) -> ReadRequest
    {
        let window = try self.window(query, now: now, limits: limits ?? self.config.limits.query)
        let latency = query.metrics.contains { metric in
            switch metric {
            case .quantile, .mean, .max: true
            default: false
            }
        }
        return ReadRequest(id: id, service: query.service, operation: query.operation, statusClass: query.statusClass,
                           resolution: window.resolution, from: window.from, to: window.to, latency: latency,
                           users: query.metrics.contains(.uniqueUsers))
    }

    /// This replica's state of the buckets a peer asked for, sorted by key; parts the request does
    /// not need are left empty (an empty part merges as nothing).
    public func answer(_ request: ReadRequest, bytesMax: Int) -> ReadAnswer {
        var buckets: [ReplicatedBucket] = []
        var bytes = 0
        let from = request.from.floor(toMultipleOf: request.resolution.width).millisecondsSinceEpoch
        for series in self.series where series.key.service == request.service
            && (request.operation == nil || series.key.operation == request.operation)
            && (request.statusClass == nil || series.key.statusClass == request.statusClass)
        {
            // The buckets held in the range, not every instant of it: a peer may name any range.
            let held = series.buckets[request.resolution.rawValue]
            for position in held.positions(from: from, to: request.to.millisecondsSinceEpoch) {
                var (start, aggregate) = held.bucket(at: position)
                if !request.latency {
                    aggregate.latency = LatencySketch(scale: aggregate.latency.scale,
                                                      bucketsMax: aggregate.latency.bucketsMax)
                }
                if !request.users { aggregate.users = HyperLogLog(precision: aggregate.users.precision) }
                bytes += aggregate.encoded().count + 16
                guard bytes <= bytesMax else { return ReadAnswer(id: request.id, outcome: .tooLarge, buckets: []) }
                buckets.append(ReplicatedBucket(
                    key: BucketKey(series: series.key, resolution: request.resolution,
                                   start: Timestamp(millisecondsSinceEpoch: start)),
                    aggregate: aggregate))
            }
        }
        buckets.sort { $0.key < $1.key }
        return ReadAnswer(id: request.id, outcome: .buckets, buckets: buckets)
    }

    /// A copy of this replica with the buckets peers answered merged in (the CRDT join: nothing
    /// counts twice); this replica is unchanged.
    public func joining(_ answers: [ReadAnswer], now: Timestamp) -> Replica {
        var joined = self
        for answer in answers {
            for bucket in answer.buckets { joined.merge(bucket, now: now) }
        }
        return joined
    }

    /// `query` over this replica's state joined with the buckets peers answered: the global read.
    /// The join happens on a copy; this replica is unchanged.
    public func query(_ query: Query, now: Timestamp, joining answers: [ReadAnswer],
                      limits: QueryLimits? = nil, stopping: (() -> Bool)? = nil) throws(QueryError) -> QueryResult
    {
        var joined = self
        for answer in answers {
            if let stopping, stopping() { throw .stopped }
            for bucket in answer.buckets { joined.merge(bucket, now: now) }
        }
        return try joined.query(query, now: now, limits: limits, stopping: stopping)
    }
}
