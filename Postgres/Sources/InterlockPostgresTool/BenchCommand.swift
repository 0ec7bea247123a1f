import Interlock
import InterlockPostgres
import Logging
import PostgresNIO
#if canImport(Glibc)
import Glibc
#endif

/// `interlock-pg bench`: uncontended acquire + release round trips, in one run, of
/// `SharedLock(named:)` (one machine: shared memory) and `PostgresSharedLock` (any machine:
/// one round trip to acquire and one to release), plus raw postgres-nio statements for
/// reference. Prints a markdown table: median and p99 per pair, and the ratio to the named lock.
enum BenchCommand {
    static func run(_ arguments: [String]) async -> Int32 {
        do {
            let options = try Options(arguments, switches: [], values: ["--iterations", "--name"])
            let iterations = try options.int("--iterations", default: 3000, range: 10...10_000_000)
            let name = options.string("--name") ?? "interlock-pg-bench-\(getpid())"
            try await bench(iterations: iterations, name: name)
            return 0
        } catch let error as ToolError {
            printError("\(error)")
            return 2
        } catch {
            printError("\(error)")
            return 3
        }
    }

    struct Row {
        var label: String
        var samples: [UInt64]  // nanoseconds per pair
        func percentile(_ p: Double) -> Double {
            let sorted = samples.sorted()
            return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))])
        }
    }

    /// Mean ns of `count` blocking acquire+release pairs. Synchronous on purpose: in an
    /// `async` function `withShared { }` resolves to the async form.
    static func timeBlockingPairs(_ lock: SharedLock, exclusive: Bool, count: Int) -> UInt64 {
        let start = nowNanoseconds()
        for _ in 0..<count {
            if exclusive { lock.withExclusive {} } else { lock.withShared {} }
        }
        return (nowNanoseconds() - start) / UInt64(count)
    }

    static func bench(iterations: Int, name: String) async throws {
        var rows: [Row] = []

        // The named lock: pairs are ~tens of ns, so time batches of 1,000 and divide.
        let named = try SharedLock(named: name)
        defer { try? SharedLock.remove(named: name, force: true) }
        for (label, exclusive) in [("`SharedLock(named:)` shared", false), ("`SharedLock(named:)` exclusive", true)] {
            var samples: [UInt64] = []
            let batches = max(200, iterations / 10)
            for _ in 0..<batches {
                samples.append(timeBlockingPairs(named, exclusive: exclusive, count: 1000))
            }
            rows.append(Row(label: label, samples: samples))
        }

        let configuration = try ConnectionSettings.configuration()
        let lock = try PostgresSharedLock(name: name, configuration: configuration)
        // Open the session and create the fencing sequence before timing.
        try await lock.withExclusive { _ in }
        // Raw statements on one postgres-nio connection, for what the protocol itself costs.
        let logger = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        let key = try AdvisoryKey(name: name).rawValue
        func raw(_ queries: [PostgresQuery]) -> @Sendable () async throws -> Void {
            { for query in queries { _ = try await connection.query(query, logger: logger).collect() } }
        }
        let cases: [(String, @Sendable () async throws -> Void)] = [
            ("`PostgresSharedLock` shared", { try await lock.withShared { _ in } }),
            ("`PostgresSharedLock` exclusive (with fencing token)", { try await lock.withExclusive { _ in } }),
            ("raw `SELECT 1` (one round trip)", raw(["SELECT 1"])),
            ("raw `pg_advisory_lock_shared` + unlock", raw(["SELECT pg_advisory_lock_shared(\(key))::text", "SELECT pg_advisory_unlock_shared(\(key))"])),
            ("raw `pg_advisory_lock` + unlock", raw(["SELECT pg_advisory_lock(\(key))::text", "SELECT pg_advisory_unlock(\(key))"])),
        ]
        // Interleaved in rounds of 50, so that a busy moment of the machine falls on every row alike.
        var samples = [[UInt64]](repeating: [], count: cases.count)
        for _ in 0..<max(1, iterations / 50) {
            for (index, (_, operation)) in cases.enumerated() {
                for _ in 0..<50 {
                    let start = nowNanoseconds()
                    try await operation()
                    samples[index].append(nowNanoseconds() - start)
                }
            }
        }
        for (index, (label, _)) in cases.enumerated() {
            rows.append(Row(label: label, samples: samples[index]))
        }
        await lock.close()
        try await connection.close()

        let baseline = ["shared": rows[0].percentile(0.5), "exclusive": rows[1].percentile(0.5)]
        say("Uncontended acquire + release, one task, loopback (\(max(1, iterations / 50) * 50) pairs per PostgreSQL row, interleaved in rounds of 50; the named lock in batches of 1,000):")
        say("")
        say("| lock | median | p99 | ÷ named lock (median) |")
        say("|:---|---:|---:|---:|")
        for row in rows {
            let base = row.label.contains("exclusive") || row.label.contains("pg_advisory_lock`") ? baseline["exclusive"]! : baseline["shared"]!
            let ratio = row.percentile(0.5) / base
            let ratioText = ratio < 10 ? "\((ratio * 100).rounded() / 100)×" : "\(grouped(Int(ratio.rounded())))×"
            say("| \(row.label) | \(formatNanoseconds(row.percentile(0.5))) | \(formatNanoseconds(row.percentile(0.99))) | \(ratioText) |")
        }
    }
}
