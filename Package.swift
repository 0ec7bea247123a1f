// swift-tools-version: 6.1
// Interlock: reader-writer locks between threads and processes, with fork-aware storage.
// The root package depends on no other package (see README). Benchmarks/ is its own package.
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

let package = Package(
    name: "Interlock",
    products: [
        .library(name: "Interlock", targets: ["Interlock"]),
        .executable(name: "interlock", targets: ["InterlockCLI"]),
    ],
    targets: [
        // Internal C shim: only what Swift cannot call directly (the variadic `syscall`
        // for futex, and `pthread_atfork` registration with a C child handler).
        .target(name: "CInterlock"),
        .target(name: "Interlock", dependencies: ["CInterlock"], swiftSettings: strict),
        .executableTarget(name: "InterlockCLI", dependencies: ["Interlock"], swiftSettings: strict),
        // Test support: a process that opens a named lock and holds/releases on command.
        .target(name: "CTestHelper"),
        .executableTarget(name: "InterlockTestHelper", dependencies: ["Interlock", "CTestHelper"], swiftSettings: strict),
        .testTarget(
            name: "InterlockTests",
            dependencies: ["Interlock"],
            swiftSettings: strict
        ),
    ]
)
