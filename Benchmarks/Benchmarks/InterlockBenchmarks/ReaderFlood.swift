// Group 3: a writer's wait under a reader flood.
//
// Two reader threads take the lock in shared mode back to back (each hold reads the counter
// 2,000 times, a few µs, so the two holds overlap), while the benchmark's thread is a writer that
// sleeps ~50 µs, then takes the lock exclusively, 50 times per iteration. Recorded per exclusive
// acquire: how long it waited (custom metric `writerWait`, ns, percentiles over all acquires),
// and per iteration the readers' throughput meanwhile
// (`readerOps`, shared acquisitions per millisecond).
//
// Ours (threads and fork-shared scopes) against raw pthread_rwlock: glibc's default kind prefers
// readers (the writer can wait indefinitely), the writer-preferring kind does not.
//
// So that a starved writer cannot stall the run, readers stand aside once the writer has waited
// `starvationCap`: a wait that long is reported as (at least) the cap.

import Benchmark
import Glibc
import Interlock
import Synchronization

let writerWait = BenchmarkMetric.custom("writerWait", polarity: .prefersSmaller, useScalingFactor: false)
let readerOps = BenchmarkMetric.custom("readerOps", polarity: .prefersLarger, useScalingFactor: false)

private let starvationCap: UInt64 = 500_000_000 // ns
private let readerHoldReads = 2_000
private let writerPause = timespec(tv_sec: 0, tv_nsec: 50_000)
private let writesPerIteration = 50

final class FloodRig<Lock: ReaderWriterLock>: @unchecked Sendable {
    // Sound: the lock is thread-safe; the counter is only touched under it; the rest are atomics
    // in the shared region.
    let lock: Lock
    let counter: GuardedCounter
    private let region: SharedRegion
    private let stopping: UnsafeMutablePointer<Atomic<Bool>>
    /// When the writer started its current wait (monotonic ns), 0 when it is not waiting.
    private let writerWaitingSince: UnsafeMutablePointer<Atomic<UInt64>>
    private let readerAcquisitions: UnsafeMutablePointer<Atomic<Int>>
    private var readers: [pthread_t] = []

    init(_ makeLock: () throws -> Lock) rethrows {
        region = SharedRegion()
        lock = try makeLock()
        counter = region.makeCounter()
        stopping = region.allocate(Atomic<Bool>.self)
        stopping.initialize(to: Atomic(false))
        writerWaitingSince = region.allocate(Atomic<UInt64>.self)
        writerWaitingSince.initialize(to: Atomic(0))
        readerAcquisitions = region.allocate(Atomic<Int>.self)
        readerAcquisitions.initialize(to: Atomic(0))
        for _ in 0..<2 {
            readers.append(startThread { [self] in readLoop() })
        }
    }

    private func readLoop() {
        var acquisitions = 0
        while !stopping.pointee.load(ordering: .relaxed) {
            lock.lockShared()
            for _ in 0..<readerHoldReads { blackHole(counter.read()) }
            lock.unlockShared()
            acquisitions += 1
            if acquisitions.isMultiple(of: 64) {
                readerAcquisitions.pointee.add(64, ordering: .relaxed)
                standAsideIfWriterStarved()
            }
        }
    }

    private func standAsideIfWriterStarved() {
        let since = writerWaitingSince.pointee.load(ordering: .relaxed)
        guard since != 0, monotonicNanoseconds() &- since > starvationCap else { return }
        while writerWaitingSince.pointee.load(ordering: .relaxed) == since, !stopping.pointee.load(ordering: .relaxed) {
            sched_yield()
        }
    }

    /// The writer's side of one iteration.
    func runWriter(_ benchmark: Benchmark) {
        let readsBefore = readerAcquisitions.pointee.load(ordering: .relaxed)
        let started = monotonicNanoseconds()
        for _ in 0..<writesPerIteration {
            var pause = writerPause
            nanosleep(&pause, nil)
            let before = monotonicNanoseconds()
            writerWaitingSince.pointee.store(before, ordering: .relaxed)
            lock.lockExclusive()
            let waited = monotonicNanoseconds() &- before
            writerWaitingSince.pointee.store(0, ordering: .relaxed)
            counter.increment()
            lock.unlockExclusive()
            benchmark.measurement(writerWait, Int(waited))
        }
        let elapsedMilliseconds = max(1, Int(monotonicNanoseconds() &- started) / 1_000_000)
        let reads = readerAcquisitions.pointee.load(ordering: .relaxed) - readsBefore
        benchmark.measurement(readerOps, reads / elapsedMilliseconds)
    }

    func stop() {
        stopping.pointee.store(true, ordering: .relaxed)
        for reader in readers { pthread_join(reader, nil) }
        readers = []
    }
}

func registerReaderFlood() {
    let configuration = Benchmark.Configuration(
        metrics: [.wallClock, writerWait, readerOps],
        warmupIterations: 1,
        scalingFactor: .one,
        maxDuration: Settings.maxDuration,
        maxIterations: Settings.maxIterations(40)
    )

    func flood<Lock: ReaderWriterLock>(_ label: String, _ makeLock: @escaping () throws -> Lock) {
        let rig = Fixture({ try FloodRig(makeLock) }, undo: { $0.stop() })
        Benchmark("ReaderFlood.\(label)", configuration: configuration, closure: { benchmark in
            rig.current.runWriter(benchmark)
        }, setup: { try rig.setUp() }, teardown: { try rig.tearDown() })
    }

    flood("SharedLock-threads") { SharedLock() }
    flood("SharedLock-forkShared") { try SharedLock.forkShared() }
    flood(RawRWLock.Kind.readerPreferring.rawValue) { RawRWLock(.readerPreferring) }
    flood(RawRWLock.Kind.writerPreferring.rawValue) { RawRWLock(.writerPreferring) }
}
