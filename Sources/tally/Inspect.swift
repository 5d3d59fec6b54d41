import ArgumentParser
import Foundation
import TallyAggregates

/// `tally inspect`: decodes one encoded aggregate (a stored blob, a captured delta) and describes it.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode an encoded aggregate and print what it holds.",
        discussion: """
            Reads the canonical binary encoding of a GCounter, LatencySketch, HyperLogLog or an \
            AggregateMap with string keys, from a file, from standard input (-), or as hex. \
            Exits non-zero, naming the field, when the bytes are not a valid encoding.
            """)

    @Argument(help: "File holding the encoded bytes, or - for standard input.")
    var path: String?

    @Option(help: "The encoding as hexadecimal text instead of a file.")
    var hex: String?

    func validate() throws {
        if (self.path == nil) == (self.hex == nil) {
            throw ValidationError("give either a file path (or -) or --hex, not both")
        }
    }

    func run() throws {
        let bytes = try self.readBytes()
        guard let tag = bytes.first else { throw ValidationError("the input is empty") }
        do {
            switch tag {
            case EncodingTag.gCounter:
                print(Self.describe(try GCounter(encoded: bytes)))
            case EncodingTag.latencySketch:
                print(Self.describe(try LatencySketch(encoded: bytes)))
            case EncodingTag.hyperLogLog:
                print(Self.describe(try HyperLogLog(encoded: bytes)))
            case EncodingTag.aggregateMap:
                try self.describeMap(bytes)
            default:
                throw CommandFailure(message: "unknown type tag \(tag): not a Tally aggregate encoding")
            }
        } catch let error as DecodeError {
            throw CommandFailure(message: "invalid encoding: \(error)")
        }
    }

    private func readBytes() throws -> [UInt8] {
        if let hex = self.hex {
            let digits = hex.filter { !$0.isWhitespace }
            guard digits.count % 2 == 0 else { throw ValidationError("--hex has an odd number of digits") }
            var bytes: [UInt8] = []
            var index = digits.startIndex
            while index < digits.endIndex {
                let next = digits.index(index, offsetBy: 2)
                guard let byte = UInt8(digits[index..<next], radix: 16) else {
                    throw ValidationError("--hex has a non-hex pair '\(digits[index..<next])'")
                }
                bytes.append(byte)
                index = next
            }
            return bytes
        }
        let path = self.path ?? "-"
        let data: Data
        if path == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let contents = FileManager.default.contents(atPath: path) else {
                throw CommandFailure(message: "cannot read \(path)")
            }
            data = contents
        }
        return [UInt8](data)
    }

    private func describeMap(_ bytes: [UInt8]) throws {
        guard bytes.count >= 3 else { throw DecodeError.truncated(field: "AggregateMap value tag", offset: bytes.count) }
        switch bytes[2] {
        case EncodingTag.gCounter:
            let map = try AggregateMap<String, GCounter>(encoded: bytes)
            print("AggregateMap<String, GCounter>, \(map.count) entries")
            for (key, value) in map.sortedEntries { print("  \(key): \(Self.describe(value))") }
        case EncodingTag.latencySketch:
            let map = try AggregateMap<String, LatencySketch>(encoded: bytes)
            print("AggregateMap<String, LatencySketch>, \(map.count) entries")
            for (key, value) in map.sortedEntries { print("  \(key): \(Self.describe(value))") }
        case EncodingTag.hyperLogLog:
            let map = try AggregateMap<String, HyperLogLog>(encoded: bytes)
            print("AggregateMap<String, HyperLogLog>, \(map.count) entries")
            for (key, value) in map.sortedEntries { print("  \(key): \(Self.describe(value))") }
        case let tag:
            throw CommandFailure(message: "AggregateMap of unknown value tag \(tag)")
        }
    }

    static func describe(_ counter: GCounter) -> String {
        let origins = counter.originValues.map { "\($0.origin)=\($0.value)" }.joined(separator: " ")
        return "GCounter value \(counter.value) [\(origins)]"
    }

    static func describe(_ sketch: LatencySketch) -> String {
        guard let quantiles = sketch.quantiles([0.5, 0.9, 0.99, 0.999]), let minimum = sketch.minimum,
            let maximum = sketch.maximum
        else {
            return "LatencySketch (scale \(sketch.scale)), empty"
        }
        let named = zip(["p50", "p90", "p99", "p99.9"], quantiles).map { "\($0)=\($1)" }.joined(separator: " ")
        return "LatencySketch scale \(sketch.scale) (±\(Self.percent(sketch.relativeError))), count \(sketch.count), "
            + "sum \(sketch.sum), min \(minimum), max \(maximum), \(named), origins \(sketch.origins.count)"
    }

    static func describe(_ hll: HyperLogLog) -> String {
        let form = hll.isSparse ? "sparse" : "dense"
        return "HyperLogLog p=\(hll.precision) \(form), about \(Int(hll.cardinality.rounded())) distinct "
            + "(±\(Self.percent(hll.standardError)))"
    }

    static func percent(_ fraction: Double) -> String {
        "\(Double(Int(fraction * 10_000)) / 100)%"
    }
}
