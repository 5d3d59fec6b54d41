import Prometheus
import Synchronization
import TallyAggregates
import TallyReplica
import TallySLO

/// The node's own metrics, in a swift-prometheus registry: counters where the node counts, and
/// histograms for its latencies (group commit, checkpoint, acknowledgement, query). Values the
/// node holds elsewhere (queue depth, storage size, staleness) are gauges set as `/metrics` is read;
/// counts kept by other parts (the transport's dropped frames, the store's entries) are counters
/// advanced to their owner's total at the same moment. `tally serve` also bootstraps swift-metrics
/// with this registry, so Hummingbird's metrics middleware (`hb_requests`, `hb_request_duration`)
/// lands here too. The names are the ones `deploy/prometheus/tally-alerts.yaml` and the dashboard use.
public final class NodeMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    static let batchOutcomes = ["accepted", "replayed", "refused", "overloaded", "rate_limited", "failed"]
    static let rejectionReasons = ["invalid", "future_timestamp", "expired", "operation_limit", "service_limit"]
    static let otlpSpanOutcomes = ["accepted", "rejected", "duplicate", "skipped", "refused"]
    static let otlpPointOutcomes = ["accepted", "rejected", "skipped", "refused"]
    static let statsdLineOutcomes = ["mapped", "invalid", "skipped", "dropped"]
    static let statsdItemOutcomes = ["accepted", "rejected", "refused"]
    /// What the API and the OTLP receiver refuse with before ingest.
    static let refusalStatuses = [400, 401, 404, 405, 413, 415, 429, 503]
    static let refusedHelp = "Requests refused before ingest, by status."
    /// Latency buckets: 100 µs to 10 s, roughly x2.5 apart.
    static let latencyBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
    ]

    private let eventsAccepted: Counter
    private let eventsDuplicate: Counter
    private let eventsRejected: [String: Counter]
    private let batches: [String: Counter]
    private let refusedReads: Counter
    private let refusedRequests: [Int: Counter]
    private let queriesStopped: Counter
    private let otlpSpans: [String: Counter]
    private let otlpPoints: [String: Counter]
    private let statsdDatagrams: Counter
    private let statsdLines: [String: Counter]
    private let statsdItems: [String: Counter]
    private let commit: DurationHistogram
    private let checkpoint: DurationHistogram
    private let acknowledgement: DurationHistogram
    private let queries: [Bool: DurationHistogram]
    /// Counters whose totals another part of the node keeps: the total already added, by counter.
    private let mirrored = Mutex<[ObjectIdentifier: Int64]>([:])

    public init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        func counters(_ name: String, _ label: String, _ values: [String], _ help: String) -> [String: Counter] {
            Dictionary(uniqueKeysWithValues: values.map {
                ($0, registry.makeCounter(name: name, labels: [(label, $0)], help: help))
            })
        }
        self.eventsAccepted = registry.makeCounter(name: "tally_ingest_events_accepted_total", help: "Events counted.")
        self.eventsRejected = counters("tally_ingest_events_rejected_total", "reason", Self.rejectionReasons,
                                       "Events rejected, by reason.")
        self.eventsDuplicate = registry.makeCounter(
            name: "tally_ingest_events_duplicate_total",
            help: "Events not counted again: their OTLP span was counted within the span window.")
        self.batches = counters("tally_ingest_batches_total", "outcome", Self.batchOutcomes, "Ingest batches, by outcome.")
        self.refusedRequests = Dictionary(uniqueKeysWithValues: Self.refusalStatuses.map {
            ($0, registry.makeCounter(name: "tally_http_requests_refused_total", labels: [("status", "\($0)")],
                                      help: Self.refusedHelp))
        })
        self.refusedReads = registry.makeCounter(name: "tally_global_read_frames_refused_total",
                                                 help: "Global-read frames from peers that did not decode.")
        self.queriesStopped = registry.makeCounter(name: "tally_queries_stopped_total",
                                                   help: "Queries stopped because their client went away.")
        self.otlpSpans = counters(
            "tally_otlp_spans_total", "outcome", Self.otlpSpanOutcomes,
            "OTLP spans received, by outcome: accepted, rejected, duplicate, skipped (a kind not mapped), refused (the request was).")
        self.otlpPoints = counters(
            "tally_otlp_points_total", "outcome", Self.otlpPointOutcomes,
            "OTLP metric data points, by outcome: accepted, rejected, refused; skipped counts metrics not mapped.")
        self.statsdDatagrams = registry.makeCounter(name: "tally_statsd_datagrams_total",
                                                    help: "StatsD datagrams received over UDP.")
        self.statsdLines = counters(
            "tally_statsd_lines_total", "outcome", Self.statsdLineOutcomes,
            "StatsD lines, by outcome: mapped, invalid, skipped (gauges, events, service checks), dropped (too many waiting).")
        self.statsdItems = counters(
            "tally_statsd_items_total", "outcome", Self.statsdItemOutcomes,
            "Events and counts from StatsD lines, by outcome: accepted, rejected (a limit or a bad field), refused (the node was overloaded or rate limiting).")
        self.commit = registry.makeDurationHistogram(
            name: "tally_group_commit_seconds", buckets: Self.latencyBuckets,
            help: "Log transactions committed (one fsync each), by how long they took.")
        self.checkpoint = registry.makeDurationHistogram(
            name: "tally_checkpoint_seconds", buckets: Self.latencyBuckets,
            help: "Checkpoints written (changed aggregates, keys), by how long they took.")
        self.acknowledgement = registry.makeDurationHistogram(
            name: "tally_ingest_acknowledgement_seconds", buckets: Self.latencyBuckets,
            help: "Batches answered 200, by the time from their arrival to their answer (durable by then).")
        self.queries = [
            false: registry.makeDurationHistogram(name: "tally_query_seconds", labels: [("consistency", "local")],
                                                  buckets: Self.latencyBuckets, help: "Queries answered, by how long they took."),
            true: registry.makeDurationHistogram(name: "tally_query_seconds", labels: [("consistency", "global")],
                                                 buckets: Self.latencyBuckets, help: "Queries answered, by how long they took."),
        ]
    }

    // MARK: - What the node counts

    func record(_ receipt: IngestReceipt, replayed: Bool) {
        if replayed {
            self.batches["replayed"]!.increment()  // every outcome has its counter
            return
        }
        self.batches["accepted"]!.increment()
        self.eventsAccepted.increment(by: Int64(receipt.accepted))
        self.eventsDuplicate.increment(by: Int64(receipt.duplicates))
        for rejection in receipt.rejected { self.eventsRejected[rejection.reason.code]?.increment() }
    }

    /// A batch that was not applied: `refused`, `overloaded`, `rate_limited` or `failed`.
    func batch(_ outcome: String) {
        self.batches[outcome]?.increment()
    }

    /// A request refused before ingest. The statuses the API and receivers answer have their
    /// counters made up front (no registry lookup, under its lock, per refusal); another is made once.
    func refusedRequest(status: Int) {
        if let counter = self.refusedRequests[status] {
            counter.increment()
        } else {
            self.registry.makeCounter(name: "tally_http_requests_refused_total", labels: [("status", "\(status)")],
                                      help: Self.refusedHelp).increment()
        }
    }

    func refusedRead() { self.refusedReads.increment() }
    func queryStopped() { self.queriesStopped.increment() }

    func statsd(datagrams: UInt64 = 0, lines: [String: UInt64] = [:], items: [String: UInt64] = [:]) {
        self.statsdDatagrams.increment(by: Int64(clamping: datagrams))
        for (outcome, count) in lines { self.statsdLines[outcome]?.increment(by: Int64(clamping: count)) }
        for (outcome, count) in items { self.statsdItems[outcome]?.increment(by: Int64(clamping: count)) }
    }

    func otlp(spans outcome: String, _ count: Int) { self.otlpSpans[outcome]?.increment(by: Int64(count)) }
    func otlp(points outcome: String, _ count: Int) { self.otlpPoints[outcome]?.increment(by: Int64(count)) }

    /// A store transaction: a group commit of log entries, a checkpoint, or both.
    func stored(commit: Duration?, checkpoint: Duration?) {
        if let commit { self.commit.record(commit) }
        if let checkpoint { self.checkpoint.record(checkpoint) }
    }

    func acknowledged(after duration: Duration) { self.acknowledgement.record(duration) }
    func answeredQuery(after duration: Duration, global: Bool) { self.queries[global]!.record(duration) }

    // MARK: - The exposition

    /// What the rest of the node knows as `/metrics` is read.
    struct State {
        var queueDepth: Int
        var committedEntries: UInt64
        var logEntriesAfterCheckpoint: UInt64
        var staleness: [(origin: ReplicaID, behind: Duration?)]
        var refusedMessages: UInt64
        var storageBytes: Int64
        var series: Int
        var timeBuckets: Int
        var peerFramesDropped: [String: Int] = [:]
        var sloEvaluations: UInt64 = 0
        var sloEvaluationFailures: UInt64 = 0
        var slos: Int = 0
        var firing: [Alert] = []
        var alertsSent: [String: UInt64] = [:]
    }

    /// The Prometheus text exposition (format 0.0.4), after setting the gauges and advancing the
    /// mirrored counters to `state`.
    func exposition(_ state: State) -> String {
        let registry = self.registry
        func gauge(_ name: String, _ help: String, _ value: Double, labels: [(String, String)] = []) {
            registry.makeGauge(name: name, labels: labels, help: help).set(value)
        }
        func total(_ name: String, _ help: String, _ value: UInt64, labels: [(String, String)] = []) {
            let counter = registry.makeCounter(name: name, labels: labels, help: help)
            let target = Int64(clamping: value)
            self.mirrored.withLock { added in
                let key = ObjectIdentifier(counter)
                let before = added[key] ?? 0
                // A total that went down (its owner was replaced) restarts from there.
                if target > before { counter.increment(by: target - before) }
                added[key] = max(before, target)
            }
        }
        gauge("tally_ingest_queue_depth", "Batches applied and waiting for the disk.", Double(state.queueDepth))
        total("tally_group_commit_entries_total",
              "Log entries committed; divided by the group commits, the group-commit batch size.", state.committedEntries)
        gauge("tally_log_entries_after_checkpoint", "Durable log entries a restart would replay.",
              Double(state.logEntriesAfterCheckpoint))
        for (origin, behind) in state.staleness {
            guard let behind else { continue }  // nothing of that origin yet: no figure to report
            gauge("tally_replication_staleness_seconds",
                  "How far behind each other origin (region incarnation) this node is, clock skew included.",
                  Self.seconds(behind), labels: [("origin", "\(origin)")])
        }
        total("tally_replication_messages_refused_total", "Peer messages that did not decode.", state.refusedMessages)
        for (region, dropped) in state.peerFramesDropped {
            total("tally_peer_frames_dropped_total",
                  "Frames from a peer dropped because its inbound queue was full, by peer region.",
                  UInt64(max(dropped, 0)), labels: [("region", region)])
        }
        gauge("tally_storage_bytes", "Size of the database and its write-ahead log.", Double(state.storageBytes))
        gauge("tally_series", "Series (service, operation, status class) held.", Double(state.series))
        gauge("tally_time_buckets", "Time buckets held, over all series and resolutions.", Double(state.timeBuckets))
        gauge("tally_slos", "SLOs loaded from the config's slo_files.", Double(state.slos))
        total("tally_slo_evaluations_total", "Scheduled evaluations of every SLO.", state.sloEvaluations)
        total("tally_slo_evaluation_failures_total", "SLOs a scheduled evaluation could not evaluate.",
              state.sloEvaluationFailures)
        for severity in Severity.allCases {
            gauge("tally_alerts_firing", "Alerts firing as of the last evaluation, by severity.",
                  Double(state.firing.filter { $0.labels["severity"] == severity.rawValue }.count),
                  labels: [("severity", severity.rawValue)])
        }
        for outcome in ["sent", "failed", "dropped"] {
            total("tally_alerts_sent_total", "Alerts posted to Alertmanager, by outcome.",
                  state.alertsSent[outcome] ?? 0, labels: [("outcome", outcome)])
        }
        return registry.emitToString()
    }

    /// Metric and label names from swift-metrics (Hummingbird's `http.server.request.duration`,
    /// `http.request.method`) as Prometheus accepts them: `[a-zA-Z0-9_]`, the metric under `tally_`
    /// (`tally_http_server_request_duration`). A name Prometheus refuses fails the whole scrape.
    public static let sanitize: @Sendable (String, [(String, String)]) -> (String, [(String, String)]) = { name, labels in
        // Hummingbird's metrics middleware, named as Prometheus' conventions want (counters end in
        // _total, durations in _seconds).
        let known = ["hb.requests": "tally_http_requests_total", "hb.request.errors": "tally_http_request_errors_total",
                     "http.server.request.duration": "tally_http_request_duration_seconds",
                     "http.server.active_requests": "tally_http_active_requests"]
        func clean(_ text: String) -> String {
            let mapped = String(text.unicodeScalars.map { scalar -> Character in
                scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "_")
                    ? Character(scalar) : "_"
            })
            return mapped.first.map { ("0"..."9").contains($0) } == true ? "_" + mapped : mapped
        }
        let metric = known[name] ?? clean(name)
        return (metric.hasPrefix("tally_") ? metric : "tally_" + metric, labels.map { (clean($0.0), $0.1) })
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
