import TallyAggregates

/// A question about one service over a time range.
public struct Query: Sendable, Equatable {
    public var service: String
    public var operation: String?
    public var statusClass: StatusClass?
    public var from: Timestamp
    public var to: Timestamp
    /// The width of each point; nil for one point over the whole range.
    public var step: Duration?
    public var groupBy: [GroupBy]
    public var metrics: [Metric]

    public init(
        service: String, operation: String? = nil, statusClass: StatusClass? = nil, from: Timestamp, to: Timestamp,
        step: Duration? = nil, groupBy: [GroupBy] = [], metrics: [Metric]
    ) {
        self.service = service
        self.operation = operation
        self.statusClass = statusClass
        self.from = from
        self.to = to
        self.step = step
        self.groupBy = groupBy
        self.metrics = metrics
    }
}

public enum GroupBy: String, Sendable, CaseIterable {
    case operation
    case status
}

/// What a query can ask for at each point.
public enum Metric: Hashable, Sendable, CustomStringConvertible {
    /// Requests counted.
    case count
    /// Requests with an error status (5xx by default).
    case errors
    /// errors / count.
    case errorRate
    /// Requests per second over the point's width.
    case rate
    /// A latency quantile in 0...1, in microseconds (`p99` is 0.99, `p99.9` is 0.999).
    case quantile(Double)
    /// Mean latency in microseconds.
    case mean
    /// Largest latency in microseconds.
    case max
    /// Distinct users (estimated).
    case uniqueUsers

    /// Parses `count`, `errors`, `error_rate`, `rate`, `mean`, `max`, `unique_users`, or `pNN`/`pNN.N`.
    public init(parsing text: String) throws(QueryError) {
        switch text {
        case "count": self = .count
        case "errors": self = .errors
        case "error_rate": self = .errorRate
        case "rate": self = .rate
        case "mean": self = .mean
        case "max": self = .max
        case "unique_users": self = .uniqueUsers
        default:
            guard text.first == "p", let percent = Double(text.dropFirst()), percent.isFinite,
                percent >= 0, percent <= 100, !text.dropFirst().contains("e"), !text.dropFirst().contains("n")
            else {
                throw .invalid(
                    parameter: "metrics",
                    message: "unknown metric '\(text)'; use count, errors, error_rate, rate, mean, max, "
                        + "unique_users, or a percentile such as p50, p99 or p99.9")
            }
            // Shift the decimal point in the text, so p99.9 is exactly the double nearest 0.999
            // (99.9 / 100 is not).
            let parts = text.dropFirst().split(separator: ".", omittingEmptySubsequences: false)
            let whole = String(parts[0])
            let fraction = parts.count > 1 ? String(parts[1]) : ""
            let padded = String(repeating: "0", count: Swift.max(0, 2 - whole.count)) + whole
            let shifted = "0" + padded.dropLast(2) + "." + padded.suffix(2) + fraction
            self = .quantile(Double(shifted) ?? percent / 100)
        }
    }

    public var description: String {
        switch self {
        case .count: return "count"
        case .errors: return "errors"
        case .errorRate: return "error_rate"
        case .rate: return "rate"
        case .mean: return "mean"
        case .max: return "max"
        case .uniqueUsers: return "unique_users"
        case .quantile(let q):
            let percent = q * 100
            let rounded = (percent * 1_000).rounded() / 1_000
            return rounded == rounded.rounded() ? "p\(Int(rounded))" : "p\(rounded)"
        }
    }
}

/// A query the replica cannot answer as asked; the message names the parameter.
public enum QueryError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalid(parameter: String, message: String)
    /// The caller said stop (its client went away) before the answer was complete.
    case stopped

    public var description: String {
        switch self {
        case .invalid(let parameter, let message): return "\(parameter): \(message)"
        case .stopped: return "the query was stopped: its client went away"
        }
    }
}

/// The answer to a query.
public struct QueryResult: Sendable, Equatable {
    /// The resolution the answer was computed at.
    public var resolution: Resolution
    /// The range actually covered: the asked range aligned outward to whole time buckets and steps.
    public var from: Timestamp
    public var to: Timestamp
    public var step: Duration
    public var metrics: [Metric]
    /// One entry per group, in key order; one group with nil keys when not grouped.
    public var groups: [Group]

