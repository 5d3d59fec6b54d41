/// A min-heap of events by (time, sequence): events at the same time run in the order they were
/// scheduled, so a run is a function of the seed alone.
struct EventQueue<Event> {
    private var heap: [(time: Int64, sequence: UInt64, event: Event)] = []
    private var nextSequence: UInt64 = 0

    var count: Int { self.heap.count }

    mutating func schedule(_ event: Event, at time: Int64) {
        self.heap.append((time, self.nextSequence, event))
        self.nextSequence += 1
        var child = self.heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.before(self.heap[child], self.heap[parent]) else { break }
            self.heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func next() -> (time: Int64, event: Event)? {
        guard !self.heap.isEmpty else { return nil }
        self.heap.swapAt(0, self.heap.count - 1)
        let first = self.heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < self.heap.count && Self.before(self.heap[left], self.heap[smallest]) { smallest = left }
            if right < self.heap.count && Self.before(self.heap[right], self.heap[smallest]) { smallest = right }
            if smallest == parent { break }
            self.heap.swapAt(parent, smallest)
            parent = smallest
        }
        return (first.time, first.event)
    }

    private static func before(_ a: (time: Int64, sequence: UInt64, event: Event),
                               _ b: (time: Int64, sequence: UInt64, event: Event)) -> Bool
    {
        a.time < b.time || (a.time == b.time && a.sequence < b.sequence)
    }
}
