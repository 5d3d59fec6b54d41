/// A distinct-count sketch: HyperLogLog with 2^p registers, a sparse form for small cardinalities,
/// and Ertl's improved estimator.
///
/// Follows Flajolet, Fusy, Gandouet and Meunier, "HyperLogLog" (2007) for the registers, with a
/// 64-bit hash (XXH3-64, stable across processes and releases), and Otmar Ertl, "New cardinality
/// estimation algorithms for HyperLogLog sketches" (arXiv:1702.01284, 2017), §3 "improved raw
/// estimator", which is unbiased over the whole range with no empirical bias tables (unlike
/// HyperLogLog++). Standard error is about `1.04 / sqrt(2^p)`: 0.81% at the default p = 14.
///
/// Deviations: the sparse form keeps (index, rank) pairs at the sketch's own precision (HyperLogLog++
/// uses a higher one); it is exact as a register set and turns dense when it would stop saving
/// memory (more than `m / 8` non-zero registers). The form is a function of the registers alone,
/// never of history, so equal sketches have equal bytes. Merge is register-wise max; sketches of
/// different precisions merge by folding the finer one down (register-wise max stays exact).
public struct HyperLogLog: Lattice {
    public static let precisionRange = 4...18
    public static let defaultPrecision = 14

    /// log2 of the number of registers.
    public private(set) var precision: Int
    /// Sorted `index << 6 | rank` entries of the non-zero registers, while sparse; empty when dense.
    @usableFromInline var sparse: [UInt32]
    /// One byte per register once dense; empty while sparse.
    @usableFromInline var dense: [UInt8]
    /// A settled sparse sketch: its entries Rice-coded as in the encoding (about 1.2 bytes per
    /// entry instead of 4), with `sparse` empty. Any change or read unpacks it first (`settle()`).
    @usableFromInline var settled: [UInt8]

    /// What one `add` changed: register `index` now holds at least `rank`.
    public struct Delta: Sendable, Hashable {
        public let precision: Int
        public let index: Int
        public let rank: UInt8

        @usableFromInline
        init(precision: Int, index: Int, rank: UInt8) {
            self.precision = precision
            self.index = index
            self.rank = rank
        }
    }

    /// An empty sketch.
    ///
    /// - Precondition: `precision` is in `precisionRange`; configuration is validated before here.
    public init(precision: Int = HyperLogLog.defaultPrecision) {
        precondition(Self.precisionRange.contains(precision), "HyperLogLog precision \(precision) not in 4...18")
        self.precision = precision
        self.sparse = []
        self.dense = []
        self.settled = []
    }

    public init(delta: Delta) {
        self.init(precision: delta.precision)
        if delta.rank > 0 { self.sparse = [UInt32(delta.index) << 6 | UInt32(delta.rank)] }
    }

    /// Number of registers.
    public var registerCount: Int { 1 << self.precision }
    public var isSparse: Bool { self.dense.isEmpty }
    /// Largest register value: the hash bits left after the index, plus one.
    var rankMax: Int { 64 - self.precision + 1 }
    /// Most non-zero registers the sparse form holds.
    var sparseEntriesMax: Int { self.registerCount / 8 }

    // MARK: - Adding

    /// Adds a value by its UTF-8 bytes.
    ///
    /// A parser that holds the value's bytes in its input buffer should call `add(utf8:)`: a small
    /// `String` (up to 15 bytes) is copied to the stack to be hashed, and reading it back costs a
    /// store-forwarding stall that doubles the time of the whole add.
    @inline(__always)
    @discardableResult
    public mutating func add(_ value: String) -> Delta {
        self.add(hash: XXH3.hash(value))
    }

    /// Adds a value given as UTF-8 bytes, wherever they are (a request body, a decoded buffer).
    @inline(__always)
    @discardableResult
    public mutating func add(utf8 bytes: UnsafeRawBufferPointer) -> Delta {
        self.add(hash: XXH3.hash(bytes))
    }