    public struct Group: Sendable, Equatable {
        public var operation: String?
        public var statusClass: StatusClass?
        public var points: [Point]
    }

    public struct Point: Sendable, Equatable {
        public var start: Timestamp
        /// One value per metric, in the query's order; nil where there is nothing to say (no
        /// requests for an error rate, no latency for a quantile).
        public var values: [Double?]
        /// True when a quantile fell into a collapsed latency bucket (an upper bound, not ±0.54%).
        public var approximate: Bool
    }
}

/// Limits on what one query may cost, all checked before it reads a bucket: the points it
/// answers, the groups, the values the answer holds (its size), and the buckets it reads (its
/// time). A query over any of them is refused with a message naming the limit.
public struct QueryLimits: Sendable, Equatable {
    /// Most points per group.
    public var pointsMax: Int
    /// Most groups.
    public var groupsMax: Int
    /// Most values in one answer: points x groups x metrics. 10,000 points x 1,000 groups was
    /// 10^7 points of JSON (2 GB in the node); this bounds the answer to a few megabytes.
    public var valuesMax: Int
    /// Most metrics asked for at once.
    public var metricsMax: Int
    /// Most time buckets one query reads, over every series it matches.
    public var bucketsMax: Int

    public init(pointsMax: Int = 10_000, groupsMax: Int = 1_000, valuesMax: Int = 200_000, metricsMax: Int = 32,
                bucketsMax: Int = 1_000_000)
    {
        self.pointsMax = pointsMax
        self.groupsMax = groupsMax
        self.valuesMax = valuesMax
        self.metricsMax = metricsMax
        self.bucketsMax = bucketsMax
    }
}

/// What a query reads, decided and costed before it reads anything.
struct QueryPlan {
    var resolution: Resolution
    var step: Duration
    /// The range read: the asked range aligned outward to whole buckets and steps.
    var from: Timestamp
    var to: Timestamp
    var points: Int
}

extension Replica {
    /// How many buckets a query reads between two looks at its `stopping` condition.
    static let bucketsBetweenStopChecks = 4_096

    /// Answers `query` from this replica's state at `now` (local read). `limits` defaults to the
    /// replica's own (`Limits.query`); a query over them throws before it reads a bucket.
    /// `stopping` is asked before reading and every few thousand buckets read; when it says true
    /// the query throws `.stopped` (the shell's client went away: nobody will read the answer).
    public func query(_ query: Query, now: Timestamp, limits: QueryLimits? = nil,
                      stopping: (() -> Bool)? = nil) throws(QueryError) -> QueryResult
    {
        let limits = limits ?? self.config.limits.query
        let plan = try self.window(query, now: now, limits: limits)
        let stepMillis = plan.step.milliseconds
        let fromMillis = plan.from.millisecondsSinceEpoch
        let toMillis = plan.to.millisecondsSinceEpoch
        let resolution = plan.resolution.rawValue

        let groupByOperation = query.groupBy.contains(.operation)
        let groupByStatus = query.groupBy.contains(.status)
        struct GroupKey: Hashable, Comparable {
            var operation: String?
            var statusClass: StatusClass?
            static func < (lhs: GroupKey, rhs: GroupKey) -> Bool {
                ((lhs.operation ?? ""), lhs.statusClass?.rawValue ?? 0) < ((rhs.operation ?? ""), rhs.statusClass?.rawValue ?? 0)
            }
        }
        var members: [GroupKey: [Int]] = [:]
        var bucketsRead = 0
        for position in self.series.indices {
            let key = self.series[position].key
            guard key.service == query.service, query.operation == nil || key.operation == query.operation,
                query.statusClass == nil || key.statusClass == query.statusClass
            else { continue }
            members[GroupKey(operation: groupByOperation ? key.operation : nil,
                             statusClass: groupByStatus ? key.statusClass : nil), default: []].append(position)
            bucketsRead += self.series[position].buckets[resolution].positions(from: fromMillis, to: toMillis).count
        }
        if members.isEmpty { members[GroupKey(operation: nil, statusClass: nil)] = [] }
        try Self.checkCost(groups: members.count, points: plan.points, metrics: query.metrics.count,
                           buckets: bucketsRead, limits: limits)
        if let stopping, stopping() { throw .stopped }
        var untilCheck = Self.bucketsBetweenStopChecks

        var groups: [QueryResult.Group] = []
        groups.reserveCapacity(members.count)
        for key in members.keys.sorted() {
            var windows = Array(repeating: WindowAccumulator(scale: self.config.sketchScale), count: plan.points)
            // Series in key order, so sketches add in the same order on every replica.
            let sorted = (members[key] ?? []).sorted { self.series[$0].key < self.series[$1].key }
            for position in sorted {
                let buckets = self.series[position].buckets[resolution]
                for index in buckets.positions(from: fromMillis, to: toMillis) {
                    let (start, aggregate) = buckets.bucket(at: index)
                    windows[Int((start - fromMillis) / stepMillis)].add(aggregate)
                    untilCheck -= 1
                    if untilCheck == 0 {
                        untilCheck = Self.bucketsBetweenStopChecks
                        if let stopping, stopping() { throw .stopped }
                    }
                }
            }
            let points = windows.indices.map { point in
                windows[point].point(start: plan.from + .milliseconds(Int64(point) * stepMillis), step: plan.step,
                                     metrics: query.metrics)
            }
            groups.append(QueryResult.Group(operation: key.operation, statusClass: key.statusClass, points: points))
        }
        return QueryResult(resolution: plan.resolution, from: plan.from, to: plan.to, step: plan.step,
                           metrics: query.metrics, groups: groups)
    }

