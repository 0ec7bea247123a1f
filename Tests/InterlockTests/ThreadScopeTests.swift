// Threads-scope SharedLock: modes under stress, writer preference, timeouts and try forms.
//
// Every check is an invariant observed inside a critical section or an order recorded by
// an atomic sequence counter. Threads are real pthreads (`TestThread`); handshakes are
// atomics polled with generous bounds (`waitUntil`), never sleeps.

import Synchronization
import Testing
import Interlock

#if canImport(Glibc)
import Glibc
#endif

@Suite("SharedLock, threads scope", .serialized, .timeLimit(.minutes(1)))
struct ThreadScopeTests {
    // MARK: Modes

    /// Counter slots used by the stress test.
    private enum Slot {
        static let readers = 0, writers = 1, violations = 2, sharedHolds = 3
        static let exclusiveHolds = 4, failedAttempts = 5, maxReaders = 6
    }

    /// Inside a shared hold: no writer may be inside.
    private static func sharedSection(_ c: Counters) {
        let readers = c.add(Slot.readers)
        if c[Slot.writers] != 0 { c.add(Slot.violations) }
        var seen = c[Slot.maxReaders]
        while readers > seen {
            c.set(Slot.maxReaders, readers)  // a racy maximum is fine: it is only reported
            seen = readers
        }
        for _ in 0..<20 { if c[Slot.writers] != 0 { c.add(Slot.violations) } }
        c.add(Slot.sharedHolds)
        c.add(Slot.readers, -1)
    }

    /// Inside an exclusive hold: this writer alone, no reader.
    private static func exclusiveSection(_ c: Counters) {
        let writers = c.add(Slot.writers)
        if writers != 1 || c[Slot.readers] != 0 { c.add(Slot.violations) }
        for _ in 0..<20 { if c[Slot.writers] != 1 || c[Slot.readers] != 0 { c.add(Slot.violations) } }
        c.add(Slot.exclusiveHolds)
        c.add(Slot.writers, -1)
    }

    @Test("no writer ever shares the lock: 8 threads, random holds in every form", arguments: [UInt64(0x1A7E), 0xB0B])
    func modesUnderStress(seed: UInt64) {
        let lock = SharedLock()
        let c = Counters()
        let threadCount = 8  // more threads than cores
        let operations = 10_000
        let threads = ThreadGroup(threadCount) { index in
            var rng = SeededRandom(seed: seed &* 7919 &+ UInt64(index))
            for _ in 0..<operations {
                switch rng.next(upperBound: UInt64(100)) {
                case 0..<55:
                    lock.withShared { Self.sharedSection(c) }
                case 55..<62:
                    if lock.withSharedIfAvailable({ Self.sharedSection(c) }) == nil { c.add(Slot.failedAttempts) }
                case 62..<70:
                    do {
                        try lock.lockShared(timeout: .microseconds(Int(rng.next(upperBound: UInt64(200)))))
                        Self.sharedSection(c)
                        lock.unlockShared()
                    } catch {
                        c.add(Slot.failedAttempts)
                    }
                case 70..<85:
                    lock.withExclusive { Self.exclusiveSection(c) }
                case 85..<92:
                    if lock.tryLockExclusive() {
                        Self.exclusiveSection(c)
                        lock.unlockExclusive()
                    } else {
                        c.add(Slot.failedAttempts)
                    }
                default:
                    do {
                        try lock.withExclusive(timeout: .microseconds(Int(rng.next(upperBound: UInt64(200))))) {
                            Self.exclusiveSection(c)
                        }
                    } catch {
                        c.add(Slot.failedAttempts)
                    }
                }
            }
        }
        #expect(threads.join(), "threads deadlocked")
        #expect(c[Slot.violations] == 0, "a writer shared the lock")
        #expect(c[Slot.readers] == 0 && c[Slot.writers] == 0)
        #expect(c[Slot.sharedHolds] + c[Slot.exclusiveHolds] + c[Slot.failedAttempts] == threadCount * operations)
        #expect(c[Slot.sharedHolds] > 0 && c[Slot.exclusiveHolds] > 0)
        // Failed and timed-out attempts left nothing behind: the lock is free in both modes.
        #expect(onThread { lock.withExclusiveIfAvailable { true } ?? false })
        #expect(onThread { lock.withSharedIfAvailable { true } ?? false })
    }

    @Test("readers really overlap: all of them inside shared mode at once", arguments: [4, 8])
    func readersOverlap(readerCount: Int) {
        let lock = SharedLock()
        let c = Counters()  // 0: inside, 1: saw everyone, 2: failed to enter
        let threads = ThreadGroup(readerCount) { index in
            // Each form of shared acquisition must admit concurrent holders.
            let rendezvous = {
                c.add(0)
                if c.wait(until: { $0[0] == readerCount }) { c.add(1) }
            }
            switch index % 3 {
            case 0:
                lock.withShared(rendezvous)
            case 1:
                if lock.withSharedIfAvailable(rendezvous) == nil {
                    // A try may lose only to a writer; there is none. Enter anyway so the
                    // others are not left waiting, but count the failure.
                    c.add(2)
                    lock.withShared(rendezvous)
                }
            default:
                do { try lock.withShared(timeout: .seconds(10), rendezvous) } catch { c.add(2) }
            }
        }
        #expect(threads.join(), "threads deadlocked")
        #expect(c[1] == readerCount, "only \(c[1]) of \(readerCount) readers saw all readers inside at once")
        #expect(c[2] == 0)
    }

