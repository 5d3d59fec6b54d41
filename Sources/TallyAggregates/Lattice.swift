/// A state-based CRDT: a join-semilattice whose `merge` is the least upper bound.
///
/// Laws (tested on seeded random values for every conforming type):
/// - commutative: `a ⊔ b == b ⊔ a`;
/// - associative: `(a ⊔ b) ⊔ c == a ⊔ (b ⊔ c)`;
/// - idempotent: `a ⊔ a == a`, so re-delivering a state or delta changes nothing;
/// - inflationary: `a ⊔ b` observes everything `a` observed (no update is ever lost);
/// - deltas: `a.merge(delta: d) == a.merge(Self(delta: d))`, so a delta may be shipped, stored or
///   merged exactly like a state (Almeida, Shoker, Baquero, "Delta State Replicated Data Types", 2018).
public protocol Lattice: Equatable, Sendable {
    /// What one mutation changed: a small value that merges like a state.
    associatedtype Delta: Sendable, Equatable

    /// Joins `other` into `self`.
    mutating func merge(_ other: Self)
    /// Joins a delta into `self`; equivalent to `merge(Self(delta:))` but cheaper.
    mutating func merge(delta: Delta)
    /// The smallest state that contains `delta`.
    init(delta: Delta)
}

extension Lattice {
    /// `self ⊔ other`, leaving both unchanged.
    public func merging(_ other: Self) -> Self {
        var copy = self
        copy.merge(other)
        return copy
    }
}

/// The identity of a replica whose updates a CRDT slot records: an origin.
///
/// A node derives it from its region, node id and incarnation (see `ReplicaID(region:node:incarnation:)`);
/// a node that lost its disk starts a new incarnation, and so a fresh slot that no older, larger
/// value can shadow.
public struct ReplicaID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    public init(_ rawValue: UInt64) {
        self.rawValue = rawValue
    }

    /// A stable id from the node's names: the same on every machine, build and run.
    public init(region: String, node: String, incarnation: UInt64) {
        var bytes = Array(region.utf8)
        bytes.append(0)
        bytes.append(contentsOf: node.utf8)
        bytes.append(0)
        withUnsafeBytes(of: incarnation.littleEndian) { bytes.append(contentsOf: $0) }
        self.rawValue = XXH3.hash(bytes)
    }

    public static func < (lhs: ReplicaID, rhs: ReplicaID) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        let hex = String(self.rawValue, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
