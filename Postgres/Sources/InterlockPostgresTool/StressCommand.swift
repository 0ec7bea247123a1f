import InterlockPostgres
import Logging
import PostgresNIO
#if canImport(Glibc)
import Glibc
#endif

/// `interlock-pg stress`: worker processes (`--processes`, each with `--tasks` tasks sharing
/// one lock, so one session) take one `PostgresSharedLock` in shared and exclusive mode for
/// `--duration` or `--operations`, while a witness in shared memory (``StressRegion``)
/// checks every hold. `--kill` kills a random worker with SIGKILL every `--every` (preferring
/// one that holds the lock exclusively, every other time) and starts a replacement;
/// `--terminate` ends a random holder's session with `pg_terminate_backend` every `--every`.
///
/// Reports ops/s and acquire latency per mode, the readers seen together, the fencing
/// results (writes accepted, stale writes rejected), the holds told their session was lost,
/// the overlaps (each explained by a lost or killed holder) and the violations: overlaps that
/// no loss explains. Exit status 1 when there is a violation, 3 when a worker hangs.
enum StressCommand {
    struct Config {
        var processes = 3
        var tasks = 4
        var duration: Duration? = .seconds(10)
        var operations: Int?
        var readPercent = 90
        var hold: Duration = .microseconds(100)
        var name = "interlock-pg-stress"
        var kill = false
        var terminate = false
        var every: Duration = .milliseconds(250)
        var json = false
        var seed = UInt64(truncatingIfNeeded: nowNanoseconds())
    }

    static func run(_ arguments: [String]) async -> Int32 {
        var config = Config()
        do {
            let options = try Options(arguments, switches: ["--kill", "--terminate", "--json"],
                                      values: ["--processes", "--tasks", "--duration", "--operations", "--read-percent", "--hold", "--name", "--every", "--seed"])
            guard options.positional.isEmpty else { throw ToolError("unexpected argument \(options.positional[0])") }
            config.processes = try options.int("--processes", default: 3, range: 1...64)
            config.tasks = try options.int("--tasks", default: 4, range: 1...256)
            if options.string("--operations") != nil {
                config.operations = try options.int("--operations", default: 0, range: 1...1_000_000_000)
                config.duration = options.string("--duration") == nil ? nil : try options.duration("--duration", default: .seconds(10))
            } else {
                config.duration = try options.duration("--duration", default: .seconds(10))
            }
            config.readPercent = try options.int("--read-percent", default: 90, range: 0...100)
            config.hold = try options.duration("--hold", default: .microseconds(100))
            config.name = options.string("--name") ?? config.name
            config.kill = options.has("--kill")
            config.terminate = options.has("--terminate")
            config.every = try options.duration("--every", default: .milliseconds(250))
            config.json = options.has("--json")
            if let seed = options.string("--seed") {
                guard let value = UInt64(seed) else { throw ToolError("--seed takes a number") }
                config.seed = value
            }
            _ = try ConnectionSettings.configuration()
        } catch {
            printError("\(error)")
            return 2
        }
        do {
            return try await Run(config: config).start()
        } catch {
            printError("stress: \(error)")
            return 3
        }
    }

    final class Run {
        let config: Config
        let region: StressRegion
        let path: String
        var workers: [pid_t?]
        var kills = 0, killsHoldingExclusive = 0, killsHoldingShared = 0, terminations = 0, workerFailures = 0
        var random: SplitMix

        init(config: Config) throws {
            self.config = config
            path = "/dev/shm/interlock-pg-stress.\(getpid())"
            region = try StressRegion(creating: path, processes: config.processes, tasks: config.tasks, operations: config.operations)
            workers = Array(repeating: nil, count: config.processes)
            random = SplitMix(seed: config.seed)
        }

        deinit { unlink(path) }

