// A SharedLock deinitialised while its process holds it (issue 14 item 3): a misuse trap
// that names the lock, not a hold that silently outlives the lock until the process exits.

import Interlock
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Deinitialised while held", .timeLimit(.minutes(1)))
struct DeinitWhileHeldTests {
    @Test(arguments: ["threads", "forkShared", "named"], ["shared", "exclusive"])
    func trapsNamingTheLock(scope: String, mode: String) async {
        let name = TestLocks.uniqueName("deinit-held")
        defer { TestLocks.cleanUp(name) }
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            [scope = scope as String, mode = mode as String, name = name as String] in synchronously {
            alarm(20)
            var lock: SharedLock?
            switch scope {
            case "threads": lock = SharedLock()
            case "forkShared": lock = try! SharedLock.forkShared()
            default: lock = try! SharedLock(named: name)
            }
            if mode == "exclusive" { lock!.lockExclusive() } else { lock!.lockShared() }
            lock = nil  // the last reference: must trap here
            _ = "no trap when the lock was deinitialised while held\n".withCString { write(2, $0, strlen($0)) }
            _exit(0)
        } }
        let stderr = result.map { String(decoding: $0.standardErrorContent, as: UTF8.self) } ?? ""
        #expect(stderr.contains("Interlock misuse"), "stderr: \(stderr)")
        #expect(stderr.contains("deinitialised while this process holds it in \(mode) mode"), "stderr: \(stderr)")
        let named = switch scope {
        case "threads": "SharedLock() (threads scope)"
        case "forkShared": "SharedLock.forkShared()"
        default: "SharedLock(named: \"\(name)\")"
        }
        #expect(stderr.contains(named), "stderr: \(stderr)")
    }

    /// Control: a lock released before its last reference goes away, or held only by a
    /// parent before fork(), deinitialises quietly.
    @Test func releasedOrInheritedLockDeinitialisesQuietly() async {
        await #expect(processExitsWith: .success) { synchronously {
            alarm(20)
            var lock: SharedLock? = try! SharedLock.forkShared()
            lock!.lockExclusive()
            lock!.unlockExclusive()
            lock!.lockShared()
            lock!.unlockShared()
            lock = nil
            var inherited: SharedLock? = SharedLock()  // the only reference
            inherited!.lockExclusive()
            let status = forkAndWait {
                // The child drops every reference: it holds nothing, so no trap.
                inherited = nil
                return 0
            }
            inherited!.unlockExclusive()
            finish(status, "the child trapped deinitialising a lock its parent held")
        } }
    }
}
