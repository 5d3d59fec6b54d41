import Foundation
import X509

/// Checks a set of node configs as one cluster: what no single file can show.
///
/// Every peer a config names must be a node of the set (when the set holds more than one node), at
/// most one node per region and no id twice, peers must list each other, and each node's TLS files
/// must exist, name the node (`tally://REGION/NODE`), verify against its CA file now, and all
/// nodes must share one CA. Each problem names the file and the key.
public enum ClusterCheck {
    public static func problems(_ configs: [(file: String, config: NodeConfig)], now: Date = Date()) -> [String] {
        var problems: [String] = []
        let clustered = configs.filter { $0.config.cluster != nil }
        var fileOfNode: [String: String] = [:]
        var fileOfRegion: [String: String] = [:]
        for (file, config) in configs {
            let id = "\(config.region)/\(config.node)"
            if let other = fileOfNode[id] {
                problems.append("\(file): node: \(id) is also the node of \(other)")
            } else if let other = fileOfRegion[config.region], configs.count > 1 {
                problems.append("\(file): region: \(config.region) already has a node in \(other) (one node per region)")
            }
            fileOfNode[id] = file
            fileOfRegion[config.region] = fileOfRegion[config.region] ?? file
        }
        let known = Set(clustered.map { "\($0.config.region)/\($0.config.node)" })
        var authorities: [(file: String, ca: Certificate)] = []
        for (file, config) in clustered {
            guard let cluster = config.cluster else { continue }
            for (index, peer) in cluster.peers.enumerated() {
                let id = "\(peer.region)/\(peer.node)"
                if clustered.count > 1 && !known.contains(id) {
                    problems.append("\(file): cluster.peers[\(index)]: \(id) is not a node of this set")
                }
                if let other = clustered.first(where: { "\($0.config.region)/\($0.config.node)" == id }) {
                    if other.config.cluster?.peers.contains(where: { $0.region == config.region && $0.node == config.node }) == false {
                        problems.append("\(file): cluster.peers[\(index)]: \(id) does not list \(config.region)/\(config.node) as a peer (\(other.file))")
                    }
                    let address = Self.hostPort(peer.host, peer.port)
                    if let advertised = other.config.cluster?.advertise, advertised != address {
                        problems.append("\(file): cluster.peers[\(index)].address: \(address) is not the address \(id) advertises (\(advertised), in \(other.file))")
                    }
                }
            }
            if cluster.insecure {
                problems.append("\(file): cluster.insecure: true: peer connections are plaintext and unauthenticated; "
                    + "use TLS (tally certs) for anything but a throwaway test")
            } else {
                problems += Self.tlsProblems(file: file, config: config, cluster: cluster, now: now,
                                              authorities: &authorities)
            }
        }
        // A node drops a connection whose frame is over its cap: every node must take what the
        // others send.
        let budgets = Set(clustered.compactMap { $0.config.cluster?.gossipBytesMax })
        if budgets.count > 1 {
            problems.append("cluster: cluster.gossip_bytes_max differs between the nodes ("
                + clustered.map { "\($0.file): \($0.config.cluster?.gossipBytesMax ?? 0)" }.joined(separator: ", ")
                + "); a node refuses frames over its own limit")
        }
        if let first = authorities.first, authorities.contains(where: { $0.ca != first.ca }) {
            let others = authorities.filter { $0.ca != first.ca }.map(\.file)
            problems.append("cluster: the nodes do not share one CA: \(others.joined(separator: ", ")) use another CA than \(first.file)")
        }
        return problems
    }

    /// `host:port` as a config writes it (IPv6 in brackets).
    static func hostPort(_ host: String, _ port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    private static func tlsProblems(file: String, config: NodeConfig, cluster: NodeConfig.ClusterConfig, now: Date,
                                    authorities: inout [(file: String, ca: Certificate)]) -> [String]
    {
        let (fatal, warnings, ca) = Self.certificateProblems(config: config, cluster: cluster, now: now)
        if let ca { authorities.append((file, ca)) }
        return (fatal + warnings).map { "\(file): \($0)" }
    }

    /// What is wrong with a node's TLS files: `fatal`, problems that would make every peer refuse
    /// it (a file that does not load, an expired certificate, one another CA signed, one naming
    /// another node); `warnings`, those that will soon (expiry in under 14 days). A SIGHUP reload
    /// with a fatal problem is refused and the node keeps the files it had.
    public static func certificateProblems(config: NodeConfig, cluster: NodeConfig.ClusterConfig, now: Date)
        -> (fatal: [String], warnings: [String], ca: Certificate?)
    {
        let ca: Certificate
        let leaf: Certificate
        do {
            ca = try ClusterCertificates.readCertificate(cluster.caPath)
            leaf = try ClusterCertificates.readCertificate(cluster.certificatePath)
            _ = try ClusterCertificates.readText(cluster.keyPath)
        } catch {
            return (["cluster.tls: \(error)"], [], nil)
        }
        var problems: [String] = []
        var warnings: [String] = []
        if now > leaf.notValidAfter {
            problems.append("cluster.tls.certificate: expired at \(leaf.notValidAfter)")
        } else if leaf.notValidAfter.timeIntervalSince(now) < 14 * 86_400 {
            warnings.append("cluster.tls.certificate: expires at \(leaf.notValidAfter), in under 14 days")
        }
        if leaf.issuer != ca.subject || !ca.publicKey.isValidSignature(leaf.signature, for: leaf) {
            problems.append("cluster.tls.certificate: not signed by the CA in \(cluster.caPath)")
        }
        switch Result(catching: { try NodeIdentity(certificate: leaf) }) {
        case .success(let identity) where identity.region != config.region || identity.node != config.node:
            problems.append("cluster.tls.certificate: names \(identity.uri), not tally://\(config.region)/\(config.node)")
        case .failure(let error):
            problems.append("cluster.tls.certificate: \(error)")
        default:
            break
        }
        return (problems, warnings, ca)
    }
}
