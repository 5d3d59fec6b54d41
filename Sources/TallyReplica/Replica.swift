import TallyAggregates

/// One region's replica: events in, CRDT aggregates per series and time bucket, answers out.
///
/// A value with no I/O, no clock and no randomness: the shell (the node, or the simulator) feeds it
/// inputs named for what happened (`ingest`, `tick`, `replay`) and carries out the actions it
/// returns. The same inputs give the same state and the same actions, byte for byte.
///
/// Durability contract with the shell: `ingest` applies accepted events to the in-memory state at
/// once and returns `.persist(entry)` followed by `.acknowledge`. The shell MUST make the entry
/// durable before it delivers the acknowledgement, and on restart MUST `replay` every durable entry
/// in sequence order into a fresh replica; that rebuilds exactly the acknowledged state, with
/// idempotency keys, so a client retry after a crash is answered, not counted again. An entry that
/// was not durable when the process died was never acknowledged, so losing it loses nothing a
/// client was told was kept.
public struct Replica: Sendable {
    public internal(set) var config: ReplicaConfig

    /// Series in order of first appearance; `SeriesID` indexes this array.
    var series: [SeriesState] = []
    var seriesIndex = SeriesTable()
    /// Operations seen per service (any status class), for the cardinality limit.
    private var operations: [String: Set<String>] = [:]
    /// Remembered answers by idempotency key, and their expiry order.
    var idempotency: IdempotencyCache
    /// Fingerprints of the spans counted within the span window (`EventBatch.fingerprints`).
    var spans: ExpiringMemory<UInt64, Bool>
    /// Cumulative metric streams and their last totals.
    var streams = MetricStreams()
    /// The sequence of the last log entry this replica produced or replayed.
    public internal(set) var lastSequence: UInt64 = 0
    /// Bumped by every change to the aggregates; the node derives ETags from it.
    public internal(set) var stateVersion: UInt64 = 0
    /// Series before this position are in the last checkpoint.
    var savedSeriesCount = 0
    /// Series with time buckets changed since the last checkpoint, each once.
    var dirtySeries: [SeriesID] = []
    /// Gossip: versions, buffers and transfers per origin (empty without peers).
    var replication: ReplicationState
    /// When the last retention pass ran, and what it could remove (see `tick`).
    var expiry = ExpiryPass()

    /// The config in the form the ingest path uses: integer milliseconds and bit masks, because
    /// `Duration` arithmetic (128-bit) and `Set` lookups showed up in the ingest profile.
    let plan: IngestPlan

    public init(config: ReplicaConfig) {
        self.config = config
        self.plan = IngestPlan(config)
        self.idempotency = IdempotencyCache(capacity: config.limits.idempotencyKeysMax)
        self.spans = ExpiringMemory(capacity: config.limits.spanFingerprintsMax)
        self.replication = ReplicationState(config)
    }

    /// Number of series (service, operation, status class) known.
    public var seriesCount: Int { self.series.count }

    /// Number of time buckets held, over all series and resolutions.
    public var bucketCount: Int {
        self.series.reduce(0) { $0 + $1.bucketCount }
    }

    // MARK: - Inputs

