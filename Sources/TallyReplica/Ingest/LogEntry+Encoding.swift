import TallyAggregates

extension LogEntry: VersionedEncoding {
    public static let encodingTag: UInt8 = 0x11
    public static let encodingVersion: UInt8 = 2
    public static let oldestReadableVersion: UInt8 = 1
    public static let encodingName = "LogEntry"

    /// Body (version 2; version 1 ends after the receipt's rejections, with no duplicates and no
    /// fingerprints):
    /// ```
    /// sequence: varint   acceptedAt: zigzag   client: string   idempotencyKey: 0 | 1 string
    /// strings: count, then each string (services and operations, in order of first use)
    /// events: count, then per event: service index, operation index, status, latency (f64),
    ///         user: 0 | 1 hash (u64 LE) byteCount, timestamp: zigzag
    /// receipt: accepted, sequence, rejections: count, then per rejection: index, reason;
    ///          duplicates
    /// fingerprints: count, then each (u64 LE)
    /// measurements: count, then per measurement: events before it, service index, operation
    ///         index, status, timestamp: zigzag, requests, users: count, then each: hash (u64 LE) byteCount,
    ///         latency: 0 | 1 scale: zigzag, zeroCount, buckets: count, then each: index: zigzag,
    ///         count; sum, minimum, maximum (f64)
    /// streams: count, then per stream: id (u64 LE), state (`StreamState`)
    /// ```
    /// Names repeat within a batch, so each is written once and referred to by index.
    public func encode(to writer: inout ByteWriter) {
        writer.writeVarint(self.sequence)
        writer.writeZigZag(self.acceptedAt.millisecondsSinceEpoch)
        writer.writeString(self.client)
        Self.writeOptionalString(self.idempotencyKey, to: &writer)
        var table: [String: Int] = [:]
        var strings: [String] = []
        func intern(_ string: String) -> Int {
            if let index = table[string] { return index }
            table[string] = strings.count
            strings.append(string)
            return strings.count - 1
        }
        let references = self.events.map { event in
            (intern(event.service), intern(event.operation))
        }
        let measured = self.measurements.map { measurement in
            (intern(measurement.service), intern(measurement.operation))
        }
        writer.writeVarint(strings.count)
        for string in strings { writer.writeString(string) }
        writer.writeVarint(self.events.count)
        for (event, reference) in zip(self.events, references) {
            writer.writeVarint(reference.0)
            writer.writeVarint(reference.1)
            writer.writeVarint(UInt64(event.status))
            writer.writeDouble(event.latencyMicros)
            if let user = event.user {
                writer.writeUInt8(1)
                writer.writeUInt64LE(user.hash)
                writer.writeVarint(user.byteCount)
            } else {
                writer.writeUInt8(0)
            }
            writer.writeZigZag(event.timestamp.millisecondsSinceEpoch)
        }
        self.receipt.encode(to: &writer)
        writer.writeVarint(self.fingerprints.count)
        for fingerprint in self.fingerprints { writer.writeUInt64LE(fingerprint) }
        writer.writeVarint(self.measurements.count)
        for ((measurement, reference), after) in zip(zip(self.measurements, measured), self.measurementsAfter) {
            writer.writeVarint(after)
            writer.writeVarint(reference.0)
            writer.writeVarint(reference.1)
            writer.writeVarint(UInt64(measurement.status))
            writer.writeZigZag(measurement.timestamp.millisecondsSinceEpoch)
            writer.writeVarint(measurement.requests)
            writer.writeVarint(measurement.users.count)
            for user in measurement.users {
                writer.writeUInt64LE(user.hash)
                writer.writeVarint(user.byteCount)
            }
            Self.write(measurement.latency, to: &writer)
        }
        writer.writeVarint(self.streams.count)
        for update in self.streams {
            writer.writeUInt64LE(update.stream)
            update.state.encode(to: &writer)
        }
    }

