import TallyAggregates

/// What a replica knows of one origin: the head of its chain, the batches it can relay, the
/// origin time it is current as of, and a state transfer it is receiving.
struct OriginState: Sendable {
    /// The last batch integrated (0: none).
    var version: UInt64 = 0
    /// The origin time as of which `version` is known to be the origin's latest.
    var currentAsOf = Timestamp(millisecondsSinceEpoch: Timestamp.validMillis.lowerBound)
    /// Recent batches in chain order, ending at `version`, for peers that are behind: as encoded
    /// by their origin, relayed as they are.
    var buffer: ArraySlice<StoredBatch> { self.storage[self.head...] }
    private(set) var bufferBytes = 0
    /// The buffer's storage: batches before `head` were dropped (their bytes released). A full
    /// buffer drops one batch per batch it takes; shifting the array each time cost O(buffer).
    private var storage: [StoredBatch] = []
    private var head = 0
    /// A state transfer being received: complete through `next` (exclusive), as of `asOf`.
    var transfer: (asOf: UInt64, asOfTime: Timestamp, next: BucketKey)?

    /// The buffered batches after `version` in chain order, or nil when the buffer does not reach
    /// back to it (the peer needs a state transfer). `strictly`: for a peer of a release that takes
    /// only a batch that follows its version exactly (wire version below 3).
    func chain(after version: UInt64, strictly: Bool = false) -> ArraySlice<StoredBatch>? {
        let buffer = self.buffer
        if version == self.version { return buffer[buffer.endIndex...] }
        // A chain's versions increase (a restart's epoch is in the high bits): bisect for the
        // first batch above `version`. A peer can take it when it follows `version` or anything
        // before it (`StoredBatch.continues`).
        let low = buffer.firstIndex(above: version)
        guard low < buffer.endIndex,
            strictly ? buffer[low].previous == version : buffer[low].continues(from: version)
        else { return nil }
        return buffer[low...]
    }

    /// A batch of the origin, sealed at `sealedAt`, was integrated. It continued the chain, so a
    /// state transfer under way is no longer needed: what its chunks brought is the origin's own
    /// state (a join never takes it back), and the chain now goes on by batches.
    mutating func integrated(_ batch: StoredBatch, sealedAt: Timestamp, limit: Int) {
        self.currentAsOf = max(self.currentAsOf, sealedAt)
        self.transfer = nil
        self.append(batch, limit: limit)
    }

    /// Appends the batch that is the new head, dropping the oldest while over `limit` bytes (the
    /// newest always stays).
    mutating func append(_ batch: StoredBatch, limit: Int) {
        self.storage.append(batch)
        self.bufferBytes += batch.bytes.count
        while self.bufferBytes > limit && self.head < self.storage.count - 1 {
            self.bufferBytes -= self.storage[self.head].bytes.count
            self.storage[self.head].bytes = []
            self.head += 1
        }
        if self.head >= 64 && self.head * 2 >= self.storage.count {
            self.storage.removeFirst(self.head)
            self.head = 0
        }
        self.version = batch.version
    }

    /// A state transfer completed: the buffer no longer chains to the new head.
    mutating func dropBuffer() {
        self.storage = []
        self.head = 0
        self.bufferBytes = 0
    }
}

/// An encoded batch of an origin's chain: its place in the chain and its bytes, at wire version
/// `wire`. A replica's buffers hold them to relay to peers that are behind; a checkpoint keeps its
/// own (`OwnChain`).
public struct StoredBatch: Sendable, Equatable {
    public var version: UInt64
    public var previous: UInt64
    /// The replication wire version `bytes` are encoded at.
    public var wire: UInt8
    public var bytes: [UInt8]

    public init(version: UInt64, previous: UInt64, wire: UInt8, bytes: [UInt8]) {
        self.version = version
        self.previous = previous
        self.wire = wire
        self.bytes = bytes
    }

    /// True when a replica holding the origin's `version` can integrate the batch: it follows
    /// that version or one before it. A batch holds the absolute values of every part its origin
    /// changed since `previous`, and each version after `previous` is the state of fewer events
    /// than the batch's (the origin published them only once durable, so it still counted them
    /// when it sealed the batch): joining the batch gives the batch's state either way. Within
    /// one run of an origin no version lies between a batch and its previous; one does after a
    /// restart, which continues from the last version its checkpoint sealed while its peers may
    /// hold versions published after that checkpoint (decision 30).
    static func continues(previous: UInt64, version: UInt64, from held: UInt64) -> Bool {
        previous <= held && held < version
    }