        func spawn(_ process: Int) throws {
            var buffer = [CChar](repeating: 0, count: 4096)
            let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
            guard n > 0 else { throw ToolError("readlink /proc/self/exe: errno \(errno)") }
            let tool = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let arguments = [tool, "stress-worker", "--region", path, "--process", "\(process)", "--name", config.name,
                             "--read-percent", "\(config.readPercent)", "--hold", "\(StressWorker.nanoseconds(config.hold))ns",
                             "--seed", "\(random.next())"]
            let argv = arguments.map { strdup($0) } + [nil]
            defer { argv.forEach { free($0) } }
            var child: pid_t = 0
            let rc = posix_spawn(&child, tool, nil, nil, argv, environ)
            guard rc == 0 else { throw ToolError("posix_spawn \(tool): errno \(rc)") }
            workers[process] = child
        }

        /// Reaps workers that ended; returns how many are still running.
        func reap() -> Int {
            for (process, pid) in workers.enumerated() {
                guard let pid else { continue }
                var status: Int32 = 0
                if waitpid(pid, &status, WNOHANG) == pid {
                    workers[process] = nil
                    if status != 0 { workerFailures += 1; printError("stress: worker \(pid) ended with status \(status)") }
                }
            }
            return workers.compactMap { $0 }.count
        }

        /// SIGKILLs a worker (every other time one holding exclusive mode, if any), records
        /// its holds in progress as lost, and starts a replacement.
        func killOne(preferExclusive: Bool) throws {
            let running = workers.indices.filter { workers[$0] != nil }
            guard !running.isEmpty else { return }
            func holds(_ process: Int, exclusive: Bool) -> Bool {
                (0..<config.tasks).contains { region.state(process * config.tasks + $0) & 3 == (exclusive ? 2 : 1) }
            }
            let preferred = running.filter { holds($0, exclusive: preferExclusive) }
            let pool = preferred.isEmpty ? running : preferred
            let process = pool[Int(random.next() % UInt64(pool.count))]
            guard let pid = workers[process] else { return }
            kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            workers[process] = nil
            kills += 1
            var heldExclusive = false, heldShared = false
            for task in 0..<config.tasks {
                let slot = process * config.tasks + task
                let state = region.state(slot)
                if state != 0 {
                    // The dead holder's hold ended at its death: the server ended its session.
                    region.recordLost(slot, serial: state >> 2)
                    if state & 3 == 2 { heldExclusive = true } else { heldShared = true }
                    region.setState(slot, 0)
                }
            }
            if heldExclusive { killsHoldingExclusive += 1 } else if heldShared { killsHoldingShared += 1 }
            if region.get(.stop) == 0 { try spawn(process) }
        }

        /// Ends the session of a random worker that holds the lock (`pg_terminate_backend`).
        func terminateOne(_ admin: PostgresConnection, key: AdvisoryKey, logger: Logger) async {
            do {
                let rows = try await admin.query("""
                    SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                      AND l.classid::bigint = \(Int64(key.classID)) AND l.objid::bigint = \(Int64(key.objectID))
                      AND a.application_name = 'interlock-stress'
                    """, logger: logger).collect()
                let pids = try rows.map { try $0.decode(Int32.self) }
                guard !pids.isEmpty else { return }
                let pid = pids[Int(random.next() % UInt64(pids.count))]
                let done = try await admin.query("SELECT pg_terminate_backend(\(pid))", logger: logger).collect()
                if try done.first?.decode(Bool.self) == true { terminations += 1 }
            } catch {
                printError("stress: terminate: \(error)")
            }
        }

