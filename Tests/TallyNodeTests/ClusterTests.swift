import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOPosix
import Testing
import TallyReplica
import TallySLO
@testable import TallyNode

/// Three region nodes in this process, replicating over mutual TLS on loopback.
@Suite struct ClusterTests {
    static let regions = ["us-east", "eu-west", "ap-south"]


    static func configs(directory: String, gossip: String = "200ms") async throws -> [NodeConfig] {
        let ports = try await PeerTransport.freeLoopbackPorts(Self.regions.count)
        let cluster = try LoopbackCluster.make(
            in: directory, regions: Self.regions, httpPorts: Self.regions.map { _ in 0 }, peerPorts: ports,
            gossipInterval: gossip, secret: "secret", certificateDays: 1)
        return try cluster.members.map { try NodeConfig.parse(yaml: $0.yaml, file: "\($0.region).yaml") }
    }

    /// One node per config, each with its data directory created.
    static func start(_ configs: [NodeConfig]) async throws -> [Node] {
        var nodes: [Node] = []
        for config in configs {
            try FileManager.default.createDirectory(atPath: config.dataDirectory, withIntermediateDirectories: true)
            nodes.append(try await Node.start(config: config))
        }
        return nodes
    }

    /// Writes `eventsPerRegion` x (1, 2, 3) events at the three nodes, each acknowledged by one,
    /// and returns every node's total once they all hold every event (or after 10 s).
    static func writeAtEachAndWait(_ nodes: [Node], eventsPerRegion per: Int) async throws -> [UInt64] {
        let now = Node.wallClock()
        for (index, node) in nodes.enumerated() {
            let items = (0..<(per * (index + 1))).map { event in
                BatchItem.event(Event(service: "svc-\(index)", operation: "op", status: 200,
                                      latencyMicros: Double(1_000 + event), user: "u\(event)", timestamp: now))
            }
            guard case .accepted = await node.ingest(items: items, client: "test", idempotencyKey: nil) else {
                Issue.record("batch not accepted at \(Self.regions[index])")
                return []
            }
        }
        let expected = UInt64(per * 6)
        var totals: [UInt64] = []
        for _ in 0..<200 {
            totals = []
            for node in nodes { totals.append(await node.totalRequests()) }
            if totals.allSatisfy({ $0 == expected }) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        return totals
    }

    @Test func threeRegionsConvergeOnEveryEventExactlyOnce() async throws {
        let directory = NSTemporaryDirectory() + "tally-cluster-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configs = try await Self.configs(directory: directory)
        let nodes = try await Self.start(configs)
        // 100 + 200 + 300 events, each acknowledged by one region: every region ends with 600.
        #expect(try await Self.writeAtEachAndWait(nodes, eventsPerRegion: 100) == [600, 600, 600])
        var versions: [[UInt64]] = []
        for node in nodes { versions.append(await node.versions().map(\.version)) }
        #expect(versions.dropFirst().allSatisfy { $0 == versions[0] }, "digests differ: \(versions)")
        for node in nodes {
            let peers = await node.transport?.peers ?? []
            #expect(peers.count == 2 && peers.allSatisfy { $0.protocolVersion == Hello.supportedProtocols.upperBound })
            #expect(await node.transport?.refusals.isEmpty == true)
        }
        // Each round sends a digest to one peer chosen at random: within a few rounds, both.
        for _ in 0..<100 where !((await nodes[0].transport?.peers ?? []).allSatisfy { $0.bytesOut > 0 }) {
            try await Task.sleep(for: .milliseconds(50))
        }
        // /v1/cluster: both peers connected at the newest protocol, with their staleness.
        let app = Application(router: API.router(node: nodes[0]))
        try await app.test(.router) { client in
            try await client.execute(uri: "/v1/cluster", method: .get, headers: [.authorization: "Bearer secret"]) { response in
                #expect(response.status == .ok)
                let json = try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
                #expect(json["region"] as? String == "us-east")
                let peers = try #require(json["peers"] as? [[String: Any]])
                #expect(peers.map { $0["region"] as? String } == ["eu-west", "ap-south"])
                for peer in peers {
                    #expect(peer["connected"] as? Bool == true && peer["protocol"] as? Int == Int(Hello.supportedProtocols.upperBound))
                    #expect(peer["staleness_seconds"] is Double, "\(peer)")
                    #expect((peer["bytes_out"] as? Int ?? 0) > 0)
                }
            }
        }
        for node in nodes { await node.stop() }
    }

    /// A rolling upgrade half done, over mutual TLS: ap-south runs the release before replication
    /// wire version 2 (peer protocols 1...2). The two new nodes agree protocol 4 between them and
    /// 2 with it; every message decodes where it lands, and every event is counted once everywhere.
    @Test func aNodeOnTheOlderReleaseReplicatesWithNewerOnes() async throws {
        let directory = NSTemporaryDirectory() + "tally-upgrade-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configs = try await Self.configs(directory: directory)
        configs[2].cluster?.protocols = 1...2
        let nodes = try await Self.start(configs)
        #expect(try await Self.writeAtEachAndWait(nodes, eventsPerRegion: 50) == [300, 300, 300])
        let expected: [[String: UInt16]] = [["eu-west": 4, "ap-south": 2], ["us-east": 4, "ap-south": 2],
                                            ["us-east": 2, "eu-west": 2]]
        for (index, node) in nodes.enumerated() {
            let peers = await node.transport?.peers ?? []
            var agreed: [String: UInt16] = [:]
            for peer in peers { agreed[peer.identity.region] = peer.protocolVersion }
            #expect(agreed == expected[index], "\(Self.regions[index])")
            #expect(await node.transport?.refusals.isEmpty == true)
            let metrics = await node.metricsText()
            #expect(metrics.contains("tally_replication_messages_refused_total 0\n"), "\(Self.regions[index])")
        }
        for node in nodes { await node.stop() }
    }

    /// A peer port another process holds: the start fails naming the key, the address and why
    /// (it was a bare `errno: 98`).
    @Test func aTakenPeerPortIsNamedAtStart() async throws {
        let directory = NSTemporaryDirectory() + "tally-taken-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configs = try await Self.configs(directory: directory)
        let cluster = try #require(configs[0].cluster)
        let squatter = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: cluster.listenPort).get()
        defer { squatter.close(promise: nil) }
        do {
            _ = try await Self.start([configs[0]])
            Issue.record("a node started on a taken port")
        } catch {
            let text = "\(error)"
            #expect(text.contains("cluster.listen 127.0.0.1:\(cluster.listenPort)"), "\(text)")
            #expect(text.contains("already in use"), "\(text)")
        }
        #expect(Node.describe(IOError(errnoCode: EADDRNOTAVAIL, reason: "bind")) == "the address is not one of this machine's")
    }