    func continues(from held: UInt64) -> Bool {
        Self.continues(previous: self.previous, version: self.version, from: held)
    }

    /// The batch's bytes at wire version `wire`: its own when they are at it, else decoded and
    /// encoded again (a peer on another version, during a rolling upgrade); nil if they do not
    /// decode, which bytes this replica accepted always do.
    func bytes(at wire: UInt8) -> [UInt8]? {
        if wire == self.wire { return self.bytes }
        return (try? DeltaBatch(encoded: self.bytes[...], wireVersion: self.wire))?.encoded(wireVersion: wire)
    }
}

/// The replica's gossip state. Origins are kept in a dictionary but every output iterates them
/// sorted by id, so no hash order reaches a message.
struct ReplicationState: Sendable {
    var origins: [ReplicaID: OriginState] = [:]
    /// Series with own changes since the last seal, each once.
    var unsealedSeries: [SeriesID] = []
    /// The last own version sealed (published or not): the next batch follows it.
    var sealedVersion: UInt64
    /// This process's version epoch in the high 32 bits: its batches are numbered above it, so
    /// a restart never reuses a version published before with other content.
    let epochBase: UInt64
    /// The last own version the checkpoints hold (`OwnChain`).
    var checkpointedSealed: UInt64 = 0
    /// Per configured peer and origin, the last batch sent to it and when: a digest the peer
    /// sent before that batch arrived (a pause delivers a stack of them at once, and push-pull
    /// has both ends answer each other) is answered from there, not with the same batches again.
    var sentRecently: [String: [ReplicaID: (version: UInt64, at: Timestamp)]] = [:]
    /// Sealed own batches waiting for the log sequence they cover to be durable.
    var unpublished: [(batch: DeltaBatch, through: UInt64)] = []
    /// The highest log sequence the shell reported durable.
    var durableThrough: UInt64 = 0
    var random: SeededRandom
    var lastGossip: Timestamp?
    /// Messages received that did not decode or did not follow the protocol, for `/metrics`.
    var refused: UInt64 = 0
    /// Bytes of own batches published: what the origin's updates cost encoded, once.
    var publishedBytes: UInt64 = 0
    /// The wire version each peer is sent, from the protocol its connection agreed; a peer not
    /// named here gets the highest this replica speaks.
    var peerWire: [String: UInt8] = [:]
    /// Which origin each region runs as now (`OriginDirectory`): retired ones are not behind.
    var directory = OriginDirectory()
    /// The directory changed since the last checkpoint took it.
    var directoryChanged = false

    init(_ config: ReplicaConfig) {
        self.epochBase = UInt64(config.versionEpoch) << 32
        self.sealedVersion = self.epochBase
        self.random = SeededRandom(seed: config.seed ^ config.id.rawValue)
    }
}

extension Replica {
    // MARK: - Sealing and publishing own changes

    /// Seals own changes since the last seal into batches of this origin (differences of each
    /// changed bucket's own part), to be published once the log is durable through `lastSequence`.
    mutating func seal(now: Timestamp) {
        let own = self.config.id
        var parts: [ReplicatedBucket] = []
        for id in self.replication.unsealedSeries {
            let position = Int(id.rawValue)
            let key = self.series[position].key
            for change in self.series[position].takeUnsealed() {
                var part = change.unsealed.base.map { change.current.difference(from: $0, origin: own) }
                    ?? change.current.projection(of: own)
                // The users own events added since the seal: their registers, at most as high as the
                // bucket's own (which may hold more, from other origins' merges).
                var users = HyperLogLog(precision: change.current.users.precision)
                for hash in change.unsealed.userHashes { users.add(hash: hash) }
                part.users = users
                if !part.isEmpty {
                    parts.append(ReplicatedBucket(
                        key: BucketKey(series: key, resolution: change.resolution,
                                       start: Timestamp(millisecondsSinceEpoch: change.unsealed.start)),
                        aggregate: part))
                }
            }
        }
        self.replication.unsealedSeries.removeAll(keepingCapacity: true)
        guard !parts.isEmpty else { return }
        let size = self.config.limits.sealBucketsMax
        for chunk in stride(from: 0, to: parts.count, by: size) {
            let previous = self.replication.sealedVersion
            self.replication.sealedVersion = max(previous, self.replication.epochBase) + 1
            let batch = DeltaBatch(
                origin: own, version: self.replication.sealedVersion, previous: previous, sealedAt: now,
                buckets: Array(parts[chunk..<min(chunk + size, parts.count)]))
            self.replication.unpublished.append((batch, self.lastSequence))
        }
        self.publishDurable()
    }

