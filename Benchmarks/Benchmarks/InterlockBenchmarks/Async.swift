// Group: async acquisition (issue 12).
//
// Uncontended: `try await lock.withShared { }` / `withExclusive { }` on a free lock (taken at
// once, without suspending), beside the blocking closure pair `lock.withShared { }` measured in
// this group too, in the threads scope and a named lock. Target: async ≤ 1.5× blocking.
// Gated: zero mallocs per acquire+release (Thresholds/, see Settings.mallocGate).
//
// Release to resume: a task waits for exclusive mode (suspended; the lock's waiter thread waits
// for the lock) while a holder — a thread, or a forked process for a fork-shared lock — holds
// shared mode. Once the holder sees the writer announced (its own try fails) it waits 200 µs
// (so the waiter thread is asleep), notes the time and releases; the task's body notes the time
// it runs. Metric `resumeLatency`: release → body, ns, 10 waits per iteration.

import Benchmark
import Glibc
import Interlock
import Synchronization

let resumeLatency = BenchmarkMetric.custom("resumeLatency", polarity: .prefersSmaller, useScalingFactor: false)

func registerAsync() {
    let configuration = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: Settings.maxDuration,
        maxIterations: Settings.maxIterations(10_000),
        thresholds: Settings.mallocGate
    )
    let counter = GuardedCounter(pointer: .allocate(capacity: 1))
    counter.pointer.initialize(to: 0)

    func pairs(_ label: String, _ make: @escaping () throws -> SharedLock, undo: @escaping (SharedLock) throws -> Void = { _ in }) {
        let lock = Fixture(make, undo: undo)
        Benchmark("Async.uncontended.shared.\(label)", configuration: configuration, closure: { benchmark async in
            let lock = lock.current
            do {
                for _ in benchmark.scaledIterations {
                    try await lock.withShared { blackHole(counter.read()) }
                }
            } catch { fatalError("\(error)") }
        }, setup: { try lock.setUp() }, teardown: { try lock.tearDown() })
        Benchmark("Async.uncontended.exclusive.\(label)", configuration: configuration, closure: { benchmark async in
            let lock = lock.current
            do {
                for _ in benchmark.scaledIterations {
                    try await lock.withExclusive { counter.increment() }
                }
            } catch { fatalError("\(error)") }
        }, setup: { try lock.setUp() }, teardown: { try lock.tearDown() })
        // The blocking closure pairs, in the same group (a synchronous benchmark closure).
        Benchmark("Async.uncontended.shared.\(label)-blocking", configuration: configuration, closure: { benchmark in
            let lock = lock.current
            for _ in benchmark.scaledIterations {
                lock.withShared { blackHole(counter.read()) }
            }
        }, setup: { try lock.setUp() }, teardown: { try lock.tearDown() })
        Benchmark("Async.uncontended.exclusive.\(label)-blocking", configuration: configuration, closure: { benchmark in
            let lock = lock.current
            for _ in benchmark.scaledIterations {
                lock.withExclusive { counter.increment() }
            }
        }, setup: { try lock.setUp() }, teardown: { try lock.tearDown() })
    }
    pairs("SharedLock-threads") { SharedLock() }
    pairs("SharedLock-named", { try SharedLock(named: uniqueLockName("async")) }, undo: removeIfNamed)

    let resumeConfiguration = Benchmark.Configuration(
        metrics: [.wallClock, resumeLatency],
        warmupIterations: 1,
        scalingFactor: .one,
        maxDuration: Settings.maxDuration,
        maxIterations: Settings.maxIterations(200)
    )
    func resume(_ label: String, _ kind: LockstepHelper.Kind, _ make: @escaping () throws -> SharedLock) {
        let rig = Fixture({ try ResumeRig(kind, make) }, undo: { $0.stop() })
        Benchmark("Async.releaseToResume.\(label)", configuration: resumeConfiguration, closure: { benchmark async in
            let rig = rig.current
            for _ in 0..<10 {
                benchmark.measurement(resumeLatency, await rig.waitOnce())
            }
        }, setup: { try rig.setUp() }, teardown: { try rig.tearDown() })
    }
    resume("SharedLock-threads", .thread) { SharedLock() }
    resume("SharedLock-forkShared", .process) { try SharedLock.forkShared() }
}

/// A holder (thread or forked process) and the control words it shares with the benchmark.
final class ResumeRig: @unchecked Sendable {
    // Sound: the control words are a semaphore and atomics in a SharedRegion; `helper` and
    // `child` are only touched by the benchmark's setup and teardown.
    let lock: SharedLock
    private let region = SharedRegion()
    private let start: UnsafeMutablePointer<sem_t>
    /// 1 while the holder holds shared mode for the current wait.
    private let holding: UnsafeMutablePointer<Atomic<Int>>
    /// When the holder released (monotonic ns).
    private let releasedAt: UnsafeMutablePointer<Atomic<UInt64>>
    private let stopping: UnsafeMutablePointer<Atomic<Bool>>
    private var thread: pthread_t?
    private var child: pid_t?

    init(_ kind: LockstepHelper.Kind, _ make: () throws -> SharedLock) throws {
        lock = try make()
        start = region.allocate(sem_t.self)
        holding = region.allocate(Atomic<Int>.self)
        holding.initialize(to: Atomic(0))
        releasedAt = region.allocate(Atomic<UInt64>.self)
        releasedAt.initialize(to: Atomic(0))
        stopping = region.allocate(Atomic<Bool>.self)
        stopping.initialize(to: Atomic(false))
        check(sem_init(start, kind == .process ? 1 : 0, 0), "sem_init")
        switch kind {
        case .thread:
            thread = startThread { [self] in holderLoop() }
        case .process:
            let pid = fork()
            precondition(pid >= 0, "fork failed: errno \(errno)")
            if pid == 0 {
                holderLoop()
                _exit(0)
            }
            child = pid
        }
    }

    /// The holder: per wait, take shared mode, wait until a writer is announced (a try of
    /// its own fails), let the waiter thread fall asleep, note the time and release.
    private func holderLoop() {
        while true {
            while sem_wait(start) != 0 {}
            if stopping.pointee.load(ordering: .acquiring) { return }
            lock.lockShared()
            holding.pointee.store(1, ordering: .releasing)
            while lock.tryLockShared() {
                lock.unlockShared()
                var pause = timespec(tv_sec: 0, tv_nsec: 20_000)
                nanosleep(&pause, nil)
            }
            var settle = timespec(tv_sec: 0, tv_nsec: 200_000)
            nanosleep(&settle, nil)
            releasedAt.pointee.store(monotonicNanoseconds(), ordering: .releasing)
            holding.pointee.store(0, ordering: .releasing)
            lock.unlockShared()
        }
    }

    /// One wait: returns the ns from the holder's release to this task's body.
    func waitOnce() async -> Int {
        sem_post(start)
        while holding.pointee.load(ordering: .acquiring) == 0 { sched_yield() }
        do {
            let ran = try await lock.withExclusive { monotonicNanoseconds() }
            return Int(ran &- releasedAt.pointee.load(ordering: .acquiring))
        } catch {
            fatalError("\(error)")
        }
    }

    func stop() {
        stopping.pointee.store(true, ordering: .releasing)
        sem_post(start)
        if let thread { pthread_join(thread, nil) }
        if let child {
            var status: Int32 = 0
            while waitpid(child, &status, 0) == -1 && errno == EINTR {}
        }
        thread = nil
        child = nil
    }
}
