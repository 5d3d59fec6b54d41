import Foundation

/// A cluster of regions on one machine, one node (`n1`) each: a CA, each node's certificate in
/// `DIRECTORY/REGION/tls`, and each node's config as YAML. What `tally demo` runs, and what the
/// cluster tests start from.
package struct LoopbackCluster: Sendable {
    package struct Member: Sendable {
        package var region: String
        /// The node's config, ready to parse (`NodeConfig.parse`) or write.
        package var yaml: String
    }

    package var members: [Member]

    /// Writes the CA and node certificates under `directory` and makes each region's config: HTTP
    /// on `httpPorts[i]` (0: any free port), peers on `peerPorts[i]`, data in
    /// `DIRECTORY/REGION/data`, an API key named `local` for `secret`.
    package static func make(
        in directory: String, regions: [String], httpPorts: [Int], peerPorts: [Int], gossipInterval: String? = nil,
        secret: String, certificateDays: Int = 30, extra: String = ""
    ) throws -> LoopbackCluster {
        precondition(httpPorts.count == regions.count && peerPorts.count == regions.count, "a port per region")
        let ca = try ClusterCertificates.makeCA(name: "Tally loopback CA", now: Date(), validFor: certificateDays)
        try ClusterCertificates.writeCA(ca, to: (directory as NSString).appendingPathComponent("ca"), overwrite: true)
        let keyHash = NodeConfig.hash(secret: secret).map { String(format: "%02x", $0) }.joined()
        let members = try regions.enumerated().map { index, region in
            let identity = try NodeIdentity(region: region, node: "n1")
            let regionDirectory = (directory as NSString).appendingPathComponent(region)
            let tls = (regionDirectory as NSString).appendingPathComponent("tls")
            try ClusterCertificates.writeNode(
                try ClusterCertificates.issueNode(identity, dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], ca: ca,
                                                  now: Date(), validFor: certificateDays),
                identity: identity, ca: ca.certificate, to: tls, overwrite: true)
            let peers = regions.enumerated().filter { $0.offset != index }.map {
                "    - {node: n1, region: \($0.element), address: 127.0.0.1:\(peerPorts[$0.offset])}"
            }
            let yaml = """
                node: n1
                region: \(region)
                listen: 127.0.0.1:\(httpPorts[index])
                data_dir: \((regionDirectory as NSString).appendingPathComponent("data"))
                api_keys:
                  - name: local
                    sha256: \(keyHash)
                cluster:
                  listen: 127.0.0.1:\(peerPorts[index])
                \(gossipInterval.map { "  gossip_interval: \($0)" } ?? "")
                  tls: {certificate: \(tls)/n1.pem, key: \(tls)/n1-key.pem, ca: \(tls)/ca.pem}
                  peers:
                \(peers.joined(separator: "\n"))
                \(extra)
                """
            return Member(region: region, yaml: yaml)
        }
        return LoopbackCluster(members: members)
    }
}
