import InterlockPostgres
import Synchronization
import Testing

@Suite("Modes", .timeLimit(.minutes(2)))
struct ModeTests {
    @Test("shared holders in two sessions hold together; the server lists both")
    func sharedTogether() async throws {
        let name = TestServer.uniqueName()
        let a = try TestServer.lock(name), b = try TestServer.lock(name)
        try await a.withShared { holdA in
            let inside = try await b.withSharedIfAvailable { holdB in
                let locks = try await TestServer.withConnection { try await $0.advisoryLocks(a.key) }
                #expect(locks == [ServerLock(pid: holdA.serverProcessID, mode: "ShareLock", granted: true),
                                  ServerLock(pid: holdB.serverProcessID, mode: "ShareLock", granted: true)]
                        .sorted { $0.pid < $1.pid })
                return true
            }
            #expect(inside == true)
            #expect(try await b.withExclusiveIfAvailable { _ in true } == nil)
        }
        await a.close(); await b.close()
    }

    @Test("a process's tasks share one session: 200 shared holders, one server-side hold")
    func oneSessionForManyReaders() async throws {
        let name = TestServer.uniqueName()
        let lock = try TestServer.lock(name)
        let inside = Counter()
        let gate = AsyncCountdown(200)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<200 {
                group.addTask {
                    try await lock.withShared { _ in
                        let arrived = inside.add()
                        // Every reader waits here until all 200 are inside at once; the last
                        // one in asks the server what it sees.
                        await gate.arriveAndWait()
                        if arrived == 200 {
                            let locks = try await TestServer.withConnection { try await $0.advisoryLocks(lock.key) }
                            #expect(locks.count == 1 && locks[0].mode == "ShareLock" && locks[0].granted)
                            #expect(locks.first?.pid == lock.serverProcessID)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try await TestServer.withConnection { try await $0.advisoryLocks(lock.key) }.isEmpty)
        await lock.close()
    }

    @Test("exclusive excludes every other holder, in this process and in other sessions")
    func exclusiveExcludes() async throws {
        let name = TestServer.uniqueName()
        let a = try TestServer.lock(name), b = try TestServer.lock(name)
        try await a.withExclusive { hold in
            #expect(hold.fencingToken > 0)
            #expect(try await b.withExclusiveIfAvailable { _ in 1 } == nil)
            #expect(try await b.withSharedIfAvailable { _ in 1 } == nil)
            #expect(try await a.withSharedIfAvailable { _ in 1 } == nil)
            let locks = try await TestServer.withConnection { try await $0.advisoryLocks(a.key) }
            #expect(locks == [ServerLock(pid: hold.serverProcessID, mode: "ExclusiveLock", granted: true)])
        }
        #expect(try await b.withExclusiveIfAvailable { _ in 1 } == 1)
        await a.close(); await b.close()
    }

    @Test("tasks of two processes-worth of sessions: one writer at a time, no reader beside it")
    func exclusionAcrossSessions() async throws {
        let name = TestServer.uniqueName()
        let locks = try (0..<3).map { _ in try TestServer.lock(name) }
        let readers = Counter(), writers = Counter(), violations = Counter()
        let tokens = Shared<[Int64]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lock in locks {
                for task in 0..<4 {
                    group.addTask {
                        for op in 0..<40 {
                            if (op + task) % 4 == 0 {
                                try await lock.withExclusive { hold in
                                    if writers.add() != 1 || readers.current != 0 {
                                        violations.add()
                                    }
                                    tokens.update { $0.append(hold.fencingToken) }
                                    await Task.yield()
                                    writers.subtract()
                                }
                            } else {
                                try await lock.withShared { _ in
                                    readers.add()
                                    if writers.current != 0 { violations.add() }
                                    await Task.yield()
                                    readers.subtract()
                                }
                            }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(violations.current == 0)
        // Tokens were appended under the exclusive lock, so in hold order: strictly rising.
        let drawn = tokens.current
        #expect(drawn.count == 3 * 40)
        #expect(zip(drawn, drawn.dropFirst()).allSatisfy { $0 < $1 })
        for lock in locks { await lock.close() }
    }
}

/// Lets `count` tasks wait until all have arrived.
final class AsyncCountdown: Sendable {
    private let state: Mutex<(left: Int, waiters: [CheckedContinuation<Void, Never>])>
    init(_ count: Int) { state = Mutex((count, [])) }
    func arriveAndWait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let release: [CheckedContinuation<Void, Never>] = state.withLock { state in
                state.left -= 1
                state.waiters.append(continuation)
                if state.left == 0 { defer { state.waiters = [] }; return state.waiters }
                return []
            }
            release.forEach { $0.resume() }
        }
    }
}
