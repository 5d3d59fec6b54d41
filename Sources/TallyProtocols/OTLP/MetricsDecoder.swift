import Foundation
import SwiftProtobuf
import TallyAggregates
import TallyReplica

/// How OTLP metric points become Tally measurements (docs/integrations.md): the duration
/// histograms of the semantic conventions, one measurement per data point, whose count is the
/// requests and whose buckets are their latencies.
public struct MetricsMapping: Sendable, Equatable {
    /// Metrics read; every other metric is skipped.
    public var names: [String]
    public var service: [String]
    /// Point attributes naming the operation; without one, the metric's name.
    public var operation: [String]
    public var status: [String]
    public var rpcStatus: [String]

    public init(names: [String] = ["http.server.request.duration", "rpc.server.duration"],
                service: [String] = ["service.name"], operation: [String] = ["http.route", "rpc.method"],
                status: [String] = ["http.response.status_code", "http.status_code"],
                rpcStatus: [String] = ["rpc.grpc.status_code"])
    {
        self.names = names
        self.service = service
        self.operation = operation
        self.status = status
        self.rpcStatus = rpcStatus
    }
}

/// An `ExportMetricsServiceRequest` (read by `OTLPCodec.metricsRequest`) turned into items.
///
/// Exponential histograms in microseconds at the sketch's scale or finer merge exactly (downscaling
/// is an index shift). In any other unit (the conventions say seconds) the boundaries do not line
/// up with the sketch's, so each bucket's requests go to the sketch bucket of its geometric middle:
/// a quantile is then within the sender's bucket width plus the sketch's 0.54%. Explicit-bucket
/// histograms are placed the same way, at each bucket's geometric middle, and the answer's
/// `partial_success.error_message` states the widest bucket, the error they imply. Count, sum, min
/// and max are the point's own, exact.
public struct MetricsDecoder: Sendable {
    public struct Limits: Sendable, Equatable {
        public var nameBytesMax: Int
        public var pointsMax: Int
        public var bucketsPerPointMax: Int

        public init(nameBytesMax: Int = 128, pointsMax: Int = 100_000, bucketsPerPointMax: Int = 16_384) {
            self.nameBytesMax = nameBytesMax
            self.pointsMax = pointsMax
            self.bucketsPerPointMax = bucketsPerPointMax
        }
    }

    public struct Decoded: Sendable {
        /// One per data point of a mapped metric.
        public var items: [BatchItem] = []
        /// Data points of mapped metrics, and metrics skipped (not mapped, or not histograms).
        public var points = 0
        public var skippedMetrics = 0
        /// Warnings for the answer (the error explicit buckets imply).
        public var notes: [String] = []
    }

    public struct TooManyPoints: Error, Equatable, CustomStringConvertible {
        public var limit: Int
        public var description: String { "more than \(self.limit) data points in one request" }
    }

    public let mapping: MetricsMapping
    public let limits: Limits
    /// The replica's sketch scale: buckets are brought to it.
    public let sketchScale: Int

    public init(mapping: MetricsMapping = MetricsMapping(), limits: Limits = Limits(),
                sketchScale: Int = LatencySketch.defaultScale)
    {
        self.mapping = mapping
        self.limits = limits
        self.sketchScale = sketchScale
    }

    typealias KeyValue = Opentelemetry_Proto_Common_V1_KeyValue

