// ProcessLocal, ThreadLocal and Fork (promise 4): fresh state in every fork child.
//
// Each fork test runs in an exit test, so the process that forks is quiet (not the
// parallel test runner). The scenario is a plain function returning an exit code: the
// forked child reports through `_exit(code)`, the parent `waitpid`s, checks its own state
// and exits 0 only if everything held. A failure shows the exit code, which names the
// failed check: 1… a child's check, 11… a grandchild's, 90… the parent's, 142 a child
// killed by SIGALRM (it hung). The parent also writes the reason to its stderr.
// Every child is killed by SIGALRM if it runs too long (`forkAndWait(limit:)`), and each
// exit test arms `alarm(40)` for itself, so a deadlock fails instead of hanging.

import Synchronization
import Testing
import Interlock

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Scenarios (run inside exit tests)

/// A ProcessLocal value set in the parent is not seen in a fork child; the child runs
/// the initialiser; the parent's value survives the child's change.
private func scenarioProcessLocalIsFreshInChild() -> Int32 {
    let inits = Counters(1)
    let local = ProcessLocal { () -> Int in
        inits.add(0)
        return -1
    }
    local.value = 42
    guard inits[0] == 1 else { return 90 }
    let code = forkAndWait {
        guard local.value == -1 else { return 1 }        // fresh, not the parent's 42
        guard inits[0] == 2 else { return 2 }            // the initialiser ran in the child
        local.withValue { $0 = 7 }
        guard local.value == 7 else { return 3 }
        guard inits[0] == 2 else { return 4 }            // once
        return 0
    }
    guard code == 0 else { finish(code, "child check \(code) failed") }
    guard local.value == 42 else { finish(91, "parent value changed to \(local.value)") }
    guard inits[0] == 1 else { finish(92, "parent initialiser ran \(inits[0]) times") }
    return 0
}

/// The same for ThreadLocal on the forking thread.
private func scenarioThreadLocalIsFreshInChild() -> Int32 {
    let inits = Counters(1)
    let local = ThreadLocal { () -> Int in
        inits.add(0)
        return -1
    }
    local.value = 42
    guard inits[0] == 1 else { return 90 }
    let code = forkAndWait {
        guard local.value == -1 else { return 1 }
        guard inits[0] == 2 else { return 2 }
        local.value += 8
        guard local.withValue({ $0 }) == 7 else { return 3 }
        guard inits[0] == 2 else { return 4 }
        return 0
    }
    guard code == 0 else { finish(code, "child check \(code) failed") }
    guard local.value == 42 else { finish(91, "parent value changed to \(local.value)") }
    guard inits[0] == 1 else { finish(92, "parent initialiser ran \(inits[0]) times") }
    return 0
}

/// Another thread is inside `ProcessLocal.withValue` (holding its mutex) at the fork.
private func scenarioForkWhileInsideWithValue() -> Int32 {
    let local = ProcessLocal { 0 }
    local.value = 5
    let parking = Parking()  // the thread waits there, inside withValue
    let inside = TestThread {
        local.withValue { value in
            parking.park()
            value += 1
        }
    }
    guard parking.waitParked() else { finish(90, "the thread never got inside withValue") }
    let code = forkAndWait(limit: 10) {
        let seen = local.withValue { value -> Int in
            value += 100
            return value
        }
        guard seen == 100 else { return 1 }
        guard local.value == 100 else { return 2 }
        return 0
    }
    parking.release()
    inside.join()
    guard code == 0 else { finish(code, code == 128 + SIGALRM ? "the child deadlocked" : "child check \(code) failed") }
    guard local.value == 6 else { finish(91, "parent value is \(local.value), expected 6") }
    return 0
}