    /// Adds a value by its stable 64-bit hash (XXH3-64 of its bytes, for values from outside).
    @inline(__always)
    @discardableResult
    public mutating func add(hash: UInt64) -> Delta {
        let precision = self.precision
        // precision is 4...18, so both shifts are in range: masking shifts compile to one instruction.
        let index = Int(truncatingIfNeeded: hash &>> UInt64(64 &- precision))
        let remainder = hash &<< UInt64(precision)
        let rank = UInt8(truncatingIfNeeded: min(remainder.leadingZeroBitCount, 64 &- precision) &+ 1)
        if !self.dense.isEmpty {
            self.dense.withUnsafeMutableBufferPointer { registers in
                if registers[index] < rank { registers[index] = rank }
            }
        } else {
            self.insertSparse(index: index, rank: rank)
        }
        return Delta(precision: precision, index: index, rank: rank)
    }

    @usableFromInline
    mutating func insertSparse(index: Int, rank: UInt8) {
        if !self.settled.isEmpty { self.unsettle() }
        let entry = UInt32(index) << 6 | UInt32(rank)
        // Entries sort by index then rank: find the first at or after this index's smallest entry.
        // Read-only bisection through a buffer pointer: no copy-on-write check, no bounds checks.
        let (position, existing) = self.sparse.withUnsafeBufferPointer { entries -> (Int, UInt32?) in
            let key = UInt32(index) << 6
            var low = 0
            var high = entries.count
            while low < high {
                let mid = (low &+ high) >> 1
                if entries[mid] < key { low = mid &+ 1 } else { high = mid }
            }
            return (low, low < entries.count && entries[low] >> 6 == UInt32(index) ? entries[low] : nil)
        }
        if let existing {
            // Most adds repeat a known user: nothing to write unless the rank grew.
            if existing < entry { self.sparse[position] = entry }
            return
        }
        // Append, then shift the tail up by one in place: `Array.insert` goes through
        // `replaceSubrange`, whose bookkeeping cost more than the move itself (callgrind).
        self.sparse.append(entry)
        self.sparse.withUnsafeMutableBufferPointer { entries in
            let base = entries.baseAddress!  // not empty: appended to just above
            let moved = entries.count &- 1 &- position
            if moved > 0 {
                // copyMemory has memmove's semantics: the two ranges overlap.
                UnsafeMutableRawPointer(base + position + 1).copyMemory(
                    from: base + position, byteCount: moved &* MemoryLayout<UInt32>.stride)
                base[position] = entry
            }
        }
        if self.sparse.count > self.sparseEntriesMax { self.densify() }
    }

    /// Packs a sparse sketch's entries into the coded form: for a time bucket whose time is over.
    /// Changes no value, and neither equality nor the encoding.
    public mutating func settle() {
        guard self.dense.isEmpty, self.settled.isEmpty, !self.sparse.isEmpty else { return }
        self.settled = Self.riceCoded(self.sparse, precision: self.precision)
        self.sparse = []
    }

    @usableFromInline
    mutating func unsettle() {
        self.sparse = self.sparseEntries
        self.settled = []
    }

    /// The sparse entries, whether settled or not.
    @usableFromInline
    var sparseEntries: [UInt32] {
        guard !self.settled.isEmpty else { return self.sparse }
        var reader = ByteReader(self.settled)
        do {
            return try Self.readRiceCoded(from: &reader, precision: self.precision)
        } catch {
            preconditionFailure("settled HyperLogLog entries do not decode: \(error)")
        }
    }

    mutating func densify() {
        var registers = [UInt8](repeating: 0, count: self.registerCount)
        for entry in self.sparse {
            registers[Int(entry >> 6)] = UInt8(entry & 0x3F)
        }
        self.dense = registers
        self.sparse = []
    }

    // MARK: - Merging

    public mutating func merge(delta: Delta) {
        if !self.settled.isEmpty { self.unsettle() }
        if delta.precision == self.precision {
            guard delta.rank > 0 else { return }
            if self.dense.isEmpty {
                self.insertSparse(index: delta.index, rank: delta.rank)
            } else if self.dense[delta.index] < delta.rank {
                self.dense[delta.index] = delta.rank
            }
        } else {
            self.merge(HyperLogLog(delta: delta))
        }
    }

