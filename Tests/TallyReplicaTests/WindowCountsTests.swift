import Testing
import TallyAggregates
@testable import TallyReplica

/// The counts an SLO reads for a window: every bucket starting in it once, at the finest
/// resolution that still holds its start, per status class, with the latency distribution.
@Suite struct WindowCountsTests {
    static let now = ReplicaIngestTests.now

    /// Seeded events over the last 3 days; each window's counts equal a count of the events
    /// themselves over the buckets that start in it.
    @Test func windowsCountEveryEventOfTheirBucketsOnce() throws {
        var replica = ReplicaIngestTests.replica()
        var random = SeededRandom(seed: 21)
        var events: [Event] = []
        for _ in 0..<3_000 {
            let age = Int64(random.next() % (3 * 86_400_000))
            let status: UInt16 = [200, 200, 200, 404, 503][Int(random.next() % 5)]
            events.append(ReplicaIngestTests.event(
                operation: "op-\(random.next() % 3)", status: status, latency: Double(1_000 + random.next() % 900_000),
                at: Self.now - .milliseconds(age)))
        }
        for chunk in stride(from: 0, to: events.count, by: 500) {
            _ = replica.ingest(EventBatch(id: BatchID(UInt64(chunk)), client: "c",
                                          items: events[chunk..<chunk + 500].map { .event($0) }), now: Self.now)
        }
        for (window, resolution) in [(Duration.seconds(300), Resolution.minute), (.seconds(3_600), .minute),
                                     (.seconds(86_400), .minute), (.seconds(3 * 86_400), .hour)]
        {
            let from = Self.now - window
            // A window older than the minute retention (48 h) reads hours.
            let counts = try replica.windowCounts(service: "checkout", from: from, to: Self.now, now: Self.now)
            #expect(counts.resolution == resolution, "\(window)")
            let width = resolution.width.milliseconds
            let inWindow = events.filter {
                let start = $0.timestamp.floor(toMultipleOf: resolution.width).millisecondsSinceEpoch
                return start >= counts.from.millisecondsSinceEpoch && start < Self.now.millisecondsSinceEpoch
            }
            #expect(counts.from.millisecondsSinceEpoch % width == 0 && counts.from >= from)
            #expect(counts.total == UInt64(inWindow.count), "\(window)")
            #expect(counts.requests[.serverError] == UInt64(inWindow.filter { $0.status == 503 }.count))
            #expect(counts.requests(in: [.clientError, .serverError]) == UInt64(inWindow.filter { $0.status >= 400 }.count))
            #expect(counts.errors == counts.requests[.serverError])
            #expect(counts.latency.count == counts.total)
            let threshold = 300_000.0
            let (certain, possible) = counts.latency.countAtMost(threshold)
            let fast = UInt64(inWindow.filter { $0.latencyMicros <= threshold }.count)
            #expect(certain <= fast && fast <= possible)
            // One operation only.
            let one = try replica.windowCounts(service: "checkout", operations: ["op-1"], from: from, to: Self.now,
                                               now: Self.now)
            #expect(one.total == UInt64(inWindow.filter { $0.operation == "op-1" }.count))
        }
        #expect(try replica.windowCounts(service: "nobody", from: Self.now - .seconds(60), to: Self.now, now: Self.now).total == 0)
    }

    @Test func windowsOutsideTheRangeOrTooCostlyAreRefusedNamingWhy() {
        let replica = ReplicaIngestTests.replica()
        #expect(throws: QueryError.self) {
            try replica.windowCounts(service: "s", from: Timestamp(millisecondsSinceEpoch: .min), to: Self.now, now: Self.now)
        }
        #expect(throws: QueryError.self) {
            try replica.windowCounts(service: "s", from: Self.now, to: Self.now - .seconds(1), now: Self.now)
        }
    }
}
