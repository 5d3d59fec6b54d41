extension HyperLogLog: VersionedEncoding {
    public static let encodingTag = EncodingTag.hyperLogLog
    public static let encodingVersion: UInt8 = 1
    public static let encodingName = "HyperLogLog"

    /// Body (version 1):
    /// ```
    /// precision: u8   form: u8 (0 sparse, 1 dense)
    /// sparse: entries: varint, stream bytes: varint, then a bit stream (LSB first, zero-padded to a
    ///         byte, no spare byte): per entry in
    ///         index order, the gap to the previous index minus one as a Golomb-Rice code with
    ///         k = max(0, p - bitWidth(entries)), then rank - 1 in unary.
    /// dense:  2^p registers of 6 bits each, LSB first.
    /// ```
    /// Rice codes suit the gaps, which are close to geometric with mean 2^p / entries, and unary
    /// suits the ranks, which are geometric with ratio 1/2: about one byte per distinct value.
    public func encode(to writer: inout ByteWriter) {
        writer.writeUInt8(UInt8(self.precision))
        if self.dense.isEmpty {
            writer.writeUInt8(0)
            if self.settled.isEmpty {
                writer.writeBytes(Self.riceCoded(self.sparse, precision: self.precision))
            } else {
                writer.writeBytes(self.settled)  // the same bytes, already coded
            }
        } else {
            writer.writeUInt8(1)
            // Four 6-bit registers to three bytes: the same bits as writing them one by one.
            var packed = [UInt8](repeating: 0, count: self.dense.count / 4 * 3)
            self.dense.withUnsafeBufferPointer { registers in
                for group in 0..<(registers.count / 4) {
                    let word = UInt32(registers[4 * group]) | UInt32(registers[4 * group + 1]) << 6
                        | UInt32(registers[4 * group + 2]) << 12 | UInt32(registers[4 * group + 3]) << 18
                    packed[3 * group] = UInt8(truncatingIfNeeded: word)
                    packed[3 * group + 1] = UInt8(truncatingIfNeeded: word >> 8)
                    packed[3 * group + 2] = UInt8(truncatingIfNeeded: word >> 16)
                }
            }
            writer.writeBytes(packed)
        }
    }

    static func riceParameter(precision: Int, entries: Int) -> Int {
        max(0, precision - (Int.bitWidth - entries.leadingZeroBitCount))
    }

    /// The sparse form's coded entries: count, stream length, Rice-coded stream.
    static func riceCoded(_ entries: [UInt32], precision: Int) -> [UInt8] {
        var writer = ByteWriter()
        writer.writeVarint(entries.count)
        let k = Self.riceParameter(precision: precision, entries: entries.count)
        var bits = BitWriter(capacity: entries.count + 8)
        var previous = -1
        for entry in entries {
            let index = Int(entry >> 6)
            bits.writeRice(UInt64(index - previous - 1), k: k)
            bits.writeUnary(Int(entry & 0x3F) - 1)
            previous = index
        }
        let stream = bits.finish()
        writer.writeVarint(stream.count)
        writer.writeBytes(stream)
        return writer.bytes
    }

    /// Reads what `riceCoded` wrote, checking every field.
    static func readRiceCoded(from reader: inout ByteReader, precision: Int) throws(DecodeError) -> [UInt32] {
        let registerCount = 1 << precision
        let rankMax = 64 - precision + 1
        let entries = try reader.readCount("HyperLogLog sparse entries", max: registerCount / 8)
        let k = Self.riceParameter(precision: precision, entries: entries)
        // Each entry takes at least two bits: the Rice code's terminator and the rank's.
        let byteCount = try reader.readCount("HyperLogLog sparse byte count", max: reader.remaining)
        guard byteCount * 8 >= entries * 2 else {
            throw .truncated(field: "HyperLogLog sparse bits", offset: reader.offset)
        }
        var bits = BitReader(try reader.readBytes("HyperLogLog sparse bits", count: byteCount),
                             field: "HyperLogLog sparse entries")
        var sparse: [UInt32] = []
        sparse.reserveCapacity(entries)
        var previous = -1
        for _ in 0..<entries {
            let gap = try bits.readRice(k: k, quotientMax: registerCount >> k)
            let index = previous + 1 + Int(gap)
            guard index < registerCount else {
                throw .invalidValue(field: "HyperLogLog sparse index", value: "\(index)")
            }
            let rank = try bits.readUnary(max: rankMax - 1) + 1
            sparse.append(UInt32(index) << 6 | UInt32(rank))
            previous = index
        }
        try bits.expectZeroPadding()
        return sparse
    }

    public init(from reader: inout ByteReader) throws(DecodeError) {
        let precision = Int(try reader.readUInt8("HyperLogLog precision"))
        guard Self.precisionRange.contains(precision) else {
            throw .invalidValue(field: "HyperLogLog precision", value: "\(precision)")
        }
        self.init(precision: precision)
        let registerCount = 1 << precision
        let rankMax = self.rankMax
        switch try reader.readUInt8("HyperLogLog form") {
        case 0:
            self.sparse = try Self.readRiceCoded(from: &reader, precision: precision)
        case 1:
            // 2^p registers with p >= 4: a whole number of 3-byte groups of four.
            let packed = try reader.readBytes("HyperLogLog registers", count: registerCount / 4 * 3)
            var dense = [UInt8](repeating: 0, count: registerCount)
            var nonZero = 0
            var largest: UInt32 = 0
            packed.withUnsafeBufferPointer { packed in
                for group in 0..<(registerCount / 4) {
                    let word = UInt32(packed[3 * group]) | UInt32(packed[3 * group + 1]) << 8
                        | UInt32(packed[3 * group + 2]) << 16
                    for lane in 0..<4 {
                        let rank = (word >> UInt32(6 * lane)) & 0x3F
                        largest = max(largest, rank)
                        nonZero += rank > 0 ? 1 : 0
                        dense[4 * group + lane] = UInt8(rank)
                    }
                }
            }
            guard largest <= UInt32(rankMax) else {
                throw .invalidValue(field: "HyperLogLog register", value: "\(largest) over \(rankMax)")
            }
            guard nonZero > self.sparseEntriesMax else {
                throw .nonCanonical(field: "HyperLogLog dense form with \(nonZero) non-zero registers")
            }
            self.dense = dense
        case let form:
            throw .invalidValue(field: "HyperLogLog form", value: "\(form)")
        }
    }
}
