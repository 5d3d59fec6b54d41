import Foundation
import TallyReplica
import Yams

/// SLO spec files. The short form, one file holding any number of SLOs:
///
/// ```yaml
/// slos:
///   - name: checkout-availability          # lowercase letters, digits and -, at most 63
///     service: checkout
///     operations: ["POST /pay"]             # optional: only these operations
///     objective: 99.9                       # percent
///     sli: availability                     # or: latency <= 300ms
///     bad: [5xx]                            # availability: the status classes that are bad (default 5xx)
///     window: 30d                           # rolling (at most 366d), or {calendar: month, time_zone: Europe/Berlin}
///     minimum_events: 100                   # no alert on a long window with fewer events
///     runbook: https://runbooks.example/checkout
///     alerts:                               # optional: replaces the SRE Workbook's three rules
///       - {severity: page, burn_rate: 14.4, long: 1h, short: 5m}
/// ```
/// Every key is checked; an unknown one is refused by name, never ignored.
public enum SLOFile {
    /// Largest spec file read (a spec is a few hundred bytes).
    public static let bytesMax = 1 << 20

    public static func load(path: String) throws(SLOError) -> [SLOSpec] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SLOError(file: path, key: "(file)", value: path, message: "cannot be read")
        }
        guard data.count <= Self.bytesMax else {
            throw SLOError(file: path, key: "(file)", value: "\(data.count) bytes", message: "is over the 1 MiB limit")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw SLOError(file: path, key: "(file)", value: path, message: "is not UTF-8 text")
        }
        return try Self.parse(yaml: text, file: path)
    }

    public static func parse(yaml text: String, file: String) throws(SLOError) -> [SLOSpec] {
        do {
            return try Self.parseThrowing(yaml: text)
        } catch var error as SLOError {
            error.file = file
            throw error
        } catch {
            throw SLOError(file: file, key: "(document)", value: "", message: "is not valid YAML: \(error)")
        }
    }

    static func parseThrowing(yaml text: String) throws -> [SLOSpec] {
        guard text.utf8.count <= Self.bytesMax else {
            throw SLOError(key: "(file)", value: "\(text.utf8.count) bytes", message: "is over the 1 MiB limit")
        }
        if let line = YAMLText.firstAlias(in: text) {
            throw SLOError(key: "(document)", value: "line \(line)", message: "uses a YAML alias; spec files may not")
        }
        if let line = try YAMLText.firstNonScalarKey(in: text) {
            throw SLOError(key: "(document)", value: "line \(line)",
                           message: "has a mapping key that is a list or a mapping; keys are plain names")
        }
        if OpenSLO.looksLike(text) { return try OpenSLO.parse(yaml: text) }
        guard let root = try Yams.load(yaml: text) as? [String: Any] else {
            throw SLOError(key: "(document)", value: "", message: "must be a mapping with `slos:`")
        }
        try Self.onlyKnown(root, ["slos"], at: "")
        return try Self.list(root["slos"])
    }

    /// The SLOs of a `slos:` list already read from YAML (a simulator scenario holds one), checked
    /// as in a spec file.
    public static func specs(fromList value: Any?, file: String) throws(SLOError) -> [SLOSpec] {
        do {
            return try Self.list(value)
        } catch var error as SLOError {
            error.file = file
            throw error
        } catch {
            throw SLOError(file: file, key: "slos", value: "", message: "\(error)")
        }
    }

    static func list(_ value: Any?) throws -> [SLOSpec] {
        guard let list = value as? [Any], !list.isEmpty else {
            throw SLOError(key: "slos", value: "\(value ?? "")", message: "must be a list of at least one SLO")
        }
        guard list.count <= 1_000 else {
            throw SLOError(key: "slos", value: "\(list.count) SLOs", message: "is over the limit of 1000 per file")
        }
        var specs: [SLOSpec] = []
        var names: Set<String> = []
        for (index, entry) in list.enumerated() {
            let key = "slos[\(index)]"
            guard let map = entry as? [String: Any] else {
                throw SLOError(key: key, value: "\(entry)", message: "must be a mapping")
            }
            let spec = try Self.spec(map, at: key)
            guard names.insert(spec.name).inserted else {
                throw SLOError(key: "\(key).name", value: spec.name, message: "names an SLO already in this file")
            }
            specs.append(spec)
        }
        return specs
    }

    static let keys = ["name", "service", "operations", "objective", "sli", "bad", "window", "minimum_events",
                       "runbook", "alerts", "maintenance", "budgeting"]

    static func spec(_ map: [String: Any], at key: String) throws -> SLOSpec {
        try Self.onlyKnown(map, Self.keys, at: key)
        let name = try Self.string(map["name"], at: "\(key).name")
        guard name.count <= 63, name.first?.isLetter == true, name.last != "-",
            name.allSatisfy({ ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" })
        else {
            throw SLOError(key: "\(key).name", value: name,
                           message: "must be lowercase letters, digits and -, start with a letter, at most 63 characters")
        }
        let service = try Self.string(map["service"], at: "\(key).service")
        var operations: Set<String>?
        if let value = map["operations"] {
            guard let list = value as? [Any], !list.isEmpty else {
                throw SLOError(key: "\(key).operations", value: "\(value)", message: "must be a list of operation names")
            }
            operations = Set(try list.enumerated().map { try Self.string($1, at: "\(key).operations[\($0)]") })
        }
        let objective: Objective
        do {
            objective = try Objective(percent: "\(map["objective"] ?? "")")
        } catch {
            throw SLOError(key: "\(key).objective", value: error.value, message: error.message)
        }
        let indicator = try Self.indicator(map, at: key)
        let window = try Self.window(map["window"], at: "\(key).window")
        var minimum: UInt64 = 100
        if let value = map["minimum_events"] {
            guard let number = value as? Int, number >= 0, number <= 1_000_000_000 else {
                throw SLOError(key: "\(key).minimum_events", value: "\(value)", message: "must be a whole number in 0...1000000000")
            }
            minimum = UInt64(number)
        }
        var rules = BurnRateRule.workbook
        if let value = map["alerts"] {
            guard let list = value as? [Any], !list.isEmpty, list.count <= 16 else {
                throw SLOError(key: "\(key).alerts", value: "\(value)", message: "must be a list of 1 to 16 rules")
            }
            rules = try list.enumerated().map { try Self.rule($1, at: "\(key).alerts[\($0)]") }
        }
        let runbook = try map["runbook"].map { try Self.string($0, at: "\(key).runbook") }
        var spec = SLOSpec(name: name, service: service, operations: operations, indicator: indicator, objective: objective,
                           window: window, rules: rules, minimumEvents: minimum, runbook: runbook)
        if let value = map["maintenance"] {
            spec.maintenance = try Self.maintenance(value, at: "\(key).maintenance")
        }
        if let value = map["budgeting"] {
            spec.budgeting = try Self.budgeting(value, at: "\(key).budgeting")
        }
        return spec
    }

    static func indicator(_ map: [String: Any], at key: String) throws -> SLOSpec.Indicator {
        let text = "\(map["sli"] ?? "availability")".trimmingWhitespace()
        if text == "availability" {
            var bad: Set<StatusClass> = [.serverError]
            if let value = map["bad"] {
                guard let list = value as? [Any], !list.isEmpty else {
                    throw SLOError(key: "\(key).bad", value: "\(value)", message: "must be a list of status classes such as [5xx]")
                }
                bad = try Self.statusClasses(list, at: "\(key).bad")
            }
            return .availability(badClasses: bad)
        }
        guard map["bad"] == nil else {
            throw SLOError(key: "\(key).bad", value: "\(map["bad"]!)", message: "applies to an availability SLI only")
        }
        // latency <= 300ms (or <): a request no slower than the threshold is good.
        let words = text.split(separator: " ", omittingEmptySubsequences: true)
        guard words.count == 3, words[0] == "latency", words[1] == "<=" || words[1] == "<",
            let threshold = Duration.parse(String(words[2])), threshold > .zero, threshold <= .seconds(3_600)
        else {
            throw SLOError(key: "\(key).sli", value: String(text),
                           message: "must be availability, or latency <= DURATION (such as latency <= 300ms, at most 1h)")
        }
        let components = threshold.components
        let micros = Double(components.seconds) * 1_000_000 + Double(components.attoseconds) / 1e12
        return .latency(thresholdMicros: micros)
    }

    /// `[5xx]`, `[4xx, 5xx]`: status classes.
    static func statusClasses(_ value: Any, at key: String) throws -> Set<StatusClass> {
        guard let list = value as? [Any], !list.isEmpty else {
            throw SLOError(key: key, value: "\(value)", message: "must be a list of status classes such as [5xx]")
        }
        return Set(try list.map { item in
            guard let digit = "\(item)".first?.wholeNumberValue, "\(item)".count == 3, "\(item)".hasSuffix("xx"),
                let status = StatusClass(rawValue: UInt8(digit))
            else { throw SLOError(key: key, value: "\(item)", message: "is not a status class (1xx ... 5xx)") }
            return status
        })
    }

    static func window(_ value: Any?, at key: String) throws -> TimeWindow {
        guard let value else { return .rolling(.seconds(30 * 86_400)) }
        if let map = value as? [String: Any] {
            try Self.onlyKnown(map, ["calendar", "time_zone"], at: key)
            let unitText = try Self.string(map["calendar"], at: "\(key).calendar")
            guard let unit = TimeWindow.CalendarUnit(rawValue: unitText) else {
                throw SLOError(key: "\(key).calendar", value: unitText, message: "must be day, week, month, quarter or year")
            }
            let zone = try map["time_zone"].map { try Self.string($0, at: "\(key).time_zone") } ?? "UTC"
            return try TimeWindow.calendar(unit, timeZone: zone, key: "\(key).time_zone")
        }
        guard let duration = Duration.parse("\(value)") else {
            throw SLOError(key: key, value: "\(value)",
                           message: "must be a duration such as 30d, or {calendar: month, time_zone: UTC}")
        }
        return try TimeWindow.rolling(duration, key: key)
    }

    /// `[{from: RFC 3339, to: RFC 3339}]`, sorted and merged where they overlap.
    static func maintenance(_ value: Any, at key: String) throws -> [SLOSpec.Interval] {
        guard let list = value as? [Any], list.count <= 1_000 else {
            throw SLOError(key: key, value: "\(value)", message: "must be a list of at most 1000 {from, to} intervals")
        }
        var intervals: [SLOSpec.Interval] = []
        for (index, item) in list.enumerated() {
            let itemKey = "\(key)[\(index)]"
            guard let map = item as? [String: Any] else {
                throw SLOError(key: itemKey, value: "\(item)", message: "must be a mapping {from, to}")
            }
            try Self.onlyKnown(map, ["from", "to"], at: itemKey)
            func instant(_ name: String) throws -> Timestamp {
                // Yams reads an unquoted timestamp as a Date: take the text form either way.
                let text = (map[name] as? Date).map { RFC3339.format(Timestamp(millisecondsSinceEpoch:
                    Int64(($0.timeIntervalSince1970 * 1_000).rounded()))) } ?? "\(map[name] ?? "")"
                guard let time = RFC3339.parse(text), time.isValid else {
                    throw SLOError(key: "\(itemKey).\(name)", value: text, message: "must be an RFC 3339 time such as 2026-12-05T02:00:00Z")
                }
                return time
            }
            let from = try instant("from")
            let to = try instant("to")
            guard from < to else {
                throw SLOError(key: "\(itemKey).to", value: RFC3339.format(to), message: "must be after from (\(RFC3339.format(from)))")
            }
            intervals.append(SLOSpec.Interval(from: from, to: to))
        }
        intervals.sort { $0.from < $1.from }
        var merged: [SLOSpec.Interval] = []
        for interval in intervals {
            if let last = merged.last, interval.from <= last.to {
                merged[merged.count - 1].to = max(last.to, interval.to)
            } else {
                merged.append(interval)
            }
        }
        return merged
    }

    /// `occurrences`, or `{timeslices: 1m, target: 95}` (a slice is good when 95% of its events are).
    static func budgeting(_ value: Any, at key: String) throws -> SLOSpec.Budgeting {
        if "\(value)" == "occurrences" { return .occurrences }
        guard let map = value as? [String: Any] else {
            throw SLOError(key: key, value: "\(value)", message: "must be occurrences, or {timeslices: 1m, target: 95}")
        }
        try Self.onlyKnown(map, ["timeslices", "target"], at: key)
        return try Self.timeslices(slice: map["timeslices"], target: map["target"], at: key, sliceKey: "timeslices",
                                   targetKey: "target", percent: true)
    }

    /// A Timeslices method: a slice of 1m to 1d, and the share of a slice's events that makes it
    /// good (a percent in the short form, a ratio such as 0.95 in OpenSLO).
    static func timeslices(slice: Any?, target: Any?, at key: String, sliceKey: String, targetKey: String,
                           percent: Bool) throws -> SLOSpec.Budgeting
    {
        let sliceText = "\(slice ?? "")"
        guard let width = Duration.parse(sliceText), width >= .seconds(60), width <= .seconds(86_400) else {
            throw SLOError(key: "\(key).\(sliceKey)", value: sliceText, message: "must be a duration from 1m to 1d")
        }
        let targetText = "\(target ?? "")"
        let objective: Objective
        do {
            objective = percent ? try Objective(percent: targetText) : try Objective(ratio: targetText)
        } catch {
            throw SLOError(key: "\(key).\(targetKey)", value: error.value, message: error.message)
        }
        return .timeslices(slice: width, target: objective)
    }

    static func rule(_ value: Any, at key: String) throws -> BurnRateRule {
        guard let map = value as? [String: Any] else {
            throw SLOError(key: key, value: "\(value)", message: "must be a mapping {severity, burn_rate, long, short}")
        }
        try Self.onlyKnown(map, ["severity", "burn_rate", "long", "short"], at: key)
        let severityText = try Self.string(map["severity"], at: "\(key).severity")
        guard let severity = Severity(rawValue: severityText) else {
            throw SLOError(key: "\(key).severity", value: severityText, message: "must be page or ticket")
        }
        let factor = try BurnFactor(parsing: "\(map["burn_rate"] ?? "")", key: "\(key).burn_rate")
        func duration(_ name: String) throws -> Duration {
            let text = "\(map[name] ?? "")"
            guard let duration = Duration.parse(text), duration >= .seconds(60), duration <= .seconds(30 * 86_400) else {
                throw SLOError(key: "\(key).\(name)", value: text, message: "must be a duration from 1m to 30d")
            }
            return duration
        }
        let long = try duration("long")
        let short = try duration("short")
        guard short < long else {
            throw SLOError(key: "\(key).short", value: short.shortDescription, message: "must be shorter than long (\(long.shortDescription))")
        }
        return BurnRateRule(severity: severity, factor: factor, long: long, short: short)
    }

    static func string(_ value: Any?, at key: String) throws -> String {
        guard let value, let text = value as? String ?? (value is Int ? "\(value)" : nil), !text.isEmpty,
            text.utf8.count <= 200
        else {
            throw SLOError(key: key, value: value.map { "\($0)" } ?? "", message: "is required: a string of 1 to 200 bytes")
        }
        return text
    }

    static func onlyKnown(_ map: [String: Any], _ known: [String], at key: String) throws {
        for name in map.keys.sorted() where !known.contains(name) {
            throw SLOError(key: key.isEmpty ? name : "\(key).\(name)", value: name,
                           message: "is not a known key (known: \(known.joined(separator: ", ")))")
        }
    }
}
