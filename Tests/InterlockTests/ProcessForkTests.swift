// Fork-shared locks between a parent and the children it forks (promises 1, 4 and 5).
//
// Every test body runs inside an exit test: a freshly spawned copy of the test binary
// with nothing else going on, the safe place to fork (the parallel test runner has many
// threads). Forked children report through their exit status and through counters in
// anonymous MAP_SHARED memory; the body exits 0 only if every invariant held, and
// otherwise records what broke as an issue (Swift Testing forwards it from the exit
// test's process) and exits 1.
//
// Invariants, never timings: counters of holders inside each mode, checked inside the
// critical section. Every wait is bounded (30 s) so a broken lock fails instead of hanging.

import Interlock
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Fork-shared locks across processes", .serialized, .timeLimit(.minutes(3)))
struct ProcessForkTests {
    @Test("tryLockShared never fails spuriously in a process scope while no writer holds or waits")
    func tryLockSharedIsNotSpurious() throws {
        final class Shared: @unchecked Sendable {
            let stop = Atomic<Bool>(false)
            let failures = Atomic<Int>(0)
        }
        let lock = try SharedLock.forkShared()
        let shared = Shared()
        // One thread moves this process into and out of the state word over and over
        // (first in, last out); the other only tries. No writer ever exists.
        let churn = TestThread {
            while !shared.stop.load(ordering: .relaxed) { lock.lockShared(); lock.unlockShared() }
        }
        let tries = 100_000
        let tryer = TestThread {
            for _ in 0..<tries {
                if lock.tryLockShared() { lock.unlockShared() } else { shared.failures.add(1, ordering: .relaxed) }
            }
            shared.stop.store(true, ordering: .relaxed)
        }
        tryer.join()
        churn.join()
        #expect(shared.failures.load(ordering: .relaxed) == 0, "of \(tries) tries")
    }

