import Testing
@testable import TallyAggregates

/// XXH3-64 must match the reference implementation bit for bit: hashes are stored and replicated.
/// Expected values from the reference library (python-xxhash 3.x, which wraps xxHash's C code),
/// over inputs of every length class, with seed 0 and with a seed.
@Suite struct XXH3Tests {
    static let vectors: [(length: Int, seed0: UInt64, seeded: UInt64)] = [
        (0, 0x2D06800538D394C2, 0x602B0E2CD6662C8B),
        (1, 0xF319FE2BDFCDFEBD, 0x9A84920F81D036D7),
        (2, 0x6C2CA74CA555B69D, 0x0F132102270E6C36),
        (3, 0xA107BB65B715C89B, 0x3606C13FCDF633E5),
        (4, 0x509F0567AA8A3123, 0x7BA2638426A2E2F6),
        (5, 0x6E8BB692F31805E8, 0xE934725F28409B1E),
        (7, 0x7D56F02B162BEE3C, 0x8942076477A36056),
        (8, 0xB1433DC39B7F946E, 0x882F3030F5E93009),
        (9, 0x5743A9D61BD25C3E, 0xFE235CF630E0145E),
        (12, 0xC96D58E20D78C614, 0x7DAD3E7C2ADF0642),
        (15, 0x128B3E1FC6C41375, 0x112C3DFFDF928C67),
        (16, 0x9E3A63FB7531205B, 0xF204E8CE72E3C0A0),
        (17, 0x79E4BBBF5FB46E75, 0x3367978F1C0258BF),
        (31, 0xD973FD2CC940025C, 0xC23E8D950EE41C77),
        (32, 0xC9569FB498A7B4F7, 0xDE1370553771159C),
        (33, 0x7065A8F4814FC73C, 0x5CC34C495E963501),
        (63, 0x9581D1435A8BFA18, 0xCD65A6C9D3EA3BF0),
        (64, 0xBA0F1D0229D029F5, 0xE45D7737FD7E46AC),
        (65, 0xA932D371283A84E2, 0xC5E8F71542E41350),
        (96, 0xC6A00E626995A2BF, 0x74DE636BD6CBB41F),
        (97, 0x08A5595DC4DA194F, 0xAF62252BF853EACA),
        (127, 0xA50FAEAAE7715A57, 0x27A5C1947751C535),
        (128, 0x843ABDF0E55C0F14, 0x0D671E516C8F7CDF),
        (129, 0x6D1FFCFC7B9C7236, 0x35E0092A2712F95C),
        (160, 0xCB79C37A16F063AD, 0xA6CA987D1CDF0B14),
        (239, 0x6ABCD207F1B1937A, 0x5EA1E3CE6E9373C3),
        (240, 0xB4B523A4E8E275D5, 0x1365A3E85481E40E),
        (241, 0x55D48F1A1BF9297A, 0x8FBAF860FE2F2164),
        (255, 0xED357BC686FB6D2A, 0x2083856F20D41EE4),
        (256, 0x8B5AF88316762F83, 0xA043459BB4ABEBED),
        (500, 0x67D967A1BD5FE80E, 0x27A2B760A1E13B3B),
        (1023, 0x98A0FBB59705B8B1, 0xF727BD53745D1F49),
        (1024, 0x44E9FDABA1148E56, 0x736150B1C182595B),
        (1025, 0x408F223CD0733924, 0xDEE0D9D745184F8B),
        (2048, 0x8EBF176673CDDDE6, 0x304EF660B1BF323A),
        (3000, 0x20784E90A6FD522E, 0xEF56EF08A81D12E5),
    ]

    /// The test input of a given length: a fixed byte pattern the vector generator used too.
    static func input(_ length: Int) -> [UInt8] {
        (0..<length).map { UInt8(truncatingIfNeeded: ($0 &* 131 &+ 17) ^ ($0 >> 3)) }
    }

    @Test func matchesReferenceAtEveryLengthClass() {
        for vector in Self.vectors {
            let bytes = Self.input(vector.length)
            #expect(XXH3.hash(bytes) == vector.seed0, "XXH3-64 of \(vector.length) bytes, seed 0")
            #expect(XXH3.hash(bytes, seed: 0x9E37_79B9_7F4A_7C15) == vector.seeded,
                    "XXH3-64 of \(vector.length) bytes, seeded")
        }
    }

    @Test func foldedSecretWordsMatchTheSecret() {
        func word(_ offset: Int) -> UInt64 {
            (0..<8).reduce(0) { $0 | UInt64(XXH3.secret[offset + $1]) << (8 * UInt64($1)) }
        }
        func half(_ offset: Int) -> UInt32 {
            (0..<4).reduce(0) { $0 | UInt32(XXH3.secret[offset + $1]) << (8 * UInt32($1)) }
        }
        #expect(XXH3.flip9to16Low == word(24) ^ word(32))
        #expect(XXH3.flip9to16High == word(40) ^ word(48))
        #expect(XXH3.flip4to8 == word(8) ^ word(16))
        #expect(XXH3.flip1to3 == half(0) ^ half(4))
        #expect(XXH3.flip0 == word(56) ^ word(64))
    }

    @Test func stringHashIsHashOfUTF8() {
        let strings: [(String, UInt64)] = [
            ("", 0x2D06800538D394C2),
            ("a", 0xE6C632B61E964E1F),
            ("abc", 0x78AF5F94892F3950),
            ("user-12345", 0xA4C92F03D9A809C4),
            ("région-€-用户", 0x9C585552B6D59CEE),
            ("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 0x22822823E92F81CC),
        ]
        for (string, expected) in strings {
            #expect(XXH3.hash(string) == expected, "XXH3-64 of \"\(string)\"")
        }
    }

    @Test func integerHashIsHashOfLittleEndianBytes() {
        let integers: [(UInt64, UInt64, UInt64)] = [
            (0x0000000000000000, 0xC77B3ABB6F87ACD9, 0x1424AA9885A1D5C7),
            (0x0000000000000001, 0x2FBC593564DB792E, 0x0CFB732E08BE9EC0),
            (0x00000000DEADBEEF, 0x4E95C26E2EA67401, 0xE9F3F9BD6DF0EA25),
            (0xFFFFFFFFFFFFFFFF, 0x5111C7E47D784413, 0xA147905AA7F7FADD),
            (0x0123456789ABCDEF, 0xB78DF414284277A6, 0x0F7D4875308B0B92),
        ]
        for (value, expected, seeded) in integers {
            #expect(XXH3.hash(value) == expected, "XXH3-64 of integer \(value)")
            #expect(XXH3.hash(value, seed: 12_345) == seeded, "XXH3-64 of integer \(value), seeded")
            #expect(XXH3.hash(withUnsafeBytes(of: value.littleEndian, Array.init)) == expected)
        }
    }
}
