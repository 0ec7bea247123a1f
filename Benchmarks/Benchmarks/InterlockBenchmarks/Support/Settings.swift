// Run-length settings shared by every group, overridable from the environment so that
// `compare.sh --quick` (and CI) can run the whole suite in a short time on 2 cores.
// package-benchmark 1.38.1 has no command-line option for iteration counts or durations;
// the benchmark executable inherits the environment of `swift package benchmark`.

import Benchmark
import Glibc

enum Settings {
    /// `INTERLOCK_BENCH_MAX_DURATION_MS`: wall-clock cap per benchmark (default 1000 ms).
    static let maxDuration: Duration = .milliseconds(environmentInt("INTERLOCK_BENCH_MAX_DURATION_MS") ?? 1_000)

    /// `INTERLOCK_BENCH_MAX_ITERATIONS`: iteration cap per benchmark; each group has its
    /// own default, and this caps all of them when set.
    static func maxIterations(_ groupDefault: Int) -> Int {
        min(groupDefault, environmentInt("INTERLOCK_BENCH_MAX_ITERATIONS") ?? Int.max)
    }

    /// Malloc counts are per iteration (1,000 operations with `.kilo`), including the harness's own
    /// few allocations per iteration. The gate allows that slack, and not one malloc per ten
    /// operations, so a single allocation on the acquire/release path fails the check.
    static var mallocGate: [BenchmarkMetric: BenchmarkThresholds] {
        [.mallocCountTotal: .init(absolute: [.p90: 100])]
    }

    private static func environmentInt(_ name: String) -> Int? {
        guard let raw = getenv(name) else { return nil }
        return Int(String(cString: raw)).flatMap { $0 > 0 ? $0 : nil }
    }
}