    public func decode(_ request: Opentelemetry_Proto_Collector_Metrics_V1_ExportMetricsServiceRequest) throws(TooManyPoints)
        -> Decoded
    {
        var decoded = Decoded()
        var widest: (ratio: Double, text: String)?
        for resource in request.resourceMetrics {
            let service = Self.first(self.mapping.service, in: resource.resource.attributes)
            let resourceIdentity = Self.identity(resource.resource.attributes)
            for scope in resource.scopeMetrics {
                for metric in scope.metrics {
                    guard self.mapping.names.contains(metric.name) else {
                        decoded.skippedMetrics += 1
                        continue
                    }
                    let unit = Self.microsPerUnit(metric.unit)
                    switch metric.data {
                    case .exponentialHistogram(let histogram)?:
                        for point in histogram.dataPoints {
                            try self.count(&decoded)
                            decoded.items.append(self.item(
                                point.attributes, service: service, metric: metric.name, unit: unit,
                                temporality: histogram.aggregationTemporality, time: point.timeUnixNano,
                                start: point.startTimeUnixNano,
                                stream: Self.stream(resourceIdentity, scope.scope.name, metric.name, point.attributes)
                            ) { () throws(Problem) in
                                    try self.latency(point, unit: unit)
                                } count: { point.count })
                        }
                    case .histogram(let histogram)?:
                        for point in histogram.dataPoints {
                            try self.count(&decoded)
                            decoded.items.append(self.item(
                                point.attributes, service: service, metric: metric.name, unit: unit,
                                temporality: histogram.aggregationTemporality, time: point.timeUnixNano,
                                start: point.startTimeUnixNano,
                                stream: Self.stream(resourceIdentity, scope.scope.name, metric.name, point.attributes)
                            ) { () throws(Problem) in
                                    let (latency, ratio, text) = try self.latency(point, unit: unit)
                                    if ratio > (widest?.ratio ?? 0) { widest = (ratio, text) }
                                    return latency
                                } count: { point.count })
                        }
                    default:
                        decoded.skippedMetrics += 1
                    }
                }
            }
        }
        if let widest {
            decoded.notes.append("explicit-bucket histograms are placed at each bucket's geometric middle: a quantile "
                + "inside the widest bucket, \(widest.text), may be off by up to "
                + String(format: "%.0f%%", (widest.ratio.squareRoot() - 1) * 100))
        }
        return decoded
    }

    private func count(_ decoded: inout Decoded) throws(TooManyPoints) {
        decoded.points += 1
        guard decoded.points <= self.limits.pointsMax else { throw TooManyPoints(limit: self.limits.pointsMax) }
    }

    struct Problem: Error {
        var message: String
    }

    /// One point's item: a measurement, or why it cannot be one.
    private func item(_ attributes: [KeyValue], service: Opentelemetry_Proto_Common_V1_AnyValue.OneOf_Value?,
                      metric: String, unit: Double?, temporality: Opentelemetry_Proto_Metrics_V1_AggregationTemporality,
                      time: UInt64, start: UInt64, stream: UInt64, latency: () throws(Problem) -> LatencyBuckets,
                      count: () -> UInt64) -> BatchItem
    {
        func invalid(_ message: String) -> BatchItem { .invalid("\(metric): \(message)") }
        guard temporality == .delta || temporality == .cumulative else {
            return invalid("aggregation_temporality is unspecified; it must be delta or cumulative")
        }
        guard unit != nil else { return invalid("unit is not s, ms, us or ns") }
        guard let serviceName = Self.text(service), !serviceName.isEmpty, serviceName.utf8.count <= self.limits.nameBytesMax else {
            return invalid("the resource has no usable \(self.mapping.service.joined(separator: " or "))")
        }
        let operation = Self.text(Self.first(self.mapping.operation, in: attributes)) ?? metric
        guard !operation.isEmpty, operation.utf8.count <= self.limits.nameBytesMax else {
            return invalid("the operation is empty or longer than \(self.limits.nameBytesMax) bytes")
        }
        let status: UInt16
        if let value = Self.first(self.mapping.status, in: attributes) {
            guard let code = Self.integer(value), (100...599).contains(code) else {
                return invalid("\(self.mapping.status.first ?? "status") is not an HTTP status 100...599")
            }
            status = UInt16(code)
        } else if let code = Self.integer(Self.first(self.mapping.rpcStatus, in: attributes)) {
            status = SpanMapping.httpStatus(grpc: code)
        } else {
            status = 200
        }
        guard time != 0 else { return invalid("time_unix_nano is 0") }
        let buckets: LatencyBuckets
        do {
            buckets = try latency()
        } catch {
            return invalid(error.message)
        }
        guard buckets.count == count() else {
            return invalid("count \(count()) is not the \(buckets.count) values of its buckets")
        }
        let counts = RequestCounts(
            service: serviceName, operation: operation, status: status,
            timestamp: Timestamp(millisecondsSinceEpoch: Int64(time / 1_000_000)), requests: buckets.count,
            latency: buckets)
        guard temporality == .cumulative else { return .counts(counts) }
        // The totals since `start`: the replica counts what is new since the stream's last point.
        return .cumulative(CumulativePoint(stream: stream, start: start, totals: counts))
    }

    /// A stream's identity: its resource, scope, metric and point attributes (sorted by key).
    static func stream(_ resource: [UInt8], _ scope: String, _ metric: String, _ attributes: [KeyValue]) -> UInt64 {
        var bytes = resource
        for text in [scope, metric] {
            withUnsafeBytes(of: UInt32(text.utf8.count).littleEndian) { bytes += $0 }
            bytes += Array(text.utf8)
        }
        bytes += Self.identity(attributes)
        return XXH3.hash(bytes)
    }