/// Another thread holds a threads-scoped SharedLock exclusively at the fork.
private func scenarioForkWhileLockHeldExclusively() -> Int32 {
    let lock = SharedLock()
    lock.withShared {}  // the parent's per-process state exists before the fork
    let parking = Parking()  // the holder waits there, holding
    let holder = TestThread {
        lock.lockExclusive()
        parking.park()
        lock.unlockExclusive()
    }
    guard parking.waitParked() else { finish(90, "the holder never got in") }
    guard !lock.tryLockShared() else { finish(91, "shared mode granted beside the holder") }
    let code = forkAndWait(limit: 10) {
        guard lock.tryLockExclusive() else { return 1 }  // the child holds nothing
        lock.unlockExclusive()
        lock.withExclusive {}
        lock.withShared {}
        lock.lockShared()
        guard lock.tryLockShared() else { return 2 }     // a second shared holder
        lock.unlockShared()
        lock.unlockShared()
        do { try lock.withExclusive(timeout: .seconds(1)) {} } catch { return 3 }
        return 0
    }
    // The parent's lock is still held by its thread.
    guard !lock.tryLockShared() else { finish(92, "the child's use released the parent's hold") }
    parking.release()
    holder.join()
    guard code == 0 else { finish(code, code == 128 + SIGALRM ? "the child deadlocked" : "child check \(code) failed") }
    guard lock.withExclusiveIfAvailable({ true }) == true else { finish(93, "the parent's lock is stuck") }
    return 0
}

/// At the fork, one thread holds shared mode and another waits for exclusive mode (a
/// writer announced at the gate). The child must not inherit the announcement.
private func scenarioForkWhileWriterWaits() -> Int32 {
    let lock = SharedLock()
    let c = Counters(3)  // 2: writer done
    let parking = Parking()  // the reader waits there, holding shared mode
    let reader = TestThread {
        lock.lockShared()
        parking.park()
        lock.unlockShared()
    }
    guard parking.waitParked() else { finish(90, "the reader never got in") }
    let writer = TestThread {
        lock.withExclusive { c.set(2, 1) }
    }
    guard waitUntil({ lock.withSharedIfAvailable { true } == nil }) else {
        finish(91, "the writer never announced itself")
    }
    let code = forkAndWait(limit: 10) {
        guard lock.withSharedIfAvailable({ true }) == true else { return 1 }  // no inherited gate
        guard lock.withExclusiveIfAvailable({ true }) == true else { return 2 }
        lock.withShared {}
        lock.withExclusive {}
        return 0
    }
    parking.release()
    reader.join()
    writer.join()
    guard code == 0 else { finish(code, code == 128 + SIGALRM ? "the child deadlocked" : "child check \(code) failed") }
    guard c[2] == 1 else { finish(92, "the parent's writer never got in") }
    return 0
}

/// Fork.generation is one more in a child and two more in a grandchild; values are fresh
/// at each level.
private func scenarioGenerations() -> Int32 {
    let g0 = Fork.generation
    let local = ProcessLocal { getpid() }
    let perThread = ThreadLocal { Int32(-1) }
    local.value = -5
    perThread.value = -5
    let code = forkAndWait {
        guard Fork.generation == g0 + 1 else { return 1 }
        guard local.value == getpid() else { return 2 }
        guard perThread.value == -1 else { return 3 }
        local.value = 1_000
        perThread.value = 1_000
        let grandchild = forkAndWait {
            guard Fork.generation == g0 + 2 else { return 11 }
            guard local.value == getpid() else { return 12 }    // not the child's 1 000
            guard perThread.value == -1 else { return 13 }
            return 0
        }
        guard grandchild == 0 else { return grandchild }
        guard Fork.generation == g0 + 1 else { return 4 }
        guard local.value == 1_000, perThread.value == 1_000 else { return 5 }
        return 0
    }
    guard code == 0 else { finish(code, "child (1…) or grandchild (11…) check \(code) failed") }
    guard Fork.generation == g0 else { finish(90, "the parent's generation changed") }
    guard local.value == -5, perThread.value == -5 else { finish(91, "the parent's values changed") }
    return 0
}

