import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import TallyNode
import TallyReplica
import TallySLO

/// `tally slo report --spec FILE --node URL`: the node evaluates the spec file on its state
/// (`POST /v1/slo`), and the report shows it as text, JSON or markdown.
struct SLOReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report", abstract: "Report SLOs of a spec file, evaluated on a node's state.",
        usage: "tally slo report --spec FILE [--node URL] [--consistency global]\n"
            + "                 [--at TIME] [--format FORMAT] [--output FILE]",
        discussion: """
            Sends the spec file to the node, which evaluates every SLO in it on its region's state, \
            and prints the SLI, the error budget, the burn rate per window and each alert rule, \
            who spent the budget and the calendar history, each saying how it was computed (see \
            docs/slo.md). --format html writes one self-contained page with SVG charts.
            """)

    enum Consistency: String, ExpressibleByArgument, CaseIterable {
        case local, global
    }

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json, markdown, html
    }

    @Option(help: "The SLO spec file.")
    var spec: String

    @Option(help: "The node's base URL.")
    var node = "http://127.0.0.1:7070"

    @Option(help: "API key secret sent as Authorization: Bearer.")
    var key = "dev-key"

    @Option(help: ArgumentHelp("local: the node's state; global: joined with every region's recent buckets.",
                               valueName: "consistency"))
    var consistency: Consistency = .local

    @Option(help: "Evaluate as of this instant (RFC 3339), not now.")
    var at: String?

    @Option(help: "text, json, markdown or html.")
    var format: Format = .text

    @Option(help: "Write the report to this file instead of standard output.")
    var output: String?

    func run() async throws {
        // Checked here first: an error names the file, key and value without a round trip.
        do {
            _ = try SLOFile.load(path: self.spec)
        } catch {
            throw CommandFailure(message: "\(error)")
        }
        let text = try String(contentsOfFile: self.spec, encoding: .utf8)
        var parameters = ["consistency=\(self.consistency.rawValue)"]
        if let at = self.at {
            parameters.append("at=" + (at.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "-:."))) ?? at))
        }
        let url = self.node + "/v1/slo?" + parameters.joined(separator: "&")
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(self.key)")
        request.headers.add(name: "Content-Type", value: "application/yaml")
        request.body = .bytes(ByteBuffer(string: text))
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            body = try await response.body.collect(upTo: 64 << 20)
        } catch {
            throw CommandFailure(message: "\(self.node): no answer: \(error)")
        }
        guard response.status.code == 200 else {
            throw CommandFailure(message: "\(self.node): HTTP \(response.status.code): \(String(buffer: body))")
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any],
            let slos = object["slos"] as? [[String: Any]]
        else { throw CommandFailure(message: "\(self.node): the answer is not an SLO report") }
        var region = object["region"] as? String ?? "?"
        if let consistency = object["consistency"] as? String {
            region += ", \(consistency) consistency"
            if let regions = object["regions"] as? [String: Any], let missing = regions["missing"] as? [[String: Any]],
                !missing.isEmpty
            {
                region += "; not answering: " + missing.map { "\($0["region"] ?? "?") (\($0["reason"] ?? "?"))" }
                    .joined(separator: ", ")
            }
        }
        let report: String
        switch self.format {
        case .json: report = String(buffer: body)
        case .text: report = SLOReportText.text(slos, region: region)
        case .markdown: report = SLOReportText.markdown(slos, region: region)
        case .html:
            report = SLOReportHTML.html(slos, region: region, generatedAt: RFC3339.format(Node.wallClock()))
        }
        guard let output = self.output else {
            print(report)
            return
        }
        do {
            try report.write(toFile: output, atomically: true, encoding: .utf8)
        } catch {
            throw CommandFailure(message: "--output \(output): cannot write: \(error.localizedDescription)")
        }
    }
}

/// The report's text and markdown forms, from the node's JSON.
enum SLOReportText {
    static func percent(_ value: Any?, digits: Int = 3) -> String {
        guard let value = value as? Double else { return "-" }
        let scale = pow(10, Double(digits))
        return "\((value * 100 * scale).rounded() / scale)%"
    }

    static func rate(_ value: Any?) -> String {
        guard let value = value as? Double else { return "-" }
        let rounded = (value * 100).rounded() / 100
        if value >= 100 || rounded == rounded.rounded() { return "\(Int(value.rounded()))x" }
        return "\(rounded)x"
    }

    static func duration(seconds: Double) -> String {
        let total = Int(seconds)
        if total >= 86_400 { return "\(total / 86_400)d \(total % 86_400 / 3_600)h" }
        if total >= 3_600 { return "\(total / 3_600)h \(total % 3_600 / 60)m" }
        return "\(total / 60)m \(total % 60)s"
    }

    static let windows = ["5m", "30m", "1h", "6h", "1d", "3d"]

