// A threads-scope SharedLocked after fork() (issue 14 item 4): a child forked while
// another parent thread was inside withExclusive must never read the half-written value
// silently; the value is poisoned there and every access traps with a message.

import Interlock
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("SharedLocked after fork()", .timeLimit(.minutes(1)))
struct SharedLockedForkTests {
    /// Another thread is in the middle of a write (a == b broken inside the closure) when
    /// the main thread forks: the child's access traps instead of seeing a != b.
    @Test(arguments: ["shared", "exclusive"])
    func poisonedWhenAnotherThreadWasWriting(access: String) async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [access = access as String] in
            alarm(20)
            let pair = SharedLocked((a: 0, b: 0))
            let parking = Parking()  // the writer waits there, mid-write
            let writer = TestThread {
                pair.withExclusive { value in
                    value.a += 1  // half-written: a != b until b catches up
                    parking.park()
                    value.b += 1
                }
            }
            if !parking.waitParked() { finish(1, "the writer never started") }
            let status = forkAndWait {
                let consistent = access == "shared"
                    ? pair.withShared { $0.a == $0.b }
                    : pair.withExclusive { $0.a == $0.b }
                let message = "the child read the value (consistent: \(consistent)) instead of trapping\n"
                _ = message.withCString { write(2, $0, strlen($0)) }
                return 0
            }
            parking.release()
            writer.join()
            // The parent is not affected: its writer finished.
            if !pair.withShared({ $0.a == 1 && $0.b == 1 }) { finish(1, "the parent's value is wrong") }
            finish(status > 128 ? 0 : 1, "the child did not trap (status \(status))")
        }
        let stderr = result.map { String(decoding: $0.standardErrorContent, as: UTF8.self) } ?? ""
        #expect(stderr.contains("is poisoned in this fork() child"), "stderr: \(stderr)")
    }

    /// Control: a fork while other threads only read, or by the writing thread itself
    /// (inside its own withExclusive), poisons nothing; the child can use the value.
    @Test func notPoisonedWhenOnlyReadingOrForkedByTheWriter() async {
        await #expect(processExitsWith: .success) {
            alarm(20)
            let pair = SharedLocked((a: 0, b: 0))
            let parking = Parking()
            let reader = TestThread {
                pair.withShared { _ in parking.park() }
            }
            if !parking.waitParked() { finish(1, "the reader never started") }
            let status = forkAndWait {
                pair.withExclusive { $0.a += 1; $0.b += 1 }
                return pair.withShared { $0.a == 1 && $0.b == 1 } ? 0 : 1
            }
            parking.release()
            reader.join()
            if status != 0 { finish(1, "the child of a fork during a read could not use the value (status \(status))") }

            var childStatus: Int32 = -1
            pair.withExclusive { value in
                value.a += 1
                childStatus = forkAndWait {
                    // The forking thread's own write goes on in the child.
                    return 0
                }
                value.b += 1
            }
            if childStatus != 0 { finish(1, "the child of a fork inside withExclusive exited \(childStatus)") }
            let status2 = forkAndWait { pair.withShared { $0.a == $0.b } ? 0 : 1 }
            finish(status2, "the value is not usable in a child after the writer finished")
        }
    }

    /// The writer forks inside its own withExclusive, and the child goes on using the
    /// value after its closure returned: its own write finished, so nothing is poisoned.
    @Test func writerForkingInsideItsOwnWriteCanUseTheValueInTheChild() async {
        await #expect(processExitsWith: .success) {
            alarm(20)
            let pair = SharedLocked((a: 0, b: 0))
            let me = getpid()
            pair.withExclusive { value in
                value.a += 1
                if fork() == 0 { return }  // the child finishes this write, and returns
                value.b += 1
            }
            if getpid() != me {
                // The child: the closure's first half ran in the parent, the rest here.
                let ok = pair.withShared { $0.a == 1 && $0.b == 0 }
                _exit(ok ? 0 : 1)
            }
            var status: Int32 = 0
            if wait(&status) < 0 { finish(1, "wait failed") }
            finish(status == 0 ? 0 : 1, "the child could not use the value after the writer's own fork (status \(status))")
        }
    }
}
