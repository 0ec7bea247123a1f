// Async acquisition between processes, each scenario in an exit test's own quiet process:
//
// - 1,000 tasks wait for a named lock that a helper process holds for 2 s, on the default
//   cooperative pool, while a ticker task keeps a 1 ms beat: the ticker stays on time, the
//   process keeps a bounded number of threads, and all 1,000 finish after the release;
// - the same 1,000 waiters when the holder is killed with SIGKILL instead: all finish, and
//   exactly one writer is told that the previous holder died;
// - a fork-shared lock whose holder is a forked child killed with SIGKILL;
// - fork while tasks wait (the child has no waiter thread and a usable lock), and fork
//   inside an async body (the child returns from it and releases nothing);
// - misuse inside a body the waiter thread holds for, which must trap as it does elsewhere;
// - the waiter thread stops when the lock goes, and after a while idle.
//
// The ticker's bound (50 ms) is the issue's own acceptance figure. It is checked from the
// moment all 1,000 tasks are suspended until they are all done, against a control: a beat
// kept by two plain threads (one sleeps 1 ms, then wakes the other, as the runtime's timer
// thread wakes a pool thread), which the machine (other processes and tests on the two
// cores) delays as much but which nothing in the pool can block; only the ticker's lateness
// beyond the control's stalls, beat by beat, counts. Both figures are printed. (For
// contrast, the same 1,000 tasks in the blocking form, released by a plain thread, on this
// machine: the ticker's worst beat was 2,000 ms late, the control's 3–6 ms; released by a
// task instead, the process never woke up.) Not checked under the thread sanitizer (which
// slows everything tenfold). Every other wait is a handshake with a generous bound.

@testable import Interlock
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Async acquisition between processes", .serialized, .timeLimit(.minutes(3)))
struct AsyncProcessTests {
    static let underThreadSanitizer = dlsym(nil, "__tsan_init") != nil
    static let waiters = 1000
    /// The issue's bound on the ticker's lateness.
    static let latenessBound: Duration = .milliseconds(50)

    // MARK: 1,000 waiters and a ticker

