@testable import TallyAggregates

/// A small world of replicas that mutate their own state and merge each other's, in seeded random
/// order, recording every state and delta that ever existed.
///
/// Law tests draw their values from here rather than from arbitrary field values: a CRDT's laws
/// hold on the states its replicas can reach (each origin's slot written by that origin alone),
/// and these are exactly those states, in all the shapes gossip produces.
struct Universe<T: Lattice> {
    /// Every state any replica held, in order of appearance.
    var states: [T] = []
    /// Every delta a mutation returned, with the state it was applied to and the state it produced.
    var mutations: [(before: T, delta: T.Delta, after: T)] = []

    init(
        seed: UInt64,
        replicas: Int,
        steps: Int,
        make: (Int) -> T,
        mutate: (inout T, ReplicaID, inout SeededRandom) -> T.Delta
    ) {
        var random = SeededRandom(seed: seed)
        var current = (0..<replicas).map(make)
        let origins = (0..<replicas).map { ReplicaID(region: "region-\($0)", node: "node", incarnation: 1) }
        self.states = current
        for _ in 0..<steps {
            let replica = Int.random(in: 0..<replicas, using: &random)
            let before = current[replica]
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<7:
                let delta = mutate(&current[replica], origins[replica], &random)
                self.mutations.append((before, delta, current[replica]))
            case 7..<9:
                let other = Int.random(in: 0..<replicas, using: &random)
                current[replica].merge(current[other])
            default:
                // Gossip of an old delta: redelivery after a reconnect.
                if let old = self.mutations.randomElement(using: &random) {
                    current[replica].merge(delta: old.delta)
                }
            }
            self.states.append(current[replica])
        }
    }

    func randomState(_ random: inout SeededRandom) -> T {
        self.states.randomElement(using: &random)!  // never empty: holds the initial states
    }
}

/// Checks the join-semilattice laws and the delta laws on values drawn from a universe.
///
/// `observes(after, before)` says whether `after` still observes everything `before` did (counts,
/// sums, maxima, registers): a merge must never lower an observed value.
func checkLatticeLaws<T: Lattice>(
    _ universe: Universe<T>,
    seed: UInt64,
    trials: Int,
    observes: (T, T) -> Bool
) -> [String] {
    var failures: [String] = []
    var random = SeededRandom(seed: seed)
    func fail(_ law: String, _ trial: Int) {
        if failures.count < 10 { failures.append("\(law) failed at trial \(trial) (seed \(seed))") }
    }
    for trial in 0..<trials {
        let a = universe.randomState(&random)
        let b = universe.randomState(&random)
        let c = universe.randomState(&random)
        let ab = a.merging(b)
        if ab != b.merging(a) { fail("commutativity", trial) }
        if ab.merging(c) != a.merging(b.merging(c)) { fail("associativity", trial) }
        if a.merging(a) != a { fail("idempotence", trial) }
        var repeated = ab
        for _ in 0..<Int.random(in: 1...4, using: &random) { repeated.merge(b) }
        if repeated != ab { fail("idempotence under redelivery", trial) }
        if ab.merging(a) != ab || ab.merging(b) != ab { fail("inflation (a ⊔ b ≥ a, b)", trial) }
        if !observes(ab, a) || !observes(ab, b) { fail("a merge lowered an observed value", trial) }

        if let mutation = universe.mutations.randomElement(using: &random) {
            let state = T(delta: mutation.delta)
            if a.merging(state) != { var x = a; x.merge(delta: mutation.delta); return x }() {
                fail("delta merges like its state", trial)
            }
            if mutation.before.merging(state) != mutation.after {
                fail("before ⊔ delta == after", trial)
            }
            if a.merging(mutation.after) != a.merging(mutation.before).merging(state) {
                fail("x ⊔ after == x ⊔ before ⊔ delta", trial)
            }
            var twice = a
            twice.merge(delta: mutation.delta)
            let once = twice
            twice.merge(delta: mutation.delta)
            if twice != once { fail("delta idempotence", trial) }
        }
    }
    return failures
}

/// `after` observes `before` when each listed value is at least as large.
func noneLower(_ after: [Double], _ before: [Double]) -> Bool {
    precondition(after.count == before.count, "observations must align")
    return zip(after, before).allSatisfy { $0 >= $1 * (1 - 1e-12) }
}

/// Checks the difference laws on values drawn from a universe: for `older` and `newer = older ⊔ x`,
/// `d = newer.difference(from: older)` restores newer (`older ⊔ d == newer`), adds nothing newer
/// lacks (`newer ⊔ d == newer`), and is empty when nothing changed.
func checkDifferenceLaws<T: Differentiable>(
    _ universe: Universe<T>, seed: UInt64, trials: Int, isEmpty: (T) -> Bool
) -> [String] {
    var failures: [String] = []
    var random = SeededRandom(seed: seed)
    for trial in 0..<trials {
        let older = universe.randomState(&random)
        let newer = older.merging(universe.randomState(&random))
        let difference = newer.difference(from: older)
        if older.merging(difference) != newer { failures.append("older ⊔ d != newer at trial \(trial) (seed \(seed))") }
        if newer.merging(difference) != newer { failures.append("newer ⊔ d != newer at trial \(trial) (seed \(seed))") }
        if !isEmpty(newer.difference(from: newer)) { failures.append("x - x is not empty at trial \(trial) (seed \(seed))") }
        if failures.count >= 10 { break }
    }
    return failures
}
