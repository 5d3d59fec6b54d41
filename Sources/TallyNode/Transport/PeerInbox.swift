import NIOConcurrencyHelpers

/// Frames from the peers, handed to the node one at a time and in the order they arrived on each
/// peer's connection: one bounded queue and one consumer per peer region, never a task per frame.
///
/// At most `framesMax` frames wait per peer; beyond that the newest are dropped and counted
/// (`dropped`). Gossip repairs a dropped message, and a dropped read answer makes that region
/// "missing" from its global read, as a slow one would be. A peer that floods fills only its own
/// queue. Regions are the transport's configured peers, so the queues are bounded in number too.
final class PeerInbox: Sendable {
    enum Frame: Sendable {
        case message([UInt8])
        case read([UInt8])
    }

    /// Frames waiting per peer: with 5 MiB frames, at most about 300 MiB per peer in the worst case;
    /// usually a few small digests.
    static let defaultFramesMax = 64

    let framesMax: Int
    private let handler: @Sendable (Frame, String) async -> Void
    private let queues = NIOLockedValueBox<[String: AsyncStream<Frame>.Continuation]>([:])
    private let drops = NIOLockedValueBox<[String: Int]>([:])

    init(framesMax: Int, handler: @escaping @Sendable (Frame, String) async -> Void) {
        self.framesMax = framesMax
        self.handler = handler
    }

    /// Queues a frame from `region` (called on the connection's event loop).
    func post(_ frame: Frame, from region: String) {
        let queue = self.queues.withLockedValue { queues in
            if let queue = queues[region] { return queue }
            let (stream, queue) = AsyncStream<Frame>.makeStream(bufferingPolicy: .bufferingOldest(self.framesMax))
            queues[region] = queue
            let handler = self.handler
            Task {
                for await frame in stream { await handler(frame, region) }
            }
            return queue
        }
        if case .dropped = queue.yield(frame) {
            self.drops.withLockedValue { $0[region, default: 0] += 1 }
        }
    }

    /// Frames dropped per region because its queue was full.
    var dropped: [String: Int] { self.drops.withLockedValue { $0 } }

    /// Ends every queue (the node is stopping); frames already queued are still delivered.
    func finish() {
        for queue in self.queues.withLockedValue({ Array($0.values) }) { queue.finish() }
    }
}