    /// The shell reports that the log is durable through `sequence`: own batches covering only
    /// durable events are published (peers may now count them).
    public mutating func durable(through sequence: UInt64) {
        self.replication.durableThrough = max(self.replication.durableThrough, sequence)
        self.publishDurable()
    }

    private mutating func publishDurable() {
        while let first = self.replication.unpublished.first, first.through <= self.replication.durableThrough {
            self.replication.unpublished.removeFirst()
            let wire = self.config.wireVersions.upperBound
            let batch = StoredBatch(version: first.batch.version, previous: first.batch.previous, wire: wire,
                                    bytes: first.batch.encoded(wireVersion: wire))
            self.replication.publishedBytes += UInt64(batch.bytes.count)
            self.replication.origins[first.batch.origin, default: OriginState()].append(
                batch, limit: self.config.limits.replicationBufferBytesMax)
        }
    }

    // MARK: - Peers

    /// Replaces the peers gossiped with (a config reload), kept sorted so the choice of peer
    /// depends on the seed only. Knowledge of every origin stays: a removed region's batches are
    /// still relayed to those behind on it. A replica started without peers keeps no replication
    /// state, so it cannot gain any, and one with peers cannot drop to none (its own changes would
    /// stop being sealed): both return false and change nothing.
    public mutating func setPeers(_ peers: [String]) -> Bool {
        guard !self.config.peers.isEmpty, !peers.isEmpty else { return false }
        self.config.peers = Array(Set(peers)).sorted()
        return true
    }

    /// Messages to `peer` go at wire version `version` from now on (the shell's connection to it
    /// agreed a protocol; `NodeCore` maps one to the other). A version this build does not speak
    /// is clamped into its range.
    public mutating func setWireVersion(_ version: UInt8, for peer: String) {
        let range = self.config.wireVersions
        self.replication.peerWire[peer] = min(max(version, range.lowerBound), range.upperBound)
    }

    /// The wire version messages to `peer` are encoded at.
    public func wireVersion(for peer: String) -> UInt8 {
        self.replication.peerWire[peer] ?? self.config.wireVersions.upperBound
    }

    // MARK: - Gossip rounds

    /// A gossip round: seal own changes, and send this replica's digest to one peer chosen at random.
    mutating func gossip(now: Timestamp) -> [Action] {
        guard !self.config.peers.isEmpty else { return [] }
        self.replication.lastGossip = now
        self.seal(now: now)
        let peer = self.config.peers[Int(self.replication.random.next() % UInt64(self.config.peers.count))]
        let message = ReplicationMessage.digest(self.digest(now: now, reply: true))
        return [.send(message.encoded(protocolVersion: self.wireVersion(for: peer)), to: peer)]
    }

    /// Per origin (sorted), the version held and the origin time it is current as of; the own
    /// origin is current as of now.
    func digest(now: Timestamp, reply: Bool) -> Digest {
        var entries = self.chainHeads
        for position in entries.indices where entries[position].origin == self.config.id {
            entries[position].currentAsOf = now
        }
        let transfers = self.replication.origins.keys.sorted().compactMap { origin -> Digest.Transfer? in
            self.replication.origins[origin]!.transfer.map {  // key from the same dictionary
                Digest.Transfer(origin: origin, asOf: $0.asOf, cursor: $0.next)
            }
        }
        return Digest(entries: entries, transfers: transfers, reply: reply)
    }

    /// Per origin (sorted), the last version integrated and the origin time it is current as of:
    /// what digests advertise and checkpoints store.
    var chainHeads: [OriginVersion] {
        self.replication.origins.keys.sorted().map { origin in
            let state = self.replication.origins[origin]!  // key from the same dictionary
            return OriginVersion(origin: origin, version: state.version, currentAsOf: state.currentAsOf)
        }
    }

    // MARK: - Receiving

