import Testing
import TallyAggregates
@testable import TallyNodeCore
@testable import TallyReplica

/// The node core through its inputs and actions: no sockets, no disk, no sleeps.
@Suite struct NodeCoreTests {
    static let now = Timestamp(millisecondsSinceEpoch: 1_795_946_400_000)
    static let me = ReplicaID(region: "a", node: "n1", incarnation: 1)

    static func core(_ config: NodeCore.Config = NodeCore.Config(), peers: [String] = [],
                     imageTakenAt: Timestamp? = nil) -> NodeCore {
        NodeCore(replica: Replica(config: ReplicaConfig(id: Self.me, peers: peers)), config: config,
                 imageTakenAt: imageTakenAt, now: Self.now)
    }

    static func batch(_ id: UInt64, events: Int = 3, client: String = "c", key: String? = nil) -> EventBatch {
        EventBatch(id: BatchID(id), client: client, idempotencyKey: key, events: (0..<events).map { index in
            Event(service: "s", operation: "o\(index % 2)", status: 200, latencyMicros: 100, user: "u\(index)",
                  timestamp: Self.now - .seconds(1))
        })
    }

    /// A disk that finishes commits in any order: acknowledgements follow the contiguous durable
    /// prefix, each carries a durable sequence that covers its entry, every batch is answered once,
    /// and the pending bound is never exceeded. 200 seeds.
    @Test func acknowledgementsNeverOutrunTheDiskWhateverOrderCommitsFinish() {
        for seed in UInt64(1)...200 {
            var random = SeededRandom(seed: seed)
            let bound = 1 + Int(random.next() % 8)
            var core = Self.core(NodeCore.Config(pendingBatchesMax: bound))
            var entryOf: [UInt64: UInt64] = [:]  // batch -> its entry's sequence
            var unsynced: [UInt64] = []
            var durable: Set<UInt64> = []
            var answered: Set<UInt64> = []
            var overloaded = 0
            func check(_ actions: [NodeCore.Action]) {
                for action in actions {
                    switch action {
                    case .persist(let entry): unsynced.append(entry.sequence)
                    case .acknowledge(let batch, _, _, let through):
                        #expect(answered.insert(batch.rawValue).inserted, "seed \(seed): \(batch) answered twice")
                        let sequence = entryOf[batch.rawValue] ?? 0
                        #expect(through >= sequence, "seed \(seed)")
                        #expect((1...max(through, 1)).allSatisfy { durable.contains($0) || $0 == 0 || through == 0 },
                                "seed \(seed): acknowledged through \(through) before it was durable")
                    case .refuse(let batch, .overloaded):
                        overloaded += 1
                        #expect(answered.insert(batch.rawValue).inserted)
                    default: break
                    }
                }
                #expect(core.pendingCount <= bound)
            }
            for id in UInt64(1)...300 {
                if random.next() % 3 != 0 {
                    let before = core.replica.lastSequence
                    let actions = core.ingest(Self.batch(id), now: Self.now)
                    if core.replica.lastSequence > before { entryOf[id] = core.replica.lastSequence }
                    check(actions)
                } else if !unsynced.isEmpty {
                    // Commit a random run of what is queued; runs finish out of order.
                    let position = Int(random.next() % UInt64(unsynced.count))
                    let sequence = unsynced.remove(at: position)
                    durable.insert(sequence)
                    check(core.persisted(sequence...sequence, now: Self.now))
                }
            }
            for sequence in unsynced {
                durable.insert(sequence)
                check(core.persisted(sequence...sequence, now: Self.now))
            }
            #expect(answered.count == 300 - (300 - answered.count))
            #expect(core.pendingCount == 0, "seed \(seed)")
            #expect(core.durableThrough == core.replica.lastSequence, "seed \(seed)")
            if bound == 1 { #expect(overloaded > 0, "seed \(seed): the bound was never reached") }
        }
    }

