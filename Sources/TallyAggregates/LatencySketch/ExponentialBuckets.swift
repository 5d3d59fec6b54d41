/// The bucket layout of OpenTelemetry exponential histograms
/// (opentelemetry-specification, data-model.md, "ExponentialHistogram").
///
/// At scale `s` the base is `γ = 2^(2^-s)` and bucket `i` holds the values in `(γ^i, γ^(i+1)]`
/// (upper bound inclusive). Scale 6 gives `γ ≈ 1.010889` and so a relative error of at most
/// `(γ - 1) / (γ + 1) ≈ 0.54%` when a bucket is reported by `representative(of:)`.
///
/// Mapping a value to its index uses no logarithm: the index at the finest supported scale (8) is
/// the binary exponent times 256 plus the sub-bucket of the mantissa, which a 512-entry table of
/// mantissa chunks finds with one comparison (each chunk holds at most one sub-bucket boundary,
/// because boundaries are at least `2^(1/256) - 1 > 1/512` apart). Coarser scales shift that index
/// right, which is exactly OpenTelemetry's downscaling rule. This is the technique of
/// Otmar Ertl's DynaHist `OpenTelemetryExponentialBucketsLayout`, written afresh.
public enum ExponentialBuckets {
    /// The finest scale the index tables support.
    public static var scaleMax: Int { 8 }
    /// The coarsest scale: at -10 one bucket spans a factor of 2^1024, all doubles in a few buckets.
    public static var scaleMin: Int { -10 }

    /// Smallest positive value that gets a bucket; smaller values (subnormals) count as zero.
    public static var valueMin: Double { Double.leastNormalMagnitude }

    /// The index of the bucket holding `value` at `scale`.
    ///
    /// - Precondition: `value` is finite and at least `valueMin`; `scale` is in `scaleMin...scaleMax`.
    public static func index(of value: Double, scale: Int) -> Int32 {
        precondition(value >= Self.valueMin && value.isFinite, "no bucket for \(value)")
        return Self.index(ofPositiveNormalBits: value.bitPattern, scale: scale)
    }

    /// `index(of:scale:)` on the bit pattern of a positive, normal, finite double.
    ///
    /// Buckets are upper-inclusive, `(γ^i, γ^(i+1)]`; the lookup below finds lower-inclusive ones,
    /// `[γ^i, γ^(i+1))`, so it is applied to the next double below the value (`bits - 1`): the two
    /// agree everywhere, exact powers of two included, with no special case. For the smallest
    /// normal double, `bits - 1` is the largest subnormal, whose exponent field 0 still reads as
    /// 2^-1023 with an all-ones mantissa: the right answer again.
    @inline(__always)
    static func index(ofPositiveNormalBits bits: UInt64, scale: Int) -> Int32 {
        let below = bits &- 1
        let exponent = Int(below >> 52) &- 1023
        let finest = (exponent << 8) &+ Self.subBucket(of: below & 0x000F_FFFF_FFFF_FFFF)
        // scale <= scaleMax, so the shift is 0...18: a plain arithmetic shift.
        return Int32(truncatingIfNeeded: finest &>> (Self.scaleMax &- scale))
    }

    /// The sub-bucket (0...255) of a mantissa at scale 8: the largest k with `2^(k/256) <= 1.mantissa`.
    ///
    /// Not inlinable: the tables are statically initialized globals, which code in this module
    /// reads directly but code inlined into another module would read through a lazy-initialization
    /// check on every call.
    @inline(__always)
    static func subBucket(of mantissa: UInt64) -> Int {
        // mantissa < 2^52, so mantissa >> 43 < 512, and sub + 1 <= 256: both reads are in bounds.
        Self.subBucketOfChunk.withUnsafeBufferPointer { chunks in
            Self.boundaryMantissas.withUnsafeBufferPointer { boundaries in
                let sub = Int(chunks[Int(mantissa >> 43)])
                return mantissa >= boundaries[sub &+ 1] ? sub &+ 1 : sub
            }
        }
    }

