import Foundation
import Logging
import TallyAggregates
import TallyReplica

/// A swift-log handler writing one JSON object per line to standard error, for log pipelines that
/// parse their input (`tally serve --log-format json`): `time` (RFC 3339, UTC, milliseconds),
/// `level`, `label`, `message`, `source`, and every metadata key (a request's `hb.request.id`
/// among them) as a string, nested metadata flattened to its description.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String
    private let write: @Sendable (String) -> Void

    public init(label: String, write: @escaping @Sendable (String) -> Void = JSONLogHandler.standardError) {
        self.label = label
        self.write = write
    }

    public static let standardError: @Sendable (String) -> Void = { line in
        FileHandle.standardError.write(Data(line.utf8))
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
                    file: String, function: String, line: UInt)
    {
        var fields: [String: String] = [:]
        for (key, value) in self.metadata { fields[key] = "\(value)" }
        for (key, value) in metadata ?? [:] { fields[key] = "\(value)" }
        fields["time"] = Self.time(Date())
        fields["level"] = level.rawValue
        fields["label"] = self.label
        fields["message"] = "\(message)"
        fields["source"] = source
        // Sorted keys: lines that compare equal when their content does, and stable in tests.
        guard let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes]),
              let line = String(data: data, encoding: .utf8)
        else { return }
        self.write(line + "\n")
    }

    static func time(_ date: Date) -> String {
        let millis = Int64((date.timeIntervalSince1970 * 1_000).rounded(.down))
        return RFC3339.format(Timestamp(millisecondsSinceEpoch: millis))
    }
}
