// Misuse is loud (promise 6): each mistake traps with an "Interlock misuse" message
// instead of deadlocking or corrupting the lock. One exit test per mistake.
//
// Exit-test bodies capture nothing (a toolchain bug crashes the compiler on implicit
// captures): each makes its own lock.

import Testing
import Interlock

#if canImport(Glibc)
import Glibc
#endif

/// Checks that an exit test's stderr names the mistake.
private func expectMisuse(
    _ result: ExitTest.Result?, mentioning operation: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let result else { return }  // the exit test itself already failed
    let stderr = String(decoding: result.standardErrorContent, as: UTF8.self)
    #expect(stderr.contains("Interlock misuse"), "stderr: \(stderr)", sourceLocation: sourceLocation)
    #expect(stderr.contains(operation), "stderr: \(stderr)", sourceLocation: sourceLocation)
}

@Suite("Misuse traps with a message", .timeLimit(.minutes(1)))
struct MisuseTests {
    // MARK: Re-acquiring exclusive mode on the holding thread

    @Test func lockExclusiveTwice() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { synchronously {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            lock.lockExclusive()
            lock.lockExclusive()
        } }
        expectMisuse(result, mentioning: "lockExclusive()")
    }

    @Test func tryLockExclusiveWhileHoldingExclusive() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { synchronously {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            lock.lockExclusive()
            _ = lock.tryLockExclusive()
        } }
        expectMisuse(result, mentioning: "tryLockExclusive()")
    }

    @Test func timedLockExclusiveWhileHoldingExclusive() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { synchronously {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            lock.lockExclusive()
            try? lock.lockExclusive(timeout: .milliseconds(10))
        } }
        expectMisuse(result, mentioning: "lockExclusive(timeout:)")
    }

    /// Shared mode cannot be upgraded: a thread holding shared mode that asks for
    /// exclusive mode would wait for itself forever (glibc returns EDEADLK only for a
    /// thread holding the write lock). Blocking, timed and process-scope forms.
    @Test(arguments: ["blocking", "timed", "forkShared"])
    func lockExclusiveWhileHoldingShared(form: String) async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { [form = form as String] in synchronously {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = form == "forkShared" ? try! SharedLock.forkShared() : SharedLock()
            lock.lockShared()
            if form == "timed" {
                try? lock.lockExclusive(timeout: .seconds(5))
            } else {
                lock.lockExclusive()
            }
        } }
        expectMisuse(result, mentioning: "cannot be upgraded")
    }

    @Test func nestedWithExclusive() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            lock.withExclusive { lock.withExclusive {} }
        }
        expectMisuse(result, mentioning: "not recursive")
    }

    @Test func nestedWithExclusiveIfAvailable() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            lock.withExclusive { _ = lock.withExclusiveIfAvailable {} }
        }
        expectMisuse(result, mentioning: "not recursive")
    }

    @Test func nestedSharedLockedWithExclusive() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let value = SharedLocked(0)
            value.withExclusive { _ in value.withExclusive { $0 += 1 } }
        }
        expectMisuse(result, mentioning: "not recursive")
    }

    // MARK: Unlocking what the thread does not hold

    @Test func unlockExclusiveWithoutHolding() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { synchronously {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            lock.unlockExclusive()
        } }
        expectMisuse(result, mentioning: "unlockExclusive()")
    }

    @Test func unlockExclusiveWhileHoldingShared() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { synchronously {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            lock.lockShared()
            lock.unlockExclusive()
        } }
        expectMisuse(result, mentioning: "unlockExclusive()")
    }

    @Test func unlockExclusiveHeldByAnotherThread() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { synchronously {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            let gate = Counters(2)  // 0: holder inside, 1: release
            let holder = TestThread {
                lock.lockExclusive()
                gate.set(0, 1)
                _ = gate.wait(for: releaseLimit) { $0[1] == 1 }
                lock.unlockExclusive()
            }
            precondition(gate.wait { $0[0] == 1 }, "the holder never got in")
            lock.unlockExclusive()  // not this thread's hold
            gate.set(1, 1)
            holder.join()
        } }
        expectMisuse(result, mentioning: "unlockExclusive()")
    }

    @Test func unlockSharedWithoutHolding() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { synchronously {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            lock.unlockShared()
        } }
        expectMisuse(result, mentioning: "unlockShared()")
    }

    @Test func unlockSharedTwice() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { synchronously {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            lock.lockShared()
            lock.unlockShared()
            lock.unlockShared()
        } }
        expectMisuse(result, mentioning: "unlockShared()")
    }

    @Test func unlockSharedWhileHoldingExclusive() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { synchronously {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            lock.lockExclusive()
            lock.unlockShared()
        } }
        expectMisuse(result, mentioning: "unlockShared()")
    }

    /// The documented contract ("Calling it without holding shared mode ... traps") and
    /// promise 6 cover a thread that never took shared mode while *another* thread holds
    /// it: releasing that other thread's share would let a writer in beside it.
    @Test func unlockSharedHeldOnlyByAnotherThread() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { synchronously {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            let gate = Counters(2)  // 0: holder inside, 1: release
            _ = TestThread {  // never joined: the body ends the process
                lock.lockShared()
                gate.set(0, 1)
                _ = gate.wait(for: releaseLimit) { $0[1] == 1 }
                lock.unlockShared()
            }
            precondition(gate.wait { $0[0] == 1 }, "the holder never got in")
            lock.unlockShared()  // this thread holds nothing: must trap here
            // Not trapped: show the damage (a writer gets in beside the holder), then exit
            // 0 before the holder's own unlockShared() can trap and hide the bug.
            let writerGotIn = lock.tryLockExclusive()
            let message = "unlockShared() did not trap; a writer got in beside a reader: \(writerGotIn)\n"
            _ = message.withCString { write(2, $0, strlen($0)) }
            _exit(0)
        } }
        expectMisuse(result, mentioning: "unlockShared()")
    }

    /// The same, when the calling thread holds shared mode on a *different* lock.
    @Test(.bug(id: "T23-1", "unlockShared() on a thread holding shared mode on another lock is silent"))
    func unlockSharedWhileHoldingAnotherLockShared() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { synchronously {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            let other = SharedLock()
            let gate = Counters(2)  // 0: holder inside, 1: release
            _ = TestThread {  // never joined: the body ends the process
                lock.lockShared()
                gate.set(0, 1)
                _ = gate.wait(for: releaseLimit) { $0[1] == 1 }
                lock.unlockShared()
            }
            precondition(gate.wait { $0[0] == 1 }, "the holder never got in")
            other.lockShared()
            lock.unlockShared()  // this thread holds `other`, not `lock`: must trap here
            let writerGotIn = lock.tryLockExclusive()
            let message = "unlockShared() did not trap; a writer got in beside a reader: \(writerGotIn)\n"
            _ = message.withCString { write(2, $0, strlen($0)) }
            _exit(0)
        } }
        expectMisuse(result, mentioning: "unlockShared()")
    }

    // MARK: Asking for shared mode while holding exclusive mode

    @Test func lockSharedWhileHoldingExclusive() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { synchronously {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            lock.lockExclusive()
            lock.lockShared()
        } }
        expectMisuse(result, mentioning: "lockShared()")
    }

    @Test func tryLockSharedWhileHoldingExclusive() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { synchronously {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            lock.lockExclusive()
            _ = lock.tryLockShared()
        } }
        expectMisuse(result, mentioning: "tryLockShared()")
    }

    @Test func timedLockSharedWhileHoldingExclusive() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { synchronously {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            lock.lockExclusive()
            try? lock.lockShared(timeout: .milliseconds(10))
        } }
        expectMisuse(result, mentioning: "lockShared(timeout:)")
    }

    @Test func withSharedInsideWithExclusive() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            lock.withExclusive { lock.withShared {} }
        }
        expectMisuse(result, mentioning: "lockShared()")
    }

    // MARK: Control: correct use does not trap

    @Test func correctUseExitsCleanly() async {
        await #expect(processExitsWith: .success) { synchronously {
            alarm(20)
            let lock = SharedLock()
            lock.lockExclusive()
            lock.unlockExclusive()
            lock.lockShared()
            lock.unlockShared()
            lock.withExclusive {}
            _ = lock.withExclusiveIfAvailable { lock.previousHolderDied }
        } }
    }
}
