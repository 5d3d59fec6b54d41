import TallyAggregates

/// The shell's handle for a batch in flight, echoed in the action that answers it.
public struct BatchID: Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { "batch-\(self.rawValue)" }
}

/// One item of a batch as the shell parsed it: an event, or the reason it could not be one
/// (malformed JSON object, wrong type, missing field). Positions are the client's indexes.
///
/// The two aggregated kinds are boxed (`indirect`): unboxed they made every item as large as a
/// cumulative point, and each event of a batch paid for copying that size through the enum's
/// value witness, on the ingest path's hottest loop.
public enum BatchItem: Sendable, Equatable {
    case event(Event)
    /// Aggregated counts (StatsD counters and sets, OTLP delta histogram points).
    indirect case counts(RequestCounts)
    /// An OTLP cumulative histogram point, turned into a delta against its stream.
    indirect case cumulative(CumulativePoint)
    case invalid(String)
}

extension BatchItem {
    /// "service operation" of the item, for messages about it; nil for an invalid item.
    public var subject: String? {
        switch self {
        case .event(let event): "\(event.service) \(event.operation)"
        case .counts(let measurement): "\(measurement.service) \(measurement.operation)"
        case .cumulative(let point): "\(point.totals.service) \(point.totals.operation)"
        case .invalid: nil
        }
    }
}

/// The events of one ingest request.
public struct EventBatch: Sendable, Equatable {
    public var id: BatchID
    /// Who sent it (the API key's name); idempotency keys are scoped to it.
    public var client: String
    public var idempotencyKey: String?
    public var items: [BatchItem]
    /// Empty, or one per item: a fingerprint of the item's identity (for an OTLP span, of its trace
    /// and span id), 0 for none. An item whose fingerprint was counted within the span window
    /// (`Limits.spanWindow`) is a duplicate and counted once, however the retries batch it.
    public var fingerprints: [UInt64]

    public init(id: BatchID, client: String, idempotencyKey: String? = nil, items: [BatchItem],
                fingerprints: [UInt64] = [])
    {
        precondition(fingerprints.isEmpty || fingerprints.count == items.count,
                     "\(fingerprints.count) fingerprints for \(items.count) items")
        self.id = id
        self.client = client
        self.idempotencyKey = idempotencyKey
        self.items = items
        self.fingerprints = fingerprints
    }

    public init(id: BatchID, client: String, idempotencyKey: String? = nil, events: [Event]) {
        self.init(id: id, client: client, idempotencyKey: idempotencyKey, items: events.map { .event($0) })
    }
}

/// Why one event of a batch was not counted.
public enum RejectionReason: Sendable, Equatable, CustomStringConvertible {
    /// The event is malformed or a field is out of range; the text names the field.
    case invalid(String)
    /// The timestamp is further in the future than the allowed clock skew.
    case futureTimestamp(aheadMillis: Int64, allowedMillis: Int64)
    /// The timestamp is older than every resolution's retention.
    case expired(ageMillis: Int64, retentionMillis: Int64)
    /// The service already has the most operations allowed.
    case operationLimit(service: String, limit: Int)
    /// The replica already has the most services allowed.
    case serviceLimit(limit: Int)

    /// A stable, low-cardinality name for metrics labels.
    public var code: String {
        switch self {
        case .invalid: return "invalid"
        case .futureTimestamp: return "future_timestamp"
        case .expired: return "expired"
        case .operationLimit: return "operation_limit"
        case .serviceLimit: return "service_limit"
        }
    }

    public var description: String {
        switch self {
        case .invalid(let message):
            return message
        case .futureTimestamp(let ahead, let allowed):
            return "timestamp is \(ahead) ms in the future; at most \(allowed) ms of clock skew is allowed"
        case .expired(let age, let retention):
            return "timestamp is \(age) ms old; the longest retention is \(retention) ms"
        case .operationLimit(let service, let limit):
            return "service '\(service)' already has \(limit) operations, the most allowed"
        case .serviceLimit(let limit):
            return "there are already \(limit) services, the most allowed"
        }
    }
}

