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
        if let primary = self.primary { total += arrayHeapBytes(primary.counts) }
        for histogram in self.others { total += arrayHeapBytes(histogram.counts) }
        return total
    }
}

extension HyperLogLog {
    /// Heap bytes beyond the struct: the sparse entries or the dense registers.
    public var heapBytes: Int { arrayHeapBytes(self.sparse) + arrayHeapBytes(self.dense) }
}
