// The final report of a stress run: gathered from the shared region once every worker
// is done, printed as text or JSON, and mapped to the exit status.

/// Throughput and acquire latency of one mode.
struct ModeReport {
    var ops: UInt64
    var opsPerSecond: Double
    var latency: Histogram.Summary

    var json: JSON {
        .object([
            ("ops", .unsigned(ops)),
            ("opsPerSecond", .number(opsPerSecond.rounded())),
            ("acquireLatencyNanoseconds", .object([
                ("p50", .unsigned(latency.p50)), ("p99", .unsigned(latency.p99)),
                ("p999", .unsigned(latency.p999)), ("max", .unsigned(latency.max)),
            ])),
        ])
    }
}

/// The outcome of a run.
struct StressReport {
    var config: StressConfig
    var lockName: String?
    var elapsedNanoseconds: UInt64
    var shared: ModeReport
    var exclusive: ModeReport
    var maxConcurrentReaders: UInt64
    /// The longest exclusive acquire, and who waited.
    var worstWriterWait: UInt64
    var worstWriter: String?
    var violations: [(Violation, UInt64)]
    var firstViolation: String?
    var crash: CrashCounts
    /// Writers told `previousWriterDied`.
    var previousHolderDiedObserved: UInt64
    /// Writers that found the update token of a writer that died mid-update.
    var deadWriterUpdatesSeen: UInt64
    /// The lock's own count of dead holders it reclaimed (`LockSnapshot.recoveries`);
    /// nil in the threads scope.
    var lockReclaimedHolders: Int?
    var failures: [String]
    var stuck: [String]?
    var interrupted: Bool

    var totalViolations: UInt64 { violations.reduce(0) { $0 + $1.1 } }

    /// Holds (shared or exclusive) that found the record torn.
    var tornRecords: UInt64 { violations.first { $0.0 == .tornRecord }?.1 ?? 0 }

    /// Crash recoveries: writers told `previousHolderDied`, plus killed shared holders
    /// whose share was provably reclaimed.
    var recoveries: UInt64 { previousHolderDiedObserved + UInt64(crash.sharedReclaimed) }

    var exitStatus: ExitStatus {
        if stuck != nil { return .hung }
        return totalViolations > 0 || !failures.isEmpty ? .failure : .success
    }

    var result: String {
        if stuck != nil { return "hung" }
        if totalViolations > 0 { return "violations" }
        if !failures.isEmpty { return "failed" }
        return interrupted ? "interrupted" : "ok"
    }

    init(config: StressConfig, region: StressRegion, lockName: String?, elapsedNanoseconds: UInt64,
         crash: CrashCounts, failures: [String], stuck: [String]?, interrupted: Bool) {
        self.config = config
        self.lockName = lockName
        self.elapsedNanoseconds = elapsedNanoseconds
        self.crash = crash
        self.failures = failures
        self.stuck = stuck
        self.interrupted = interrupted
        let seconds = max(Double(elapsedNanoseconds) / 1e9, 1e-9)
        func mode(exclusive: Bool) -> ModeReport {
            var counts = [UInt64](repeating: 0, count: Histogram.bucketCount)
            var ops: UInt64 = 0
            var maximum: UInt64 = 0
            for slot in 0..<region.slotCount {
                let buckets = region.histogram(slot, exclusive: exclusive)
                for bucket in 0..<Histogram.bucketCount { counts[bucket] += (buckets + bucket).load(ordering: .relaxed) }
                ops += region.slotValue(slot, exclusive ? .opsExclusive : .opsShared)
                maximum = max(maximum, region.slotValue(slot, exclusive ? .maxExclusive : .maxShared))
            }
            return ModeReport(ops: ops, opsPerSecond: Double(ops) / seconds,
                              latency: Histogram.summarize(counts, max: maximum))
        }
        shared = mode(exclusive: false)
        exclusive = mode(exclusive: true)
        maxConcurrentReaders = region.get(.maxConcurrentReaders)
        let worst = (0..<region.slotCount).max { region.slotValue($0, .maxExclusive) < region.slotValue($1, .maxExclusive) }
        let worstWait = worst.map { region.slotValue($0, .maxExclusive) } ?? 0
        worstWriterWait = worstWait
        worstWriter = worst.flatMap { slot in
            worstWait == 0 ? nil : "pid \(region.slotValue(slot, .pid)) thread \(region.slotValue(slot, .threadIndex))"
        }
        violations = Violation.allCases.map { ($0, region.violations($0)) }
        let first = region.get(.firstViolationKind)
        if first > 0, let kind = Violation(rawValue: Int(first) - 1) {
            let slot = Int(region.get(.firstViolationSlot))
            firstViolation = "\(kind.key) seen by pid \(region.slotValue(slot, .pid)) thread \(region.slotValue(slot, .threadIndex))"
        }
        previousHolderDiedObserved = region.get(.previousHolderDiedObserved)
        deadWriterUpdatesSeen = region.get(.deadWriterUpdatesSeen)
    }

    // MARK: Text