        func start() async throws -> Int32 {
            let key = try AdvisoryKey(name: config.name)
            let logger = Logger(label: "stress", factory: { _ in SwiftLogNoOpLogHandler() })
            var admin: PostgresConnection?
            if config.terminate {
                admin = try await PostgresConnection.connect(configuration: ConnectionSettings.configuration(), id: 1, logger: logger)
            }
            let started = nowNanoseconds()
            for process in 0..<config.processes { try spawn(process) }
            let end = config.duration.map { started + StressWorker.nanoseconds($0) }
            let every = StressWorker.nanoseconds(config.every)
            var nextEvent = started + every
            var eventCount = 0
            var stopping = false
            var stoppedAt: UInt64 = 0
            var hung = false
            while true {
                let now = nowNanoseconds()
                if !stopping, let end, now >= end {
                    region.set(.stop, 1)
                    stopping = true
                    stoppedAt = now
                }
                if !stopping && (config.kill || config.terminate) && now >= nextEvent {
                    eventCount += 1
                    if config.kill && (!config.terminate || eventCount % 2 == 0) {
                        try killOne(preferExclusive: (eventCount / (config.terminate ? 2 : 1)) % 2 == 1)
                    } else if let admin {
                        await terminateOne(admin, key: key, logger: logger)
                    }
                    nextEvent = now + every
                }
                if reap() == 0 {
                    // Every worker ended: the operations are spent, or the run stopped.
                    if !stopping { stoppedAt = nowNanoseconds(); stopping = true }
                    break
                }
                if stopping && nowNanoseconds() - stoppedAt > 60_000_000_000 {
                    hung = true
                    for pid in workers.compactMap({ $0 }) {
                        printError("stress: worker \(pid) did not stop within 60 s after the run ended (a hang): killing it")
                        kill(pid, SIGKILL)
                    }
                    _ = reap()
                    break
                }
                try await Task.sleep(for: .milliseconds(5))
            }
            let elapsed = Double(stoppedAt - started) / 1e9
            if let admin { try? await admin.close() }
            let report = judge(elapsed: elapsed, key: key)
            say(config.json ? report.json : report.text)
            if hung { return 3 }
            return report.violations == 0 && workerFailures == 0 ? 0 : 1
        }

        struct Report {
            var text: String
            var json: String
            var violations: Int
        }

