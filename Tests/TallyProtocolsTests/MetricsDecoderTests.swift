import Foundation
import SwiftProtobuf
import Testing
import TallyAggregates
@testable import TallyReplica
@testable import TallyProtocols

/// OTLP metric points into measurements: exponential histograms in microseconds merge exactly,
/// other units and explicit buckets land within the error they imply (and say so), and points
/// that cannot be requests are refused by name.
@Suite struct MetricsDecoderTests {
    typealias Request = Opentelemetry_Proto_Collector_Metrics_V1_ExportMetricsServiceRequest
    typealias Point = Opentelemetry_Proto_Metrics_V1_ExponentialHistogramDataPoint

    static func attribute(_ key: String, _ value: Opentelemetry_Proto_Common_V1_AnyValue.OneOf_Value) -> Opentelemetry_Proto_Common_V1_KeyValue {
        var attribute = Opentelemetry_Proto_Common_V1_KeyValue()
        attribute.key = key
        attribute.value.value = value
        return attribute
    }

    static let time: UInt64 = 1_795_946_400_000_000_000

    static func request(_ metric: Opentelemetry_Proto_Metrics_V1_Metric) -> Request {
        var resource = Opentelemetry_Proto_Metrics_V1_ResourceMetrics()
        resource.resource.attributes = [Self.attribute("service.name", .stringValue("checkout"))]
        var scope = Opentelemetry_Proto_Metrics_V1_ScopeMetrics()
        var other = Opentelemetry_Proto_Metrics_V1_Metric()
        other.name = "process.cpu.time"
        other.sum = .init()
        scope.metrics = [metric, other]
        resource.scopeMetrics = [scope]
        var request = Request()
        request.resourceMetrics = [resource]
        return request
    }

    /// An exponential point of `values` (in `unit`) at `scale`, as an SDK would aggregate them.
    static func exponential(_ values: [Double], scale: Int32, unit: String, temporality: Opentelemetry_Proto_Metrics_V1_AggregationTemporality = .delta)
        -> Opentelemetry_Proto_Metrics_V1_Metric
    {
        var point = Point()
        point.attributes = [Self.attribute("http.route", .stringValue("/cart")), Self.attribute("http.response.status_code", .intValue(503))]
        point.timeUnixNano = Self.time
        point.startTimeUnixNano = Self.time - 60_000_000_000
        point.scale = scale
        var counts: [Int32: UInt64] = [:]
        for value in values {
            if value == 0 { point.zeroCount += 1 } else { counts[ExponentialBuckets.index(of: value, scale: Int(scale)), default: 0] += 1 }
        }
        let low = counts.keys.min() ?? 0
        let high = counts.keys.max() ?? -1
        point.positive.offset = low
        point.positive.bucketCounts = high < low ? [] : (low...high).map { counts[$0] ?? 0 }
        point.count = UInt64(values.count)
        point.sum = values.reduce(0, +)
        point.min = values.min() ?? 0
        point.max = values.max() ?? 0
        var metric = Opentelemetry_Proto_Metrics_V1_Metric()
        metric.name = "http.server.request.duration"
        metric.unit = unit
        metric.exponentialHistogram.aggregationTemporality = temporality
        metric.exponentialHistogram.dataPoints = [point]
        return metric
    }

    static func measurement(_ decoded: MetricsDecoder.Decoded) throws -> RequestCounts {
        guard decoded.items.count == 1, case .counts(let measurement) = decoded.items[0] else {
            throw MetricsTestError(message: "expected one measurement, got \(decoded.items)")
        }
        return measurement
    }

    struct MetricsTestError: Error { var message: String }

