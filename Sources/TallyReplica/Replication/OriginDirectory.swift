import TallyAggregates

/// Which origin each region runs as now, from what each one announced: a peer's hello names its
/// region and origin, and a node announces its own origin as it starts. An origin a region ran as
/// before (an incarnation that lost its disk, or was replaced by a restore) is *retired*: it will
/// never publish again, so how long ago it last did is no longer "how far behind" anything is.
/// Staleness leaves retired origins out; their slots stay in every aggregate, as a CRDT's must.
///
/// An origin hash does not say which region it is, so nothing else could tell a retired origin
/// from a live one that is cut off. Kept in checkpoints, so a restart still knows what it learned.
public struct OriginDirectory: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var origin: ReplicaID
        public var region: String
        /// The order announcements were taken in: a region's latest is its current origin.
        public var announced: UInt64

        public init(origin: ReplicaID, region: String, announced: UInt64) {
            self.origin = origin
            self.region = region
            self.announced = announced
        }
    }

    /// Most entries kept: a region's current origin is always kept; past that the oldest retired
    /// ones go first (a retired origin forgotten counts as unknown, and is reported again).
    public static let entriesMax = 1_024

    private var byOrigin: [ReplicaID: Entry] = [:]
    /// Per region, its current origin.
    private var current: [String: ReplicaID] = [:]
    private var lastAnnounced: UInt64 = 0

    public init() {}

    /// A directory as stored: entries whose origin appears twice keep the later announcement.
    public init(entries: [Entry]) {
        for entry in entries.sorted(by: { ($0.announced, $0.origin) < ($1.announced, $1.origin) }) {
            self.insert(entry)
        }
        self.trim()
    }

    /// Every entry, by origin: what a checkpoint stores.
    public var entries: [Entry] { self.byOrigin.values.sorted { $0.origin < $1.origin } }

    public var count: Int { self.byOrigin.count }

    /// `origin` is what `region` runs as from now on. False when that was already so.
    @discardableResult
    public mutating func announce(_ origin: ReplicaID, region: String) -> Bool {
        guard self.current[region] != origin else { return false }
        self.lastAnnounced &+= 1
        self.insert(Entry(origin: origin, region: region, announced: self.lastAnnounced))
        self.trim()
        return true
    }

    /// True when `origin` has an entry (current or retired).
    public func knows(_ origin: ReplicaID) -> Bool { self.byOrigin[origin] != nil }

    /// The origin `region` announced last, if any.
    public func currentOrigin(of region: String) -> ReplicaID? { self.current[region] }

    /// True for an origin its region has since replaced with another.
    public func isRetired(_ origin: ReplicaID) -> Bool {
        guard let entry = self.byOrigin[origin] else { return false }
        return self.current[entry.region] != origin
    }

    private mutating func insert(_ entry: Entry) {
        if let previous = self.byOrigin[entry.origin], previous.region != entry.region,
            self.current[previous.region] == entry.origin
        {
            self.current[previous.region] = nil  // an origin is one region's; the latest word wins
        }
        self.byOrigin[entry.origin] = entry
        self.lastAnnounced = max(self.lastAnnounced, entry.announced)
        if let live = self.current[entry.region], let liveEntry = self.byOrigin[live],
            liveEntry.announced > entry.announced
        {
            return
        }
        self.current[entry.region] = entry.origin
    }

    private mutating func trim() {
        guard self.byOrigin.count > Self.entriesMax else { return }
        let retired = self.byOrigin.values.filter { self.current[$0.region] != $0.origin }
            .sorted { ($0.announced, $0.origin) < ($1.announced, $1.origin) }
        for entry in retired.prefix(self.byOrigin.count - Self.entriesMax) {
            self.byOrigin.removeValue(forKey: entry.origin)
        }
    }
}
