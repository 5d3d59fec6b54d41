@testable import TallyAggregates

/// Seeded latency data sets (microseconds) for the accuracy tests and the benchmarks' twins.
enum Distribution: String, CaseIterable, Sendable {
    /// A web service: median 20 ms, a heavy-ish tail (σ = 1.2).
    case logNormal
    /// Pareto with α = 1.16 (the 80/20 rule) from 1 ms: a tail over many decades.
    case pareto
    /// Cache hits around 2 ms and misses around 300 ms.
    case bimodal

    func sample(_ random: inout SeededRandom) -> Double {
        switch self {
        case .logNormal:
            return 20_000 * Math.exp2(1.2 * random.nextGaussian() / 0.693_147_180_559_945_3)
        case .pareto:
            var u = random.nextUnit()
            while u == 0 { u = random.nextUnit() }
            return 1_000 * Math.exp2(-Math.log2(u) / 1.16)
        case .bimodal:
            if random.nextUnit() < 0.7 {
                return 2_000 * Math.exp2(0.3 * random.nextGaussian())
            }
            return 300_000 * Math.exp2(0.5 * random.nextGaussian())
        }
    }

    func values(count: Int, seed: UInt64) -> [Double] {
        var random = SeededRandom(seed: seed)
        return (0..<count).map { _ in self.sample(&random) }
    }
}
