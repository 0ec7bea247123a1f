// More than 16 shared holds on one thread (issue 14 item 2): the per-thread record of
// shared holds grows, so the misuse checks keep working — no cliff where they switch off.

import Interlock
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Many shared holds on one thread", .timeLimit(.minutes(1)))
struct ManySharedHoldsTests {
    /// Past the record's inline capacity, unlocking a lock the thread does not hold
    /// still traps.
    @Test(arguments: [17, 40])
    func unlockOfNotHeldStillTraps(holds: Int) async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { [holds = holds as Int] in synchronously {
            alarm(20)
            let held = (0..<holds).map { _ in SharedLock() }
            for lock in held { lock.lockShared() }
            let other = SharedLock()
            other.unlockShared()  // not held: must trap
            _ = "unlockShared() of a lock not held did not trap\n".withCString { write(2, $0, strlen($0)) }
            _exit(0)
        } }
        let stderr = result.map { String(decoding: $0.standardErrorContent, as: UTF8.self) } ?? ""
        #expect(stderr.contains("Interlock misuse") && stderr.contains("unlockShared()"), "stderr: \(stderr)")
    }

    /// Past the inline capacity, asking for exclusive mode while holding shared mode
    /// still traps (instead of announcing a writer at the gate and deadlocking).
    @Test(arguments: [17, 40])
    func upgradeStillTraps(holds: Int) async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { [holds = holds as Int] in synchronously {
            alarm(20)  // a deadlock ends the process without the message, and fails
            let lock = SharedLock()
            lock.lockShared()
            let others = (0..<holds).map { _ in SharedLock() }
            for other in others { other.lockShared() }
            lock.lockExclusive()
        } }
        let stderr = result.map { String(decoding: $0.standardErrorContent, as: UTF8.self) } ?? ""
        #expect(stderr.contains("Interlock misuse") && stderr.contains("cannot be upgraded"), "stderr: \(stderr)")
    }

    /// Correct use with many holds: taken in one order, released in another, over and
    /// over (crossing the point where the record's heap array is freed); afterwards
    /// every lock is free and the thread holds nothing.
    @Test func manyHoldsReleasedInAnyOrder() async {
        // In its own process: a wrong record would trap (misuse) in the middle.
        await #expect(processExitsWith: .success) { synchronously {
            alarm(20)
            let locks = (0..<64).map { _ in SharedLock() }
            var random = SeededRandom(seed: 14)
            for round in 0..<50 {
                let count = 1 + Int(random.next() % 64)
                let taken = Array(locks.prefix(count))
                for lock in taken { lock.lockShared() }
                if round % 2 == 0 { taken[count / 2].lockShared() }  // one lock held twice
                for lock in taken.shuffled(using: &random) { lock.unlockShared() }
                if round % 2 == 0 { taken[count / 2].unlockShared() }
            }
            for lock in locks {
                if !lock.tryLockExclusive() { finish(1, "a lock is still held after every release") }
                lock.unlockExclusive()
            }
            finish(0)
        } }
    }
}
