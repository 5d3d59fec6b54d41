import Foundation
import Testing
@testable import TallyNode

@Suite struct ClusterCheckTests {
    /// Three regions with certificates from one CA, as `tally demo` makes them.
    static func set(directory: String, change: (String, inout String) -> Void = { _, _ in }) throws -> [(file: String, config: NodeConfig)] {
        let regions = ["us-east", "eu-west", "ap-south"]
        let ca = try ClusterCertificates.makeCA(name: "test CA", now: Date(), validFor: 30)
        return try regions.enumerated().map { index, region in
            let tls = (directory as NSString).appendingPathComponent(region)
            let identity = try NodeIdentity(region: region, node: "n1")
            try ClusterCertificates.writeNode(
                try ClusterCertificates.issueNode(identity, dnsNames: ["localhost"], ipAddresses: [], ca: ca, now: Date(), validFor: 30),
                identity: identity, ca: ca.certificate, to: tls, overwrite: true)
            let peers = regions.enumerated().filter { $0.offset != index }
                .map { "    - {node: n1, region: \($0.element), address: 127.0.0.1:\(7100 + $0.offset)}" }
            var yaml = """
                node: n1
                region: \(region)
                listen: 127.0.0.1:\(7070 + index)
                data_dir: /tmp/unused-\(region)
                cluster:
                  listen: 127.0.0.1:\(7100 + index)
                  tls: {certificate: \(tls)/n1.pem, key: \(tls)/n1-key.pem, ca: \(tls)/ca.pem}
                  peers:
                \(peers.joined(separator: "\n"))
                """
            change(region, &yaml)
            return ("\(region).yaml", try NodeConfig.parse(yaml: yaml, file: "\(region).yaml"))
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