    /// A batch of events arrived from a client.
    public mutating func ingest(_ batch: EventBatch, now: Timestamp) -> [Action] {
        var actions: [Action] = []
        let limits = self.config.limits
        if let key = batch.idempotencyKey {
            if key.isEmpty || key.utf8.count > limits.idempotencyKeyBytesMax {
                actions.append(.reject(
                    batch: batch.id,
                    reason: .invalidIdempotencyKey("must be 1 to \(limits.idempotencyKeyBytesMax) bytes")))
                return actions
            }
            self.idempotency.expire(now: now)
            if let receipt = self.idempotency.receipt(client: batch.client, key: key) {
                actions.append(.acknowledge(batch: batch.id, receipt: receipt, replayed: true))
                return actions
            }
        }
        guard batch.items.count <= limits.batchEventsMax else {
            actions.append(.reject(
                batch: batch.id, reason: .tooManyEvents(count: batch.items.count, limit: limits.batchEventsMax)))
            return actions
        }
        var accepted: [Event] = []
        accepted.reserveCapacity(batch.items.count)
        var measurements: [RequestCounts] = []
        var measurementsAfter: [Int] = []
        var streamUpdates: [StreamUpdate] = []
        var countsAccepted = 0
        var rejected: [EventRejection] = []
        let fingerprinted = !batch.fingerprints.isEmpty
        var fingerprints: [UInt64] = []
        var duplicates = 0
        if fingerprinted { self.spans.expire(now: now) }
        for index in batch.items.indices {
            // By index, switching on the element in place: `enumerated()` copied every item out first.
            switch batch.items[index] {
            case .invalid(let message):
                rejected.append(EventRejection(index: index, reason: .invalid(message)))
            case .cumulative(let point):
                if let reason = self.admit(point.totals, now: now) {
                    rejected.append(EventRejection(index: index, reason: reason))
                } else if !self.streams.isLive(point.stream, now: now, window: limits.metricStreamWindow)
                    && self.streams.count >= limits.metricStreamsMax
                    && { self.streams.expire(now: now, window: limits.metricStreamWindow, force: true)
                         return self.streams.count >= limits.metricStreamsMax }()
                {
                    rejected.append(EventRejection(index: index, reason: .invalid(
                        "there are already \(limits.metricStreamsMax) cumulative metric streams, the most allowed")))
                } else {
                    // Counted as accepted whether or not it held anything new (a retried point does not).
                    let (delta, state) = self.streams.delta(point, now: now, window: limits.metricStreamWindow)
                    let update = StreamUpdate(stream: point.stream, state: state)
                    self.streams.set(update)
                    streamUpdates.append(update)
                    countsAccepted += 1
                    if let delta {
                        self.apply(delta, now: now)
                        measurements.append(delta)
                        measurementsAfter.append(accepted.count)
                    }
                }
            case .counts(let measurement):
                if let reason = self.admit(measurement, now: now) {
                    rejected.append(EventRejection(index: index, reason: reason))
                } else {
                    self.apply(measurement, now: now)
                    measurements.append(measurement)
                    measurementsAfter.append(accepted.count)
                    countsAccepted += 1
                }
            case .event(let event):
                let fingerprint = fingerprinted ? batch.fingerprints[index] : 0
                if fingerprint != 0 && self.spans[fingerprint] != nil {
                    duplicates += 1
                    continue
                }
                // The series key needs a valid status; an invalid one is rejected by admit.
                let statusValid = (100...599).contains(event.status)
                let known = statusValid
                    ? self.seriesIndex.id(service: event.service, operation: event.operation,
                                          statusClass: event.statusClass)
                    : nil
                if let reason = self.admit(event, known: known != nil, now: now) {
                    rejected.append(EventRejection(index: index, reason: reason))
                } else {
                    self.apply(event, known: known, now: now)
                    accepted.append(event)
                    if fingerprint != 0 {
                        self.spans.insert(fingerprint, true, expiresAt: now + limits.spanWindow)
                        fingerprints.append(fingerprint)
                    }
                }
            }
        }
        var receipt = IngestReceipt(accepted: accepted.count + countsAccepted, rejected: rejected, sequence: 0,
                                    duplicates: duplicates)
        if !accepted.isEmpty || !measurements.isEmpty || !streamUpdates.isEmpty || batch.idempotencyKey != nil {
            // Persist also a batch with nothing accepted when it has a key: its answer must survive.
            self.lastSequence += 1
            receipt.sequence = self.lastSequence
            let entry = LogEntry(
                sequence: self.lastSequence, acceptedAt: now, client: batch.client,
                idempotencyKey: batch.idempotencyKey, events: accepted, measurements: measurements,
                measurementsAfter: measurementsAfter, streams: streamUpdates, receipt: receipt,
                fingerprints: fingerprints)
            self.remember(entry)
            actions.append(.persist(entry))
        }
        actions.append(.acknowledge(batch: batch.id, receipt: receipt, replayed: false))
        return actions
    }

