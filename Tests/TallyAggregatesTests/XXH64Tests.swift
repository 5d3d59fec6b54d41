import Testing
import TallyAggregates

/// XXH64 must match the reference implementation bit for bit: hashes are stored and replicated.
/// Vectors from the reference library (python-xxhash 3.x, which wraps the C implementation).
@Suite struct XXH64Tests {
    static let vectors: [(hex: String, seed0: UInt64, seedGolden: UInt64)] = [
        ("", 0xEF46DB3751D8E999, 0xC4349FC93C010000),
        ("61", 0xD24EC4F1A98C6E5B, 0x9A7C6D2EA45568C9),
        ("616263", 0x44BC2CF5AD770999, 0x2ED0F59D6B43AC8B),
        ("68656c6c6f20776f726c64", 0x45AB6734B21E6968, 0x9F340B951589B40E),
        ("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", 0xCBF59C5116FF32B4, 0xA1C89217E9D50750),
        ("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60616263", 0x6AC1E58032166597, 0x3B97D91EBA03E785),
        ("757365722d3132333435", 0x64797FCA50BFC10C, 0x7732D471AAF27325),
        ("a54dca", 0x79ED548520C8F4C0, 0x5FE66453B7AC5CC9),
        ("182530bb1d6d13", 0xF7B101DD89DE4E45, 0x59B156E517643219),
        ("2cded6237b2ed91e", 0x27AB809BA846B801, 0x29A3C7BBECFACBE9),
        ("3f721fcb1971174494d6493c9d5c34", 0x71CB0E08BFE1FD78, 0x5A8BEA39402DD2B5),
        ("60be31201e69fedaa0eee8b9997f5c7c2999fdafe593253cd654af4dfad714", 0x848AC79ABA366A21, 0xB6704744F68C9A2C),
        ("27a0aeb3fee9232f8af2211f9ee491c5b10becb5563bfc1e6f93427ecbc8fe2955", 0xBE2C26135C3B3BE9, 0x873BF4BA2931AA41),
        ("e5cd8e46dc8ed4b7c2764d2a5a4d767706f85d8690024ad6bda3401be9c8cbccc935f6cd1f61226ae15338ae1a34004d33ba0d246ac04c81b1baf23e3bf9eef5", 0x0626BD142ACE6859, 0xDFCEEF78836CD090),
        ("f79f2b4934af87f5520b69b94b0d982e85bb55b672a872637acd7466fcb60e0e8ff18463b0e4b2ba29703474f064ac68f700f5b02b3dc666f45bdeaa2ccaedcd2b", 0x6216E1B4B358245F, 0xA6EA9AE9B538AD5E),
        ("5157410e4dee4af2b34f430a073447de636c0e806c957ba684d6431fb5ead7424d09e15d024c5848f23d1fa6f7361d7f618d1532e70e20e2a6668de7f47e8467e546d53ec8e2a1257bdb256c9b3e4fbb498146ef7030cbf9537252dcceadd764b6a32fbb09adeae109c4a997203975352b878b145c8a42d884cf4cfda72d8e1d5dd92589082d852a7122873ee805add58942167a385286195c679f9c6994e45b8ab1098012070961f37de436ddfdc99d6e75af6547cfb11b42072482dc531c2bc3907c9617eb5e50", 0xF0D278CA5937C9FC, 0x00CCB3ACC65F6DEA),
    ]

    static func bytes(_ hex: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }

    @Test func matchesReferenceVectors() {
        for vector in Self.vectors {
            let bytes = Self.bytes(vector.hex)
            #expect(XXH64.hash(bytes) == vector.seed0, "XXH64(\(vector.hex), 0)")
            #expect(XXH64.hash(bytes, seed: 0x9E37_79B9_7F4A_7C15) == vector.seedGolden, "XXH64(\(vector.hex), golden)")
        }
    }

    @Test func stringHashIsHashOfUTF8() {
        #expect(XXH64.hash("user-12345") == 0x6479_7FCA_50BF_C10C)
        #expect(XXH64.hash("") == 0xEF46_DB37_51D8_E999)
        let long = String(repeating: "région-€-", count: 20)
        #expect(XXH64.hash(long) == XXH64.hash(Array(long.utf8)))
    }

    @Test func integerHashIsHashOfLittleEndianBytes() {
        let integers: [(UInt64, UInt64)] = [
        (0x0000000000000000, 0x34C96ACDCADB1BBB),
        (0x0000000000000001, 0x9F29CB17A2A49995),
        (0x00000000DEADBEEF, 0x3396F1A59CB00C78),
        (0xFFFFFFFFFFFFFFFF, 0x85D136ADB773C6C9),
        ]
        for (value, expected) in integers {
            #expect(XXH64.hash(value) == expected, "XXH64 of integer \(value)")
        }
    }
}
