// Async acquisition, in one process: the free lock taken without a waiter thread, waits that
// suspend, cancellation and timeouts that leave no trace, async and blocking waiters mixed on
// one lock, writer preference, and the shared values' async forms.
//
// Handshakes are the waiter thread's own counts (`asyncWaiting`: requests it has queued or is
// acquiring) and the lock's observable state (a try that fails while a writer waits), polled
// with generous bounds; never sleeps.

@testable import Interlock
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Async acquisition, one process", .serialized, .timeLimit(.minutes(2)))
struct AsyncLockTests {
    /// Counter slots for the invariant checks.
    private enum Slot { static let readers = 0, writers = 1, violations = 2, value = 3, done = 4 }

    private static func sharedSection(_ c: Counters) {
        c.add(Slot.readers)
        for _ in 0..<20 { if c[Slot.writers] != 0 { c.add(Slot.violations) } }
        c.add(Slot.done)
        c.add(Slot.readers, -1)
    }

    private static func exclusiveSection(_ c: Counters) {
        if c.add(Slot.writers) != 1 { c.add(Slot.violations) }
        for _ in 0..<100 { if c[Slot.readers] != 0 { c.add(Slot.violations) } }
        c.add(Slot.value)
        c.add(Slot.writers, -1)
    }

    // MARK: The free lock

    @Test func freeLockIsTakenWithoutAWaiterThread() async throws {
        let lock = SharedLock()
        let shared = try await lock.withShared { 7 }
        let exclusive = try await lock.withExclusive { "x" }
        let timed = try await lock.withShared(timeout: .zero) { 8 }
        let timedExclusive = try await lock.withExclusive(timeout: .seconds(Int64.max)) { 9 }
        #expect(shared == 7 && exclusive == "x" && timed == 8 && timedExclusive == 9)
        #expect(lock.asyncWaiterCounts() == nil, "a waiter thread was made for a free lock")
        // A body returning nil is not mistaken for "not available".
        let none: Int? = try await lock.withShared { nil }
        #expect(none == nil)
        #expect(lock.asyncWaiterCounts() == nil)
    }

    @Test func bodyErrorsPassThroughAndReleaseTheLock() async {
        struct Oops: Error {}
        let lock = SharedLock()
        #expect(await thrownError { try await lock.withExclusive { throw Oops() } } is Oops)
        // Through the waiter thread too.
        let hold = ThreadHold(lock, exclusive: true)
        async let failing: (any Error)? = thrownError { try await lock.withShared { throw Oops() } }
        #expect(await eventually { lock.asyncWaiting == 1 })
        hold.release()
        #expect(await failing is Oops)
        #expect(lock.withExclusiveIfAvailable { true } == true, "the lock was not released after the body threw")
    }

    // MARK: Waiting