    /// Rebuilds the state of a durable log entry after a restart. Entries MUST be replayed in
    /// sequence order, each once; the events are applied as they were accepted, without checks.
    public mutating func replay(_ entry: LogEntry) {
        precondition(entry.sequence > self.lastSequence,
                     "log entry \(entry.sequence) replayed after \(self.lastSequence): out of order or twice")
        var next = 0  // the next measurement, applied once the events before it are
        for (position, event) in entry.events.enumerated() {
            while next < entry.measurements.count && entry.measurementsAfter[next] <= position {
                self.apply(entry.measurements[next], now: entry.acceptedAt)
                next += 1
            }
            let known = self.seriesIndex.id(service: event.service, operation: event.operation,
                                            statusClass: event.statusClass)
            self.apply(event, known: known, now: entry.acceptedAt)
        }
        for measurement in entry.measurements[next...] { self.apply(measurement, now: entry.acceptedAt) }
        for update in entry.streams { self.streams.set(update) }
        self.lastSequence = entry.sequence
        // As `ingest` did before it looked the key up: a key that expired then may be reused.
        if entry.idempotencyKey != nil { self.idempotency.expire(now: entry.acceptedAt) }
        self.remember(entry)
        if !entry.fingerprints.isEmpty {
            self.spans.expire(now: entry.acceptedAt)
            let expiresAt = entry.acceptedAt + self.config.limits.spanWindow
            for fingerprint in entry.fingerprints { self.spans.insert(fingerprint, true, expiresAt: expiresAt) }
        }
    }

    /// The timer the replica asked for fired: drop expired time buckets and idempotency keys.
    /// MUST be called when the last `.scheduleTick` fires (and once at start).
    public mutating func tick(now: Timestamp) -> [Action] {
        var actions: [Action] = []
        // Walking every series' buckets touches cold memory (at 10^3 series and a tick a second,
        // most of an idle simulated region's time); a pass that cannot remove or settle anything
        // is skipped (`ExpiryPass`).
        let boundaries = self.plan.expiryBoundaries(now: now)
        if self.expiry.isNeeded(boundaries) {
            let retention = self.config.retention
            var removed = 0
            for position in self.series.indices {
                removed += self.series[position].expire(
                    retention: retention, now: now, settleAfter: .milliseconds(IngestPlan.settleAfterMillis))
            }
            if removed > 0 { self.stateVersion += 1 }
            self.expiry = ExpiryPass(at: now.millisecondsSinceEpoch, boundaries: boundaries)
        }
        self.idempotency.expire(now: now)
        self.spans.expire(now: now)
        self.streams.expire(now: now, window: self.config.limits.metricStreamWindow)
        if let last = self.replication.lastGossip, now - last < self.config.gossipInterval {
            // Not yet: a tick more often than the gossip interval only expires.
        } else {
            actions += self.gossip(now: now)
        }
        actions.append(.scheduleTick(after: self.config.tickInterval))
        return actions
    }

    // MARK: - Applying events