    /// `0`, or `1` then scale: zigzag, zeroCount, buckets: count, then each: index: zigzag, count;
    /// sum, minimum, maximum (f64).
    static func write(_ latency: LatencyBuckets?, to writer: inout ByteWriter) {
        guard let latency else {
            writer.writeUInt8(0)
            return
        }
        writer.writeUInt8(1)
        writer.writeZigZag(Int64(latency.scale))
        writer.writeVarint(latency.zeroCount)
        writer.writeVarint(latency.buckets.count)
        for bucket in latency.buckets {
            writer.writeZigZag(Int64(bucket.index))
            writer.writeVarint(bucket.count)
        }
        writer.writeDouble(latency.sum)
        writer.writeDouble(latency.count == 0 ? 0 : latency.minimum)
        writer.writeDouble(latency.count == 0 ? 0 : latency.maximum)
    }

    static func readLatency(from reader: inout ByteReader) throws(DecodeError) -> LatencyBuckets? {
        switch try reader.readUInt8("latency flag") {
        case 0:
            return nil
        case 1:
            let scale = try reader.readZigZag("latency scale")
            guard (-64...64).contains(scale) else { throw .invalidValue(field: "latency scale", value: "\(scale)") }
            let zeroCount = try reader.readVarint("latency zero count")
            let bucketCount = try reader.readCount("latency bucket count", max: 1 << 16)
            var buckets: [LatencySketch.Bucket] = []
            buckets.reserveCapacity(min(bucketCount, reader.remaining / 2))
            for _ in 0..<bucketCount {
                let index = try reader.readZigZag("latency bucket index")
                guard let index32 = Int32(exactly: index) else {
                    throw .invalidValue(field: "latency bucket index", value: "\(index)")
                }
                buckets.append(LatencySketch.Bucket(index: index32, count: try reader.readVarint("latency bucket count")))
            }
            let sum = try reader.readDouble("latency sum")
            let minimum = try reader.readDouble("latency minimum")
            let maximum = try reader.readDouble("latency maximum")
            do {
                return try LatencyBuckets(scale: Int(scale), zeroCount: zeroCount, buckets: buckets, sum: sum,
                                          minimum: minimum, maximum: maximum)
            } catch {
                throw .invalidValue(field: "latency", value: error.description)
            }
        case let flag:
            throw .invalidValue(field: "latency flag", value: "\(flag)")
        }
    }

    public init(from reader: inout ByteReader) throws(DecodeError) {
        try self.init(from: &reader, version: Self.encodingVersion)
    }

