import Testing
import TallyAggregates
import TallyReplica
@testable import TallyProtocols

/// The fast path maps a common line exactly as the full parser and `items(_:now:)` do; every other
/// line falls through to them. Seeded lines of every shape, valid and not.
@Suite struct StatsDFastPathTests {
    static let now = Timestamp(millisecondsSinceEpoch: 1_795_946_400_000)

    static func line(_ random: inout SeededRandom) -> String {
        func pick(_ options: [String]) -> String { options[Int(random.next() % UInt64(options.count))] }
        var text = pick(["checkout.get_cart", "svc-1.op-2", "plain", "a.b.c", ".lead", "trail.", "_e{x", "x" + String(repeating: "y", count: 300)])
        text += ":" + pick(["12", "12.5", "0", "007", "1e3", "-4", "inf", "1.", ".5", "12:13", "99999999999999999999", "3.25"])
        text += "|" + pick(["ms", "c", "h", "d", "s", "g", "x", "mss"])
        for _ in 0..<Int(random.next() % 3) {
            text += "|" + pick(["@0.5", "@1", "@0", "@2", "@0.125", "#service:pay,status:503", "#operation:/cart",
                                "#status:5xx,user:u1", "#service", "#status:teapot", "#a:b,,c", "T1700000000", "c:abc", ""])
        }
        return text
    }

    @Test func theFastPathAgreesWithTheFullParser() {
        var random = SeededRandom(seed: 11)
        let mapping = StatsDMapping()
        var fast = 0
        for _ in 0..<20_000 {
            let text = Self.line(&random)
            let bytes = Array(text.utf8)
            let slow: [BatchItem]? = switch StatsD.line(bytes, limits: StatsD.Limits()) {
            case .success(let parsed): (try? mapping.items(parsed, now: Self.now).get()).flatMap { $0.isEmpty ? nil : $0 }
            case .failure: nil
            }
            let quick = bytes.withUnsafeBufferPointer { mapping.fastItems($0, now: Self.now, limits: StatsD.Limits()) }
            if let quick {
                fast += 1
                #expect(quick == slow, "\(text)")
            }
        }
        #expect(fast > 2_000, "the fast path took \(fast) lines")
    }
}