    /// Why `event` cannot be counted now, or nil when it can.
    /// `known`: the event's series already exists (the caller looked it up once for admit and apply).
    /// Reads `self.plan` and `self.config.limits` in place: a local copy of `Limits` (~300 bytes)
    /// per event was a memcpy the profile showed.
    func admit(_ event: Event, known: Bool, now: Timestamp) -> RejectionReason? {
        if let problem = Self.validate(event, nameBytesMax: self.config.limits.nameBytesMax,
                                       userBytesMax: self.config.limits.userBytesMax,
                                       latencyMaxMicros: self.plan.latencyMaxMicros)
        {
            return .invalid(problem)
        }
        let ahead = event.timestamp.millisecondsSinceEpoch - now.millisecondsSinceEpoch
        if ahead > self.plan.futureSkewMillis {
            return .futureTimestamp(aheadMillis: ahead, allowedMillis: self.plan.futureSkewMillis)
        }
        // The day bucket is kept longest when retentions are defaults, but any may be: check all.
        var keptSomewhere = false
        for resolution in 0..<self.plan.widthMillis.count where self.plan.keeps(resolution, event.timestamp, now: now) {
            keptSomewhere = true
            break
        }
        if !keptSomewhere {
            let longest = Resolution.allCases.map { self.config.retention[$0] }.max() ?? .zero
            return .expired(ageMillis: (now - event.timestamp).milliseconds, retentionMillis: longest.milliseconds)
        }
        if known { return nil }
        if self.operations[event.service]?.contains(event.operation) == true { return nil }
        let limits = self.config.limits
        if let known = self.operations[event.service] {
            if known.count >= limits.operationsPerServiceMax {
                return .operationLimit(service: event.service, limit: limits.operationsPerServiceMax)
            }
        } else if self.operations.count >= limits.servicesMax {
            return .serviceLimit(limit: limits.servicesMax)
        }
        return nil
    }

    /// The first problem with an event's fields, as a message naming the field.
    static func validate(_ event: Event, nameBytesMax: Int, userBytesMax: Int, latencyMaxMicros: Double) -> String? {
        func name(_ field: String, _ value: String) -> String? {
            if value.isEmpty { return "\(field) is empty" }
            if value.utf8.count > nameBytesMax {
                return "\(field) is \(value.utf8.count) bytes long; at most \(nameBytesMax) are allowed"
            }
            return nil
        }
        if let problem = name("service", event.service) { return problem }
        if let problem = name("operation", event.operation) { return problem }
        if !(100...599).contains(event.status) { return "status \(event.status) is not in 100...599" }
        if !event.timestamp.isValid {
            return "timestamp \(event.timestamp.millisecondsSinceEpoch) ms is outside ±10^15 ms of 1970"
        }
        let latency = event.latencyMicros
        if !latency.isFinite || latency < 0 { return "latency \(latency) is not a finite, non-negative number" }
        if latency > latencyMaxMicros {
            return "latency \(latency) µs is over the maximum of \(latencyMaxMicros) µs"
        }
        if let user = event.user, user.byteCount > userBytesMax {
            return "user is \(user.byteCount) bytes long; at most \(userBytesMax) are allowed"
        }
        return nil
    }

    /// Counts an admitted event into every resolution that still keeps its time bucket.
    mutating func apply(_ event: Event, known: SeriesID?, now: Timestamp) {
        self.expiry.noteChange(now: now)
        let id = known ?? self.addSeries(event.seriesKey)
        let isError = self.plan.errorMask & (1 << event.statusClass.rawValue) != 0
        let (wasClean, wasSealed) = self.series[Int(id.rawValue)].record(
            event, isError: isError, now: now, plan: self.plan)
        if wasClean { self.dirtySeries.append(id) }
        if wasSealed { self.replication.unsealedSeries.append(id) }
        self.stateVersion += 1
    }

    /// Why a measurement cannot be counted, or nil: its fields as an event's, and its sizes.
    func admit(_ measurement: RequestCounts, now: Timestamp) -> RejectionReason? {
        guard measurement.requests <= RequestCounts.requestsMax else {
            return .invalid("requests is \(measurement.requests); at most \(RequestCounts.requestsMax) in one measurement")
        }
        guard measurement.users.count <= RequestCounts.usersMax else {
            return .invalid("\(measurement.users.count) users; at most \(RequestCounts.usersMax) in one measurement")
        }
        if let latency = measurement.latency {
            guard latency.scale >= self.plan.sketchScale else {
                return .invalid("latency buckets at scale \(latency.scale) are coarser than the sketch's \(self.plan.sketchScale)")
            }
            guard latency.maximum <= self.plan.latencyMaxMicros else {
                return .invalid("latency \(latency.maximum) us is over the limit of \(self.plan.latencyMaxMicros) us")
            }
        }
        if let user = measurement.users.first(where: { $0.byteCount > self.config.limits.userBytesMax }) {
            return .invalid("user is \(user.byteCount) bytes long; at most \(self.config.limits.userBytesMax) are allowed")
        }
        let event = measurement.asEvent
        let known = (100...599).contains(event.status) && self.seriesIndex[event.seriesKey] != nil
        return self.admit(event, known: known, now: now)
    }

