// swift-tools-version: 6.1
import PackageDescription

// Layers (dependencies point down only); see docs/architecture.md.
//   tally (CLI)  ->  TallyNode (HTTP, SQLite, config)  ->  TallyNodeCore  ->  TallyReplica  ->  TallyAggregates
//   TallyNode  ->  TallyProtocols (OTLP, StatsD, Prometheus exposition)  ->  TallyReplica
//   TallyNodeCore  ->  TallySLO (objectives, budgets, burn-rate alerts)  ->  TallyReplica
//   tally-bench  ->  TallyReplica, TallyNode (its store), TallySLO, TallyWorkload, TallySimulation (+ benchmark-only dependencies, kept out of the product)
//   TallyWorkload (the traffic shape of load, benchmarks and simulator)  ->  TallyAggregates
//   TallySimulation (virtual time, faults, checkers)  ->  TallyNodeCore, TallyWorkload
// TallyAggregates depends on the standard library only.
let package = Package(
    name: "tally",
    products: [
        .executable(name: "tally", targets: ["tally"]),
        .library(name: "TallyAggregates", targets: ["TallyAggregates"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio", from: "1.5.0"),
        // Benchmark-only: the baseline the latency sketch is compared against, and malloc counting.
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/ordo-one/malloc-interposer", from: "1.6.1"),
    ],
    targets: [
        .target(name: "CTallyBucketTables"),
        .target(name: "TallyAggregates", dependencies: ["CTallyBucketTables"]),
        // The system's OpenSSL 3 (libssl-dev), for the peer transport's TLS.
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .target(name: "TallyReplica", dependencies: ["TallyAggregates"]),
        // SLOs: objectives, error budgets, burn-rate alerts, windows; pure values over the replica's counts.
        .target(name: "TallySLO", dependencies: ["TallyReplica", "TallyAggregates", .product(name: "Yams", package: "Yams")]),
        // The node's decisions around the replica, sans I/O: both shells (node, simulator) drive it.
        .target(name: "TallyNodeCore", dependencies: ["TallyReplica", "TallyAggregates", "TallySLO"]),
        // The traffic shape shared by `tally load`, the benchmarks and the simulator.
        .target(name: "TallyWorkload", dependencies: ["TallyAggregates"]),
        // The other shell: the real replica in virtual time, with seeded faults and checkers.
        .target(
            name: "TallySimulation",
            dependencies: ["TallyNodeCore", "TallyReplica", "TallyAggregates", "TallyWorkload", "TallySLO",
                           .product(name: "Yams", package: "Yams")]
        ),
        // Drop-in protocols, sans I/O: OTLP and StatsD bytes in as events, Prometheus exposition out.
        // Generated/ is protoc-gen-swift's output, committed (docs/integrations.md: regenerating).
        .target(
            name: "TallyProtocols",
            dependencies: ["TallyReplica", "TallyAggregates", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        .target(
            name: "TallyNode",
            dependencies: [
                "TallyNodeCore",
                "TallyProtocols",
                "TallySLO",
                "TallyReplica",
                "TallyAggregates",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Yams", package: "Yams"),
                "COpenSSL",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ]
        ),
        .executableTarget(
            name: "tally",
            dependencies: [
                "TallyAggregates",
                "TallyProtocols",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                "TallyReplica",
                "TallyNode",
                "TallySLO",
                "TallyWorkload",
                "TallySimulation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "tally-bench",
            dependencies: [
                "TallyAggregates",
                "TallyReplica",
                "TallyNode",
                "TallySLO",
                "TallyWorkload",
                "TallySimulation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
            ]
        ),
        .testTarget(name: "TallyAggregatesTests", dependencies: ["TallyAggregates"]),
        .testTarget(name: "TallyReplicaTests", dependencies: ["TallyReplica", "TallyAggregates"]),
        .testTarget(name: "TallyProtocolsTests", dependencies: [
            "TallyProtocols", "TallyReplica", "TallyAggregates", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),
        .testTarget(name: "TallySLOTests", dependencies: ["TallySLO", "TallyReplica", "TallyAggregates"]),
        // Help texts of the CLI, as snapshots (the executable's module, tested in place).
        .testTarget(name: "TallyCLITests", dependencies: [
            "tally", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], exclude: ["Snapshots"]),  // read by path (#filePath), so they can be written anew
        .testTarget(name: "TallyNodeCoreTests", dependencies: ["TallyNodeCore", "TallyReplica", "TallyAggregates", "TallySLO"]),
        .testTarget(name: "TallySimulationTests", dependencies: ["TallySimulation", "TallyReplica", "TallyAggregates", "TallySLO"]),
        .testTarget(
            name: "TallyNodeTests",
            dependencies: [
                "TallyNode",
                "TallyProtocols",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "CompressNIO", package: "compress-nio"),
                "TallySLO",
                "TallyReplica",
                "TallyAggregates",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