    public init(from reader: inout ByteReader, version: UInt8) throws(DecodeError) {
        let sequence = try reader.readVarint("LogEntry sequence")
        let acceptedAt = try reader.readTimestamp("LogEntry acceptedAt")
        let client = try reader.readString("LogEntry client")
        let idempotencyKey = try Self.readOptionalString("LogEntry idempotency key", from: &reader)
        let stringCount = try reader.readCount("LogEntry string count", max: reader.limits.mapEntriesMax)
        var strings: [String] = []
        strings.reserveCapacity(min(stringCount, reader.remaining))
        for _ in 0..<stringCount { strings.append(try reader.readString("LogEntry string")) }
        func string(_ field: String) throws(DecodeError) -> String {
            let index = try reader.readCount(field, max: Swift.max(strings.count - 1, 0))
            guard index < strings.count else { throw .invalidValue(field: field, value: "\(index)") }
            return strings[index]
        }
        let eventCount = try reader.readCount("LogEntry event count", max: reader.limits.mapEntriesMax)
        var events: [Event] = []
        events.reserveCapacity(min(eventCount, reader.remaining / 13))
        for _ in 0..<eventCount {
            let service = try string("LogEntry event service")
            let operation = try string("LogEntry event operation")
            let status = try reader.readVarint("LogEntry event status")
            guard (100...599).contains(status) else {
                throw .invalidValue(field: "LogEntry event status", value: "\(status)")
            }
            let latency = try reader.readDouble("LogEntry event latency")
            guard latency.isFinite, latency >= 0 else {
                throw .invalidValue(field: "LogEntry event latency", value: "\(latency)")
            }
            var user: UserID?
            switch try reader.readUInt8("LogEntry event user flag") {
            case 0:
                break
            case 1:
                let hash = try reader.readUInt64LE("LogEntry event user hash")
                user = UserID(hash: hash, byteCount: try reader.readCount("LogEntry event user length", max: 1 << 20))
            case let flag:
                throw .invalidValue(field: "LogEntry event user flag", value: "\(flag)")
            }
            let timestamp = try reader.readTimestamp("LogEntry event timestamp")
            events.append(Event(service: service, operation: operation, status: UInt16(status),
                                latencyMicros: latency, userID: user, timestamp: timestamp))
        }
        let receipt = try IngestReceipt(from: &reader, version: version)
        var fingerprints: [UInt64] = []
        var measurements: [RequestCounts] = []
        var measurementsAfter: [Int] = []
        if version >= 2 {
            let count = try reader.readCount("LogEntry fingerprint count", max: eventCount)
            fingerprints.reserveCapacity(count)
            for _ in 0..<count { fingerprints.append(try reader.readUInt64LE("LogEntry fingerprint")) }
            let measurementCount = try reader.readCount("LogEntry measurement count", max: reader.limits.mapEntriesMax)
            measurements.reserveCapacity(min(measurementCount, reader.remaining / 6))
            for _ in 0..<measurementCount {
                let after = try reader.readCount("LogEntry measurement position", max: events.count)
                guard after >= (measurementsAfter.last ?? 0) else {
                    throw .invalidValue(field: "LogEntry measurement position", value: "\(after)")
                }
                measurementsAfter.append(after)
                let service = try string("LogEntry measurement service")
                let operation = try string("LogEntry measurement operation")
                let status = try reader.readVarint("LogEntry measurement status")
                guard (100...599).contains(status) else {
                    throw .invalidValue(field: "LogEntry measurement status", value: "\(status)")
                }
                let timestamp = try reader.readTimestamp("LogEntry measurement timestamp")
                let requests = try reader.readVarint("LogEntry measurement requests")
                guard requests <= RequestCounts.requestsMax else {
                    throw .invalidValue(field: "LogEntry measurement requests", value: "\(requests)")
                }
                let userCount = try reader.readCount("LogEntry measurement user count", max: RequestCounts.usersMax)
                var users: [UserID] = []
                for _ in 0..<userCount {
                    let hash = try reader.readUInt64LE("LogEntry measurement user hash")
                    users.append(UserID(hash: hash, byteCount: try reader.readCount("LogEntry measurement user length", max: 1 << 20)))
                }
                let latency = try Self.readLatency(from: &reader)
                measurements.append(RequestCounts(service: service, operation: operation, status: UInt16(status),
                                                timestamp: timestamp, requests: requests, users: users, latency: latency))
            }
        }
        var streams: [StreamUpdate] = []
        if version >= 2 {
            let count = try reader.readCount("LogEntry stream count", max: reader.limits.mapEntriesMax)
            for _ in 0..<count {
                let stream = try reader.readUInt64LE("LogEntry stream")
                streams.append(StreamUpdate(stream: stream, state: try StreamState(from: &reader)))
            }
        }
        self.init(sequence: sequence, acceptedAt: acceptedAt, client: client, idempotencyKey: idempotencyKey,
                  events: events, measurements: measurements, measurementsAfter: measurementsAfter, streams: streams,
                  receipt: receipt, fingerprints: fingerprints)
    }

    private static func writeOptionalString(_ string: String?, to writer: inout ByteWriter) {
        if let string {
            writer.writeUInt8(1)
            writer.writeString(string)
        } else {
            writer.writeUInt8(0)
        }
    }

    private static func readOptionalString(_ field: String, from reader: inout ByteReader) throws(DecodeError)
        -> String?
    {
        switch try reader.readUInt8(field) {
        case 0: return nil
        case 1: return try reader.readString(field)
        case let flag: throw .invalidValue(field: "\(field) flag", value: "\(flag)")
        }
    }
}

extension IngestReceipt: VersionedEncoding {
    public static let encodingTag: UInt8 = 0x12
    public static let encodingVersion: UInt8 = 2
    public static let oldestReadableVersion: UInt8 = 1
    public static let encodingName = "IngestReceipt"