    mutating func apply(_ measurement: RequestCounts, now: Timestamp) {
        self.expiry.noteChange(now: now)
        let key = measurement.seriesKey
        let id = self.seriesIndex[key] ?? self.addSeries(key)
        let isError = self.plan.errorMask & (1 << key.statusClass.rawValue) != 0
        let (wasClean, wasSealed) = self.series[Int(id.rawValue)].record(
            measurement, isError: isError, now: now, plan: self.plan)
        if wasClean { self.dirtySeries.append(id) }
        if wasSealed { self.replication.unsealedSeries.append(id) }
        self.stateVersion += 1
    }

    mutating func addSeries(_ key: SeriesKey) -> SeriesID {
        let id = self.seriesIndex.insert(key)
        self.series.append(SeriesState(key: key))
        self.operations[key.service, default: []].insert(key.operation)
        return id
    }

    private mutating func remember(_ entry: LogEntry) {
        guard let key = entry.idempotencyKey else { return }
        self.idempotency.insert(
            client: entry.client, key: key, receipt: entry.receipt,
            expiresAt: entry.acceptedAt + self.config.limits.idempotencyWindow)
    }
}

/// The last retention pass, so that `tick` can skip one that would change nothing.
///
/// A pass removes the buckets starting at or before a boundary and settles those before another
/// (`IngestPlan.expiryBoundaries`). With the same boundaries as the last pass, the only buckets it
/// could still remove or settle are ones created since, below the boundaries; every path that
/// creates a bucket checks `keeps` at its own `now`, so that needs a `now` earlier than the last
/// pass's (a clock stepped back), which marks the pass stale.
struct ExpiryPass: Sendable {
    private var at: Int64 = .min
    private var boundaries: [Int64] = []
    private var stale = true

    init() {}

    init(at: Int64, boundaries: [Int64]) {
        self.at = at
        self.boundaries = boundaries
        self.stale = false
    }

    func isNeeded(_ boundaries: [Int64]) -> Bool {
        self.stale || boundaries != self.boundaries
    }

    /// A bucket may be created or changed at `now`.
    @inline(__always)
    mutating func noteChange(now: Timestamp) {
        if now.millisecondsSinceEpoch < self.at { self.stale = true }
    }
}

/// A series' position in `Replica.series`.
struct SeriesID: Hashable, Sendable {
    var rawValue: Int32
}

/// The time buckets of one series, at every resolution.
struct SeriesState: Sendable {
    let key: SeriesKey
    /// Per resolution (indexed by `Resolution.rawValue`): the time buckets, by start (ms).
    private(set) var buckets: [TimeBuckets] = Array(repeating: TimeBuckets(), count: Resolution.allCases.count)

    /// Per resolution: the earliest bucket start changed since the last checkpoint (`Int64.max`:
    /// none). Events arrive mostly for the newest buckets, so "every bucket from here on" is a
    /// tight and cheap description of what changed.
    private var dirtyFrom: InlineArray<3, Int64> = InlineArray(repeating: .max)
    private var isDirty = false
    /// Own events changed buckets since the last seal (`TimeBuckets.bases` holds which).
    var isUnsealed = false

    init(key: SeriesKey) {
        self.key = key
    }

    var bucketCount: Int { self.buckets.reduce(0) { $0 + $1.count } }

