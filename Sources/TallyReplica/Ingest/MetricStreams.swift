import TallyAggregates

/// A cumulative OTLP histogram point: the totals of one stream (resource, metric and attributes,
/// hashed by the decoder into `stream`) since `start`. The replica turns it into the delta since
/// the stream's previous point (`MetricStreams`), durably, so that a restart of either side never
/// counts a point twice.
public struct CumulativePoint: Sendable, Equatable {
    public var stream: UInt64
    /// The stream's start time (`start_time_unix_nano`): a new start is a reset.
    public var start: UInt64
    /// Everything since `start`: requests and their latencies (at the sketch's scale).
    public var totals: RequestCounts

    public init(stream: UInt64, start: UInt64, totals: RequestCounts) {
        self.stream = stream
        self.start = start
        self.totals = totals
    }
}

/// What the replica remembers of a cumulative stream: its last totals.
public struct StreamState: Sendable, Equatable {
    public var start: UInt64
    public var requests: UInt64
    public var latency: LatencyBuckets?
    /// When its last point arrived (the replica's `now`): streams idle past the window are forgotten.
    public var lastSeen: Timestamp

    public init(start: UInt64, requests: UInt64, latency: LatencyBuckets?, lastSeen: Timestamp) {
        self.start = start
        self.requests = requests
        self.latency = latency
        self.lastSeen = lastSeen
    }
}

/// A stream's state after a point, as log entries and checkpoints carry it.
public struct StreamUpdate: Sendable, Equatable {
    public var stream: UInt64
    public var state: StreamState

    public init(stream: UInt64, state: StreamState) {
        self.stream = stream
        self.state = state
    }
}

/// The cumulative streams a replica converts to deltas: bounded in number, forgotten when idle.
struct MetricStreams: Sendable {
    private(set) var states: [UInt64: StreamState] = [:]
    /// Streams changed since the last checkpoint.
    private var changed: Set<UInt64> = []
    /// When idle streams were last forgotten.
    private var lastExpiry: Timestamp?

    var count: Int { self.states.count }

    subscript(stream: UInt64) -> StreamState? { self.states[stream] }

    /// The stream is remembered and was seen within the window: whether a pass forgot the
    /// others yet does not matter (the limit on streams counts live ones, after a pass).
    func isLive(_ stream: UInt64, now: Timestamp, window: Duration) -> Bool {
        self.states[stream].map { Self.isLive($0, now: now, window: window) } ?? false
    }

    mutating func set(_ update: StreamUpdate) {
        self.states[update.stream] = update.state
        self.changed.insert(update.stream)
    }

    /// The updates since the last checkpoint, in stream order.
    mutating func takeChanged() -> [StreamUpdate] {
        defer { self.changed.removeAll() }
        return self.changed.sorted().compactMap { stream in
            self.states[stream].map { StreamUpdate(stream: stream, state: $0) }
        }
    }

    /// Forgets streams idle for `window`, at most once a minute (a pass reads every stream).
    /// `force`: now, whenever the last pass ran (a new stream at the limit needs the live count).
    mutating func expire(now: Timestamp, window: Duration, force: Bool = false) {
        if !force, let last = self.lastExpiry, now - last < .seconds(60), now >= last { return }
        self.lastExpiry = now
        self.states = self.states.filter { Self.isLive($0.value, now: now, window: window) }
    }

    /// Seen within `window` of `now`: the same rule for the replica and for a stored image, and
    /// `delta` applies it too, so when a pass ran never changes an answer.
    static func isLive(_ state: StreamState, now: Timestamp, window: Duration) -> Bool {
        state.lastSeen >= now - window
    }

    /// The requests of `point` not yet counted, and the stream's state after it. A point whose
    /// start differs from the stream's, or whose totals are below the stream's in any bucket, is
    /// a reset: everything in it is new. A point equal to the last one (a retry) adds nothing.
    func delta(_ point: CumulativePoint, now: Timestamp, window: Duration) -> (RequestCounts?, StreamState) {
        let totals = point.totals
        let state = StreamState(start: point.start, requests: totals.requests, latency: totals.latency, lastSeen: now)
        guard let previous = self.states[point.stream], Self.isLive(previous, now: now, window: window),
            previous.start == point.start,
            totals.requests >= previous.requests,
            let latency = Self.difference(totals.latency, previous.latency)
        else { return (totals.requests > 0 || (totals.latency?.count ?? 0) > 0 ? totals : nil, state) }
        let requests = totals.requests - previous.requests
        guard requests > 0 || (latency?.count ?? 0) > 0 else { return (nil, state) }
        var delta = totals
        delta.requests = requests
        delta.latency = latency
        return (delta, state)
    }