    /// Attributes as bytes that are equal exactly when the attributes are (sorted by key).
    static func identity(_ attributes: [KeyValue]) -> [UInt8] {
        var bytes: [UInt8] = []
        for attribute in attributes.sorted(by: { $0.key < $1.key }) {
            // Length-prefixed, so no two lists of attributes run together into the same bytes.
            let key = Array(attribute.key.utf8)
            let value: [UInt8] = (try? attribute.value.serializedBytes()) ?? []
            withUnsafeBytes(of: UInt32(key.count).littleEndian) { bytes += $0 }
            bytes += key
            withUnsafeBytes(of: UInt32(value.count).littleEndian) { bytes += $0 }
            bytes += value
        }
        return bytes
    }

    // MARK: - Buckets

    /// An exponential histogram point's buckets at the sketch's scale.
    func latency(_ point: Opentelemetry_Proto_Metrics_V1_ExponentialHistogramDataPoint, unit: Double?) throws(Problem)
        -> LatencyBuckets
    {
        guard let unit else { throw Problem(message: "unit is not s, ms, us or ns") }
        guard point.negative.bucketCounts.allSatisfy({ $0 == 0 }) else {
            throw Problem(message: "negative buckets hold values: durations are not negative")
        }
        let counts = point.positive.bucketCounts
        guard counts.count <= self.limits.bucketsPerPointMax else {
            throw Problem(message: "\(counts.count) buckets; at most \(self.limits.bucketsPerPointMax) per point")
        }
        guard (-10...20).contains(point.scale) else { throw Problem(message: "scale \(point.scale) is outside -10...20") }
        let scale = Int(point.scale)
        var placed: [Int32: UInt64] = [:]
        var representatives: [(Double, UInt64)] = []
        for (position, count) in counts.enumerated() where count > 0 {
            let (index, overflow) = point.positive.offset.addingReportingOverflow(Int32(position))
            guard !overflow else { throw Problem(message: "bucket index overflows") }
            if unit == 1 && scale >= self.sketchScale {
                // Microseconds at a finer scale: the sketch's bucket is an index shift away, exactly.
                let shifted = index >> Int32(scale - self.sketchScale)
                placed[shifted, default: 0] &+= count
            } else {
                let lower = Self.power(index, scale: scale) * unit
                let upper = Self.power(index + 1, scale: scale) * unit
                let middle = (lower * upper).squareRoot()
                guard middle.isFinite, lower.isFinite, upper.isFinite else {
                    throw Problem(message: "bucket \(index) at scale \(scale) is out of range")
                }
                representatives.append((middle, count))
            }
        }
        for (value, count) in representatives {
            if value < ExponentialBuckets.valueMin { continue }
            placed[ExponentialBuckets.index(of: value, scale: self.sketchScale), default: 0] &+= count
        }
        let zero = point.zeroCount &+ representatives.filter { $0.0 < ExponentialBuckets.valueMin }.reduce(0) { $0 &+ $1.1 }
        return try self.buckets(placed, zero: zero, sum: point.hasSum ? point.sum * unit : nil,
                                min: point.hasMin ? point.min * unit : nil, max: point.hasMax ? point.max * unit : nil)
    }