    /// Counts `event` into every resolution keeping its bucket. Returns whether this is the
    /// series' first change since the last checkpoint, and since the last seal (the replica lists
    /// it as dirty, or unsealed, then).
    mutating func record(_ event: Event, isError: Bool, now: Timestamp, plan: IngestPlan)
        -> (wasClean: Bool, wasSealed: Bool)
    {
        let userHash = event.user?.hash
        let wasClean = !self.isDirty
        self.isDirty = true
        let wasSealed = plan.replicates && !self.isUnsealed
        if plan.replicates { self.isUnsealed = true }
        for resolution in 0..<plan.widthMillis.count {
            // A late event whose bucket this resolution no longer keeps counts only where it is kept.
            let start = plan.bucketStart(resolution, event.timestamp)
            guard plan.keeps(resolution, bucketStart: start, now: now) else { continue }
            if start < self.dirtyFrom[resolution] { self.dirtyFrom[resolution] = start }
            self.buckets[resolution].update(start, trackBase: plan.replicates, userHash: userHash) {
                BucketAggregate(sketchScale: plan.sketchScale, sketchBucketsMax: plan.sketchBucketsMax,
                                usersPrecision: plan.usersPrecision)
            } _: { aggregate in
                aggregate.record(event, userHash: userHash, isError: isError, at: plan.id)
            }
        }
        return (wasClean, wasSealed)
    }

    /// Counts `measurement` into every resolution keeping its bucket, as `record(_ event:)` does.
    mutating func record(_ measurement: RequestCounts, isError: Bool, now: Timestamp, plan: IngestPlan)
        -> (wasClean: Bool, wasSealed: Bool)
    {
        let wasClean = !self.isDirty
        self.isDirty = true
        let wasSealed = plan.replicates && !self.isUnsealed
        if plan.replicates { self.isUnsealed = true }
        for resolution in 0..<plan.widthMillis.count {
            let start = plan.bucketStart(resolution, measurement.timestamp)
            guard plan.keeps(resolution, bucketStart: start, now: now) else { continue }
            if start < self.dirtyFrom[resolution] { self.dirtyFrom[resolution] = start }
            func make() -> BucketAggregate {
                BucketAggregate(sketchScale: plan.sketchScale, sketchBucketsMax: plan.sketchBucketsMax,
                                usersPrecision: plan.usersPrecision)
            }
            // Each user is noted for the seal as one event's would be; the counts go in once.
            for user in measurement.users {
                self.buckets[resolution].update(start, trackBase: plan.replicates, userHash: user.hash, make: make) { _ in }
            }
            self.buckets[resolution].update(start, trackBase: plan.replicates, make: make) { aggregate in
                aggregate.record(measurement, isError: isError, at: plan.id)
            }
        }
        return (wasClean, wasSealed)
    }

    /// Appends the buckets changed since the last checkpoint to `stored`, and marks them saved.
    mutating func takeDirty(series: Int, into stored: inout [StoredBucket]) {
        for resolution in Resolution.allCases {
            let from = self.dirtyFrom[resolution.rawValue]
            guard from != .max else { continue }
            for (start, aggregate) in self.buckets[resolution.rawValue].all where start >= from {
                stored.append(StoredBucket(
                    address: BucketAddress(series: series, resolution: resolution, start: start), aggregate: aggregate))
            }
            self.dirtyFrom[resolution.rawValue] = .max
        }
        self.isDirty = false
    }

    /// Joins a replicated bucket part into the bucket at `start` (creating it), for checkpoints a
    /// change like any other. Returns true when this is the series' first change since the last
    /// checkpoint.
    mutating func merge(_ part: BucketAggregate, resolution: Resolution, start: Int64) -> Bool {
        let wasClean = !self.isDirty
        self.isDirty = true
        if start < self.dirtyFrom[resolution.rawValue] { self.dirtyFrom[resolution.rawValue] = start }
        self.buckets[resolution.rawValue].update(start) { part } _: { $0.merge(part) }
        return wasClean
    }

