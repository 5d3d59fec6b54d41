import Foundation
import Testing
@testable import TallyNode

@Suite struct ClusterCheckTests {
    /// Three regions with certificates from one CA, as `tally demo` makes them.
    static func set(directory: String, change: (String, inout String) -> Void = { _, _ in }) throws -> [(file: String, config: NodeConfig)] {
        let regions = ["us-east", "eu-west", "ap-south"]
        let cluster = try LoopbackCluster.make(
            in: directory, regions: regions, httpPorts: regions.indices.map { 7070 + $0 },
            peerPorts: regions.indices.map { 7100 + $0 }, secret: "secret")
        return try cluster.members.map { member in
            var yaml = member.yaml
            change(member.region, &yaml)
            return ("\(member.region).yaml", try NodeConfig.parse(yaml: yaml, file: "\(member.region).yaml"))
        }
    }

    static func directory() -> String {
        NSTemporaryDirectory() + "tally-check-\(UUID().uuidString)"
    }

    @Test func aConsistentSetHasNoProblems() throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(ClusterCheck.problems(try Self.set(directory: directory)) == [])
    }

    @Test func unknownPeersOneSidedPeersAndDuplicatesAreNamed() throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var set = try Self.set(directory: directory) { region, yaml in
            if region == "ap-south" { yaml = yaml.replacingOccurrences(of: "region: eu-west,", with: "region: sa-east,") }
        }
        let problems = ClusterCheck.problems(set)
        #expect(problems.contains { $0.hasPrefix("ap-south.yaml: cluster.peers[1]: sa-east/n1 is not a node of this set") }, "\(problems)")
        #expect(problems.contains { $0.hasPrefix("eu-west.yaml: cluster.peers[1]: ap-south/n1 does not list eu-west/n1") }, "\(problems)")
        set.append(("copy.yaml", set[0].config))
        #expect(ClusterCheck.problems(set).contains { $0.hasPrefix("copy.yaml: node: us-east/n1 is also the node of us-east.yaml") })
    }

    @Test func certificatesMustNameTheNodeAndShareTheCA() throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var set = try Self.set(directory: directory)
        // eu-west's config points at us-east's certificate: it names the wrong node.
        let usEast = try #require(set[0].config.cluster)
        set[1].config.cluster?.certificatePath = usEast.certificatePath
        set[1].config.cluster?.keyPath = usEast.keyPath
        // ap-south gets a certificate from another CA, with that CA as its CA file.
        let other = try ClusterCertificates.makeCA(name: "other", now: Date(), validFor: 30)
        let identity = try NodeIdentity(region: "ap-south", node: "n1")
        let path = (directory as NSString).appendingPathComponent("other")
        try ClusterCertificates.writeNode(
            try ClusterCertificates.issueNode(identity, dnsNames: ["localhost"], ipAddresses: [], ca: other, now: Date(), validFor: 30),
            identity: identity, ca: other.certificate, to: path, overwrite: true)
        set[2].config.cluster?.certificatePath = "\(path)/n1.pem"
        set[2].config.cluster?.caPath = "\(path)/ca.pem"
        let problems = ClusterCheck.problems(set)
        #expect(problems.contains { $0 == "eu-west.yaml: cluster.tls.certificate: names tally://us-east/n1, not tally://eu-west/n1" }, "\(problems)")
        #expect(problems.contains { $0.hasPrefix("cluster: the nodes do not share one CA: ap-south.yaml") }, "\(problems)")
        // A missing file is named.
        set[0].config.cluster?.keyPath = "/nonexistent/key.pem"
        #expect(ClusterCheck.problems(set).contains { $0.contains("us-east.yaml: cluster.tls") && $0.contains("/nonexistent/key.pem") })
    }

    @Test func peersMustDialTheAddressANodeAdvertises() throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let set = try Self.set(directory: directory) { region, yaml in
            // eu-west says peers reach it at 127.0.0.1:7101 (so they do); ap-south says 7999 (they do not).
            let port = ["eu-west": 7101, "ap-south": 7999][region]
            if let port { yaml = yaml.replacingOccurrences(of: "cluster:", with: "cluster:\n  advertise: 127.0.0.1:\(port)") }
        }
        #expect(set[1].config.cluster?.advertise == "127.0.0.1:7101")
        let problems = ClusterCheck.problems(set)
        #expect(problems.count == 2, "\(problems)")
        #expect(problems.contains {
            $0 == "us-east.yaml: cluster.peers[1].address: 127.0.0.1:7102 is not the address ap-south/n1 advertises (127.0.0.1:7999, in ap-south.yaml)"
        }, "\(problems)")
        #expect(throws: ConfigError.self) {
            _ = try Self.set(directory: directory) { _, yaml in
                yaml = yaml.replacingOccurrences(of: "cluster:", with: "cluster:\n  advertise: 0.0.0.0:7100")
            }
        }
    }

    @Test func insecureIsFlaggedAndMustNotBeMixedWithTLS() throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let set = try Self.set(directory: directory) { region, yaml in
            guard region == "eu-west" else { return }
            yaml = yaml.split(separator: "\n").filter { !$0.contains("tls:") }.joined(separator: "\n")
                .replacingOccurrences(of: "cluster:", with: "cluster:\n  insecure: true")
        }
        #expect(set[1].config.cluster?.insecure == true)
        #expect(ClusterCheck.problems(set) == [
            "eu-west.yaml: cluster.insecure: true: peer connections are plaintext and unauthenticated; "
                + "use TLS (tally certs) for anything but a throwaway test",
        ])
        // Both, or neither: refused when the file is read, naming the key.
        #expect(throws: ConfigError.self) {
            _ = try Self.set(directory: directory) { _, yaml in
                yaml = yaml.replacingOccurrences(of: "cluster:", with: "cluster:\n  insecure: true")
            }
        }
        do {
            _ = try Self.set(directory: directory) { _, yaml in
                yaml = yaml.split(separator: "\n").filter { !$0.contains("tls:") }.joined(separator: "\n")
            }
            Issue.record("a cluster without tls and without insecure was accepted")
        } catch let error as ConfigError {
            #expect(error.key == "cluster.tls" && "\(error)".contains("insecure: true"), "\(error)")
        }
    }
}

/// The example region configs under deploy/ must stay valid as the config format changes.
@Suite struct DeployConfigTests {
    @Test func everyExampleRegionConfigParsesAndTheSetIsConsistent() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy/regions").path
        let files = try FileManager.default.contentsOfDirectory(atPath: root).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files == ["ap-south.yaml", "eu-west.yaml", "us-east.yaml"])
        let configs = try files.map { file in
            (file: file, config: try NodeConfig.load(path: (root as NSString).appendingPathComponent(file)))
        }
        // Their certificates live on the servers (/etc/tally); everything else must check out.
        let problems = ClusterCheck.problems(configs).filter { !$0.contains(": cluster.tls: ") }
        #expect(problems == [])
        #expect(configs.allSatisfy { $0.config.cluster?.insecure == false && $0.config.cluster?.peers.count == 2 })
    }
}
