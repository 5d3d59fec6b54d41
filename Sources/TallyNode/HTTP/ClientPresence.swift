import NIOConcurrencyHelpers
import NIOCore
import NIOHTTPTypes

/// Whether an HTTP connection's client is still there: set once the client closes its side (or
/// the connection goes away), so a query it asked for stops instead of working for nobody.
///
/// A client that closes its sending side is counted as gone, as nginx (a 499) and Go's net/http
/// (the request context) do: over TCP a full close looks the same until the server writes.
final class ClientPresence: Sendable {
    private let closed = NIOLockedValueBox(false)

    var isGone: Bool { self.closed.withLockedValue { $0 } }

    func markGone() { self.closed.withLockedValue { $0 = true } }
}

/// Watches one HTTP connection for its client leaving (`ClientPresence`); passes everything on.
/// Sits after Hummingbird's HTTP decoder, like `RequestDeadlineHandler`.
final class ClientPresenceHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    let presence = ClientPresence()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed { self.presence.markGone() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.presence.markGone()
        context.fireChannelInactive()
    }

    /// The presence of the client on `channel`, or nil when the channel has no such handler (a
    /// test's in-memory channel).
    static func presence(on channel: any Channel) async -> ClientPresence? {
        try? await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: ClientPresenceHandler.self).presence
        }.get()
    }
}
