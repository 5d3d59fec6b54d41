/// An SLO's objective: the fraction of events (or time slices) that must be good, held exactly in
/// parts per million, so every budget and alert decision is integer arithmetic (a threshold
/// compared in floating point can flip on the last bit).
public struct Objective: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Good events per million required: 999,000 for 99.9%.
    public let partsPerMillion: Int

    /// The error budget: bad events per million allowed (1,000 for 99.9%).
    public var budgetPartsPerMillion: Int { 1_000_000 - self.partsPerMillion }

    /// An objective strictly between 0% and 100% (a 100% objective has no budget to burn).
    public init(partsPerMillion: Int) throws(SLOError) {
        guard partsPerMillion > 0 && partsPerMillion < 1_000_000 else {
            throw SLOError(key: "objective", value: "\(Double(partsPerMillion) / 10_000)%",
                           message: "must be above 0% and below 100%")
        }
        self.partsPerMillion = partsPerMillion
    }

    /// Parses a ratio such as `0.999` (OpenSLO's `target`: at most 6 decimals, parts per million).
    public init(ratio text: String) throws(SLOError) {
        let trimmed = text.trimmingWhitespace()
        let parts = trimmed.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0] == "0", (1...6).contains(parts[1].count),
            parts[1].allSatisfy({ $0.isASCII && $0.isNumber })
        else {
            throw SLOError(key: "target", value: text, message: "must be a ratio between 0 and 1 such as 0.999 (at most 6 decimals)")
        }
        let digits = String(parts[1]).padding(toLength: 6, withPad: "0", startingAt: 0)
        try self.init(partsPerMillion: Int(digits) ?? 0)
    }

    /// Parses a percentage such as `99.9`, `99.95%` or `99.9999` (at most 4 decimals: parts per
    /// million). A ratio form such as `0.999` is a percent of 0.999, and is refused as implausible
    /// below 1%: write `99.9`.
    public init(percent text: String) throws(SLOError) {
        let trimmed = text.trimmingWhitespace().droppingSuffix("%")
        let parts = trimmed.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let whole = Int(parts[0]), whole >= 0, parts[0].allSatisfy(\.isASCII),
            parts.count == 1 || (parts[1].count <= 4 && !parts[1].isEmpty && parts[1].allSatisfy { $0.isASCII && $0.isNumber })
        else {
            throw SLOError(key: "objective", value: text,
                           message: "must be a percentage such as 99.9 (at most 4 decimals)")
        }
        let decimals = parts.count == 2 ? String(parts[1]) : ""
        let fraction = Int(decimals.padding(toLength: 4, withPad: "0", startingAt: 0)) ?? 0
        guard whole < 100 else {
            throw SLOError(key: "objective", value: text, message: "must be below 100%")
        }
        guard whole >= 1 else {
            throw SLOError(key: "objective", value: text,
                           message: "is below 1%: objectives are percentages (99.9), not ratios (0.999)")
        }
        try self.init(partsPerMillion: whole * 10_000 + fraction)
    }

    public static func < (lhs: Objective, rhs: Objective) -> Bool { lhs.partsPerMillion < rhs.partsPerMillion }

    /// `99.9%`, with as many decimals as it has.
    public var description: String { Self.percent(partsPerMillion: self.partsPerMillion) }

    static func percent(partsPerMillion: Int) -> String {
        let whole = partsPerMillion / 10_000
        var decimals = String(partsPerMillion % 10_000)
        decimals = String(repeating: "0", count: 4 - decimals.count) + decimals
        while decimals.hasSuffix("0") { decimals.removeLast() }
        return decimals.isEmpty ? "\(whole)%" : "\(whole).\(decimals)%"
    }
}

/// A problem with an SLO spec or a value in it: which key, which value, what is wrong. The file is
/// added by whoever read it.
public struct SLOError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String?
    public var key: String
    public var value: String
    public var message: String

    public init(file: String? = nil, key: String, value: String, message: String) {
        self.file = file
        self.key = key
        // A value is quoted only to a short prefix: a config value can be megabytes long.
        self.value = value.count > 80 ? String(value.prefix(80)) + "…" : value
        self.message = message
    }

    public var description: String {
        (self.file.map { "\($0): " } ?? "") + "\(self.key): '\(self.value)' \(self.message)"
    }
}

extension String {
    func trimmingWhitespace() -> Substring {
        var text = Substring(self)
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return text
    }
}

extension Substring {
    func droppingSuffix(_ suffix: String) -> Substring {
        self.hasSuffix(suffix) ? self.dropLast(suffix.count) : self
    }
}