    /// An explicit-bucket histogram point's buckets, each at its geometric middle; and how wide its
    /// widest bucket is (upper over lower bound), for the answer's note.
    func latency(_ point: Opentelemetry_Proto_Metrics_V1_HistogramDataPoint, unit: Double?) throws(Problem)
        -> (LatencyBuckets, Double, String)
    {
        guard let unit else { throw Problem(message: "unit is not s, ms, us or ns") }
        let bounds = point.explicitBounds.map { $0 * unit }
        let counts = point.bucketCounts
        guard counts.count <= self.limits.bucketsPerPointMax else {
            throw Problem(message: "\(counts.count) buckets; at most \(self.limits.bucketsPerPointMax) per point")
        }
        guard counts.count == bounds.count + 1 || (counts.isEmpty && point.count == 0) else {
            throw Problem(message: "\(counts.count) bucket counts for \(bounds.count) bounds; OTLP needs one more count than bounds")
        }
        guard bounds.allSatisfy(\.isFinite), zip(bounds, bounds.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw Problem(message: "explicit_bounds must be finite and increasing")
        }
        let minimum = point.hasMin ? point.min * unit : nil
        let maximum = point.hasMax ? point.max * unit : nil
        var placed: [Int32: UInt64] = [:]
        var zero: UInt64 = 0
        var widest = (ratio: 1.0, text: "")
        for (position, count) in counts.enumerated() where count > 0 {
            // Bucket k holds (bounds[k-1], bounds[k]]; the first starts at 0 (or the minimum), the
            // last ends at the maximum (or twice its lower bound).
            var lower = position == 0 ? (minimum ?? 0) : bounds[position - 1]
            var upper = position == bounds.count ? (maximum ?? bounds[position - 1] * 2) : bounds[position]
            lower = Swift.max(lower, 0)
            upper = Swift.max(upper, lower)
            if upper <= 0 {
                zero &+= count
                continue
            }
            let middle = lower > 0 ? (lower * upper).squareRoot() : upper / 2
            if lower > 0, upper / lower > widest.ratio {
                widest = (upper / lower, "(\(Self.micros(lower)), \(Self.micros(upper))]")
            }
            if middle < ExponentialBuckets.valueMin {
                zero &+= count
            } else {
                placed[ExponentialBuckets.index(of: middle, scale: self.sketchScale), default: 0] &+= count
            }
        }
        let buckets = try self.buckets(placed, zero: zero, sum: point.hasSum ? point.sum * unit : nil, min: minimum,
                                       max: maximum)
        return (buckets, widest.ratio, widest.text)
    }

    /// The checked buckets; a missing sum, min or max is estimated from the buckets.
    private func buckets(_ placed: [Int32: UInt64], zero: UInt64, sum: Double?, min: Double?, max: Double?) throws(Problem)
        -> LatencyBuckets
    {
        let sorted = placed.keys.sorted().map { LatencySketch.Bucket(index: $0, count: placed[$0]!) }
        func value(_ index: Int32) -> Double { ExponentialBuckets.representative(of: index, scale: self.sketchScale) }
        let estimatedSum = sorted.reduce(0.0) { $0 + value($1.index) * Double($1.count) }
        let lowest = zero > 0 ? 0 : sorted.first.map { value($0.index) } ?? 0
        let highest = sorted.last.map { value($0.index) } ?? 0
        do {
            return try LatencyBuckets(
                scale: self.sketchScale, zeroCount: zero, buckets: sorted, sum: Swift.max(sum ?? estimatedSum, 0),
                minimum: Swift.max(min ?? lowest, 0), maximum: Swift.max(max ?? highest, Swift.max(min ?? lowest, 0)))
        } catch {
            throw Problem(message: error.description)
        }
    }

    // MARK: - Values

    /// `2^(index / 2^scale)`.
    static func power(_ index: Int32, scale: Int) -> Double {
        scale >= 0 ? exp2(Double(index) / Double(1 << scale)) : exp2(Double(index) * Double(1 << -scale))
    }

    /// Microseconds per unit of a duration metric; the conventions' unit is seconds, and a metric
    /// without one is taken as seconds too. Nil: not a duration unit.
    static func microsPerUnit(_ unit: String) -> Double? {
        switch unit {
        case "", "s": 1_000_000
        case "ms": 1_000
        case "us", "µs": 1
        case "ns": 0.001
        default: nil
        }
    }

    static func micros(_ value: Double) -> String {
        value >= 1_000_000 ? String(format: "%gs", value / 1_000_000)
            : value >= 1_000 ? String(format: "%gms", value / 1_000) : String(format: "%gus", value)
    }

    static func first(_ keys: [String], in attributes: [KeyValue]) -> Opentelemetry_Proto_Common_V1_AnyValue.OneOf_Value? {
        for key in keys {
            for attribute in attributes where attribute.key == key {
                switch attribute.value.value {
                case .stringValue?, .intValue?: return attribute.value.value
                default: continue
                }
            }
        }
        return nil
    }

    static func text(_ value: Opentelemetry_Proto_Common_V1_AnyValue.OneOf_Value?) -> String? {
        switch value {
        case .stringValue(let text)?: text
        case .intValue(let number)?: String(number)
        default: nil
        }
    }

    static func integer(_ value: Opentelemetry_Proto_Common_V1_AnyValue.OneOf_Value?) -> Int64? {
        switch value {
        case .intValue(let number)?: number
        case .stringValue(let text)?: text.count <= 18 && !text.isEmpty && text.allSatisfy(\.isASCII) ? Int64(text) : nil
        default: nil
        }
    }
}
