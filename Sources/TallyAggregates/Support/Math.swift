#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The few libm functions the aggregates need, in one place, so no file imports the platform module.
enum Math {
    @inline(__always) static func log(_ x: Double) -> Double { Glibc.log(x) }
    @inline(__always) static func log2(_ x: Double) -> Double { Glibc.log2(x) }
    @inline(__always) static func exp2(_ x: Double) -> Double { Glibc.exp2(x) }
    @inline(__always) static func cos(_ x: Double) -> Double { Glibc.cos(x) }
}
