#if canImport(Glibc)
import Glibc
#endif
import MallocInterposerSwift

/// Keeps a value alive so the optimizer cannot delete the work that produced it.
@inline(never)
func blackHole<T>(_ value: T) {
    withExtendedLifetime(value) {}
}

/// One benchmark's result.
struct Measurement {
    var name: String
    /// Median nanoseconds per operation over the runs.
    var nanosMedian: Double
    /// Fastest run, nanoseconds per operation.
    var nanosBest: Double
    /// Allocations per operation in one extra run with the malloc counter hooked; nil if unavailable.
    var allocationsPerOperation: Double?
}

/// Times closures that run `operations` operations each, in release builds.
///
/// Each benchmark runs once to warm up, then `runs` times; the median and best ns/op are reported.
/// A last run is made with the malloc interposer counting, to report allocations per operation.
/// The machine is shared and noisy: compare ratios measured in one run, not absolute numbers
/// across runs.
struct Harness {
    var runs: Int
    var filter: String?
    var allocationCountingWorks: Bool

    init(runs: Int, filter: String? = nil) {
        self.runs = runs
        self.filter = filter
        MallocInterposerSwift.initialize()
        MallocInterposerSwift.hook()
        blackHole([UInt8](repeating: 1, count: Int.random(in: 100...200)))
        MallocInterposerSwift.unhook()
        self.allocationCountingWorks = MallocInterposerSwift.getStatistics().mallocCount > 0
    }

    /// Runs `body` (which performs `operations` operations) and times it; nil when filtered out.
    func measure(_ name: String, operations: Int, _ body: () -> Void) -> Measurement? {
        if let filter = self.filter, !name.contains(filter) { return nil }
        body()
        var samples: [Double] = []
        for _ in 0..<self.runs { samples.append(Self.time(body) / Double(operations)) }
        return self.measurement(name, samples: samples, operations: operations, body)
    }

    /// Times two bodies in alternating runs (A, B, A, B, ...), so that both see the same machine:
    /// this machine is shared, and its speed drifts between runs. Also returns the median of the
    /// per-round ratios A/B, the figure to compare against a target ratio.
    func compare(
        _ nameA: String, _ nameB: String, operations: Int, _ bodyA: () -> Void, _ bodyB: () -> Void
    ) -> (a: Measurement, b: Measurement, ratio: Double)? {
        if let filter = self.filter, !nameA.contains(filter) && !nameB.contains(filter) { return nil }
        bodyA()
        bodyB()
        var samplesA: [Double] = []
        var samplesB: [Double] = []
        var ratios: [Double] = []
        for _ in 0..<self.runs {
            samplesA.append(Self.time(bodyA) / Double(operations))
            samplesB.append(Self.time(bodyB) / Double(operations))
            ratios.append(samplesA[samplesA.count - 1] / samplesB[samplesB.count - 1])
        }
        ratios.sort()
        return (
            self.measurement(nameA, samples: samplesA, operations: operations, bodyA),
            self.measurement(nameB, samples: samplesB, operations: operations, bodyB),
            ratios[ratios.count / 2]
        )
    }

    private static func time(_ body: () -> Void) -> Double {
        let start = ContinuousClock.now
        body()
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
    }

    private func measurement(_ name: String, samples: [Double], operations: Int, _ body: () -> Void) -> Measurement {
        let samples = samples.sorted()
        var allocations: Double?
        if self.allocationCountingWorks {
            MallocInterposerSwift.reset()
            MallocInterposerSwift.hook()
            body()
            MallocInterposerSwift.unhook()
            allocations = Double(MallocInterposerSwift.getStatistics().mallocCount) / Double(operations)
        }
        return Measurement(
            name: name, nanosMedian: samples[samples.count / 2], nanosBest: samples[0],
            allocationsPerOperation: allocations)
    }

    /// Re-executes this process with the malloc interposer preloaded, when the dynamic linker did
    /// not route malloc through it on its own. Returns only if re-executing is not possible.
    static func preloadInterposerIfNeeded() {
        guard getenv("TALLY_BENCH_PRELOADED") == nil else { return }
        var path = [CChar](repeating: 0, count: 4_096)
        let length = readlink("/proc/self/exe", &path, path.count - 1)
        guard length > 0 else { return }
        let executable = String(decoding: path[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let directory = executable.split(separator: "/", omittingEmptySubsequences: false).dropLast()
            .joined(separator: "/")
        let library = directory + "/libMallocInterposerSwift.so"
        guard access(library, R_OK) == 0 else { return }
        setenv("LD_PRELOAD", library, 1)
        setenv("TALLY_BENCH_PRELOADED", "1", 1)
        var arguments = CommandLine.arguments.map { strdup($0) }
        arguments.append(nil)
        execv(executable, &arguments)
    }
}

/// Formats a table with a header and right-aligned numeric columns.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let widths = header.indices.map { column in
        ([header[column]] + rows.map { $0[column] }).map(\.count).max() ?? 0
    }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { column, cell in
            let pad = String(repeating: " ", count: widths[column] - cell.count)
            return column == 0 ? cell + pad : pad + cell
        }.joined(separator: "  ")
    }
    return ([line(header), line(widths.map { String(repeating: "-", count: $0) })] + rows.map(line))
        .joined(separator: "\n")
}

func format(_ value: Double, digits: Int = 1) -> String {
    guard value.isFinite else { return "n/a" }
    var text = String(Int((value * pow(10, Double(digits))).rounded()))
    if digits > 0 {
        while text.count <= digits { text = "0" + text }
        text.insert(".", at: text.index(text.endIndex, offsetBy: -digits))
    }
    return text
}
