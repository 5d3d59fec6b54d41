import TallyAggregates

/// What travels on a peer connection, inside TLS: length-prefixed frames.
///
/// ```
/// frame:   length u32 BE (the bytes after it: kind and payload, at least 1)  kind u8  payload
/// kinds:   1 hello     the handshake (`Hello`), first in each direction, exactly once
///          2 message   one replication message, as the replica encoded it (`Action.send`)
///          3 goodbye   why the sender is closing, UTF-8, then it closes
///          4 read      a global read's request or answer (`ReadRequest`, `ReadAnswer`); protocol 2 on
/// ```
/// A length over the receiver's cap is refused as soon as its four bytes arrive, before any of the
/// payload is buffered, so a peer cannot make a node hold more than one capped frame.
public enum Frame: Equatable, Sendable {
    case hello(Hello)
    case message([UInt8])
    case goodbye(String)
    case read([UInt8])

    enum Kind: UInt8 {
        case hello = 1
        case message = 2
        case goodbye = 3
        case read = 4
    }

    /// The default cap on a frame's length: the replica's largest message (`Limits.gossipBytesMax`,
    /// 256 KiB) with room to spare, and small enough that a connection's buffer stays bounded.
    public static let defaultBytesMax = 1 << 20

    /// The frame's bytes, length prefix included.
    public func encoded() -> [UInt8] {
        var body = ByteWriter()
        switch self {
        case .hello(let hello):
            body.writeUInt8(Kind.hello.rawValue)
            hello.encode(to: &body)
        case .message(let bytes):
            body.writeUInt8(Kind.message.rawValue)
            body.writeBytes(bytes)
        case .goodbye(let reason):
            body.writeUInt8(Kind.goodbye.rawValue)
            body.writeBytes(Array(reason.utf8.prefix(1_024)))
        case .read(let bytes):
            body.writeUInt8(Kind.read.rawValue)
            body.writeBytes(bytes)
        }
        let length = UInt32(body.bytes.count)
        return [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
            + body.bytes
    }
}

/// A frame that cannot be accepted: the connection is closed with this as the reason.
public enum FrameError: Error, Equatable, Sendable, CustomStringConvertible {
    case tooLong(length: Int, limit: Int)
    case empty
    case unknownKind(UInt8)
    case malformedHello(DecodeError)
    case malformedGoodbye

    public var description: String {
        switch self {
        case .tooLong(let length, let limit): "frame of \(length) bytes is over the limit of \(limit)"
        case .empty: "frame of length 0 (no kind byte)"
        case .unknownKind(let kind): "frame kind \(kind) is not one this build knows (1 hello, 2 message, 3 goodbye, 4 read)"
        case .malformedHello(let error): "malformed hello: \(error)"
        case .malformedGoodbye: "goodbye reason is not UTF-8"
        }
    }
}

/// Splits a byte stream into frames, however the stream was cut into reads.
///
/// Bytes go in with `append`; `next()` returns each complete frame once, or nil until more bytes
/// arrive. After it throws, the stream is unusable (a frame boundary is lost): close the connection.
public struct FrameDecoder: Sendable {
    public let bytesMax: Int
    private var buffer: [UInt8] = []
    /// Bytes of `buffer` before this offset were consumed.
    private var start = 0
    private var failed: FrameError?

    public init(bytesMax: Int = Frame.defaultBytesMax) {
        precondition(bytesMax >= 1 && bytesMax <= Int(UInt32.max), "frame cap \(bytesMax)")
        self.bytesMax = bytesMax
    }

    /// Bytes received and not yet returned as frames: at most one frame's worth plus a header.
    public var buffered: Int { self.buffer.count - self.start }

    public mutating func append(_ bytes: some Sequence<UInt8>) {
        if self.start > 0 && self.start * 2 >= self.buffer.count {
            self.buffer.removeFirst(self.start)
            self.start = 0
        }
        self.buffer.append(contentsOf: bytes)
    }

    public mutating func next() throws(FrameError) -> Frame? {
        if let failed { throw failed }
        guard self.buffered >= 4 else { return nil }
        let length = self.buffer[self.start..<self.start + 4].reduce(0) { $0 << 8 | Int($1) }
        do throws(FrameError) {
            guard length > 0 else { throw FrameError.empty }
            guard length <= self.bytesMax else { throw FrameError.tooLong(length: length, limit: self.bytesMax) }
            guard self.buffered >= 4 + length else { return nil }
            let body = self.buffer[(self.start + 4)..<(self.start + 4 + length)]
            self.start += 4 + length
            return try Self.frame(body)
        } catch {
            self.failed = error
            throw error
        }
    }

    private static func frame(_ body: ArraySlice<UInt8>) throws(FrameError) -> Frame {
        let payload = Array(body.dropFirst())
        switch Frame.Kind(rawValue: body[body.startIndex]) {
        case .hello:
            do throws(DecodeError) {
                var reader = ByteReader(payload)
                let hello = try Hello(from: &reader)
                guard reader.isAtEnd else { throw DecodeError.trailingBytes(count: reader.remaining) }
                return .hello(hello)
            } catch {
                throw .malformedHello(error)
            }
        case .message:
            return .message(payload)
        case .read:
            return .read(payload)
        case .goodbye:
            guard let reason = String(validating: payload, as: UTF8.self) else { throw .malformedGoodbye }
            return .goodbye(reason)
        case nil:
            throw .unknownKind(body[body.startIndex])
        }
    }
}
