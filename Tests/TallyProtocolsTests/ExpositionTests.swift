import Foundation
import SwiftProtobuf
import Testing
import TallyAggregates
@testable import TallyProtocols

/// The Prometheus exposition: the native histogram is the sketch bucket for bucket (decoded back
/// from the protobuf, seeded sketches of every shape), classic buckets are cumulative and exact on
/// sketch boundaries, and the text format escapes what it must.
@Suite struct ExpositionTests {
    static func distribution(seed: UInt64) -> LatencyDistribution {
        var random = SeededRandom(seed: seed)
        var sketch = LatencySketch()
        let origin = ReplicaID(seed)
        for _ in 0..<Int(random.next() % 3_000) {
            switch random.next() % 10 {
            case 0: sketch.record(0, at: origin)
            case 1: sketch.record(Double(1 + random.next() % 5), at: origin)  // a few buckets, many repeats
            default: sketch.record(pow(10, Double(random.next() % 7_000) / 1_000), at: origin)
            }
        }
        var distribution = LatencyDistribution()
        distribution.add(sketch)
        return distribution
    }

    /// Reads the native buckets back: Prometheus index j is sketch index j - 1.
    static func nativeCounts(_ histogram: Io_Prometheus_Client_Histogram) -> [Int32: UInt64] {
        var counts: [Int32: UInt64] = [:]
        var index: Int32 = 0
        var count: Int64 = 0
        var delta = 0
        for span in histogram.positiveSpan {
            index += span.offset
            for _ in 0..<span.length {
                count += histogram.positiveDelta[delta]
                delta += 1
                counts[index - 1] = UInt64(count)
                index += 1
            }
        }
        return counts
    }

    @Test func theNativeHistogramIsTheSketch() throws {
        for seed in 1...40 as ClosedRange<UInt64> {
            let latency = Self.distribution(seed: seed)
            let series = PrometheusExposition.Series(service: "s", operation: "o", status: "2xx", region: "r",
                                                     requests: latency.count, errors: 0, latency: latency)
            var bytes = PrometheusExposition.protobuf([series])[...]
            var families: [Io_Prometheus_Client_MetricFamily] = []
            while !bytes.isEmpty {
                var length = 0
                var shift = 0
                while true {
                    let byte = bytes.removeFirst()
                    length |= Int(byte & 0x7f) << shift
                    shift += 7
                    if byte & 0x80 == 0 { break }
                }
                families.append(try Io_Prometheus_Client_MetricFamily(serializedBytes: Array(bytes.prefix(length))))
                bytes = bytes.dropFirst(length)
            }
            #expect(families.map(\.name) == ["tally_requests_total", "tally_request_errors_total", "tally_request_duration_microseconds"])
            let histogram = families[2].metric[0].histogram
            #expect(histogram.schema == 6 && histogram.sampleCount == latency.count && histogram.zeroCount == latency.zeroCount)
            #expect(histogram.sampleSum == latency.sum)
            var expected: [Int32: UInt64] = [:]
            for (position, count) in latency.counts.enumerated() where count > 0 { expected[latency.offset + Int32(position)] = count }
            #expect(Self.nativeCounts(histogram) == expected, "seed \(seed)")
            #expect(histogram.positiveDelta.count == expected.count)
            // Classic buckets: cumulative, never above the count.
            let cumulative = histogram.bucket.map(\.cumulativeCount)
            #expect(cumulative == cumulative.sorted() && (cumulative.last ?? 0) <= latency.count)
        }
    }

    /// A classic bound on a sketch boundary counts exactly; the text format lists every bucket,
    /// +Inf, sum and count, and escapes label values.
    @Test func classicBucketsAndText() {
        var sketch = LatencySketch()
        let origin = ReplicaID(1)
        for value in [10.0, 20, 20, 40, 80] { sketch.record(value, at: origin) }
        var latency = LatencyDistribution()
        latency.add(sketch)
        let boundary = pow(2, 70.0 / 64)  // γ^70 at scale 6: a bucket's upper bound, about 2.13
        #expect(latency.countAtMost(pow(2, Double(ExponentialBuckets.index(of: 20, scale: 6) + 1) / 64)).certain == 3)
        let series = PrometheusExposition.Series(service: "a\"b", operation: "GET /x\\y\n", status: "5xx", region: "eu",
                                                 requests: 5, errors: 5, latency: latency)
        let text = PrometheusExposition.text([series], buckets: [boundary, 30, 100])
        #expect(text.contains("tally_requests_total{service=\"a\\\"b\",operation=\"GET /x\\\\y\\n\",status=\"5xx\",region=\"eu\"} 5\n"))
        #expect(text.contains("le=\"30\"} 3\n") && text.contains("le=\"100\"} 5\n") && text.contains("le=\"+Inf\"} 5\n"))
        #expect(text.contains("tally_request_duration_microseconds_sum{service=\"a\\\"b\"") && text.contains("_count{"))
        #expect(text.contains("# TYPE tally_request_duration_microseconds histogram\n"))
        #expect(PrometheusExposition.wantsProtobuf(accept: "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3"))
        #expect(!PrometheusExposition.wantsProtobuf(accept: "text/plain;version=0.0.4"))
        #expect(!PrometheusExposition.wantsProtobuf(accept: nil))
    }
}