    @Test func aReloadAppliesPeersAndRefusesWhatNeedsARestart() async throws {
        let directory = NSTemporaryDirectory() + "tally-reload-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configs = try await Self.configs(directory: directory)
        try FileManager.default.createDirectory(atPath: configs[0].dataDirectory, withIntermediateDirectories: true)
        let node = try await Node.start(config: configs[0])
        // (The test certificates are valid for a day: a warning about it comes last.)
        #expect(try await node.reload(configs[0]).prefix(2) == ["peers added: [], removed: []", "certificates unchanged"])
        // Another node's config, or a cluster section dropped: refused, nothing changes.
        await #expect(throws: Node.ReloadError.self) { try await node.reload(configs[1]) }
        var single = configs[0]
        single.cluster = nil
        await #expect(throws: Node.ReloadError.self) { try await node.reload(single) }
        // ap-south removed, the gossip interval changed (which waits for a restart).
        var fewer = configs[0]
        fewer.cluster?.peers.removeAll { $0.region == "ap-south" }
        fewer.cluster?.gossipInterval = .seconds(3)
        let notes = try await node.reload(fewer)
        #expect(notes.first == "peers added: [], removed: [\"tally://ap-south/n1\"]", "\(notes)")
        #expect(notes.contains("changed, effective at the next restart: cluster.gossip_interval"), "\(notes)")
        #expect(await node.transport?.peers.map(\.identity.region) == ["eu-west"])
        // TLS files that do not load: refused, the peers stay as they were.
        var broken = configs[0]
        broken.cluster?.keyPath = directory + "/missing-key.pem"
        await #expect(throws: Node.ReloadError.self) { try await node.reload(broken) }
        #expect(await node.transport?.peers.map(\.identity.region) == ["eu-west"])
        // Another node's certificate, which every peer would refuse: refused, naming why; the
        // running certificates are kept (it used to be applied, and peers refused it 51 times a second).
        var impostor = configs[0]
        impostor.cluster?.certificatePath = try #require(configs[1].cluster?.certificatePath)
        impostor.cluster?.keyPath = try #require(configs[1].cluster?.keyPath)
        do {
            _ = try await node.reload(impostor)
            Issue.record("a certificate naming another node was applied")
        } catch {
            #expect(error.reason.contains("names tally://eu-west/n1, not tally://us-east/n1"), "\(error)")
        }
        await node.stop()
    }

