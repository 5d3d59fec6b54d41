import TallyAggregates
import TallyReplica
import TallySLO

/// The node's counters, and their Prometheus text exposition (format 0.0.4).
public struct NodeMetrics: Sendable {
    /// Batches by outcome: accepted, replayed, refused, overloaded, rate_limited, failed.
    var batches: [String: UInt64] = [:]
    var eventsAccepted: UInt64 = 0
    /// Rejected events by reason code.
    var eventsRejected: [String: UInt64] = [:]
    /// Requests refused before reaching the replica, by HTTP status (400, 401, 413, 415).
    var requestsRefused: [Int: UInt64] = [:]
    /// Global-read frames from peers that did not decode.
    var refusedReads: UInt64 = 0
    /// Queries stopped because their client went away.
    var queriesStopped: UInt64 = 0
    /// Events not counted again: their span had been counted within the span window.
    var eventsDuplicate: UInt64 = 0
    /// OTLP spans by outcome (`OTLPReceiver.outcomes`).
    var otlpSpans: [String: UInt64] = [:]
    /// OTLP metric data points by outcome (skipped counts metrics, not points).
    var otlpPoints: [String: UInt64] = [:]
    /// StatsD: datagrams, lines by outcome, and items (events, counts) by what the node did with them.
    var statsdDatagrams: UInt64 = 0
    var statsdLines: [String: UInt64] = [:]
    var statsdItems: [String: UInt64] = [:]

    mutating func record(_ receipt: IngestReceipt, replayed: Bool) {
        if replayed {
            self.batches["replayed", default: 0] += 1
            return
        }
        self.batches["accepted", default: 0] += 1
        self.eventsAccepted += UInt64(receipt.accepted)
        self.eventsDuplicate += UInt64(receipt.duplicates)
        for rejection in receipt.rejected { self.eventsRejected[rejection.reason.code, default: 0] += 1 }
    }

    mutating func refusedRequest(status: Int) {
        self.requestsRefused[status, default: 0] += 1
    }

