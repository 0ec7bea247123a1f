// Hostile cases of protocol layout 3 (issue 10): deaths at odd instants, corrupt
// control words, and progress of readers under a stream of writers.

import Interlock
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Hostile: layout 3", .serialized, .timeLimit(.minutes(3)))
struct HostileTests {
    /// A writer dies holding; a reader reclaims it (the death is pending a report); the
    /// next writer starts its write phase, and dies while it drains that reader. It never
    /// held exclusive mode, so it was never told: the next exclusive holder must be.
    @Test("a death report survives a writer that took it and died draining")
    func deathReportSurvivesDrainingWriterDeath() throws {
        let name = TestLocks.uniqueName("report-drain")
        defer { TestLocks.cleanUp(name) }
        let reader = try HelperProcess(lock: name)
        let survivor = try HelperProcess(lock: name)

        let holder = try HelperProcess(lock: name)
        #expect(try holder.ask("try-exclusive") == "ok exclusive died=false")
        try reader.send("timed-shared 5000")
        holder.kill9()
        #expect(try reader.readLine() == "ok shared")
        #expect(try SharedLock.inspect(named: name).previousHolderDied)

        let drainer = try HelperProcess(lock: name)
        try drainer.begin("exclusive")
        let (snapshot, met) = try TestLocks.awaitSnapshot(name) { s in
            s.holders.contains { $0.pid == drainer.pid && $0.mode == .waitingExclusive }
        }
        #expect(met, "the writer never owned the write phase: \(snapshot)")
        drainer.kill9()
        #expect(try reader.ask("release-shared") == "released")

        #expect(try survivor.ask("timed-exclusive 5000") == "ok exclusive died=true",
                "the writer that died draining never held: the first death is still unreported")
        #expect(try survivor.ask("release-exclusive") == "released")
        #expect(try survivor.ask("try-exclusive") == "ok exclusive died=false", "reported once")
        #expect(try survivor.ask("release-exclusive") == "released")
        try reader.quit()
        try survivor.quit()
    }
}

extension HostileTests {
    /// Words written over a live lock's segment by something else. The lock cannot work
    /// (a writer that nobody owns keeps everyone out), but no acquisition, recovery or
    /// inspection may touch memory outside the mapping or crash: timed forms time out.
    @Test("a corrupt control word or high-water mark is survived (timeouts, no crash)",
          arguments: [
            ("owner beyond capacity", 64, UInt32(1) | (4000 << 16)),
            ("owner is the reserved entry", 64, UInt32(1) | (5 << 16)),
            ("owner 0 with a writer", 64, UInt32(1 | 2 | 4 | 8 | 16)),
            ("every bit", 64, UInt32.max),
            ("high water huge", 48, UInt32.max),
          ] as [(String, Int, UInt32)])
    func corruptWords(label: String, offset: Int, value: UInt32) throws {
        let name = TestLocks.uniqueName("corrupt")
        defer { TestLocks.cleanUp(name) }
        var options = NamedLockOptions()
        options.capacity = 4
        let lock = try SharedLock(named: name, options: options)
        lock.withShared {}
        let other = try HelperProcess(lock: name)
        #expect(try other.ask("try-shared") == "ok shared")
        #expect(try other.ask("release-shared") == "released")

        let fd = try RawSegment.open(name, O_RDWR)
        defer { close(fd) }
        let size = RawSegment.byteCount(capacity: 4)
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            Issue.record("mmap: errno \(errno)"); return
        }
        defer { munmap(p, size) }
        (p + offset).storeBytes(of: value, as: UInt32.self)

        let writerStuck = offset == 64
        for _ in 0..<2 {
            let shared = TestLocks.error { try lock.lockShared(timeout: .milliseconds(60)) }
            if shared == nil { lock.unlockShared() }
            #expect(writerStuck ? shared == .timedOut : shared == nil, "\(label): shared \(String(describing: shared))")
            let exclusive = TestLocks.error { try lock.lockExclusive(timeout: .milliseconds(60)) }
            if exclusive == nil { lock.unlockExclusive() }
            #expect(writerStuck ? exclusive == .timedOut : exclusive == nil, "\(label): exclusive \(String(describing: exclusive))")
            #expect(lock.tryLockShared() == !writerStuck)
            if !writerStuck { lock.unlockShared() }
            _ = try SharedLock.inspect(named: name)
            _ = lock.snapshot()
        }
        if writerStuck {
            #expect(try other.ask("timed-shared 60") == "timeout")
            #expect(try other.ask("timed-exclusive 60") == "timeout")
        } else {
            #expect(try other.ask("timed-exclusive 60") == "ok exclusive died=false")
            #expect(try other.ask("release-exclusive") == "released")
        }
        other.kill9()
        // Recovery (of the dead helper's entry) runs against the corrupt word too.
        let last = TestLocks.error { try lock.lockExclusive(timeout: .milliseconds(60)) }
        if last == nil { lock.unlockExclusive() }
        #expect(writerStuck ? last == .timedOut : last == nil, "\(label): \(String(describing: last))")
    }
}
