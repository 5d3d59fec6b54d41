/// Appends the primitives of Tally's binary encodings to a byte array.
///
/// Integers are LEB128 varints (zig-zag for signed ones) or fixed little-endian; doubles are their
/// IEEE 754 bit pattern, little-endian. Every encoding is canonical: a value has exactly one.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        self.bytes = []
        self.bytes.reserveCapacity(capacity)
    }

    public mutating func writeUInt8(_ value: UInt8) {
        self.bytes.append(value)
    }

    public mutating func writeVarint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            self.bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        self.bytes.append(UInt8(value))
    }

    public mutating func writeVarint(_ value: Int) {
        precondition(value >= 0, "unsigned varint of negative \(value): callers encode counts and sizes")
        self.writeVarint(UInt64(value))
    }

    public mutating func writeZigZag(_ value: Int64) {
        self.writeVarint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    public mutating func writeUInt64LE(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { self.bytes.append(contentsOf: $0) }
    }

    public mutating func writeDouble(_ value: Double) {
        self.writeUInt64LE(value.bitPattern)
    }

    public mutating func writeBytes(_ value: some Collection<UInt8>) {
        self.bytes.append(contentsOf: value)
    }

    /// A length-prefixed UTF-8 string.
    public mutating func writeString(_ value: String) {
        self.writeVarint(value.utf8.count)
        self.bytes.append(contentsOf: value.utf8)
    }
}