    /// Body (version 2): accepted, sequence, rejections: count, then per rejection: index, reason;
    /// duplicates (version 1 has none). Also inside a `LogEntry` body, in the entry's version.
    public func encode(to writer: inout ByteWriter) {
        writer.writeVarint(self.accepted)
        writer.writeVarint(self.sequence)
        writer.writeVarint(self.rejected.count)
        for rejection in self.rejected {
            writer.writeVarint(rejection.index)
            Self.encode(rejection.reason, to: &writer)
        }
        writer.writeVarint(self.duplicates)
    }

    public init(from reader: inout ByteReader) throws(DecodeError) {
        try self.init(from: &reader, version: Self.encodingVersion)
    }

    public init(from reader: inout ByteReader, version: UInt8) throws(DecodeError) {
        let accepted = try reader.readCount("IngestReceipt accepted", max: Int(UInt32.max))
        let sequence = try reader.readVarint("IngestReceipt sequence")
        let rejectionCount = try reader.readCount("IngestReceipt rejection count", max: reader.limits.mapEntriesMax)
        var rejected: [EventRejection] = []
        for _ in 0..<rejectionCount {
            let index = try reader.readCount("IngestReceipt rejection index", max: Int(UInt32.max))
            rejected.append(EventRejection(index: index, reason: try Self.decodeReason(from: &reader)))
        }
        let duplicates = version >= 2 ? try reader.readCount("IngestReceipt duplicates", max: Int(UInt32.max)) : 0
        self.init(accepted: accepted, rejected: rejected, sequence: sequence, duplicates: duplicates)
    }

    private static func encode(_ reason: RejectionReason, to writer: inout ByteWriter) {
        switch reason {
        case .invalid(let message):
            writer.writeUInt8(0)
            writer.writeString(message)
        case .futureTimestamp(let ahead, let allowed):
            writer.writeUInt8(1)
            writer.writeZigZag(ahead)
            writer.writeZigZag(allowed)
        case .expired(let age, let retention):
            writer.writeUInt8(2)
            writer.writeZigZag(age)
            writer.writeZigZag(retention)
        case .operationLimit(let service, let limit):
            writer.writeUInt8(3)
            writer.writeString(service)
            writer.writeVarint(limit)
        case .serviceLimit(let limit):
            writer.writeUInt8(4)
            writer.writeVarint(limit)
        }
    }

    private static func decodeReason(from reader: inout ByteReader) throws(DecodeError) -> RejectionReason {
        switch try reader.readUInt8("IngestReceipt rejection reason") {
        case 0:
            return .invalid(try reader.readString("IngestReceipt rejection message"))
        case 1:
            return .futureTimestamp(aheadMillis: try reader.readZigZag("IngestReceipt rejection ahead"),
                                    allowedMillis: try reader.readZigZag("IngestReceipt rejection allowed"))
        case 2:
            return .expired(ageMillis: try reader.readZigZag("IngestReceipt rejection age"),
                            retentionMillis: try reader.readZigZag("IngestReceipt rejection retention"))
        case 3:
            return .operationLimit(service: try reader.readString("IngestReceipt rejection service"),
                                   limit: try reader.readCount("IngestReceipt rejection limit", max: Int(UInt32.max)))
        case 4:
            return .serviceLimit(limit: try reader.readCount("IngestReceipt rejection limit", max: Int(UInt32.max)))
        case let tag:
            throw .invalidValue(field: "IngestReceipt rejection reason", value: "\(tag)")
        }
    }
}

extension StreamState: VersionedEncoding {
    public static let encodingTag: UInt8 = 0x14
    public static let encodingVersion: UInt8 = 1
    public static let encodingName = "StreamState"

    /// Body: start, requests, latency (as in a log entry's measurement), lastSeen: zigzag.
    public func encode(to writer: inout ByteWriter) {
        writer.writeVarint(self.start)
        writer.writeVarint(self.requests)
        LogEntry.write(self.latency, to: &writer)
        writer.writeZigZag(self.lastSeen.millisecondsSinceEpoch)
    }

    public init(from reader: inout ByteReader) throws(DecodeError) {
        let start = try reader.readVarint("StreamState start")
        let requests = try reader.readVarint("StreamState requests")
        let latency = try LogEntry.readLatency(from: &reader)
        let lastSeen = try reader.readTimestamp("StreamState lastSeen")
        self.init(start: start, requests: requests, latency: latency, lastSeen: lastSeen)
    }
}
