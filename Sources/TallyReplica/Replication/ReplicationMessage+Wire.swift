import TallyAggregates

/// The wire format of replication messages (versions 1 and 2).
///
/// ```
/// message:  tag 0x20, wire version u8, kind u8 (0 digest, 1 deltas, 2 state chunk), body
/// strings:  count, then each string: every service and operation name of a part, once;
///           a series key is then (service index, operation index, status class u8)
/// key:      series key, resolution u8, start: v1 zigzag milliseconds; v2 zigzag bucket number
///           (start / the resolution's width: a misaligned start cannot be written, and a minute
///           bucket of 2026 takes 4 bytes instead of 6)
/// digest:   strings, reply u8, entries: count, per entry: origin u64 LE, version varint,
///           currentAsOf zigzag; transfers: count, per transfer: origin u64 LE, asOf varint, cursor key
/// deltas:   batches: count, per batch: byte length varint, then the batch
/// batch:    origin u64 LE, version varint, previous varint, sealedAt zigzag, strings,
///           buckets: count, per bucket: key, BucketAggregate body
/// chunk:    strings, origin u64 LE, asOf varint, asOfTime zigzag, from: 0 | 1 key, next: 0 | 1 key,
///           buckets: count, per bucket: key, BucketAggregate body
/// ```
/// A batch is self-contained (its own string table), so it is encoded once, by its origin, and
/// relayed as the same bytes by every replica after it; a receiver reads its header (origin,
/// version, previous) and decodes the rest only if the batch continues its chain. A batch's bytes
/// are in the wire version of the message that brought them; sent to a peer at another version
/// (a rolling upgrade), it is decoded and encoded again at that version.
/// Decoding enforces the reader's limits and `ReplicationMessage.limits`, and never traps: a peer's
/// bytes are untrusted input. The transport caps the frame size before the bytes get here.
extension ReplicationMessage {
    public static let encodingTag: UInt8 = 0x20
    /// The wire versions this build reads and writes. Which one goes to a peer follows from the
    /// protocol its connection agreed (`NodeCore.wireVersion(forProtocol:)`), so the format can
    /// change one node at a time. 1: bucket starts in milliseconds. 2: bucket starts as bucket
    /// numbers. 3: version 2's encoding, from a release whose receivers take a batch that follows
    /// any version up to the one they hold (`StoredBatch.continues`), so a restarted origin's
    /// batches are offered to it; a peer at 1 or 2 is offered only batches that follow its version.
    public static let protocolVersions: ClosedRange<UInt8> = 1...3
    /// The first wire version whose receivers take a batch that follows an earlier version.
    public static let continuingWire: UInt8 = 3
    /// Most batches, buckets, digest entries or strings in one message.
    public static let countMax = 1 << 16

    public func encoded(protocolVersion: UInt8 = ReplicationMessage.protocolVersions.upperBound) -> [UInt8] {
        switch self {
        case .digest(let digest):
            var strings = StringTable()
            var body = ByteWriter()
            body.writeUInt8(digest.reply ? 1 : 0)
            body.writeVarint(digest.entries.count)
            for entry in digest.entries {
                body.writeUInt64LE(entry.origin.rawValue)
                body.writeVarint(entry.version)
                body.writeZigZag(entry.currentAsOf.millisecondsSinceEpoch)
            }
            body.writeVarint(digest.transfers.count)
            for transfer in digest.transfers {
                body.writeUInt64LE(transfer.origin.rawValue)
                body.writeVarint(transfer.asOf)
                Self.write(transfer.cursor, to: &body, strings: &strings, wire: protocolVersion)
            }
            return Self.frame(kind: 0, protocolVersion: protocolVersion, strings: strings, body: body)
        case .deltas(let batches):
            return Self.deltas(batches.map { $0.encoded(wireVersion: protocolVersion) }, protocolVersion: protocolVersion)
        case .stateChunk(let chunk):
            var strings = StringTable()
            var body = ByteWriter()
            body.writeUInt64LE(chunk.origin.rawValue)
            body.writeVarint(chunk.asOf)
            body.writeZigZag(chunk.asOfTime.millisecondsSinceEpoch)
            for key in [chunk.from, chunk.next] {
                if let key {
                    body.writeUInt8(1)
                    Self.write(key, to: &body, strings: &strings, wire: protocolVersion)
                } else {
                    body.writeUInt8(0)
                }
            }
            Self.write(chunk.buckets, to: &body, strings: &strings, wire: protocolVersion)
            return Self.frame(kind: 2, protocolVersion: protocolVersion, strings: strings, body: body)
        }
    }