/// 50 fork+exit in a row: every child starts from the parent's generation + 1 with fresh
/// values, and nothing runs or accumulates in the parent.
private func scenarioManyForks() -> Int32 {
    let g0 = Fork.generation
    let inits = Counters(2)  // 0: ProcessLocal initialisers, 1: ThreadLocal initialisers
    let local = ProcessLocal { () -> Int32 in
        inits.add(0)
        return getpid()
    }
    let perThread = ThreadLocal { () -> Int in
        inits.add(1)
        return 0
    }
    let lock = SharedLock()
    let parentPID = getpid()
    guard local.value == parentPID else { return 90 }
    perThread.value = 99
    for round in 0..<50 {
        let code = forkAndWait {
            guard Fork.generation == g0 + 1 else { return 1 }
            guard local.value == getpid(), local.value != parentPID else { return 2 }
            guard inits[0] == 2 else { return 3 }
            guard perThread.value == 0, inits[1] == 2 else { return 4 }
            guard lock.withExclusiveIfAvailable({ true }) == true else { return 5 }
            return 0
        }
        guard code == 0 else { finish(code, "round \(round): child check \(code) failed") }
    }
    guard Fork.generation == g0 else { finish(91, "the parent's generation moved to \(Fork.generation)") }
    guard inits[0] == 1, inits[1] == 1 else { finish(92, "initialisers ran in the parent: \(inits[0]), \(inits[1])") }
    guard local.value == parentPID, perThread.value == 99 else { finish(93, "the parent's values changed") }
    guard lock.withExclusiveIfAvailable({ true }) == true else { finish(94, "the parent's lock is stuck") }
    return 0
}

// MARK: - Fork tests

@Suite("Fork: ProcessLocal and ThreadLocal are fresh in a child", .timeLimit(.minutes(1)))
struct ForkLocalTests {
    @Test("a ProcessLocal value set in the parent is not seen in a fork child")
    func processLocalIsFreshInChild() async {
        await #expect(processExitsWith: .success) {
            alarm(40)  // the whole scenario, so a deadlock fails instead of hanging
            exit(scenarioProcessLocalIsFreshInChild())
        }
    }

    @Test("a ThreadLocal value set on the forking thread is not seen in the child")
    func threadLocalIsFreshInChild() async {
        await #expect(processExitsWith: .success) {
            alarm(40)  // the whole scenario, so a deadlock fails instead of hanging
            exit(scenarioThreadLocalIsFreshInChild())
        }
    }

    @Test("fork while another thread is inside ProcessLocal.withValue")
    func forkWhileInsideWithValue() async {
        await #expect(processExitsWith: .success) {
            alarm(40)  // the whole scenario, so a deadlock fails instead of hanging
            exit(scenarioForkWhileInsideWithValue())
        }
    }

    @Test("fork while another thread holds a SharedLock exclusively")
    func forkWhileLockHeldExclusively() async {
        await #expect(processExitsWith: .success) {
            alarm(40)  // the whole scenario, so a deadlock fails instead of hanging
            exit(scenarioForkWhileLockHeldExclusively())
        }
    }

    @Test("fork while a writer waits behind a reader")
    func forkWhileWriterWaits() async {
        await #expect(processExitsWith: .success) {
            alarm(40)  // the whole scenario, so a deadlock fails instead of hanging
            exit(scenarioForkWhileWriterWaits())
        }
    }

    @Test("Fork.generation: +1 in a child, +2 in a grandchild, fresh values at each level")
    func generations() async {
        await #expect(processExitsWith: .success) {
            alarm(40)  // the whole scenario, so a deadlock fails instead of hanging
            exit(scenarioGenerations())
        }
    }

    @Test("50 forks in a row leave the parent's state alone")
    func manyForks() async {
        await #expect(processExitsWith: .success) {
            alarm(40)  // the whole scenario, so a deadlock fails instead of hanging
            exit(scenarioManyForks())
        }
    }
}

