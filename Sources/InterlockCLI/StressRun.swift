// The parent of a stress run: sets up the record (a `SharedLocked` whose lock is the
// run's lock) and the data region for the scope, starts the workers, and watches them
// (deadline, progress line, --kill, watchdog).
//
// In the fork scope the parent never starts a thread: the record and the region are made
// before the first fork(), and replacements after a kill are forked from the same quiet
// single-threaded parent.

import Glibc
import Interlock

/// A setup failure: printed as one line, exit status 1 (2 for a bad `--name`).
struct StressSetupError: Error {
    var message: String
    var isUsage = false
}

/// What `--kill` did, for the report.
struct CrashCounts {
    var kills = 0
    var killedWhileShared = 0
    var killedWhileExclusive = 0
    /// Killed shared holders whose share was provably reclaimed: a writer entered later.
    var sharedReclaimed = 0
    /// Kills that caught a writer with part of its new record written.
    var killedMidUpdate = 0
}

/// One stress run, from setup to the report.
final class StressRun {
    let config: StressConfig
    /// The record writers write and readers verify; its lock is the run's lock.
    let record: SharedLocked<StressRecord>
    let region: StressRegion
    private let lockName: String?
    private let removeLockAtEnd: Bool
    private let dataSegmentName: String?
    private let parentPID = getpid()

    var workerPIDs: [pid_t?]
    private var threads: [pthread_t] = []
    var random: SplitMix64
    var crash = CrashCounts()
    /// Exclusive-op totals at the kills of shared holders not yet proven reclaimed.
    var pendingReclaims: [UInt64] = []
    var failures: [String] = []
    private var stuck: [String]?
    private var interrupted = false

    /// Creates the record, its lock, and the data region (before any worker exists).
    init(config: StressConfig) throws(StressSetupError) {
        self.config = config
        random = SplitMix64(state: config.seed ^ 0x5EED)
        workerPIDs = Array(repeating: nil, count: config.processes)
        let setup = try Setup(config: config)
        record = setup.record
        region = setup.region
        lockName = setup.lockName
        removeLockAtEnd = setup.createdLock
        dataSegmentName = setup.dataSegmentName
    }

    /// The record (with the lock) and region of a run, per scope.
    private struct Setup {
        var record: SharedLocked<StressRecord>
        var region: StressRegion
        var lockName: String?
        var createdLock = false
        var dataSegmentName: String?

        init(config: StressConfig) throws(StressSetupError) {
            let size = StressRegion.byteSize(slots: config.slotCount)
            do throws(InterlockError) {
                switch config.scope {
                case .threads:
                    record = SharedLocked(StressRecord.initial)
                case .fork:
                    record = try SharedLocked.forkShared(StressRecord.initial, capacity: max(64, 2 * config.processes))
                case .named:
                    let name = config.name ?? "stress-\(getpid())"
                    (record, createdLock) = try Setup.namedRecord(name, capacity: max(64, 2 * config.processes))
                    lockName = name
                }
            } catch {
                if case .invalidName(let name, let reason) = error {
                    throw StressSetupError(message: "--name expects a valid lock name, got '\(name)': \(reason)", isUsage: true)
                }
                if case .invalidPath(let path, let reason) = error {
                    throw StressSetupError(message: "--name expects a valid lock name or path, got '\(path)': \(reason)", isUsage: true)
                }
                throw StressSetupError(message: "cannot create the lock: \(error)")
            }
            do throws(SystemError) {
                if let lockName {
                    let dataName = "/interlock-stress.\(LockTarget(lockName).fileNameSafe).\(getpid())"
                    region = StressRegion.initialize(at: try System.createSegment(dataName, size: size), config: config)
                    dataSegmentName = dataName
                } else {
                    region = StressRegion.initialize(at: try System.mapAnonymous(size: size), config: config)
                }
            } catch {
                if createdLock, let lockName { try? LockTarget(lockName).remove(force: true) }
                throw StressSetupError(message: "cannot create the data region: \(error)")
            }
        }

        /// Creates the named lock with its record, or opens it when it exists (then the
        /// run leaves it; a lock without a stress record is `incompatibleSegment`).
        static func namedRecord(_ name: String, capacity: Int) throws(InterlockError) -> (SharedLocked<StressRecord>, created: Bool) {
            var options = NamedLockOptions()
            options.capacity = capacity
            options.creation = .createOnly
            do throws(InterlockError) {
                return (try LockTarget(name).openRecord(options), true)
            } catch {
                guard error == .alreadyExists(name: name) else { throw error }
            }
            options.creation = .openOnly
            return (try LockTarget(name).openRecord(options), false)
        }
    }

    /// Runs to the end and returns the report.
    func run() -> StressReport {
        System.installInterruptHandler()
        do {
            for index in 0..<config.processes { try startWorker(index) }
        } catch {
            failures.append("cannot start a worker: \(error)")
            region.setPhase(.stopping)
        }
        let start = System.now()
        region.setPhase(.running)
        let end = monitor(start: start)
        if stuck == nil {
            threads.forEach(System.join)
        }
        var report = StressReport(config: config, region: region, lockName: lockName,
                                  elapsedNanoseconds: end - start, crash: crash, failures: failures,
                                  stuck: stuck, interrupted: interrupted)
        report.lockReclaimedHolders = record.snapshot()?.recoveries
        cleanUp()
        return report
    }

    // MARK: Workers

