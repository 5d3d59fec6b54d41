import ArgumentParser
import TallySLO

/// `tally slo check FILE...`.
struct SLOCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slo", abstract: "Check SLO specs and report them (see docs/slo.md).",
        subcommands: [Check.self, SLOReportCommand.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate SLO spec files; every error names the file, the key and the bad value.",
            discussion: """
                Prints each SLO a file holds, with its objective, indicator, window and alert rules \
                (and the share of the budget each rule has spent when it fires), or the first \
                problem of each file. Exits non-zero when any file has one.
                """)

        @Argument(help: "One or more SLO spec files.")
        var files: [String]

        func run() throws {
            var failures = 0
            for file in self.files {
                do {
                    let specs = try SLOFile.load(path: file)
                    print("\(file): ok (\(specs.count) SLO\(specs.count == 1 ? "" : "s"))")
                    for spec in specs { print(Self.describe(spec)) }
                } catch {
                    print("\(error)")
                    failures += 1
                }
            }
            if failures > 0 { throw ExitCode.failure }
        }

        static func describe(_ spec: SLOSpec) -> String {
            let scope = spec.service + (spec.operations.map { " (\($0.sorted().joined(separator: ", ")))" } ?? "")
            var lines = ["  \(spec.name): \(spec.objective) \(spec.indicator) of \(scope), \(spec.window)"]
            if case .timeslices = spec.budgeting { lines.append("    budgeting: \(spec.budgeting)") }
            if let description = spec.description { lines.append("    \(description)") }
            // A calendar window's length varies (a month has 28 to 31 days): shares of 30 days.
            let window: Duration
            let of: String
            if case .rolling(let duration) = spec.window {
                (window, of) = (duration, "the budget")
            } else {
                (window, of) = (.seconds(30 * 86_400), "a 30-day budget")
            }
            for rule in spec.rules {
                let spent = (rule.budgetSpent(of: window) * 1_000).rounded() / 10
                lines.append("    \(rule.severity.rawValue) at \(rule.factor)x over \(rule.long.shortDescription) "
                    + "and \(rule.short.shortDescription) (\(spent)% of \(of) when it fires)"
                    + (rule.alertAfter > .zero ? ", after \(rule.alertAfter.shortDescription) of it" : "")
                    + (rule.notify.isEmpty ? "" : ", notify \(rule.notify.joined(separator: ", "))"))
            }
            lines.append("    no alert below \(spec.minimumEvents) events in a long window")
            return lines.joined(separator: "\n")
        }
    }
}