    // MARK: Writer preference

    @Test("a waiting writer goes before readers that arrive after it")
    func writerPreference() {
        let lock = SharedLock()
        // 0: R1 inside, 1: release R1, 2: sequence, 3: W's sequence, 4: R2's sequence,
        // 5: R2's tid, 6: R2 about to lock
        let c = Counters()
        let threads = ThreadGroup()
        defer {
            c.set(1, 1)  // on every path: release R1, then W and R2 can finish
            _ = threads.join()
        }
        threads.spawn {
            lock.lockShared()
            c.set(0, 1)
            _ = c.wait(for: releaseLimit) { $0[1] == 1 }
            lock.unlockShared()
        }
        guard c.wait(until: { $0[0] == 1 }) else {
            Issue.record("R1 never got shared mode")
            return
        }

        threads.spawn {
            lock.lockExclusive()
            c.set(3, c.add(2))
            lock.unlockExclusive()
        }
        // W cannot get in past R1. It is waiting once a try-shared fails, since a try
        // fails only when a writer holds or waits for the lock.
        guard waitUntil({ lock.withSharedIfAvailable { true } == nil }) else {
            Issue.record("the writer never announced itself: try-shared kept succeeding")
            return
        }

        // While W waits, new readers are refused or time out, in every form.
        #expect(onThread { !lock.tryLockShared() })
        #expect(onThread {
            do throws(InterlockError) {
                try lock.lockShared(timeout: .milliseconds(50))
                lock.unlockShared()
                return false
            } catch {
                return error == .timedOut
            }
        })
        #expect(onThread { Self.timesOut { try lock.withShared(timeout: .milliseconds(20)) {} } })

        // R2 asks for shared mode while W waits; it must block until W is done.
        threads.spawn {
            c.set(5, Int(currentTID()))
            c.set(6, 1)
            lock.lockShared()
            c.set(4, c.add(2))
            lock.unlockShared()
        }
        guard c.wait(until: { $0[6] == 1 }) else {
            Issue.record("R2 never started")
            return
        }
        #expect(waitUntilSleeping(Int32(c[5])), "R2 did not block while a writer waited")
        #expect(c[4] == 0, "R2 got shared mode while a writer waited")
        #expect(c[3] == 0, "W got exclusive mode while R1 held shared mode")

        c.set(1, 1)  // release R1: W goes first, then R2
        #expect(threads.join(), "threads deadlocked")
        #expect(c[3] > 0 && c[4] > 0)
        #expect(c[3] < c[4], "R2 (sequence \(c[4])) got in before the waiting writer (sequence \(c[3]))")
    }

    @Test("a stream of overlapping readers does not starve a writer")
    func readerStreamDoesNotStarveWriter() {
        let lock = SharedLock()
        let c = Counters()  // 0: stop, 1: shared holds (entries)
        // Each reader stays until a later reader has come in (or 20 ms pass), so without
        // writer preference the reader count would not drop to zero while the stream
        // lasts, and the writer would wait behind it for good.
        let readers = ThreadGroup(4) { _ in
            while c[0] == 0 {
                lock.withShared {
                    let ticket = c.add(1)
                    _ = c.wait(for: .milliseconds(20)) { $0[1] > ticket || $0[0] != 0 }
                }
            }
        }
        defer {
            c.set(0, 1)
            #expect(readers.join(), "readers deadlocked")
        }
        #expect(c.wait { $0[1] > 1_000 }, "the readers never got going")
        let gotIn = onThread {
            (try? lock.withExclusive(timeout: .seconds(10)) { true }) ?? false
        }
        #expect(gotIn, "the writer waited 10 s behind a stream of readers")
    }

    // MARK: Timeouts and try forms

    /// Expects `attempt` to throw `InterlockError.timedOut`.
    private static func timesOut(_ attempt: () throws -> Void) -> Bool {
        do {
            try attempt()
            return false
        } catch {
            return error as? InterlockError == .timedOut
        }
    }

    @Test("while exclusive mode is held, other threads fail every try and timed form")
    func exclusiveHeldRefusesEveryone() {
        let lock = SharedLock()
        lock.lockExclusive()
        #expect(onThread { !lock.tryLockShared() })
        #expect(onThread { !lock.tryLockExclusive() })
        #expect(onThread { lock.withSharedIfAvailable { true } == nil })
        #expect(onThread { lock.withExclusiveIfAvailable { true } == nil })
        #expect(onThread { Self.timesOut { try lock.lockShared(timeout: .milliseconds(30)) } })
        #expect(onThread { Self.timesOut { try lock.lockExclusive(timeout: .milliseconds(30)) } })
        #expect(onThread { Self.timesOut { try lock.lockShared(timeout: .zero) } })
        #expect(onThread { Self.timesOut { try lock.lockExclusive(timeout: .seconds(-1)) } })
        let ran = Counters(1)
        #expect(onThread { Self.timesOut { try lock.withShared(timeout: .milliseconds(20)) { _ = ran.add(0) } } })
        #expect(onThread { Self.timesOut { try lock.withExclusive(timeout: .milliseconds(20)) { _ = ran.add(0) } } })
        #expect(ran[0] == 0, "a body ran although its lock timed out")
        lock.unlockExclusive()

        // Fully usable afterwards, in both modes, by any thread.
        #expect(onThread { lock.withExclusiveIfAvailable { true } ?? false })
        #expect(onThread { (try? lock.withShared(timeout: .zero) { true }) ?? false })
        #expect(onThread { (try? lock.withExclusive(timeout: .zero) { true }) ?? false })
        #expect(lock.withExclusiveIfAvailable { true } ?? false)
    }

    @Test("while shared mode is held, writers fail and readers still get in")
    func sharedHeldRefusesWritersOnly() throws {
        let lock = SharedLock()
        lock.lockShared()
        #expect(onThread { !lock.tryLockExclusive() })
        #expect(onThread { lock.withExclusiveIfAvailable { true } == nil })
        #expect(onThread { Self.timesOut { try lock.lockExclusive(timeout: .milliseconds(30)) } })
        #expect(onThread { Self.timesOut { try lock.lockExclusive(timeout: .zero) } })
        #expect(onThread { Self.timesOut { try lock.withExclusive(timeout: .milliseconds(20)) {} } })
        // The writers that timed out left no "writer waiting" mark: readers get in at once.
        #expect(onThread { lock.withSharedIfAvailable { true } ?? false })
        #expect(onThread {
            guard lock.tryLockShared() else { return false }
            lock.unlockShared()
            return true
        })
        #expect(onThread { (try? lock.withShared(timeout: .zero) { true }) ?? false })
        lock.unlockShared()
        #expect(onThread { lock.withExclusiveIfAvailable { true } ?? false })
    }

    @Test("writers that time out together leave no trace")
    func concurrentWriterTimeoutsLeaveNoTrace() {
        let lock = SharedLock()
        lock.lockShared()
        let c = Counters()  // 0: timed out, 1: other outcome
        let writers = ThreadGroup(4) { index in
            for round in 0..<10 {
                do throws(InterlockError) {
                    try lock.lockExclusive(timeout: .milliseconds(1 + (index + round) % 5))
                    lock.unlockExclusive()
                    c.add(1)
                } catch {
                    c.add(error == .timedOut ? 0 : 1)
                }
            }
        }
        #expect(writers.join(), "writers deadlocked")
        #expect(c[0] == 40 && c[1] == 0)
        #expect(onThread { lock.withSharedIfAvailable { true } ?? false })
        lock.unlockShared()
        #expect(onThread { lock.withExclusiveIfAvailable { true } ?? false })
        #expect(lock.withSharedIfAvailable { true } ?? false)
    }

    @Test("a timed writer that waits, then gets in, lets readers back in after it")
    func timedWriterSucceedsAfterWaiting() throws {
        let lock = SharedLock()
        let c = Counters()  // 0: W result (1 got in, 2 timed out), 1: W inside
        lock.lockShared()
        let w = ThreadGroup()
        w.spawn {
            do {
                try lock.withExclusive(timeout: .seconds(10)) { c.set(1, 1) }
                c.set(0, 1)
            } catch {
                c.set(0, 2)
            }
        }
        let announced = waitUntil { onThread { lock.withSharedIfAvailable { true } == nil } }
        #expect(announced, "the timed writer never announced itself")
        #expect(c[1] == 0, "the writer got in while a reader held the lock")
        lock.unlockShared()
        #expect(w.join(), "the writer deadlocked")
        #expect(c[0] == 1)
        #expect(lock.withSharedIfAvailable { true } ?? false, "the writer's announcement outlived its hold")
        #expect(onThread { lock.withExclusiveIfAvailable { true } ?? false })
    }

    @Test("a body's error passes through, and the lock is released")
    func bodyErrorsPassThrough() {
        struct Oops: Error, Equatable {}
        let lock = SharedLock()
        #expect(throws: Oops()) { try lock.withShared { () throws(Oops) in throw Oops() } }
        #expect(throws: Oops()) { try lock.withExclusive { () throws(Oops) in throw Oops() } }
        #expect(throws: Oops()) { try lock.withSharedIfAvailable { () throws(Oops) in throw Oops() } }
        #expect(throws: Oops()) { try lock.withExclusiveIfAvailable { () throws(Oops) in throw Oops() } }
        #expect(throws: Oops()) { try lock.withShared(timeout: .seconds(1)) { throw Oops() } }
        #expect(throws: Oops()) { try lock.withExclusive(timeout: .seconds(1)) { throw Oops() } }
        #expect(onThread { lock.withExclusiveIfAvailable { true } ?? false })
        #expect(lock.scope == .threads)
        #expect(lock.snapshot() == nil)
        #expect(lock.withExclusive { lock.previousHolderDied } == false)
    }
}
