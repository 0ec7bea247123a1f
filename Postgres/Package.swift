// swift-tools-version: 6.1
// InterlockPostgres: Interlock's shared/exclusive lock across machines, on PostgreSQL advisory
// locks. Its own package, so the root package keeps zero dependencies.
//
//   Postgres/scripts/with-postgres.sh swift test --package-path Postgres
//   swift run -c release --package-path Postgres interlock-pg stress --help
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

let package = Package(
    name: "InterlockPostgres",
    products: [
        .library(name: "InterlockPostgres", targets: ["InterlockPostgres"]),
        .executable(name: "interlock-pg", targets: ["InterlockPostgresTool"]),
    ],
    dependencies: [
        .package(name: "Interlock", path: ".."),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        // SHA-256 for name → key (already in postgres-nio's graph: no extra build).
        .package(url: "https://github.com/apple/swift-crypto", "3.9.0"..<"6.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.3"),
    ],
    targets: [
        .target(
            name: "InterlockPostgres",
            dependencies: [
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // `interlock-pg`: stress runs, round-trip benchmarks, and a holder process for tests.
        .executableTarget(
            name: "InterlockPostgresTool",
            dependencies: [
                "InterlockPostgres",
                .product(name: "Interlock", package: "Interlock"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "InterlockPostgresTests",
            dependencies: [
                "InterlockPostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
    ]
)
