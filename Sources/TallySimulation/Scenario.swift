import Foundation
import TallyNodeCore
import TallyReplica
import TallySLO
import Yams

/// A chaos scenario: regions, their network, the traffic, and a timeline of faults. Read from YAML
/// (`simulations/*.yaml`; docs/simulation.md describes every key).
public struct Scenario: Sendable {
    public var name: String
    public var description: String
    public var regions: [String]
    /// How long traffic runs and faults happen; then every fault is healed, traffic stops, and the
    /// checkers wait up to `quiet` for convergence.
    public var duration: Duration
    public var quiet: Duration
    public var gossipInterval: Duration
    public var checkpointInterval: Duration
    /// Each region's bound on buffered batches per origin (`Limits.replicationBufferBytesMax`):
    /// small in a scenario that must overflow it (a long partition at low traffic).
    public var replicationBufferBytes: Int
    public var traffic: Traffic
    public var network: Network
    public var node: Node
    public var disk: Disk
    public var faults: [Fault]
    /// SLOs every region evaluates on schedule (the short form of a spec file), and what their
    /// alerts must do at the simulated Alertmanager.
    public var slos: [SLOSpec] = []
    public var expectedAlerts: [ExpectedAlert] = []

    /// An alert the run must (or must not) show at the simulated Alertmanager, which removes the
    /// duplicates every region sends.
    public struct ExpectedAlert: Sendable {
        public var slo: String
        public var alertname: String
        public var severity: String?
        public var longWindow: String?
        /// It first fires no earlier than this and no later than `firesBefore`.
        public var firesAfter: Duration?
        public var firesBefore: Duration?
        /// Resolved by then, and stays resolved.
        public var resolvedBefore: Duration?
        /// Some alert received said the sender's view was partial (true), or none did (false).
        public var partial: Bool?
        /// It never fires.
        public var never: Bool
    }

    /// The node core's policies in the run.
    public struct Node: Sendable {
        /// Batches waiting for the disk before new ones are refused (503): small in a scenario that
        /// must overload a region.
        public var pendingBatchesMax: Int
        /// A global read starts at a random region this often (none: never).
        public var globalReadsEvery: Duration?
        /// The peer protocols of the release every region starts on: an older one than this build
        /// in a rolling-upgrade scenario (`upgrade` faults move a region to this build's).
        public var startProtocols: ClosedRange<UInt16>
    }

    /// The simulated disk: a group commit takes `commit` plus uniform(0, `commitJitter`), so commits
    /// started one after another may finish out of order, as SQLite's writer can.
    public struct Disk: Sendable {
        public var commit: Duration
        public var commitJitter: Duration
    }

    public struct Traffic: Sendable {
        /// The share of requests answered 5xx (nil: the workload's own 3%).
        public var errorRate: Double?
        /// Events per second over all regions (split evenly), in batches of `batch`.
        public var eventsPerSecond: Double
        public var batch: Int
        public var services: Int
        public var operations: Int
        public var users: Int
    }

    public struct Network: Sendable {
        /// One-way latency per region pair, by "a->b" (both directions if given once); others from
        /// `Scenario.defaultLatency`.
        public var latency: [String: Duration]
        /// Each message's latency is multiplied by 1 + uniform(0, jitter): jitter reorders messages.
        public var jitter: Double
        public var loss: Double
        public var duplication: Double
    }

    public struct Fault: Sendable {
        public var at: Duration
        public var action: Action
    }