    public mutating func merge(_ other: HyperLogLog) {
        if !self.settled.isEmpty { self.unsettle() }
        var other = other
        if !other.settled.isEmpty { other.unsettle() }
        if other.precision > self.precision { other.fold(to: self.precision) }
        if self.precision > other.precision { self.fold(to: other.precision) }
        switch (self.dense.isEmpty, other.dense.isEmpty) {
        case (false, false):
            self.dense.withUnsafeMutableBufferPointer { mine in
                other.dense.withUnsafeBufferPointer { theirs in
                    // Branch-free so that it vectorizes (a byte-wise max).
                    for index in 0..<mine.count { mine[index] = max(mine[index], theirs[index]) }
                }
            }
        case (false, true):
            for entry in other.sparse {
                let index = Int(entry >> 6)
                self.dense[index] = max(self.dense[index], UInt8(entry & 0x3F))
            }
        case (true, false):
            var registers = other.dense
            for entry in self.sparse {
                let index = Int(entry >> 6)
                registers[index] = max(registers[index], UInt8(entry & 0x3F))
            }
            self.dense = registers
            self.sparse = []
        case (true, true):
            self.mergeSparseInPlace(other.sparse)
            if self.sparse.count > self.sparseEntriesMax { self.densify() }
        }
    }

    /// Unites `other`'s sorted entries into this sketch's, in place: each of other's indices is
    /// found by bisection, then one pass from the back moves each stretch of this sketch's entries
    /// once (memmove) to make room. A replicated delta of a few users into a day's thousands cost a
    /// tail move per user inserted one by one, and a new merged list an allocation per merge.
    mutating func mergeSparseInPlace(_ other: [UInt32]) {
        guard !other.isEmpty else { return }
        let mineCount = self.sparse.count
        // The first position in entries[low..<high] whose index is at least `index`, galloping from
        // `low` (forwards) or from `high` (backwards) before bisecting: O(log gap) per entry, so
        // neither a few entries into many nor two lists of a size pays more than a linear merge.
        func lowerBound(_ entries: UnsafeBufferPointer<UInt32>, _ index: UInt32, _ low: Int, _ high: Int,
                        fromEnd: Bool) -> Int
        {
            let key = index << 6
            var low = low
            var high = high
            var step = 1
            if fromEnd {
                while high &- step >= low && entries[high &- step] >= key {
                    high &-= step
                    step &<<= 1
                }
                low = Swift.max(low, high &- step)
            } else {
                while low &+ step <= high && entries[low &+ step &- 1] < key {
                    low &+= step
                    step &<<= 1
                }
                high = Swift.min(high, low &+ step)
            }
            while low < high {
                let mid = (low &+ high) >> 1
                if entries[mid] < key { low = mid &+ 1 } else { high = mid }
            }
            return low
        }
        // How many of other's indices this sketch lacks, and whether any rank grows.
        var added = 0
        var grows = false
        self.sparse.withUnsafeBufferPointer { mine in
            var m = 0
            for entry in other {
                m = lowerBound(mine, entry >> 6, m, mine.count, fromEnd: false)
                if m < mine.count && mine[m] >> 6 == entry >> 6 {
                    if entry > mine[m] { grows = true }
                } else {
                    added &+= 1
                }
            }
        }
        guard added > 0 || grows else { return }
        self.sparse.append(contentsOf: repeatElement(0, count: added))
        self.sparse.withUnsafeMutableBufferPointer { entries in
            let base = entries.baseAddress!  // not empty: other is not
            var write = mineCount &+ added  // entries at and after it are final
            var end = mineCount  // mine's entries not yet placed are [0, end)
            for entry in other.reversed() {
                let position = lowerBound(UnsafeBufferPointer(entries), entry >> 6, 0, end, fromEnd: true)
                let same = position < end && entries[position] >> 6 == entry >> 6
                // Mine's entries above this index move up to just below `write`.
                let above = position &+ (same ? 1 : 0)
                let moved = end &- above
                if moved > 0 && write &- moved != above {
                    UnsafeMutableRawPointer(base + (write &- moved)).copyMemory(
                        from: base + above, byteCount: moved &* MemoryLayout<UInt32>.stride)
                }
                write &-= moved
                write &-= 1
                entries[write] = same ? Swift.max(entries[position], entry) : entry
                end = position
            }
            // What is left of mine, [0, end), is already where it belongs (write == end).
        }
    }

