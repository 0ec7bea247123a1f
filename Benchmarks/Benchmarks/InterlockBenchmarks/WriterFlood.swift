// Group 5: a reader's wait under a writer flood (the mirror image of ReaderFlood.swift).
//
// Three writers take the lock exclusively back to back, each hold lasting `writerHold` (10 µs,
// spent spinning on the clock, so it is CPU time, not a sleep), while the benchmark's thread is
// a reader that pauses ~50 µs, then takes the lock in shared mode, again and again for
// `readerWindow` per iteration. Recorded per shared acquire: how long it waited (custom metric
// `readerWait`, ns, percentiles over all acquires; the metric's sample count is the number of
// acquires); per iteration, the reader's acquisitions per second (`readerAcqPerS`) and the
// writers' exclusive acquisitions per millisecond, all three together (`writerAcqPerMs`: a
// lock that lets the reader in should not collapse the writers' throughput).
//
// Writers are threads of this process, or (`-3proc`) fork()ed processes. Ours (threads scope;
// fork-shared scope for processes) against raw pthread_rwlock: glibc's default kind (prefers
// readers, so the reader should get in after the current hold) and the writer-preferring kind
// (the reader can wait indefinitely), both PTHREAD_PROCESS_SHARED in MAP_SHARED memory for the
// process variants.
//
// Target (issue 10): ours, reader wait p99 ≤ 2 writer holds + 100 µs.
//
// Bounded in time whatever the lock does: an iteration ends once `readerWindow` has passed
// (after the acquire in progress), and so that a starved reader cannot stall the run, writers
// stand aside once the reader has waited `readerStarvationCap`, so a wait that long is reported
// as (at least) the cap. The group's run length per benchmark is `Settings.floodDuration`
// (2 s by default; `compare.sh --quick`: 0.5 s), plus one capped wait at most.

import Benchmark
import Glibc
import Interlock
import Synchronization

let readerWait = BenchmarkMetric.custom("readerWait", polarity: .prefersSmaller, useScalingFactor: false)
let readerAcquisitionsPerSecond = BenchmarkMetric.custom("readerAcqPerS", polarity: .prefersLarger, useScalingFactor: false)
let writerAcquisitionsPerMillisecond = BenchmarkMetric.custom("writerAcqPerMs", polarity: .prefersLarger, useScalingFactor: false)

private let writerCount = 3
private let writerHold: UInt64 = 10_000 // ns
private let readerPause = timespec(tv_sec: 0, tv_nsec: 50_000)
private let readerWindow: UInt64 = 100_000_000 // ns per iteration
private let readerStarvationCap: UInt64 = 500_000_000 // ns

final class WriterFloodRig<Lock: ReaderWriterLock>: @unchecked Sendable {
    // Sound: the lock is thread- and process-safe; the counter is only touched under it; the
    // control words are atomics in the MAP_SHARED region, which forked writers share; `threads`
    // and `children` are only touched by the benchmark's thread (setup, teardown).
    let lock: Lock
    private let counter: GuardedCounter
    private let region: SharedRegion
    private let stopping: UnsafeMutablePointer<Atomic<Bool>>
    /// When the reader started its current wait (monotonic ns, system-wide), 0 when it is not waiting.
    private let readerWaitingSince: UnsafeMutablePointer<Atomic<UInt64>>
    /// Exclusive acquisitions by all writers.
    private let writerAcquisitions: UnsafeMutablePointer<Atomic<Int>>
    private var threads: [pthread_t] = []
    private var children: [pid_t] = []

    /// - Parameter makeLock: makes the lock; a process-shared baseline goes in the region given.
    init(_ kind: LockstepHelper.Kind, _ makeLock: (SharedRegion) throws -> Lock) rethrows {
        region = SharedRegion()
        lock = try makeLock(region)
        counter = region.makeCounter()
        stopping = region.allocate(Atomic<Bool>.self)
        stopping.initialize(to: Atomic(false))
        readerWaitingSince = region.allocate(Atomic<UInt64>.self)
        readerWaitingSince.initialize(to: Atomic(0))
        writerAcquisitions = region.allocate(Atomic<Int>.self)
        writerAcquisitions.initialize(to: Atomic(0))
        for _ in 0..<writerCount {
            switch kind {
            case .thread:
                threads.append(startThread { [self] in writeLoop(parent: nil) })
            case .process:
                let parent = getpid()
                let pid = fork()
                precondition(pid >= 0, "fork failed: errno \(errno)")
                if pid == 0 {
                    // The child only runs the write loop (the lock, the region's atomics, the
                    // clock) and leaves with _exit: it never returns into the harness.
                    writeLoop(parent: parent)
                    _exit(0)
                }
                children.append(pid)
            }
        }
    }