    /// Refuses a query whose answer or reading would exceed `limits`, naming the limit.
    static func checkCost(groups: Int, points: Int, metrics: Int, buckets: Int, limits: QueryLimits)
        throws(QueryError)
    {
        guard groups <= limits.groupsMax else {
            throw .invalid(parameter: "group_by", message: "\(groups) groups; at most \(limits.groupsMax) (query groups limit)")
        }
        // Each factor is at most its own limit (checked before), so the product cannot overflow.
        let values = groups * points * metrics
        guard values <= limits.valuesMax else {
            throw .invalid(parameter: "step", message: "the answer would hold \(values) values (\(groups) groups x "
                + "\(points) points x \(metrics) metrics); at most \(limits.valuesMax): use a larger step, a "
                + "shorter range, fewer groups or fewer metrics")
        }
        guard buckets <= limits.bucketsMax else {
            throw .invalid(parameter: "from", message: "the query would read \(buckets) time buckets; at most "
                + "\(limits.bucketsMax): use a shorter range, a coarser step or an operation filter")
        }
    }

    /// The resolution, step, aligned range and number of points a query reads; checks every
    /// parameter's range first, so the arithmetic here cannot overflow.
    func window(_ query: Query, now: Timestamp, limits: QueryLimits) throws(QueryError) -> QueryPlan {
        guard !query.service.isEmpty else { throw .invalid(parameter: "service", message: "is required") }
        for (name, time) in [("from", query.from), ("to", query.to)] where !time.isValid {
            throw .invalid(parameter: name, message: "\(time.millisecondsSinceEpoch) ms is outside the supported "
                + "range (±10^15 ms of 1970, about ±31,700 years)")
        }
        guard query.from < query.to else {
            throw .invalid(parameter: "from", message: "must be before to (\(query.from) >= \(query.to))")
        }
        guard !query.metrics.isEmpty else { throw .invalid(parameter: "metrics", message: "name at least one") }
        guard query.metrics.count <= limits.metricsMax else {
            throw .invalid(parameter: "metrics", message: "\(query.metrics.count) metrics; at most \(limits.metricsMax)")
        }
        if let step = query.step {
            guard step > .zero else { throw .invalid(parameter: "step", message: "must be positive") }
            guard step <= Self.stepMax else {
                throw .invalid(parameter: "step", message: "must be at most \(Self.stepMax.milliseconds / 86_400_000) days")
            }
        }
        let (resolution, step) = try self.plan(query, now: now)
        let from = query.from.floor(toMultipleOf: resolution.width)
        // Both ends within ±10^15 ms and step <= 10^13 ms: none of these sums overflows.
        let span = query.to.millisecondsSinceEpoch - from.millisecondsSinceEpoch
        let stepMillis = step.milliseconds
        let pointCount = (span + stepMillis - 1) / stepMillis
        guard pointCount <= Int64(limits.pointsMax) else {
            throw .invalid(parameter: "step", message: "the range needs \(pointCount) points; at most \(limits.pointsMax)")
        }
        return QueryPlan(resolution: resolution, step: step, from: from,
                         to: from + .milliseconds(pointCount * stepMillis), points: Int(pointCount))
    }

