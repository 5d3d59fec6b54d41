import HTTPTypes
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import Testing
@testable import TallyNode

/// `RequestDeadlineHandler` in an `EmbeddedChannel`, on its virtual clock: no sockets, no sleeps.
@Suite struct RequestDeadlineTests {
    static func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(RequestDeadlineHandler(
            headTimeout: .seconds(10), bodyTimeout: .seconds(30), keepAliveTimeout: .seconds(60)))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    static let head = HTTPRequest(method: .post, scheme: nil, authority: nil, path: "/v1/events")

    @Test func noHeadersWithinTheHeadTimeoutCloses() throws {
        let channel = try Self.channel()
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
    }

    @Test func aBodyThatNeverEndsClosesAtTheBodyTimeout() throws {
        let channel = try Self.channel()
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        try channel.writeInbound(HTTPRequestPart.head(Self.head))
        // The head arrived: the head deadline no longer applies, the body's does.
        channel.embeddedEventLoop.advanceTime(by: .seconds(29))
        try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: "[")))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
    }

    @Test func aCompleteRequestWaitsForItsAnswerThenKeepAlive() throws {
        let channel = try Self.channel()
        try channel.writeInbound(HTTPRequestPart.head(Self.head))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        // The handler takes its time answering: no deadline while it does.
        channel.embeddedEventLoop.advanceTime(by: .seconds(120))
        #expect(channel.isActive)
        try channel.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: .ok)))
        try channel.writeOutbound(HTTPResponsePart.end(nil))
        channel.embeddedEventLoop.advanceTime(by: .seconds(59))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
    }
}

/// `ClientPresenceHandler` in an `EmbeddedChannel`: the client closing its side, or the connection
/// going away, marks it gone; request parts pass through untouched.
@Suite struct ClientPresenceTests {
    @Test func theClientClosingItsSideOrTheConnectionEndingMarksItGone() throws {
        for ending in ["input closed", "inactive"] {
            let handler = ClientPresenceHandler()
            let channel = EmbeddedChannel(handler: handler)
            let presence = handler.presence
            try channel.writeInbound(HTTPRequestPart.head(HTTPRequest(method: .get, scheme: nil, authority: "x", path: "/")))
            #expect(!presence.isGone)
            #expect(try channel.readInbound(as: HTTPRequestPart.self) != nil)
            if ending == "input closed" {
                channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            } else {
                channel.pipeline.fireChannelInactive()
            }
            #expect(presence.isGone, "\(ending)")
            _ = try? channel.finish()
        }
    }
}
