import Testing
import TallyAggregates
@testable import TallyReplica

/// Replicas gossiping through a lossy, duplicating, reordering network that can partition, with
/// every message through the wire encoding: after the network heals they converge to the same
/// bytes, and every accepted event is counted exactly once everywhere.
@Suite struct ReplicationTests {
    static let start = Timestamp(millisecondsSinceEpoch: 1_795_946_400_000)

    struct Network {
        var inFlight: [(to: Int, from: Int, bytes: [UInt8])] = []
        var bytesSent = 0
        /// Messages sent, by wire version.
        var byWire: [UInt8: Int] = [:]
    }

    struct Cluster {
        var replicas: [Replica]
        var network = Network()
        var accepted: [String: UInt64] = [:]
        /// Each replica's log entries, as its shell made them durable.
        var logs: [[LogEntry]]
        /// State chunks sent, by the origin they transfer.
        var chunksSent: [ReplicaID: Int] = [:]
        var now = ReplicationTests.start
        var random: SeededRandom
        let names: [String]

        /// `releases`: the wire versions each replica's release speaks (default: this build's, for
        /// all); each link then carries the highest both ends speak, as the handshake agrees.
        init(size: Int, seed: UInt64, limits: Limits = Limits(), releases: [ClosedRange<UInt8>]? = nil) {
            self.random = SeededRandom(seed: seed)
            let names = (0..<size).map { "region-\($0)" }
            self.names = names
            self.logs = Array(repeating: [], count: size)
            self.replicas = names.enumerated().map { position, name in
                var config = ReplicaConfig(
                    id: ReplicaID(region: name, node: "n1", incarnation: 1), limits: limits,
                    peers: names.filter { $0 != name }, seed: seed &+ UInt64(position))
                if let releases { config.wireVersions = releases[position] }
                return Replica(config: config)
            }
            for a in names.indices {
                for (b, peer) in names.enumerated() where a != b {
                    let agreed = min(self.replicas[a].config.wireVersions.upperBound,
                                     self.replicas[b].config.wireVersions.upperBound)
                    self.replicas[a].setWireVersion(agreed, for: peer)
                }
            }
        }

        mutating func ingest(at replica: Int, events: Int, durable: Bool = true) {
            let items: [BatchItem] = (0..<events).map { _ in
                let service = "svc-\(self.random.next() % 3)"
                return .event(Event(
                    service: service, operation: "op-\(self.random.next() % 4)",
                    status: self.random.next() % 10 == 0 ? 503 : 200,
                    latencyMicros: Double(1 + self.random.next() % 500_000),
                    user: "user-\(self.random.next() % 300)",
                    timestamp: self.now - .seconds(Int64(self.random.next() % 7_200))))
            }
            let actions = self.replicas[replica].ingest(
                EventBatch(id: BatchID(self.random.next()), client: "c", items: items), now: self.now)
            for case .acknowledge(_, let receipt, _) in actions { _ = receipt }
            for case .persist(let entry) in actions {
                for event in entry.events { self.accepted[event.service, default: 0] += 1 }
                self.logs[replica].append(entry)
            }
            // The shell made the log durable.
            if durable { self.replicas[replica].durable(through: self.replicas[replica].lastSequence) }
        }

        /// Replica `replica` is killed and started again from `image` and its log after it, with
        /// the next version epoch, as a node restarts.
        mutating func restart(_ replica: Int, from image: ReplicaSnapshot) {
            var config = self.replicas[replica].config
            config.versionEpoch += 1
            self.replicas[replica] = Replica(config: config, restoring: image)
            // Its connections agree their versions again.
            for (other, peer) in self.names.enumerated() where other != replica {
                self.replicas[replica].setWireVersion(
                    min(config.wireVersions.upperBound, self.replicas[other].config.wireVersions.upperBound), for: peer)
            }
            for entry in self.logs[replica] where entry.sequence > image.sequence {
                self.replicas[replica].replay(entry)
            }
            self.replicas[replica].durable(through: self.replicas[replica].lastSequence)
        }

        mutating func tick(_ replica: Int) {
            self.send(self.replicas[replica].tick(now: self.now), from: replica)
        }