    @Test func aGlobalReadJoinsEveryAnsweringRegionAndNamesTheOthers() async throws {
        let directory = NSTemporaryDirectory() + "tally-global-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Gossip once an hour: nothing replicates during the test, so only a global read sees it all.
        let configs = try await Self.configs(directory: directory, gossip: "1h")
        let nodes = try await Self.start(configs)
        let now = Node.wallClock()
        for (index, node) in nodes.enumerated() {
            let items = (0..<(10 * (index + 1))).map { event in
                BatchItem.event(Event(service: "checkout", operation: "op-\(event % 2)", status: 200,
                                      latencyMicros: Double(1_000 * (index + 1)), user: "u\(index)-\(event)",
                                      timestamp: now))
            }
            guard case .accepted = await node.ingest(items: items, client: "test", idempotencyKey: nil) else {
                Issue.record("batch not accepted at \(Self.regions[index])")
                return
            }
        }
        // Wait for every connection's hello (protocol 2 both ways).
        for _ in 0..<100 {
            var ready = true
            for node in nodes where !((await node.transport?.peers ?? []).allSatisfy { $0.connected && $0.protocolVersion == 2 }) {
                ready = false
            }
            if ready { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let query = Query(service: "checkout", from: now - .seconds(60), to: now + .seconds(60),
                          metrics: [.count, .max, .uniqueUsers])
        let local = try await nodes[0].query(query).0
        #expect(local.groups.first?.points.first?.values.first == 10)
        let global = try await nodes[0].globalQuery(query)
        #expect(global.answered == ["ap-south", "eu-west"] && global.missing.isEmpty, "\(global.missing)")
        let values = global.result.groups.first?.points.first?.values ?? []
        #expect(values.first == 60)  // 10 + 20 + 30, each once
        #expect(values.count == 3 && (values[1] ?? 0) > 2_900 && (values[1] ?? 0) < 3_100)  // ap-south's 3 ms
        #expect(values.count == 3 && abs((values[2] ?? 0) - 60) < 3)  // 60 distinct users
        // Asked twice, or with a region cut off: the same events once, and the missing region named.
        #expect(try await nodes[0].globalQuery(query).result == global.result)
        await nodes[0].transport?.setCut(["ap-south"], true)
        let partial = try await nodes[0].globalQuery(query)
        #expect(partial.answered == ["eu-west"])
        #expect(partial.missing.map(\.region) == ["ap-south"] && partial.missing.first?.reason == "not connected")
        #expect(partial.result.groups.first?.points.first?.values.first == 30)
        // Over HTTP: consistency=global names the regions; a bad consistency is a 400.
        let app = Application(router: API.router(node: nodes[0]))
        try await app.test(.router) { client in
            let from = (now - .seconds(60)).millisecondsSinceEpoch
            let to = (now + .seconds(60)).millisecondsSinceEpoch
            try await client.execute(uri: "/v1/query?service=checkout&from=\(from)&to=\(to)&metrics=count&consistency=global",
                                     method: .get, headers: [.authorization: "Bearer secret"]) { response in
                #expect(response.status == .ok)
                let json = try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
                let regions = try #require(json["regions"] as? [String: Any])
                #expect(regions["answered"] as? [String] == ["us-east", "eu-west"])
                let missing = try #require(regions["missing"] as? [[String: Any]])
                #expect(missing.first?["region"] as? String == "ap-south")
                #expect(json["consistency"] as? String == "global" && json["staleness"] is [String: Any])
            }
            try await client.execute(uri: "/v1/query?service=checkout&consistency=strong", method: .get,
                                     headers: [.authorization: "Bearer secret"]) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("consistency"))
            }
        }
        // Peers that take the request and never answer: reads wait their timeout, and at most
        // globalReadsMax wait at once; one more is refused at once.
        await nodes[0].transport?.setCut(["ap-south"], false)
        for node in nodes.dropFirst() { await node.transport?.setCut(["us-east"], true) }
        let node = nodes[0]
        let outcomes = await withTaskGroup(of: String.self) { group in
            for _ in 0..<Node.globalReadsMax {
                group.addTask {
                    let answer = try? await node.globalQuery(query)
                    return answer?.missing.map(\.reason).joined(separator: ",") ?? "error"
                }
            }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(500))
                do throws(Node.GlobalReadError) {
                    _ = try await node.globalQuery(query)
                    return "answered"
                } catch .busy {
                    return "busy"
                } catch {
                    return "\(error)"
                }
            }
            var outcomes: [String] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        #expect(outcomes.filter { $0 == "busy" }.count == 1, "\(Set(outcomes))")
        #expect(outcomes.filter { $0 == "no answer within 2.0 seconds,no answer within 2.0 seconds" }.count
            == Node.globalReadsMax, "\(Set(outcomes))")
        for node in nodes { await node.stop() }
    }
}

