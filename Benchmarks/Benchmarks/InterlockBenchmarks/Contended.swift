// Group 2: two parties hammering one lock with a fixed read/write mix: throughput.
//
// Threads: ours (threads scope) against raw pthread_rwlock, default and writer-preferring.
// Processes (the benchmark process and one fork()ed helper): ours (fork-shared and named scopes)
// against raw pthread_rwlock, both kinds, with PTHREAD_PROCESS_SHARED in MAP_SHARED memory.
//
// Each iteration is 1,000,000 operations (.mega), half per party, started together; wallClock
// is per operation. Critical sections are tiny but real: a shared hold reads a counter, an
// exclusive hold increments it. Mixes: 100% read, 90/10, 50/50, 100% write.
//
// Reading the numbers: with sections this small, a lock that puts the other party to sleep
// finishes sooner (one core then runs uncontended, with no cache-line ping-pong), so an
// iteration is either "both ran" (~40-80 ns/op) or "mostly one ran" (~8-12 ns/op), and the
// median can flip between runs for the glibc kinds; so can other load on a 2-core machine.
// The custom metric `parallelism` tells which: the two parties' CPU time ÷ wall time, in percent
// (200: both ran throughout; near 100: one at a time).

import Benchmark
import Interlock

enum Mix: CaseIterable {
    case read100, read90, read50, write100

    var label: String {
        switch self {
        case .read100: "read100"
        case .read90: "read90"
        case .read50: "read50"
        case .write100: "write100"
        }
    }

    /// Operation `i` is a write when `i % writeEvery == 0`; 0 means never.
    var writeEvery: Int {
        switch self {
        case .read100: 0
        case .read90: 10
        case .read50: 2
        case .write100: 1
        }
    }
}

/// One party's share of an iteration. `phase` staggers the parties' writes.
@inline(__always)
func runMix<Lock: ReaderWriterLock>(_ lock: Lock, _ counter: GuardedCounter, operations: Int, writeEvery: Int, phase: Int) {
    for i in 0..<operations {
        if writeEvery != 0, (i &+ phase) % writeEvery == 0 {
            lock.lockExclusive()
            counter.increment()
            lock.unlockExclusive()
        } else {
            lock.lockShared()
            blackHole(counter.read())
            lock.unlockShared()
        }
    }
}

/// A lock, the counter it guards, and the helper party.
final class ContendedRig<Lock: ReaderWriterLock>: @unchecked Sendable {
    // Sound: the lock types are thread- and process-safe; the counter is only touched under the lock.
    let lock: Lock
    let counter: GuardedCounter
    let helper: LockstepHelper
    let region: SharedRegion

    init(_ kind: LockstepHelper.Kind, operations: Int, mix: Mix, lock makeLock: (SharedRegion) throws -> Lock) rethrows {
        let region = SharedRegion()
        let lock = try makeLock(region)
        let counter = region.makeCounter()
        self.region = region
        self.lock = lock
        self.counter = counter
        self.helper = LockstepHelper(kind, region: region) {
            runMix(lock, counter, operations: operations, writeEvery: mix.writeEvery, phase: mix.writeEvery / 2)
        }
    }
}

let parallelism = BenchmarkMetric.custom("parallelism", polarity: .prefersLarger, useScalingFactor: false)

func registerContended() {
    let configuration = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, parallelism],
        warmupIterations: 1,
        scalingFactor: .mega,
        maxDuration: Settings.maxDuration,
        maxIterations: Settings.maxIterations(25)
    )
    let perParty = BenchmarkScalingFactor.mega.rawValue / 2

    func contended<Lock: ReaderWriterLock>(
        _ label: String, _ kind: LockstepHelper.Kind,
        undo: @escaping (Lock) throws -> Void = { _ in },
        _ makeLock: @escaping (SharedRegion) throws -> Lock
    ) {
        for mix in Mix.allCases {
            let rig = Fixture({ try ContendedRig(kind, operations: perParty, mix: mix, lock: makeLock) }, undo: { rig in
                rig.helper.stop()
                try undo(rig.lock)
            })
            Benchmark("Contended.\(mix.label).\(label)", configuration: configuration, closure: { benchmark in
                let rig = rig.current
                let wallBefore = monotonicNanoseconds()
                var ownCPU: UInt64 = 0
                let helperCPU = rig.helper.runIteration {
                    let cpuBefore = threadCPUNanoseconds()
                    runMix(rig.lock, rig.counter, operations: perParty, writeEvery: mix.writeEvery, phase: 0)
                    ownCPU = threadCPUNanoseconds() &- cpuBefore
                }
                let wall = max(1, monotonicNanoseconds() &- wallBefore)
                benchmark.measurement(parallelism, Int((ownCPU &+ helperCPU) &* 100 / wall))
            }, setup: { try rig.setUp() }, teardown: { try rig.tearDown() })
        }
    }

    // Two threads.
    contended("SharedLock-threads", .thread) { _ in SharedLock() }
    contended("pthread-default", .thread) { _ in RawRWLock(.readerPreferring) }
    contended("pthread-preferWriter", .thread) { _ in RawRWLock(.writerPreferring) }

    // Two processes (parent + fork()ed helper); the lock is made before the fork.
    contended("SharedLock-forkShared-2proc", .process) { _ in try SharedLock.forkShared() }
    contended("SharedLock-named-2proc", .process, undo: removeIfNamed) { _ in
        try SharedLock(named: uniqueLockName("contended"))
    }
    contended("pthread-default-2proc", .process) { RawRWLock(.readerPreferring, processShared: $0) }
    contended("pthread-preferWriter-2proc", .process) { RawRWLock(.writerPreferring, processShared: $0) }
}
