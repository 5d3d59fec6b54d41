import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TallyProtocols
import TallyReplica

/// StatsD and DogStatsD on UDP (one datagram, several lines) and TCP (newline-separated lines),
/// mapped to items by `StatsDMapping` on the event loop and handed to the node in batches.
///
/// UDP has no acknowledgement and no back-pressure, so nothing here can make a client wait: a
/// datagram the kernel's buffer had no room for is lost before Tally sees it (the kernel counts
/// it: `RcvbufErrors` in /proc/net/snmp), and items past `pending_items_max` while the node is
/// busy are dropped here and counted (`tally_statsd_lines_total{outcome="dropped"}`).
public final class StatsDListener: Sendable {
    let channels: [any Channel]
    let sink: StatsDSink
    let pump: Task<Void, Never>

    /// The bound addresses, UDP first (for tests and logs).
    public var addresses: [SocketAddress] { self.channels.compactMap(\.localAddress) }

    private init(channels: [any Channel], sink: StatsDSink, pump: Task<Void, Never>) {
        self.channels = channels
        self.sink = sink
        self.pump = pump
    }

    /// Binds the configured sockets and starts handing their items to `node`.
    public static func start(node: Node, config: StatsDConfig,
                             group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> StatsDListener
    {
        let sink = StatsDSink(pendingItemsMax: config.pendingItemsMax)
        let mapping = config.mapping
        let clock: @Sendable () -> Timestamp = { node.currentTime() }
        var channels: [any Channel] = []
        do {
            if let udp = config.udp {
                let channel = try await DatagramBootstrap(group: group)
                    .channelOption(.socketOption(.so_reuseaddr), value: 1)
                    .channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(config.receiveBufferBytes))
                    // One read per datagram of up to 64 KiB, several per wake-up.
                    .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
                    .channelOption(.maxMessagesPerRead, value: 64)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(
                                StatsDDatagramHandler(mapping: mapping, sink: sink, clock: clock))
                        }
                    }
                    .bind(host: udp.host, port: udp.port).get()
                channels.append(channel)
            }
            if let tcp = config.tcp {
                let connections = StatsDConnectionLimit(max: config.connectionsMax)
                let channel = try await ServerBootstrap(group: group)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(StatsDConnectionHandler(limit: connections))
                            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(StatsDLineDecoder()))
                            try channel.pipeline.syncOperations.addHandler(
                                StatsDLineHandler(mapping: mapping, sink: sink, clock: clock))
                        }
                    }
                    .bind(host: tcp.host, port: tcp.port).get()
                channels.append(channel)
            }
        } catch {
            for channel in channels { try? await channel.close() }
            throw error
        }
        let client = config.client
        let pump = Task { await sink.pump(into: node, client: client) }
        return StatsDListener(channels: channels, sink: sink, pump: pump)
    }

    /// Closes the sockets and hands what is pending to the node.
    public func stop() async {
        for channel in self.channels { try? await channel.close() }
        self.sink.finish()
        await self.pump.value
    }
}

/// Items waiting for the node, bounded; and the counts `/metrics` shows.
final class StatsDSink: Sendable {
    struct State {
        var items: [BatchItem] = []
        var counts = StatsDCounts()
        var finished = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    let pendingItemsMax: Int
    let state = NIOLockedValueBox(State())

    init(pendingItemsMax: Int) {
        self.pendingItemsMax = pendingItemsMax
    }

