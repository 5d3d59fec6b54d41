import Foundation

/// The HTML report: one self-contained file (inline style, inline SVG, no script, nothing fetched)
/// from the node's JSON. Per SLO: the headline numbers, the SLI against the objective, the budget
/// burning down over the window, the burn rate per window against each rule's threshold, the
/// traffic, the alert table, who spent the budget, and the calendar periods. Every number says how
/// it was computed.
enum SLOReportHTML {
    /// The chart colours; the report test looks for them in a screenshot.
    static let line = "#1f5fbf"
    static let bad = "#c62828"
    static let good = "#2e8b57"
    static let objective = "#8a6d00"

    static func html(_ slos: [[String: Any]], region: String, generatedAt: String) -> String {
        var body = ["<h1>SLO report</h1>",
                    "<p class=how>Region \(Self.escape(region)), generated \(Self.escape(generatedAt)). Every figure is "
                        + "computed by the node from its replicated state; each section says how.</p>"]
        body.append(Self.summary(slos))
        for slo in slos { body.append(Self.section(slo)) }
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>Tally SLO report: \(Self.escape(region))</title>
            <style>
            body{font:14px/1.45 system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:24px auto;max-width:1100px;color:#1c1c1c;background:#fff}
            h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 6px;border-top:1px solid #ddd;padding-top:18px}
            h3{font-size:15px;margin:16px 0 4px}table{border-collapse:collapse;margin:6px 0}
            td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-variant-numeric:tabular-nums}th{background:#f4f4f4}
            .how{color:#555;font-size:12.5px;margin:2px 0 8px}.firing{color:\(Self.bad);font-weight:600}.ok{color:\(Self.good)}
            .grid{display:grid;grid-template-columns:1fr 1fr;gap:8px 24px}.kpi{display:flex;gap:22px;flex-wrap:wrap;margin:6px 0}
            .kpi div{border:1px solid #ddd;border-radius:6px;padding:6px 12px}.kpi b{display:block;font-size:20px}
            svg{background:#fcfcfc;border:1px solid #e4e4e4}
            </style></head><body>
            \(body.joined(separator: "\n"))
            </body></html>
            """
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func text(_ value: Any?) -> String { Self.escape(value.map { "\($0)" } ?? "-") }

    static func summary(_ slos: [[String: Any]]) -> String {
        var rows = ["<table><tr><th>SLO</th><th>objective</th><th>SLI</th><th>budget left</th><th>1h burn</th><th>firing</th></tr>"]
        for slo in slos {
            let firing = (slo["alerts"] as? [[String: Any]] ?? []).filter { ($0["firing"] as? Bool) == true }
                .map { "\($0["severity"] ?? "?") \($0["long_window"] ?? "?")/\($0["short_window"] ?? "?")" }
            let budget = slo["budget"] as? [String: Any] ?? [:]
            let rates = slo["burn_rates"] as? [String: [String: Any]] ?? [:]
            rows.append("<tr><td><a href=\"#\(Self.text(slo["name"]))\">\(Self.text(slo["name"]))</a></td>"
                + "<td>\(Self.text(slo["objective"]))</td>"
                + "<td>\(SLOReportText.sliCell(slo["sli"] as? [String: Any] ?? [:]))</td>"
                + "<td>\(SLOReportText.percent(budget["remaining"], digits: 1))</td>"
                + "<td>\(SLOReportText.rate(rates["1h"]?["rate"]))</td>"
                + "<td class=\(firing.isEmpty ? "ok" : "firing")>\(firing.isEmpty ? "none" : Self.escape(firing.joined(separator: ", ")))</td></tr>")
        }
        return rows.joined() + "</table>"
    }

    static func section(_ slo: [String: Any]) -> String {
        let name = Self.text(slo["name"])
        let sli = slo["sli"] as? [String: Any] ?? [:]
        let budget = slo["budget"] as? [String: Any] ?? [:]
        var parts = ["<h2 id=\"\(name)\">\(name)</h2>",
                     "<p>\(Self.text(slo["objective"])) \(Self.text(slo["indicator"])) of <b>\(Self.text(slo["service"]))</b>"
                        + ((slo["operations"] as? [String]).map { " (" + Self.escape($0.joined(separator: ", ")) + ")" } ?? "")
                        + ", \(Self.text(slo["window"])), budgeting by \(Self.text(slo["budgeting"])); evaluated at "
                        + "\(Self.text(slo["evaluated_at"])) over \(Self.text(slo["window_from"])) to \(Self.text(slo["window_to"]))</p>"]
        let exhaustion = (slo["time_to_exhaustion_seconds"] as? Double).map { SLOReportText.duration(seconds: $0) } ?? "not burning"
        parts.append("<div class=kpi><div>SLI<b>\(SLOReportText.sliCell(sli))</b>"
            + (SLOReportText.hasNoEvents(sli) ? "nothing to count" : "\(Self.text(sli["good"])) good of \(Self.text(sli["total"]))")
            + "</div><div>budget left<b>\(SLOReportText.percent(budget["remaining"], digits: 1))</b>"
            + "\(String(format: "%.1f", budget["remaining_minutes"] as? Double ?? 0)) of "
            + "\(String(format: "%.1f", budget["total_minutes"] as? Double ?? 0)) min</div>"
            + "<div>time to exhaustion<b>\(Self.escape(exhaustion))</b>at the 1h burn rate</div></div>")
        parts.append("<p class=how>SLI: \(Self.text(sli["how"])). Budget: \(Self.text(budget["how"])).</p>")
        if let bounds = sli["good_bounds"] as? [String: Any] {
            parts.append("<p class=how>Good requests lie between \(Self.text(bounds["certain"])) and "
                + "\(Self.text(bounds["possible"])): the threshold falls inside a sketch bucket. The verdicts use "
                + "\(Self.text(bounds["certain"])), the lower bound.</p>")
        }
        let history = slo["history"] as? [String: Any] ?? [:]
        let steps = history["steps"] as? [[String: Any]] ?? []
        let objective = Self.objectiveRatio(slo["objective"])
        parts.append("<div class=grid>")
        parts.append(Self.figure("SLI against the objective", Self.sliChart(steps, objective: objective),
                                 "cumulative good / total from the window's start, per step of "
                                    + "\(SLOReportText.duration(seconds: history["step_seconds"] as? Double ?? 0)); dashed: the objective"))
        parts.append(Self.figure("Error budget burning down", Self.budgetChart(steps, objective: objective),
                                 "1 - cumulative bad / (cumulative total x (1 - objective)): what is left of the budget "
                                    + "the traffic so far allows"))
        parts.append(Self.figure("Burn rate per window", Self.burnChart(slo),
                                 "bad / total / (1 - objective) over each window ending now; lines: each rule's threshold"))
        parts.append(Self.figure("Traffic", Self.trafficChart(steps), "requests per step; red: the bad ones"))
        parts.append("</div>")
        parts.append(Self.alertTable(slo))
        parts.append(Self.spenders(slo))
        parts.append(Self.periods(slo))
        return parts.joined(separator: "\n")
    }

    static func objectiveRatio(_ value: Any?) -> Double {
        let text = "\(value ?? "")".replacingOccurrences(of: "%", with: "")
        return (Double(text) ?? 99) / 100
    }

    static func figure(_ title: String, _ svg: String, _ how: String) -> String {
        "<div><h3>\(Self.escape(title))</h3>\(svg)<p class=how>\(Self.escape(how))</p></div>"
    }

    static let width = 520.0
    static let height = 180.0
    static let pad = 36.0

    /// An SVG polyline chart of `values` (nil: no point) between `low` and `high`, with an optional
    /// dashed reference line.
    static func lineChart(_ values: [Double?], low: Double, high: Double, reference: Double?, label: (Double) -> String)
        -> String
    {
        let span = max(high - low, 1e-12)
        func x(_ index: Int) -> Double {
            Self.pad + (Self.width - Self.pad - 8) * Double(index) / Double(max(values.count - 1, 1))
        }
        func y(_ value: Double) -> Double {
            Self.height - 20 - (Self.height - 30) * (min(max(value, low), high) - low) / span
        }
        var svg = ["<svg width=\"\(Int(Self.width))\" height=\"\(Int(Self.height))\" viewBox=\"0 0 \(Int(Self.width)) \(Int(Self.height))\" xmlns=\"http://www.w3.org/2000/svg\">"]
        for tick in [low, (low + high) / 2, high] {
            svg.append("<line x1=\"\(Self.pad)\" x2=\"\(Self.width - 8)\" y1=\"\(y(tick))\" y2=\"\(y(tick))\" stroke=\"#e6e6e6\"/>"
                + "<text x=\"2\" y=\"\(y(tick) + 4)\" font-size=\"10\" fill=\"#666\">\(Self.escape(label(tick)))</text>")
        }
        if let reference {
            svg.append("<line x1=\"\(Self.pad)\" x2=\"\(Self.width - 8)\" y1=\"\(y(reference))\" y2=\"\(y(reference))\" "
                + "stroke=\"\(Self.objective)\" stroke-width=\"2\" stroke-dasharray=\"6 4\"/>")
        }
        var segment: [String] = []
        var lines: [String] = []
        for (index, value) in values.enumerated() {
            if let value {
                segment.append(String(format: "%.1f,%.1f", x(index), y(value)))
            } else if !segment.isEmpty {
                lines.append(segment.joined(separator: " "))
                segment = []
            }
        }
        if !segment.isEmpty { lines.append(segment.joined(separator: " ")) }
        for points in lines {
            svg.append("<polyline fill=\"none\" stroke=\"\(Self.line)\" stroke-width=\"2.5\" points=\"\(points)\"/>")
            if !points.contains(" ") {  // one point: a dot, or nothing would show
                let xy = points.split(separator: ",")
                svg.append("<circle cx=\"\(xy[0])\" cy=\"\(xy[1])\" r=\"3.5\" fill=\"\(Self.line)\"/>")
            }
        }
        if values.allSatisfy({ $0 == nil }) {
            svg.append("<text x=\"\(Self.width / 2 - 40)\" y=\"\(Self.height / 2)\" fill=\"#888\">no traffic</text>")
        }
        svg.append("</svg>")
        return svg.joined()
    }

    static func cumulative(_ steps: [[String: Any]]) -> [(total: Double, bad: Double)] {
        var total = 0.0
        var bad = 0.0
        return steps.map { step in
            total += Double(step["total"] as? Int ?? 0)
            bad += Double(step["bad"] as? Int ?? 0)
            return (total, bad)
        }
    }

    static func sliChart(_ steps: [[String: Any]], objective: Double) -> String {
        let values: [Double?] = Self.cumulative(steps).map { $0.total > 0 ? 1 - $0.bad / $0.total : nil }
        let low = min(objective - (1 - objective) * 2, values.compactMap { $0 }.min() ?? objective)
        return Self.lineChart(values, low: max(0, low), high: 1, reference: objective) {
            String(format: "%.2f%%", $0 * 100)
        }
    }

    static func budgetChart(_ steps: [[String: Any]], objective: Double) -> String {
        let budget = max(1 - objective, 1e-9)
        let values: [Double?] = Self.cumulative(steps).map { $0.total > 0 ? 1 - $0.bad / ($0.total * budget) : nil }
        let low = min(0, values.compactMap { $0 }.min() ?? 0)
        return Self.lineChart(values, low: max(low, -1), high: 1, reference: 0) { String(format: "%.0f%%", $0 * 100) }
    }

    static func burnChart(_ slo: [String: Any]) -> String {
        let rates = slo["burn_rates"] as? [String: [String: Any]] ?? [:]
        let windows = SLOReportText.windows.filter { rates[$0] != nil }
        let thresholds = (slo["alerts"] as? [[String: Any]] ?? []).compactMap { $0["burn_rate_threshold"] as? Double }
        let values = windows.map { rates[$0]?["rate"] as? Double ?? 0 }
        // A log scale: burn rates run from 0.01x to thousands.
        let top = max(values.max() ?? 1, thresholds.max() ?? 1, 1) * 1.5
        func y(_ value: Double) -> Double {
            let scaled = log10(max(value, 0.01) / 0.01) / log10(top / 0.01)
            return Self.height - 20 - (Self.height - 30) * scaled
        }
        var svg = ["<svg width=\"\(Int(Self.width))\" height=\"\(Int(Self.height))\" viewBox=\"0 0 \(Int(Self.width)) \(Int(Self.height))\" xmlns=\"http://www.w3.org/2000/svg\">"]
        let slot = (Self.width - Self.pad - 8) / Double(max(windows.count, 1))
        for (index, window) in windows.enumerated() {
            let value = values[index]
            let x = Self.pad + slot * Double(index) + slot * 0.2
            let burning = thresholds.contains { value >= $0 }
            svg.append("<rect x=\"\(x)\" y=\"\(y(value))\" width=\"\(slot * 0.6)\" height=\"\(max(1, Self.height - 20 - y(value)))\" "
                + "fill=\"\(burning ? Self.bad : Self.line)\"/>"
                + "<text x=\"\(x)\" y=\"\(Self.height - 6)\" font-size=\"11\" fill=\"#333\">\(window) \(SLOReportText.rate(value))</text>")
        }
        for threshold in Set(thresholds).sorted() {
            svg.append("<line x1=\"\(Self.pad)\" x2=\"\(Self.width - 8)\" y1=\"\(y(threshold))\" y2=\"\(y(threshold))\" "
                + "stroke=\"\(Self.objective)\" stroke-width=\"1.5\" stroke-dasharray=\"5 3\"/>"
                + "<text x=\"2\" y=\"\(y(threshold) + 4)\" font-size=\"10\" fill=\"#666\">\(SLOReportText.rate(threshold))</text>")
        }
        svg.append("</svg>")
        return svg.joined()
    }

    static func trafficChart(_ steps: [[String: Any]]) -> String {
        let totals = steps.map { Double($0["total"] as? Int ?? 0) }
        let bads = steps.map { Double($0["bad"] as? Int ?? 0) }
        let top = max(totals.max() ?? 1, 1)
        var svg = ["<svg width=\"\(Int(Self.width))\" height=\"\(Int(Self.height))\" viewBox=\"0 0 \(Int(Self.width)) \(Int(Self.height))\" xmlns=\"http://www.w3.org/2000/svg\">",
                   "<text x=\"2\" y=\"14\" font-size=\"10\" fill=\"#666\">\(Int(top))</text>"]
        let slot = (Self.width - Self.pad - 8) / Double(max(steps.count, 1))
        for index in steps.indices {
            let x = Self.pad + slot * Double(index)
            let h = (Self.height - 30) * totals[index] / top
            let hb = (Self.height - 30) * bads[index] / top
            svg.append("<rect x=\"\(x)\" y=\"\(Self.height - 20 - h)\" width=\"\(max(1, slot * 0.85))\" height=\"\(h)\" fill=\"\(Self.good)\"/>")
            if bads[index] > 0 {
                svg.append("<rect x=\"\(x)\" y=\"\(Self.height - 20 - max(hb, 2))\" width=\"\(max(1, slot * 0.85))\" height=\"\(max(hb, 2))\" fill=\"\(Self.bad)\"/>")
            }
        }
        if let first = steps.first?["from"] as? String, let last = steps.last?["from"] as? String {
            svg.append("<text x=\"\(Self.pad)\" y=\"\(Self.height - 5)\" font-size=\"10\" fill=\"#666\">\(Self.escape(first))</text>"
                + "<text x=\"\(Self.width - 150)\" y=\"\(Self.height - 5)\" font-size=\"10\" fill=\"#666\">\(Self.escape(last))</text>")
        }
        svg.append("</svg>")
        return svg.joined()
    }

    static func alertTable(_ slo: [String: Any]) -> String {
        var rows = ["<h3>Alert rules</h3><table><tr><th>severity</th><th>windows</th><th>threshold</th><th>long</th>"
                        + "<th>short</th><th>budget spent when it fires</th><th>state</th></tr>"]
        for alert in slo["alerts"] as? [[String: Any]] ?? [] {
            let firing = (alert["firing"] as? Bool) == true
            let state = firing ? "<span class=firing>firing</span>"
                : (alert["suppressed"] as? String).map { "held back: " + Self.escape($0) } ?? "<span class=ok>ok</span>"
            rows.append("<tr><td>\(Self.text(alert["severity"]))</td><td>\(Self.text(alert["long_window"])) and "
                + "\(Self.text(alert["short_window"]))</td><td>\(SLOReportText.rate(alert["burn_rate_threshold"]))</td>"
                + "<td>\(SLOReportText.rate(alert["long_rate"]))</td><td>\(SLOReportText.rate(alert["short_rate"]))</td>"
                + "<td>\(SLOReportText.percent(alert["budget_spent_when_firing"], digits: 1))</td><td>\(state)</td></tr>")
        }
        rows.append("</table><p class=how>A rule fires when both windows burn at its threshold or more, and the long "
            + "window holds at least the SLO's minimum of events (the SRE Workbook's multi-window, multi-burn-rate alerts).</p>")
        return rows.joined()
    }

    static func spenders(_ slo: [String: Any]) -> String {
        let spent = slo["budget_spent_by"] as? [String: Any] ?? [:]
        var parts = ["<h3>Who spent the budget</h3><div class=grid><div><table><tr><th>operation</th><th>bad</th><th>of</th></tr>"]
        for row in (spent["by_operation"] as? [[String: Any]] ?? []).prefix(15) {
            parts.append("<tr><td>\(Self.text(row["operation"]))</td><td>\(Self.text(row["bad"]))</td><td>\(Self.text(row["total"]))</td></tr>")
        }
        parts.append("</table></div><div>")
        if let regions = spent["by_region"] as? [[String: Any]] {
            parts.append("<table><tr><th>region</th><th>bad</th></tr>")
            for row in regions.prefix(15) {
                parts.append("<tr><td>\(Self.text(row["region"]))</td><td>\(Self.text(row["bad"]))</td></tr>")
            }
            parts.append("</table>")
        } else {
            parts.append("<p class=how>By region: \(Self.text(spent["by_region_unavailable"])).</p>")
        }
        parts.append("</div></div><p class=how>\(Self.text(spent["how"])).</p>")
        return parts.joined()
    }

    static func periods(_ slo: [String: Any]) -> String {
        let periods = slo["periods"] as? [String: Any] ?? [:]
        var rows = ["<h3>History: \(Self.text(periods["unit"]))</h3><table><tr><th>from</th><th>to</th><th>requests</th>"
                        + "<th>bad</th><th>budget spent</th><th>objective</th></tr>"]
        for period in periods["items"] as? [[String: Any]] ?? [] where (period["total"] as? Int ?? 0) > 0 {
            let met = (period["met"] as? Bool) == true
            rows.append("<tr><td>\(Self.text(period["from"]))</td><td>\(Self.text(period["to"]))"
                + ((period["current"] as? Bool) == true ? " (so far)" : "") + "</td><td>\(Self.text(period["total"]))</td>"
                + "<td>\(Self.text(period["bad"]))</td><td>\(SLOReportText.percent(period["budget_spent"], digits: 1))</td>"
                + "<td class=\(met ? "ok" : "firing")>\(met ? "met" : "missed")</td></tr>")
        }
        rows.append("</table><p class=how>\(Self.text(periods["how"])). Periods without traffic are left out.</p>")
        return rows.joined()
    }
}
