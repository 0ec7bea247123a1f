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

        let tally = try SharedLocked.forkShared(0)   // in shared memory: this process and its fork() children
        tally.withExclusive { $0 += 1 }              // crash-atomic: a writer killed here commits nothing
        let hits = tally.withShared { $0 }

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
        #expect(hits == 1)
        #expect(perProcess.value == getpid())
        #expect(perThread.value == 1)
        #expect(table.isEmpty)
    }

    /// The README's Swift concurrency snippet.
    @Test func asyncForms() async throws {
        // --- README async: begin ---
        let lock = SharedLock()
        var rows: [String] = []
        try await lock.withExclusive { rows.append("a") }         // free: taken at once, no suspension
        let count = try await lock.withShared { rows.count }      // busy: the task suspends, its thread is free
        try await lock.withExclusive(timeout: .seconds(2)) { rows.removeAll() }

        let tally = try SharedLocked.forkShared(0)                // SharedLocked, SharedLockedArray: same forms
        try await tally.withExclusive { $0 += 1 }
        let hits = try await tally.withShared { $0 }
        // --- README async: end ---

        #expect(count == 1)
        #expect(rows.isEmpty)
        #expect(hits == 1)
    }

    /// The README's worker-process tally: it forks, so it runs in an exit test (a
    /// quiet process of its own, not the multi-threaded test runner).
    @Test func workerProcessesAddIntoASharedTally() async {
        await #expect(processExitsWith: .success) {
            // --- README processes: begin ---
            let tally = try SharedLocked.forkShared(0)
            var workers: [pid_t] = []
            for _ in 0..<4 {
                let pid = fork()
                if pid == 0 {                        // a worker process
                    for _ in 0..<1000 { tally.withExclusive { $0 += 1 } }
                    _exit(0)
                }
                workers.append(pid)
            }
            for pid in workers { waitpid(pid, nil, 0) }
            print(tally.withShared { $0 })          // 4000
            // --- README processes: end ---
            exit(tally.withShared { $0 } == 4000 ? 0 : 1)
        }
    }

    /// The README shows exactly the lines between the markers above.
    @Test(arguments: [("README quick start", 8), ("README processes", 12), ("README async", 8)])
    func readmeShowsTheSnippet(marker: String, indent: Int) throws {
        let here = #filePath
        let root = here.split(separator: "/", omittingEmptySubsequences: false).dropLast(3).joined(separator: "/")
        let source = try #require(readFile(here))
        let readme = try #require(readFile(root + "/README.md"), "README.md not found next to Tests/")
        let lines = source.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let begin = try #require(lines.firstIndex { $0.contains(marker + ": begin") })
        let end = try #require(lines.firstIndex { $0.contains(marker + ": end") })
        let prefix = String(repeating: " ", count: indent)
        let snippet = lines[(begin + 1)..<end].map { $0.hasPrefix(prefix) ? String($0.dropFirst(indent)) : $0 }
        #expect(readme.contains(snippet.joined(separator: "\n")), "\(marker) in README.md differs from QuickStartTests")
    }
}

/// The whole contents of a text file, or nil.
private func readFile(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buffer, 1, buffer.count, file)
        if n <= 0 { break }
        bytes.append(contentsOf: buffer[0..<n])
    }
    return String(decoding: bytes, as: UTF8.self)
}
