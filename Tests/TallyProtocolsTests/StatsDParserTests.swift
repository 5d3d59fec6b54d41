import Testing
import TallyAggregates
@testable import TallyProtocols

/// StatsD and DogStatsD lines: what a client writes reads back as written; a malformed line is
/// named and skipped, and the lines around it still count; junk never traps.
@Suite struct StatsDParserTests {
    static func text(_ line: StatsD.Line) -> String {
        var out = line.name + ":" + line.values.map { value -> String in
            switch value {
            case .number(let number): number == number.rounded() && abs(number) < 1e15 ? "\(Int64(number))" : "\(number)"
            case .member(let member): member
            }
        }.joined(separator: ":") + "|" + line.type.rawValue
        if line.sampleRate != 1 { out += "|@\(line.sampleRate)" }
        if !line.tags.isEmpty {
            let tags = line.tags.map { tag -> String in
                guard let value = tag.value else { return tag.key }
                return "\(tag.key):\(value)"
            }
            out += "|#" + tags.joined(separator: ",")
        }
        if let timestamp = line.timestamp { out += "|T\(timestamp)" }
        return out
    }

    /// 2,000 seeded random datagrams of valid lines: each reads back exactly as written.
    @Test func whatAClientWritesReadsBack() {
        var random = SeededRandom(seed: 8125)
        for _ in 0..<2_000 {
            var written: [StatsD.Line] = []
            for _ in 0..<(1 + Int(random.next() % 5)) {
                let type = StatsD.MetricType.allCases[Int(random.next() % 6)]
                let count = 1 + Int(random.next() % 3)
                let values: [StatsD.Value] = (0..<count).map { index in
                    type == .set ? .member("u\(random.next() % 1_000)")
                        : .number(type == .gauge && index == 0 ? -Double(random.next() % 50) : Double(random.next() % 100_000) / 4)
                }
                let tags: [(key: String, value: String?)] = (0..<Int(random.next() % 4)).map { index in
                    index % 2 == 0 ? ("service", "svc-\(random.next() % 9)") : ("canary", nil)
                }
                written.append(StatsD.Line(name: "http.request.\(random.next() % 7)", values: values, type: type,
                                           sampleRate: random.next() % 3 == 0 ? 0.25 : 1, tags: tags,
                                           timestamp: random.next() % 4 == 0 ? 1_795_000_000 : nil))
            }
            let datagram = written.map(Self.text).joined(separator: "\n") + (random.next() % 2 == 0 ? "\n" : "")
            let (lines, errors) = StatsD.parse(Array(datagram.utf8))
            #expect(errors.isEmpty, "\(datagram): \(errors)")
            #expect(lines == written, "\(datagram)")
        }
    }

    @Test func aMalformedLineIsNamedAndTheOthersCount() {
        let datagram = """
            checkout.latency:12.5|ms|#service:checkout,operation:pay
            checkout.latency:abc|ms
            checkout.count:1|c|@0.1
            no-type-here:5
            users:alice|s
            _e{5,4}:title|text
            bad.rate:1|c|@2
            neg:-4|ms
            ok:3|d|c:container-1|T1795000000
            """
        let (lines, errors) = StatsD.parse(Array(datagram.utf8))
        #expect(lines.map(\.name) == ["checkout.latency", "checkout.count", "users", "ok"])
        #expect(lines[0].tags.map(\.key) == ["service", "operation"] && lines[1].sampleRate == 0.1)
        #expect(lines[2].values == [.member("alice")] && lines[3].timestamp == 1_795_000_000)
        #expect(errors.map(\.line) == [2, 4, 6, 7, 8], "\(errors)")
        #expect(errors[0].reason.contains("'abc' is not a finite number"))
        #expect(errors[2].reason.contains("DogStatsD event"))
    }

    /// Random bytes, and valid lines cut at every byte: parsed or refused, never a trap; a
    /// datagram over the cap is read to the cap and says so.
    @Test func junkNeverTraps() {
        var random = SeededRandom(seed: 125)
        for _ in 0..<5_000 {
            let bytes = (0..<Int(random.next() % 300)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            _ = StatsD.parse(bytes)
        }
        let line = Array("checkout.latency:12.5:13|ms|@0.5|#service:checkout|T1795000000".utf8)
        for cut in 0...line.count { _ = StatsD.parse(Array(line[..<cut])) }
        let big = [UInt8](repeating: UInt8(ascii: "a"), count: 70_000)
        let (lines, errors) = StatsD.parse(big)
        #expect(lines.isEmpty && errors.last?.reason.contains("only the first 65536") == true)
    }
}