    @Test(arguments: [true, false])
    func waitersSuspendAndRunInOrder(holderExclusive: Bool) async throws {
        let lock = SharedLock()
        let c = Counters()
        let hold = ThreadHold(lock, exclusive: holderExclusive)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<40 {
                group.addTask {
                    if i % 4 == 0 {
                        try await lock.withExclusive { Self.exclusiveSection(c) }
                    } else {
                        try await lock.withShared { Self.sharedSection(c) }
                    }
                }
            }
            // A shared holder lets readers in at once; the writers wait (and, announced,
            // hold back the readers queued behind them).
            #expect(await eventually { lock.asyncWaiting >= (holderExclusive ? 40 : 1) })
            hold.release()
            try await group.waitForAll()
        }
        #expect(c[Slot.violations] == 0)
        #expect(c[Slot.value] == 10)
        #expect(lock.asyncWaiting == 0 && lock.asyncHeld == 0)
        #expect(lock.withExclusiveIfAvailable { true } == true)
    }

    @Test func previousHolderDiedIsFalseAndOwnerIsTheBodysThread() async throws {
        let lock = SharedLock()
        let hold = ThreadHold(lock, exclusive: true)
        async let seen: Bool = lock.withExclusive {
            // The body's thread is the holder as far as the lock is concerned: a try on it is
            // misuse, so only read what a holder may read.
            lock.previousHolderDied
        }
        #expect(await eventually { lock.asyncWaiting == 1 })
        hold.release()
        #expect(try await seen == false)
    }

    // MARK: Cancellation

    /// A cancelled writer that was waiting (announced: new readers wait behind it) withdraws
    /// its mark before its task throws: a reader gets in at once afterwards, while the
    /// original reader still holds the lock.
    @Test func cancelledWriterLeavesNoTrace() async throws {
        let lock = SharedLock()
        let hold = ThreadHold(lock, exclusive: false)
        let writer = Task { try await lock.withExclusive { 1 } }
        #expect(await eventually { lock.asyncWaiting == 1 && !onOtherThread { lock.withSharedIfAvailable { true } ?? false } },
                "the async writer never announced itself")
        writer.cancel()
        #expect(await thrownError { try await writer.value } is CancellationError)
        #expect(onOtherThread { lock.withSharedIfAvailable { true } ?? false }, "a reader cannot get in after the writer was cancelled")
        #expect(lock.asyncWaiting == 0)
        hold.release()
        #expect(lock.withExclusiveIfAvailable { true } == true)
    }

    /// Queued requests (behind the one being acquired) end at once; the one being acquired
    /// ends within a slice; then the lock is immediately usable.
    @Test func cancelledWaitersOfBothModes() async throws {
        let lock = SharedLock()
        let hold = ThreadHold(lock, exclusive: true)
        var tasks: [Task<Int, any Error>] = []
        for i in 0..<20 {
            tasks.append(Task { i % 2 == 0 ? try await lock.withExclusive { i } : try await lock.withShared { i } })
        }
        #expect(await eventually { lock.asyncWaiting == 20 })
        for task in tasks { task.cancel() }
        for task in tasks {
            #expect(await thrownError { try await task.value } is CancellationError)
        }
        #expect(lock.asyncWaiting == 0 && lock.asyncHeld == 0)
        hold.release()
        #expect(lock.withExclusiveIfAvailable { true } == true)
        #expect(try await lock.withExclusive { 5 } == 5)
    }

    /// A task cancelled before it asks: a free lock is still taken (the body may check
    /// `Task.isCancelled`); a busy one is not waited for.
    @Test func alreadyCancelledTask() async throws {
        let lock = SharedLock()
        let free = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await lock.withExclusive { Task.isCancelled }
        }
        #expect(try await free.value == true)
        let hold = ThreadHold(lock, exclusive: true)
        let busy = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await lock.withShared { 1 }
        }
        #expect(await thrownError { try await busy.value } is CancellationError)
        hold.release()
        #expect(lock.asyncWaiting == 0)
    }

    /// Tasks cancelled at random instants (queued, being acquired, just granted, holding)
    /// while blocking threads keep taking the lock: every task either ran its body or threw
    /// `CancellationError`, the invariants held, and the lock ends idle, with nothing queued,
    /// held or announced.
    @Test(arguments: ["threads", "forkShared"])
    func cancellationAtRandomInstants(scope: String) async throws {
        let lock = scope == "threads" ? SharedLock() : try SharedLock.forkShared()
        let c = Counters()
        let stop = Counters(1)
        let threads = ThreadGroup(2) { index in
            var rng = SeededRandom(seed: UInt64(index + 7))
            while stop[0] == 0 {
                let work = rng.next() % 8 == 0 ? 2_000 : 50  // now and then a long hold
                if rng.next() % 3 == 0 {
                    lock.withExclusive { for _ in 0..<work { Self.exclusiveSection(c) } }
                } else {
                    lock.withShared { for _ in 0..<work { Self.sharedSection(c) } }
                }
            }
        }
        let outcomes = Counters(3)  // 0: ran, 1: cancelled, 2: other errors
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<50 {
                group.addTask {
                    var rng = SeededRandom(seed: UInt64(1000 + index))
                    for _ in 0..<20 {
                        let exclusive = rng.next() % 3 == 0
                        let task = Task {
                            exclusive ? try await lock.withExclusive { Self.exclusiveSection(c) }
                                      : try await lock.withShared { Self.sharedSection(c) }
                        }
                        switch rng.next() % 4 {
                        case 0: break
                        case 1: await Task.yield()
                        default: try? await Task.sleep(for: .microseconds(Int(rng.next() % 3_000)))
                        }
                        task.cancel()
                        do { try await task.value; outcomes.add(0) } catch is CancellationError { outcomes.add(1) } catch { outcomes.add(2) }
                    }
                }
            }
        }
        stop.set(0, 1)
        #expect(threads.join())
        #expect(outcomes[0] + outcomes[1] == 1000 && outcomes[2] == 0)
        #expect(c[Slot.violations] == 0)
        #expect(lock.asyncWaiting == 0 && lock.asyncHeld == 0)
        #expect(lock.withExclusiveIfAvailable { true } == true, "the lock is not free at the end")
        if scope == "forkShared" {
            let s = lock.snapshot()!
            #expect(s.sharedProcessCount == 0 && !s.isExclusive && s.waitingWriters == 0, "\(s)")
        }
        print("cancellation at random instants (\(scope)): \(outcomes[0]) ran, \(outcomes[1]) cancelled "
            + "(\(lock.asyncCancelledAcquiring) while the waiter thread was acquiring), \(lock.asyncGranted) granted by the waiter thread")
    }

    // MARK: Timeouts

    @Test func timeouts() async throws {
        let lock = SharedLock()
        let hold = ThreadHold(lock, exclusive: true)
        // Zero and negative: one try, no waiter thread.
        #expect(await thrownError { try await lock.withShared(timeout: .zero) { 1 } } as? InterlockError == .timedOut)
        #expect(await thrownError { try await lock.withExclusive(timeout: .seconds(-5)) { 1 } } as? InterlockError == .timedOut)
        #expect(lock.asyncWaiterCounts() == nil)
        // A short timeout, being acquired, and one queued behind a request without one.
        let head = Task { try await lock.withExclusive { 1 } }
        #expect(await eventually { lock.asyncWaiting == 1 })
        #expect(await thrownError { try await lock.withShared(timeout: .milliseconds(30)) { 1 } } as? InterlockError == .timedOut)
        #expect(await thrownError { try await lock.withExclusive(timeout: .milliseconds(5)) { 1 } } as? InterlockError == .timedOut)
        #expect(lock.asyncWaiting == 1)
        // A huge timeout waits as long as it takes.
        let patient = Task { try await lock.withShared(timeout: .seconds(Int64.max)) { 2 } }
        #expect(await eventually { lock.asyncWaiting == 2 })
        hold.release()
        #expect(try await head.value == 1)
        #expect(try await patient.value == 2)
        #expect(lock.asyncWaiting == 0)
    }

    // MARK: Mixed with blocking waiters

    @Test(arguments: ["threads", "forkShared"])
    func asyncAndBlockingWaitersKeepTheInvariants(scope: String) async throws {
        let lock = scope == "threads" ? SharedLock() : try SharedLock.forkShared()
        let c = Counters()
        let rounds = 1000
        let stop = Counters(1)
        // Blocking threads take the lock until the tasks are done, so that they contend.
        let threads = ThreadGroup(3) { index in
            var rng = SeededRandom(seed: UInt64(index + 1))
            while stop[0] == 0 {
                if rng.next() % 4 == 0 {
                    lock.withExclusive { Self.exclusiveSection(c) }
                } else {
                    lock.withShared { Self.sharedSection(c) }
                }
            }
        }
        var exclusiveByTasks = 0
        try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<8 {
                group.addTask {
                    var rng = SeededRandom(seed: UInt64(100 + index))
                    var writes = 0
                    for _ in 0..<rounds {
                        switch rng.next() % 8 {
                        case 0, 1:
                            try await lock.withExclusive { Self.exclusiveSection(c) }
                            writes += 1
                        case 2:
                            do {
                                try await lock.withExclusive(timeout: .seconds(30)) { Self.exclusiveSection(c) }
                                writes += 1
                            } catch InterlockError.timedOut { c.add(Slot.violations) }
                        case 3:
                            try await lock.withShared(timeout: .seconds(30)) { Self.sharedSection(c) }
                        default:
                            try await lock.withShared { Self.sharedSection(c) }
                        }
                    }
                    return writes
                }
            }
            for try await writes in group { exclusiveByTasks += writes }
        }
        stop.set(0, 1)
        #expect(threads.join())
        #expect(c[Slot.violations] == 0)
        #expect(c[Slot.readers] == 0 && c[Slot.writers] == 0)
        #expect(c[Slot.value] >= exclusiveByTasks)
        #expect(lock.asyncWaiting == 0 && lock.asyncHeld == 0)
        #expect(lock.asyncGranted > 0, "no task ever waited: the test did not contend")
        if scope == "forkShared" {
            let s = lock.snapshot()!
            #expect(s.sharedProcessCount == 0 && !s.isExclusive && s.waitingWriters == 0)
        }
    }

    /// Readers that hold back to back on two threads (each hold overlapping the other's)
    /// never let the lock go free; an async writer still gets in, every time.
    @Test func asyncWriterIsNotStarvedByAReaderFlood() async throws {
        let lock = SharedLock()
        let c = Counters()
        let stop = Counters(1)
        let readers = ThreadGroup(2) { _ in
            while stop[0] == 0 {
                lock.withShared { for _ in 0..<200 { Self.sharedSection(c) } }
            }
        }
        #expect(await eventually { c[Slot.done] > 1000 }, "the readers did not start")
        for _ in 0..<30 {
            try await lock.withExclusive { Self.exclusiveSection(c) }
        }
        stop.set(0, 1)
        #expect(readers.join())
        #expect(c[Slot.value] == 30)
        #expect(c[Slot.violations] == 0)
        #expect(lock.asyncGranted > 0, "the writer never waited: the readers did not flood")
    }

    // MARK: Isolation

    @MainActor @Test func bodyRunsOnTheCallersActor() async throws {
        let lock = SharedLock()
        try await lock.withShared { MainActor.assertIsolated() }
        let hold = ThreadHold(lock, exclusive: true)
        let waited = Task { @MainActor in try await lock.withExclusive { MainActor.assertIsolated() } }
        #expect(await eventually { lock.asyncWaiting == 1 })
        hold.release()
        try await waited.value
        #expect(lock.asyncGranted == 1)
    }

    // MARK: Shared values

    @Test(arguments: ["threads", "forkShared"])
    func sharedLockedAsyncForms(scope: String) async throws {
        let value = scope == "threads" ? SharedLocked(0) : try SharedLocked.forkShared(0)
        let hold = ThreadHold(value.lock, exclusive: true)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<50 {
                group.addTask {
                    if i % 5 == 0 {
                        let seen = try await value.withShared(timeout: .seconds(30)) { $0 }
                        #expect(seen >= 0)
                    } else if i % 5 == 1 {
                        try await value.withExclusive(timeout: .seconds(30)) { $0 += 1 }
                    } else if i % 5 == 2 {
                        _ = try await value.withShared { $0 }
                    } else {
                        try await value.withExclusive { $0 += 1 }
                    }
                }
            }
            #expect(await eventually { value.lock.asyncWaiting == 50 })
            hold.release()
            try await group.waitForAll()
        }
        #expect(try await value.withShared { $0 } == 30)
    }

    @Test(arguments: ["threads", "forkShared"])
    func sharedLockedArrayAsyncForms(scope: String) async throws {
        let array = scope == "threads"
            ? try SharedLockedArray(count: 16, repeating: 0)
            : try SharedLockedArray<Int>.forkShared(count: 16, repeating: 0)
        let hold = ThreadHold(array.lock, exclusive: true)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<32 {
                group.addTask {
                    switch i % 4 {
                    case 0: try await array.withExclusive { values, _ in values[i % 16] += 1 }
                    case 1: try await array.withExclusive(timeout: .seconds(30)) { values, _ in values[i % 16] += 1 }
                    case 2: _ = try await array.withShared { $0[0] }
                    default: _ = try await array.withShared(timeout: .seconds(30)) { $0[1] }
                    }
                }
            }
            #expect(await eventually { array.lock.asyncWaiting == 32 })
            hold.release()
            try await group.waitForAll()
        }
        let total = try await array.withShared { span in (0..<span.count).reduce(0) { $0 + span[$1] } }
        #expect(total == 16)
    }
}