    @Test func microsecondsAtAFinerScaleMergeExactly() throws {
        var random = SeededRandom(seed: 5)
        let values = (0..<3_000).map { _ in random.next() % 30 == 0 ? 0 : pow(10, Double(random.next() % 6_000) / 1_000) }
        let decoded = try MetricsDecoder().decode(Self.request(Self.exponential(values, scale: 8, unit: "us")))
        #expect(decoded.points == 1 && decoded.skippedMetrics == 1 && decoded.notes.isEmpty)
        let measurement = try Self.measurement(decoded)
        #expect(measurement.service == "checkout" && measurement.operation == "/cart" && measurement.status == 503)
        #expect(measurement.requests == 3_000 && measurement.timestamp.millisecondsSinceEpoch == 1_795_946_400_000)
        var sketch = LatencySketch()
        for value in values { sketch.record(value, at: ReplicaID(1)) }
        var expected = LatencyDistribution()
        expected.add(sketch)
        var merged = LatencySketch()
        merged.add(try #require(measurement.latency), at: ReplicaID(1))
        var got = LatencyDistribution()
        got.add(merged)
        #expect(got.counts == expected.counts && got.offset == expected.offset && got.zeroCount == expected.zeroCount)
        #expect(got.sum == values.reduce(0, +) && got.minimum == 0)
    }

    @Test func secondsAreWithinTheSendersBucket() throws {
        var random = SeededRandom(seed: 6)
        let values = (0..<2_000).map { _ in pow(10, Double(random.next() % 3_300) / 1_000) / 1_000 }  // 1 ms to 2 s, in s
        for scale in [3, 5] as [Int32] {
            let measurement = try Self.measurement(try MetricsDecoder().decode(Self.request(Self.exponential(values, scale: scale, unit: "s"))))
            var merged = LatencySketch()
            merged.add(try #require(measurement.latency), at: ReplicaID(1))
            let sorted = values.sorted()
            let width = pow(2, 1 / pow(2, Double(scale)))
            for q in [0.5, 0.9, 0.99] {
                let exact = sorted[Int((q * Double(sorted.count)).rounded(.up)) - 1] * 1e6
                let estimate = try #require(merged.quantile(q)?.value)
                #expect(estimate / exact < width * 1.006 && exact / estimate < width * 1.006, "scale \(scale) q \(q): \(estimate) vs \(exact)")
            }
            #expect(abs(merged.sum - values.reduce(0, +) * 1e6) < 1e-6 * merged.sum)
        }
    }

    @Test func explicitBucketsAreAcceptedWithTheirErrorStated() throws {
        var point = Opentelemetry_Proto_Metrics_V1_HistogramDataPoint()
        point.timeUnixNano = Self.time
        point.explicitBounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
        point.bucketCounts = [1, 2, 3, 4, 5, 6, 7, 8, 9]
        point.count = 45
        point.sum = 20
        var metric = Opentelemetry_Proto_Metrics_V1_Metric()
        metric.name = "http.server.request.duration"
        metric.unit = "s"
        metric.histogram.aggregationTemporality = .delta
        metric.histogram.dataPoints = [point]
        let decoded = try MetricsDecoder().decode(Self.request(metric))
        let measurement = try Self.measurement(decoded)
        #expect(measurement.requests == 45 && measurement.latency?.count == 45 && measurement.latency?.sum == 20_000_000)
        #expect(measurement.operation == "http.server.request.duration" && measurement.status == 200)
        #expect(decoded.notes.first?.contains("widest bucket, (10ms, 25ms], may be off by up to 58%") == true, "\(decoded.notes)")
    }

    /// A cumulative point is its stream's totals: the same stream (attributes in any order) has the
    /// same id, another attribute value another.
    @Test func cumulativePointsNameTheirStream() throws {
        func point(_ attributes: [Opentelemetry_Proto_Common_V1_KeyValue]) throws -> CumulativePoint {
            var metric = Self.exponential([1, 2, 3], scale: 4, unit: "s", temporality: .cumulative)
            metric.exponentialHistogram.dataPoints[0].attributes = attributes
            guard case .cumulative(let point) = try MetricsDecoder().decode(Self.request(metric)).items.first else {
                throw MetricsTestError(message: "not a cumulative point")
            }
            return point
        }
        let route = Self.attribute("http.route", .stringValue("/cart"))
        let status = Self.attribute("http.response.status_code", .intValue(200))
        let a = try point([route, status])
        #expect(a.totals.requests == 3 && a.start == Self.time - 60_000_000_000)
        #expect(try point([status, route]).stream == a.stream)
        #expect(try point([route, Self.attribute("http.response.status_code", .intValue(500))]).stream != a.stream)
    }

    /// A cumulative stream whose scale drops between points goes on: each request is counted once.
    /// SDKs keep at most 160 buckets and halve the scale when the values outgrow them; the decoder
    /// places each point at the sketch's scale by bucket middles, so a merged bucket lands where
    /// neither half did. The OTLP client test found 73 requests counted twice when the Python SDK
    /// went from scale 4 to 3 (it was taken for a reset).
    @Test(arguments: 0..<30) func aDownscaleIsNotAReset(seed: UInt64) throws {
        var random = SeededRandom(seed: seed)
        var replica = Replica(config: ReplicaConfig(id: ReplicaID(region: "eu-west", node: "n1", incarnation: 1)))
        let now = Timestamp(millisecondsSinceEpoch: Int64(Self.time / 1_000_000))
        var values: [Double] = []
        var scales: Set<Int32> = []
        var batch: UInt64 = 0
        for round in 0..<10 {
            // Seconds around 10 ms, reaching further out each round (up to 2^(round + 2) either way).
            let spread = Double(round + 2)
            for _ in 0..<Int.random(in: 1...150, using: &random) {
                values.append(0.01 * exp2(Double.random(in: -spread...spread, using: &random)))
            }
            // The SDK's scale: the finest that holds every value so far in 160 buckets.
            var scale = Int32(ExponentialBuckets.scaleMax)
            while let low = values.map({ ExponentialBuckets.index(of: $0, scale: Int(scale)) }).min(),
                  let high = values.map({ ExponentialBuckets.index(of: $0, scale: Int(scale)) }).max(),
                  high - low + 1 > 160 { scale -= 1 }
            scales.insert(scale)
            let decoded = try MetricsDecoder().decode(Self.request(Self.exponential(values, scale: scale, unit: "s",
                                                                                     temporality: .cumulative)))
            for _ in 0..<Int.random(in: 1...2, using: &random) {  // sometimes resent
                batch += 1
                let actions = replica.ingest(EventBatch(id: BatchID(batch), client: "otlp", items: decoded.items), now: now)
                for case .reject(_, let reason) in actions { Issue.record("rejected: \(reason)") }
                for case .acknowledge(_, let receipt, _) in actions where !receipt.rejected.isEmpty {
                    Issue.record("rejected: \(receipt.rejected)")
                }
            }
        }
        #expect(scales.count > 2, "the values forced downscales")
        let minute = replica.buckets.filter { $0.key.resolution == .minute }
        #expect(minute.reduce(0) { $0 + $1.aggregate.requests.value } == UInt64(values.count))
        #expect(minute.reduce(0) { $0 + $1.aggregate.latency.count } == UInt64(values.count))
        // The median is within the SDK's last buckets (scale 2 or 3 here: up to 19% wide), whatever
        // precision the latencies recorded across a downscale lost.
        let sketch = minute.reduce(into: LatencySketch()) { $0.merge($1.aggregate.latency) }
        let exact = values.sorted()[values.count / 2] * 1e6
        let median = sketch.quantile(0.5)?.value ?? 0
        #expect(abs(median - exact) / exact < 0.12, "median \(median) us, exact \(exact) us")
    }

    @Test func pointsThatCannotBeRequestsAreRefusedByName() throws {
        func reason(_ metric: Opentelemetry_Proto_Metrics_V1_Metric) throws -> String {
            let decoded = try MetricsDecoder().decode(Self.request(metric))
            guard case .invalid(let reason) = decoded.items.first else { return "accepted" }
            return reason
        }
        #expect(try reason(Self.exponential([1, 2], scale: 4, unit: "s", temporality: .unspecified)).contains("unspecified"))
        #expect(try reason(Self.exponential([1, 2], scale: 4, unit: "By")).contains("unit is not s, ms, us or ns"))
        var negative = Self.exponential([1, 2], scale: 4, unit: "s")
        negative.exponentialHistogram.dataPoints[0].negative.bucketCounts = [3]
        #expect(try reason(negative).contains("negative buckets"))
        var miscounted = Self.exponential([1, 2], scale: 4, unit: "s")
        miscounted.exponentialHistogram.dataPoints[0].count = 5
        #expect(try reason(miscounted).contains("count 5 is not the 2 values"))
        var badStatus = Self.exponential([1], scale: 4, unit: "s")
        badStatus.exponentialHistogram.dataPoints[0].attributes = [Self.attribute("http.response.status_code", .intValue(42))]
        #expect(try reason(badStatus).contains("not an HTTP status"))
        var huge = Self.exponential([1], scale: 4, unit: "s")
        huge.exponentialHistogram.dataPoints[0].scale = 40
        #expect(try reason(huge).contains("scale 40"))
        var many = Self.request(Self.exponential([1], scale: 4, unit: "s"))
        many.resourceMetrics[0].scopeMetrics[0].metrics[0].exponentialHistogram.dataPoints = Array(repeating: Point(), count: 11)
        #expect(throws: MetricsDecoder.TooManyPoints(limit: 10)) { try MetricsDecoder(limits: .init(pointsMax: 10)).decode(many) }
    }
}
