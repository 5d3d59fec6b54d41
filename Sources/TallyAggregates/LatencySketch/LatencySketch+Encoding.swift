extension LatencySketch: VersionedEncoding {
    public static let encodingTag = EncodingTag.latencySketch
    public static let encodingVersion: UInt8 = 1
    public static let encodingName = "LatencySketch"

    /// Body (version 1):
    /// ```
    /// scale: zigzag   bucketsMax: varint   origins: varint
    /// per origin, strictly increasing:
    ///   origin: u64 LE
    ///   floor: 0 | 1 zigzag(floorIndex)
    ///   zeroCount: varint   sum, min, max: f64 LE
    ///   offset: zigzag   bucketCount: varint   counts: varint × bucketCount (first and last non-zero)
    /// ```
    public func encode(to writer: inout ByteWriter) {
        writer.writeZigZag(Int64(self.scale))
        writer.writeVarint(self.bucketsMax)
        writer.writeVarint(self.histograms.count)
        for histogram in self.histograms {
            writer.writeUInt64LE(histogram.origin.rawValue)
            if histogram.hasFloor {
                writer.writeUInt8(1)
                writer.writeZigZag(Int64(histogram.floorIndex))
            } else {
                writer.writeUInt8(0)
            }
            writer.writeVarint(histogram.zeroCount)
            writer.writeDouble(histogram.sum)
            writer.writeDouble(histogram.minimum)
            writer.writeDouble(histogram.maximum)
            writer.writeZigZag(Int64(histogram.offset))
            writer.writeVarint(histogram.counts.count)
            if let bytes = histogram.counts.asSingleByteVarints {
                writer.writeBytes(bytes)  // every count below 128: the same bytes as varint by varint
            } else {
                for count in histogram.counts { writer.writeVarint(count) }
            }
        }
    }

    public init(from reader: inout ByteReader) throws(DecodeError) {
        let rawScale = try reader.readZigZag("LatencySketch scale")
        let scaleRange = ExponentialBuckets.scaleMin...ExponentialBuckets.scaleMax
        guard rawScale >= Int64(scaleRange.lowerBound), rawScale <= Int64(scaleRange.upperBound) else {
            throw .invalidValue(field: "LatencySketch scale", value: "\(rawScale)")
        }
        let scale = Int(rawScale)
        let bucketsMax = try reader.readCount("LatencySketch bucketsMax", max: Self.bucketsMaxRange.upperBound)
        guard bucketsMax >= Self.bucketsMaxRange.lowerBound else {
            throw .invalidValue(field: "LatencySketch bucketsMax", value: "\(bucketsMax)")
        }
        let indexRange = ExponentialBuckets.indexRange(scale: scale)
        let originCount = try reader.readCount("LatencySketch origin count", max: reader.limits.originsMax)
        var histograms: [OriginHistogram] = []
        for _ in 0..<originCount {
            let origin = ReplicaID(try reader.readUInt64LE("LatencySketch origin"))
            if let last = histograms.last, last.origin >= origin {
                throw .nonCanonical(field: "LatencySketch origins (not strictly increasing)")
            }
            var histogram = OriginHistogram(origin: origin)
            switch try reader.readUInt8("LatencySketch floor flag") {
            case 0:
                break
            case 1:
                let floor = try reader.readZigZag("LatencySketch floor")
                guard floor >= Int64(indexRange.lowerBound), floor <= Int64(indexRange.upperBound) else {
                    throw .invalidValue(field: "LatencySketch floor", value: "\(floor)")
                }
                histogram.floorIndex = Int32(floor)
            case let flag:
                throw .invalidValue(field: "LatencySketch floor flag", value: "\(flag)")
            }
            histogram.zeroCount = try reader.readVarint("LatencySketch zero count")
            histogram.sum = try reader.readDouble("LatencySketch sum")
            histogram.minimum = try reader.readDouble("LatencySketch min")
            histogram.maximum = try reader.readDouble("LatencySketch max")
            guard histogram.sum.isFinite, histogram.sum >= 0 else {
                throw .invalidValue(field: "LatencySketch sum", value: "\(histogram.sum)")
            }
            guard histogram.minimum.isFinite, histogram.maximum.isFinite, histogram.minimum >= 0,
                histogram.minimum <= histogram.maximum
            else {
                throw .invalidValue(
                    field: "LatencySketch min/max", value: "\(histogram.minimum)/\(histogram.maximum)")
            }
            let offset = try reader.readZigZag("LatencySketch offset")
            let bucketCount = try reader.readCount(
                "LatencySketch bucket count", max: min(bucketsMax, reader.limits.bucketsMax))
            if bucketCount > 0 {
                let top = offset + Int64(bucketCount) - 1
                guard offset >= Int64(indexRange.lowerBound), top <= Int64(indexRange.upperBound) else {
                    throw .invalidValue(field: "LatencySketch bucket range", value: "\(offset)...\(top)")
                }
                if histogram.hasFloor && offset < Int64(histogram.floorIndex) {
                    throw .nonCanonical(field: "LatencySketch buckets (below the floor)")
                }
                histogram.offset = Int32(offset)
                // Both paths sum the counts with an overflow check; the checks after are shared.
                var total = histogram.zeroCount
                func add(_ count: UInt64) throws(DecodeError) {
                    let (sum, overflow) = total.addingReportingOverflow(count)
                    guard !overflow else { throw .invalidValue(field: "LatencySketch count", value: "overflow") }
                    total = sum
                }
                let counts: PackedCounts
                if reader.remaining >= bucketCount,
                    PackedCounts.allBelow128(reader.bytes[reader.offset..<(reader.offset + bucketCount)])
                {
                    // Every count below 128 (most buckets of a gossip round's part): the varints are
                    // the counts, one byte each, taken as they are.
                    let bytes = try reader.readBytes("LatencySketch bucket", count: bucketCount)
                    for byte in bytes { try add(UInt64(byte)) }
                    counts = PackedCounts(bytes: Array(bytes))
                } else {
                    var values: [UInt64] = []
                    values.reserveCapacity(min(bucketCount, reader.remaining))
                    for _ in 0..<bucketCount {
                        let count = try reader.readVarint("LatencySketch bucket")
                        try add(count)
                        values.append(count)
                    }
                    counts = PackedCounts(values)
                }
                guard counts.first != 0, counts.last != 0 else {
                    throw .nonCanonical(field: "LatencySketch buckets (zero at an end)")
                }
                guard total <= DecodeLimits.countMax else {
                    throw .invalidValue(field: "LatencySketch count", value: "\(total) is over 2^48")
                }
                histogram.counts = counts
            } else {
                guard histogram.zeroCount <= DecodeLimits.countMax else {
                    throw .invalidValue(field: "LatencySketch zero count", value: "\(histogram.zeroCount) is over 2^48")
                }
                guard offset == 0 else { throw .nonCanonical(field: "LatencySketch offset of no buckets") }
            }
            guard !histogram.isEmpty else {
                throw .nonCanonical(field: "LatencySketch origin with no values")
            }
            histograms.append(histogram)
        }
        self.init(scale: scale, bucketsMax: bucketsMax)
        self.histograms = histograms
    }
}