    @Test func aRetriedKeyIsAnsweredAfterItsFirstBatchIsDurable() throws {
        var core = Self.core()
        let first = core.ingest(Self.batch(1, key: "k"), now: Self.now)
        #expect(first.contains { if case .persist = $0 { true } else { false } })
        #expect(!first.contains { if case .acknowledge = $0 { true } else { false } })
        // The retry arrives before the first commit finished: it waits for it too.
        let retry = core.ingest(Self.batch(2, key: "k"), now: Self.now)
        #expect(retry.isEmpty)
        let acks = core.persisted(1...1, now: Self.now).compactMap { action -> (UInt64, Bool)? in
            if case .acknowledge(let batch, _, let replayed, _) = action { (batch.rawValue, replayed) } else { nil }
        }
        #expect(acks.map(\.0) == [1, 2] && acks.map(\.1) == [false, true])
    }

    @Test func theRateLimitRefusesWithRetryAfterAndRefills() {
        var core = Self.core(NodeCore.Config(rateLimitEventsPerSecond: 10, rateLimitBurst: 10))
        _ = core.ingest(Self.batch(1, events: 10), now: Self.now)
        let refused = core.ingest(Self.batch(2, events: 5), now: Self.now)
        guard case .refuse(_, let refusal) = refused.first else {
            Issue.record("expected a refusal, got \(refused)")
            return
        }
        #expect(refusal.status == 429 && refusal.retryAfterSeconds == 1)
        // Another key has its own bucket; half a second later this one has 5 tokens again.
        #expect(!core.ingest(Self.batch(3, events: 5, client: "other"), now: Self.now).contains {
            if case .refuse = $0 { true } else { false }
        })
        #expect(!core.ingest(Self.batch(4, events: 5), now: Self.now + .milliseconds(500)).contains {
            if case .refuse = $0 { true } else { false }
        })
    }

    static func checkpoints(_ actions: [NodeCore.Action]) -> [Checkpoint] {
        actions.compactMap { if case .storeCheckpoint(let checkpoint) = $0 { checkpoint } else { nil } }
    }

    /// The interval counts from the stored image's time, so a node restarted every few seconds
    /// still checkpoints (22 restarts grew the log from 205 to 5,030 entries before).
    @Test func checkpointsAreTimedAcrossRestartsAndNeverOverlap() {
        let interval = NodeCore.Config().checkpointInterval
        var fresh = Self.core(imageTakenAt: Self.now - interval + .seconds(3))
        #expect(Self.checkpoints(fresh.tick(now: Self.now)).isEmpty)
        let due = Self.checkpoints(fresh.tick(now: Self.now + .seconds(3)))
        #expect(due.count == 1)
        // While it is being stored, no second one.
        #expect(Self.checkpoints(fresh.tick(now: Self.now + interval * 5)).isEmpty)
        _ = fresh.checkpointStored(due[0].sequence, now: Self.now + interval * 5)
        #expect(Self.checkpoints(fresh.tick(now: Self.now + interval * 5)).count == 1)
        // Never checkpointed: at once. Stopping: a last one.
        var never = Self.core()
        #expect(Self.checkpoints(never.tick(now: Self.now)).count == 1)
        _ = never.checkpointStored(0, now: Self.now)
        #expect(Self.checkpoints(never.stopping(now: Self.now + .seconds(1))).count == 1)
    }

    @Test func ticksAreScheduledAtTheReplicasIntervalOrAReadsDeadline() throws {
        var core = Self.core(peers: ["b"])
        let first = core.tick(now: Self.now)
        guard case .scheduleTick(let at) = first.last else { throw Issue.record("no schedule") as! Error }
        #expect(at == Self.now + core.replica.config.tickInterval)
        _ = core.peerConnected("b", protocolVersion: 2, now: Self.now)
        let (_, actions) = try core.startGlobalRead(
            Query(service: "s", from: Self.now - .seconds(3_600), to: Self.now, metrics: [.count]),
            now: Self.now + .milliseconds(100))
        guard case .scheduleTick(let deadline) = actions.last else { throw Issue.record("no schedule") as! Error }
        #expect(deadline == min(at, Self.now + .milliseconds(100) + core.config.globalReadTimeout))
    }

    /// Each replication message goes tagged with its peer's agreed protocol, at the wire version
    /// that protocol carries; a peer whose protocol is not known yet gets none; a peer that comes
    /// back on another release gets the other version from then on.
    @Test func everyMessageGoesAtTheWireVersionItsPeersProtocolCarries() throws {
        var core = Self.core(peers: ["b", "c", "d", "e"])
        _ = core.ingest(Self.batch(1), now: Self.now)
        _ = core.persisted(1...1, now: Self.now)
        _ = core.peerConnected("b", protocolVersion: 2, now: Self.now)
        _ = core.peerConnected("c", protocolVersion: 3, now: Self.now)
        _ = core.peerConnected("e", protocolVersion: 4, now: Self.now)
        func sends(_ actions: [NodeCore.Action]) -> [(peer: String, protocol: UInt16, wire: UInt8)] {
            actions.compactMap { if case .send(let bytes, let peer, let version) = $0 { (peer, version, bytes[1]) } else { nil } }
        }
        var seen: [String: (UInt16, UInt8)] = [:]
        var now = Self.now
        for _ in 0..<40 {
            now = now + core.replica.config.gossipInterval
            for send in sends(core.tick(now: now)) { seen[send.peer] = (send.protocol, send.wire) }
        }
        #expect(seen["b"].map { $0 == (2, 1) } == true, "\(seen)")
        #expect(seen["c"].map { $0 == (3, 2) } == true, "\(seen)")
        #expect(seen["e"].map { $0 == (4, 3) } == true, "\(seen)")
        #expect(seen["d"] == nil, "d never connected: \(seen)")
        // c restarts on the older release; a digest from it is answered at its version.
        _ = core.peerDisconnected("c", reason: "restarting", now: now)
        _ = core.peerConnected("c", protocolVersion: 2, now: now)
        let digest = ReplicationMessage.digest(Digest(entries: [], transfers: [], reply: true)).encoded(protocolVersion: 1)
        let answers = sends(core.received(digest, from: "c", now: now))
        #expect(!answers.isEmpty && answers.allSatisfy { $0.peer == "c" && $0.protocol == 2 && $0.wire == 1 }, "\(answers)")
    }

    static func completed(_ actions: [NodeCore.Action]) -> NodeCore.GlobalRead? {
        actions.lazy.compactMap { if case .completeRead(let read) = $0 { read } else { nil } }.first
    }

    /// Every global read completes by its deadline: with every answer, or naming who did not
    /// answer and why (not connected, an old protocol, no answer in time, could not be sent).
    @Test func globalReadsCompleteByTheirDeadlineNamingWhoIsMissing() throws {
        var core = Self.core(peers: ["b", "c", "d", "e"])
        _ = core.peerConnected("b", protocolVersion: 2, now: Self.now)
        _ = core.peerConnected("c", protocolVersion: 2, now: Self.now)
        _ = core.peerConnected("d", protocolVersion: 1, now: Self.now)
        let query = Query(service: "s", from: Self.now - .seconds(3_600), to: Self.now, metrics: [.count])
        let (id, actions) = try core.startGlobalRead(query, now: Self.now)
        let asked = actions.compactMap { if case .askRead(_, let region, _) = $0 { region } else { nil } }
        #expect(asked == ["b", "c"])
        // b answers; c never does.
        var peer = Replica(config: ReplicaConfig(id: ReplicaID(region: "b", node: "n1", incarnation: 1), peers: ["a"]))
        let request = try peer.readRequest(for: query, id: id, now: Self.now)
        _ = peer.ingest(Self.batch(9), now: Self.now)
        let answer = peer.answer(request, bytesMax: 1 << 20)
        #expect(Self.completed(core.receivedRead(answer.encoded(), from: "b", now: Self.now).actions) == nil)
        // A duplicate or a stranger's answer is refused, not counted.
        #expect(core.receivedRead(answer.encoded(), from: "b", now: Self.now).refused != nil)
        #expect(core.receivedRead(answer.encoded(), from: "z", now: Self.now).refused != nil)
        #expect(Self.completed(core.tick(now: Self.now + .milliseconds(1_999))) == nil)
        let read = try #require(Self.completed(core.tick(now: Self.now + core.config.globalReadTimeout)))
        #expect(read.answers.map(\.region) == ["b"])
        #expect(read.missing.map(\.region) == ["c", "d", "e"])
        #expect(read.missing[0].reason.hasPrefix("no answer within"))
        #expect(read.missing[1].reason.contains("protocol 1"))
        #expect(read.missing[2].reason == "not connected")
        #expect(read.completedAt <= read.deadline)
        #expect(core.globalReadsWaiting == 0)
        let joined = try core.replica.query(query, now: Self.now, joining: read.answers.map(\.answer))
        #expect(joined.groups[0].points[0].values == [3])
    }

    @Test func aDisconnectOrAFailedSendCompletesTheReadAtOnce() throws {
        var core = Self.core(peers: ["b", "c"])
        _ = core.peerConnected("b", protocolVersion: 2, now: Self.now)
        _ = core.peerConnected("c", protocolVersion: 2, now: Self.now)
        let query = Query(service: "s", from: Self.now - .seconds(60), to: Self.now, metrics: [.count])
        let (id, _) = try core.startGlobalRead(query, now: Self.now)
        #expect(Self.completed(core.readNotSent(id, to: "b", reason: "send queue full", now: Self.now)) == nil)
        let read = try #require(Self.completed(core.peerDisconnected("c", reason: "connection reset", now: Self.now)))
        #expect(read.missing.map(\.reason) == ["send queue full", "connection reset"])
    }

    @Test func globalReadsAreBounded() throws {
        var core = Self.core(NodeCore.Config(globalReadsMax: 2), peers: ["b"])
        _ = core.peerConnected("b", protocolVersion: 2, now: Self.now)
        let query = Query(service: "s", from: Self.now - .seconds(60), to: Self.now, metrics: [.count])
        _ = try core.startGlobalRead(query, now: Self.now)
        _ = try core.startGlobalRead(query, now: Self.now)
        #expect(throws: NodeCore.GlobalReadRefusal.self) { try core.startGlobalRead(query, now: Self.now) }
    }

    /// The origin directory as the core keeps it: a starting node announces its own origin after
    /// the ones it ran as before (retired), a peer's hello names what that region runs as, and a
    /// region's earlier origin drops out of staleness once its hello names another.
    @Test func helloOriginsRetireWhatARegionRanAsBefore() {
        let lost = ReplicaID(region: "a", node: "n1", incarnation: 0)
        var core = NodeCore(replica: Replica(config: ReplicaConfig(id: Self.me, peers: ["b"])), config: NodeCore.Config(),
                            imageTakenAt: nil, now: Self.now, region: "a", ranBefore: [lost, Self.me])
        #expect(core.replica.originDirectory.currentOrigin(of: "a") == Self.me)
        #expect(core.replica.originDirectory.isRetired(lost))
        let first = ReplicaID(region: "b", node: "n1", incarnation: 1)
        let second = ReplicaID(region: "b", node: "n1", incarnation: 2)
        _ = core.peerConnected("b", protocolVersion: 4, origin: first, now: Self.now)
        #expect(core.replica.originDirectory.currentOrigin(of: "b") == first)
        _ = core.peerConnected("b", protocolVersion: 4, origin: second, now: Self.now)
        #expect(core.replica.originDirectory.isRetired(first) && !core.replica.originDirectory.isRetired(second))
        _ = core.peerConnected("z", protocolVersion: 4, origin: ReplicaID(region: "z", node: "n1", incarnation: 1),
                               now: Self.now)
        #expect(core.replica.originDirectory.currentOrigin(of: "z") == nil, "not a peer: its hello names nothing")
        // A restart keeps what it learned (through the checkpoint), and does not announce a
        // ran-before origin its image already names (that would make it current again).
        var image = ReplicaSnapshot()
        for case .storeCheckpoint(let checkpoint) in core.stopping(now: Self.now) { image.apply(checkpoint) }
        #expect(!image.originDirectory.isEmpty)
        let restarted = NodeCore(replica: Replica(config: ReplicaConfig(id: Self.me, peers: ["b"]), restoring: image),
                                 config: NodeCore.Config(), imageTakenAt: nil, now: Self.now, region: "a",
                                 ranBefore: [lost])
        #expect(restarted.replica.originDirectory == core.replica.originDirectory)
    }
}
