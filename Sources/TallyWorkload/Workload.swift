import Foundation
import TallyAggregates

/// The traffic Tally is measured and tested with: one shape for the load generator, the benchmarks
/// and (next) the simulator, so that "the load generator's workload" means one thing.
///
/// Per request: a uniformly chosen service and operation, 3% 5xx and 5% 404, a log-normal latency
/// (median 20 ms, σ = 0.7) and a Zipf(1.1)-distributed user. Deterministic: every draw comes from
/// the `SeededRandom` passed in.
public struct Workload: Sendable {
    public let services: Int
    public let operations: Int
    public let users: ZipfSampler

    public init(services: Int, operations: Int, users: Int) {
        precondition(services > 0 && operations > 0, "workload of \(services) services x \(operations) operations")
        self.services = services
        self.operations = operations
        self.users = ZipfSampler(count: users, exponent: 1.1)
    }

    /// One request's fields; names are `svc-N`, `op-N` and `user-N`.
    public struct Request: Sendable, Equatable {
        public var service: Int
        public var operation: Int
        public var status: UInt16
        public var latencyMicros: Int
        public var user: Int
    }

    public func request(using random: inout SeededRandom) -> Request {
        let service = Int.random(in: 0..<self.services, using: &random)
        let operation = Int.random(in: 0..<self.operations, using: &random)
        let status: UInt16 = random.nextUnit() < 0.03 ? 503 : (random.nextUnit() < 0.05 ? 404 : 200)
        let latency = Int((20_000 * exp(0.7 * random.nextGaussian())).rounded())
        return Request(service: service, operation: operation, status: status, latencyMicros: latency,
                       user: self.users.sample(using: &random))
    }
}

/// Ranks 0..<count drawn with probability proportional to 1 / (rank + 1)^exponent.
public struct ZipfSampler: Sendable {
    /// Cumulative normalized weights.
    private let cumulative: [Double]

    public init(count: Int, exponent: Double) {
        precondition(count > 0, "Zipf over \(count) values")
        var cumulative: [Double] = []
        cumulative.reserveCapacity(count)
        var total = 0.0
        for rank in 1...count {
            total += 1 / pow(Double(rank), exponent)
            cumulative.append(total)
        }
        self.cumulative = cumulative.map { $0 / total }
    }

    public var count: Int { self.cumulative.count }

    public func sample(using random: inout SeededRandom) -> Int {
        let u = random.nextUnit()
        var low = 0
        var high = self.cumulative.count - 1
        while low < high {
            let mid = (low + high) / 2
            if self.cumulative[mid] < u { low = mid + 1 } else { high = mid }
        }
        return low
    }
}