    @Test("parent and children hammer one lock: a writer is always alone, readers of different processes overlap")
    func hammer() async {
        await #expect(processExitsWith: .success) {
            ForkHammer.run(children: 3, threadsPerProcess: 2, operationsPerThread: 10000)
        }
    }

    @Test("a child does not hold what its parent held at fork(), and waits for the parent's hold")
    func childHoldsNothing() async {
        await #expect(processExitsWith: .success) { synchronously {
            let lock: SharedLock
            do { lock = try SharedLock.forkShared() } catch { Proc.fail("forkShared: \(error)") }
            // Parent holds exclusive mode at fork().
            lock.lockExclusive()
            let early = Proc.forkChild {
                // The parent's process-level exclusive hold applies to the child…
                if lock.tryLockShared() { return "child got shared mode while the parent holds exclusive" }
                if lock.tryLockExclusive() { return "child got exclusive mode while the parent holds it" }
                if (try? lock.lockShared(timeout: .milliseconds(20))) != nil { return "timed shared succeeded" }
                // …and once the parent lets go, the child gets the lock: nothing of the
                // parent's hold was copied into the child's own state.
                do { try lock.lockExclusive(timeout: .seconds(30)) } catch { return "child never got exclusive mode: \(error)" }
                if lock.previousHolderDied { return "the parent did not die" }
                lock.unlockExclusive()
                return nil
            }
            // The child announces itself as a waiting writer when it blocks; wait for it
            // (bounded) so the release below really hands over to a waiter.
            Proc.waitFor("the child never waited") { lock.snapshot()!.waitingWriters == 1 }
            lock.unlockExclusive()
            Proc.expectChildSucceeded(early)

            // A child forked while another parent thread holds shared mode.
            let flags = ForkFlags()
            let reader = TestThread {
                lock.lockShared()
                flags.holding.store(1, ordering: .releasing)
                _ = Proc.spin { flags.release.load(ordering: .acquiring) == 1 }
                lock.unlockShared()
            }
            Proc.waitFor("the reader thread never got shared mode") { flags.holding.load(ordering: .acquiring) == 1 }
            let second = Proc.forkChild {
                if lock.tryLockExclusive() { return "child got exclusive mode while a parent thread holds shared" }
                if lock.snapshot()!.sharedProcessCount != 1 { return "the parent's shared hold is not visible" }
                // The child's own thread-level lock is fresh: it does not think it reads.
                do { try lock.lockExclusive(timeout: .seconds(30)) } catch { return "child never got exclusive mode: \(error)" }
                lock.unlockExclusive()
                do { try lock.lockShared(timeout: .seconds(30)) } catch { return "child never got shared mode: \(error)" }
                lock.unlockShared()
                return nil
            }
            Proc.waitFor("the second child never waited") { lock.snapshot()!.waitingWriters == 1 }
            flags.release.store(1, ordering: .releasing)
            reader.join()
            Proc.expectChildSucceeded(second)

            // A child forked inside a hold: its release of the pre-fork hold is a no-op
            // (promise 4), and the parent's hold stays…
            lock.lockExclusive()
            let quiet = Proc.forkChild {
                lock.unlockExclusive()
                if lock.tryLockShared() { return "the parent's exclusive hold is gone after the child's release" }
                return nil
            }
            Proc.expectChildSucceeded(quiet)
            // …but releasing it twice, like any unlock of what the thread does not hold,
            // traps (misuse is loud).
            let misuse = Proc.forkChild {
                lock.unlockExclusive()
                lock.unlockExclusive()
                return "a second unlockExclusive() of the parent's hold returned normally in the child"
            }
            let status = Proc.reap(misuse)
            if status < 128 { Proc.fail("the misusing child exited \(status) instead of trapping") }
            lock.unlockExclusive()
            Proc.checkIdle(lock)
            exit(0)
        } }
    }

    @Test("a child that dies holding the lock is reclaimed; the parent learns the writer died")
    func childDiesHolding() async {
        await #expect(processExitsWith: .success) { synchronously {
            let lock: SharedLock
            do { lock = try SharedLock.forkShared() } catch { Proc.fail("forkShared: \(error)") }
            for round in 0..<6 {
                let exclusive = round % 2 == 0
                // The child takes the lock and dies without releasing it: exit, or SIGKILL.
                let pipe = ForkPipe()
                let child = Proc.forkChild {
                    if exclusive { lock.lockExclusive() } else { lock.lockShared() }
                    pipe.signal()
                    if round % 3 == 0 { _exit(0) }
                    pause()
                    return "woke up"
                }
                pipe.awaitSignal()
                if round % 3 != 0 { kill(child, SIGKILL) }
                _ = Proc.reap(child)
                do { try lock.lockExclusive(timeout: .seconds(5)) } catch { Proc.fail("round \(round): not reclaimed within 5 s: \(error)") }
                if lock.previousHolderDied != exclusive {
                    Proc.fail("round \(round): previousHolderDied = \(lock.previousHolderDied) after a dead \(exclusive ? "writer" : "reader")")
                }
                lock.unlockExclusive()
                lock.lockExclusive()
                if lock.previousHolderDied { Proc.fail("round \(round): the death was reported twice") }
                lock.unlockExclusive()
            }
            let s = lock.snapshot()!
            if s.recoveries != 6 { Proc.fail("expected 6 recoveries, snapshot: \(s)") }
            Proc.checkIdle(lock)
            exit(0)
        } }
    }
}

// MARK: - The hammer

/// Counters in anonymous MAP_SHARED memory, shared by a parent and its fork children.
struct HammerCounters: @unchecked Sendable {
    // Sendable: the memory is shared on purpose; every field is an Atomic except
    // `guarded`, which only the exclusive holder touches.
    let base: UnsafeMutableRawPointer
    static let fields = 12

    init() {
        let size = 64 * HammerCounters.fields
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            Proc.fail("mmap: errno \(errno)")
        }
        base = p
        for i in 0..<HammerCounters.fields where i != 3 {
            (base + 64 * i).bindMemory(to: Atomic<Int>.self, capacity: 1).initialize(to: Atomic(0))
        }
        (base + 64 * 3).bindMemory(to: Int.self, capacity: 1).initialize(to: 0)
    }

    private func atomic(_ i: Int) -> UnsafeMutablePointer<Atomic<Int>> {
        (base + 64 * i).assumingMemoryBound(to: Atomic<Int>.self)
    }
    /// Holders inside shared mode, all processes.
    var readers: UnsafeMutablePointer<Atomic<Int>> { atomic(0) }
    /// Holders inside exclusive mode, all processes.
    var writers: UnsafeMutablePointer<Atomic<Int>> { atomic(1) }
    /// Times a holder saw a mode violated.
    var violations: UnsafeMutablePointer<Atomic<Int>> { atomic(2) }
    /// A plain counter that only exclusive holders increment (lost updates show a breach).
    var guarded: UnsafeMutablePointer<Int> { (base + 64 * 3).assumingMemoryBound(to: Int.self) }
    var exclusiveOps: UnsafeMutablePointer<Atomic<Int>> { atomic(4) }
    var sharedOps: UnsafeMutablePointer<Atomic<Int>> { atomic(5) }
    /// Rendezvous: processes that hold shared mode and have arrived / checked.
    var arrived: UnsafeMutablePointer<Atomic<Int>> { atomic(6) }
    var departed: UnsafeMutablePointer<Atomic<Int>> { atomic(7) }
    /// The largest `sharedProcessCount` a rendezvous member saw in the lock's snapshot.
    var sharedProcessesSeen: UnsafeMutablePointer<Atomic<Int>> { atomic(8) }
    var rendezvousFailures: UnsafeMutablePointer<Atomic<Int>> { atomic(9) }
    /// The most holders seen inside shared mode at once.
    var maxReaders: UnsafeMutablePointer<Atomic<Int>> { atomic(10) }
    var timeouts: UnsafeMutablePointer<Atomic<Int>> { atomic(11) }
}

