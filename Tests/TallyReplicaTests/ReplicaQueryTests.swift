import Foundation
import Testing
import TallyAggregates
@testable import TallyReplica

@Suite struct ReplicaQueryTests {
    static let now = ReplicaIngestTests.now
    /// The start of the hour before `now` (now is on the hour).
    static let hourAgo = now - .seconds(3_600)

    static func exp2(_ x: Double) -> Double { Foundation.exp2(x) }

    /// A replica holding 10,000 events over the last hour, and the events themselves.
    static func populated(seed: UInt64 = 5) -> (Replica, [Event]) {
        var replica = ReplicaIngestTests.replica()
        var random = SeededRandom(seed: seed)
        var events: [Event] = []
        for minute in 0..<60 {
            for _ in 0..<Int.random(in: 100...233, using: &random) {
                let operation = ["GET /cart", "POST /pay"].randomElement(using: &random)!  // non-empty literal
                let status: UInt16 = Int.random(in: 0..<20, using: &random) == 0 ? 503 : 200
                let latency = 20_000 * Self.exp2(0.7 * random.nextGaussian() / 0.693)
                let at = Self.hourAgo + .milliseconds(Int64(minute) * 60_000 + Int64.random(in: 0..<60_000, using: &random))
                events.append(Event(service: "checkout", operation: operation, status: status, latencyMicros: latency,
                                    user: "user-\(Int.random(in: 0..<300, using: &random))", timestamp: at))
            }
        }
        for (number, chunk) in stride(from: 0, to: events.count, by: 500).enumerated() {
            let batch = Array(events[chunk..<min(chunk + 500, events.count)])
            _ = replica.ingest(EventBatch(id: BatchID(UInt64(number)), client: "c", events: batch), now: Self.now)
        }
        return (replica, events)
    }

    @Test func wholeRangeAnswerIsExactWhereItCanBeAndWithinErrorWhereNot() throws {
        let (replica, events) = Self.populated()
        let metrics: [Metric] = [.count, .errors, .errorRate, .rate, .quantile(0.5), .quantile(0.99), .mean, .max,
                                 .uniqueUsers]
        let answer = try replica.query(
            Query(service: "checkout", from: Self.hourAgo, to: Self.now, metrics: metrics), now: Self.now)
        // On the hour both ends: the hourly buckets answer.
        #expect(answer.resolution == .hour && answer.from == Self.hourAgo && answer.to == Self.now)
        let values = try #require(answer.groups.first?.points.first?.values)
        let latencies = events.map(\.latencyMicros).sorted()
        let errors = events.filter { $0.status >= 500 }.count
        #expect(values[0] == Double(events.count))
        #expect(values[1] == Double(errors))
        #expect(values[2] == Double(errors) / Double(events.count))
        #expect(values[3] == Double(events.count) / 3_600)
        for (position, q) in [(4, 0.5), (5, 0.99)] {
            let exact = latencies[Int(LatencyDistribution.nearestRank(q, count: UInt64(latencies.count))) - 1]
            let estimate = try #require(values[position])
            #expect(abs(estimate - exact) / exact <= 0.0055, "p\(q * 100): \(estimate) vs \(exact)")
        }
        let mean = latencies.reduce(0, +) / Double(latencies.count)
        #expect(abs(try #require(values[6]) - mean) / mean < 1e-9)
        #expect(values[7] == latencies.last)
        #expect(abs(try #require(values[8]) - 300) <= 300 * 3 * 0.0082)
    }

    @Test func stepPicksTheCoarsestFittingResolutionAndPointsAddUp() throws {
        let (replica, events) = Self.populated()
        let byMinute = try replica.query(
            Query(service: "checkout", from: Self.hourAgo, to: Self.now, step: .seconds(300), metrics: [.count]),
            now: Self.now)
        #expect(byMinute.resolution == .minute && byMinute.groups[0].points.count == 12)
        let total = byMinute.groups[0].points.compactMap { $0.values[0] }.reduce(0, +)
        #expect(total == Double(events.count))
        let hourly = try replica.query(
            Query(service: "checkout", from: Self.hourAgo - .seconds(3_600 * 5), to: Self.now, step: .seconds(7_200),
                  metrics: [.count]),
            now: Self.now)
        #expect(hourly.resolution == .hour && hourly.groups[0].points.count == 3)
    }