    /// A message arrived from `peer`, as bytes off the wire. Messages are idempotent: a duplicate
    /// or a stale one changes nothing, and one out of order is ignored (its content comes again).
    /// Bytes that do not decode are counted and dropped (`refusedMessages`): a peer's bytes are
    /// untrusted input, and nothing already accepted depends on them.
    public mutating func receive(_ bytes: [UInt8], from peer: String, now: Timestamp) -> [Action] {
        do {
            var reader = ByteReader(bytes)
            let (wire, kind) = try ReplicationMessage.readFrameHeader(&reader, versions: self.config.wireVersions)
            if kind == 1 {
                // Deltas: read each batch's header, decode only those that continue a chain.
                for frame in try ReplicationMessage.readBatchFrames(from: &reader) {
                    var header = ByteReader(Array(frame.prefix(32)))
                    let head = try DeltaBatch.header(&header)
                    guard self.follows(head) else { continue }
                    self.integrate(try DeltaBatch(encoded: frame, wireVersion: wire), bytes: Array(frame), wire: wire,
                                   now: now)
                }
                try reader.expectEnd()
                return []
            }
            switch try ReplicationMessage(encoded: bytes, versions: self.config.wireVersions) {
            case .digest(let digest):
                return self.answer(digest, from: peer, now: now)
            case .stateChunk(let chunk):
                self.integrate(chunk, now: now)
                return []
            case .deltas:
                return []  // read above
            }
        } catch {
            self.replication.refused += 1
            return []
        }
    }

    /// Messages from peers that did not decode.
    public var refusedMessages: UInt64 { self.replication.refused }

    /// `origin` is what `region` runs as from now on: a peer's hello said so, or this node is
    /// starting as it. The origin `region` ran as before is retired (`OriginDirectory`).
    public mutating func announce(_ origin: ReplicaID, region: String) {
        if self.replication.directory.announce(origin, region: region) { self.replication.directoryChanged = true }
    }

    /// Which origin each region runs as, as far as this replica has heard.
    public var originDirectory: OriginDirectory { self.replication.directory }

    /// True when a batch with this header continues its origin's chain here, a state transfer
    /// under way or not: a peer whose buffer reaches back to this replica's version sends batches,
    /// and refusing them while waiting for a transfer's next chunk (from another peer, which may
    /// have restarted and chain too by now) left a replica waiting for good.
    func follows(_ header: DeltaBatch.Header) -> Bool {
        guard header.origin != self.config.id else { return false }
        if self.config.wireVersions.upperBound < ReplicationMessage.continuingWire {
            // As a release before wire version 3 decides (the simulator's older releases).
            return header.previous == (self.replication.origins[header.origin]?.version ?? 0)
        }
        return StoredBatch.continues(previous: header.previous, version: header.version,
                                       from: self.replication.origins[header.origin]?.version ?? 0)
    }

    /// Answers a digest with what the peer lacks (within the byte budget) and, when the peer has
    /// what this replica lacks and asked for it, this replica's digest.
    mutating func answer(_ digest: Digest, from peer: String, now: Timestamp) -> [Action] {
        var theirs: [ReplicaID: Digest.Entry] = [:]
        for entry in digest.entries { theirs[entry.origin] = entry }
        var transfers: [ReplicaID: Digest.Transfer] = [:]
        for transfer in digest.transfers { transfers[transfer.origin] = transfer }
        var lacking = false
        // What the peer knows tells this replica how current it is.
        for entry in digest.entries where entry.origin != self.config.id {
            let mine = self.replication.origins[entry.origin]?.version ?? 0
            if entry.version > mine {
                lacking = true
            } else if entry.version == mine, let current = self.replication.origins[entry.origin]?.currentAsOf {
                self.replication.origins[entry.origin]?.currentAsOf = max(current, entry.currentAsOf)
            }
        }
        var budget = self.config.limits.gossipBytesMax
        let wire = self.wireVersion(for: peer)
        var batches: [[UInt8]] = []
        var actions: [Action] = []
        // Batches sent to this peer within half a gossip interval are taken as arriving: a lost
        // one is sent again when a digest comes after that.
        let tracked = self.config.peers.contains(peer)
        var sent = tracked ? self.replication.sentRecently[peer, default: [:]] : [:]
        let inFlight = self.config.gossipInterval / 2
        let strictly = wire < ReplicationMessage.continuingWire
        for origin in self.replication.origins.keys.sorted() where budget > 0 {
            let state = self.replication.origins[origin]!  // key from the same dictionary
            var known = theirs[origin]?.version ?? 0
            if let recent = sent[origin], now - recent.at < inFlight, recent.version > known,
                recent.version <= state.version, state.chain(after: recent.version, strictly: strictly) != nil
            {
                known = recent.version
            }
            guard state.version > known else { continue }
            if let chain = state.chain(after: known, strictly: strictly) {
                for batch in chain {
                    guard let bytes = batch.bytes(at: wire) else { break }
                    // The first batch goes even over budget, or a large one would never pass.
                    if bytes.count > budget && !batches.isEmpty { break }
                    batches.append(bytes)
                    budget -= bytes.count
                    sent[origin] = (batch.version, now)
                }
            } else {
                let resume = transfers[origin].flatMap { $0.asOf <= state.version ? $0.cursor : nil }
                let chunk = self.stateChunk(of: origin, from: resume, budget: budget, now: now)
                budget -= chunk.bytes
                actions.append(.send(ReplicationMessage.stateChunk(chunk.chunk).encoded(protocolVersion: wire), to: peer))
            }
        }
        if !batches.isEmpty {
            actions.insert(.send(ReplicationMessage.deltas(batches, protocolVersion: wire), to: peer), at: 0)
            if tracked { self.replication.sentRecently[peer] = sent }
        }
        if digest.reply && lacking {
            let message = ReplicationMessage.digest(self.digest(now: now, reply: false))
            actions.append(.send(message.encoded(protocolVersion: wire), to: peer))
        }
        return actions
    }