    /// `current - previous` bucket by bucket. The outer optional is nil on a reset (fewer values
    /// than before); the inner is nil when there are no latencies.
    ///
    /// A cumulative exponential histogram lowers its scale when its range outgrows its buckets
    /// (OpenTelemetry SDKs keep at most 160): the stream goes on, its old buckets merged in pairs.
    /// The decoder places each point's buckets at the sketch's scale by their middles, so after a
    /// downscale a merged bucket lands where neither of its halves did and some sketch buckets
    /// seem to shrink. That is not a reset (the start time says when a stream restarts): the
    /// difference is taken at the finest scale where no bucket shrinks, and its buckets placed
    /// back at the sketch's scale by their middles. Counts and the sum stay exact; only the
    /// latencies recorded across a downscale lose precision, once in the stream's life per halving.
    static func difference(_ current: LatencyBuckets?, _ previous: LatencyBuckets?) -> LatencyBuckets?? {
        guard let current else { return previous == nil || previous?.count == 0 ? .some(nil) : nil }
        guard let previous else { return .some(current) }
        guard current.zeroCount >= previous.zeroCount, current.count >= previous.count else { return nil }
        let scale = Swift.min(current.scale, previous.scale)
        for coarse in stride(from: scale, through: ExponentialBuckets.scaleMin, by: -1) {
            guard let coarseBuckets = Self.subtract(Self.buckets(of: previous, at: coarse),
                                                    from: Self.buckets(of: current, at: coarse))
            else { continue }
            // Each coarse bucket at its representative, which is inside it: order is kept. At a
            // very coarse scale an extreme bucket's representative is subnormal or infinite and has
            // no bucket; that one goes to the middle of its fine buckets, by index arithmetic.
            let shift = Int32(scale - coarse)
            let buckets = coarse == scale ? coarseBuckets : Self.merged(coarseBuckets) {
                let value = ExponentialBuckets.representative(of: $0, scale: coarse)
                return value.isFinite && value >= ExponentialBuckets.valueMin
                    ? ExponentialBuckets.index(of: value, scale: scale) : ($0 &<< shift) &+ (1 &<< (shift &- 1))
            }
            let zero = current.zeroCount - previous.zeroCount
            func value(_ index: Int32) -> Double { ExponentialBuckets.representative(of: index, scale: scale) }
            let lowest = zero > 0 ? 0 : buckets.first.map { value($0.index) } ?? 0
            let highest = buckets.last.map { value($0.index) } ?? lowest
            return .some(try? LatencyBuckets(
                scale: scale, zeroCount: zero, buckets: buckets, sum: Swift.max(0, current.sum - previous.sum),
                minimum: Swift.max(lowest, current.minimum),
                maximum: Swift.max(Swift.min(highest, current.maximum), Swift.max(lowest, current.minimum))))
        }
        return nil  // no scale where nothing shrinks: a reset
    }

    /// `current - previous` bucket by bucket (both in index order, at one scale); nil when a
    /// bucket's count went down or a bucket disappeared.
    static func subtract(_ previous: [LatencySketch.Bucket], from current: [LatencySketch.Bucket])
        -> [LatencySketch.Bucket]?
    {
        var result: [LatencySketch.Bucket] = []
        var old = previous.startIndex
        for bucket in current {
            var before: UInt64 = 0
            if old < previous.endIndex, previous[old].index < bucket.index { return nil }  // disappeared
            if old < previous.endIndex, previous[old].index == bucket.index {
                before = previous[old].count
                old += 1
            }
            guard bucket.count >= before else { return nil }
            if bucket.count > before { result.append(LatencySketch.Bucket(index: bucket.index, count: bucket.count - before)) }
        }
        return old == previous.endIndex ? result : nil
    }

    /// The buckets of `point` at `scale` (at most its own): each index shifted right by the
    /// difference, equal indices summed.
    static func buckets(of point: LatencyBuckets, at scale: Int) -> [LatencySketch.Bucket] {
        let shift = point.scale - scale
        guard shift > 0 else { return point.buckets }
        return Self.merged(point.buckets) { $0 >> Int32(shift) }
    }

    /// `buckets` (in index order) moved to `index(old)`, an order-keeping map; buckets that land
    /// together summed (every count is within 2^62, and so is their total: one point's values).
    static func merged(_ buckets: [LatencySketch.Bucket], index: (Int32) -> Int32) -> [LatencySketch.Bucket] {
        var merged: [LatencySketch.Bucket] = []
        merged.reserveCapacity(buckets.count)
        for bucket in buckets {
            let moved = index(bucket.index)
            if let last = merged.last, last.index >= moved {
                merged[merged.count - 1].count = last.count + bucket.count
            } else {
                merged.append(LatencySketch.Bucket(index: moved, count: bucket.count))
            }
        }
        return merged
    }
}
