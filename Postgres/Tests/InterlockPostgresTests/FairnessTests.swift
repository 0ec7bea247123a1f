@testable import InterlockPostgres
import Testing

@Suite("Fairness", .timeLimit(.minutes(2)))
struct FairnessTests {
    /// Readers that keep the lock in shared mode without a gap: `tasks` tasks per lock, each
    /// taking shared mode again as soon as it leaves, until `stop` is set.
    static func readerStream(_ locks: [PostgresSharedLock], tasks: Int, stop: Counter, reads: Counter,
                             in group: inout ThrowingTaskGroup<Void, any Error>) {
        for lock in locks {
            for _ in 0..<tasks {
                group.addTask {
                    while stop.current == 0 {
                        try await lock.withShared { _ in
                            reads.add()
                            try await Task.sleep(for: .milliseconds(2))
                        }
                    }
                }
            }
        }
    }

    @Test("a writer in another session gets in while two sessions' readers overlap without end")
    func writerNotStarvedByOtherSessions() async throws {
        let name = TestServer.uniqueName()
        let readers = try [TestServer.lock(name), TestServer.lock(name)]
        let writer = try TestServer.lock(name)
        let stop = Counter(), reads = Counter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            Self.readerStream(readers, tasks: 6, stop: stop, reads: reads, in: &group)
            // Wait until both sessions hold shared mode, as the server says.
            _ = try await TestServer.withConnection { admin in
                try await admin.waitForLocks(writer.key) { $0.filter { $0.granted && $0.mode == "ShareLock" }.count == 2 }
            }
            let readsBefore = reads.current
            try await writer.withExclusive { _ in
                #expect(reads.current > readsBefore || readsBefore > 0)
            }
            stop.add()
            try await group.waitForAll()
        }
        for lock in readers + [writer] { await lock.close() }
    }

    @Test("a writer in the same process gets in while that process's readers overlap without end")
    func writerNotStarvedLocally() async throws {
        let lock = try TestServer.lock(TestServer.uniqueName())
        let stop = Counter(), reads = Counter(), writes = Counter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            Self.readerStream([lock], tasks: 8, stop: stop, reads: reads, in: &group)
            while reads.current < 8 { await Task.yield() }
            for _ in 0..<3 {
                try await lock.withExclusive { _ in writes.add() }
            }
            stop.add()
            try await group.waitForAll()
        }
        #expect(writes.current == 3)
        await lock.close()
    }

    @Test("readers waiting when a writer leaves go in together, before the next writer")
    func phaseFair() async throws {
        let name = TestServer.uniqueName()
        let holder = try TestServer.lock(name), lock = try TestServer.lock(name)
        let order = Shared<[String]>([])
        try await TestServer.withConnection { admin in
            try await holder.withExclusive { _ in
                // Queue at `lock`: a writer (at the server), then readers and a second writer
                // in the process.
                var tasks: [Task<Void, any Error>] = []
                tasks.append(Task { try await lock.withExclusive { _ in order.update { $0.append("W1") } } })
                _ = try await admin.waitForLocks(holder.key) { $0.contains { !$0.granted } }
                for index in 0..<3 {
                    tasks.append(Task { try await lock.withShared { _ in order.update { $0.append("R\(index)") } } })
                }
                while lock.core.queuedInProcess < 3 { await Task.yield() }
                tasks.append(Task { try await lock.withExclusive { _ in order.update { $0.append("W2") } } })
                while lock.core.queuedInProcess < 4 { await Task.yield() }
                Task { [tasks] in for task in tasks { try await task.value } }
                return ()
            }
            // Wait for all four holds to finish.
            while order.current.count < 5 { try await Task.sleep(for: .milliseconds(2)) }
        }
        let seen = order.current
        #expect(seen.first == "W1")
        #expect(seen.last == "W2")
        #expect(Set(seen[1...3]) == ["R0", "R1", "R2"])
        await holder.close(); await lock.close()
    }
}