    /// A deltas message from batches already encoded at `protocolVersion`
    /// (`DeltaBatch.encoded(wireVersion:)`): relays copy bytes.
    public static func deltas(_ batches: [[UInt8]],
                              protocolVersion: UInt8 = ReplicationMessage.protocolVersions.upperBound) -> [UInt8]
    {
        var writer = ByteWriter(capacity: batches.reduce(16) { $0 + $1.count + 4 })
        writer.writeUInt8(Self.encodingTag)
        writer.writeUInt8(protocolVersion)
        writer.writeUInt8(1)
        writer.writeVarint(batches.count)
        for batch in batches {
            writer.writeVarint(batch.count)
            writer.writeBytes(batch)
        }
        return writer.bytes
    }

    private static func frame(kind: UInt8, protocolVersion: UInt8, strings: StringTable, body: ByteWriter) -> [UInt8] {
        var writer = ByteWriter(capacity: body.bytes.count + 64)
        writer.writeUInt8(Self.encodingTag)
        writer.writeUInt8(protocolVersion)
        writer.writeUInt8(kind)
        strings.write(to: &writer)
        writer.writeBytes(body.bytes)
        return writer.bytes
    }

    var kind: UInt8 {
        switch self {
        case .digest: return 0
        case .deltas: return 1
        case .stateChunk: return 2
        }
    }

    /// Decodes a message in any of `versions` (the reader's build: default, this one's).
    public init(encoded bytes: [UInt8], limits: DecodeLimits = .default,
                versions: ClosedRange<UInt8> = ReplicationMessage.protocolVersions) throws(DecodeError)
    {
        var reader = ByteReader(bytes, limits: limits)
        let (wire, kind) = try Self.readFrameHeader(&reader, versions: versions)
        switch kind {
        case 0:
            let strings = try Self.readStrings(from: &reader)
            let reply: Bool
            switch try reader.readUInt8("Digest reply") {
            case 0: reply = false
            case 1: reply = true
            case let flag: throw .invalidValue(field: "Digest reply", value: "\(flag)")
            }
            var entries: [Digest.Entry] = []
            for _ in 0..<(try reader.readCount("Digest entry count", max: reader.limits.originsMax)) {
                let origin = ReplicaID(try reader.readUInt64LE("Digest origin"))
                if let last = entries.last, last.origin >= origin { throw .nonCanonical(field: "Digest origins order") }
                entries.append(Digest.Entry(
                    origin: origin, version: try reader.readVarint("Digest version"),
                    currentAsOf: try reader.readTimestamp("Digest currentAsOf")))
            }
            var transfers: [Digest.Transfer] = []
            for _ in 0..<(try reader.readCount("Digest transfer count", max: reader.limits.originsMax)) {
                let origin = ReplicaID(try reader.readUInt64LE("Digest transfer origin"))
                if let last = transfers.last, last.origin >= origin {
                    throw .nonCanonical(field: "Digest transfer origins order")
                }
                transfers.append(Digest.Transfer(
                    origin: origin, asOf: try reader.readVarint("Digest transfer asOf"),
                    cursor: try Self.readKey(from: &reader, strings: strings, wire: wire)))
            }
            self = .digest(Digest(entries: entries, transfers: transfers, reply: reply))
        case 1:
            var batches: [DeltaBatch] = []
            for bytes in try Self.readBatchFrames(from: &reader) {
                batches.append(try DeltaBatch(encoded: bytes, wireVersion: wire, limits: limits))
            }
            self = .deltas(batches)
        case 2:
            let strings = try Self.readStrings(from: &reader)
            let origin = ReplicaID(try reader.readUInt64LE("StateChunk origin"))
            let asOf = try reader.readVarint("StateChunk asOf")
            let asOfTime = try reader.readTimestamp("StateChunk asOfTime")
            var keys: [BucketKey?] = []
            for field in ["StateChunk from", "StateChunk next"] {
                switch try reader.readUInt8(field) {
                case 0: keys.append(nil)
                case 1: keys.append(try Self.readKey(from: &reader, strings: strings, wire: wire))
                case let flag: throw .invalidValue(field: field, value: "\(flag)")
                }
            }
            self = .stateChunk(StateChunk(
                origin: origin, asOf: asOf, asOfTime: asOfTime, from: keys[0], next: keys[1],
                buckets: try Self.readBuckets(from: &reader, strings: strings, wire: wire)))
        default:
            throw .invalidValue(field: "ReplicationMessage kind", value: "\(kind)")
        }
        try reader.expectEnd()
    }