    /// Re-expresses the registers at a lower precision, as if every value had been added there.
    ///
    /// Index `i` at precision p becomes `i >> d` at p - d; the `d` bits dropped from the index become
    /// the first bits of the rank's bit string: a non-zero register gets rank `lz + 1` when those bits
    /// are not all zero (`lz` their leading zeros), and `d + rank` when they are.
    public mutating func fold(to precision: Int) {
        precondition(
            precision <= self.precision && Self.precisionRange.contains(precision),
            "fold from precision \(self.precision) to \(precision)")
        let steps = self.precision - precision
        guard steps > 0 else { return }
        if !self.settled.isEmpty { self.unsettle() }
        func folded(index: Int, rank: UInt8) -> (Int, UInt8) {
            let low = index & ((1 << steps) - 1)
            if low == 0 { return (index >> steps, UInt8(steps) + rank) }
            let leadingZeros = steps - (Int.bitWidth - low.leadingZeroBitCount)
            return (index >> steps, UInt8(leadingZeros + 1))
        }
        var registers = [UInt8](repeating: 0, count: 1 << precision)
        if self.dense.isEmpty {
            for entry in self.sparse {
                let (index, rank) = folded(index: Int(entry >> 6), rank: UInt8(entry & 0x3F))
                registers[index] = max(registers[index], rank)
            }
        } else {
            for (index, rank) in self.dense.enumerated() where rank > 0 {
                let (newIndex, newRank) = folded(index: index, rank: rank)
                registers[newIndex] = max(registers[newIndex], newRank)
            }
        }
        self.precision = precision
        self.dense = []
        self.sparse = []
        for (index, rank) in registers.enumerated() where rank > 0 {
            self.sparse.append(UInt32(index) << 6 | UInt32(rank))
        }
        if self.sparse.count > self.sparseEntriesMax { self.densify() }
    }

    // MARK: - Estimating

    /// Number of registers holding each value 0...rankMax.
    func registerHistogram() -> [Int] {
        var histogram = [Int](repeating: 0, count: self.rankMax + 1)
        if self.dense.isEmpty {
            let entries = self.sparseEntries
            histogram[0] = self.registerCount - entries.count
            for entry in entries { histogram[Int(entry & 0x3F)] += 1 }
        } else {
            for rank in self.dense { histogram[Int(rank)] += 1 }
        }
        return histogram
    }

    /// The estimated number of distinct values added (Ertl 2017, Algorithm 6).
    public var cardinality: Double {
        let histogram = self.registerHistogram()
        let m = Double(self.registerCount)
        let q = self.rankMax - 1
        if histogram[0] == self.registerCount { return 0 }
        var z = m * Self.tau((m - Double(histogram[q + 1])) / m)
        for k in stride(from: q, through: 1, by: -1) {
            z = 0.5 * (z + Double(histogram[k]))
        }
        z += m * Self.sigma(Double(histogram[0]) / m)
        let alphaInfinity = 0.5 / Math.log(2)
        return alphaInfinity * m * m / z
    }

    /// Ertl's σ(x) = x + Σ_{k≥1} x^(2^k) 2^(k-1), for x in [0, 1).
    static func sigma(_ x: Double) -> Double {
        var x = x
        var y = 1.0
        var z = x
        while true {
            x *= x
            let previous = z
            z += x * y
            y += y
            if z == previous { return z }
        }
    }

    /// Ertl's τ(x) = (1 - x - Σ_{k≥1} (1 - x^(2^-k))^2 2^-k) / 3, for x in [0, 1].
    static func tau(_ x: Double) -> Double {
        if x == 0 || x == 1 { return 0 }
        var x = x
        var y = 1.0
        var z = 1 - x
        while true {
            x = x.squareRoot()
            let previous = z
            y *= 0.5
            z -= (1 - x) * (1 - x) * y
            if z == previous { return z / 3 }
        }
    }

    /// The relative standard error of `cardinality`: 1.04 / sqrt(m).
    public var standardError: Double { 1.04 / Double(self.registerCount).squareRoot() }
}


extension HyperLogLog {
    /// Equal registers: the settled and unsettled forms of one sketch are equal.
    public static func == (lhs: HyperLogLog, rhs: HyperLogLog) -> Bool {
        guard lhs.precision == rhs.precision, lhs.dense == rhs.dense else { return false }
        if lhs.settled.isEmpty == rhs.settled.isEmpty {
            return lhs.sparse == rhs.sparse && lhs.settled == rhs.settled  // one form each: compare as stored
        }
        return lhs.sparseEntries == rhs.sparseEntries
    }
}