        mutating func send(_ actions: [Action], from replica: Int) {
            for case .send(let bytes, let peer) in actions {
                let to = self.names.firstIndex(of: peer)!
                let agreed = min(self.replicas[replica].config.wireVersions.upperBound,
                                 self.replicas[to].config.wireVersions.upperBound)
                #expect(bytes[1] == agreed, "a message to \(peer) at wire version \(bytes[1]); its link agreed \(agreed)")
                self.network.byWire[bytes[1], default: 0] += 1
                if case .stateChunk(let chunk)? = try? ReplicationMessage(encoded: bytes) {
                    self.chunksSent[chunk.origin, default: 0] += 1
                }
                self.network.bytesSent += bytes.count
                self.network.inFlight.append((to, replica, bytes))
            }
        }

        /// Delivers one message picked at random; `cut` says which links drop everything.
        mutating func deliverOne(loss: Double, duplication: Double, cut: (Int, Int) -> Bool) {
            guard !self.network.inFlight.isEmpty else { return }
            let position = Int(self.random.next() % UInt64(self.network.inFlight.count))
            let message = self.network.inFlight[position]
            if self.random.nextUnit() >= duplication { self.network.inFlight.remove(at: position) }
            if cut(message.from, message.to) || self.random.nextUnit() < loss { return }
            do {
                // At a version the receiver's release reads.
                _ = try ReplicationMessage(encoded: message.bytes, versions: self.replicas[message.to].config.wireVersions)
            } catch {
                Issue.record("a message the replica encoded does not decode at its receiver: \(error)")
                return
            }
            let actions = self.replicas[message.to].receive(message.bytes, from: self.names[message.from], now: self.now)
            self.send(actions, from: message.to)
        }

        mutating func deliverAll(loss: Double) {
            var steps = 0
            while !self.network.inFlight.isEmpty && steps < 100_000 {
                self.deliverOne(loss: loss, duplication: 0, cut: { _, _ in false })
                steps += 1
            }
        }

        /// One gossip round everywhere, then every message delivered.
        mutating func round(loss: Double) {
            self.now = self.now + .seconds(1)
            for replica in self.replicas.indices { self.tick(replica) }
            self.deliverAll(loss: loss)
        }

        /// Equal digests, then (the expensive check) equal buckets, byte for byte.
        var converged: Bool {
            let first = self.replicas[0]
            let digest = first.versions.map { "\($0.origin)=\($0.version)" }
            guard self.replicas.dropFirst().allSatisfy({ $0.versions.map { "\($0.origin)=\($0.version)" } == digest })
            else { return false }
            let bytes = first.buckets.map { $0.aggregate.encoded() }
            return self.replicas.dropFirst().allSatisfy { $0.buckets.map { $0.aggregate.encoded() } == bytes }
        }

        /// Every replica's count per service over everything it holds, by day buckets.
        func totals(_ replica: Int) -> [String: UInt64] {
            var totals: [String: UInt64] = [:]
            for (key, aggregate) in self.replicas[replica].buckets where key.resolution == .day {
                totals[key.series.service, default: 0] += aggregate.requests.value
            }
            return totals
        }
    }

    @Test(arguments: 1...12 as ClosedRange<UInt64>)
    func convergesAfterPartitionsWithEveryEventCountedOnce(seed: UInt64) {
        var cluster = Cluster(size: 3 + Int(seed % 3), seed: seed)
        Self.chaosThenHeal(&cluster, seed: seed)
    }

    /// A rolling upgrade half done: each replica on the release before wire version 2 or on this
    /// build, at random. Links between the two carry version 1 (relayed batches are re-encoded
    /// for them), links between new ones version 2; the laws are the same.
    @Test(arguments: 1...8 as ClosedRange<UInt64>)
    func mixedReleasesConvergeWithEveryEventCountedOnce(seed: UInt64) {
        var random = SeededRandom(seed: seed ^ 0xA5A5)
        let size = 3 + Int(seed % 3)
        var releases = (0..<size).map { _ -> ClosedRange<UInt8> in random.next() % 2 == 0 ? 1...1 : 1...2 }
        // Both releases always, and at least one link between two new ones.
        releases[0] = 1...1
        releases[1] = 1...2
        releases[2] = 1...2
        var cluster = Cluster(size: size, seed: seed, releases: releases)
        Self.chaosThenHeal(&cluster, seed: seed)
        for replica in cluster.replicas { #expect(replica.refusedMessages == 0, "seed \(seed)") }
        #expect(cluster.network.byWire[1, default: 0] > 0 && cluster.network.byWire[2, default: 0] > 0,
                "seed \(seed): \(cluster.network.byWire)")
    }