    /// Takes the buckets own events changed since the last seal, with their values before.
    mutating func takeUnsealed() -> [(resolution: Resolution, unsealed: TimeBuckets.Unsealed, current: BucketAggregate)] {
        var changed: [(resolution: Resolution, unsealed: TimeBuckets.Unsealed, current: BucketAggregate)] = []
        for resolution in Resolution.allCases {
            for unsealed in self.buckets[resolution.rawValue].takeBases() {
                // A bucket retention dropped since has nothing left to ship.
                if let current = self.buckets[resolution.rawValue][unsealed.start] {
                    changed.append((resolution, unsealed, current))
                }
            }
        }
        self.isUnsealed = false
        return changed
    }

    /// Puts back a bucket from a stored image.
    mutating func restore(_ resolution: Resolution, start: Int64, _ aggregate: BucketAggregate) {
        self.buckets[resolution.rawValue].update(start) { aggregate } _: { _ in }
    }

    func bucket(_ resolution: Resolution, startingAt start: Timestamp) -> BucketAggregate? {
        self.buckets[resolution.rawValue][start.millisecondsSinceEpoch]
    }

    /// Drops the buckets retention no longer keeps, and settles the ones whose time ended over
    /// `settleAfter` ago; returns how many were dropped.
    mutating func expire(retention: Retention, now: Timestamp, settleAfter: Duration) -> Int {
        var removed = 0
        for resolution in Resolution.allCases {
            // Kept while start + width + retention > now: the first kept start is after this.
            let width = resolution.width.milliseconds
            let cutoff = now.millisecondsSinceEpoch - width - retention[resolution].milliseconds
            removed += self.buckets[resolution.rawValue].removeBuckets(startingBefore: cutoff + 1)
            self.buckets[resolution.rawValue].settle(
                startingBefore: now.millisecondsSinceEpoch - width - settleAfter.milliseconds)
        }
        return removed
    }
}

/// The address of one time bucket of one series.
public struct BucketKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var series: SeriesKey
    public var resolution: Resolution
    public var start: Timestamp

    public init(series: SeriesKey, resolution: Resolution, start: Timestamp) {
        self.series = series
        self.resolution = resolution
        self.start = start
    }

    public static func < (lhs: BucketKey, rhs: BucketKey) -> Bool {
        (lhs.series, lhs.resolution.rawValue, lhs.start) < (rhs.series, rhs.resolution.rawValue, rhs.start)
    }

    public var description: String { "\(self.series)@\(self.resolution)/\(self.start)" }
}

extension Replica {
    /// Every time bucket and its aggregate, in key order: the replica's whole aggregate state.
    public var buckets: [(key: BucketKey, aggregate: BucketAggregate)] {
        var all: [(key: BucketKey, aggregate: BucketAggregate)] = []
        for series in self.series {
            for resolution in Resolution.allCases {
                for (start, aggregate) in series.buckets[resolution.rawValue].all {
                    all.append((BucketKey(series: series.key, resolution: resolution,
                                          start: Timestamp(millisecondsSinceEpoch: start)), aggregate))
                }
            }
        }
        return all.sorted { $0.key < $1.key }
    }
}

extension Replica {
    /// Estimated bytes per time bucket, sorted ascending: its start (8 bytes in `TimeBuckets`), its
    /// aggregate's slot there (the struct's stride) and the aggregate's heap.
    public var bucketBytes: [Int] {
        var sizes: [Int] = []
        sizes.reserveCapacity(self.bucketCount)
        // estimatedBytes counts the struct's size; the array slot adds its padding to the stride.
        let slot = MemoryLayout<Int64>.stride + MemoryLayout<BucketAggregate>.stride
            - MemoryLayout<BucketAggregate>.size
        for series in self.series {
            for buckets in series.buckets {
                for aggregate in buckets.aggregates { sizes.append(aggregate.estimatedBytes + slot) }
            }
        }
        return sizes.sorted()
    }
}

/// `ReplicaConfig` as the ingest path needs it.
struct IngestPlan: Sendable {
    let id: ReplicaID
    /// Per resolution (by raw value): bucket width, and width plus retention, in milliseconds.
    /// Inline arrays: the plan is copied on the hot path, and a heap array would be retained.
    let widthMillis: InlineArray<3, Int64>
    let keepMillis: InlineArray<3, Int64>
    let latencyMaxMicros: Double
    let futureSkewMillis: Int64
    /// Bit `n` set when status class `n`xx counts as an error.
    let errorMask: UInt8
    let sketchScale: Int
    let sketchBucketsMax: Int
    let usersPrecision: Int
    /// The replica has peers: own changes are tracked for sealing.
    let replicates: Bool