    /// The sub-bucket of the start of each of the 512 mantissa chunks of width 2^43. A chunk is
    /// narrower than the gap between two boundaries, so it holds at most one: one comparison.
    ///
    /// The tables are literals rather than computed at start-up, so that no replica's bucketing
    /// depends on its platform's `exp2`; `LatencySketchTests` recomputes every boundary.
    static let subBucketOfChunk: [UInt8] = [
        0, 0, 1, 2, 2, 3, 4, 5, 5, 6, 7, 7, 8, 9, 9, 10,
        11, 12, 12, 13, 14, 14, 15, 16, 16, 17, 18, 18, 19, 20, 21, 21,
        22, 23, 23, 24, 25, 25, 26, 27, 27, 28, 29, 29, 30, 31, 31, 32,
        33, 33, 34, 35, 35, 36, 37, 37, 38, 38, 39, 40, 40, 41, 42, 42,
        43, 44, 44, 45, 46, 46, 47, 47, 48, 49, 49, 50, 51, 51, 52, 52,
        53, 54, 54, 55, 56, 56, 57, 57, 58, 59, 59, 60, 61, 61, 62, 62,
        63, 64, 64, 65, 65, 66, 67, 67, 68, 68, 69, 70, 70, 71, 71, 72,
        73, 73, 74, 74, 75, 76, 76, 77, 77, 78, 78, 79, 80, 80, 81, 81,
        82, 82, 83, 84, 84, 85, 85, 86, 87, 87, 88, 88, 89, 89, 90, 90,
        91, 92, 92, 93, 93, 94, 94, 95, 96, 96, 97, 97, 98, 98, 99, 99,
        100, 100, 101, 102, 102, 103, 103, 104, 104, 105, 105, 106, 106, 107, 108, 108,
        109, 109, 110, 110, 111, 111, 112, 112, 113, 113, 114, 114, 115, 116, 116, 117,
        117, 118, 118, 119, 119, 120, 120, 121, 121, 122, 122, 123, 123, 124, 124, 125,
        125, 126, 126, 127, 127, 128, 128, 129, 129, 130, 131, 131, 132, 132, 133, 133,
        134, 134, 135, 135, 136, 136, 137, 137, 138, 138, 139, 139, 140, 140, 140, 141,
        141, 142, 142, 143, 143, 144, 144, 145, 145, 146, 146, 147, 147, 148, 148, 149,
        149, 150, 150, 151, 151, 152, 152, 153, 153, 154, 154, 155, 155, 155, 156, 156,
        157, 157, 158, 158, 159, 159, 160, 160, 161, 161, 162, 162, 162, 163, 163, 164,
        164, 165, 165, 166, 166, 167, 167, 168, 168, 168, 169, 169, 170, 170, 171, 171,
        172, 172, 173, 173, 173, 174, 174, 175, 175, 176, 176, 177, 177, 177, 178, 178,
        179, 179, 180, 180, 181, 181, 181, 182, 182, 183, 183, 184, 184, 185, 185, 185,
        186, 186, 187, 187, 188, 188, 188, 189, 189, 190, 190, 191, 191, 191, 192, 192,
        193, 193, 194, 194, 194, 195, 195, 196, 196, 197, 197, 197, 198, 198, 199, 199,
        200, 200, 200, 201, 201, 202, 202, 202, 203, 203, 204, 204, 205, 205, 205, 206,
        206, 207, 207, 207, 208, 208, 209, 209, 209, 210, 210, 211, 211, 212, 212, 212,
        213, 213, 214, 214, 214, 215, 215, 216, 216, 216, 217, 217, 218, 218, 218, 219,
        219, 220, 220, 220, 221, 221, 222, 222, 222, 223, 223, 223, 224, 224, 225, 225,
        225, 226, 226, 227, 227, 227, 228, 228, 229, 229, 229, 230, 230, 231, 231, 231,
        232, 232, 232, 233, 233, 234, 234, 234, 235, 235, 235, 236, 236, 237, 237, 237,
        238, 238, 239, 239, 239, 240, 240, 240, 241, 241, 242, 242, 242, 243, 243, 243,
        244, 244, 245, 245, 245, 246, 246, 246, 247, 247, 247, 248, 248, 249, 249, 249,
        250, 250, 250, 251, 251, 252, 252, 252, 253, 253, 253, 254, 254, 254, 255, 255,
    ]

