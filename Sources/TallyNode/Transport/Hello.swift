import TallyAggregates
import TallyNodeCore

/// The first frame each side sends: who it is and which protocol versions it speaks.
///
/// ```
/// magic "TALY"   protocolMin varint   protocolMax varint   node string   region string   incarnation varint
/// ```
/// Both sides then use the highest version both speak (`Hello.agree`), so during a rolling
/// upgrade a new release keeps talking to an old one at the old one's version, and two releases
/// with no version in common refuse each other with a message naming both ranges.
/// The identity it claims is checked against the peer's certificate and the config, not trusted.
public struct Hello: Equatable, Sendable {
    public var protocols: ClosedRange<UInt16>
    public var node: String
    public var region: String
    public var incarnation: UInt64

    static let magic: [UInt8] = Array("TALY".utf8)

    /// The protocol versions this build speaks (`NodeCore.protocols`, where what each one carries
    /// is listed). A node sends `read` frames only on connections that agreed on 2 or later, so a
    /// peer still on 1 is named as not answering; replication messages go at the wire version the
    /// connection's protocol carries, so a peer still on 2 is sent wire version 1.
    public static let supportedProtocols: ClosedRange<UInt16> = NodeCore.protocols

    public init(protocols: ClosedRange<UInt16> = Self.supportedProtocols, node: String, region: String,
                incarnation: UInt64)
    {
        self.protocols = protocols
        self.node = node
        self.region = region
        self.incarnation = incarnation
    }

    func encode(to writer: inout ByteWriter) {
        writer.writeBytes(Self.magic)
        writer.writeVarint(UInt64(self.protocols.lowerBound))
        writer.writeVarint(UInt64(self.protocols.upperBound))
        writer.writeString(self.node)
        writer.writeString(self.region)
        writer.writeVarint(self.incarnation)
    }

    init(from reader: inout ByteReader) throws(DecodeError) {
        guard Array(try reader.readBytes("hello magic", count: 4)) == Self.magic else {
            throw .invalidValue(field: "hello magic", value: "not TALY: the peer is not a Tally node")
        }
        let low = try reader.readCount("hello protocolMin", max: Int(UInt16.max))
        let high = try reader.readCount("hello protocolMax", max: Int(UInt16.max))
        guard low >= 1, low <= high else {
            throw .invalidValue(field: "hello protocol range", value: "\(low)...\(high)")
        }
        self.protocols = UInt16(low)...UInt16(high)
        self.node = try reader.readString("hello node")
        self.region = try reader.readString("hello region")
        guard !self.node.isEmpty, !self.region.isEmpty else {
            throw .invalidValue(field: "hello identity", value: "empty node or region")
        }
        self.incarnation = try reader.readVarint("hello incarnation")
    }

    /// The highest protocol version both sides speak.
    public static func agree(mine: ClosedRange<UInt16>, theirs: ClosedRange<UInt16>) throws(HandshakeError) -> UInt16 {
        let common = mine.clamped(to: theirs)
        guard mine.overlaps(theirs), !common.isEmpty else {
            throw .noCommonProtocol(mine: mine, theirs: theirs)
        }
        return common.upperBound
    }
}

public enum HandshakeError: Error, Equatable, Sendable, CustomStringConvertible {
    case noCommonProtocol(mine: ClosedRange<UInt16>, theirs: ClosedRange<UInt16>)
    /// The first frame was not a hello, or a second hello arrived.
    case unexpectedFrame(String)

    public var description: String {
        switch self {
        case .noCommonProtocol(let mine, let theirs):
            "no protocol version in common: this node speaks \(mine.lowerBound)...\(mine.upperBound), "
                + "the peer \(theirs.lowerBound)...\(theirs.upperBound); upgrade one of them"
        case .unexpectedFrame(let what): "handshake: \(what)"
        }
    }
}
