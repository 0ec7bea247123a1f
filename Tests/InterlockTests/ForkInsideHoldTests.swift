// fork() inside a hold (promise 4, issue 14 item 1): a child forked inside `withShared`
// or `withExclusive` returns from the closure, and its release of the parent's hold is a
// quiet no-op; the parent's hold stays intact. Scoped and manual forms, threads and
// fork-shared scopes, shared and exclusive mode.
//
// Every body runs in an exit test (a quiet process, the safe place to fork). The child
// reports through its exit status; the parent keeps its hold until the child is done, then
// checks that the hold is still its own and releases it normally.

import Interlock
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("fork() inside a hold", .timeLimit(.minutes(2)))
struct ForkInsideHoldTests {
    @Test(arguments: ["threads", "forkShared"], ["shared", "exclusive"])
    func childReleasesQuietlyAndParentKeepsItsHold(scope: String, mode: String) async {
        for form in ["scoped", "manual"] {
            let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent], "\(form) form") {
                [scope = scope as String, mode = mode as String, form = form as String] in
                alarm(30)
                ForkInsideHold.run(scope: scope, exclusive: mode == "exclusive", scoped: form == "scoped")
            }
            if let result, result.exitStatus != .exitCode(0) {
                Issue.record("\(form) form: \(String(decoding: result.standardErrorContent, as: UTF8.self))")
            }
        }
    }

    /// The pre-fork hold is forgotten once: releasing it a second time in the child is
    /// misuse like any other unlock of what the thread does not hold.
    @Test(arguments: ["shared", "exclusive"])
    func secondReleaseInChildTraps(mode: String) async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [mode = mode as String] in synchronously {
            alarm(30)
            let lock = SharedLock()
            let exclusive = mode == "exclusive"
            if exclusive { lock.lockExclusive() } else { lock.lockShared() }
            let status = forkAndWait {
                if exclusive { lock.unlockExclusive() } else { lock.unlockShared() }  // quiet
                if exclusive { lock.unlockExclusive() } else { lock.unlockShared() }  // traps
                return 0
            }
            if exclusive { lock.unlockExclusive() } else { lock.unlockShared() }
            finish(status > 128 ? 0 : 1, "the second release in the child did not trap (status \(status))")
        } }
        let stderr = result.map { String(decoding: $0.standardErrorContent, as: UTF8.self) } ?? ""
        #expect(stderr.contains("Interlock misuse"), "stderr: \(stderr)")
    }

    /// A thread created in the child (not the forking thread) cannot release a hold that
    /// a parent thread took: only the forking thread's own pre-fork holds are forgiven.
    /// (Not under ThreadSanitizer, which cannot start threads in a child forked from a
    /// multi-threaded process.)
    @Test(.enabled(if: !ForkHammer.underThreadSanitizer), arguments: ["shared", "exclusive"])
    func otherThreadInChildCannotReleaseParentHold(mode: String) async {
        await #expect(processExitsWith: .success) { [mode = mode as String] in synchronously {
            alarm(30)
            let lock = SharedLock()
            let exclusive = mode == "exclusive"
            if exclusive { lock.lockExclusive() } else { lock.lockShared() }
            let status = forkAndWait {
                _ = onOtherThread {
                    if exclusive { lock.unlockExclusive() } else { lock.unlockShared() }  // traps
                    return true
                }
                return 0
            }
            if exclusive { lock.unlockExclusive() } else { lock.unlockShared() }
            finish(status > 128 ? 0 : 1, "another thread's release in the child did not trap (status \(status))")
        } }
    }
}

/// The body of `childReleasesQuietlyAndParentKeepsItsHold`, in the exit test's process.
enum ForkInsideHold {
    static func run(scope: String, exclusive: Bool, scoped: Bool) -> Never {
        let processScope = scope == "forkShared"
        let lock: SharedLock
        do { lock = processScope ? try SharedLock.forkShared() : SharedLock() } catch { finish(1, "forkShared: \(error)") }
        let me = getpid()

        // The work done while holding: fork; the child returns from it (and releases),
        // the parent waits for the child, inside its hold, and checks that the hold is
        // still its own.
        let body = {
            let pid = fork()
            precondition(pid >= 0, "fork failed")
            if pid == 0 { return }
            let status = waitForChild(pid)
            if status != 0 { finish(1, "the child exited \(status)") }
            let others = onOtherThread { exclusive ? !lock.tryLockShared() : !lock.tryLockExclusive() }
            if !others { finish(1, "the parent's \(exclusive ? "exclusive" : "shared") hold is gone after the child released") }
            if processScope {
                let holders = lock.snapshot()!.holders.filter { $0.pid == me }
                if holders.first?.mode != (exclusive ? .exclusive : .shared) {
                    finish(1, "the parent's holder entry is \(holders) after the child released")
                }
            }
        }
        if scoped {
            if exclusive { lock.withExclusive(body) } else { lock.withShared(body) }
        } else {
            if exclusive { lock.lockExclusive() } else { lock.lockShared() }
            body()
            // The manual release: a no-op in the child, the real release in the parent.
            if exclusive { lock.unlockExclusive() } else { lock.unlockShared() }
        }

        if getpid() != me {
            // The child: it returned from the closure and released without trapping.
            _exit(childChecks(lock, processScope: processScope, parentExclusive: exclusive))
        }

        // Released: the lock is free again.
        if !onOtherThread({ lock.withExclusiveIfAvailable { true } ?? false }) {
            finish(1, "the lock is not free after the parent released")
        }
        if processScope { Proc.checkIdle(lock) }
        finish(0)
    }

    /// In the child, after its release: it holds nothing of the parent's hold.
    static func childChecks(_ lock: SharedLock, processScope: Bool, parentExclusive: Bool) -> Int32 {
        if !processScope {
            // The threads scope is per process: the child's lock is free.
            guard lock.tryLockExclusive() else { return 10 }
            lock.unlockExclusive()
            return 0
        }
        // A process scope: the parent's hold applies to the child too.
        if parentExclusive {
            if lock.tryLockShared() { return 11 }
            return 0
        }
        if lock.tryLockExclusive() { return 12 }
        guard lock.tryLockShared() else { return 13 }
        lock.unlockShared()
        return 0
    }
}
