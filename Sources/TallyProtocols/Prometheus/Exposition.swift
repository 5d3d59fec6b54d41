import Foundation
import SwiftProtobuf
import TallyAggregates

/// Tally's series as Prometheus metrics, for `GET /v1/export/prometheus` (docs/integrations.md):
///
///     tally_requests_total{service, operation, status, region}          counter
///     tally_request_errors_total{service, operation, status, region}    counter
///     tally_request_duration_microseconds{...}                          histogram
///
/// `region` is the region that received the events, so summing over it counts every event once.
/// The histogram is a native histogram in the protobuf exposition, bucket for bucket the latency
/// sketch (same base-2 exponential boundaries, schema = the sketch's scale, microseconds: the unit
/// the sketch's boundaries are powers of the base in, so nothing is re-bucketed), together with
/// classic `le` buckets; the text exposition has the classic buckets only. A classic bucket counts
/// the values certainly at or below its `le`: exact when `le` is a sketch boundary, otherwise short
/// by at most the one sketch bucket `le` falls inside.
public enum PrometheusExposition {
    /// One exported series: one (service, operation, status class, region).
    public struct Series: Sendable, Equatable {
        public var service: String
        public var operation: String
        /// The status class, "2xx".
        public var status: String
        public var region: String
        public var requests: UInt64
        public var errors: UInt64
        public var latency: LatencyDistribution

        public init(service: String, operation: String, status: String, region: String, requests: UInt64,
                    errors: UInt64, latency: LatencyDistribution)
        {
            self.service = service
            self.operation = operation
            self.status = status
            self.region = region
            self.requests = requests
            self.errors = errors
            self.latency = latency
        }

        var labels: [(String, String)] {
            [("service", self.service), ("operation", self.operation), ("status", self.status), ("region", self.region)]
        }
    }

    /// The default classic buckets, in microseconds: 1 ms to 10 s.
    public static let defaultBuckets: [Double] = [
        1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
        10_000_000,
    ]

    /// What Prometheus asks for when it can read the protobuf exposition (with native histograms).
    public static let protobufContentType =
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
    public static let textContentType = "text/plain; version=0.0.4; charset=utf-8"

    /// True when `accept` (a scraper's Accept header) asks for the protobuf exposition.
    public static func wantsProtobuf(accept: String?) -> Bool {
        guard let accept else { return false }
        return accept.lowercased().split(separator: ",").contains { part in
            let item = part.trimmingCharacters(in: .whitespaces)
            return item.hasPrefix("application/vnd.google.protobuf") && item.contains("io.prometheus.client.metricfamily")
                && !item.contains("q=0,") && !item.hasSuffix("q=0")
        }
    }

    static let requestsHelp = "Requests counted by Tally, by service, operation, status class and the region that received them."
    static let errorsHelp = "Requests of an error status class (the node's errors setting), by the same labels."
    static let durationHelp = "Request latency in microseconds, from Tally's latency sketch (native: lossless)."

    // MARK: - Text

    /// The text exposition (format 0.0.4), classic histogram buckets at `buckets` (microseconds, ascending).
    public static func text(_ series: [Series], buckets: [Double] = Self.defaultBuckets) -> String {
        var out = ""
        out.reserveCapacity(series.count * (200 + 120 * buckets.count))
        out += "# HELP tally_requests_total \(Self.requestsHelp)\n# TYPE tally_requests_total counter\n"
        for item in series { out += "tally_requests_total\(Self.labelText(item.labels)) \(item.requests)\n" }
        out += "# HELP tally_request_errors_total \(Self.errorsHelp)\n# TYPE tally_request_errors_total counter\n"
        for item in series { out += "tally_request_errors_total\(Self.labelText(item.labels)) \(item.errors)\n" }
        out += "# HELP tally_request_duration_microseconds \(Self.durationHelp)\n"
        out += "# TYPE tally_request_duration_microseconds histogram\n"
        for item in series {
            let count = item.latency.count
            for bound in buckets {
                let labels = Self.labelText(item.labels + [("le", Self.number(bound))])
                out += "tally_request_duration_microseconds_bucket\(labels) \(item.latency.countAtMost(bound).certain)\n"
            }
            out += "tally_request_duration_microseconds_bucket\(Self.labelText(item.labels + [("le", "+Inf")])) \(count)\n"
            out += "tally_request_duration_microseconds_sum\(Self.labelText(item.labels)) \(Self.number(item.latency.sum))\n"
            out += "tally_request_duration_microseconds_count\(Self.labelText(item.labels)) \(count)\n"
        }
        return out
    }

