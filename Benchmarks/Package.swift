// swift-tools-version: 6.1
// Interlock benchmarks: its own package, so the root package keeps zero dependencies.
// Run from the repository root:
//   swift package --package-path Benchmarks benchmark
//   Benchmarks/compare.sh            (ratios ours ÷ baseline, the README table)
import PackageDescription

let package = Package(
    name: "InterlockBenchmarks",
    dependencies: [
        .package(name: "Interlock", path: ".."),
        // Only the malloc interposer trait: the default traits also pull a runtime
        // interposer package (for the `arc` metrics, which we do not use).
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // One executable, one file per benchmark group (see Benchmarks/InterlockBenchmarks/).
        .executableTarget(
            name: "InterlockBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Interlock", package: "Interlock"),
            ],
            path: "Benchmarks/InterlockBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
    ]
)
