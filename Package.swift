// swift-tools-version:6.0
import PackageDescription

// One module per concern; C libraries stay behind the modules that wrap them:
// COpenSSL is used only by CertgateCrypto and CertgateTLS, CNGHTTP2 only by CertgateHTTP,
// CYAML only by CertgateYAML. The shipped binary does not link Foundation (its ICU data
// alone is 34 MB, and its start-up code megabytes of resident pages), nor FoundationEssentials
// (0.6 MiB resident): Kubernetes objects go through CertgateJSON's JSONCoding. Only the
// test helpers import Foundation.
let package = Package(
    name: "certgate",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "certgate", targets: ["certgate"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CNGHTTP2",
            pkgConfig: "libnghttp2",
            providers: [.apt(["libnghttp2-dev"])]
        ),
        .systemLibrary(
            name: "CYAML",
            pkgConfig: "yaml-0.1",
            providers: [.apt(["libyaml-dev"])]
        ),
        .systemLibrary(name: "CLinux"),
        // State shared between threads, behind a lock ThreadSanitizer understands.
        .target(name: "CertgateLocking"),
        // The process on Linux: threads, condition variables, clocks and UTC time, signals,
        // files read and watched, errno errors. Everything but the network.
        .target(name: "CertgateSystem", dependencies: ["CLinux", "CertgateLocking"]),
        // Sockets, addresses and the epoll event loops.
        .target(name: "CertgateNet", dependencies: ["CLinux", "CertgateLocking", "CertgateSystem"]),
        .target(name: "CertgateMetrics", dependencies: ["CertgateLocking"]),
        // Start in order, stop in reverse, join: the process's components and a leader's term.
        .target(name: "CertgateLifecycle", dependencies: ["CertgateLocking", .product(name: "Logging", package: "swift-log")]),
        .target(name: "CertgateJSON"),
        .target(name: "CertgateYAML", dependencies: ["CYAML"]),
        .target(name: "CertgatePKI", dependencies: ["CertgateJSON", "CertgateCrypto"]),
        .target(name: "CertgateWebhook", dependencies: ["CertgatePKI", "CertgateJSON", "CertgateHTTP"]),
        .target(
            name: "CertgateKube",
            dependencies: ["CertgateLocking", "CertgateCrypto", "CertgateTLS", "CertgateNet", "CertgateSystem", "CertgateHTTP", "CertgateJSON", "CertgatePKI", "CertgateYAML",
                           .product(name: "Logging", package: "swift-log")]
        ),
        .target(name: "CertgateReconciler", dependencies: ["CertgateLocking", "CertgateSystem", "CertgateJSON", "CertgateKube", "CertgatePKI", "CertgateCrypto", "CertgateMetrics",
                                                          .product(name: "Logging", package: "swift-log")]),
        .target(
            name: "CertgateWebhookSetup",
            dependencies: ["CertgateLocking", "CertgatePKI", "CertgateKube", "CertgateJSON", "CertgateTLS", "CertgateCrypto", "CertgateSystem", .product(name: "Logging", package: "swift-log")]
        ),
        .target(name: "CertgateStatus", dependencies: ["CertgateKube", "CertgatePKI", "CertgateCrypto", "CertgateSystem"]),
        .testTarget(name: "CertgateStatusTests", dependencies: ["CertgateStatus", "CertgateKube", "CertgateKubeTesting", "CertgatePKI",
                                                               "CertgateCrypto", "CertgateTestSupport"]),
        .target(name: "CertgateManifests", dependencies: ["CertgatePKI", "CertgateJSON", "CertgateSystem", "CertgateYAML"]),
        .target(name: "CertgateCrypto", dependencies: ["COpenSSL"]),
        .target(name: "CertgateTLS", dependencies: ["CertgateLocking", "COpenSSL", "CertgateCrypto", "CertgateNet", "CertgateSystem"]),
        .target(
            name: "CertgateHTTP",
            dependencies: ["CertgateLocking", 
                "CNGHTTP2", "CertgateNet", "CertgateSystem", "CertgateTLS", "CertgateMetrics", "CertgateJSON",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "certgate",
            dependencies: ["CertgateJSON", "CertgateLocking", 
                "CertgateHTTP", "CertgateTLS", "CertgateCrypto", "CertgateMetrics", "CertgateNet", "CertgateSystem", "CertgatePKI", "CertgateWebhook", "CertgateManifests", "CertgateKube", "CertgateReconciler",
                "CertgateWebhookSetup", "CertgateLifecycle", "CertgateStatus",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Helpers shared by the test targets (certificates, processes); not part of the product.
        .target(name: "CertgateTestSupport", dependencies: ["CertgateCrypto"]),
        // An in-process Kubernetes API server for the client and reconciler tests; not shipped.
        .target(
            name: "CertgateKubeTesting",
            dependencies: [
                "CertgateKube", "CertgateHTTP", "CertgateTLS", "CertgateNet", "CertgateSystem", "CertgateMetrics", "CertgateCrypto", "CertgateTestSupport",
                "CertgateYAML", .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // scripts/bench-reconciler: the shipped binary against the test API server; not shipped.
        // The parsers of untrusted input as fuzz targets, for certgate-fuzz and their replay tests; not shipped.
        .target(
            name: "CertgateFuzzing",
            dependencies: [
                "CertgateHTTP", "CertgateJSON", "CertgateWebhook", "CertgatePKI", "CertgateManifests", "CertgateKube", "CertgateCrypto",
                "CertgateMetrics", "CertgateNet", "CertgateSystem", .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // libFuzzer's entry points over CertgateFuzzing (scripts/fuzz); not shipped.
        .executableTarget(name: "certgate-fuzz", dependencies: ["CertgateFuzzing"]),
        // scripts/bench-admission: decode, judge and answer in a loop, no network; not shipped.
        .executableTarget(name: "certgate-admission-bench", dependencies: ["CertgateWebhook", "CertgateManifests", "CertgatePKI", "CertgateHTTP", "CertgateSystem"]),
        .executableTarget(
            name: "certgate-reconcile-bench",
            dependencies: ["CertgateKube", "CertgateKubeTesting", "CertgatePKI", "CertgateManifests", "CertgateTestSupport"]
        ),
        .testTarget(name: "CertgateSystemTests", dependencies: ["CertgateSystem", "CertgateLocking"]),
        .testTarget(name: "CertgateNetTests", dependencies: ["CertgateNet", "CertgateSystem"]),
        .testTarget(name: "CertgateMetricsTests", dependencies: ["CertgateMetrics"]),
        .testTarget(name: "CertgateLifecycleTests", dependencies: ["CertgateLocking", "CertgateLifecycle", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "CertgateJSONTests", dependencies: ["CertgateJSON"]),
        .testTarget(name: "CertgateYAMLTests", dependencies: ["CertgateYAML"]),
        .testTarget(name: "CertgatePKITests", dependencies: ["CertgatePKI", "CertgateJSON", "CertgateCrypto", "CertgateTestSupport"]),
        .testTarget(name: "CertgateWebhookTests", dependencies: ["CertgateWebhook", "CertgatePKI", "CertgateHTTP"]),
        .testTarget(
            name: "CertgateKubeTests",
            dependencies: ["CertgateJSON", "CertgateLocking", "CertgatePKI", 
                "CertgateKube", "CertgateKubeTesting", "CertgateHTTP", "CertgateTLS", "CertgateTestSupport", "CertgateMetrics", "CertgateNet",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "CertgateReconcilerTests", dependencies: ["CertgateLocking", "CertgateReconciler", "CertgateKube", "CertgateKubeTesting", "CertgatePKI", "CertgateCrypto", "CertgateTestSupport", "CertgateMetrics", .product(name: "Logging", package: "swift-log")]),
        .testTarget(
            name: "CertgateWebhookSetupTests",
            dependencies: ["CertgateLocking", "CertgatePKI", 
                "CertgateWebhookSetup", "CertgateKube", "CertgateKubeTesting", "CertgateTLS", "CertgateCrypto", "CertgateHTTP", "CertgateNet",
                "CertgateMetrics", "CertgateTestSupport", .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "CertgateManifestsTests", dependencies: ["CertgateJSON", "CertgateManifests", "CertgatePKI"]),
        .testTarget(name: "CertgateCryptoTests", dependencies: ["CertgateCrypto", "CertgateTestSupport"]),
        .testTarget(name: "CertgateTLSTests", dependencies: ["CertgateLocking", "CertgateTLS", "CertgateCrypto", "CertgateTestSupport"]),
        .testTarget(
            name: "CertgateHTTPTests",
            dependencies: ["CertgateLocking", 
                "CertgateHTTP", "CertgateTLS", "CertgateCrypto", "CertgateMetrics", "CertgateNet", "CertgateSystem", "CertgateTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "CertgateFuzzingTests", dependencies: ["CertgateFuzzing"]),
        .testTarget(name: "certgateTests", dependencies: ["certgate", "CertgateCrypto", "CertgateTestSupport", "CertgateKube", "CertgateKubeTesting", "CertgatePKI", "CertgateManifests"]),
    ]
)