enum ForkHammer {
    /// Forks `children`, then parent and children each run `threadsPerProcess` threads that
    /// take the lock in both modes (blocking, timed and try forms), checking the mode
    /// invariants inside every hold. Exits 0 if nothing was violated.
    static func run(children: Int, threadsPerProcess: Int, operationsPerThread: Int) -> Never {
        let lock: SharedLock
        do { lock = try SharedLock.forkShared(capacity: 8) } catch { Proc.fail("forkShared: \(error)") }
        let c = HammerCounters()
        let processes = children + 1
        var pids: [pid_t] = []
        for index in 1...children {
            pids.append(Proc.forkChild {
                work(lock, c, process: index, processes: processes, threads: threadsPerProcess, operations: operationsPerThread)
                return nil
            })
        }
        work(lock, c, process: 0, processes: processes, threads: threadsPerProcess, operations: operationsPerThread)
        for pid in pids { Proc.expectChildSucceeded(pid) }

        var problems: [String] = []
        if c.rendezvousFailures.pointee.load(ordering: .relaxed) != 0 {
            problems.append("readers of \(processes) processes never held shared mode all at once")
        }
        if c.sharedProcessesSeen.pointee.load(ordering: .relaxed) != processes {
            problems.append("the lock counted \(c.sharedProcessesSeen.pointee.load(ordering: .relaxed)) shared processes at the rendezvous, expected \(processes)")
        }
        let violations = c.violations.pointee.load(ordering: .relaxed)
        if violations != 0 { problems.append("\(violations) holds saw a writer together with someone else") }
        let exclusive = c.exclusiveOps.pointee.load(ordering: .relaxed)
        if c.guarded.pointee != exclusive { problems.append("guarded counter \(c.guarded.pointee) != \(exclusive) exclusive holds (lost updates)") }
        if exclusive == 0 || c.sharedOps.pointee.load(ordering: .relaxed) == 0 { problems.append("a mode was never exercised") }
        if c.timeouts.pointee.load(ordering: .relaxed) != 0 { problems.append("\(c.timeouts.pointee.load(ordering: .relaxed)) timed acquisitions hit their 30 s bound") }
        // (Readers of different processes overlapping is proven by the rendezvous above;
        // whether two short random holds also overlap by chance depends on timing, and
        // with writers in 10% of operations the phase-fair protocol lets readers in by
        // small batches, so it is not asserted.)
        if !problems.isEmpty { Proc.fail(problems.joined(separator: "; ")) }
        Proc.checkIdle(lock)
        exit(0)
    }

    /// Whether this binary runs under ThreadSanitizer, which cannot start threads in a
    /// child forked from a multi-threaded process (the exit test's process has runtime
    /// threads): there, forked children hammer on their main thread alone.
    static let underThreadSanitizer = dlsym(nil, "__tsan_init") != nil

    /// One process's part: the cross-process rendezvous, then the hammer threads.
    static func work(_ lock: SharedLock, _ c: HammerCounters, process: Int, processes: Int, threads: Int, operations: Int) {
        rendezvous(lock, c, processes: processes)
        if process != 0 && underThreadSanitizer {
            for thread in 0..<threads { hammer(lock, c, seed: UInt64(process * 1000 + thread + 1), operations: operations) }
            return
        }
        let workers = (0..<threads).map { thread in
            TestThread { hammer(lock, c, seed: UInt64(process * 1000 + thread + 1), operations: operations) }
        }
        for w in workers { w.join() }
    }