/// SLOs at global consistency: what another region counted and has not replicated yet counts.
@Suite struct GlobalSLOTests {
    @Test func aGlobalEvaluationCountsWhatIsNotReplicatedYetAndNamesWhoDidNotAnswer() async throws {
        let directory = NSTemporaryDirectory() + "tally-global-slo-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Gossip once an hour: nothing replicates during the test, but reads are answered at once.
        let nodes = try await ClusterTests.start(try await ClusterTests.configs(directory: directory, gossip: "1h"))
        defer { Task { for node in nodes { await node.stop() } } }
        let now = Node.wallClock()
        let failing = (0..<100).map { index in
            BatchItem.event(Event(service: "checkout", operation: "pay", status: index < 20 ? 503 : 200,
                                  latencyMicros: 1_000, user: "u\(index)", timestamp: now))
        }
        guard case .accepted = await nodes[1].ingest(items: failing, client: "test", idempotencyKey: nil) else {
            Issue.record("not accepted")
            return
        }
        let spec = try SLOFile.parse(yaml: "slos: [{name: c, service: checkout, objective: 99, window: 1d}]", file: "t")
        // Until each node has agreed a protocol with its peers (connections come up).
        var view: Node.GlobalSLOView?
        for _ in 0..<100 {
            let (_, seen) = try await nodes[0].sloStatusesGlobally(specs: spec)
            view = seen
            if seen.missing.isEmpty { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let local = try await nodes[0].sloStatuses(specs: spec)
        #expect(local.first?.status.counts == EventCounts(total: 0, bad: 0))
        let (global, _) = try await nodes[0].sloStatusesGlobally(specs: spec)
        #expect(global.first?.status.counts == EventCounts(total: 100, bad: 20))
        #expect(view?.answered == ["us-east", "ap-south", "eu-west"])
        // A region that is down is named, and what the others hold still counts.
        await nodes[2].stop()
        var missing: [String] = []
        for _ in 0..<100 {
            let (statuses, seen) = try await nodes[0].sloStatusesGlobally(specs: spec)
            missing = seen.missing.map(\.region)
            if !missing.isEmpty {
                #expect(statuses.first?.status.counts == EventCounts(total: 100, bad: 20))
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(missing == ["ap-south"])
    }
}
