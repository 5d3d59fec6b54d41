import ArgumentParser
import Foundation
import TallyNode

/// `tally certs`: the cluster CA and node certificates for mutual TLS between regions.
struct Certs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "Create the cluster CA and node certificates for mutual TLS between regions.",
        discussion: """
            Files have predictable names: DIR/ca.pem and DIR/ca-key.pem for the CA; NODE.pem, \
            NODE-key.pem and a copy of ca.pem for a node. Keys are P-256 and readable by their owner \
            only. A node certificate names its identity as the URI tally://REGION/NODE, which peers \
            check against their config. To bring your own CA instead, see docs/transport.md, "Bring your own CA".
            """,
        subcommands: [CA.self, Node.self])

    struct CA: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a cluster CA (ca.pem, ca-key.pem).")

        @Option(help: "Directory to write to (created if missing).")
        var out: String
        @Option(help: "The CA's common name.")
        var name = "Tally cluster CA"
        @Option(help: "Days the CA certificate is valid.")
        var days = 3_650
        @Flag(help: "Replace existing files.")
        var force = false

        func run() throws {
            guard self.days > 0 else { throw ValidationError("--days must be positive") }
            do {
                let ca = try ClusterCertificates.makeCA(name: self.name, now: Date(), validFor: self.days)
                try ClusterCertificates.writeCA(ca, to: self.out, overwrite: self.force)
            } catch {
                throw CommandFailure(message: "tally certs ca: \(error)")
            }
            print("wrote \(self.out)/\(ClusterCertificates.caCertificateFile) and \(self.out)/\(ClusterCertificates.caKeyFile)")
        }
    }

    struct Node: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a node certificate signed by the cluster CA (NODE.pem, NODE-key.pem, ca.pem).",
            usage: "tally certs node --ca <dir> --node <name> --region <name> --out <dir> ...")

        @Option(help: "Directory holding ca.pem and ca-key.pem.")
        var ca: String
        @Option(help: "Node id: a DNS label (a-z, 0-9, '-').")
        var node: String
        @Option(help: "Region: a DNS label (a-z, 0-9, '-').")
        var region: String
        @Option(help: "A DNS name peers dial this node by (repeatable).")
        var dns: [String] = []
        @Option(help: "An IP address peers dial this node by (repeatable).")
        var ip: [String] = []
        @Option(help: "Directory to write to (created if missing).")
        var out: String
        @Option(help: "Days the certificate is valid.")
        var days = 365
        @Flag(help: "Replace existing files.")
        var force = false

        func run() throws {
            guard self.days > 0 else { throw ValidationError("--days must be positive") }
            guard !self.dns.isEmpty || !self.ip.isEmpty else {
                throw ValidationError("give at least one --dns or --ip that peers dial this node by")
            }
            do {
                let identity = try NodeIdentity(region: self.region, node: self.node)
                let ca = try ClusterCertificates.readCA(from: self.ca)
                let issued = try ClusterCertificates.issueNode(
                    identity, dnsNames: self.dns, ipAddresses: self.ip, ca: ca, now: Date(), validFor: self.days)
                try ClusterCertificates.writeNode(issued, identity: identity, ca: ca.certificate, to: self.out,
                                                  overwrite: self.force)
                print("wrote \(self.out)/\(ClusterCertificates.certificateFile(node: self.node)), "
                    + "\(self.out)/\(ClusterCertificates.keyFile(node: self.node)) and \(self.out)/\(ClusterCertificates.caCertificateFile) "
                    + "for \(identity.uri)")
            } catch {
                throw CommandFailure(message: "tally certs node: \(error)")
            }
        }
    }
}
