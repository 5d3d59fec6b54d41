import Testing
import TallyAggregates
@testable import TallyReplica

/// The origin directory against a plain model: per region the list of origins it announced, in
/// order; the last is current, the others retired. Seeded random announcements, re-announcements,
/// and a round trip through the stored entries after every step.
struct OriginDirectoryTests {
    @Test(arguments: Array(1...20) as [UInt64])
    func aRegionsLatestAnnouncementIsItsOriginAndTheRestAreRetired(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var directory = OriginDirectory()
        var model: [String: [ReplicaID]] = [:]
        let regions = ["a", "b", "c", "d"]
        for _ in 0..<300 {
            let region = regions[Int(random.next() % UInt64(regions.count))]
            // Mostly a new incarnation, sometimes the current one again (a reconnect), sometimes an
            // older one (a hello from a process being replaced, still connected).
            let incarnation: UInt64
            switch random.next() % 4 {
            case 0: incarnation = UInt64((model[region]?.count ?? 0))
            case 1: incarnation = random.next() % 8
            default: incarnation = UInt64((model[region]?.count ?? 0) + 1)
            }
            let origin = ReplicaID(region: region, node: "n", incarnation: incarnation)
            let changed = directory.announce(origin, region: region)
            #expect(changed == (model[region]?.last != origin))
            model[region, default: []].removeAll { $0 == origin }
            model[region, default: []].append(origin)
            for (name, origins) in model {
                #expect(directory.currentOrigin(of: name) == origins.last)
                for old in origins.dropLast() { #expect(directory.isRetired(old), "\(old) of \(name)") }
                #expect(!directory.isRetired(origins.last!))
            }
            #expect(!directory.isRetired(ReplicaID(region: "e", node: "n", incarnation: 1)), "unknown: not retired")
            #expect(OriginDirectory(entries: directory.entries) == directory, "stored and read back")
        }
    }

    @Test func retiredOriginsBeyondTheLimitAreForgottenOldestFirstAndCurrentOnesKept() {
        var directory = OriginDirectory()
        for incarnation in 1...UInt64(OriginDirectory.entriesMax + 10) {
            directory.announce(ReplicaID(region: "a", node: "n", incarnation: incarnation), region: "a")
        }
        directory.announce(ReplicaID(region: "b", node: "n", incarnation: 1), region: "b")
        #expect(directory.count == OriginDirectory.entriesMax)
        #expect(directory.currentOrigin(of: "a") == ReplicaID(region: "a", node: "n", incarnation: UInt64(OriginDirectory.entriesMax + 10)))
        #expect(directory.currentOrigin(of: "b") == ReplicaID(region: "b", node: "n", incarnation: 1))
        #expect(!directory.knows(ReplicaID(region: "a", node: "n", incarnation: 1)), "the oldest retired went first")
        #expect(directory.isRetired(ReplicaID(region: "a", node: "n", incarnation: UInt64(OriginDirectory.entriesMax))))
    }

    /// Staleness leaves a retired origin out, and the directory survives a checkpoint and restart.
    @Test func stalenessLeavesRetiredOriginsOutAcrossARestart() {
        var cluster = ReplicationTests.Cluster(size: 2, seed: 4)
        let old = cluster.replicas[1].config.id
        cluster.ingest(at: 1, events: 20)
        for _ in 0..<4 { cluster.round(loss: 0) }
        // region-1 loses its store and comes back as a new incarnation, counting on.
        var config = cluster.replicas[1].config
        config.id = ReplicaID(region: "region-1", node: "n1", incarnation: 2)
        config.versionEpoch += 1
        let new = config.id
        cluster.replicas[1] = Replica(config: config)
        cluster.replicas[1].setWireVersion(config.wireVersions.upperBound, for: "region-0")
        cluster.logs[1] = []
        cluster.ingest(at: 1, events: 20)
        for _ in 0..<4 { cluster.round(loss: 0) }
        let now = cluster.now
        #expect(Set(cluster.replicas[0].staleness(now: now).map(\.origin)) == [old, new], "unknown origins are reported")
        cluster.replicas[0].announce(old, region: "region-1")
        #expect(Set(cluster.replicas[0].staleness(now: now).map(\.origin)) == [old, new])
        cluster.replicas[0].announce(new, region: "region-1")
        #expect(cluster.replicas[0].staleness(now: now).map(\.origin) == [new])
        var image = ReplicaSnapshot()
        let checkpoint = cluster.replicas[0].checkpoint(now: now)
        #expect(checkpoint.originDirectory != nil)
        image.apply(checkpoint)
        let second = cluster.replicas[0].checkpoint(now: now)
        #expect(second.originDirectory == nil, "unchanged: not written again")
        image.apply(second)
        let restarted = Replica(config: cluster.replicas[0].config, restoring: image)
        #expect(restarted.staleness(now: now).map(\.origin) == [new])
    }
}