    /// True when the window held nothing to count: the node's JSON still gives an SLI of 1 (no
    /// budget spent), which a reader would take for "every request was good".
    static func hasNoEvents(_ sli: [String: Any]) -> Bool {
        (sli["total"] as? Int).map { $0 == 0 } ?? false
    }

    /// The SLI for a table cell: its percentage, or "no events".
    static func sliCell(_ sli: [String: Any]) -> String {
        Self.hasNoEvents(sli) ? "no events" : Self.percent(sli["value"])
    }

    static func text(_ slos: [[String: Any]], region: String) -> String {
        var lines: [String] = []
        for slo in slos {
            let sli = slo["sli"] as? [String: Any] ?? [:]
            let budget = slo["budget"] as? [String: Any] ?? [:]
            let rates = slo["burn_rates"] as? [String: [String: Any]] ?? [:]
            lines.append("\(slo["name"] ?? "?"): \(slo["objective"] ?? "?") \(slo["indicator"] ?? "") of \(slo["service"] ?? "?"), "
                + "\(slo["window"] ?? "") (region \(region), at \(slo["evaluated_at"] ?? "?"))")
            if Self.hasNoEvents(sli) {
                lines.append("  SLI: no events in the window, from \(slo["window_from"] ?? "?") (nothing spent)")
            } else {
                lines.append("  SLI \(Self.percent(sli["value"])): \(sli["good"] ?? 0) good of \(sli["total"] ?? 0), "
                    + "\(sli["bad"] ?? 0) bad, from \(slo["window_from"] ?? "?")")
            }
            if let bounds = sli["good_bounds"] as? [String: Any] {
                lines.append("    good between \(bounds["certain"] ?? 0) and \(bounds["possible"] ?? 0) (the sketch bucket of the "
                    + "threshold); the verdict uses \(bounds["certain"] ?? 0)")
            }
            lines.append("  budget: \(Self.percent(budget["spent"], digits: 1)) spent, \(Self.percent(budget["remaining"], digits: 1)) left "
                + "(\(String(format: "%.1f", budget["remaining_minutes"] as? Double ?? 0)) of "
                + "\(String(format: "%.1f", budget["total_minutes"] as? Double ?? 0)) minutes)"
                + ((budget["exhausted"] as? Bool) == true ? ", exhausted" : ""))
            lines.append("  burn rate: " + Self.windows.compactMap { window in
                rates[window].map { "\(window) \(Self.rate($0["rate"]))" }
            }.joined(separator: ", "))
            for alert in slo["alerts"] as? [[String: Any]] ?? [] {
                let state = (alert["firing"] as? Bool) == true ? "FIRING" : (alert["suppressed"] != nil ? "held back" : "ok")
                lines.append("  \(alert["severity"] ?? "?") at \(Self.rate(alert["burn_rate_threshold"])) over "
                    + "\(alert["long_window"] ?? "?") and \(alert["short_window"] ?? "?"): now \(Self.rate(alert["long_rate"])) "
                    + "and \(Self.rate(alert["short_rate"])): \(state)")
                if let suppressed = alert["suppressed"] as? String { lines.append("    \(suppressed)") }
            }
            if let seconds = slo["time_to_exhaustion_seconds"] as? Double {
                lines.append("  the budget left lasts \(Self.duration(seconds: seconds)) at the 1h burn rate")
            }
            lines.append("")
        }
        return lines.joined(separator: "\n")
    }

    static func markdown(_ slos: [[String: Any]], region: String) -> String {
        var lines = ["# SLO report (region \(region))", "",
                     "| SLO | objective | SLI | budget left | 1h burn | alerts firing |", "| --- | --- | --- | --- | --- | --- |"]
        for slo in slos {
            let sli = slo["sli"] as? [String: Any] ?? [:]
            let budget = slo["budget"] as? [String: Any] ?? [:]
            let rates = slo["burn_rates"] as? [String: [String: Any]] ?? [:]
            let firing = (slo["alerts"] as? [[String: Any]] ?? []).filter { ($0["firing"] as? Bool) == true }
                .map { "\($0["severity"] ?? "?") (\($0["long_window"] ?? "?"))" }
            lines.append("| \(slo["name"] ?? "?") | \(slo["objective"] ?? "?") | \(Self.sliCell(sli)) | "
                + "\(Self.percent(budget["remaining"], digits: 1)) | \(Self.rate(rates["1h"]?["rate"])) | "
                + "\(firing.isEmpty ? "none" : firing.joined(separator: ", ")) |")
        }
        lines.append("")
        for slo in slos {
            lines.append("## \(slo["name"] ?? "?")")
            lines.append("")
            lines.append("```")
            lines.append(Self.text([slo], region: region).trimmingCharacters(in: .newlines))
            lines.append("```")
            lines.append("")
        }
        return lines.joined(separator: "\n")
    }
}
