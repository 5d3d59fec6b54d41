// swift-tools-version: 6.1
import PackageDescription

// Layers (dependencies point down only); see docs/architecture.md.
//   tally (CLI)  ->  TallyReplica  ->  TallyAggregates
//   tally-bench  ->  TallyAggregates (+ benchmark-only dependencies, kept out of the product)
// TallyAggregates depends on the standard library only.
let package = Package(
    name: "tally",
    products: [
        .executable(name: "tally", targets: ["tally"]),
        .library(name: "TallyAggregates", targets: ["TallyAggregates"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // Benchmark-only: the baseline the latency sketch is compared against, and malloc counting.
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/ordo-one/malloc-interposer", from: "1.6.1"),
    ],
    targets: [
        .target(name: "TallyAggregates"),
        .target(name: "TallyReplica", dependencies: ["TallyAggregates"]),
        .executableTarget(
            name: "tally",
            dependencies: [
                "TallyAggregates",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "tally-bench",
            dependencies: [
                "TallyAggregates",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
            ]
        ),
        .testTarget(name: "TallyAggregatesTests", dependencies: ["TallyAggregates"]),
        .testTarget(name: "TallyReplicaTests", dependencies: ["TallyReplica", "TallyAggregates"]),
    ],
    swiftLanguageModes: [.v6]
)