    func exposition(
        queueDepth: Int, commits: UInt64, committedEntries: UInt64, commitDuration: Duration, checkpoints: UInt64,
        checkpointDuration: Duration, logEntriesAfterCheckpoint: UInt64,
        staleness: [(origin: ReplicaID, behind: Duration?)], refusedMessages: UInt64, storageBytes: Int64, series: Int,
        timeBuckets: Int, peerFramesDropped: [String: Int] = [:]
    ) -> String {
        var lines: [String] = []
        func family(_ name: String, _ type: String, _ help: String) { Self.family(name, type, help, into: &lines) }
        family("tally_ingest_events_accepted_total", "counter", "Events counted.")
        lines.append("tally_ingest_events_accepted_total \(self.eventsAccepted)")
        family("tally_ingest_events_rejected_total", "counter", "Events rejected, by reason.")
        for reason in ["invalid", "future_timestamp", "expired", "operation_limit", "service_limit"] {
            lines.append("tally_ingest_events_rejected_total{reason=\"\(reason)\"} \(self.eventsRejected[reason] ?? 0)")
        }
        family("tally_ingest_events_duplicate_total", "counter",
               "Events not counted again: their OTLP span was counted within the span window.")
        lines.append("tally_ingest_events_duplicate_total \(self.eventsDuplicate)")
        family("tally_otlp_spans_total", "counter",
               "OTLP spans received, by outcome: accepted, rejected, duplicate, skipped (a kind not mapped), refused (the request was).")
        for outcome in ["accepted", "rejected", "duplicate", "skipped", "refused"] {
            lines.append("tally_otlp_spans_total{outcome=\"\(outcome)\"} \(self.otlpSpans[outcome] ?? 0)")
        }
        family("tally_otlp_points_total", "counter",
               "OTLP metric data points, by outcome: accepted, rejected, refused; skipped counts metrics not mapped.")
        for outcome in ["accepted", "rejected", "skipped", "refused"] {
            lines.append("tally_otlp_points_total{outcome=\"\(outcome)\"} \(self.otlpPoints[outcome] ?? 0)")
        }
        family("tally_statsd_datagrams_total", "counter", "StatsD datagrams received over UDP.")
        lines.append("tally_statsd_datagrams_total \(self.statsdDatagrams)")
        family("tally_statsd_lines_total", "counter",
               "StatsD lines, by outcome: mapped, invalid, skipped (gauges, events, service checks), dropped (too many waiting).")
        for outcome in ["mapped", "invalid", "skipped", "dropped"] {
            lines.append("tally_statsd_lines_total{outcome=\"\(outcome)\"} \(self.statsdLines[outcome] ?? 0)")
        }
        family("tally_statsd_items_total", "counter",
               "Events and counts from StatsD lines, by outcome: accepted, rejected (a limit or a bad field), refused (the node was overloaded or rate limiting).")
        for outcome in ["accepted", "rejected", "refused"] {
            lines.append("tally_statsd_items_total{outcome=\"\(outcome)\"} \(self.statsdItems[outcome] ?? 0)")
        }
        family("tally_ingest_batches_total", "counter", "Ingest batches, by outcome.")
        for outcome in ["accepted", "replayed", "refused", "overloaded", "rate_limited", "failed"] {
            lines.append("tally_ingest_batches_total{outcome=\"\(outcome)\"} \(self.batches[outcome] ?? 0)")
        }
        family("tally_http_requests_refused_total", "counter", "Requests refused before ingest, by status.")
        for status in self.requestsRefused.keys.sorted() {
            lines.append("tally_http_requests_refused_total{status=\"\(status)\"} \(self.requestsRefused[status] ?? 0)")
        }
        family("tally_ingest_queue_depth", "gauge", "Batches applied and waiting for the disk.")
        lines.append("tally_ingest_queue_depth \(queueDepth)")
        family("tally_group_commit_seconds", "summary", "Time spent committing log transactions.")
        func seconds(_ duration: Duration) -> Double {
            Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        }
        lines.append("tally_group_commit_seconds_sum \(seconds(commitDuration))")
        lines.append("tally_group_commit_seconds_count \(commits)")
        family("tally_group_commit_entries_total", "counter",
               "Log entries committed; divided by the commit count, the group-commit batch size.")
        lines.append("tally_group_commit_entries_total \(committedEntries)")
        family("tally_checkpoint_seconds", "summary", "Time spent writing checkpoints (changed aggregates, keys).")
        lines.append("tally_checkpoint_seconds_sum \(seconds(checkpointDuration))")
        lines.append("tally_checkpoint_seconds_count \(checkpoints)")
        family("tally_log_entries_after_checkpoint", "gauge", "Durable log entries a restart would replay.")
        lines.append("tally_log_entries_after_checkpoint \(logEntriesAfterCheckpoint)")
        family("tally_replication_staleness_seconds", "gauge",
               "How far behind each other origin (region incarnation) this node is, clock skew included.")
        for (origin, behind) in staleness {
            guard let behind else { continue }  // nothing of that origin yet: no figure to report
            lines.append("tally_replication_staleness_seconds{origin=\"\(origin)\"} \(seconds(behind))")
        }
        family("tally_replication_messages_refused_total", "counter", "Peer messages that did not decode.")
        lines.append("tally_replication_messages_refused_total \(refusedMessages)")
        family("tally_global_read_frames_refused_total", "counter", "Global-read frames from peers that did not decode.")
        lines.append("tally_global_read_frames_refused_total \(self.refusedReads)")
        family("tally_peer_frames_dropped_total", "counter",
               "Frames from a peer dropped because its inbound queue was full, by peer region.")
        for region in peerFramesDropped.keys.sorted() {
            lines.append("tally_peer_frames_dropped_total{region=\"\(region)\"} \(peerFramesDropped[region] ?? 0)")
        }
        family("tally_queries_stopped_total", "counter", "Queries stopped because their client went away.")
        lines.append("tally_queries_stopped_total \(self.queriesStopped)")
        family("tally_storage_bytes", "gauge", "Size of the database and its write-ahead log.")
        lines.append("tally_storage_bytes \(storageBytes)")
        family("tally_series", "gauge", "Series (service, operation, status class) held.")
        lines.append("tally_series \(series)")
        family("tally_time_buckets", "gauge", "Time buckets held, over all series and resolutions.")
        lines.append("tally_time_buckets \(timeBuckets)")
        return lines.joined(separator: "\n") + "\n"
    }

    /// The SLO and alerting families: evaluations, SLOs that could not be evaluated, alerts firing
    /// by severity, and alerts posted to Alertmanager by outcome.
    static func alertingExposition(evaluations: UInt64, failures: UInt64, slos: Int, firing: [Alert],
                                   sent: [String: UInt64]) -> String
    {
        var lines: [String] = []
        func family(_ name: String, _ type: String, _ help: String) { Self.family(name, type, help, into: &lines) }
        family("tally_slos", "gauge", "SLOs loaded from the config's slo_files.")
        lines.append("tally_slos \(slos)")
        family("tally_slo_evaluations_total", "counter", "Scheduled evaluations of every SLO.")
        lines.append("tally_slo_evaluations_total \(evaluations)")
        family("tally_slo_evaluation_failures_total", "counter", "SLOs a scheduled evaluation could not evaluate.")
        lines.append("tally_slo_evaluation_failures_total \(failures)")
        family("tally_alerts_firing", "gauge", "Alerts firing as of the last evaluation, by severity.")
        for severity in Severity.allCases {
            lines.append("tally_alerts_firing{severity=\"\(severity.rawValue)\"} "
                + "\(firing.filter { $0.labels["severity"] == severity.rawValue }.count)")
        }
        family("tally_alerts_sent_total", "counter", "Alerts posted to Alertmanager, by outcome, per Alertmanager.")
        for outcome in ["sent", "failed", "dropped"] {
            lines.append("tally_alerts_sent_total{outcome=\"\(outcome)\"} \(sent[outcome] ?? 0)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A metric family's `# HELP` and `# TYPE` lines.
    static func family(_ name: String, _ type: String, _ help: String, into lines: inout [String]) {
        lines.append("# HELP \(name) \(help)")
        lines.append("# TYPE \(name) \(type)")
    }
}