    @Test func thousandWaitersLeaveThePoolFree() async {
        let name = TestLocks.uniqueName("async-ticker")
        defer { TestLocks.cleanUp(name) }
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [name = name as String] in
            alarm(120)
            await AsyncProcessTests.thousandWaiters(name: name, kill: false)
        }
        if let result { print(String(decoding: result.standardErrorContent, as: UTF8.self), terminator: "") }
    }

    @Test func thousandWaitersWhenTheHolderIsKilled() async {
        let name = TestLocks.uniqueName("async-kill")
        defer { TestLocks.cleanUp(name) }
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [name = name as String] in
            alarm(120)
            await AsyncProcessTests.thousandWaiters(name: name, kill: true)
        }
        if let result { print(String(decoding: result.standardErrorContent, as: UTF8.self), terminator: "") }
    }

    /// A task that sleeps 1 ms at a time and records each beat (when it started and ended,
    /// monotonic ns) while `recording`, and how many threads the process has.
    final class Ticker: @unchecked Sendable {
        // Sendable: the flags are atomics; `beats` is written by the ticking task only and
        // read after it has ended.
        let recording = Atomic<Bool>(false)
        let stopped = Atomic<Bool>(false)
        let mostThreads = Atomic<Int>(0)
        var beats: [(start: Int64, end: Int64)] = []

        func run() async {
            beats.reserveCapacity(8192)
            var last = Sys.monotonicNanoseconds()
            while !stopped.load(ordering: .relaxed) {
                try? await Task.sleep(for: .milliseconds(1))
                let now = Sys.monotonicNanoseconds()
                if recording.load(ordering: .relaxed) {
                    beats.append((last, now))
                    if beats.count % 8 == 0 { mostThreads.max(processThreadCount(), ordering: .relaxed) }
                }
                last = now
            }
        }
    }

    /// A control beat outside Swift concurrency, woken the way the ticker is: one thread
    /// sleeps 1 ms at a time and, at each wake-up, wakes a second thread (a semaphore),
    /// which records the beat. (A sleeping task is woken by the runtime's timer thread, which
    /// then wakes a pool thread.) Nothing in the pool can delay it; the machine — other
    /// processes on the two cores — delays it as it delays the ticker.
    final class Control: @unchecked Sendable {
        // Sendable: the flags and semaphore are thread-safe; `beats` is written by the
        // recording thread only and read after it was joined.
        let recording = Atomic<Bool>(false)
        let stopped = Atomic<Bool>(false)
        var beats: [(start: Int64, end: Int64)] = []
        private let woken = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
        private var threads: [TestThread] = []

        func start() {
            beats.reserveCapacity(8192)
            sem_init(woken, 0, 0)
            threads.append(TestThread { [self] in
                while !stopped.load(ordering: .relaxed) {
                    var pause = timespec(tv_sec: 0, tv_nsec: 1_000_000)
                    nanosleep(&pause, nil)
                    sem_post(woken)
                }
                sem_post(woken)
            })
            threads.append(TestThread { [self] in
                var last = Sys.monotonicNanoseconds()
                while !stopped.load(ordering: .relaxed) {
                    while sem_wait(woken) != 0 {}
                    let now = Sys.monotonicNanoseconds()
                    if recording.load(ordering: .relaxed) { beats.append((last, now)) }
                    last = now
                }
            })
        }

        func stop() {
            stopped.store(true, ordering: .relaxed)
            for thread in threads { thread.join() }
            threads = []
            sem_destroy(woken)
            woken.deallocate()
        }
    }

    /// The ticker's figures: its worst lateness; the control's worst (how late the machine
    /// alone made a beat); and the ticker's worst lateness beyond the control's stalls during
    /// the same beat (what the pool added).
    static func lateness(_ ticker: Ticker, _ control: Control) -> (worst: Int64, machine: Int64, beyondMachine: Int64) {
        // When the control was late: from the end of its 1 ms to its wake-up.
        let stalls = control.beats.filter { $0.end - $0.start > 1_000_000 }.map { ($0.start + 1_000_000, $0.end) }
        var worst: Int64 = 0, beyond: Int64 = 0
        for beat in ticker.beats {
            let late = beat.end - beat.start - 1_000_000
            worst = max(worst, late)
            var stalled: Int64 = 0
            for stall in stalls where stall.1 > beat.start && stall.0 < beat.end {
                stalled += min(stall.1, beat.end) - max(stall.0, beat.start)
            }
            beyond = max(beyond, late - stalled)
        }
        let machine = stalls.map { $0.1 - $0.0 }.max() ?? 0
        return (worst, machine, beyond)
    }

    static func milliseconds(_ nanoseconds: Int64) -> String {
        let tenths = (nanoseconds + 50_000) / 100_000
        return "\(tenths / 10).\(tenths % 10) ms"
    }

    /// The scenario, in the exit test's process: a helper process holds the named lock
    /// exclusively; 1,000 tasks (one in ten a writer) wait for it; after 2 s the helper
    /// releases it (or is killed).
    static func thousandWaiters(name: String, kill: Bool) async -> Never {
        do {
            let helper = try HelperProcess(lock: name)
            try helper.begin("exclusive")
            guard try helper.readLine() == "ok exclusive died=false" else { Proc.fail("the helper did not take the lock") }
            let lock = try SharedLock(named: name)
            let ticker = Ticker(), control = Control()
            let tickerTask = Task { await ticker.run() }
            control.start()
            let baseline = processThreadCount()
            let finished = Counters(2)  // 0: tasks done, 1: writers told the previous holder died
            let all = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for i in 0..<waiters {
                        group.addTask {
                            if i % 10 == 0 {
                                try await lock.withExclusive { if lock.previousHolderDied { finished.add(1) } }
                            } else {
                                try await lock.withShared {}
                            }
                            finished.add(0)
                        }
                    }
                    try await group.waitForAll()
                }
            }
            guard await eventually(within: .seconds(60), { lock.asyncWaiting == waiters }) else {
                Proc.fail("only \(lock.asyncWaiting) of \(waiters) tasks are waiting")
            }
            let suspendedThreads = processThreadCount()
            ticker.recording.store(true, ordering: .relaxed)
            control.recording.store(true, ordering: .relaxed)
            try await Task.sleep(for: .seconds(2))  // the holder's 2 s
            if finished[0] != 0 { Proc.fail("\(finished[0]) tasks finished while the lock was held") }
            let releasedAt = ContinuousClock.now
            if kill {
                helper.kill9()
            } else {
                guard try helper.ask("release-exclusive") == "released" else { Proc.fail("the helper did not release") }
            }
            try await all.value
            let doneAfter = ContinuousClock.now - releasedAt
            ticker.recording.store(false, ordering: .relaxed)
            control.recording.store(false, ordering: .relaxed)
            ticker.stopped.store(true, ordering: .relaxed)
            await tickerTask.value
            control.stop()
            if !kill { _ = try helper.quit() }

            let (worst, machine, beyond) = lateness(ticker, control)
            let most = max(ticker.mostThreads.load(ordering: .relaxed), suspendedThreads)
            let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
            let figures = "async \(kill ? "kill -9" : "ticker"): \(waiters) tasks waited 2 s for a named lock; "
                + "ticker worst lateness \(milliseconds(worst)) over \(ticker.beats.count) beats "
                + "(a control beat outside the pool: \(milliseconds(machine)); the ticker beyond it: \(milliseconds(beyond))); "
                + "threads \(baseline) before, \(most) at most (\(cores) cores); all done \(doneAfter) after the \(kill ? "kill" : "release")"
            Proc.writeError(figures)

            if finished[0] != waiters { Proc.fail("\(finished[0]) of \(waiters) tasks finished") }
            if kill && finished[1] != 1 { Proc.fail("\(finished[1]) writers were told the previous holder died (expected exactly 1)") }
            if !kill && finished[1] != 0 { Proc.fail("a writer was told the previous holder died, but it released") }
            // Bounded: the pool's threads, the waiter thread and a few of the runtime's, never
            // a thread per waiting task.
            if most > baseline + cores + 4 { Proc.fail("the process grew from \(baseline) to \(most) threads: \(figures)") }
            // The bound holds for the pool: lateness the machine imposed on a plain thread of this
            // process at the same time (other processes on the cores) does not count.
            if !underThreadSanitizer && beyond >= Int64(latenessBound / .nanoseconds(1)) {
                Proc.fail("the ticker was late beyond the control beat by \(milliseconds(beyond)) (bound \(latenessBound)): \(figures)")
            }
            if lock.asyncWaiting != 0 || lock.asyncHeld != 0 { Proc.fail("the waiter thread still has work") }
            let snapshot = lock.snapshot()!
            if snapshot.isExclusive || snapshot.sharedProcessCount != 0 || snapshot.waitingWriters != 0 {
                Proc.fail("the lock is not free at the end: \(snapshot)")
            }
        } catch {
            Proc.fail("\(error)")
        }
        exitOnceWaitersStopped()
    }

    // MARK: No trace in the state word

    /// An async writer waiting for a named lock that another process holds in shared mode is
    /// a waiting writer in the state word (new readers of every process wait behind it);
    /// cancelled or timed out, it is gone from the word before its task throws.
    @Test(arguments: ["cancelled", "timed out"])
    func waitingWriterLeavesTheStateWord(ending: String) async throws {
        let name = TestLocks.uniqueName("async-word")
        defer { TestLocks.cleanUp(name) }
        let helper = try HelperProcess(lock: name)
        #expect(try helper.ask("try-shared") == "ok shared")
        let lock = try SharedLock(named: name)
        let writer = Task {
            ending == "cancelled" ? try await lock.withExclusive { 1 } : try await lock.withExclusive(timeout: .seconds(3)) { 1 }
        }
        #expect(await eventually { lock.snapshot()!.waitingWriters == 1 }, "the async writer never showed in the state word")
        #expect(try helper.ask("try-shared") == "busy", "another process's reader got in past the waiting writer")
        if ending == "cancelled" { writer.cancel() }
        let error = await thrownError { try await writer.value }
        #expect(ending == "cancelled" ? error is CancellationError : (error as? InterlockError) == .timedOut)
        let s = lock.snapshot()!
        #expect(s.waitingWriters == 0 && !s.isExclusive, "\(s)")
        #expect(try helper.ask("try-shared") == "ok shared", "a reader cannot get in after the writer gave up")
        #expect(TestLocks.problems(in: s).isEmpty, "\(TestLocks.problems(in: s))")
        _ = try helper.quit()
    }

    // MARK: Fork and kill -9

    /// A fork-shared lock held by a forked child; async readers and writers wait in the
    /// parent; the child is killed with SIGKILL. All of them get the lock, and the first
    /// writer is told the previous holder died.
    @Test func forkedHolderKilledWhileTasksWait() async {
        await #expect(processExitsWith: .success) {
            alarm(60)
            let lock = try! SharedLock.forkShared()
            var ready: [Int32] = [0, 0]
            precondition(pipe(&ready) == 0)
            let child = fork()
            if child == 0 {
                synchronously { lock.lockExclusive() }
                var byte: UInt8 = 1
                _ = write(ready[1], &byte, 1)
                while true { pause() }
            }
            var byte: UInt8 = 0
            guard read(ready[0], &byte, 1) == 1 else { Proc.fail("the child did not take the lock") }
            let died = Counters(2)
            let all = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for i in 0..<100 {
                        group.addTask {
                            if i % 4 == 0 {
                                try await lock.withExclusive { if lock.previousHolderDied { died.add(0) } }
                            } else {
                                try await lock.withShared(timeout: .seconds(30)) {}
                            }
                            died.add(1)
                        }
                    }
                    try await group.waitForAll()
                }
            }
            guard await eventually({ lock.asyncWaiting == 100 }) else { Proc.fail("the tasks did not all wait: \(lock.asyncWaiting)") }
            kill(child, SIGKILL)
            _ = Proc.reap(child)
            do { try await all.value } catch { Proc.fail("a waiter failed: \(error)") }
            if died[1] != 100 { Proc.fail("\(died[1]) of 100 tasks finished") }
            if died[0] != 1 { Proc.fail("\(died[0]) writers were told the previous holder died (expected 1)") }
            Proc.checkIdle(lock)
            exitOnceWaitersStopped()
        }
    }

    /// Fork while tasks wait: the child inherits no waiter thread (its lock state is fresh,
    /// and the parent's lock is still held at the process level); the parent's tasks all
    /// get the lock afterwards.
    @Test(.enabled(if: !AsyncProcessTests.underThreadSanitizer))
    func forkWhileTasksWait() async {
        await #expect(processExitsWith: .success) {
            alarm(60)
            let lock = try! SharedLock.forkShared()
            let hold = ThreadHold(lock, exclusive: true)
            let all = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for i in 0..<50 {
                        group.addTask { i % 5 == 0 ? try await lock.withExclusive {} : try await lock.withShared {} }
                    }
                    try await group.waitForAll()
                }
            }
            guard await eventually({ lock.asyncWaiting == 50 }) else { Proc.fail("the tasks did not all wait") }
            let status = forkAndWait {
                // The child: one thread, no tasks, no waiter thread.
                if lock.asyncWaiterCounts() != nil { return 2 }
                if lock.withExclusiveIfAvailable({ true }) != nil { return 3 }  // the parent holds it
                do { try lock.withShared(timeout: .milliseconds(20)) {}; return 4 } catch { return 0 }
            }
            if status != 0 { Proc.fail("the child failed with status \(status)") }
            hold.release()
            do { try await all.value } catch { Proc.fail("\(error)") }
            Proc.checkIdle(lock)
            exitOnceWaitersStopped()
        }
    }

    /// A body that the waiter thread holds the lock for forks: the child returns from the
    /// body normally and releases nothing; the parent's hold is released as usual.
    @Test(.enabled(if: !AsyncProcessTests.underThreadSanitizer), arguments: [true, false])
    func forkInsideAnAsyncBody(exclusive: Bool) async {
        await #expect(processExitsWith: .success) { [exclusive = exclusive as Bool] in
            alarm(60)
            let lock = try! SharedLock.forkShared()
            let hold = ThreadHold(lock, exclusive: true)
            let task = Task { () async throws -> Int32 in
                // The parent waits for the child inside the body, so that the child looks at
                // the lock while the parent still holds it.
                let body = { () -> (pid: pid_t, status: Int32) in
                    let pid = fork()
                    return (pid, pid == 0 ? 0 : Proc.reap(pid))
                }
                let forked = exclusive ? try await lock.withExclusive(body) : try await lock.withShared(body)
                if forked.pid == 0 {
                    // The child, right after the async form returned here without releasing.
                    let busy = lock.withExclusiveIfAvailable({ true }) == nil  // the parent still holds it
                    _exit(busy ? 0 : 5)
                }
                return forked.status
            }
            guard await eventually({ lock.asyncWaiting == 1 }) else { Proc.fail("the task did not wait") }
            hold.release()
            let status: Int32
            do { status = try await task.value } catch { Proc.fail("\(error)") }
            if status != 0 { Proc.fail("the child exited \(status)") }
            if lock.withExclusiveIfAvailable({ true }) != true { Proc.fail("the parent's hold was not released") }
            Proc.checkIdle(lock)
            exitOnceWaitersStopped()
        }
    }

    // MARK: Many locks

    /// One waiter thread per lock with waiting tasks (not per task), and all of them stop
    /// when their locks go: 200 locks held by one thread, 5 tasks waiting on each.
    @Test func manyLocksEachGetOneWaiterThread() async {
        await #expect(processExitsWith: .success) {
            alarm(60)
            func running() -> Int { AsyncWaiter.runningThreads.load(ordering: .relaxed) }
            var locks: [SharedLock] = (0..<200).map { _ in SharedLock() }
            let parking = Parking(), held = Counters(1)
            let holder = TestThread { [locks] in
                synchronously {
                    for lock in locks { lock.lockExclusive() }
                    held.set(0, 1)
                    parking.park()
                    for lock in locks { lock.unlockExclusive() }
                }
            }
            guard held.wait(until: { $0[0] == 1 }) else { Proc.fail("the holder did not take the locks") }
            let baseline = processThreadCount()
            let all = Task { [locks] in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (index, lock) in locks.enumerated() {
                        for j in 0..<5 {
                            group.addTask { (index + j) % 2 == 0 ? try await lock.withShared {} : try await lock.withExclusive {} }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            guard await eventually({ locks.allSatisfy { $0.asyncWaiting == 5 } }) else { Proc.fail("the tasks did not all wait") }
            if running() != 200 { Proc.fail("\(running()) waiter threads for 200 locks") }
            let most = processThreadCount()
            if most > baseline + 200 + 8 { Proc.fail("\(most - baseline) threads were added for 1,000 tasks on 200 locks") }
            parking.release()
            holder.join()
            do { try await all.value } catch { Proc.fail("\(error)") }
            locks.removeAll()
            guard await eventually({ running() == 0 }) else { Proc.fail("\(running()) waiter threads outlived their locks") }
            exitOnceWaitersStopped()
        }
    }

    // MARK: Misuse inside a body held by the waiter thread

    enum Nested: String, CaseIterable, Codable, Sendable, CustomTestStringConvertible {
        case sharedInExclusive, exclusiveInExclusive, exclusiveInShared, unlockInExclusive, unlockInShared
        var testDescription: String { rawValue }
        var outerExclusive: Bool { self != .exclusiveInShared && self != .unlockInShared }
    }

    @Test(arguments: [true, false], Nested.allCases)
    func misuseInsideAWaitedBodyTraps(processScope: Bool, nested: Nested) async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            [processScope = processScope as Bool, nested = nested as Nested] in
            alarm(30)  // a deadlock ends the process without the message, and fails
            let lock = processScope ? try! SharedLock.forkShared() : SharedLock()
            let hold = ThreadHold(lock, exclusive: true)
            let inner = {
                synchronously {
                    switch nested {
                    case .sharedInExclusive: lock.withShared {}
                    case .exclusiveInExclusive, .exclusiveInShared: lock.withExclusive {}
                    case .unlockInExclusive: lock.unlockExclusive()
                    case .unlockInShared: lock.unlockShared()
                    }
                }
            }
            let task = Task { nested.outerExclusive ? try await lock.withExclusive(inner) : try await lock.withShared(inner) }
            guard await eventually({ lock.asyncWaiting == 1 }) else { Proc.fail("the task did not wait") }
            hold.release()
            _ = try? await task.value
            Proc.writeError("no trap")
            exitOnceWaitersStopped()
        }
        let stderr = result.map { String(decoding: $0.standardErrorContent, as: UTF8.self) } ?? ""
        #expect(stderr.contains("Interlock misuse"), "stderr: \(stderr)")
    }

    // MARK: The waiter thread's life

    @Test func waiterThreadStopsWhenTheLockGoesAndWhenIdle() async {
        await #expect(processExitsWith: .success) {
            alarm(60)
            func running() -> Int { AsyncWaiter.runningThreads.load(ordering: .relaxed) }
            func waitOnce(_ lock: SharedLock) async {
                let hold = ThreadHold(lock, exclusive: true)
                let task = Task { try await lock.withShared { 1 } }
                guard await eventually({ lock.asyncWaiting == 1 }) else { Proc.fail("the task did not wait") }
                if running() != 1 { Proc.fail("\(running()) waiter threads while one lock has a waiting task") }
                hold.release()
                _ = try? await task.value
            }
            // The lock goes: its waiter thread stops at once.
            var lock: SharedLock? = SharedLock()
            await waitOnce(lock!)
            lock = nil
            guard await eventually({ running() == 0 }) else { Proc.fail("the waiter thread outlived its lock") }
            // The lock stays, idle: its waiter thread stops after lingering.
            let kept = SharedLock()
            await waitOnce(kept)
            guard await eventually(within: .seconds(30), { running() == 0 }) else { Proc.fail("the idle waiter thread did not stop") }
            // And starts again on the next need.
            await waitOnce(kept)
            // Exit only once it has stopped again: `exit` runs the process's destructors
            // while a lingering waiter thread would still run (under the thread sanitizer,
            // a race report at exit: exit code 66).
            guard await eventually(within: .seconds(30), { running() == 0 }) else { Proc.fail("the idle waiter thread did not stop") }
            exitOnceWaitersStopped()
        }
    }
}