    public enum Action: Sendable {
        /// Cut every link between different groups, both ways.
        case partition(groups: [[String]])
        /// Cut the links from `from` to `to`, that direction only.
        case oneWay(from: [String], to: [String])
        /// Restore every link, release held messages, end loss and duplication overrides.
        case heal
        /// Cut and restore the link between two regions every `period`, until `until`.
        case flap(a: String, b: String, period: Duration, until: Duration)
        /// Messages on these links are held (not lost) until released.
        case hold(from: [String], to: [String])
        case release
        case loss(Double)
        case duplication(Double)
        /// The process dies, losing what its disk had not synced.
        case crash(String)
        case restart(String)
        /// Crash and lose the disk: the region comes back as a new incarnation, a new origin.
        case diskLoss(String)
        /// Crash and lose the store (the SQLite file) but keep the identity file beside it: the
        /// node must notice that they no longer belong together.
        case storeLoss(String)
        /// `tally backup` of the region's store: what its disk holds durably now (the image and
        /// the log after it), kept for a later `restore`.
        case backup(String)
        /// `tally restore` of the region's last backup: the process dies, its data directory is
        /// replaced by the backup as `Restore` says, and it starts as a new incarnation.
        case restore(String)
        /// The process is killed and starts again at once, from its disk, on this build (the
        /// newest release); `downgrade` goes back to the release the scenario started on.
        case upgrade(String)
        case downgrade(String)
        /// The process stops (no ticks, no reads) for a while, then goes on.
        case pause(String, Duration)
        case clockOffset(String, Duration)
        /// The region's clock runs fast (positive) or slow by this many parts per million.
        case clockDrift(String, Double)
        /// Traffic times `factor` for `duration`.
        case spike(factor: Double, duration: Duration)
        /// This share of the region's requests fail with 5xx for `duration` (a bad deploy there).
        case errors(String, rate: Double, duration: Duration)
        /// Clients stop sending to the region (before a disk loss, so that what it acknowledged
        /// has been replicated: an event acknowledged by one region only is lost with its disk).
        case stopTraffic(String)
        case startTraffic(String)
    }

    /// One-way latencies from public inter-region round-trip times (halved), for the region names
    /// Tally's configs use; 60 ms one way for any other pair.
    public static func defaultLatency(_ a: String, _ b: String) -> Duration {
        let roundTrips: [Set<String>: Int] = [
            ["us-east", "us-west"]: 62, ["us-east", "eu-west"]: 76, ["us-east", "ap-south"]: 190,
            ["us-west", "eu-west"]: 140, ["us-west", "ap-south"]: 220, ["eu-west", "ap-south"]: 120,
            ["us-east", "sa-east"]: 115, ["eu-west", "sa-east"]: 185, ["ap-south", "ap-northeast"]: 120,
            ["us-west", "ap-northeast"]: 105, ["eu-west", "ap-northeast"]: 215, ["us-east", "ap-northeast"]: 160,
        ]
        return .milliseconds((roundTrips[[a, b]] ?? 120) / 2)
    }
}

/// A scenario file problem: which file, which key, what is wrong.
public struct ScenarioError: Error, CustomStringConvertible {
    public var file: String
    public var key: String
    public var message: String

    public var description: String { "\(self.file): \(self.key): \(self.message)" }
}

