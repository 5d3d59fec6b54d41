/// Checks on YAML text before a parser sees it (config files and SLO specs are input too).
package enum YAMLText {
    /// The line of the first YAML alias (`*name` where a node starts, outside quotes and comments),
    /// or nil. Yams hashes every mapping key while it composes (its duplicate-key check), so an
    /// alias bomb used as a key hangs inside the parser: it must be refused before parsing.
    package static func firstAlias(in text: String) -> Int? {
        var line = 1
        var quote: UInt8?
        var escaped = false
        var inComment = false
        var closedSingle = false
        var previous = UInt8(ascii: "\n")
        let nodeStarts: Set<UInt8> = [UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "["),
                                      UInt8(ascii: "{"), UInt8(ascii: ",")]
        for byte in text.utf8 {
            if byte == UInt8(ascii: "\n") {
                line += 1
                inComment = false
            }
            defer { previous = byte }
            if inComment { continue }
            if let open = quote {
                if open == UInt8(ascii: "\"") {
                    if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == open { quote = nil }
                } else if byte == open {
                    quote = nil
                    closedSingle = true
                    continue
                }
                continue
            }
            if closedSingle && byte == UInt8(ascii: "'") {
                quote = byte  // '' inside a single-quoted scalar is a quote, not its end
                closedSingle = false
                continue
            }
            closedSingle = false
            switch byte {
            case UInt8(ascii: "#") where nodeStarts.contains(previous):
                inComment = true
            case UInt8(ascii: "\""), UInt8(ascii: "'"):
                if nodeStarts.contains(previous) || previous == UInt8(ascii: ":") { quote = byte }
            case UInt8(ascii: "*") where nodeStarts.contains(previous):
                return line
            default:
                break
            }
        }
        return nil
    }
}

import Yams

extension YAMLText {
    /// Composes every document of `text` and returns the line of the first mapping key that is
    /// not a plain scalar (`? [a]: b`, `{[x]: y}`), or nil. Yams' `load` force-unwraps such a key
    /// into a String and traps: a spec posted to a node must never reach it. Throws what the YAML
    /// parser throws for text that is not YAML. At most `nodesMax` nodes are walked.
    package static func firstNonScalarKey(in text: String, nodesMax: Int = 1_000_000) throws -> Int? {
        var budget = nodesMax
        func walk(_ node: Yams.Node) -> Int?? {
            budget -= 1
            guard budget >= 0 else { return .some(nil) }
            switch node {
            case .scalar, .alias:
                return nil
            case .mapping(let mapping):
                for (key, value) in mapping {
                    guard case .scalar = key else { return .some(key.mark.map { $0.line } ?? 0) }
                    if let found = walk(value) { return found }
                }
                return nil
            case .sequence(let sequence):
                for item in sequence { if let found = walk(item) { return found } }
                return nil
            }
        }
        for document in try Yams.compose_all(yaml: text) {
            if let found = walk(document) { return found ?? 0 }
        }
        return nil
    }
}