public struct EventRejection: Sendable, Equatable {
    /// The event's position in the batch.
    public var index: Int
    public var reason: RejectionReason

    public init(index: Int, reason: RejectionReason) {
        self.index = index
        self.reason = reason
    }
}

/// The answer to a batch: what was counted and what was not, with a reason for each event not.
public struct IngestReceipt: Sendable, Equatable {
    public var accepted: Int
    public var rejected: [EventRejection]
    /// The log sequence of the entry that made the accepted events durable; 0 if none was accepted.
    public var sequence: UInt64
    /// Events not counted again because their fingerprint (an OTLP span's trace and span id) was
    /// already counted within the span window (`EventBatch.fingerprints`).
    public var duplicates: Int

    public init(accepted: Int, rejected: [EventRejection], sequence: UInt64, duplicates: Int = 0) {
        self.accepted = accepted
        self.rejected = rejected
        self.sequence = sequence
        self.duplicates = duplicates
    }
}

/// Why a whole batch was refused: nothing of it was counted.
public enum BatchRejection: Sendable, Equatable, CustomStringConvertible {
    case tooManyEvents(count: Int, limit: Int)
    case invalidIdempotencyKey(String)

    public var description: String {
        switch self {
        case .tooManyEvents(let count, let limit):
            return "batch has \(count) events; at most \(limit) are accepted per batch"
        case .invalidIdempotencyKey(let message):
            return "invalid Idempotency-Key: \(message)"
        }
    }
}

/// What the replica asks its shell to do.
public enum Action: Sendable, Equatable {
    /// Make `entry` durable. The shell MAY group several entries in one transaction, and MUST NOT
    /// deliver an `acknowledge` emitted after this action before this entry is durable.
    case persist(LogEntry)
    /// Answer batch `batch` with `receipt`; `replayed` when the idempotency key was seen before
    /// and this is the first answer again. MUST be delivered in order, after every earlier persist.
    case acknowledge(batch: BatchID, receipt: IngestReceipt, replayed: Bool)
    /// Refuse the whole batch; nothing of it was applied or persisted.
    case reject(batch: BatchID, reason: BatchRejection)
    /// Call `tick` again after this long.
    case scheduleTick(after: Duration)
    /// Send these bytes (an encoded `ReplicationMessage`) to the peer of that name, best effort:
    /// gossip repairs any loss.
    case send([UInt8], to: String)
}

/// A durable record of one batch's accepted events: replaying the log through `Replica.replay`
/// rebuilds exactly the acknowledged state.
public struct LogEntry: Sendable, Equatable {
    /// Strictly increasing per replica, from 1.
    public var sequence: UInt64
    /// The replica's `now` when it accepted the batch.
    public var acceptedAt: Timestamp
    public var client: String
    public var idempotencyKey: String?
    /// The accepted events, in batch order.
    public var events: [Event]
    /// The accepted measurements, in batch order.
    public var measurements: [RequestCounts]
    /// Per measurement, how many of `events` came before it in the batch: replay applies both in
    /// the order they were accepted, so series are created in the same order.
    public var measurementsAfter: [Int]
    /// The cumulative streams' states after this entry's points (their deltas are in `measurements`).
    public var streams: [StreamUpdate]
    public var receipt: IngestReceipt
    /// The fingerprints of the accepted events that had one (any order): replay remembers them, so
    /// a span retried after a restart is still a duplicate.
    public var fingerprints: [UInt64]

    public init(sequence: UInt64, acceptedAt: Timestamp, client: String, idempotencyKey: String?,
                events: [Event], measurements: [RequestCounts] = [], measurementsAfter: [Int] = [],
                streams: [StreamUpdate] = [], receipt: IngestReceipt, fingerprints: [UInt64] = [])
    {
        self.streams = streams
        precondition(measurementsAfter.count == measurements.count, "a position for each measurement")
        self.measurements = measurements
        self.measurementsAfter = measurementsAfter
        self.sequence = sequence
        self.acceptedAt = acceptedAt
        self.client = client
        self.idempotencyKey = idempotencyKey
        self.events = events
        self.receipt = receipt
        self.fingerprints = fingerprints
    }
}
