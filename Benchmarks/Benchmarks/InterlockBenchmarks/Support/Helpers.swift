// Second participants for the contended groups: a helper thread, or a fork()ed helper process,
// that runs its share of an iteration in step with the benchmark's own thread.

import Glibc
import Synchronization

/// CLOCK_MONOTONIC in nanoseconds.
@inline(__always) func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

/// CPU time the calling thread has used, in nanoseconds.
@inline(__always) func threadCPUNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

/// Starts a joinable thread running `body`.
func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    let result = pthread_create(&thread, nil, { argument in
        Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue().body()
        return nil
    }, box)
    check(result, "pthread_create")
    return thread
}

/// One helper (thread or forked process) that runs `work` once per iteration, started together
/// with the benchmark's thread: both post an arrival and spin until both arrived, so neither runs
/// alone at the start. The end of an iteration is when both have finished their share.
///
/// The control words live in a `SharedRegion`, so the same code drives a thread or a process.
final class LockstepHelper: @unchecked Sendable {
    // Sound: the shared control words are semaphores and atomics; `generation` and `child`
    // are only touched by the benchmark's thread.
    enum Kind: Sendable { case thread, process }

    private let start: UnsafeMutablePointer<sem_t>
    private let finished: UnsafeMutablePointer<sem_t>
    private let arrivals: UnsafeMutablePointer<Atomic<UInt64>>
    private let stopping: UnsafeMutablePointer<Atomic<Bool>>
    private let helperCPU: UnsafeMutablePointer<Atomic<UInt64>>
    private let region: SharedRegion
    private var generation: UInt64 = 0
    private var thread: pthread_t?
    private var child: pid_t?

    init(_ kind: Kind, region: SharedRegion, work: @escaping @Sendable () -> Void) {
        self.region = region
        start = region.allocate(sem_t.self)
        finished = region.allocate(sem_t.self)
        arrivals = region.allocate(Atomic<UInt64>.self)
        arrivals.initialize(to: Atomic(0))
        stopping = region.allocate(Atomic<Bool>.self)
        stopping.initialize(to: Atomic(false))
        helperCPU = region.allocate(Atomic<UInt64>.self)
        helperCPU.initialize(to: Atomic(0))
        let processShared: Int32 = kind == .process ? 1 : 0
        check(sem_init(start, processShared, 0), "sem_init")
        check(sem_init(finished, processShared, 0), "sem_init")

        let loop = HelperLoop(
            start: start, finished: finished, arrivals: arrivals, stopping: stopping, cpu: helperCPU, work: work
        )
        switch kind {
        case .thread:
            thread = startThread { loop.run(parent: nil) }
        case .process:
            let parent = getpid()
            let pid = fork()
            precondition(pid >= 0, "fork failed: errno \(errno)")
            if pid == 0 {
                loop.run(parent: parent)
                _exit(0)
            }
            child = pid
        }
    }

    /// Runs one iteration: the helper's `work` and `ownShare` on this thread, started together.
    /// - Returns: the CPU time the helper used for its share, in nanoseconds.
    @discardableResult
    func runIteration(_ ownShare: () -> Void) -> UInt64 {
        generation += 1
        sem_post(start)
        arriveAndWait(arrivals, generation)
        ownShare()
        while sem_wait(finished) != 0 {}
        return helperCPU.pointee.load(ordering: .acquiring)
    }

    /// Ends the helper and waits for it.
    func stop() {
        stopping.pointee.store(true, ordering: .releasing)
        sem_post(start)
        if let thread {
            pthread_join(thread, nil)
            self.thread = nil
        }
        if let child {
            var status: Int32 = 0
            while waitpid(child, &status, 0) == -1 && errno == EINTR {}
            self.child = nil
        }
    }

    deinit {
        stop()
        sem_destroy(start)
        sem_destroy(finished)
    }
}

/// The helper's side of `LockstepHelper`.
private struct HelperLoop: @unchecked Sendable {
    let start: UnsafeMutablePointer<sem_t>
    let finished: UnsafeMutablePointer<sem_t>
    let arrivals: UnsafeMutablePointer<Atomic<UInt64>>
    let stopping: UnsafeMutablePointer<Atomic<Bool>>
    let cpu: UnsafeMutablePointer<Atomic<UInt64>>
    let work: @Sendable () -> Void

    /// - Parameter parent: for a forked helper, the parent's pid: the helper exits if orphaned.
    func run(parent: pid_t?) {
        var generation: UInt64 = 0
        while true {
            waitForStart(parent: parent)
            if stopping.pointee.load(ordering: .acquiring) { return }
            generation += 1
            arriveAndWait(arrivals, generation)
            let cpuBefore = threadCPUNanoseconds()
            work()
            cpu.pointee.store(threadCPUNanoseconds() &- cpuBefore, ordering: .releasing)
            sem_post(finished)
        }
    }

    private func waitForStart(parent: pid_t?) {
        guard let parent else {
            while sem_wait(start) != 0 {}
            return
        }
        while true {
            var deadline = timespec()
            clock_gettime(CLOCK_REALTIME, &deadline)
            deadline.tv_sec += 1
            if sem_timedwait(start, &deadline) == 0 { return }
            if getppid() != parent { _exit(0) }
        }
    }
}

/// Two-party start barrier for iteration `generation` (1, 2, ...): arrivals only grow.
@inline(__always) private func arriveAndWait(_ arrivals: UnsafeMutablePointer<Atomic<UInt64>>, _ generation: UInt64) {
    arrivals.pointee.add(1, ordering: .acquiringAndReleasing)
    var spins = 0
    while arrivals.pointee.load(ordering: .acquiring) < 2 * generation {
        spins += 1
        if spins.isMultiple(of: 1_024) { sched_yield() }
    }
}
