// Crash recovery (promise 5): `kill -9` a process that holds or waits for a named lock,
// and the others get the lock back; the next exclusive holder learns whether the
// previous exclusive holder died.
//
// The victim is a real helper process killed with SIGKILL (no chance to clean up) and
// reaped with waitpid. The survivor asks for the lock with a 5-second timed acquisition
// *before* the kill, so the bound under test is: the lock is granted within 5 s of the
// kill (typically 2–25 ms: a waiter scans for dead holders after 2 ms of waiting, then
// every 20 ms). The measured times are printed as "crash recovery: …".

import Interlock
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Crash recovery (kill -9)", .serialized, .timeLimit(.minutes(3)))
struct CrashRecoveryTests {
    /// What the victim is doing when it is killed.
    enum Victim: String, CaseIterable, CustomTestStringConvertible {
        case exclusiveHolder, sharedHolder, waitingWriter
        var testDescription: String { rawValue }
    }

    /// The bound stated by these tests: the survivor's timed acquisition, in milliseconds.
    static let recoveryBoundMilliseconds = 5000

    /// The processes that outlive every kill, on one lock.
    final class Survivors {
        let name: String
        /// Asks for the lock while the victim holds it; must get it after the kill.
        let survivor: HelperProcess
        /// Holds shared mode while a victim waits to write.
        let reader: HelperProcess
        var kills = 0
        var recoveryTimes: [Duration] = []

        init(name: String) throws {
            self.name = name
            survivor = try HelperProcess(lock: name)
            reader = try HelperProcess(lock: name)
        }
    }

    /// Spawns a victim, puts it in the given role, kills it with SIGKILL, and checks that
    /// the survivor gets the lock within the bound and is told the truth about the death.
    /// `variant` picks between equivalent ways of asking (blocking or timed, reader or
    /// writer recovering first) so a loop covers them all. With `reapLate`, the victim is
    /// reaped only after the survivor got the lock: recovery must see a zombie as dead.
    static func killOnce(_ victim: Victim, variant: Int, reapLate: Bool = false, _ s: Survivors) throws {
        let bound = recoveryBoundMilliseconds
        let v = try HelperProcess(lock: s.name)
        let killedAt: ContinuousClock.Instant
        let answer: String
        switch victim {
        case .exclusiveHolder:
            // (The previous death, if any, was already reported: the victim is not told.)
            #expect(try v.ask("try-exclusive") == "ok exclusive died=false")
            if variant % 2 == 0 {
                try s.survivor.send("timed-exclusive \(bound)")
                killedAt = v.kill9(reap: !reapLate)
                answer = try s.survivor.readLine()
                #expect(answer == "ok exclusive died=true", "the next exclusive holder must learn of the death")
                #expect(try s.survivor.ask("release-exclusive") == "released")
            } else {
                // A reader recovers first; the death is still reported to the next writer.
                try s.survivor.send("timed-shared \(bound)")
                killedAt = v.kill9(reap: !reapLate)
                answer = try s.survivor.readLine()
                #expect(answer == "ok shared")
                #expect(try SharedLock.inspect(named: s.name).previousHolderDied)
                #expect(try s.survivor.ask("release-shared") == "released")
                #expect(try s.reader.ask("try-exclusive") == "ok exclusive died=true")
                #expect(try s.reader.ask("release-exclusive") == "released")
            }
        case .sharedHolder:
            #expect(try v.ask("try-shared") == "ok shared")
            if variant % 2 == 0 {
                try s.survivor.send("timed-exclusive \(bound)")
            } else {
                try s.survivor.begin("exclusive")  // blocking, already asleep when the victim dies
            }
            killedAt = v.kill9(reap: !reapLate)
            answer = try s.survivor.readLine()
            #expect(answer == "ok exclusive died=false", "a dead *reader* is no dead exclusive holder")
            #expect(try s.survivor.ask("release-exclusive") == "released")
        case .waitingWriter:
            #expect(try s.reader.ask("try-shared") == "ok shared")
            try v.begin("exclusive")
            let (snapshot, met) = try TestLocks.awaitSnapshot(s.name) { $0.waitingWriters == 1 }
            #expect(met, "the victim never showed up as a waiting writer: \(snapshot)")
            #expect(try s.survivor.ask("try-shared") == "busy", "readers wait behind the victim")
            try s.survivor.send("timed-shared \(bound)")
            killedAt = v.kill9(reap: !reapLate)
            answer = try s.survivor.readLine()
            #expect(answer == "ok shared", "a dead waiting writer must not keep readers out")
            #expect(try s.survivor.ask("release-shared") == "released")
            #expect(try s.reader.ask("release-shared") == "released")
        }
        let elapsed = killedAt.duration(to: .now)
        if reapLate { #expect(v.waitForExit() == 128 + SIGKILL) }
        s.kills += 1
        s.recoveryTimes.append(elapsed)
        #expect(elapsed < .milliseconds(bound), "recovery after killing a \(victim) took \(elapsed)")

        // Told exactly once: the next exclusive holder hears nothing.
        #expect(try s.survivor.ask("try-exclusive") == "ok exclusive died=false")
        #expect(try s.survivor.ask("release-exclusive") == "released")

        let after = try SharedLock.inspect(named: s.name)
        #expect(TestLocks.problems(in: after) == [], "after killing a \(victim): \(after)")
        // Recovery marks a dead entry idle; registration reuses it later.
        #expect(!after.holders.contains { $0.pid == v.pid && ($0.isAlive || $0.mode != .idle) },
                "the victim's entry was not reclaimed: \(after)")
        #expect(after.stateWord & ~TestLocks.staleBits == 0, "the lock is idle again: \(after)")
        #expect(after.recoveries == s.kills, "one reclaimed holder per kill: \(after)")
    }

