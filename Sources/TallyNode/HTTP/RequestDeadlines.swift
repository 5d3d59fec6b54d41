import NIOCore
import NIOHTTPTypes

/// Closes an HTTP connection whose client is too slow: a request head (headers) not complete
/// within `headTimeout` of the connection opening (`keepAliveTimeout` after a response), or a body
/// not complete within `bodyTimeout` of its head. A client that announces a large body and sends
/// nothing, or sends its headers a byte a second, holds a connection only that long.
///
/// Sits after the HTTP decoder (Hummingbird's `additionalChannelHandlers`), so it sees whole request
/// parts; Hummingbird's own idle timeout covers a connection with no traffic at all.
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    // After Hummingbird's HTTP1ToHTTPServerCodec: swift-http-types parts.
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let headTimeout: TimeAmount
    let bodyTimeout: TimeAmount
    let keepAliveTimeout: TimeAmount
    private var deadline: Scheduled<Void>?

    init(headTimeout: TimeAmount, bodyTimeout: TimeAmount, keepAliveTimeout: TimeAmount) {
        self.headTimeout = headTimeout
        self.bodyTimeout = bodyTimeout
        self.keepAliveTimeout = keepAliveTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.arm(self.headTimeout, context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.deadline?.cancel()
        self.deadline = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head:
            self.arm(self.bodyTimeout, context: context)
        case .end:
            // The handler answers now; the next head's clock starts when the answer is sent.
            self.deadline?.cancel()
            self.deadline = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = self.unwrapOutboundIn(data) {
            self.arm(self.keepAliveTimeout, context: context)
        }
        context.write(data, promise: promise)
    }

    private func arm(_ timeout: TimeAmount, context: ChannelHandlerContext) {
        self.deadline?.cancel()
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)  // the task runs on this loop
        self.deadline = context.eventLoop.scheduleTask(in: timeout) {
            bound.value.close(promise: nil)
        }
    }
}