    /// Writes everywhere, gossip, loss, duplication, reordering and a partition, then a heal: the
    /// replicas converge within the bound, and every accepted event is counted once everywhere.
    static func chaosThenHeal(_ cluster: inout Cluster, seed: UInt64) {
        let size = cluster.replicas.count
        // Chaos: writes everywhere, gossip, loss, duplication, reordering, and a partition that
        // cuts the cluster in two for the middle third.
        let split = 1 + Int(seed % UInt64(size - 1))
        for step in 0..<600 {
            let partitioned = step >= 200 && step < 400
            switch cluster.random.next() % 10 {
            case 0, 1:
                cluster.ingest(at: Int(cluster.random.next() % UInt64(size)), events: 1 + Int(cluster.random.next() % 20))
            case 2, 3:
                cluster.now = cluster.now + .milliseconds(Int64(cluster.random.next() % 700))
                cluster.tick(Int(cluster.random.next() % UInt64(size)))
            default:
                cluster.deliverOne(loss: 0.1, duplication: 0.05) { from, to in
                    partitioned && ((from < split) != (to < split))
                }
            }
        }
        // Faults stop: every round is a full exchange with no loss.
        var rounds = 0
        while !cluster.converged && rounds < 50 {
            cluster.round(loss: 0)
            rounds += 1
        }
        #expect(cluster.converged, "seed \(seed): not converged after \(rounds) rounds")
        // ceil(log2 N) + 4: the issue's target at 0% loss.
        let bound = (Int.bitWidth - (size - 1).leadingZeroBitCount) + 4
        #expect(rounds <= bound, "seed \(seed): converged in \(rounds) rounds, bound \(bound)")
        for replica in 0..<size {
            #expect(cluster.totals(replica) == cluster.accepted, "seed \(seed): replica \(replica) totals")
        }
    }

    @Test func aRestartedOriginsOldVersionsNeedNoBuffer() {
        // A tiny buffer: a peer that falls behind it gets a state transfer in chunks.
        var cluster = Cluster(size: 3, seed: 99, limits: Limits(gossipBytesMax: 2_000, replicationBufferBytesMax: 3_000))
        for _ in 0..<40 {
            cluster.ingest(at: 0, events: 30)
            cluster.now = cluster.now + .seconds(1)
            cluster.tick(0)
            // Region 2 is cut off: only 0 and 1 talk.
            while !cluster.network.inFlight.isEmpty {
                cluster.deliverOne(loss: 0, duplication: 0) { from, to in from == 2 || to == 2 }
            }
        }
        var rounds = 0
        while !cluster.converged && rounds < 200 {
            cluster.round(loss: 0)
            rounds += 1
        }
        #expect(cluster.converged, "not converged after \(rounds) rounds")
        #expect(cluster.totals(2) == cluster.accepted)
    }

