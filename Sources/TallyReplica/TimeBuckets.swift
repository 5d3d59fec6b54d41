import TallyAggregates

/// One series' time buckets at one resolution, sorted by start.
///
/// Events arrive mostly for the newest bucket, so a lookup checks the last bucket first and only
/// then bisects; a new bucket is usually appended; expiry removes a prefix. No hashing on the
/// ingest path, and iteration is in time order (deterministic) with no sort.
///
/// Expiry advances `head` instead of shifting the arrays: with 48 h of minute buckets, removing
/// the oldest one each minute moved 2,880 aggregates (~780 KB) per series. The dead prefix is
/// dropped once it is half the storage. Positions below are absolute indices into the storage.
struct TimeBuckets: Sendable {
    private var starts: [Int64] = []
    private var storage: [BucketAggregate] = []
    /// Buckets before this position are expired (dead storage).
    private var head = 0
    /// Buckets before this position were settled: their arrays shrunk to fit.
    private var settled = 0
    /// When the replica replicates: the buckets its own events changed since its last seal, each
    /// with its value before the first such change (nil: created since). Usually one entry, the
    /// current bucket; a seal takes them all.
    /// The base keeps no distinct-user sketch (copying a dense one on the next write would cost
    /// 16 KB per bucket per round); the users the own events added are listed by hash instead.
    private(set) var bases: [Unsealed] = []

    struct Unsealed: Sendable {
        var start: Int64
        var base: BucketAggregate?
        var userHashes: [UInt64]
    }

    var count: Int { self.starts.count - self.head }

    /// What an expired slot holds until compaction: an empty aggregate, which owns no heap memory.
    static let dead = BucketAggregate(sketchScale: LatencySketch.defaultScale,
                                      sketchBucketsMax: LatencySketch.defaultBucketsMax,
                                      usersPrecision: HyperLogLog.defaultPrecision)

    /// The live aggregates, in time order.
    var aggregates: ArraySlice<BucketAggregate> { self.storage[self.head...] }

    /// The position of the bucket starting at `start`, or where it would be inserted.
    @inline(__always)
    func position(of start: Int64) -> (index: Int, found: Bool) {
        if self.starts.count > self.head, let last = self.starts.last {
            if last == start { return (self.starts.count - 1, true) }
            if last < start { return (self.starts.count, false) }
        }
        var low = self.head
        var high = self.starts.count
        while low < high {
            let mid = (low + high) / 2
            if self.starts[mid] < start { low = mid + 1 } else { high = mid }
        }
        return (low, low < self.starts.count && self.starts[low] == start)
    }

    subscript(start: Int64) -> BucketAggregate? {
        let (index, found) = self.position(of: start)
        return found ? self.storage[index] : nil
    }

    /// Applies `body` to the bucket at `start`, creating it with `make` first if absent.
    /// `trackBase`: remember the bucket's value before its first change since the last seal.
    @inline(__always)
    mutating func update(_ start: Int64, trackBase: Bool = false, userHash: UInt64? = nil,
                         make: () -> BucketAggregate, _ body: (inout BucketAggregate) -> Void)
    {
        let (index, found) = self.position(of: start)
        if trackBase {
            var position = self.bases.count - 1
            if self.bases.last?.start != start {
                position = self.bases.firstIndex { $0.start == start } ?? -1
                if position < 0 {
                    var base: BucketAggregate?
                    if found {
                        base = self.storage[index]
                        base!.users = HyperLogLog(precision: self.storage[index].users.precision)  // set above
                    }
                    self.bases.append(Unsealed(start: start, base: base, userHashes: []))
                    position = self.bases.count - 1
                }
            }
            if let userHash { self.bases[position].userHashes.append(userHash) }
        }
        if found {
            body(&self.storage[index])
        } else {
            var aggregate = make()
            body(&aggregate)
            self.starts.insert(start, at: index)
            self.storage.insert(aggregate, at: index)
        }
    }

    /// Drops the buckets starting before `cutoff` (exclusive); returns how many.
    mutating func removeBuckets(startingBefore cutoff: Int64) -> Int {
        let (index, _) = self.position(of: cutoff)
        let removed = index - self.head
        guard removed > 0 else { return 0 }
        // Release what the dead buckets hold now; the slots themselves go at the next compaction.
        for position in self.head..<index { self.storage[position] = Self.dead }
        self.head = index
        self.settled = max(self.settled, self.head)
        if self.head >= 64 && self.head * 2 >= self.starts.count {
            self.starts.removeFirst(self.head)
            self.storage.removeFirst(self.head)
            self.settled -= self.head
            self.head = 0
        }
        return removed
    }

    /// Shrinks the arrays of the buckets starting before `cutoff` that are not yet settled: they
    /// are closed, and a late event that still reaches one just grows it again.
    mutating func settle(startingBefore cutoff: Int64) {
        while self.settled < self.starts.count && self.starts[self.settled] < cutoff {
            self.storage[self.settled].shrinkToFit()
            self.settled += 1
        }
    }

    /// Takes the buckets changed by own events since the last seal, with their bases.
    mutating func takeBases() -> [Unsealed] {
        defer { self.bases.removeAll(keepingCapacity: true) }
        return self.bases
    }

    /// The positions of the buckets starting in `from..<to`: two bisections, so a query or a
    /// peer's read costs the buckets held, not the width of the range it names.
    func positions(from: Int64, to: Int64) -> Range<Int> {
        guard from < to else { return self.head..<self.head }
        let low = self.position(of: from).index
        let high = self.position(of: to).index
        return low..<max(low, high)
    }

    /// The start and aggregate at a position from `positions(from:to:)`.
    func bucket(at position: Int) -> (start: Int64, aggregate: BucketAggregate) {
        (self.starts[position], self.storage[position])
    }

    /// Calls `body` with each bucket at these positions, without copying it (a copy retains each of its
    /// parts: what an SLO evaluation, reading every bucket of a 30-day window, spent most on).
    func forEachBucket(in positions: Range<Int>, _ body: (Int64, borrowing BucketAggregate) -> Void) {
        self.storage.withUnsafeBufferPointer { storage in
            for position in positions { body(self.starts[position], storage[position]) }
        }
    }

    /// (start, aggregate) pairs in time order.
    var all: Zip2Sequence<ArraySlice<Int64>, ArraySlice<BucketAggregate>> {
        zip(self.starts[self.head...], self.storage[self.head...])
    }
}
