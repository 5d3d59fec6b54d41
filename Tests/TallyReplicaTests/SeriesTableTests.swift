import Testing
import TallyAggregates
@testable import TallyReplica

/// `SeriesTable` against a `Dictionary`: ids in order of insertion, every known key found, unknown
/// ones (a name one byte off, another status class, a prefix) not, through several growths.
@Suite struct SeriesTableTests {
    @Test(arguments: 1...6 as ClosedRange<UInt64>)
    func agreesWithADictionary(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var table = SeriesTable()
        var model: [SeriesKey: SeriesID] = [:]
        func randomKey() -> SeriesKey {
            // Few distinct names, so that near misses (same service, other operation) are common;
            // some non-ASCII, some long enough for XXH3's longer paths.
            let services = ["checkout", "search", "ünïcode-svc", String(repeating: "s", count: 40), "a", ""]
            let service = services[Int(random.next() % UInt64(services.count))] + "\(random.next() % 7)"
            let operation = "op-\(random.next() % 40)" + (random.next() % 5 == 0 ? String(repeating: "x", count: 130) : "")
            let statusClass = StatusClass.allCases[Int(random.next() % UInt64(StatusClass.allCases.count))]
            return SeriesKey(service: service, operation: operation, statusClass: statusClass)
        }
        for _ in 0..<3_000 {
            let key = randomKey()
            #expect(table[key] == model[key], "lookup of \(key)")
            if model[key] == nil {
                let id = table.insert(key)
                #expect(Int(id.rawValue) == model.count, "ids are handed out in order")
                model[key] = id
            }
        }
        #expect(table.count == model.count)
        for (key, id) in model {
            #expect(table.id(service: key.service, operation: key.operation, statusClass: key.statusClass) == id)
            let other = SeriesKey(service: key.service, operation: key.operation + "!", statusClass: key.statusClass)
            #expect(table[other] == model[other])
            let prefix = SeriesKey(service: String(key.service.dropLast()), operation: key.operation,
                                   statusClass: key.statusClass)
            #expect(table[prefix] == model[prefix])
        }
    }
}