    var text: String {
        var lines: [String] = []
        var setup = "interlock stress: scope \(config.scope.rawValue)"
        if let lockName { setup += " (\(lockName))" }
        setup += ", \(config.processes) process\(config.processes == 1 ? "" : "es") × \(config.threadsPerProcess) thread\(config.threadsPerProcess == 1 ? "" : "s")"
        setup += ", \(config.readPercent)% reads, hold \(Format.duration(config.holdNanoseconds)), seed \(config.seed)"
        lines.append(setup)
        lines.append("elapsed \(Format.seconds(elapsedNanoseconds))" + (config.kill ? ", kill -9 every \(Format.duration(config.killEveryNanoseconds))" : ""))
        lines.append("")
        func pad(_ text: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - text.count)) + text }
        lines.append("mode      " + ["ops", "ops/s", "p50", "p99", "p99.9", "max"].enumerated()
            .map { pad($1, $0 < 2 ? 12 : 11) }.joined())
        for (name, mode) in [("shared   ", shared), ("exclusive", exclusive)] {
            let cells = [Format.count(mode.ops), Format.count(UInt64(mode.opsPerSecond))].map { pad($0, 12) }
                + [mode.latency.p50, mode.latency.p99, mode.latency.p999, mode.latency.max].map { pad(Format.duration($0), 11) }
            lines.append(name + " " + cells.joined())
        }
        lines.append("(acquire latency; quantiles are histogram bucket bounds, within 12.5%)")
        lines.append("")
        lines.append("readers overlapping: up to \(maxConcurrentReaders) at once")
        lines.append("worst writer wait: \(Format.duration(worstWriterWait))" + (worstWriter.map { " (\($0))" } ?? ""))
        var violationLine = "violations: \(totalViolations)"
        if totalViolations > 0 {
            violationLine += " (" + violations.filter { $0.1 > 0 }.map { "\($0.0.key) \($0.1)" }.joined(separator: ", ") + ")"
        }
        lines.append(violationLine)
        lines.append("torn records: \(tornRecords) (the record is a crash-atomic SharedLocked; checked in every hold)")
        if let firstViolation { lines.append("first violation: \(firstViolation)") }
        var recoveryLine = "crash recoveries: \(recoveries)"
        if config.kill {
            recoveryLine += " (kills \(crash.kills): \(crash.killedWhileExclusive) holding exclusive, \(crash.killedMidUpdate) of them mid-update,"
            recoveryLine += " \(crash.killedWhileShared) holding shared; previousWriterDied seen \(previousHolderDiedObserved),"
            recoveryLine += " \(deadWriterUpdatesSeen) after a dead writer's unfinished update; dead shared holders reclaimed \(crash.sharedReclaimed)"
            recoveryLine += lockReclaimedHolders.map { "; the lock reclaimed \($0) dead holders)" } ?? ")"
        }
        lines.append(recoveryLine)
        for failure in failures { lines.append("failure: \(failure)") }
        if let stuck {
            lines.append("watchdog: the run hung")
            lines += stuck.map { "  \($0)" }
        }
        lines.append("result: \(result)")
        return lines.joined(separator: "\n")
    }

    // MARK: JSON

    var json: JSON {
        .object([
            ("result", .string(result)),
            ("scope", .string(config.scope.rawValue)),
            ("name", lockName.map(JSON.string) ?? .null),
            ("processes", .integer(Int64(config.processes))),
            ("threadsPerProcess", .integer(Int64(config.threadsPerProcess))),
            ("readPercent", .integer(Int64(config.readPercent))),
            ("holdNanoseconds", .unsigned(config.holdNanoseconds)),
            ("seed", .unsigned(config.seed)),
            ("elapsedSeconds", .number((Double(elapsedNanoseconds) / 1e6).rounded() / 1e3)),
            ("ops", .unsigned(shared.ops + exclusive.ops)),
            ("shared", shared.json),
            ("exclusive", exclusive.json),
            ("maxConcurrentReaders", .unsigned(maxConcurrentReaders)),
            ("worstWriterWaitNanoseconds", .unsigned(worstWriterWait)),
            ("violations", .unsigned(totalViolations)),
            ("violationKinds", .object(violations.map { ($0.0.key, .unsigned($0.1)) })),
            ("firstViolation", firstViolation.map(JSON.string) ?? .null),
            ("tornRecords", .unsigned(tornRecords)),
            ("recoveries", .unsigned(recoveries)),
            ("crash", .object([
                ("kills", .integer(Int64(crash.kills))),
                ("killedWhileExclusive", .integer(Int64(crash.killedWhileExclusive))),
                ("killedMidUpdate", .integer(Int64(crash.killedMidUpdate))),
                ("killedWhileShared", .integer(Int64(crash.killedWhileShared))),
                ("previousHolderDiedObserved", .unsigned(previousHolderDiedObserved)),
                ("deadWriterUpdatesSeen", .unsigned(deadWriterUpdatesSeen)),
                ("deadSharedHoldersReclaimed", .integer(Int64(crash.sharedReclaimed))),
                ("lockReclaimedHolders", lockReclaimedHolders.map { .integer(Int64($0)) } ?? .null),
            ])),
            ("failures", .array(failures.map(JSON.string))),
            ("watchdog", stuck.map { .array($0.map(JSON.string)) } ?? .null),
        ])
    }
}