    // MARK: - Parts

    /// Reads the tag and wire version (one of `versions`); returns the version and the kind.
    static func readFrameHeader(_ reader: inout ByteReader, versions: ClosedRange<UInt8>) throws(DecodeError)
        -> (wire: UInt8, kind: UInt8)
    {
        let wire = try reader.readHeader(tag: Self.encodingTag, type: "ReplicationMessage", versions: versions)
        return (wire, try reader.readUInt8("ReplicationMessage kind"))
    }

    /// The encoded batches of a deltas message body.
    static func readBatchFrames(from reader: inout ByteReader) throws(DecodeError) -> [ArraySlice<UInt8>] {
        var frames: [ArraySlice<UInt8>] = []
        for _ in 0..<(try reader.readCount("Deltas batch count", max: Self.countMax)) {
            let length = try reader.readCount("DeltaBatch length", max: reader.remaining)
            frames.append(try reader.readBytes("DeltaBatch", count: length))
        }
        return frames
    }

    static func readStrings(from reader: inout ByteReader) throws(DecodeError) -> [String] {
        let count = try reader.readCount("string count", max: Self.countMax)
        var strings: [String] = []
        strings.reserveCapacity(min(count, reader.remaining))
        for _ in 0..<count { strings.append(try reader.readString("string")) }
        return strings
    }

    struct StringTable {
        var strings: [String] = []
        var index: [String: Int] = [:]

        mutating func reference(_ string: String) -> Int {
            if let position = self.index[string] { return position }
            self.index[string] = self.strings.count
            self.strings.append(string)
            return self.strings.count - 1
        }

        func write(to writer: inout ByteWriter) {
            writer.writeVarint(self.strings.count)
            for string in self.strings { writer.writeString(string) }
        }
    }

    /// A bucket key at wire version `wire` (a bucket start is always a multiple of its width).
    static func write(_ key: BucketKey, to writer: inout ByteWriter, strings: inout StringTable, wire: UInt8) {
        writer.writeVarint(strings.reference(key.series.service))
        writer.writeVarint(strings.reference(key.series.operation))
        writer.writeUInt8(key.series.statusClass.rawValue)
        writer.writeUInt8(UInt8(key.resolution.rawValue))
        let start = key.start.millisecondsSinceEpoch
        writer.writeZigZag(wire >= 2 ? start / key.resolution.width.milliseconds : start)
    }

    static func write(_ buckets: [ReplicatedBucket], to writer: inout ByteWriter, strings: inout StringTable,
                      wire: UInt8)
    {
        writer.writeVarint(buckets.count)
        for bucket in buckets {
            Self.write(bucket.key, to: &writer, strings: &strings, wire: wire)
            bucket.aggregate.encode(to: &writer)
        }
    }