    /// Every bucket part of `origin` in key order from `from`, until the budget is spent.
    func stateChunk(of origin: ReplicaID, from: BucketKey?, budget: Int, now: Timestamp)
        -> (chunk: StateChunk, bytes: Int)
    {
        let state = self.replication.origins[origin] ?? OriginState()
        var buckets: [ReplicatedBucket] = []
        var bytes = 0
        var next: BucketKey?
        let ordered = self.series.indices.sorted { self.series[$0].key < self.series[$1].key }
        search: for position in ordered {
            let series = self.series[position]
            if let from, series.key < from.series { continue }
            for resolution in Resolution.allCases {
                for (start, aggregate) in series.buckets[resolution.rawValue].all {
                    let key = BucketKey(series: series.key, resolution: resolution,
                                        start: Timestamp(millisecondsSinceEpoch: start))
                    if let from, key < from { continue }
                    guard aggregate.hasPart(of: origin) else { continue }
                    if bytes >= budget && !buckets.isEmpty {
                        next = key
                        break search
                    }
                    let part = aggregate.projection(of: origin)
                    bytes += part.encoded().count + 32
                    buckets.append(ReplicatedBucket(key: key, aggregate: part))
                }
            }
        }
        let chunk = StateChunk(origin: origin, asOf: state.version,
                               asOfTime: origin == self.config.id ? now : state.currentAsOf,
                               from: from, next: next, buckets: buckets)
        return (chunk, bytes)
    }

    /// Integrates a batch that follows the last one of its origin (`follows`), keeping its bytes
    /// (at wire version `wire`) to relay.
    mutating func integrate(_ batch: DeltaBatch, bytes: [UInt8], wire: UInt8, now: Timestamp) {
        for bucket in batch.buckets { self.merge(bucket, now: now) }
        // In place: a copy of the state taken out of the dictionary would share the buffer, and
        // the append would then copy all of it (8 MB at the limit) for every batch.
        self.replication.origins[batch.origin, default: OriginState()].integrated(
            StoredBatch(version: batch.version, previous: batch.previous, wire: wire, bytes: bytes),
            sealedAt: batch.sealedAt,
            limit: self.config.limits.replicationBufferBytesMax)
    }

    /// Integrates a state chunk that starts or continues a transfer; ignores any other.
    mutating func integrate(_ chunk: StateChunk, now: Timestamp) {
        guard chunk.origin != self.config.id else { return }
        var state = self.replication.origins[chunk.origin] ?? OriginState()
        guard chunk.asOf > state.version else { return }
        var asOf = chunk.asOf
        var asOfTime = chunk.asOfTime
        if let transfer = state.transfer {
            // Continues the transfer from where it stands, with a state at least as new.
            guard chunk.from == transfer.next, chunk.asOf >= transfer.asOf else { return }
            asOf = transfer.asOf
            asOfTime = transfer.asOfTime
        } else {
            guard chunk.from == nil else { return }
        }
        for bucket in chunk.buckets { self.merge(bucket, now: now) }
        if let next = chunk.next {
            state.transfer = (asOf, asOfTime, next)
        } else {
            // Complete: everything of the origin up to `asOf` is here. The buffer no longer chains
            // to the new head, so it is dropped.
            state.transfer = nil
            state.version = asOf
            state.currentAsOf = max(state.currentAsOf, asOfTime)
            state.dropBuffer()
        }
        self.replication.origins[chunk.origin] = state
    }

