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
    /// Requests per status class per origin (the G-counters' slots), when asked for: who counted
    /// them, which is the region that received them.
    public var requestsByOrigin: [StatusClass: [ReplicaID: UInt64]]?

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
        if let theirs = other.requestsByOrigin {
            var mine = self.requestsByOrigin ?? [:]
            for (statusClass, origins) in theirs {
                for (origin, count) in origins { mine[statusClass, default: [:]][origin, default: 0] &+= count }
            }
            self.requestsByOrigin = mine
        }
    }

    /// Adds one time bucket of a series of `statusClass`.
    mutating func add(_ aggregate: borrowing BucketAggregate, statusClass: StatusClass, byOrigin: Bool) {
        self.requests[statusClass, default: 0] &+= aggregate.requests.value
        self.errors &+= aggregate.errors.value
        self.latency.add(aggregate.latency)
        if byOrigin {
            aggregate.requests.forEachOrigin { origin, count in
                self.requestsByOrigin?[statusClass, default: [:]][origin, default: 0] &+= count
            }
        }
    }

    /// Requests in any of `classes`, per origin (empty unless asked for `byOrigin`).
    public func requestsByOrigin(in classes: Set<StatusClass>) -> [ReplicaID: UInt64] {
        var out: [ReplicaID: UInt64] = [:]
        for statusClass in classes {
            for (origin, count) in self.requestsByOrigin?[statusClass] ?? [:] { out[origin, default: 0] &+= count }
        }
        return out
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
                             now: Timestamp, resolution chosen: Resolution? = nil, limits: QueryLimits? = nil,
                             byOrigin: Bool = false)
        throws(QueryError) -> WindowCounts
    {
        let plan = try self.windowPlan(service: service, operations: operations, from: from, to: to, now: now,
                                       resolution: chosen, limits: limits)
        var counts = WindowCounts(resolution: plan.resolution, from: plan.covered.from, to: plan.covered.to,
                                  sketchScale: self.config.sketchScale)
        if byOrigin { counts.requestsByOrigin = [:] }
        self.forEachBucket(of: plan) { _, key, aggregate in
            counts.add(aggregate, statusClass: key.statusClass, byOrigin: byOrigin)
        }
        return counts
    }

    /// The same window cut into slices of `slice` (rounded up to a whole number of buckets of the
    /// resolution read, which is returned too): the counts of each, oldest first, every slice
    /// present (empty ones too). What Timeslices budgeting counts good and bad slices over.
    public func sliceCounts(service: String, operations: Set<String>? = nil, from: Timestamp, to: Timestamp,
                            now: Timestamp, slice: Duration, resolution chosen: Resolution? = nil,
                            limits: QueryLimits? = nil) throws(QueryError) -> (slice: Duration, slices: [WindowCounts])
    {
        let plan = try self.windowPlan(service: service, operations: operations, from: from, to: to, now: now,
                                       resolution: chosen, limits: limits)
        let width = plan.resolution.width.milliseconds
        let sliceMillis = max(width, (slice.milliseconds + width - 1) / width * width)
        let span = max(0, plan.covered.to.millisecondsSinceEpoch - plan.covered.from.millisecondsSinceEpoch)
        let count = Int((span + sliceMillis - 1) / sliceMillis)
        guard count <= limits?.bucketsMax ?? self.config.limits.query.bucketsMax else {
            throw .invalid(parameter: "slice", message: "the window holds \(count) slices of \(slice); at most "
                + "\(limits?.bucketsMax ?? self.config.limits.query.bucketsMax)")
        }
        var slices = (0..<count).map { index in
            let start = plan.covered.from + .milliseconds(Int64(index) * sliceMillis)
            return WindowCounts(resolution: plan.resolution, from: start, to: start + .milliseconds(sliceMillis),
                                sketchScale: self.config.sketchScale)
        }
        let origin = plan.covered.from.millisecondsSinceEpoch
        self.forEachBucket(of: plan) { start, key, aggregate in
            let index = Int((start - origin) / sliceMillis)
            if slices.indices.contains(index) { slices[index].add(aggregate, statusClass: key.statusClass, byOrigin: false) }
        }
        return (.milliseconds(sliceMillis), slices)
    }

    /// The resolution a window from `from` reads at: the finest whose retention still holds it.
    public func windowResolution(from: Timestamp, now: Timestamp) -> Resolution {
        let retention = self.config.retention
        return Resolution.allCases.first {
            retention.keeps($0, bucketStart: from.floor(toMultipleOf: $0.width), now: now)
        } ?? .day
    }

    /// What a window reads: its resolution, the buckets' range, and the member series in key order.
    struct WindowPlan {
        var resolution: Resolution
        var start: Int64
        var end: Int64
        /// From the first bucket's start to the last one's end.
        var covered: (from: Timestamp, to: Timestamp)
        var members: [Int]
    }

    func windowPlan(service: String, operations: Set<String>?, from: Timestamp, to: Timestamp, now: Timestamp,
                    resolution chosen: Resolution?, limits: QueryLimits?) throws(QueryError) -> WindowPlan
    {
        let limits = limits ?? self.config.limits.query
        for (name, time) in [("from", from), ("to", to)] where !time.isValid {
            throw .invalid(parameter: name, message: "\(time.millisecondsSinceEpoch) ms is outside the supported range")
        }
        guard from < to else { throw .invalid(parameter: "from", message: "must be before to") }
        let resolution = chosen ?? self.windowResolution(from: from, now: now)
        // Buckets starting in [from, to): from rounded up to a boundary, to exclusive.
        let width = resolution.width.milliseconds
        let first = from.floor(toMultipleOf: resolution.width).millisecondsSinceEpoch
        let start = first == from.millisecondsSinceEpoch ? first : first + width
        let end = to.millisecondsSinceEpoch  // exclusive
        let lastStart = (to - .milliseconds(1)).floor(toMultipleOf: resolution.width).millisecondsSinceEpoch
        let covered = (Timestamp(millisecondsSinceEpoch: start), Timestamp(millisecondsSinceEpoch: max(start, lastStart + width)))
        guard start < end else { return WindowPlan(resolution: resolution, start: start, end: end, covered: covered, members: []) }
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
        return WindowPlan(resolution: resolution, start: start, end: end, covered: covered, members: members)
    }

    /// Every bucket the plan reads, series in key order: its start, its series' status class, it.
    private func forEachBucket(of plan: WindowPlan, _ body: (Int64, SeriesKey, borrowing BucketAggregate) -> Void) {
        guard plan.start < plan.end else { return }
        for position in plan.members {
            let key = self.series[position].key
            let timeBuckets = self.series[position].buckets[plan.resolution.rawValue]
            timeBuckets.forEachBucket(in: timeBuckets.positions(from: plan.start, to: plan.end)) { start, aggregate in
                body(start, key, aggregate)
            }
        }
    }

    /// `windowCounts` per operation, in one pass over the window's buckets (what a report's "who
    /// spent the budget" reads), by origin too when asked for.
    public func windowCountsByOperation(service: String, operations: Set<String>? = nil, from: Timestamp, to: Timestamp,
                                        now: Timestamp, byOrigin: Bool = false, limits: QueryLimits? = nil)
        throws(QueryError) -> [String: WindowCounts]
    {
        let plan = try self.windowPlan(service: service, operations: operations, from: from, to: to, now: now,
                                       resolution: nil, limits: limits)
        var out: [String: WindowCounts] = [:]
        for position in plan.members where out[self.series[position].key.operation] == nil {
            var counts = WindowCounts(resolution: plan.resolution, from: plan.covered.from, to: plan.covered.to,
                                      sketchScale: self.config.sketchScale)
            if byOrigin { counts.requestsByOrigin = [:] }
            out[self.series[position].key.operation] = counts
        }
        self.forEachBucket(of: plan) { _, key, aggregate in
            out[key.operation]?.add(aggregate, statusClass: key.statusClass, byOrigin: byOrigin)
        }
        return out
    }

    /// The operations `service` has series for, sorted.
    public func operations(of service: String) -> [String] {
        Set(self.series.lazy.filter { $0.key.service == service }.map(\.key.operation)).sorted()
    }
}