    /// The 52 mantissa bits of 2^(k/256) for k in 0..<256, and a sentinel no mantissa reaches.
    static let boundaryMantissas: [UInt64] = [
        0x0000000000000, 0x00B1AFA5ABCBF, 0x0163DA9FB3335, 0x02168143B0281,
        0x02C9A3E778061, 0x037D42E11BBCC, 0x04315E86E7F85, 0x04E5F72F654B1,
        0x059B0D3158574, 0x0650A0E3C1F89, 0x0706B29DDF6DE, 0x07BD42B72A836,
        0x0874518759BC8, 0x092BDF66607E0, 0x09E3ECAC6F383, 0x0A9C79B1F3919,
        0x0B5586CF9890F, 0x0C0F145E46C85, 0x0CC922B7247F7, 0x0D83B23395DEC,
        0x0E3EC32D3D1A2, 0x0EFA55FDFA9C5, 0x0FB66AFFED31B, 0x1073028D7233E,
        0x11301D0125B51, 0x11EDBAB5E2AB6, 0x12ABDC06C31CC, 0x136A814F204AB,
        0x1429AAEA92DE0, 0x14E95934F312E, 0x15A98C8A58E51, 0x166A45471C3C2,
        0x172B83C7D517B, 0x17ED48695BBC0, 0x18AF9388C8DEA, 0x1972658375D2F,
        0x1A35BEB6FCB75, 0x1AF99F8138A1C, 0x1BBE084045CD4, 0x1C82F95281C6B,
        0x1D4873168B9AA, 0x1E0E75EB44027, 0x1ED5022FCD91D, 0x1F9C18438CE4D,
        0x2063B88628CD6, 0x212BE3578A819, 0x21F49917DDC96, 0x22BDDA27912D1,
        0x2387A6E756238, 0x2451FFB82140A, 0x251CE4FB2A63F, 0x25E85711ECE75,
        0x26B4565E27CDD, 0x2780E341DDF29, 0x284DFE1F56381, 0x291BA7591BB70,
        0x29E9DF51FDEE1, 0x2AB8A66D10F13, 0x2B87FD0DAD990, 0x2C57E39771B2F,
        0x2D285A6E4030B, 0x2DF961F641589, 0x2ECAFA93E2F56, 0x2F9D24ABD886B,
        0x306FE0A31B715, 0x31432EDEEB2FD, 0x32170FC4CD831, 0x32EB83BA8EA32,
        0x33C08B26416FF, 0x3496266E3FA2D, 0x356C55F929FF1, 0x36431A2DE883B,
        0x371A7373AA9CB, 0x37F26231E754A, 0x38CAE6D05D866, 0x39A401B7140EF,
        0x3A7DB34E59FF7, 0x3B57FBFEC6CF4, 0x3C32DC313A8E5, 0x3D0E544EDE173,
        0x3DEA64C123422, 0x3EC70DF1C5175, 0x3FA4504AC801C, 0x40822C367A024,
        0x4160A21F72E2A, 0x423FB2709468A, 0x431F5D950A897, 0x43FFA3F84B9D4,
        0x44E086061892D, 0x45C2042A7D232, 0x46A41ED1D0057, 0x4786D668B3237,
        0x486A2B5C13CD0, 0x494E1E192AED2, 0x4A32AF0D7D3DE, 0x4B17DEA6DB7D7,
        0x4BFDAD5362A27, 0x4CE41B817C114, 0x4DCB299FDDD0D, 0x4EB2D81D8ABFF,
        0x4F9B2769D2CA7, 0x508417F4531EE, 0x516DAA2CF6642, 0x5257DE83F4EEF,
        0x5342B569D4F82, 0x542E2F4F6AD27, 0x551A4CA5D920F, 0x56070DDE910D2,
        0x56F4736B527DA, 0x57E27DBE2C4CF, 0x58D12D497C7FD, 0x59C0827FF07CC,
        0x5AB07DD485429, 0x5BA11FBA87A03, 0x5C9268A5946B7, 0x5D84590998B93,
        0x5E76F15AD2148, 0x5F6A320DCEB71, 0x605E1B976DC09, 0x6152AE6CDF6F4,
        0x6247EB03A5585, 0x633DD1D1929FD, 0x6434634CCC320, 0x652B9FEBC8FB7,
        0x6623882552225, 0x671C1C70833F6, 0x68155D44CA973, 0x690F4B19E9538,
        0x6A09E667F3BCD, 0x6B052FA75173E, 0x6C012750BDABF, 0x6CFDCDDD47645,
        0x6DFB23C651A2F, 0x6EF9298593AE5, 0x6FF7DF9519484, 0x70F7466F42E87,
        0x71F75E8EC5F74, 0x72F8286EAD08A, 0x73F9A48A58174, 0x74FBD35D7CBFD,
        0x75FEB564267C9, 0x77024B1AB6E09, 0x780694FDE5D3F, 0x790B938AC1CF6,
        0x7A11473EB0187, 0x7B17B0976CFDB, 0x7C1ED0130C132, 0x7D26A62FF86F0,
        0x7E2F336CF4E62, 0x7F3878491C491, 0x80427543E1A12, 0x814D2ADD106D9,
        0x82589994CCE13, 0x8364C1EB941F7, 0x8471A4623C7AD, 0x857F4179F5B21,
        0x868D99B4492ED, 0x879CAD931A436, 0x88AC7D98A6699, 0x89BD0A478580F,
        0x8ACE5422AA0DB, 0x8BE05BAD61778, 0x8CF3216B5448C, 0x8E06A5E0866D9,
        0x8F1AE99157736, 0x902FED0282C8A, 0x9145B0B91FFC6, 0x925C353AA2FE2,
        0x93737B0CDC5E5, 0x948B82B5F98E5, 0x95A44CBC8520F, 0x96BDD9A7670B3,
        0x97D829FDE4E50, 0x98F33E47A22A2, 0x9A0F170CA07BA, 0x9B2BB4D53FE0D,
        0x9C49182A3F090, 0x9D674194BB8D5, 0x9E86319E32323, 0x9FA5E8D07F29E,
        0xA0C667B5DE565, 0xA1E7AED8EB8BB, 0xA309BEC4A2D33, 0xA42C980460AD8,
        0xA5503B23E255D, 0xA674A8AF46052, 0xA799E1330B358, 0xA8BFE53C12E59,
        0xA9E6B5579FDBF, 0xAB0E521356EBA, 0xAC36BBFD3F37A, 0xAD5FF3A3C2774,
        0xAE89F995AD3AD, 0xAFB4CE622F2FF, 0xB0E07298DB666, 0xB20CE6C9A8952,
        0xB33A2B84F15FB, 0xB468415B749B1, 0xB59728DE5593A, 0xB6C6E29F1C52A,
        0xB7F76F2FB5E47, 0xB928CF22749E4, 0xBA5B030A1064A, 0xBB8E0B79A6F1F,
        0xBCC1E904BC1D2, 0xBDF69C3F3A207, 0xBF2C25BD71E09, 0xC06286141B33D,
        0xC199BDD85529C, 0xC2D1CD9FA652C, 0xC40AB5FFFD07A, 0xC544778FAFB22,
        0xC67F12E57D14B, 0xC7BA88988C933, 0xC8F6D9406E7B5, 0xCA3405751C4DB,
        0xCB720DCEF9069, 0xCCB0F2E6D1675, 0xCDF0B555DC3FA, 0xCF3155B5BAB74,
        0xD072D4A07897C, 0xD1B532B08C968, 0xD2F87080D89F2, 0xD43C8EACAA1D6,
        0xD5818DCFBA487, 0xD6C76E862E6D3, 0xD80E316C98398, 0xD955D71FF6075,
        0xDA9E603DB3285, 0xDBE7CD63A8315, 0xDD321F301B460, 0xDE7D5641C0658,
        0xDFC97337B9B5F, 0xE11676B197D17, 0xE264614F5A129, 0xE3B333B16EE12,
        0xE502EE78B3FF6, 0xE653924676D76, 0xE7A51FBC74C83, 0xE8F7977CDB740,
        0xEA4AFA2A490DA, 0xEB9F4867CCA6E, 0xECF482D8E67F1, 0xEE4AAA2188510,
        0xEFA1BEE615A27, 0xF0F9C1CB6412A, 0xF252B376BBA97, 0xF3AC948DD7274,
        0xF50765B6E4540, 0xF6632798844F8, 0xF7BFDAD9CBE14, 0xF91D802243C89,
        0xFA7C1819E90D8, 0xFBDBA3692D514, 0xFD3C22B8F71F1, 0xFE9D96B2A23D9,
        .max,
    ]

