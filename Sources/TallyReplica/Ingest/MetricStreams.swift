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

    /// `current - previous` bucket by bucket; nil (`.none` wrapped) when any count went down.
    /// The outer optional is nil on a decrease; the inner is nil when there are no latencies.
    static func difference(_ current: LatencyBuckets?, _ previous: LatencyBuckets?) -> LatencyBuckets?? {
        guard let current else { return previous == nil || previous?.count == 0 ? .some(nil) : nil }
        guard let previous else { return .some(current) }
        guard current.scale == previous.scale, current.zeroCount >= previous.zeroCount else { return nil }
        var old: [Int32: UInt64] = [:]
        for bucket in previous.buckets { old[bucket.index] = bucket.count }
        var buckets: [LatencySketch.Bucket] = []
        for bucket in current.buckets {
            let before = old.removeValue(forKey: bucket.index) ?? 0
            guard bucket.count >= before else { return nil }
            if bucket.count > before { buckets.append(LatencySketch.Bucket(index: bucket.index, count: bucket.count - before)) }
        }
        guard old.isEmpty else { return nil }  // a bucket disappeared: a reset
        let zero = current.zeroCount - previous.zeroCount
        let scale = current.scale
        func value(_ index: Int32) -> Double { ExponentialBuckets.representative(of: index, scale: scale) }
        let lowest = zero > 0 ? 0 : buckets.first.map { value($0.index) } ?? 0
        let highest = buckets.last.map { value($0.index) } ?? lowest
        return .some(try? LatencyBuckets(
            scale: scale, zeroCount: zero, buckets: buckets, sum: Swift.max(0, current.sum - previous.sum),
            minimum: Swift.max(lowest, current.minimum), maximum: Swift.max(Swift.min(highest, current.maximum), Swift.max(lowest, current.minimum))))
    }
}
