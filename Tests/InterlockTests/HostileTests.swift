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