        func judge(elapsed: Double, key: AdvisoryKey) -> Report {
            var lost: [Set<UInt64>] = []
            var lostOverflow = false
            for slot in 0..<region.slotCount {
                let (serials, overflow) = region.lostSerials(slot)
                lost.append(serials)
                lostOverflow = lostOverflow || overflow
            }
            var overlaps = 0, explained = 0, violations = 0, overflowed = 0
            for slot in 0..<region.slotCount {
                let (list, overflow) = region.overlaps(slot)
                overflowed += overflow
                for overlap in list {
                    overlaps += 1
                    if lost[slot].contains(overlap.serial) || lost[overlap.other].contains(overlap.otherSerial) {
                        explained += 1
                    } else {
                        violations += 1
                    }
                }
            }
            // Overlaps that could not be recorded cannot be explained: count them against us.
            violations += overflowed + (lostOverflow ? 1 : 0)
            func sum(_ stat: StressRegion.Stat) -> Int { (0..<config.processes).reduce(0) { $0 + Int(region.get($1, stat)) } }
            let maxReaders = (0..<config.processes).map { Int(region.get($0, .maxReaders)) }.max() ?? 0
            let accepted = Int(region.get(.acceptedWrites))
            let stale = sum(.staleRejected)
            let lostShared = sum(.lostShared), lostExclusive = sum(.lostExclusive)
            let failed = sum(.failedAcquisitions), errors = sum(.errors)

            func percentiles(_ histogram: [UInt64]) -> (ops: Int, p50: Double, p99: Double, p999: Double, max: Double) {
                let total = histogram.reduce(0, +)
                guard total > 0 else { return (0, 0, 0, 0, 0) }
                func at(_ q: Double) -> Double {
                    let target = UInt64((Double(total) * q).rounded(.up))
                    var seen: UInt64 = 0
                    for (bucket, count) in histogram.enumerated() {
                        seen += count
                        if seen >= max(1, target) { return StressRegion.bucketFloor(bucket) }
                    }
                    return 0
                }
                let top = histogram.lastIndex { $0 > 0 } ?? 0
                return (Int(total), at(0.5), at(0.99), at(0.999), StressRegion.bucketFloor(top))
            }
            let shared = percentiles(region.histogram(exclusive: false))
            let exclusive = percentiles(region.histogram(exclusive: true))

            var lines: [String] = []
            let runLength = config.operations.map { "\(grouped($0)) operations" } ?? formatNanoseconds(Double(StressWorker.nanoseconds(config.duration!)))
            lines.append("interlock-pg stress: \(config.processes) processes × \(config.tasks) tasks (one session per process), \(config.readPercent)% reads, hold \(formatNanoseconds(Double(StressWorker.nanoseconds(config.hold)))), \(runLength), name \(config.name) (\(key)), seed \(config.seed)")
            func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
                let padding = String(repeating: " ", count: max(0, width - text.count))
                return left ? text + padding : padding + text
            }
            lines.append(pad("mode", 10, left: true) + pad("ops", 11) + pad("ops/s", 10) + pad("p50", 11) + pad("p99", 11) + pad("p99.9", 11) + pad("max", 11))
            for (label, row) in [("shared", shared), ("exclusive", exclusive)] {
                lines.append(pad(label, 10, left: true) + pad(grouped(row.ops), 11) + pad(grouped(Int(Double(row.ops) / max(elapsed, 1e-9))), 10)
                             + pad(formatNanoseconds(row.p50), 11) + pad(formatNanoseconds(row.p99), 11) + pad(formatNanoseconds(row.p999), 11) + pad(formatNanoseconds(row.max), 11))
            }
            lines.append("(latency: from the call to the start of the body, whole-run histogram with 8 buckets per octave; ops/s over \((elapsed * 100).rounded() / 100) s)")
            lines.append("readers together: up to \(maxReaders) at once")
            lines.append("fencing: \(grouped(accepted)) writes accepted, \(grouped(stale)) stale writes rejected (a writer writes at the start and the end of its hold)")
            if config.kill { lines.append("kills: \(kills) (\(killsHoldingExclusive) holding exclusive, \(killsHoldingShared) holding shared), each replaced") }
            if config.terminate { lines.append("sessions terminated: \(terminations)") }
            lines.append("holds told their session was lost: \(lostShared + lostExclusive) (\(lostShared) shared, \(lostExclusive) exclusive); acquisitions that failed: \(failed)")
            lines.append("overlaps: \(overlaps) (\(explained) explained by a lost session or a killed holder)")
            lines.append("violations: \(violations)")
            if errors > 0 || workerFailures > 0 { lines.append("errors: \(errors) in workers, \(workerFailures) workers failed") }
            lines.append("result: \(violations == 0 && workerFailures == 0 && errors == 0 ? "ok" : "FAILED")")

            let json = """
                {"processes":\(config.processes),"tasks":\(config.tasks),"seconds":\(elapsed),\
                "sharedOps":\(shared.ops),"exclusiveOps":\(exclusive.ops),\
                "sharedP50Ns":\(shared.p50),"sharedP99Ns":\(shared.p99),"exclusiveP50Ns":\(exclusive.p50),"exclusiveP99Ns":\(exclusive.p99),\
                "maxReaders":\(maxReaders),"acceptedWrites":\(accepted),"staleRejected":\(stale),\
                "kills":\(kills),"killsHoldingExclusive":\(killsHoldingExclusive),"terminations":\(terminations),\
                "lostShared":\(lostShared),"lostExclusive":\(lostExclusive),"failedAcquisitions":\(failed),\
                "overlaps":\(overlaps),"explained":\(explained),"violations":\(violations),"errors":\(errors),"workerFailures":\(workerFailures)}
                """
            return Report(text: lines.joined(separator: "\n"), json: json, violations: violations)
        }
    }
}
