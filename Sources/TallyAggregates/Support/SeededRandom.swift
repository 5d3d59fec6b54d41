/// A deterministic pseudo-random generator: xoshiro256** seeded through SplitMix64
/// (Blackman and Vigna, "Scrambled Linear Pseudorandom Number Generators", 2021).
///
/// Tally's replica, simulator and tests take randomness only from a value of this type, seeded
/// explicitly, so that one seed replays a whole run. It conforms to `RandomNumberGenerator`, so
/// `Int.random(in:using:)` and `shuffle(using:)` work with it; their algorithms are part of the
/// standard library and fixed for a given toolchain.
public struct SeededRandom: RandomNumberGenerator, Sendable, Equatable {
    private var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var splitMix = seed
        func next() -> UInt64 {
            splitMix &+= 0x9E37_79B9_7F4A_7C15
            var z = splitMix
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        self.state = (next(), next(), next(), next())
    }

    public mutating func next() -> UInt64 {
        let result = Self.rotl(self.state.1 &* 5, 7) &* 9
        let t = self.state.1 << 17
        self.state.2 ^= self.state.0
        self.state.3 ^= self.state.1
        self.state.1 ^= self.state.2
        self.state.0 ^= self.state.3
        self.state.2 ^= t
        self.state.3 = Self.rotl(self.state.3, 45)
        return result
    }

    /// A uniform double in [0, 1) with 53 random bits.
    public mutating func nextUnit() -> Double {
        Double(self.next() >> 11) * 0x1.0p-53
    }

    /// A standard normal deviate (Box-Muller; the second deviate is discarded for simplicity).
    public mutating func nextGaussian() -> Double {
        var u = self.nextUnit()
        while u == 0 { u = self.nextUnit() }
        let v = self.nextUnit()
        return (-2 * Math.log(u)).squareRoot() * Math.cos(2 * Double.pi * v)
    }

    public static func == (lhs: SeededRandom, rhs: SeededRandom) -> Bool {
        lhs.state == rhs.state
    }

    private static func rotl(_ value: UInt64, _ count: UInt64) -> UInt64 {
        (value << count) | (value >> (64 - count))
    }
}