    static func report(_ s: Survivors, _ label: String) {
        let ms = s.recoveryTimes.map { Double($0.components.attoseconds) / 1e15 + Double($0.components.seconds) * 1000 }.sorted()
        guard let max = ms.last, let min = ms.first else { return }
        let line = "crash recovery (\(label)): \(ms.count) kills, kill → next holder: min \(fmt(min)) ms, "
            + "median \(fmt(ms[ms.count / 2])) ms, max \(fmt(max)) ms (bound \(recoveryBoundMilliseconds) ms)\n"
        _ = line.utf8CString.withUnsafeBufferPointer { write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
    }

    static func fmt(_ x: Double) -> String { String(Double(Int(x * 10)) / 10) }

    @Test("a killed holder or waiter is reclaimed", arguments: Victim.allCases)
    func killOne(victim: Victim) throws {
        let name = TestLocks.uniqueName("kill-\(victim.rawValue)")
        defer { TestLocks.cleanUp(name) }
        let s = try Survivors(name: name)
        try Self.killOnce(victim, variant: 0, s)
        try Self.killOnce(victim, variant: 1, s)
        try Self.killOnce(victim, variant: 0, reapLate: true, s)
        try s.survivor.quit()
        try s.reader.quit()
        Self.report(s, victim.rawValue)
    }

    @Test("30 kills in a row, mixing holders and waiters (some left as zombies), leave a sane lock")
    func killLoop() throws {
        let name = TestLocks.uniqueName("kill-loop")
        defer { TestLocks.cleanUp(name) }
        let s = try Survivors(name: name)
        // A fixed, mixed order: each victim kind after each other kind, both variants.
        let order: [Victim] = [.exclusiveHolder, .sharedHolder, .waitingWriter, .exclusiveHolder, .waitingWriter, .sharedHolder]
        for i in 0..<30 {
            try Self.killOnce(order[i % order.count], variant: i / order.count, reapLate: i % 4 == 3, s)
        }
        #expect(s.kills == 30)
        let final = try SharedLock.inspect(named: name)
        #expect(final.recoveries == 30)
        #expect(final.holders.filter(\.isAlive).count == 2, "only the two survivors are alive: \(final.holders)")
        #expect(final.holders.allSatisfy { $0.mode == .idle }, "every entry is idle: \(final.holders)")
        try s.survivor.quit()
        try s.reader.quit()
        Self.report(s, "loop")
    }

    @Test("a process killed while holding a lock it shares with this process's threads")
    func killedHelperReleasesThisProcess() throws {
        let name = TestLocks.uniqueName("kill-local")
        defer { TestLocks.cleanUp(name) }
        let lock = try SharedLock(named: name)
        let victim = try HelperProcess(lock: name)
        #expect(try victim.ask("try-exclusive") == "ok exclusive died=false")
        #expect(!lock.tryLockShared())
        victim.kill9()
        try lock.lockExclusive(timeout: .milliseconds(Self.recoveryBoundMilliseconds))
        #expect(lock.previousHolderDied)
        lock.unlockExclusive()
        lock.lockExclusive()
        #expect(!lock.previousHolderDied, "reported once")
        lock.unlockExclusive()
        #expect(TestLocks.problems(in: try SharedLock.inspect(named: name)) == [])
    }
}
