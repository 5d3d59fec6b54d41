/// Heap bytes held by arrays inside aggregates, for memory reports (capacity plus the array header).
@inline(__always)
func arrayHeapBytes<Element>(_ array: [Element]) -> Int {
    array.capacity == 0 ? 0 : 32 + array.capacity * MemoryLayout<Element>.stride
}

extension GCounter {
    /// Heap bytes beyond the struct: the spilled slot array, when there is one.
    public var heapBytes: Int { arrayHeapBytes(self.spilled) }
}

extension LatencySketch {
    /// Heap bytes beyond the struct: bucket arrays and the array of other origins' histograms.
    public var heapBytes: Int {
        var total = arrayHeapBytes(self.others)
        if let primary = self.primary { total += primary.counts.heapBytes }
        for histogram in self.others { total += histogram.counts.heapBytes }
        return total
    }
}

extension HyperLogLog {
    /// Heap bytes beyond the struct: the sparse entries or the dense registers.
    public var heapBytes: Int {
        arrayHeapBytes(self.sparse) + arrayHeapBytes(self.dense) + arrayHeapBytes(self.settled)
    }
}

// MARK: - Shrinking

extension Array {
    /// Drops spare capacity (an array grows by doubling, so up to half of it can be spare).
    mutating func shrinkToFit() {
        if self.capacity > self.count { self = Array(unsafeUninitializedCapacity: self.count) { buffer, initialized in
            initialized = buffer.initialize(fromContentsOf: self)
        } }
    }
}

extension GCounter {
    /// Drops spare capacity: for an aggregate that will rarely grow again.
    public mutating func shrinkToFit() { self.spilled.shrinkToFit() }
}

extension LatencySketch {
    /// Drops spare capacity: for an aggregate that will rarely grow again.
    public mutating func shrinkToFit() {
        self.primary?.counts.shrinkToFit()
        for position in self.others.indices { self.others[position].counts.shrinkToFit() }
        self.others.shrinkToFit()
    }
}

extension HyperLogLog {
    /// Drops spare capacity: for an aggregate that will rarely grow again.
    /// A sparse sketch settles into its coded form (about 1.2 bytes per entry instead of 4).
    public mutating func shrinkToFit() {
        self.sparse.shrinkToFit()
        self.settle()
    }
}
