// Named locks between independent processes (promises 1, 2 and 3 across processes).
//
// Every process here is a real, separately launched `InterlockTestHelper` (posix_spawn),
// driven line by line. The tests check who holds what — helper answers and the segment's
// holder table through `SharedLock.inspect` — never how long anything took. Waits are
// bounded (helperAnswerBound, 10 s) and only the timed acquisitions under test use short
// timeouts, where a timeout is the expected outcome.

import Interlock
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Named locks across processes", .serialized, .timeLimit(.minutes(3)))
struct NamedLockTests {
    @Test("exclusive mode in one process excludes every other process")
    func exclusiveExcludesAcrossProcesses() throws {
        let name = TestLocks.uniqueName("excl")
        defer { TestLocks.cleanUp(name) }
        let a = try HelperProcess(lock: name, ["--create-only"])
        let b = try HelperProcess(lock: name, ["--open-only"])

        #expect(try a.ask("try-exclusive") == "ok exclusive died=false")
        #expect(try b.ask("try-exclusive") == "busy")
        #expect(try b.ask("try-shared") == "busy")
        #expect(try b.ask("timed-exclusive 50") == "timeout")
        #expect(try b.ask("timed-shared 50") == "timeout")
        let held = try SharedLock.inspect(named: name)
        #expect(held.isExclusive)
        #expect(held.sharedProcessCount == 0)
        #expect(held.holders.first { $0.pid == a.pid }?.mode == .exclusive)
        #expect(held.holders.first { $0.pid == b.pid }?.mode == .idle)

        // A blocking writer in B waits until A releases.
        try b.begin("exclusive")
        let (announced, met) = try TestLocks.awaitSnapshot(name) { $0.waitingWriters == 1 }
        #expect(met, "B never announced itself as a waiting writer: \(announced)")
        #expect(announced.isExclusive && announced.holders.first { $0.pid == a.pid }?.mode == .exclusive)
        #expect(!b.hasOutput(), "B answered while A still held exclusive mode")
        #expect(try a.ask("release-exclusive") == "released")
        #expect(try b.readLine() == "ok exclusive died=false")

        // Roles swapped: A is now the one kept out, in both modes.
        #expect(try a.ask("try-shared") == "busy")
        #expect(try a.ask("try-exclusive") == "busy")
        #expect(try b.ask("release-exclusive") == "released")
        #expect(try a.ask("try-shared") == "ok shared")
        #expect(try a.ask("release-shared") == "released")
        #expect(TestLocks.problems(in: try SharedLock.inspect(named: name)) == [])
        #expect(try SharedLock.inspect(named: name).stateWord & ~(1 << 30) == 0)
        try a.quit()
        try b.quit()
    }

    @Test("shared mode is held by several processes at once, and keeps writers out")
    func sharedOverlapsAcrossProcesses() throws {
        let name = TestLocks.uniqueName("shared")
        defer { TestLocks.cleanUp(name) }
        let readers = try (0..<3).map { _ in try HelperProcess(lock: name) }
        let writer = try HelperProcess(lock: name)

        #expect(try readers[0].ask("try-shared") == "ok shared")
        #expect(try readers[1].ask("shared") == "pending")
        #expect(try readers[1].readLine() == "ok shared")
        #expect(try readers[2].ask("timed-shared 5000") == "ok shared")
        let snapshot = try SharedLock.inspect(named: name)
        #expect(snapshot.sharedProcessCount == 3)
        #expect(!snapshot.isExclusive)
        #expect(Set(snapshot.holders.filter { $0.mode == .shared }.map(\.pid)) == Set(readers.map(\.pid)))

        #expect(try writer.ask("try-exclusive") == "busy")
        #expect(try writer.ask("timed-exclusive 50") == "timeout")
        // Writers wait for the *last* reader: release two of three, still busy.
        #expect(try readers[0].ask("release-shared") == "released")
        #expect(try readers[1].ask("release-shared") == "released")
        #expect(try SharedLock.inspect(named: name).sharedProcessCount == 1)
        #expect(try writer.ask("try-exclusive") == "busy")
        #expect(try readers[2].ask("release-shared") == "released")
        #expect(try writer.ask("try-exclusive") == "ok exclusive died=false")
        #expect(try writer.ask("release-exclusive") == "released")
        for helper in readers + [writer] { try helper.quit() }
    }

    @Test("a waiting writer in one process holds back new readers in every other process")
    func writerPreferenceAcrossProcesses() throws {
        let name = TestLocks.uniqueName("pref")
        defer { TestLocks.cleanUp(name) }
        let a = try HelperProcess(lock: name)
        let b = try HelperProcess(lock: name)
        let c = try HelperProcess(lock: name)

        #expect(try a.ask("try-shared") == "ok shared")
        try b.begin("exclusive")
        // (B's entry shows its new mode just after the state word's CAS: wait for both.)
        let (snapshot, met) = try TestLocks.awaitSnapshot(name) {
            $0.waitingWriters == 1 && $0.holders.first { $0.pid == b.pid }?.mode == .waitingExclusive
        }
        #expect(met, "B never showed up as a waiting writer: \(snapshot)")
        #expect(snapshot.sharedProcessCount == 1, "only A holds, and only in shared mode")

        // Only readers hold, yet a new reader is turned away: a writer waits.
        #expect(try c.ask("try-shared") == "busy")
        #expect(try c.ask("timed-shared 100") == "timeout")
        // …even another hold in the process that already holds shared mode.
        #expect(try a.ask("try-shared") == "busy")
        #expect(try SharedLock.inspect(named: name).sharedProcessCount == 1, "the refused readers left no count")

        #expect(try a.ask("release-shared") == "released")
        #expect(try b.readLine() == "ok exclusive died=false")
        #expect(try c.ask("try-shared") == "busy")
        #expect(try b.ask("release-exclusive") == "released")
        #expect(try c.ask("try-shared") == "ok shared")
        #expect(try c.ask("release-shared") == "released")
        #expect(TestLocks.problems(in: try SharedLock.inspect(named: name)) == [])
        for helper in [a, b, c] { try helper.quit() }
    }