    @Test func unalignedRangeIsCoveredOutwardAndSaysSo() throws {
        let (replica, _) = Self.populated()
        let from = Self.hourAgo + .milliseconds(90_500)
        let answer = try replica.query(
            Query(service: "checkout", from: from, to: Self.now - .seconds(30), metrics: [.count]), now: Self.now)
        #expect(answer.resolution == .minute)
        #expect(answer.from == Self.hourAgo + .seconds(60) && answer.to == Self.now)
    }

    @Test func groupByOperationAndStatus() throws {
        let (replica, events) = Self.populated()
        let answer = try replica.query(
            Query(service: "checkout", from: Self.hourAgo, to: Self.now, groupBy: [.operation, .status],
                  metrics: [.count]),
            now: Self.now)
        #expect(answer.groups.map { "\($0.operation ?? "-") \($0.statusClass.map { "\($0)" } ?? "-")" }
            == ["GET /cart 2xx", "GET /cart 5xx", "POST /pay 2xx", "POST /pay 5xx"])
        for group in answer.groups {
            let expected = events.filter {
                $0.operation == group.operation && $0.statusClass == group.statusClass
            }.count
            #expect(group.points[0].values[0] == Double(expected))
        }
        let filtered = try replica.query(
            Query(service: "checkout", operation: "GET /cart", statusClass: .serverError, from: Self.hourAgo,
                  to: Self.now, metrics: [.count]),
            now: Self.now)
        #expect(filtered.groups[0].points[0].values[0] == answer.groups[1].points[0].values[0])
    }

    @Test func unknownServiceAnswersZeroNotAnError() throws {
        let (replica, _) = Self.populated()
        let answer = try replica.query(
            Query(service: "nobody", from: Self.hourAgo, to: Self.now, metrics: [.count, .quantile(0.5)]),
            now: Self.now)
        #expect(answer.groups.count == 1 && answer.groups[0].points[0].values == [0, nil])
    }

    @Test func badQueriesNameTheParameter() {
        let replica = ReplicaIngestTests.replica()
        func problem(_ query: Query) -> String? {
            do {
                _ = try replica.query(query, now: Self.now, limits: QueryLimits(pointsMax: 100))
                return nil
            } catch {
                return error.description
            }
        }
        #expect(problem(Query(service: "", from: Self.hourAgo, to: Self.now, metrics: [.count])) == "service: is required")
        #expect(problem(Query(service: "s", from: Self.now, to: Self.hourAgo, metrics: [.count]))?.hasPrefix("from:") == true)
        #expect(problem(Query(service: "s", from: Self.hourAgo, to: Self.now, metrics: [])) == "metrics: name at least one")
        #expect(problem(Query(service: "s", from: Self.hourAgo, to: Self.now, step: .seconds(90), metrics: [.count]))
            == "step: must be a whole number of minutes")
        #expect(problem(Query(service: "s", from: Self.now - .seconds(86_400), to: Self.now, step: .seconds(60),
                              metrics: [.count]))?.hasPrefix("step: the range needs 1440 points") == true)
    }

    @Test func metricNamesParseAndPrint() throws {
        #expect(try Metric(parsing: "p99.9") == .quantile(0.999))
        #expect(try Metric(parsing: "p50") == .quantile(0.5))
        #expect(try Metric(parsing: "error_rate") == .errorRate)
        #expect(Metric.quantile(0.999).description == "p99.9" && Metric.quantile(0.5).description == "p50")
        for bad in ["p", "p101", "pnan", "p1e1", "latency", "p-1", "P50"] {
            #expect(throws: QueryError.self, "\(bad)") { try Metric(parsing: bad) }
        }
    }
}