    /// `{a="x",b="y"}` with the text format's escapes (backslash, double quote, newline).
    static func labelText(_ labels: [(String, String)]) -> String {
        var out = "{"
        for (position, (name, value)) in labels.enumerated() {
            if position > 0 { out += "," }
            out += name + "=\""
            for character in value.unicodeScalars {
                switch character {
                case "\\": out += "\\\\"
                case "\"": out += "\\\""
                case "\n": out += "\\n"
                default: out.unicodeScalars.append(character)
                }
            }
            out += "\""
        }
        return out + "}"
    }

    /// A sample value as Prometheus writes one: integers without a fraction, `+Inf`, `NaN`.
    static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    // MARK: - Protobuf

    /// The protobuf exposition: length-delimited `MetricFamily` messages, the histogram native
    /// (and classic at `buckets`).
    public static func protobuf(_ series: [Series], buckets: [Double] = Self.defaultBuckets) -> [UInt8] {
        var requests = Io_Prometheus_Client_MetricFamily()
        requests.name = "tally_requests_total"
        requests.help = Self.requestsHelp
        requests.type = .counter
        var errors = Io_Prometheus_Client_MetricFamily()
        errors.name = "tally_request_errors_total"
        errors.help = Self.errorsHelp
        errors.type = .counter
        var duration = Io_Prometheus_Client_MetricFamily()
        duration.name = "tally_request_duration_microseconds"
        duration.help = Self.durationHelp
        duration.type = .histogram
        for item in series {
            let labels = item.labels.map { name, value in
                var pair = Io_Prometheus_Client_LabelPair()
                pair.name = name
                pair.value = value
                return pair
            }
            var metric = Io_Prometheus_Client_Metric()
            metric.label = labels
            metric.counter.value = Double(item.requests)
            requests.metric.append(metric)
            metric.counter.value = Double(item.errors)
            errors.metric.append(metric)
            var histogram = Io_Prometheus_Client_Metric()
            histogram.label = labels
            histogram.histogram = Self.histogram(item.latency, buckets: buckets)
            duration.metric.append(histogram)
        }
        var out: [UInt8] = []
        for family in [requests, errors, duration] {
            let bytes: [UInt8] = (try? family.serializedBytes()) ?? []
            var length = UInt64(bytes.count)
            while length >= 0x80 {
                out.append(UInt8(length & 0x7f) | 0x80)
                length >>= 7
            }
            out.append(UInt8(length))
            out += bytes
        }
        return out
    }

    /// A native histogram of the sketch's buckets, with classic buckets beside it.
    ///
    /// Sketch bucket `i` holds `(γ^i, γ^(i+1)]` (OpenTelemetry's convention); Prometheus' bucket
    /// `j` holds `(γ^(j-1), γ^j]`, so `j = i + 1`. The zero bucket is the sketch's: values below
    /// the smallest normal double (in practice, zero).
    static func histogram(_ latency: LatencyDistribution, buckets: [Double]) -> Io_Prometheus_Client_Histogram {
        var histogram = Io_Prometheus_Client_Histogram()
        histogram.sampleCount = latency.count
        histogram.sampleSum = latency.sum
        histogram.bucket = buckets.map { bound in
            var bucket = Io_Prometheus_Client_Bucket()
            bucket.upperBound = bound
            bucket.cumulativeCount = latency.countAtMost(bound).certain
            return bucket
        }
        // Native schemas are -4...8; a sketch coarser than -4 is exported classic only.
        guard (-4...8).contains(latency.scale) else { return histogram }
        histogram.schema = Int32(latency.scale)
        histogram.zeroThreshold = ExponentialBuckets.valueMin
        histogram.zeroCount = latency.zeroCount
        var spans: [Io_Prometheus_Client_BucketSpan] = []
        var deltas: [Int64] = []
        var previousCount: UInt64 = 0
        var previousEnd: Int32?  // the Prometheus index after the last span
        var position = 0
        let counts = latency.counts
        while position < counts.count {
            guard counts[position] > 0 else {
                position += 1
                continue
            }
            let start = position
            while position < counts.count && counts[position] > 0 { position += 1 }
            let firstIndex = latency.offset &+ Int32(start) &+ 1
            var span = Io_Prometheus_Client_BucketSpan()
            span.offset = previousEnd.map { firstIndex &- $0 } ?? firstIndex
            span.length = UInt32(position - start)
            spans.append(span)
            for count in counts[start..<position] {
                deltas.append(Int64(bitPattern: count &- previousCount))
                previousCount = count
            }
            previousEnd = firstIndex &+ Int32(position - start)
        }
        histogram.positiveSpan = spans
        histogram.positiveDelta = deltas
        return histogram
    }
}