    /// Joins a replicated bucket part into this replica's state: the series is created if new (a
    /// remote series is not subject to the local cardinality limit, which its origin enforced:
    /// refusing it would make regions diverge), and a bucket retention no longer keeps is dropped.
    mutating func merge(_ bucket: ReplicatedBucket, now: Timestamp) {
        let resolution = bucket.key.resolution.rawValue
        guard self.plan.keeps(resolution, bucketStart: bucket.key.start.millisecondsSinceEpoch, now: now) else {
            return
        }
        self.expiry.noteChange(now: now)
        let id = self.seriesIndex[bucket.key.series] ?? self.addSeries(bucket.key.series)
        var part = bucket.aggregate
        if self.config.brokenMergeForTesting, let current = self.series[Int(id.rawValue)].bucket(
            bucket.key.resolution, startingAt: bucket.key.start)
        {
            // Deliberately wrong, for the test that shows the simulator's checkers catch it: counters
            // add what arrives to what is there (a sum, not a join), so a redelivery counts twice.
            part.requests = GCounter.sumForTesting(current.requests, bucket.aggregate.requests)
            part.errors = GCounter.sumForTesting(current.errors, bucket.aggregate.errors)
        }
        if self.series[Int(id.rawValue)].merge(
            part, resolution: bucket.key.resolution, start: bucket.key.start.millisecondsSinceEpoch)
        {
            self.dirtySeries.append(id)
        }
        self.stateVersion += 1
    }

    // MARK: - Observing

    /// Per other origin (sorted): how far behind it this replica is, as of `now`. Includes clock
    /// skew between the regions; nil for an origin this replica holds nothing of yet. Origins
    /// their region has replaced (`OriginDirectory`) are left out: they never publish again.
    public func staleness(now: Timestamp) -> [(origin: ReplicaID, behind: Duration?)] {
        self.replication.origins.keys.sorted().filter {
            $0 != self.config.id && !self.replication.directory.isRetired($0)
        }.map { origin in
            let state = self.replication.origins[origin]!  // key from the same dictionary
            return (origin, state.version == 0 ? nil : now - state.currentAsOf)
        }
    }

    /// The request count over every bucket of one resolution: for checks that reads never go back.
    public func totalRequests(at resolution: Resolution, excluding services: Set<String> = []) -> UInt64 {
        var total: UInt64 = 0
        for series in self.series where services.isEmpty || !services.contains(series.key.service) {
            for aggregate in series.buckets[resolution.rawValue].aggregates { total &+= aggregate.requests.value }
        }
        return total
    }

    /// Bytes of sealed batches buffered for peers, for the largest origin, and own batches sealed
    /// but not yet published: both bounded (`Limits`), and checked by the simulator.
    public var replicationBuffers: (largestOriginBytes: Int, unpublished: Int) {
        (self.replication.origins.values.map(\.bufferBytes).max() ?? 0, self.replication.unpublished.count)
    }

    /// Bytes of own batches this process published (encoded once, before any copy to a peer):
    /// the yardstick for the bytes replication spends per update.
    public var publishedBatchBytes: UInt64 { self.replication.publishedBytes }

    /// Per origin (sorted), the last version integrated: equal digests mean converged.
    public var versions: [(origin: ReplicaID, version: UInt64)] {
        self.replication.origins.keys.sorted().map { ($0, self.replication.origins[$0]!.version) }
    }
}

extension ArraySlice<StoredBatch> {
    /// The index of the first batch whose version is above `version` (`endIndex` if none): a
    /// chain's versions increase (a restart's epoch is in the high bits), so this bisects.
    func firstIndex(above version: UInt64) -> Index {
        var low = self.startIndex
        var high = self.endIndex
        while low < high {
            let middle = (low + high) / 2
            if self[middle].version <= version { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