    private static func readKey(from reader: inout ByteReader, strings: [String], wire: UInt8) throws(DecodeError)
        -> BucketKey
    {
        func string(_ field: String) throws(DecodeError) -> String {
            let index = try reader.readCount(field, max: Swift.max(strings.count - 1, 0))
            guard index < strings.count else { throw .invalidValue(field: field, value: "\(index)") }
            return strings[index]
        }
        let service = try string("BucketKey service")
        let operation = try string("BucketKey operation")
        let rawClass = try reader.readUInt8("BucketKey status class")
        guard let statusClass = StatusClass(rawValue: rawClass) else {
            throw .invalidValue(field: "BucketKey status class", value: "\(rawClass)")
        }
        let rawResolution = try reader.readUInt8("BucketKey resolution")
        guard let resolution = Resolution(rawValue: Int(rawResolution)) else {
            throw .invalidValue(field: "BucketKey resolution", value: "\(rawResolution)")
        }
        let width = resolution.width.milliseconds
        let start: Timestamp
        if wire >= 2 {
            // A bucket number: its start must be a valid timestamp, and the product must not trap.
            let number = try reader.readZigZag("BucketKey start")
            let (millis, overflow) = number.multipliedReportingOverflow(by: width)
            guard !overflow, Timestamp.validMillis.contains(millis) else {
                throw .invalidValue(field: "BucketKey start",
                                    value: "bucket \(number) of \(resolution) is outside ±10^15 ms of 1970")
            }
            start = Timestamp(millisecondsSinceEpoch: millis)
        } else {
            start = try reader.readTimestamp("BucketKey start")
        }
        // A bucket starts on a multiple of its width; any other start is no bucket this build made.
        guard start.millisecondsSinceEpoch % width == 0 else {
            throw .invalidValue(field: "BucketKey start",
                                value: "\(start.millisecondsSinceEpoch) ms is not a multiple of \(resolution)")
        }
        return BucketKey(series: SeriesKey(service: service, operation: operation, statusClass: statusClass),
                         resolution: resolution, start: start)
    }

    static func readBuckets(from reader: inout ByteReader, strings: [String], wire: UInt8) throws(DecodeError)
        -> [ReplicatedBucket]
    {
        var buckets: [ReplicatedBucket] = []
        for _ in 0..<(try reader.readCount("bucket count", max: Self.countMax)) {
            let key = try Self.readKey(from: &reader, strings: strings, wire: wire)
            buckets.append(ReplicatedBucket(key: key, aggregate: try BucketAggregate(from: &reader)))
        }
        return buckets
    }
}

extension DeltaBatch {
    /// The batch's self-contained encoding at wire version `wireVersion` (see `ReplicationMessage`).
    public func encoded(wireVersion: UInt8 = ReplicationMessage.protocolVersions.upperBound) -> [UInt8] {
        var strings = ReplicationMessage.StringTable()
        var body = ByteWriter()
        ReplicationMessage.write(self.buckets, to: &body, strings: &strings, wire: wireVersion)
        var writer = ByteWriter(capacity: body.bytes.count + 64)
        writer.writeUInt64LE(self.origin.rawValue)
        writer.writeVarint(self.version)
        writer.writeVarint(self.previous)
        writer.writeZigZag(self.sealedAt.millisecondsSinceEpoch)
        strings.write(to: &writer)
        writer.writeBytes(body.bytes)
        return writer.bytes
    }

    /// What a receiver needs to decide whether to decode the rest.
    struct Header {
        var origin: ReplicaID
        var version: UInt64
        var previous: UInt64
    }

    static func header(_ reader: inout ByteReader) throws(DecodeError) -> Header {
        let origin = ReplicaID(try reader.readUInt64LE("DeltaBatch origin"))
        let version = try reader.readVarint("DeltaBatch version")
        let previous = try reader.readVarint("DeltaBatch previous")
        guard previous < version else {
            throw .invalidValue(field: "DeltaBatch previous", value: "\(previous) not below version \(version)")
        }
        return Header(origin: origin, version: version, previous: previous)
    }

    /// Decodes a batch encoded at `wireVersion` (the version of the message that carried it).
    public init(encoded bytes: ArraySlice<UInt8>, wireVersion: UInt8 = ReplicationMessage.protocolVersions.upperBound,
                limits: DecodeLimits = .default) throws(DecodeError)
    {
        var reader = ByteReader(Array(bytes), limits: limits)
        let header = try Self.header(&reader)
        let sealedAt = try reader.readTimestamp("DeltaBatch sealedAt")
        let strings = try ReplicationMessage.readStrings(from: &reader)
        self.init(origin: header.origin, version: header.version, previous: header.previous, sealedAt: sealedAt,
                  buckets: try ReplicationMessage.readBuckets(from: &reader, strings: strings, wire: wireVersion))
        try reader.expectEnd()
    }
}