    func startWorker(_ index: Int) throws {
        switch config.scope {
        case .threads:
            for slot in 0..<config.threadsPerProcess {
                let workload = StressWorkload(region: region, record: record, slot: slot, parentPID: nil)
                threads.append(try System.startThread { workload.run() })
            }
        case .fork:
            let pid = try System.forkProcess()
            if pid == 0 {
                System.ignoreInterrupts()
                StressRun.runWorkerProcess(region: region, record: record, processIndex: index, parentPID: parentPID)
            }
            workerPIDs[index] = pid
        case .named:
            workerPIDs[index] = try System.spawnSelf([
                "stress-worker", "--name", lockName!, "--data", dataSegmentName!, "--process", String(index),
            ])
        }
    }

    /// The body of a worker process (a fork child, or `interlock stress-worker`): one
    /// thread per slot of process `processIndex`; exits when they are done.
    static func runWorkerProcess(region: StressRegion, record: SharedLocked<StressRecord>, processIndex: Int, parentPID: pid_t) -> Never {
        let perProcess = Int(region.get(.threadsPerProcess))
        var threads: [pthread_t] = []
        for slot in processIndex * perProcess..<(processIndex + 1) * perProcess {
            let workload = StressWorkload(region: region, record: record, slot: slot, parentPID: parentPID)
            do {
                threads.append(try System.startThread { workload.run() })
            } catch {
                System.printError("interlock stress-worker: \(error)")
                _exit(1)
            }
        }
        threads.forEach(System.join)
        _exit(0)
    }

    func slots(ofProcess index: Int) -> Range<Int> {
        index * config.threadsPerProcess..<(index + 1) * config.threadsPerProcess
    }

    private var allWorkersDone: Bool {
        if config.scope == .threads {
            return (0..<config.slotCount).allSatisfy { region.state($0) == .finished }
        }
        return workerPIDs.allSatisfy { $0 == nil }
    }

    // MARK: Monitor

    /// Watches until every worker is done (or the watchdog fires); returns the end time.
    private func monitor(start: UInt64) -> UInt64 {
        let progressLine = ProgressLine(enabled: System.isTerminal(STDERR_FILENO))
        let deadline = config.durationNanoseconds.map { start + $0 }
        var nextKill = start + config.killEveryNanoseconds
        var lastCount: UInt64 = 0
        var lastProgress = start
        while true {
            reapWorkers()
            let now = System.now()
            if allWorkersDone { break }
            if region.phase == .running {
                if interruptRequested.load(ordering: .relaxed) {
                    interrupted = true
                    region.setPhase(.stopping)
                } else if let deadline, now >= deadline {
                    region.setPhase(.stopping)
                } else if config.kill && now >= nextKill {
                    killOne()
                    nextKill = System.now() + config.killEveryNanoseconds
                }
            }
            let ops = region.totalOps()
            settleReclaims(exclusiveOps: ops.exclusive)
            let count = ops.shared + ops.exclusive + UInt64(finishedSlots())
            if count != lastCount {
                lastCount = count
                lastProgress = now
            } else if now - lastProgress >= config.watchdogNanoseconds {
                fireWatchdog(idle: now - lastProgress)
                progressLine.clear()
                return now
            }
            progressLine.update(now: now, start: start, ops: ops.shared + ops.exclusive,
                                violations: region.totalViolations, kills: config.kill ? crash.kills : nil)
            System.sleep(nanoseconds: 5_000_000)
        }
        progressLine.clear()
        return System.now()
    }

    private func finishedSlots() -> Int {
        (0..<config.slotCount).count { region.state($0) == .finished }
    }

    /// Reaps workers that ended on their own; an unexpected end fails and stops the run.
    private func reapWorkers() {
        guard config.scope != .threads else { return }
        while let (pid, termination) = System.reapAny() {
            guard let index = workerPIDs.firstIndex(of: pid) else { continue }
            workerEnded(index: index, pid: pid, termination: termination)
        }
    }

    func workerEnded(index: Int, pid: pid_t, termination: System.Termination) {
        workerPIDs[index] = nil
        if termination != .exited(0) {
            failures.append("worker process \(index) (pid \(pid)) \(termination)")
            region.setPhase(.stopping)
        }
    }

    // MARK: Watchdog

    private func fireWatchdog(idle: UInt64) {
        var lines = ["no operation completed for \(Format.duration(idle))"]
        let now = System.now()
        for slot in 0..<config.slotCount {
            let state = region.state(slot)
            guard [.waitingShared, .waitingExclusive, .holdingShared, .holdingExclusive].contains(state) else { continue }
            let since = now &- region.slotValue(slot, .stateSince)
            lines.append("pid \(region.slotValue(slot, .pid)) thread \(region.slotValue(slot, .threadIndex)) (slot \(slot)): \(state.label) for \(Format.duration(since))")
        }
        if let snapshot = record.snapshot() {
            lines.append("lock state word \(Format.hex(snapshot.stateWord)): \(Format.decode(snapshot))")
            for holder in snapshot.holders {
                lines.append("lock holder pid \(holder.pid): \(holder.mode.rawValue), \(holder.isAlive ? "alive" : "dead")")
            }
        }
        stuck = lines
        for index in workerPIDs.indices {
            guard let pid = workerPIDs[index] else { continue }
            kill(pid, SIGKILL)
            _ = System.reap(pid)
            workerPIDs[index] = nil
        }
    }

    private func cleanUp() {
        if let dataSegmentName { System.unlinkSegment(dataSegmentName) }
        if removeLockAtEnd, let lockName {
            try? LockTarget(lockName).remove(force: true)
        }
    }
}