extension Scenario {
    public static func load(path: String) throws -> Scenario {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ScenarioError(file: path, key: "(file)", message: "cannot be read as UTF-8 text")
        }
        return try Self.parse(yaml: text, file: path)
    }

    public static func parse(yaml text: String, file: String) throws -> Scenario {
        func fail(_ key: String, _ message: String) -> ScenarioError {
            ScenarioError(file: file, key: key, message: message)
        }
        if let line = YAMLText.firstAlias(in: text) { throw fail("(document)", "uses a YAML alias (line \(line))") }
        if let line = try YAMLText.firstNonScalarKey(in: text) {
            throw fail("(document)", "has a mapping key that is a list or a mapping (line \(line)); keys are plain names")
        }
        guard let root = try Yams.load(yaml: text) as? [String: Any] else {
            throw fail("(document)", "must be a mapping of keys to values")
        }
        let known: Set<String> = ["name", "description", "regions", "duration", "quiet", "gossip_interval",
                                  "checkpoint_interval", "replication_buffer_bytes", "traffic", "network", "node",
                                  "disk", "faults", "slos", "expect_alerts"]
        for key in root.keys.sorted() where !known.contains(key) {
            throw fail(key, "is not a known key (known: \(known.sorted().joined(separator: ", ")))")
        }
        func duration(_ key: String, _ value: Any?, _ fallback: Duration?) throws -> Duration {
            guard let value else {
                if let fallback { return fallback }
                throw fail(key, "is required")
            }
            guard let parsed = Duration.parse("\(value)") else {
                throw fail(key, "must be a duration such as 300ms, 30s, 5m, 2h or 7d (got \(value))")
            }
            return parsed
        }
        func number(_ key: String, _ value: Any?, _ fallback: Double, _ range: ClosedRange<Double>) throws -> Double {
            guard let value else { return fallback }
            guard let parsed = (value as? Double) ?? (value as? Int).map(Double.init), range.contains(parsed) else {
                throw fail(key, "must be a number in \(range.lowerBound)...\(range.upperBound) (got \(value))")
            }
            return parsed
        }
        func integer(_ key: String, _ value: Any?, _ fallback: Int, _ range: ClosedRange<Int>) throws -> Int {
            guard let value else { return fallback }
            guard let parsed = value as? Int, range.contains(parsed) else {
                throw fail(key, "must be a whole number in \(range.lowerBound)...\(range.upperBound) (got \(value))")
            }
            return parsed
        }
        func names(_ key: String, _ value: Any?, regions: [String]) throws -> [String] {
            let list = (value as? [Any])?.map { "\($0)" } ?? (value.map { ["\($0)"] } ?? [])
            for name in list where !regions.contains(name) {
                throw fail(key, "names \(name), which is not one of the regions \(regions)")
            }
            guard !list.isEmpty else { throw fail(key, "must name at least one region") }
            return list
        }
        guard let regions = (root["regions"] as? [Any])?.map({ "\($0)" }), regions.count >= 2, regions.count <= 16,
            Set(regions).count == regions.count
        else { throw fail("regions", "must list 2 to 16 distinct region names") }

        let trafficMap = root["traffic"] as? [String: Any] ?? [:]
        let traffic = Traffic(
            errorRate: try trafficMap["error_rate"].map { try number("traffic.error_rate", $0, 0, 0...1) },
            eventsPerSecond: try number("traffic.events_per_second", trafficMap["events_per_second"], 1_000, 0...1e7),
            batch: try integer("traffic.batch", trafficMap["batch"], 100, 1...10_000),
            services: try integer("traffic.services", trafficMap["services"], 5, 1...1_000),
            operations: try integer("traffic.operations", trafficMap["operations"], 10, 1...1_000),
            users: try integer("traffic.users", trafficMap["users"], 10_000, 1...10_000_000))

        let networkMap = root["network"] as? [String: Any] ?? [:]
        var latency: [String: Duration] = [:]
        for (pair, value) in (networkMap["latency"] as? [String: Any] ?? [:]).sorted(by: { $0.key < $1.key }) {
            let ends = pair.components(separatedBy: "->").map { $0.trimmingCharacters(in: .whitespaces) }
            guard ends.count == 2, regions.contains(ends[0]), regions.contains(ends[1]) else {
                throw fail("network.latency.\(pair)", "must be written region->region with known regions")
            }
            let oneWay = try duration("network.latency.\(pair)", value, nil)
            latency["\(ends[0])->\(ends[1])"] = oneWay
            if latency["\(ends[1])->\(ends[0])"] == nil { latency["\(ends[1])->\(ends[0])"] = oneWay }
        }
        let network = Network(
            latency: latency, jitter: try number("network.jitter", networkMap["jitter"], 0.2, 0...10),
            loss: try number("network.loss", networkMap["loss"], 0, 0...0.9),
            duplication: try number("network.duplication", networkMap["duplication"], 0, 0...0.9))

        let nodeMap = root["node"] as? [String: Any] ?? [:]
        let diskMap = root["disk"] as? [String: Any] ?? [:]
        let node = Node(
            pendingBatchesMax: try integer("node.pending_batches_max", nodeMap["pending_batches_max"], 4_096,
                                           1...1_000_000),
            globalReadsEvery: nodeMap["global_reads_every"].map { "\($0)" } == "never" ? nil
                : try duration("node.global_reads_every", nodeMap["global_reads_every"], .seconds(10)),
            startProtocols: NodeCore.protocols.lowerBound...UInt16(try integer(
                "node.start_protocol_max", nodeMap["start_protocol_max"], Int(NodeCore.protocols.upperBound),
                Int(NodeCore.protocols.lowerBound)...Int(NodeCore.protocols.upperBound))))
        let nodeKeys: Set<String> = ["pending_batches_max", "global_reads_every", "start_protocol_max"]
        for key in nodeMap.keys.sorted() where !nodeKeys.contains(key) {
            throw fail("node.\(key)", "is not a known key (known: \(nodeKeys.sorted().joined(separator: ", ")))")
        }
        let disk = Disk(commit: try duration("disk.commit", diskMap["commit"], .milliseconds(2)),
                        commitJitter: try duration("disk.commit_jitter", diskMap["commit_jitter"], .milliseconds(6)))

        var faults: [Fault] = []
        for (index, entry) in ((root["faults"] as? [Any]) ?? []).enumerated() {
            let key = "faults[\(index)]"
            guard let map = entry as? [String: Any], let at = map["at"] else {
                throw fail(key, "must be a mapping with `at` and one action")
            }
            let time = try duration("\(key).at", at, nil)
            let actions = map.keys.filter { $0 != "at" && $0 != "for" && $0 != "until" && $0 != "period" }.sorted()
            guard actions.count == 1, let name = actions.first else {
                throw fail(key, "must have exactly one action besides `at` (got \(actions))")
            }
            let value = map[name]
            let action: Action
            switch name {
            case "partition":
                guard let groups = value as? [Any], groups.count >= 2 else {
                    throw fail("\(key).partition", "must list at least two groups of regions")
                }
                action = .partition(groups: try groups.map { try names("\(key).partition", $0, regions: regions) })
            case "isolate":
                let isolated = try names("\(key).isolate", value, regions: regions)
                action = .partition(groups: [isolated, regions.filter { !isolated.contains($0) }])
            case "one_way":
                guard let ends = value as? [String: Any] else { throw fail("\(key).one_way", "must have from and to") }
                action = .oneWay(from: try names("\(key).one_way.from", ends["from"], regions: regions),
                                 to: try names("\(key).one_way.to", ends["to"], regions: regions))
            case "hold":
                guard let ends = value as? [String: Any] else { throw fail("\(key).hold", "must have from and to") }
                action = .hold(from: try names("\(key).hold.from", ends["from"], regions: regions),
                               to: try names("\(key).hold.to", ends["to"], regions: regions))
            case "flap":
                let pair = try names("\(key).flap", value, regions: regions)
                guard pair.count == 2 else { throw fail("\(key).flap", "must name two regions") }
                action = .flap(a: pair[0], b: pair[1], period: try duration("\(key).period", map["period"], .seconds(10)),
                               until: try duration("\(key).until", map["until"], nil))
            case "heal": action = .heal
            case "release": action = .release
            case "loss": action = .loss(try number("\(key).loss", value, 0, 0...0.9))
            case "duplication": action = .duplication(try number("\(key).duplication", value, 0, 0...0.9))
            case "crash": action = .crash(try names("\(key).crash", value, regions: regions)[0])
            case "restart": action = .restart(try names("\(key).restart", value, regions: regions)[0])
            case "disk_loss": action = .diskLoss(try names("\(key).disk_loss", value, regions: regions)[0])
            case "store_loss": action = .storeLoss(try names("\(key).store_loss", value, regions: regions)[0])
            case "backup": action = .backup(try names("\(key).backup", value, regions: regions)[0])
            case "restore": action = .restore(try names("\(key).restore", value, regions: regions)[0])
            case "upgrade": action = .upgrade(try names("\(key).upgrade", value, regions: regions)[0])
            case "downgrade": action = .downgrade(try names("\(key).downgrade", value, regions: regions)[0])
            case "pause":
                action = .pause(try names("\(key).pause", value, regions: regions)[0],
                                try duration("\(key).for", map["for"], nil))
            case "clock_offset", "clock_jump":
                guard let spec = value as? [String: Any] else { throw fail("\(key).\(name)", "must have region and by") }
                let region = try names("\(key).\(name).region", spec["region"], regions: regions)[0]
                let text = "\(spec["by"] ?? "")"
                let negative = text.hasPrefix("-")
                let magnitude = try duration("\(key).\(name).by", negative ? String(text.dropFirst()) : text, nil)
                action = .clockOffset(region, negative ? .zero - magnitude : magnitude)
            case "clock_drift":
                guard let spec = value as? [String: Any] else { throw fail("\(key).clock_drift", "must have region and ppm") }
                action = .clockDrift(try names("\(key).clock_drift.region", spec["region"], regions: regions)[0],
                                     try number("\(key).clock_drift.ppm", spec["ppm"], 0, -100_000...100_000))
            case "spike":
                action = .spike(factor: try number("\(key).spike", value, 10, 0...1_000),
                                duration: try duration("\(key).for", map["for"], nil))
            case "errors":
                guard let spec = value as? [String: Any] else { throw fail("\(key).errors", "must have region and rate") }
                action = .errors(try names("\(key).errors.region", spec["region"], regions: regions)[0],
                                 rate: try number("\(key).errors.rate", spec["rate"], 1, 0...1),
                                 duration: try duration("\(key).for", map["for"], nil))
            case "stop_traffic": action = .stopTraffic(try names("\(key).stop_traffic", value, regions: regions)[0])
            case "start_traffic": action = .startTraffic(try names("\(key).start_traffic", value, regions: regions)[0])
            default:
                throw fail("\(key).\(name)", "is not a known fault (partition, isolate, one_way, hold, release, flap, "
                    + "heal, loss, duplication, crash, restart, disk_loss, store_loss, backup, restore, upgrade, downgrade, pause, "
                    + "clock_offset, clock_jump, "
                    + "clock_drift, spike, errors, stop_traffic, start_traffic)")
            }
            faults.append(Fault(at: time, action: action))
        }
        let scenarioDuration = try duration("duration", root["duration"], nil)
        for (index, fault) in faults.enumerated() where fault.at > scenarioDuration {
            throw fail("faults[\(index)].at", "is after the scenario's duration")
        }
        for (index, fault) in faults.enumerated() {
            guard case .restore(let region) = fault.action else { continue }
            let backedUp = faults.contains {
                if case .backup(region) = $0.action { return $0.at < fault.at }
                return false
            }
            if !backedUp { throw fail("faults[\(index)].restore", "\(region) has no backup before it") }
        }
        var slos: [SLOSpec] = []
        if let list = root["slos"] {
            do {
                slos = try SLOFile.specs(fromList: list, file: file)
            } catch {
                throw fail(error.key, "\(error.value.isEmpty ? "" : "'\(error.value)' ")\(error.message)")
            }
        }
        var expected: [ExpectedAlert] = []
        for (index, entry) in ((root["expect_alerts"] as? [Any]) ?? []).enumerated() {
            let key = "expect_alerts[\(index)]"
            guard let map = entry as? [String: Any] else { throw fail(key, "must be a mapping with at least `slo`") }
            let known: Set<String> = ["slo", "alertname", "severity", "long_window", "fires_after", "fires_before",
                                      "resolved_before", "partial", "never"]
            for name in map.keys.sorted() where !known.contains(name) {
                throw fail("\(key).\(name)", "is not a known key (known: \(known.sorted().joined(separator: ", ")))")
            }
            guard let slo = map["slo"].map({ "\($0)" }), slos.contains(where: { $0.name == slo }) else {
                throw fail("\(key).slo", "must name one of the scenario's slos")
            }
            func optionalDuration(_ name: String) throws -> Duration? {
                try map[name].map { try duration("\(key).\(name)", $0, nil) }
            }
            func flag(_ name: String) throws -> Bool? {
                guard let value = map[name] else { return nil }
                guard let bool = value as? Bool else { throw fail("\(key).\(name)", "must be true or false") }
                return bool
            }
            expected.append(ExpectedAlert(
                slo: slo, alertname: map["alertname"].map { "\($0)" } ?? "TallySLOBurnRate",
                severity: map["severity"].map { "\($0)" }, longWindow: map["long_window"].map { "\($0)" },
                firesAfter: try optionalDuration("fires_after"), firesBefore: try optionalDuration("fires_before"),
                resolvedBefore: try optionalDuration("resolved_before"), partial: try flag("partial"),
                never: try flag("never") ?? false))
        }
        return Scenario(
            name: root["name"].map { "\($0)" } ?? (file as NSString).lastPathComponent,
            description: root["description"].map { "\($0)" } ?? "",
            regions: regions, duration: scenarioDuration,
            quiet: try duration("quiet", root["quiet"], .seconds(60)),
            gossipInterval: try duration("gossip_interval", root["gossip_interval"], .seconds(1)),
            checkpointInterval: try duration("checkpoint_interval", root["checkpoint_interval"], .seconds(10)),
            replicationBufferBytes: try integer("replication_buffer_bytes", root["replication_buffer_bytes"],
                                                Limits().replicationBufferBytesMax, 4_096...1 << 30),
            traffic: traffic, network: network, node: node, disk: disk, faults: faults.sorted { $0.at < $1.at },
            slos: slos, expectedAlerts: expected)
    }
}
