import Foundation
import Testing
import TallyReplica
@testable import TallyNode

@Suite struct EventStoreTests {
    static func entry(_ sequence: UInt64) -> LogEntry {
        LogEntry(sequence: sequence, acceptedAt: Timestamp(millisecondsSinceEpoch: 0), client: "c", idempotencyKey: nil,
                 events: [Event(service: "s", operation: "o", status: 200, latencyMicros: 1,
                                timestamp: Timestamp(millisecondsSinceEpoch: 0))],
                 receipt: IngestReceipt(accepted: 1, rejected: [], sequence: sequence))
    }

    /// An entry committed ahead of an earlier one must not make the earlier one look durable.
    @Test func durabilityIsContiguous() async throws {
        let directory = NSTemporaryDirectory() + "tally-store-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try EventStore(directory: directory)
        try await store.append(Self.entry(2))
        var waited = 0
        while await store.commits < 1 && waited < 500 {
            try await Task.sleep(for: .milliseconds(10))
            waited += 1
        }
        #expect(await store.commits == 1)
        #expect(await store.durableSequence == 0)
        try await store.append(Self.entry(1))
        try await store.waitDurable(through: 2)
        #expect(await store.durableSequence == 2)
        // Both are in the log, in sequence order.
        let reopened = try EventStore(directory: directory)
        #expect(try await reopened.readLog().map(\.sequence) == [1, 2])
    }
}