    /// Called on an event loop with one datagram's (or one TCP read's) mapped lines. Wakes the
    /// pump only when it sleeps for want of items: the pump takes what gathered while it worked
    /// (a wake-up per datagram was most of the cost at 100,000 datagrams a second).
    func add(_ mapped: StatsDMapping.Mapped, datagrams: Int) {
        let waiter = self.state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            state.counts.datagrams += UInt64(datagrams)
            state.counts.invalid += UInt64(mapped.invalid)
            state.counts.skipped += UInt64(mapped.skipped)
            if state.items.count + mapped.items.count > self.pendingItemsMax {
                state.counts.dropped += UInt64(mapped.lines)
            } else {
                state.items += mapped.items
                state.counts.mapped += UInt64(mapped.lines)
            }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    func finish() {
        let waiter = self.state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Hands pending items to the node until finished: at most `batch_events_max` per batch, one
    /// batch at a time (the node's own overload bound then applies to StatsD as to everyone).
    func pump(into node: Node, client: String) async {
        let chunk = max(node.config.limits.batchEventsMax, 1)
        while true {
            let (items, finished) = await self.take()
            if items.count < chunk && !finished {
                // A few items: let more gather for a moment (bounded: 2 ms of latency), so the node
                // takes batches, not a datagram at a time.
                try? await Task.sleep(for: .milliseconds(2))
                let (more, finishedNow) = await self.takeNow()
                await self.ingest(items + more, into: node, client: client, chunk: chunk)
                if finishedNow { return }
                continue
            }
            await self.ingest(items, into: node, client: client, chunk: chunk)
            if finished { return }
        }
    }

    private func ingest(_ items: [BatchItem], into node: Node, client: String, chunk: Int) async {
        var start = 0
        while start < items.count {
            let end = min(start + chunk, items.count)
            let outcome = await node.ingest(items: Array(items[start..<end]), client: client, idempotencyKey: nil)
            await node.recordStatsD(outcome, items: end - start)
            start = end
        }
        await node.recordStatsDCounts(self.state.withLockedValue { state in
            defer { state.counts = StatsDCounts() }
            return state.counts
        })
    }

    /// What is pending, without waiting.
    private func takeNow() -> ([BatchItem], Bool) {
        self.state.withLockedValue { state in
            defer { state.items = [] }
            return (state.items, state.finished)
        }
    }

    private func take() async -> ([BatchItem], Bool) {
        while true {
            let taken = self.state.withLockedValue { state -> ([BatchItem], Bool)? in
                guard !state.items.isEmpty || state.finished || state.counts.hasAny else { return nil }
                defer { state.items = [] }
                return (state.items, state.finished)
            }
            if let taken { return taken }
            await withCheckedContinuation { continuation in
                let ready = self.state.withLockedValue { state -> Bool in
                    if !state.items.isEmpty || state.finished || state.counts.hasAny { return true }
                    state.waiter = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        }
    }
}

/// What the listeners saw since the last report to the node.
struct StatsDCounts: Sendable {
    var datagrams: UInt64 = 0
    /// Lines mapped to items and queued for the node.
    var mapped: UInt64 = 0
    var invalid: UInt64 = 0
    var skipped: UInt64 = 0
    /// Lines dropped because `pending_items_max` items were already waiting.
    var dropped: UInt64 = 0

    var hasAny: Bool { self.datagrams | self.mapped | self.invalid | self.skipped | self.dropped != 0 }
}

/// One UDP datagram: its lines, mapped.
final class StatsDDatagramHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let mapping: StatsDMapping
    let sink: StatsDSink
    let clock: @Sendable () -> Timestamp

    init(mapping: StatsDMapping, sink: StatsDSink, clock: @escaping @Sendable () -> Timestamp) {
        self.mapping = mapping
        self.sink = sink
        self.clock = clock
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var envelope = Self.unwrapInboundIn(data)
        let bytes = envelope.data.readBytes(length: envelope.data.readableBytes) ?? []
        var mapped = StatsDMapping.Mapped()
        self.mapping.map(bytes, now: self.clock(), into: &mapped)
        self.sink.add(mapped, datagrams: 1)
    }
}

/// TCP: lines up to 64 KiB each, split on `\n`; a longer one closes the connection (a client that
/// never sends a newline cannot grow the buffer).
struct StatsDLineDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    static let lineBytesMax = 65_536

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > Self.lineBytesMax { throw LineTooLong() }
            return .needMoreData
        }
        let length = newline - buffer.readerIndex
        let line = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: 1)
        context.fireChannelRead(Self.wrapInboundOut(line))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try self.decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0, let rest = buffer.readSlice(length: buffer.readableBytes) {
            context.fireChannelRead(Self.wrapInboundOut(rest))
        }
        return .needMoreData
    }

    struct LineTooLong: Error {}
}

/// TCP lines, mapped as they come; batched per read into the sink.
final class StatsDLineHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    let mapping: StatsDMapping
    let sink: StatsDSink
    let clock: @Sendable () -> Timestamp

    init(mapping: StatsDMapping, sink: StatsDSink, clock: @escaping @Sendable () -> Timestamp) {
        self.mapping = mapping
        self.sink = sink
        self.clock = clock
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var line = Self.unwrapInboundIn(data)
        let bytes = line.readBytes(length: line.readableBytes) ?? []
        var mapped = StatsDMapping.Mapped()
        self.mapping.map(bytes, now: self.clock(), into: &mapped)
        self.sink.add(mapped, datagrams: 0)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A line over the cap, or a reset: this connection ends, the others go on.
        if error is StatsDLineDecoder.LineTooLong {
            var mapped = StatsDMapping.Mapped()
            mapped.invalid = 1
            self.sink.add(mapped, datagrams: 0)
        }
        context.close(promise: nil)
    }
}

/// At most `max` TCP connections at once: one more is closed as it opens (a client cannot hold
/// the node's descriptors). Idle ones stay: StatsD clients keep one connection open.
final class StatsDConnectionLimit: Sendable {
    let max: Int
    let open = NIOLockedValueBox(0)

    init(max: Int) {
        self.max = max
    }
}

final class StatsDConnectionHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let limit: StatsDConnectionLimit

    init(limit: StatsDConnectionLimit) {
        self.limit = limit
    }

    func channelActive(context: ChannelHandlerContext) {
        let admitted = self.limit.open.withLockedValue { open -> Bool in
            open += 1
            return open <= self.limit.max
        }
        if admitted {
            context.fireChannelActive()
        } else {
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.limit.open.withLockedValue { $0 -= 1 }
        context.fireChannelInactive()
    }
}