    /// The longest step a query may ask for: about 317 years, longer than any retention.
    static let stepMax: Duration = .milliseconds(10_000_000_000_000)

    /// The resolution and step for a query: the coarsest resolution that fits the step (or, with no
    /// step, the range) and still keeps the start of the range.
    func plan(_ query: Query, now: Timestamp) throws(QueryError) -> (Resolution, Duration) {
        let retention = self.config.retention
        func keepsStart(_ resolution: Resolution) -> Bool {
            retention.keeps(resolution, bucketStart: query.from.floor(toMultipleOf: resolution.width), now: now)
        }
        let coarsestFirst = Resolution.allCases.reversed()
        if let step = query.step {
            let fitting = coarsestFirst.filter { step.milliseconds % $0.width.milliseconds == 0 }
            guard let finest = fitting.last else {
                throw .invalid(parameter: "step", message: "must be a whole number of minutes")
            }
            guard let chosen = fitting.first(where: keepsStart) else {
                // Answering from a resolution that no longer holds the range would say 0 for
                // everything: say why instead.
                let coarser = Resolution.allCases.first { $0 > finest && keepsStart($0) }
                throw .invalid(parameter: "step", message: "the range starts before the \(finest) buckets' retention "
                    + "(\(retention[finest].shortDescription)), so \(finest) points there are gone"
                    + (coarser.map { "; use a step that is a multiple of \($0)" } ?? ""))
            }
            return (chosen, step)
        }
        let aligned = coarsestFirst.filter { resolution in
            let width = resolution.width.milliseconds
            return query.from.millisecondsSinceEpoch % width == 0 && query.to.millisecondsSinceEpoch % width == 0
        }
        let chosen = aligned.first(where: keepsStart)
            ?? Resolution.allCases.first(where: keepsStart)
            ?? .day
        let width = chosen.width.milliseconds
        let from = query.from.floor(toMultipleOf: chosen.width)
        let stepMillis = ((query.to.millisecondsSinceEpoch - from.millisecondsSinceEpoch + width - 1) / width) * width
        return (chosen, .milliseconds(stepMillis))
    }

    /// Services and their operations, sorted.
    public var catalog: [(service: String, operations: [String])] {
        var operations: [String: Set<String>] = [:]
        for series in self.series { operations[series.key.service, default: []].insert(series.key.operation) }
        return operations.keys.sorted().map { ($0, operations[$0]!.sorted()) }  // key from the same dictionary
    }
}

/// Adds up the buckets of one point: disjoint events, so counts add and sketches add (not join).
struct WindowAccumulator {
    var requests: UInt64 = 0
    var errors: UInt64 = 0
    var latency: LatencyDistribution
    var users: HyperLogLog?

    init(scale: Int) {
        self.latency = LatencyDistribution(scale: scale)
    }

    mutating func add(_ bucket: BucketAggregate) {
        // Wrapping: each value is bounded where it was decoded, a sum of a million is not.
        self.requests &+= bucket.requests.value
        self.errors &+= bucket.errors.value
        self.latency.add(bucket.latency)
        // Distinct users are a union across buckets and series: the join is the right operation.
        if self.users == nil { self.users = bucket.users } else { self.users!.merge(bucket.users) }
    }

    func point(start: Timestamp, step: Duration, metrics: [Metric]) -> QueryResult.Point {
        var approximate = false
        let values: [Double?] = metrics.map { metric in
            switch metric {
            case .count:
                return Double(self.requests)
            case .errors:
                return Double(self.errors)
            case .errorRate:
                return self.requests == 0 ? nil : Double(self.errors) / Double(self.requests)
            case .rate:
                return Double(self.requests) / (Double(step.milliseconds) / 1_000)
            case .quantile(let q):
                guard let estimate = self.latency.quantile(q) else { return nil }
                if estimate.isCollapsed { approximate = true }
                return estimate.value
            case .mean:
                return self.latency.mean
            case .max:
                return self.latency.maximum
            case .uniqueUsers:
                return (self.users?.cardinality ?? 0).rounded()
            }
        }
        return QueryResult.Point(start: start, values: values, approximate: approximate)
    }
}
