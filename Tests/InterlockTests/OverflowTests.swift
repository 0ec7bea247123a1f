// Huge durations (issue 14 item 5): every Duration that becomes a deadline saturates —
// no arithmetic-overflow crash, no wrap-around that times out at once.

import Interlock
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Durations that overflow Int64 nanoseconds in different ways: the seconds alone
/// (Int64.max), or only once the sub-second part is added (the old `&+` wrapped there).
private let hugeDurations: [Duration] = [
    .seconds(Int64.max),
    .seconds(9_223_372_036) + .nanoseconds(999_999_999),
    .nanoseconds(Int64.max),
]

@Suite("Huge durations saturate", .timeLimit(.minutes(1)))
struct OverflowTests {
    /// Opening an existing named lock with `readyTimeout = .seconds(Int64.max)` used to
    /// crash with an arithmetic overflow.
    @Test func hugeReadyTimeoutOpensAnExistingLock() async {
        let name = TestLocks.uniqueName("huge-ready")
        defer { TestLocks.cleanUp(name) }
        let creator = try? SharedLock(named: name)
        #expect(creator != nil)
        await #expect(processExitsWith: .success) { [name = name as String] in
            alarm(20)
            for huge in [Duration.seconds(Int64.max), .seconds(9_223_372_036) + .nanoseconds(999_999_999)] {
                var options = NamedLockOptions()
                options.readyTimeout = huge
                do {
                    let lock = try SharedLock(named: name, options: options)
                    lock.withExclusive {}
                } catch {
                    finish(1, "open with readyTimeout \(huge) failed: \(error)")
                }
            }
            finish(0)
        }
        _ = creator
    }

    @Test func readyTimeoutIsClampedNotRejected() {
        var options = NamedLockOptions()
        options.readyTimeout = .seconds(Int64.max)
        #expect(options.readyTimeout == NamedLockOptions.longestReadyTimeout)
        options.readyTimeout = .seconds(-5)
        #expect(options.readyTimeout == .zero)
        options.readyTimeout = .milliseconds(300)
        #expect(options.readyTimeout == .milliseconds(300))
    }

    /// A timed acquisition with a huge timeout waits for the holder (it used to time out
    /// at once when the deadline wrapped). Both modes, threads and fork-shared scopes.
    @Test(arguments: ["threads", "forkShared"], ["shared", "exclusive"])
    func hugeTimeoutWaitsForTheHolder(scope: String, mode: String) throws {
        for huge in hugeDurations {
            let lock = scope == "threads" ? SharedLock() : try SharedLock.forkShared()
            lock.lockExclusive()
            let progress = Counters(3)  // 0: waiter's tid, 1: 1 acquired / 2 timed out
            let group = ThreadGroup()
            group.spawn {
                progress.set(0, Int(currentTID()))
                do {
                    if mode == "shared" {
                        try lock.lockShared(timeout: huge)
                        lock.unlockShared()
                    } else {
                        try lock.lockExclusive(timeout: huge)
                        lock.unlockExclusive()
                    }
                    progress.set(1, 1)
                } catch {
                    progress.set(1, 2)
                }
            }
            #expect(progress.wait(until: { $0[0] != 0 }))
            // The waiter must block (asleep on the lock), not return with a timeout.
            let blocked = waitUntilSleeping(Int32(progress[0]))
            #expect(blocked, "\(huge): the waiter did not block (result \(progress[1]))")
            lock.unlockExclusive()
            #expect(group.join())
            #expect(progress[1] == 1, "\(huge): the waiter timed out instead of waiting for the holder")
        }
    }
}
