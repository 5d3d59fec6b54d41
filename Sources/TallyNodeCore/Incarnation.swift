/// Which origin a node starts as: the decision that keeps a node from reusing its identity over a
/// lost store.
///
/// An origin's slots in every other region grow with the events it counted. A node that lost its
/// store (the file deleted, or truncated to nothing) but kept its identity file would start empty
/// under its old origin; its peers hold larger slots for it, so everything it counts afterwards is
/// hidden behind them, everywhere but locally. The store therefore records the incarnation it was
/// created for, and the identity follows the store: a store without a record and without data is
/// new, and gets a new incarnation whatever an identity file says.
public enum Incarnation: Sendable, Equatable {
    /// The store and the identity agree (or the file is missing): go on as this origin.
    case reuse(UInt64)
    /// A store written before stores recorded their incarnation, with data: it belongs to the
    /// identity file's incarnation; record it.
    case adopt(UInt64)
    /// A new origin, and why.
    case new(UInt64, reason: String)

    public var incarnation: UInt64 {
        switch self {
        case .reuse(let value), .adopt(let value), .new(let value, _): value
        }
    }

    /// - Parameters:
    ///   - stored: the incarnation the store records, nil when it records none.
    ///   - storeHoldsData: the store has a checkpoint or log entries.
    ///   - identityFile: the incarnation the identity file names, nil when there is none.
    ///   - fresh: an incarnation never used before (the shell's clock, the simulator's counter).
    public static func choose(stored: UInt64?, storeHoldsData: Bool, identityFile: UInt64?, fresh: UInt64)
        -> Incarnation
    {
        if let stored { return .reuse(stored) }
        guard let identityFile else {
            return .new(fresh, reason: storeHoldsData ? "the identity file is missing and the store records none"
                                                      : "a new data directory")
        }
        if storeHoldsData { return .adopt(identityFile) }
        return .new(fresh, reason: "the store is empty but the identity file names incarnation \(identityFile): "
            + "the store was lost, and reusing the old origin would hide every event counted from now on")
    }
}
