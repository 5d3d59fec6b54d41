import Foundation
import TallyReplica
import Yams

/// OpenSLO v1 (`apiVersion: openslo/v1`) spec files, read into the same `SLOSpec`s as the short
/// form. Tally evaluates its own series, so a metric source is `type: Tally` with the series in
/// its spec:
///
/// ```yaml
/// apiVersion: openslo/v1
/// kind: SLO
/// metadata: {name: checkout-availability}
/// spec:
///   service: checkout
///   indicator:
///     metadata: {name: checkout-errors}
///     spec:
///       ratioMetric:
///         bad: {metricSource: {type: Tally, spec: {service: checkout, status: [5xx]}}}
///         total: {metricSource: {type: Tally, spec: {service: checkout}}}
///   timeWindow: [{duration: 1M, calendar: {startTime: "2026-01-01 00:00:00", timeZone: Europe/Berlin}}]
///   budgetingMethod: Occurrences
///   objectives: [{target: 0.999}]
///   alertPolicies: [{alertPolicyRef: fast-burn}]
/// ```
///
/// A latency SLI is a `thresholdMetric` of `{service, metric: latency}` with an objective
/// `op: lte` and `value` in milliseconds. SLI, AlertPolicy, AlertCondition, Service and
/// AlertNotificationTarget objects in the same file are resolved by name. Everything else that
/// OpenSLO can say and Tally cannot evaluate (another metric source, a raw ratio, RatioTimeslices,
/// several objectives, a composite SLO, a calendar start off a period boundary, an alert on a
/// burn rate below a threshold, alerting on no data, ...) is refused with its key named.
public enum OpenSLO {
    /// True when `text` is OpenSLO (some document says `apiVersion: openslo/...`).
    static func looksLike(_ text: String) -> Bool {
        text.range(of: #"(?m)^apiVersion:\s*["']?openslo/"#, options: .regularExpression) != nil
    }

    static func parse(yaml text: String) throws -> [SLOSpec] {
        var documents: [(index: Int, map: [String: Any])] = []
        for (index, document) in try Yams.load_all(yaml: text).enumerated() {
            guard documents.count < 1_000 else {
                throw SLOError(key: "(document)", value: "\(index + 1) documents", message: "is over the limit of 1000 objects")
            }
            guard let map = document as? [String: Any] else {
                throw SLOError(key: "document[\(index)]", value: "\(document)", message: "must be a mapping with apiVersion and kind")
            }
            documents.append((index, map))
        }
        var objects: [String: [String: (key: String, spec: [String: Any])]] = [:]
        var slos: [(key: String, map: [String: Any])] = []
        for (index, map) in documents {
            let key = "document[\(index)]"
            try SLOFile.onlyKnown(map, ["apiVersion", "kind", "metadata", "spec"], at: key)
            let version = "\(map["apiVersion"] ?? "")"
            guard version == "openslo/v1" else {
                throw SLOError(key: "\(key).apiVersion", value: version, message: "must be openslo/v1 (the version Tally reads)")
            }
            let kind = "\(map["kind"] ?? "")"
            let name = try Self.name(map["metadata"], at: "\(key).metadata")
            switch kind {
            case "SLO":
                slos.append((key, map))
            case "SLI", "AlertPolicy", "AlertCondition", "Service", "AlertNotificationTarget":
                guard objects[kind]?[name] == nil else {
                    throw SLOError(key: "\(key).metadata.name", value: name, message: "names a second \(kind) object")
                }
                let spec = try Self.map(map["spec"] ?? [String: Any](), at: "\(key).spec")
                switch kind {
                case "Service": try SLOFile.onlyKnown(spec, ["description"], at: "\(key).spec")
                case "AlertNotificationTarget": try SLOFile.onlyKnown(spec, ["description", "target"], at: "\(key).spec")
                default: break  // checked where an SLO uses it
                }
                objects[kind, default: [:]][name] = (key, spec)
            case "DataSource":
                throw SLOError(key: "\(key).kind", value: kind, message: "is not supported: Tally evaluates its own series "
                    + "(metricSource type: Tally), not another data source")
            default:
                throw SLOError(key: "\(key).kind", value: kind, message: "is not an OpenSLO v1 kind Tally reads (SLO, SLI, "
                    + "AlertPolicy, AlertCondition, Service, AlertNotificationTarget)")
            }
        }
        guard !slos.isEmpty else {
            throw SLOError(key: "(document)", value: "", message: "holds no object of kind SLO")
        }
        var names: Set<String> = []
        return try slos.map { entry in
            let spec = try Self.slo(entry.map, at: entry.key, objects: objects)
            guard names.insert(spec.name).inserted else {
                throw SLOError(key: "\(entry.key).metadata.name", value: spec.name, message: "names an SLO already in this file")
            }
            return spec
        }
    }

    static func map(_ value: Any?, at key: String) throws -> [String: Any] {
        guard let map = value as? [String: Any] else {
            throw SLOError(key: key, value: "\(value ?? "")", message: "must be a mapping")
        }
        return map
    }

    static func name(_ value: Any?, at key: String) throws -> String {
        let metadata = try Self.map(value, at: key)
        try SLOFile.onlyKnown(metadata, ["name", "displayName", "labels", "annotations"], at: key)
        return try SLOFile.string(metadata["name"], at: "\(key).name")
    }

    static func slo(_ map: [String: Any], at key: String, objects: [String: [String: (key: String, spec: [String: Any])]])
        throws -> SLOSpec
    {
        let name = try Self.name(map["metadata"], at: "\(key).metadata")
        let spec = try Self.map(map["spec"], at: "\(key).spec")
        let at = "\(key).spec"
        try SLOFile.onlyKnown(spec, ["description", "service", "indicator", "indicatorRef", "timeWindow",
                                     "budgetingMethod", "objectives", "alertPolicies"], at: at)
        let service = try SLOFile.string(spec["service"], at: "\(at).service")
        // The indicator, inline or by reference.
        let indicatorSpec: [String: Any]
        let indicatorKey: String
        switch (spec["indicator"], spec["indicatorRef"]) {
        case (let inline?, nil):
            let indicator = try Self.map(inline, at: "\(at).indicator")
            try SLOFile.onlyKnown(indicator, ["metadata", "spec"], at: "\(at).indicator")
            indicatorSpec = try Self.map(indicator["spec"], at: "\(at).indicator.spec")
            indicatorKey = "\(at).indicator.spec"
        case (nil, let reference?):
            let ref = "\(reference)"
            guard let object = objects["SLI"]?[ref] else {
                throw SLOError(key: "\(at).indicatorRef", value: ref, message: "names no SLI object in this file")
            }
            indicatorSpec = object.spec
            indicatorKey = "\(object.key).spec"
        default:
            throw SLOError(key: "\(at).indicator", value: "", message: "one of indicator and indicatorRef is required")
        }
        // Objectives: exactly one.
        guard let objectives = spec["objectives"] as? [Any], !objectives.isEmpty else {
            throw SLOError(key: "\(at).objectives", value: "\(spec["objectives"] ?? "")", message: "must list one objective")
        }
        guard objectives.count == 1 else {
            throw SLOError(key: "\(at).objectives", value: "\(objectives.count) objectives",
                           message: "is not supported: Tally evaluates one objective per SLO (write one SLO per objective)")
        }
        let objectiveKey = "\(at).objectives[0]"
        let objective = try Self.map(objectives[0], at: objectiveKey)
        try SLOFile.onlyKnown(objective, ["displayName", "op", "value", "target", "targetPercent", "timeSliceTarget",
                                          "timeSliceWindow", "indicator", "indicatorRef", "compositeWeight"], at: objectiveKey)
        for composite in ["indicator", "indicatorRef", "compositeWeight"] where objective[composite] != nil {
            throw SLOError(key: "\(objectiveKey).\(composite)", value: composite,
                           message: "is not supported: composite SLOs are not evaluated by Tally")
        }
        let target: Objective
        switch (objective["target"], objective["targetPercent"]) {
        case (let ratio?, nil):
            do { target = try Objective(ratio: "\(ratio)") } catch {
                throw SLOError(key: "\(objectiveKey).target", value: error.value, message: error.message)
            }
        case (nil, let percent?):
            do { target = try Objective(percent: "\(percent)") } catch {
                throw SLOError(key: "\(objectiveKey).targetPercent", value: error.value, message: error.message)
            }
        default:
            throw SLOError(key: "\(objectiveKey).target", value: "", message: "exactly one of target and targetPercent is required")
        }
        let (tallyService, operations, indicator) = try Self.indicator(indicatorSpec, at: indicatorKey, service: service,
                                                                       objective: objective, objectiveKey: objectiveKey)
        var result = SLOSpec(name: name, service: tallyService, operations: operations, indicator: indicator,
                             objective: target, window: try Self.window(spec["timeWindow"], at: "\(at).timeWindow"))
        guard name.count <= 63, name.first?.isLetter == true, name.last != "-",
            name.allSatisfy({ ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" })
        else {
            throw SLOError(key: "\(key).metadata.name", value: name,
                           message: "must be lowercase letters, digits and -, start with a letter, at most 63 characters")
        }
        result.description = try spec["description"].map { try Self.description($0, at: "\(at).description") }
        let method = "\(spec["budgetingMethod"] ?? "")"
        switch method {
        case "Occurrences":
            for key in ["timeSliceTarget", "timeSliceWindow"] where objective[key] != nil {
                throw SLOError(key: "\(objectiveKey).\(key)", value: "\(objective[key]!)",
                               message: "applies to Timeslices budgeting only")
            }
        case "Timeslices":
            // OpenSLO: a window given as a bare number is in minutes.
            let window = objective["timeSliceWindow"].map { ($0 is Int) ? "\($0)m" : "\($0)" }
            result.budgeting = try SLOFile.timeslices(slice: window, target: objective["timeSliceTarget"], at: objectiveKey,
                                                      sliceKey: "timeSliceWindow", targetKey: "timeSliceTarget",
                                                      percent: false)
        case "RatioTimeslices":
            throw SLOError(key: "\(at).budgetingMethod", value: method, message: "is not supported: Tally budgets by "
                + "Occurrences or Timeslices (an average of slice ratios is not evaluated)")
        default:
            throw SLOError(key: "\(at).budgetingMethod", value: method, message: "must be Occurrences or Timeslices")
        }
        if let policies = spec["alertPolicies"] {
            guard let list = policies as? [Any], list.count <= 16 else {
                throw SLOError(key: "\(at).alertPolicies", value: "\(policies)", message: "must be a list of at most 16 policies")
            }
            let rules = try list.enumerated().flatMap { index, policy in
                try Self.policy(policy, at: "\(at).alertPolicies[\(index)]", objects: objects)
            }
            if !rules.isEmpty { result.rules = rules }
        }
        return result
    }

    static func description(_ value: Any, at key: String) throws -> String {
        let text = "\(value)"
        guard text.count <= 1_050 else {
            throw SLOError(key: key, value: text, message: "is longer than OpenSLO's 1050 characters")
        }
        return text
    }

    /// The series and SLI of a `ratioMetric` or `thresholdMetric` over `type: Tally` sources.
    static func indicator(_ spec: [String: Any], at key: String, service: String, objective: [String: Any],
                          objectiveKey: String) throws -> (String, Set<String>?, SLOSpec.Indicator)
    {
        try SLOFile.onlyKnown(spec, ["description", "ratioMetric", "thresholdMetric"], at: key)
        if let ratio = spec["ratioMetric"] {
            guard spec["thresholdMetric"] == nil else {
                throw SLOError(key: "\(key).thresholdMetric", value: "", message: "cannot be given with ratioMetric")
            }
            for field in ["op", "value"] where objective[field] != nil {
                throw SLOError(key: "\(objectiveKey).\(field)", value: "\(objective[field]!)",
                               message: "applies to a thresholdMetric only")
            }
            let at = "\(key).ratioMetric"
            let metric = try Self.map(ratio, at: at)
            try SLOFile.onlyKnown(metric, ["counter", "good", "bad", "total", "raw", "rawType"], at: at)
            for field in ["raw", "rawType"] where metric[field] != nil {
                throw SLOError(key: "\(at).\(field)", value: field, message: "is not supported: Tally computes the ratio "
                    + "from its own counts, not from a precomputed one")
            }
            guard let total = metric["total"] else {
                throw SLOError(key: "\(at).total", value: "", message: "is required")
            }
            let (totalService, totalOperations, totalClasses) = try Self.source(total, at: "\(at).total", service: service)
            guard totalClasses == nil else {
                throw SLOError(key: "\(at).total.metricSource.spec.status", value: "", message: "must not filter by status: "
                    + "total is every request")
            }
            let classes: Set<StatusClass>
            let part: String
            switch (metric["good"], metric["bad"]) {
            case (let good?, nil):
                part = "good"
                let (_, _, goodClasses) = try Self.sameSeries(good, at: "\(at).good", as: (totalService, totalOperations))
                classes = Set(StatusClass.allCases).subtracting(goodClasses)
            case (nil, let bad?):
                part = "bad"
                let (_, _, badClasses) = try Self.sameSeries(bad, at: "\(at).bad", as: (totalService, totalOperations))
                classes = badClasses
            default:
                throw SLOError(key: "\(at).good", value: "", message: "exactly one of good and bad is required with total")
            }
            guard !classes.isEmpty else {
                throw SLOError(key: "\(at).\(part).metricSource.spec.status", value: "",
                               message: "leaves no status class bad: the SLO could never burn")
            }
            return (totalService, totalOperations, .availability(badClasses: classes))
        }
        guard let threshold = spec["thresholdMetric"] else {
            throw SLOError(key: key, value: "", message: "one of ratioMetric and thresholdMetric is required")
        }
        let at = "\(key).thresholdMetric"
        let source = try Self.map(threshold, at: at)
        try SLOFile.onlyKnown(source, ["metricSource"], at: at)
        let (thresholdService, operations, classes, metricName) = try Self.metricSource(
            source["metricSource"], at: "\(at).metricSource", service: service, allowMetric: true)
        guard classes == nil else {
            throw SLOError(key: "\(at).metricSource.spec.status", value: "", message: "applies to a ratioMetric only")
        }
        guard metricName == "latency" else {
            throw SLOError(key: "\(at).metricSource.spec.metric", value: metricName ?? "",
                           message: "must be latency (the one per-request value Tally keeps)")
        }
        let op = "\(objective["op"] ?? "")"
        guard op == "lte" || op == "lt" else {
            throw SLOError(key: "\(objectiveKey).op", value: op, message: op == "gte" || op == "gt"
                ? "is not supported: a latency SLI counts requests at or below the value as good (lte)"
                : "must be lte (or lt) for a latency thresholdMetric")
        }
        let valueText = "\(objective["value"] ?? "")"
        guard let millis = Double(valueText), millis > 0, millis <= 3_600_000 else {
            throw SLOError(key: "\(objectiveKey).value", value: valueText,
                           message: "must be the latency threshold in milliseconds, above 0 and at most 3600000")
        }
        return (thresholdService, operations, .latency(thresholdMicros: millis * 1_000))
    }

    static func sameSeries(_ value: Any, at key: String, as total: (String, Set<String>?)) throws
        -> (String, Set<String>?, Set<StatusClass>)
    {
        let (service, operations, classes) = try Self.source(value, at: key, service: total.0)
        guard service == total.0, operations == total.1 else {
            throw SLOError(key: "\(key).metricSource.spec", value: service,
                           message: "must name the same service and operations as total")
        }
        guard let classes else {
            throw SLOError(key: "\(key).metricSource.spec.status", value: "", message: "is required: the status classes "
                + "that make a request \(key.hasSuffix("good") ? "good" : "bad"), such as [5xx]")
        }
        return (service, operations, classes)
    }

    static func source(_ value: Any, at key: String, service: String) throws -> (String, Set<String>?, Set<StatusClass>?) {
        let part = try Self.map(value, at: key)
        try SLOFile.onlyKnown(part, ["metricSource"], at: key)
        let (name, operations, classes, metric) = try Self.metricSource(part["metricSource"], at: "\(key).metricSource",
                                                                       service: service, allowMetric: false)
        _ = metric
        return (name, operations, classes)
    }

    /// `{type: Tally, spec: {service, operations, status, metric}}`.
    static func metricSource(_ value: Any?, at key: String, service: String, allowMetric: Bool) throws
        -> (String, Set<String>?, Set<StatusClass>?, String?)
    {
        let source = try Self.map(value, at: key)
        try SLOFile.onlyKnown(source, ["metricSourceRef", "type", "spec"], at: key)
        if let reference = source["metricSourceRef"] {
            throw SLOError(key: "\(key).metricSourceRef", value: "\(reference)", message: "is not supported: Tally "
                + "evaluates its own series; write type: Tally and the series in spec")
        }
        let type = "\(source["type"] ?? "")"
        guard type == "Tally" else {
            throw SLOError(key: "\(key).type", value: type, message: "must be Tally: Tally evaluates its own series, "
                + "not another metric source's queries")
        }
        let spec = try Self.map(source["spec"] ?? [String: Any](), at: "\(key).spec")
        try SLOFile.onlyKnown(spec, allowMetric ? ["service", "operations", "metric"] : ["service", "operations", "status"],
                              at: "\(key).spec")
        let name = try spec["service"].map { try SLOFile.string($0, at: "\(key).spec.service") } ?? service
        var operations: Set<String>?
        if let value = spec["operations"] {
            guard let list = value as? [Any], !list.isEmpty else {
                throw SLOError(key: "\(key).spec.operations", value: "\(value)", message: "must be a list of operation names")
            }
            operations = Set(try list.enumerated().map { try SLOFile.string($1, at: "\(key).spec.operations[\($0)]") })
        }
        var classes: Set<StatusClass>?
        if let value = spec["status"] {
            classes = try SLOFile.statusClasses(value, at: "\(key).spec.status")
        }
        let metric = try spec["metric"].map { try SLOFile.string($0, at: "\(key).spec.metric") }
        return (name, operations, classes, metric)
    }

    /// One time window: rolling (`duration`, `isRolling: true`), or a calendar period (1d, 1w, 1M,
    /// 1Q, 1Y) from a `startTime` on a period boundary in `timeZone`.
    static func window(_ value: Any?, at key: String) throws -> TimeWindow {
        guard let value else { return .rolling(.seconds(30 * 86_400)) }
        guard let list = value as? [Any], list.count == 1 else {
            throw SLOError(key: key, value: "\(value)", message: "must list exactly one time window")
        }
        let at = "\(key)[0]"
        let window = try Self.map(list[0], at: at)
        try SLOFile.onlyKnown(window, ["duration", "isRolling", "calendar"], at: at)
        let duration = "\(window["duration"] ?? "")"
        let rolling = (window["isRolling"] as? Bool) ?? (window["calendar"] == nil)
        if rolling {
            guard window["calendar"] == nil else {
                throw SLOError(key: "\(at).calendar", value: "", message: "contradicts isRolling: true")
            }
            guard let parsed = Duration.parse(duration), !duration.hasSuffix("M"), !duration.hasSuffix("Q"),
                !duration.hasSuffix("Y")
            else {
                throw SLOError(key: "\(at).duration", value: duration,
                               message: "must be a rolling duration such as 28d, 4w or 12h (months vary in length)")
            }
            return try TimeWindow.rolling(parsed, key: "\(at).duration")
        }
        let units: [String: TimeWindow.CalendarUnit] = ["1d": .day, "1w": .week, "7d": .week, "1M": .month,
                                                        "1Q": .quarter, "3M": .quarter, "1Y": .year, "12M": .year]
        guard let unit = units[duration] else {
            throw SLOError(key: "\(at).duration", value: duration,
                           message: "must be one calendar period: 1d, 1w, 1M, 1Q or 1Y")
        }
        let calendar = try Self.map(window["calendar"], at: "\(at).calendar")
        try SLOFile.onlyKnown(calendar, ["startTime", "timeZone"], at: "\(at).calendar")
        let zone = try calendar["timeZone"].map { try SLOFile.string($0, at: "\(at).calendar.timeZone") } ?? "UTC"
        let result = try TimeWindow.calendar(unit, timeZone: zone, key: "\(at).calendar.timeZone")
        if let start = calendar["startTime"] {
            // Periods start at midnight of the first day: a start elsewhere would shift them.
            let text = (start as? Date).map { Self.localText($0) } ?? "\(start)"
            guard let instant = Self.localInstant(text, zone: zone), result.bounds(at: instant).from == instant else {
                throw SLOError(key: "\(at).calendar.startTime", value: text, message: "must be the start of a \(unit.rawValue) "
                    + "(midnight on its first day, such as 2026-01-01 00:00:00): Tally aligns calendar windows to periods")
            }
        }
        return result
    }

    /// `2026-01-01 00:00:00` in `zone`.
    static func localInstant(_ text: String, zone: String) -> Timestamp? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: zone)
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        guard let date = formatter.date(from: String(text.trimmingWhitespace())) else { return nil }
        return Timestamp(millisecondsSinceEpoch: Int64((date.timeIntervalSince1970 * 1_000).rounded()))
    }

    /// Yams reads an unquoted `2026-01-01 00:00:00` as a UTC date: its text again.
    static func localText(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return formatter.string(from: date)
    }

    /// An alert policy (inline, or `alertPolicyRef`) as burn-rate rules.
    static func policy(_ value: Any, at key: String, objects: [String: [String: (key: String, spec: [String: Any])]])
        throws -> [BurnRateRule]
    {
        var entry = try Self.map(value, at: key)
        var at = key
        if let reference = entry["alertPolicyRef"] {
            try SLOFile.onlyKnown(entry, ["alertPolicyRef"], at: key)
            guard let object = objects["AlertPolicy"]?["\(reference)"] else {
                throw SLOError(key: "\(key).alertPolicyRef", value: "\(reference)", message: "names no AlertPolicy in this file")
            }
            entry = object.spec
            at = "\(object.key).spec"
        } else {
            try SLOFile.onlyKnown(entry, ["kind", "metadata", "spec"], at: key)
            entry = try Self.map(entry["spec"], at: "\(key).spec")
            at = "\(key).spec"
        }
        try SLOFile.onlyKnown(entry, ["description", "alertWhenNoData", "alertWhenResolved", "alertWhenBreaching",
                                      "conditions", "notificationTargets"], at: at)
        if (entry["alertWhenNoData"] as? Bool) == true {
            throw SLOError(key: "\(at).alertWhenNoData", value: "true", message: "is not supported: without traffic "
                + "nothing burns, and Tally does not alert on it")
        }
        if let breaching = entry["alertWhenBreaching"] as? Bool, !breaching {
            throw SLOError(key: "\(at).alertWhenBreaching", value: "false", message: "leaves the policy nothing to alert on")
        }
        if let resolved = entry["alertWhenResolved"] as? Bool, !resolved {
            throw SLOError(key: "\(at).alertWhenResolved", value: "false", message: "is not supported: Tally always tells "
                + "Alertmanager when an alert resolves; set send_resolved: false on the receiver instead")
        }
        var targets: [String] = []
        if let value = entry["notificationTargets"] {
            guard let list = value as? [Any], list.count <= 16 else {
                throw SLOError(key: "\(at).notificationTargets", value: "\(value)", message: "must be a list of at most 16 targets")
            }
            for (index, item) in list.enumerated() {
                let itemKey = "\(at).notificationTargets[\(index)]"
                let target = try Self.map(item, at: itemKey)
                if let reference = target["targetRef"] {
                    try SLOFile.onlyKnown(target, ["targetRef"], at: itemKey)
                    targets.append(try SLOFile.string(reference, at: "\(itemKey).targetRef"))
                } else {
                    try SLOFile.onlyKnown(target, ["kind", "metadata", "spec"], at: itemKey)
                    targets.append(try Self.name(target["metadata"], at: "\(itemKey).metadata"))
                }
            }
        }
        guard let conditions = entry["conditions"] as? [Any], conditions.count == 1 else {
            throw SLOError(key: "\(at).conditions", value: "\(entry["conditions"] ?? "")",
                           message: "must list exactly one condition (OpenSLO v1 allows one)")
        }
        var condition = try Self.map(conditions[0], at: "\(at).conditions[0]")
        var conditionKey = "\(at).conditions[0]"
        if let reference = condition["conditionRef"] {
            try SLOFile.onlyKnown(condition, ["conditionRef"], at: conditionKey)
            guard let object = objects["AlertCondition"]?["\(reference)"] else {
                throw SLOError(key: "\(conditionKey).conditionRef", value: "\(reference)",
                               message: "names no AlertCondition in this file")
            }
            condition = object.spec
            conditionKey = "\(object.key).spec"
        } else {
            try SLOFile.onlyKnown(condition, ["kind", "metadata", "spec"], at: conditionKey)
            condition = try Self.map(condition["spec"], at: "\(conditionKey).spec")
            conditionKey += ".spec"
        }
        try SLOFile.onlyKnown(condition, ["description", "severity", "condition"], at: conditionKey)
        let severityText = try SLOFile.string(condition["severity"], at: "\(conditionKey).severity")
        guard let severity = Severity(rawValue: severityText) else {
            throw SLOError(key: "\(conditionKey).severity", value: severityText, message: "must be page or ticket")
        }
        let rule = try Self.map(condition["condition"], at: "\(conditionKey).condition")
        let ruleKey = "\(conditionKey).condition"
        try SLOFile.onlyKnown(rule, ["kind", "op", "threshold", "lookbackWindow", "alertAfter"], at: ruleKey)
        let kind = "\(rule["kind"] ?? "burnrate")"
        guard kind == "burnrate" else {
            throw SLOError(key: "\(ruleKey).kind", value: kind, message: "must be burnrate")
        }
        let op = "\(rule["op"] ?? "")"
        guard op == "gte" || op == "gt" else {
            throw SLOError(key: "\(ruleKey).op", value: op, message: "must be gte or gt: an alert on a burn rate at or "
                + "below a threshold would page while the budget is safe")
        }
        let factor = try BurnFactor(parsing: "\(rule["threshold"] ?? "")", key: "\(ruleKey).threshold")
        let lookbackText = "\(rule["lookbackWindow"] ?? "")"
        guard let long = Duration.parse(lookbackText), long >= .seconds(12 * 60), long <= .seconds(30 * 86_400) else {
            throw SLOError(key: "\(ruleKey).lookbackWindow", value: lookbackText, message: "must be a duration from 12m to 30d")
        }
        var after = Duration.zero
        if let value = rule["alertAfter"] {
            guard let parsed = Duration.parse("\(value)"), parsed <= long else {
                throw SLOError(key: "\(ruleKey).alertAfter", value: "\(value)",
                               message: "must be a duration no longer than the lookback window")
            }
            after = parsed
        }
        // The Workbook's short window, a twelfth of the long one (1h and 5m): the alert stops soon
        // after the burning does.
        let short = Duration.milliseconds(max(60_000, long.milliseconds / 12 / 60_000 * 60_000))
        return [BurnRateRule(severity: severity, factor: factor, long: long, short: short, alertAfter: after,
                             notify: targets)]
    }
}
