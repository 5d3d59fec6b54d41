import Testing
import TallyAggregates
@testable import TallyNode

@Suite struct FrameTests {
    static func randomFrame(_ random: inout SeededRandom) -> Frame {
        switch random.next() % 4 {
        case 0:
            let low = UInt16(1 + random.next() % 4)
            return .hello(Hello(protocols: low...(low + UInt16(random.next() % 3)), node: "n\(random.next() % 100)",
                                region: ["us-east", "eu-west", "ap-south"][Int(random.next() % 3)],
                                incarnation: random.next() % 1_000))
        case 1:
            return .message((0..<Int(random.next() % 3_000)).map { _ in UInt8(truncatingIfNeeded: random.next()) })
        case 2:
            return .read((0..<Int(random.next() % 3_000)).map { _ in UInt8(truncatingIfNeeded: random.next()) })
        default:
            return .goodbye(String(repeating: "é", count: Int(random.next() % 20)))
        }
    }

    /// The transport writes message and read frames straight into a ByteBuffer: the same bytes.
    @Test(arguments: 1...10 as ClosedRange<UInt64>)
    func theTransportsDirectFramingMatchesTheEncoding(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        let payload = (0..<Int(random.next() % 5_000)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        var message = PeerTransport.frame(.message, payload)
        #expect(message.readBytes(length: message.readableBytes) == Frame.message(payload).encoded())
        var read = PeerTransport.frame(.read, payload)
        #expect(read.readBytes(length: read.readableBytes) == Frame.read(payload).encoded())
    }

    /// Everything `decoder` returns now.
    static func drain(_ decoder: inout FrameDecoder) throws -> [Frame] {
        var frames: [Frame] = []
        while let frame = try decoder.next() { frames.append(frame) }
        return frames
    }

    @Test(arguments: 1...20 as ClosedRange<UInt64>)
    func anyCutOfTheStreamGivesTheSameFrames(seed: UInt64) throws {
        var random = SeededRandom(seed: seed)
        let frames = (0..<Int(1 + random.next() % 12)).map { _ in Self.randomFrame(&random) }
        let stream = frames.flatMap { $0.encoded() }

        // Byte by byte: every frame comes out exactly when its last byte arrives, and only then.
        var decoder = FrameDecoder()
        var out: [Frame] = []
        for byte in stream {
            decoder.append([byte])
            out += try Self.drain(&decoder)
        }
        #expect(out == frames)
        #expect(decoder.buffered == 0)

        // Random cuts, and all at once.
        var cut = FrameDecoder()
        out = []
        var position = 0
        while position < stream.count {
            let end = min(stream.count, position + Int(random.next() % 700))
            cut.append(stream[position..<end])
            out += try Self.drain(&cut)
            position = end
        }
        #expect(out == frames)
        var whole = FrameDecoder()
        whole.append(stream)
        #expect(try Self.drain(&whole) == frames)
    }

    @Test func anOversizedFrameIsRefusedFromItsHeaderAlone() throws {
        var decoder = FrameDecoder(bytesMax: 1_000)
        decoder.append([0, 0, 0x03, 0xE9])  // 1,001: one over
        #expect(throws: FrameError.tooLong(length: 1_001, limit: 1_000)) { try decoder.next() }
        // The decoder stays failed: the stream has lost its frame boundaries.
        decoder.append(Frame.message([1]).encoded())
        #expect(throws: FrameError.tooLong(length: 1_001, limit: 1_000)) { try decoder.next() }

        var atLimit = FrameDecoder(bytesMax: 1_000)
        atLimit.append(Frame.message([UInt8](repeating: 7, count: 999)).encoded())
        #expect(try atLimit.next() == .message([UInt8](repeating: 7, count: 999)))
    }

    @Test func badFramesNameWhatIsWrong() {
        func error(_ bytes: [UInt8]) -> FrameError? {
            var decoder = FrameDecoder()
            decoder.append(bytes)
            do {
                _ = try decoder.next()
                return nil
            } catch {
                return error
            }
        }
        #expect(error([0, 0, 0, 0]) == .empty)
        #expect(error([0, 0, 0, 1, 9]) == .unknownKind(9))
        #expect(error([0, 0, 0, 3, 3, 0xFF, 0xFE]) == .malformedGoodbye)
        var hello = Frame.hello(Hello(node: "n1", region: "us-east", incarnation: 1)).encoded()
        hello[5] = UInt8(ascii: "X")  // the magic
        guard case .malformedHello = error(hello) else {
            Issue.record("a hello without the magic was accepted")
            return
        }
        var trailing = Frame.hello(Hello(node: "n1", region: "us-east", incarnation: 1)).encoded()
        trailing[3] += 1
        trailing.append(0)
        #expect(error(trailing) == .malformedHello(.trailingBytes(count: 1)))
        let reversed = [0, 0, 0, 13, 1] + Array("TALY".utf8) + [3, 2, 2] + Array("n1".utf8) + [1, UInt8(ascii: "r"), 0]
        #expect(error(reversed) == .malformedHello(.invalidValue(field: "hello protocol range", value: "3...2")))
    }

    @Test(arguments: 1...10 as ClosedRange<UInt64>)
    func hostileBytesNeverTrap(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var decoder = FrameDecoder(bytesMax: 4_096)
        for _ in 0..<200 {
            // Small lengths, so that frames complete and their bodies are parsed too.
            var chunk: [UInt8] = [0, 0, UInt8(random.next() % 2), UInt8(truncatingIfNeeded: random.next())]
            chunk += (0..<Int(random.next() % 300)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            decoder.append(chunk)
            do {
                _ = try Self.drain(&decoder)
            } catch {
                #expect(decoder.buffered <= 4_096 + 4 + 300)
                return
            }
        }
    }

    @Test func aNewReleaseTalksToAnOldOneAtTheOldVersion() throws {
        // Rolling upgrade: the new build speaks 1...2, the old 1...1; either way round, they agree on 1.
        #expect(try Hello.agree(mine: 1...2, theirs: 1...1) == 1)
        #expect(try Hello.agree(mine: 1...1, theirs: 1...2) == 1)
        #expect(try Hello.agree(mine: 1...3, theirs: 2...5) == 3)
        // Once every node is new and the old version is dropped (2...2), an old node is refused, clearly.
        #expect(throws: HandshakeError.noCommonProtocol(mine: 2...2, theirs: 1...1)) {
            try Hello.agree(mine: 2...2, theirs: 1...1)
        }
        let message = HandshakeError.noCommonProtocol(mine: 2...2, theirs: 1...1).description
        #expect(message.contains("2...2") && message.contains("1...1"))
        // What this build sends decodes to what it meant.
        var decoder = FrameDecoder()
        let hello = Hello(node: "n1", region: "eu-west", incarnation: 7)
        decoder.append(Frame.hello(hello).encoded())
        #expect(try decoder.next() == .hello(hello))
        #expect(hello.protocols == Hello.supportedProtocols)
    }
}