// MARK: - ThreadLocal and ProcessLocal between threads

/// Counts deinitialisations.
private final class Tracked: Sendable {
    let id: Int
    let deaths: Counters
    init(id: Int, deaths: Counters) {
        self.id = id
        self.deaths = deaths
    }
    deinit { deaths.add(0) }
}

@Suite("ThreadLocal and ProcessLocal between threads", .serialized, .timeLimit(.minutes(1)))
struct ThreadLocalTests {
    @Test("each thread sees its own value")
    func eachThreadHasItsOwnValue() {
        let local = ThreadLocal { -1 }
        let threadCount = 8
        let c = Counters()  // 0: set, 1: wrong value seen, 2: fresh value seen first
        local.value = 1_000
        let threads = ThreadGroup(threadCount) { index in
            if local.value == -1 { c.add(2) }
            local.value = index
            c.add(0)
            // Everyone has written before anyone reads back.
            _ = c.wait { $0[0] == threadCount }
            for _ in 0..<100 where local.value != index { c.add(1) }
            local.withValue { $0 += 1 }
            if local.value != index + 1 { c.add(1) }
        }
        #expect(threads.join())
        #expect(c[2] == threadCount, "a new thread started with another thread's value")
        #expect(c[1] == 0, "a thread saw another thread's value")
        #expect(local.value == 1_000)
    }

    @Test("values are destroyed when their threads exit", arguments: [1, 8])
    func destructorsRunAtThreadExit(threadCount: Int) {
        let deaths = Counters(1)
        let made = Counters(1)
        let local = ThreadLocal { Tracked(id: made.add(0), deaths: deaths) }
        let threads = ThreadGroup(threadCount) { _ in _ = local.value.id }
        #expect(threads.join())
        #expect(made[0] == threadCount)
        #expect(deaths[0] == threadCount, "\(deaths[0]) of \(threadCount) thread values were destroyed")
        // A thread that never touched the value makes none and destroys none.
        #expect(ThreadGroup(1) { _ in _ = local }.join())
        #expect(made[0] == threadCount && deaths[0] == threadCount)
    }

    @Test("the calling thread's value is destroyed with the ThreadLocal")
    func destroyedWithTheThreadLocal() {
        let deaths = Counters(1)
        let ok = onThread {
            do {
                let local = ThreadLocal { Tracked(id: 1, deaths: deaths) }
                let alive = withExtendedLifetime(local) {
                    _ = local.value
                    return deaths[0] == 0
                }
                guard alive else { return false }
            }
            return deaths[0] == 1
        }
        #expect(ok)
        #expect(deaths[0] == 1)  // and not again at thread exit
    }

    @Test("the threads of a process share one ProcessLocal value")
    func processLocalIsShared() {
        let inits = Counters(1)
        let local = ProcessLocal { () -> Int in
            inits.add(0)
            return 0
        }
        let threadCount = 8, increments = 2_000
        let threads = ThreadGroup(threadCount) { _ in
            for _ in 0..<increments { local.withValue { $0 += 1 } }
        }
        #expect(threads.join())
        #expect(local.value == threadCount * increments)
        #expect(inits[0] == 1)
    }

    @Test("racing first uses run the ProcessLocal initialiser once")
    func processLocalInitialiserRunsOnce() {
        let c = Counters(2)  // 0: initialiser runs, 1: threads arrived at their first use
        let threadCount = 8
        let local = ProcessLocal { () -> Int in
            c.add(0)
            // Stay inside until every thread has asked for the value: a second run of the
            // initialiser, if the library allowed one, would happen now.
            _ = c.wait { $0[1] == threadCount }
            return 7
        }
        let threads = ThreadGroup(threadCount) { _ in
            c.add(1)
            #expect(local.value == 7)
        }
        #expect(threads.join())
        #expect(c[0] == 1, "the initialiser ran \(c[0]) times")
    }
}