    init(_ config: ReplicaConfig) {
        self.id = config.id
        precondition(Resolution.allCases.count == 3, "IngestPlan holds three resolutions")
        // The bounds that keep every sum of a valid timestamp, a width and these overflow-free;
        // config parsing enforces them with an error naming the key (`Limits.ranges`).
        for resolution in Resolution.allCases {
            precondition(config.retention[resolution] > .zero && config.retention[resolution] <= Retention.longest,
                         "retention \(resolution) \(config.retention[resolution]) outside 0...\(Retention.longest)")
        }
        for (name, value) in [("idempotencyWindow", config.limits.idempotencyWindow),
                              ("futureSkewMax", config.limits.futureSkewMax), ("latencyMax", config.limits.latencyMax)] {
            precondition(value >= .zero && value <= Limits.durationLongest, "\(name) \(value) outside 0...\(Limits.durationLongest)")
        }
        self.widthMillis = InlineArray { Resolution.allCases[$0].width.milliseconds }
        self.keepMillis = InlineArray {
            Resolution.allCases[$0].width.milliseconds + config.retention[Resolution.allCases[$0]].milliseconds
        }
        self.latencyMaxMicros = Double(config.limits.latencyMax.milliseconds) * 1_000
        self.futureSkewMillis = config.limits.futureSkewMax.milliseconds
        self.errorMask = config.errorClasses.reduce(0) { $0 | (1 << $1.rawValue) }
        self.sketchScale = config.sketchScale
        self.sketchBucketsMax = config.sketchBucketsMax
        self.usersPrecision = config.usersPrecision
        self.replicates = !config.peers.isEmpty
    }

    /// The start (ms) of the time bucket of `resolution` holding `timestamp`; floor, also before 1970.
    @inline(__always)
    func bucketStart(_ resolution: Int, _ timestamp: Timestamp) -> Int64 {
        let width = self.widthMillis[resolution]
        let time = timestamp.millisecondsSinceEpoch
        let remainder = time % width
        return time - (remainder < 0 ? remainder + width : remainder)
    }

    /// A closed bucket is settled (its arrays shrunk) this long after its end.
    static let settleAfterMillis: Int64 = 60_000

    /// Per resolution, the last bucket start a retention pass at `now` removes, then the last it
    /// settles. Bucket starts are multiples of their width, so two times with equal boundaries
    /// remove and settle the same buckets.
    func expiryBoundaries(now: Timestamp) -> [Int64] {
        var boundaries: [Int64] = []
        boundaries.reserveCapacity(2 * self.widthMillis.count)
        for resolution in 0..<self.widthMillis.count {
            let width = self.widthMillis[resolution]
            // Removed: start <= now - width - retention; settled: start < now - width - settleAfter.
            for cutoff in [now.millisecondsSinceEpoch - self.keepMillis[resolution],
                           now.millisecondsSinceEpoch - width - Self.settleAfterMillis - 1] {
                let remainder = cutoff % width
                boundaries.append(cutoff - (remainder < 0 ? remainder + width : remainder))
            }
        }
        return boundaries
    }

    /// `Retention.keeps`, in milliseconds: the bucket's end plus retention is still ahead of now.
    @inline(__always)
    func keeps(_ resolution: Int, _ timestamp: Timestamp, now: Timestamp) -> Bool {
        self.keeps(resolution, bucketStart: self.bucketStart(resolution, timestamp), now: now)
    }

    @inline(__always)
    func keeps(_ resolution: Int, bucketStart start: Int64, now: Timestamp) -> Bool {
        start + self.keepMillis[resolution] > now.millisecondsSinceEpoch
    }
}