    @Test("threads of this process defer to a writer waiting in another process")
    func localThreadsDeferToRemoteWriter() throws {
        let name = TestLocks.uniqueName("local")
        defer { TestLocks.cleanUp(name) }
        let lock = try SharedLock(named: name)
        let writer = try HelperProcess(lock: name)

        lock.lockShared()
        try writer.begin("exclusive")
        let (snapshot, met) = try TestLocks.awaitSnapshot(name) { $0.waitingWriters == 1 }
        #expect(met, "the helper never showed up as a waiting writer: \(snapshot)")
        #expect(onOtherThread { !lock.tryLockShared() }, "a second thread of the holding process got in ahead of the writer")
        #expect(onOtherThread { (try? lock.lockShared(timeout: .milliseconds(50))) == nil })
        lock.unlockShared()
        #expect(try writer.readLine() == "ok exclusive died=false")
        #expect(onOtherThread { !lock.tryLockShared() })
        #expect(onOtherThread { !lock.tryLockExclusive() })
        #expect(try writer.ask("release-exclusive") == "released")
        #expect(lock.tryLockExclusive())
        #expect(try writer.ask("try-shared") == "busy")
        lock.unlockExclusive()
        try writer.quit()
    }

    @Test("a writer that times out leaves no trace: no waiting mark, readers get in")
    func timedOutWriterLeavesNoTrace() throws {
        let name = TestLocks.uniqueName("notrace-w")
        defer { TestLocks.cleanUp(name) }
        let a = try HelperProcess(lock: name)
        let b = try HelperProcess(lock: name)
        let c = try HelperProcess(lock: name)

        #expect(try a.ask("try-shared") == "ok shared")
        for _ in 0..<20 {
            #expect(try b.ask("timed-exclusive 10") == "timeout")
        }
        let after = try SharedLock.inspect(named: name)
        #expect(after.waitingWriters == 0)
        #expect(after.sharedProcessCount == 1)
        #expect(!after.isExclusive)
        #expect(after.holders.first { $0.pid == b.pid }?.mode == .idle)
        #expect(TestLocks.problems(in: after) == [])
        #expect(try c.ask("try-shared") == "ok shared")
        #expect(try b.ask("try-shared") == "ok shared")
        #expect(try SharedLock.inspect(named: name).sharedProcessCount == 3)
        for helper in [a, b, c] { #expect(try helper.ask("release-shared") == "released") }
        #expect(try b.ask("try-exclusive") == "ok exclusive died=false")
        #expect(try b.ask("release-exclusive") == "released")
        for helper in [a, b, c] { try helper.quit() }
    }

    @Test("a reader that times out leaves no trace: no shared count, writers get in")
    func timedOutReaderLeavesNoTrace() throws {
        let name = TestLocks.uniqueName("notrace-r")
        defer { TestLocks.cleanUp(name) }
        let a = try HelperProcess(lock: name)
        let b = try HelperProcess(lock: name)

        #expect(try a.ask("try-exclusive") == "ok exclusive died=false")
        for _ in 0..<20 {
            #expect(try b.ask("timed-shared 10") == "timeout")
        }
        let after = try SharedLock.inspect(named: name)
        #expect(after.sharedProcessCount == 0)
        #expect(after.waitingWriters == 0)
        #expect(after.holders.first { $0.pid == b.pid }?.mode == .idle)
        #expect(TestLocks.problems(in: after) == [])
        #expect(try a.ask("release-exclusive") == "released")
        // A leaked shared count would keep every writer out from now on.
        #expect(try a.ask("try-exclusive") == "ok exclusive died=false")
        #expect(try a.ask("release-exclusive") == "released")
        #expect(try b.ask("try-exclusive") == "ok exclusive died=false")
        #expect(try b.ask("release-exclusive") == "released")
        for helper in [a, b] { try helper.quit() }
    }

    @Test("a timed writer that gets the lock before its deadline holds it normally")
    func timedWriterSucceedsWhenReleased() throws {
        let name = TestLocks.uniqueName("timed-ok")
        defer { TestLocks.cleanUp(name) }
        let a = try HelperProcess(lock: name)
        let b = try HelperProcess(lock: name)
        #expect(try a.ask("try-shared") == "ok shared")
        try b.send("timed-exclusive 10000")
        let (snapshot, met) = try TestLocks.awaitSnapshot(name) { $0.waitingWriters == 1 }
        #expect(met, "B never showed up as a waiting writer: \(snapshot)")
        #expect(try a.ask("release-shared") == "released")
        #expect(try b.readLine() == "ok exclusive died=false")
        #expect(try SharedLock.inspect(named: name).isExclusive)
        #expect(try b.ask("release-exclusive") == "released")
        for helper in [a, b] { try helper.quit() }
    }
}
