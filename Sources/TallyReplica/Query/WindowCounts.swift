import TallyAggregates

/// What an SLO needs of one window of one service: requests per status class and their latency
/// distribution, summed over the time buckets whose start lies in the window, at the finest
/// resolution that still holds the window's start.
public struct WindowCounts: Sendable, Equatable {
    public var resolution: Resolution
    /// The instants covered: from the first bucket's start to the last one's end.
    public var from: Timestamp
    public var to: Timestamp
    /// Requests per status class (every class present, zero when none).
    public var requests: [StatusClass: UInt64]
    /// Errors as the replica counts them (its configured error classes).
    public var errors: UInt64
    public var latency: LatencyDistribution

    /// No requests over [from, to) at `resolution`.
    public init(resolution: Resolution, from: Timestamp, to: Timestamp, sketchScale: Int = LatencySketch.defaultScale) {
        self.resolution = resolution
        self.from = from
        self.to = to
        self.requests = Dictionary(uniqueKeysWithValues: StatusClass.allCases.map { ($0, 0) })
        self.errors = 0
        self.latency = LatencyDistribution(scale: sketchScale)
    }

    public var total: UInt64 { self.requests.values.reduce(0, &+) }

    /// Adds the counts of a disjoint window read at the same resolution.
    public mutating func add(_ other: WindowCounts) {
        for (statusClass, count) in other.requests { self.requests[statusClass, default: 0] &+= count }
        self.errors &+= other.errors
        self.latency.add(other.latency)
    }

    /// Requests in any of `classes`.
    public func requests(in classes: Set<StatusClass>) -> UInt64 {
        classes.reduce(0) { $0 &+ (self.requests[$1] ?? 0) }
    }
}

extension Replica {
    /// The counts of `service` (only `operations`, when given) over the buckets starting in
    /// [from, to), at the finest resolution whose retention still holds `from`: a 5-minute window
    /// reads minutes, a 30-day one hours or days (or at `resolution`, to read parts of a window
    /// the same way). Refused like a query when the window is outside the timestamp range or would
    /// read more than `limits.bucketsMax` buckets.
    public func windowCounts(service: String, operations: Set<String>? = nil, from: Timestamp, to: Timestamp,
                             now: Timestamp, resolution chosen: Resolution? = nil, limits: QueryLimits? = nil)
        throws(QueryError) -> WindowCounts
    {
        let limits = limits ?? self.config.limits.query
        for (name, time) in [("from", from), ("to", to)] where !time.isValid {
            throw .invalid(parameter: name, message: "\(time.millisecondsSinceEpoch) ms is outside the supported range")
        }
        guard from < to else { throw .invalid(parameter: "from", message: "must be before to") }
        let retention = self.config.retention
        let resolution = chosen ?? Resolution.allCases.first {
            retention.keeps($0, bucketStart: from.floor(toMultipleOf: $0.width), now: now)
        } ?? .day
        // Buckets starting in [from, to): from rounded up to a boundary, to exclusive.
        let width = resolution.width.milliseconds
        let first = from.floor(toMultipleOf: resolution.width).millisecondsSinceEpoch
        let start = first == from.millisecondsSinceEpoch ? first : first + width
        let end = to.millisecondsSinceEpoch  // exclusive
        let lastStart = (to - .milliseconds(1)).floor(toMultipleOf: resolution.width).millisecondsSinceEpoch
        var counts = WindowCounts(
            resolution: resolution, from: Timestamp(millisecondsSinceEpoch: start),
            to: Timestamp(millisecondsSinceEpoch: max(start, lastStart + width)), sketchScale: self.config.sketchScale)
        guard start < end else { return counts }
        // Series in key order, so sketches add in the same order on every replica.
        let members = self.series.indices.filter {
            let key = self.series[$0].key
            return key.service == service && (operations.map { $0.contains(key.operation) } ?? true)
        }.sorted { self.series[$0].key < self.series[$1].key }
        var buckets = 0
        for position in members {
            buckets += self.series[position].buckets[resolution.rawValue].positions(from: start, to: end).count
        }
        guard buckets <= limits.bucketsMax else {
            throw .invalid(parameter: "from", message: "the window would read \(buckets) time buckets; at most "
                + "\(limits.bucketsMax)")
        }
        for position in members {
            let series = self.series[position]
            let timeBuckets = series.buckets[resolution.rawValue]
            for index in timeBuckets.positions(from: start, to: end) {
                let aggregate = timeBuckets.bucket(at: index).1
                counts.requests[series.key.statusClass, default: 0] &+= aggregate.requests.value
                counts.errors &+= aggregate.errors.value
                counts.latency.add(aggregate.latency)
            }
        }
        return counts
    }
}