    /// Each process takes shared mode and waits (bounded) until every process holds it:
    /// readers of different processes must overlap. A lock that let one process read at
    /// a time would time out here.
    static func rendezvous(_ lock: SharedLock, _ c: HammerCounters, processes: Int) {
        lock.withShared {
            c.arrived.pointee.add(1, ordering: .acquiringAndReleasing)
            if !Proc.spin(until: { c.arrived.pointee.load(ordering: .acquiring) >= processes }) {
                c.rendezvousFailures.pointee.add(1, ordering: .relaxed)
            }
            let seen = lock.snapshot()!.sharedProcessCount
            c.sharedProcessesSeen.pointee.max(seen, ordering: .relaxed)
            c.departed.pointee.add(1, ordering: .acquiringAndReleasing)
            if !Proc.spin(until: { c.departed.pointee.load(ordering: .acquiring) >= processes }) {
                c.rendezvousFailures.pointee.add(1, ordering: .relaxed)
            }
        }
    }

    static func hammer(_ lock: SharedLock, _ c: HammerCounters, seed: UInt64, operations: Int) {
        var rng = seed &* 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
            return rng
        }
        for _ in 0..<operations {
            let r = next()
            let form = (r >> 8) % 4  // 0, 1: blocking; 2: timed; 3: try
            if r % 10 == 0 {
                let body = { exclusiveSection(c) }
                switch form {
                case 2:
                    do { try lock.withExclusive(timeout: .seconds(30), body) } catch { c.timeouts.pointee.add(1, ordering: .relaxed) }
                case 3: _ = lock.withExclusiveIfAvailable(body)
                default: lock.withExclusive(body)
                }
            } else {
                let body = { sharedSection(c) }
                switch form {
                case 2:
                    do { try lock.withShared(timeout: .seconds(30), body) } catch { c.timeouts.pointee.add(1, ordering: .relaxed) }
                case 3: _ = lock.withSharedIfAvailable(body)
                default: lock.withShared(body)
                }
            }
        }
    }

    static func exclusiveSection(_ c: HammerCounters) {
        if c.writers.pointee.add(1, ordering: .acquiringAndReleasing).newValue != 1 { c.violations.pointee.add(1, ordering: .relaxed) }
        if c.readers.pointee.load(ordering: .acquiring) != 0 { c.violations.pointee.add(1, ordering: .relaxed) }
        let v = c.guarded.pointee
        busyWork(c)
        c.guarded.pointee = v + 1
        c.exclusiveOps.pointee.add(1, ordering: .relaxed)
        if c.readers.pointee.load(ordering: .acquiring) != 0 { c.violations.pointee.add(1, ordering: .relaxed) }
        c.writers.pointee.subtract(1, ordering: .acquiringAndReleasing)
    }

    static func sharedSection(_ c: HammerCounters) {
        let inside = c.readers.pointee.add(1, ordering: .acquiringAndReleasing).newValue
        c.maxReaders.pointee.max(inside, ordering: .relaxed)
        if c.writers.pointee.load(ordering: .acquiring) != 0 { c.violations.pointee.add(1, ordering: .relaxed) }
        busyWork(c)
        if c.writers.pointee.load(ordering: .acquiring) != 0 { c.violations.pointee.add(1, ordering: .relaxed) }
        c.sharedOps.pointee.add(1, ordering: .relaxed)
        c.readers.pointee.subtract(1, ordering: .acquiringAndReleasing)
    }
}

extension ForkHammer {
    /// A little work inside a hold, so that holders overlap and a breach has time to show.
    static func busyWork(_ c: HammerCounters) {
        for _ in 0..<50 { _ = c.sharedOps.pointee.load(ordering: .relaxed) }
    }
}

/// A one-shot signal from a forked child to its parent (a pipe).
struct ForkPipe {
    let read: Int32, write: Int32
    init() {
        var fds: [Int32] = [0, 0]
        if Glibc.pipe(&fds) != 0 { Proc.fail("pipe: errno \(errno)") }
        (read, write) = (fds[0], fds[1])
    }
    func signal() { var b: UInt8 = 1; _ = Glibc.write(write, &b, 1) }
    /// Waits (bounded, 30 s) for the child's signal.
    func awaitSignal() {
        var fd = pollfd(fd: read, events: Int16(POLLIN), revents: 0)
        guard poll(&fd, 1, 30_000) == 1 else { Proc.fail("the child never signalled") }
        var b: UInt8 = 0
        _ = Glibc.read(read, &b, 1)
        close(read); close(write)
    }
}

/// ForkFlags between a test thread and the thread that forks.
final class ForkFlags: Sendable {
    let holding = Atomic<Int>(0)
    let release = Atomic<Int>(0)
}
