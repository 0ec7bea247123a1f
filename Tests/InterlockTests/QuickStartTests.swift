// The README's quick start, verbatim between the markers, so that it keeps compiling
// and doing what it says. Keep the two in sync.

import Testing
import Interlock

#if canImport(Glibc)
import Glibc
#endif

@Suite("README quick start", .timeLimit(.minutes(1)))
struct QuickStartTests {
    @Test func quickStart() throws {
        // --- README quick start: begin ---
        let lock = SharedLock()
        var table: [Int] = []
        lock.withExclusive { table.append(42) }
        let total = lock.withShared { table.reduce(0, +) }

        let config = SharedLocked(["mode": "fast"])
        config.withExclusive { $0["mode"] = "safe" }
        let mode = config.withShared { $0["mode"] }

        let perProcess = ProcessLocal { getpid() }   // fresh in every fork() child
        let perThread = ThreadLocal { 0 }            // one per thread
        perThread.value += 1

        do {
            try lock.withExclusive(timeout: .milliseconds(100)) { table.removeAll() }
        } catch InterlockError.timedOut {
            print("busy, try later")
        }
        // --- README quick start: end ---

        #expect(total == 42)
        #expect(mode == "safe")
        #expect(perProcess.value == getpid())
        #expect(perThread.value == 1)
        #expect(table.isEmpty)
    }
}