    /// One writer: exclusive holds of `writerHold`, back to back, until `stop()`.
    /// - Parameter parent: for a forked writer, the parent's pid: the writer exits if orphaned.
    private func writeLoop(parent: pid_t?) {
        var holds = 0
        while !stopping.pointee.load(ordering: .relaxed) {
            standAsideIfReaderStarved(parent: parent)
            lock.lockExclusive()
            let start = monotonicNanoseconds()
            counter.increment()
            while monotonicNanoseconds() &- start < writerHold {}
            lock.unlockExclusive()
            writerAcquisitions.pointee.add(1, ordering: .relaxed)
            holds += 1
            if let parent, holds.isMultiple(of: 1_024), getppid() != parent { _exit(0) }
        }
    }

    private func standAsideIfReaderStarved(parent: pid_t?) {
        let since = readerWaitingSince.pointee.load(ordering: .relaxed)
        guard since != 0, monotonicNanoseconds() &- since > readerStarvationCap else { return }
        while readerWaitingSince.pointee.load(ordering: .relaxed) == since, !stopping.pointee.load(ordering: .relaxed) {
            if let parent, getppid() != parent { _exit(0) }
            sched_yield()
        }
    }

    /// The reader's side of one iteration: shared acquires for `readerWindow`.
    func runReader(_ benchmark: Benchmark) {
        let writesBefore = writerAcquisitions.pointee.load(ordering: .relaxed)
        let started = monotonicNanoseconds()
        var acquisitions = 0
        repeat {
            var pause = readerPause
            nanosleep(&pause, nil)
            let before = monotonicNanoseconds()
            readerWaitingSince.pointee.store(before, ordering: .relaxed)
            lock.lockShared()
            let waited = monotonicNanoseconds() &- before
            readerWaitingSince.pointee.store(0, ordering: .relaxed)
            blackHole(counter.read())
            lock.unlockShared()
            benchmark.measurement(readerWait, Int(waited))
            acquisitions += 1
        } while monotonicNanoseconds() &- started < readerWindow
        let elapsed = max(1, Int(monotonicNanoseconds() &- started))
        let writes = writerAcquisitions.pointee.load(ordering: .relaxed) - writesBefore
        benchmark.measurement(readerAcquisitionsPerSecond, acquisitions * 1_000_000_000 / elapsed)
        benchmark.measurement(writerAcquisitionsPerMillisecond, writes * 1_000_000 / elapsed)
    }

    func stop() {
        stopping.pointee.store(true, ordering: .relaxed)
        for thread in threads { pthread_join(thread, nil) }
        threads = []
        for child in children {
            var status: Int32 = 0
            while waitpid(child, &status, 0) == -1 && errno == EINTR {}
        }
        children = []
    }
}

func registerWriterFlood() {
    let configuration = Benchmark.Configuration(
        metrics: [.wallClock, readerWait, readerAcquisitionsPerSecond, writerAcquisitionsPerMillisecond],
        // Raw ns: with automatic units a row whose max is a capped wait (500 ms) would be shown
        // in ms, rounding the µs percentiles that matter to 0.
        units: [readerWait: .count],
        warmupIterations: 1,
        scalingFactor: .one,
        maxDuration: Settings.floodDuration,
        maxIterations: Settings.maxIterations(1_000)
    )

    func flood<Lock: ReaderWriterLock>(
        _ label: String, _ kind: LockstepHelper.Kind, _ makeLock: @escaping (SharedRegion) throws -> Lock
    ) {
        let rig = Fixture({ try WriterFloodRig(kind, makeLock) }, undo: { $0.stop() })
        Benchmark("WriterFlood.\(label)", configuration: configuration, closure: { benchmark in
            rig.current.runReader(benchmark)
        }, setup: { try rig.setUp() }, teardown: { try rig.tearDown() })
    }

    // Writers are threads.
    flood("SharedLock-threads", .thread) { _ in SharedLock() }
    flood("pthread-default", .thread) { _ in RawRWLock(.readerPreferring) }
    flood("pthread-preferWriter", .thread) { _ in RawRWLock(.writerPreferring) }

    // Writers are fork()ed processes; the lock is made before the forks.
    flood("SharedLock-forkShared-3proc", .process) { _ in try SharedLock.forkShared() }
    flood("pthread-default-3proc", .process) { RawRWLock(.readerPreferring, processShared: $0) }
    flood("pthread-preferWriter-3proc", .process) { RawRWLock(.writerPreferring, processShared: $0) }
}

extension Settings {
    /// `INTERLOCK_BENCH_FLOOD_MS`: run length per WriterFlood benchmark (default 2000 ms; the
    /// iterations are fixed windows, so this, not an iteration count, bounds the run).
    static let floodDuration: Duration = {
        guard let raw = getenv("INTERLOCK_BENCH_FLOOD_MS"), let milliseconds = Int(String(cString: raw)), milliseconds > 0 else {
            return .milliseconds(2_000)
        }
        return .milliseconds(milliseconds)
    }()
}