    /// The exclusive lower bound of bucket `index` at `scale`: `2^(index · 2^-scale)`.
    public static func lowerBound(of index: Int32, scale: Int) -> Double {
        Math.exp2(Double(index) * Math.exp2(Double(-scale)))
    }

    /// The value reported for a bucket: `2·L·U / (L + U)`, which is within `(γ-1)/(γ+1)` relative
    /// error of every value in `(L, U]` (the harmonic mean of the bounds, as in DDSketch).
    public static func representative(of index: Int32, scale: Int) -> Double {
        let lower = Self.lowerBound(of: index, scale: scale)
        let gamma = Math.exp2(Math.exp2(Double(-scale)))
        return 2 * lower * gamma / (1 + gamma)
    }

    /// The worst relative error of `representative(of:scale:)` at `scale`.
    public static func relativeError(scale: Int) -> Double {
        let gamma = Math.exp2(Math.exp2(Double(-scale)))
        return (gamma - 1) / (gamma + 1)
    }

    /// Valid bucket indices at `scale`: those of the positive normal doubles.
    public static func indexRange(scale: Int) -> ClosedRange<Int32> {
        Self.index(of: Self.valueMin, scale: scale)...Self.index(of: Double.greatestFiniteMagnitude, scale: scale)
    }
}