    /// A replica restarted from its checkpoint (new version epoch) keeps the chain heads it had
    /// integrated, its own included (it continues its chain), and the cluster converges again, its
    /// own new batches included.
    @Test func restartFromCheckpointKeepsChainHeadsAndConverges() {
        var cluster = Cluster(size: 3, seed: 17)
        for replica in 0..<3 { cluster.ingest(at: replica, events: 40) }
        for _ in 0..<6 { cluster.round(loss: 0) }
        #expect(cluster.converged)
        var image = ReplicaSnapshot()
        image.apply(cluster.replicas[1].checkpoint(now: cluster.now))
        let before = cluster.replicas[1].versions
        var config = cluster.replicas[1].config
        config.versionEpoch = 1
        cluster.replicas[1] = Replica(config: config, restoring: image)
        #expect(cluster.replicas[1].versions.map(\.origin) == before.map(\.origin))
        #expect(cluster.replicas[1].versions.map(\.version) == before.map(\.version))
        for replica in 0..<3 { cluster.ingest(at: replica, events: 25) }
        var rounds = 0
        while !cluster.converged && rounds < 20 {
            cluster.round(loss: 0)
            rounds += 1
        }
        #expect(cluster.converged, "not converged \(rounds) rounds after the restart")
        for replica in 0..<3 { #expect(cluster.totals(replica) == cluster.accepted) }
    }

    /// An origin killed and restarted from its checkpoint and log continues its chain: every peer,
    /// whatever version of it it holds (the checkpoint's, batches published after it, or behind
    /// batches still unpublished at the checkpoint), takes the restarted origin's batches without a
    /// state transfer, and every event is counted once (decision 30). Seeds above 12 keep the
    /// last region on the release before wire version 3, which takes only a batch that follows
    /// its version exactly: it gets a transfer when it needs one, never a batch it cannot take,
    /// and the cluster converges all the same.
    @Test(arguments: 1...16 as ClosedRange<UInt64>)
    func aRestartedOriginContinuesItsChainWithoutStateTransfers(seed: UInt64) {
        let size = 3 + Int(seed % 2)
        let mixed = seed > 12
        let releases = (0..<size).map { $0 == size - 1 && mixed ? 1...2 : ReplicationMessage.protocolVersions }
        var cluster = Cluster(size: size, seed: seed, releases: releases)
        let origin = cluster.replicas[1].config.id
        for replica in 0..<size { cluster.ingest(at: replica, events: 30) }
        for _ in 0..<6 { cluster.round(loss: 0) }
        #expect(cluster.converged, "seed \(seed)")
        // Events whose log is not durable yet when the checkpoint seals them: their batch is
        // unpublished at the checkpoint, which is stored once the log is durable.
        cluster.ingest(at: 1, events: 20, durable: seed % 2 == 0)
        var image = ReplicaSnapshot()
        let checkpoint = cluster.replicas[1].checkpoint(now: cluster.now)
        cluster.replicas[1].durable(through: cluster.replicas[1].lastSequence)
        image.apply(checkpoint)
        #expect(checkpoint.ownChain?.batches.last?.version == checkpoint.ownChain?.sealed, "seed \(seed)")
        // After the checkpoint: more writes and a lossy exchange, so peers end at different
        // versions of the origin, some after the checkpoint's.
        for step in 0..<Int(seed % 5) * 20 {
            if step % 10 == 0 { cluster.ingest(at: Int(cluster.random.next() % UInt64(size)), events: 5) }
            if step % 4 == 0 {
                cluster.now = cluster.now + .milliseconds(300)
                cluster.tick(Int(cluster.random.next() % UInt64(size)))
            }
            cluster.deliverOne(loss: 0.3, duplication: 0.05, cut: { _, _ in false })
        }
        cluster.network.inFlight.removeAll { $0.to == 1 || $0.from == 1 }  // gone with the process
        cluster.restart(1, from: image)
        cluster.chunksSent = [:]
        for replica in 0..<size { cluster.ingest(at: replica, events: 10) }
        var rounds = 0
        while !cluster.converged && rounds < 30 {
            cluster.round(loss: 0)
            rounds += 1
        }
        #expect(cluster.converged, "seed \(seed): not converged \(rounds) rounds after the restart")
        for replica in 0..<size { #expect(cluster.totals(replica) == cluster.accepted, "seed \(seed)") }
        if !mixed {
            #expect(cluster.chunksSent[origin, default: 0] == 0,
                    "seed \(seed): \(cluster.chunksSent[origin, default: 0]) state chunks of the restarted origin")
        }
    }

    /// A store from a build that kept no own chain (or one whose chain belongs to another
    /// checkpoint) restarts the old way: a new chain, a state transfer to every peer, and the
    /// same exact totals.
    @Test func aRestartWithoutAnOwnChainFallsBackToStateTransfers() {
        var cluster = Cluster(size: 3, seed: 23)
        let origin = cluster.replicas[1].config.id
        for replica in 0..<3 { cluster.ingest(at: replica, events: 40) }
        for _ in 0..<6 { cluster.round(loss: 0) }
        var image = ReplicaSnapshot()
        image.apply(cluster.replicas[1].checkpoint(now: cluster.now))
        image.ownChain?.sequence &+= 1  // not this checkpoint's
        cluster.restart(1, from: image)
        cluster.chunksSent = [:]
        for replica in 0..<3 { cluster.ingest(at: replica, events: 10) }
        var rounds = 0
        while !cluster.converged && rounds < 30 {
            cluster.round(loss: 0)
            rounds += 1
        }
        #expect(cluster.converged)
        for replica in 0..<3 { #expect(cluster.totals(replica) == cluster.accepted) }
        #expect(cluster.chunksSent[origin, default: 0] > 0)
    }

    /// Digests a peer sent before the batches they lack reached it (held by a pause, or both ends
    /// of a push-pull answering each other) get the batches once; a digest half a gossip interval
    /// or more after the send gets them again, in case they were lost.
    @Test func staleDigestsFromOnePeerGetTheBatchesOnce() throws {
        var cluster = Cluster(size: 2, seed: 31)
        cluster.ingest(at: 0, events: 50)
        cluster.now = cluster.now + .seconds(1)
        _ = cluster.replicas[0].tick(now: cluster.now)  // seals and publishes; its digest is dropped
        let digest = try #require(cluster.replicas[1].tick(now: cluster.now).compactMap { action -> [UInt8]? in
            if case .send(let bytes, "region-0") = action { bytes } else { nil }
        }.first)
        func deltasAnswering(at now: Timestamp) -> Int {
            cluster.replicas[0].receive(digest, from: "region-1", now: now).count { action in
                if case .send(let bytes, _) = action { bytes[2] == 1 } else { false }
            }
        }
        let interval = cluster.replicas[0].config.gossipInterval
        #expect(deltasAnswering(at: cluster.now) == 1)
        #expect(deltasAnswering(at: cluster.now) == 0)
        #expect(deltasAnswering(at: cluster.now + interval / 4) == 0)
        #expect(deltasAnswering(at: cluster.now + interval) == 1)  // the first may have been lost
        // A peer that is not configured is answered every time, and not remembered.
        #expect(cluster.replicas[0].receive(digest, from: "stranger", now: cluster.now + interval).count { action in
            if case .send(let bytes, _) = action { bytes[2] == 1 } else { false }
        } == 1)
    }

    @Test func idleReplicasSendOnlyDigests() {
        var cluster = Cluster(size: 3, seed: 5)
        cluster.ingest(at: 0, events: 10)
        for _ in 0..<5 { cluster.round(loss: 0) }
        #expect(cluster.converged)
        let before = cluster.network.bytesSent
        for _ in 0..<10 { cluster.round(loss: 0) }
        let perReplicaPerRound = (cluster.network.bytesSent - before) / (3 * 10)
        // A digest of three origins is under 100 bytes: 64 kbit/s allows 8,000 bytes per second.
        #expect(perReplicaPerRound < 200, "idle: \(perReplicaPerRound) bytes per replica per round")
    }

    @Test func aRemovedPeerGetsNoMoreGossipAndTheRestStillConverge() {
        var cluster = Cluster(size: 3, seed: 9)
        // region-0 stops gossiping with region-2 (a config reload); the others still do.
        let narrowed = cluster.replicas[0].setPeers(["region-1", "region-1"])
        #expect(narrowed && cluster.replicas[0].config.peers == ["region-1"])
        let emptied = cluster.replicas[0].setPeers([])
        #expect(!emptied)  // a cluster node cannot drop to no peers
        var single = Replica(config: ReplicaConfig(id: ReplicaID(region: "solo", node: "n1", incarnation: 1)))
        let joined = single.setPeers(["region-1"])
        #expect(!joined)  // nor a single region gain some without a restart
        for round in 0..<30 {
            cluster.ingest(at: round % 3, events: 5)
            cluster.now = cluster.now + .seconds(1)
            let actions = cluster.replicas[0].tick(now: cluster.now)
            #expect(!actions.contains { if case .send(_, "region-2") = $0 { true } else { false } })
            cluster.send(actions, from: 0)
            cluster.tick(1)
            cluster.tick(2)
            cluster.deliverAll(loss: 0)
        }
        for _ in 0..<10 { cluster.round(loss: 0) }
        #expect(cluster.converged)
    }

    /// A replica part-way through a state transfer of an origin, whose other peers can continue
    /// its chain from where it stands, takes their batches (the transfer is then dropped): it used
    /// to ignore them until the transfer finished, and when the one peer that could not chain had
    /// restarted and chained too, nobody sent it another chunk (the rolling-upgrade scenario's
    /// seed 387 never converged).
    @Test func aBatchThatContinuesTheChainIsTakenDuringATransfer() throws {
        var receiver = Replica(config: ReplicaConfig(id: ReplicaID(region: "a", node: "n1", incarnation: 1),
                                                     peers: ["b", "c"]))
        let origin = ReplicaID(region: "b", node: "n1", incarnation: 1)
        let now = Self.start
        func part(_ operation: String, count: Int) -> ReplicatedBucket {
            var aggregate = BucketAggregate(sketchScale: 6, sketchBucketsMax: 160, usersPrecision: 14)
            for index in 0..<count {
                aggregate.record(Event(service: "s", operation: operation, status: 200, latencyMicros: 100,
                                       user: "u\(index)", timestamp: now), userHash: UInt64(index), isError: false, at: origin)
            }
            let start = now.millisecondsSinceEpoch / 60_000 * 60_000
            return ReplicatedBucket(key: BucketKey(series: SeriesKey(service: "s", operation: operation, statusClass: .success),
                                                   resolution: .minute, start: Timestamp(millisecondsSinceEpoch: start)),
                                    aggregate: aggregate)
        }
        func deliver(_ message: ReplicationMessage, from peer: String) {
            _ = receiver.receive(message.encoded(), from: peer, now: now)
        }
        // Version 1 of the origin, then a transfer as of 3 that stops after its first chunk.
        deliver(.deltas([DeltaBatch(origin: origin, version: 1, previous: 0, sealedAt: now, buckets: [part("x", count: 2)])]),
                from: "b")
        let cursor = part("y", count: 1).key
        deliver(.stateChunk(StateChunk(origin: origin, asOf: 3, asOfTime: now, from: nil, next: cursor,
                                       buckets: [part("x", count: 3)])), from: "b")
        #expect(receiver.replication.origins[origin]?.transfer != nil)
        // Peer c's buffer continues the chain from version 1: its batches are taken.
        deliver(.deltas([
            DeltaBatch(origin: origin, version: 2, previous: 1, sealedAt: now, buckets: [part("y", count: 1)]),
            DeltaBatch(origin: origin, version: 3, previous: 2, sealedAt: now, buckets: [part("x", count: 3)]),
        ]), from: "c")
        #expect(receiver.versions.first { $0.origin == origin }?.version == 3)
        #expect(receiver.replication.origins[origin]?.transfer == nil)
        // The rest of the old transfer, should it come, changes nothing.
        deliver(.stateChunk(StateChunk(origin: origin, asOf: 3, asOfTime: now, from: cursor, next: nil,
                                       buckets: [part("y", count: 1)])), from: "b")
        #expect(receiver.versions.first { $0.origin == origin }?.version == 3)
        #expect(receiver.totalRequests(at: .minute) == 4)
    }

    @Test func wireFormatRoundTripsAndRefusesGarbage() throws {
        var cluster = Cluster(size: 2, seed: 7)
        cluster.ingest(at: 0, events: 50)
        cluster.now = cluster.now + .seconds(1)
        let actions = cluster.replicas[0].tick(now: cluster.now)
        guard case .send(let digestBytes, _)? = actions.first(where: { if case .send = $0 { true } else { false } })
        else {
            Issue.record("no digest sent: \(actions)")
            return
        }
        let digest = try ReplicationMessage(encoded: digestBytes)
        #expect(digest.encoded() == digestBytes)
        var random = SeededRandom(seed: 3)
        let bytes = ReplicationMessage.deltas(
            [cluster.replicas[0].replication.origins[cluster.replicas[0].config.id]!.buffer[0].bytes])
        #expect(try ReplicationMessage(encoded: bytes).encoded() == bytes)
        // Garbage from a peer is counted and dropped, never a trap.
        var receiver = cluster.replicas[1]
        #expect(receiver.receive([0x20, 1, 1, 5, 200], from: "region-0", now: cluster.now).isEmpty)
        #expect(receiver.refusedMessages == 1)
        for length in 0..<bytes.count { _ = try? ReplicationMessage(encoded: Array(bytes[..<length])) }
        for _ in 0..<2_000 {
            var corrupted = bytes
            corrupted[Int(random.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: random.next())
            _ = try? ReplicationMessage(encoded: corrupted)  // an error or a value; never a trap
        }
        #expect(throws: DecodeError.self) { try ReplicationMessage(encoded: [0x20, 9, 0]) }
    }
}
