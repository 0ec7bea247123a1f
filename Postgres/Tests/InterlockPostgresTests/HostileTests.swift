import InterlockPostgres
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Hostile use", .timeLimit(.minutes(2)))
struct HostileTests {
    @Test("timeouts and cancellations at random instants, under contention: only typed errors, and the server's queue ends empty")
    func randomTimeoutsAndCancels() async throws {
        let name = TestServer.uniqueName()
        let locks = try (0..<3).map { _ in try TestServer.lock(name) }
        let unexpected = Shared<[String]>([])
        let completed = Counter(), timedOut = Counter(), cancelled = Counter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, lock) in locks.enumerated() {
                for task in 0..<5 {
                    group.addTask {
                        var random = SystemRandomNumberGenerator()
                        for step in 0..<30 {
                            let exclusive = (step + task + index) % 3 == 0
                            let timeout = Duration.microseconds(Int64.random(in: 0...40_000, using: &random))
                            let work = Task {
                                if exclusive {
                                    try await lock.withExclusive(timeout: timeout) { _ in try await Task.sleep(for: .microseconds(300)) }
                                } else {
                                    try await lock.withShared(timeout: timeout) { _ in try await Task.sleep(for: .microseconds(300)) }
                                }
                            }
                            if Bool.random(using: &random) {
                                try await Task.sleep(for: .microseconds(Int64.random(in: 0...20_000, using: &random)))
                                work.cancel()
                            }
                            do {
                                try await work.value
                                completed.add()
                            } catch PostgresLockError.timedOut {
                                timedOut.add()
                            } catch is CancellationError {
                                cancelled.add()
                            } catch {
                                unexpected.update { $0.append("\(error)") }
                            }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(unexpected.current.isEmpty, "\(unexpected.current)")
        #expect(completed.current + timedOut.current + cancelled.current == 3 * 5 * 30)
        #expect(completed.current > 0 && timedOut.current > 0 && cancelled.current > 0,
                "completed \(completed.current), timed out \(timedOut.current), cancelled \(cancelled.current)")
        // Nothing held, nothing waiting: the server's own view.
        #expect(try await TestServer.withConnection { try await $0.advisoryLocks(locks[0].key) }.isEmpty)
        for lock in locks {
            #expect(try await lock.withExclusiveIfAvailable { _ in true } == true)
            await lock.close()
        }
    }

    @Test("a holder killed while it waits at the server: its request leaves the queue")
    func killedWaiter() async throws {
        let name = TestServer.uniqueName()
        let lock = try TestServer.lock(name)
        try await TestServer.withConnection { admin in
            try await lock.withExclusive { hold in
                let waiter = try Holder(name, ["--mode", "exclusive"])
                _ = try await admin.waitForLocks(lock.key) { $0.contains { !$0.granted } }
                waiter.kill9()
                // The server drops the dead client's session, and with it the waiting request.
                let locks = try await admin.waitForLocks(lock.key) { $0.allSatisfy(\.granted) }
                #expect(locks == [ServerLock(pid: hold.serverProcessID, mode: "ExclusiveLock", granted: true)])
            }
        }
        await lock.close()
    }

    @Test("a holder that exits normally releases; one that is told to release while others wait hands over")
    func holderProcessHandsOver() async throws {
        let name = TestServer.uniqueName()
        let first = try Holder(name, ["--mode", "shared"])
        _ = try first.waitUntilHeld()
        let second = try Holder(name, ["--mode", "shared"])
        _ = try second.waitUntilHeld()  // shared holders in two processes, together
        let lock = try TestServer.lock(name)
        #expect(try await lock.withExclusiveIfAvailable { _ in 1 } == nil)
        #expect(try first.release() == "released")
        #expect(try second.release() == "released")
        #expect(try await lock.withExclusive(timeout: .seconds(10)) { _ in 1 } == 1)
        first.waitForExit(); second.waitForExit()
        await lock.close()
    }
}

/// Restarting the server ends every session, so these run only when asked
/// (INTERLOCK_PG_RESTART_TESTS=1, with INTERLOCK_PG_DATA and INTERLOCK_PG_BINDIR from
/// with-postgres.sh), alone: `.ci/run` runs them in a second pass.
@Suite("Server restart", .serialized, .timeLimit(.minutes(2)),
       .enabled(if: TestServer.env("INTERLOCK_PG_RESTART_TESTS") == "1", "restarts the server: run alone with INTERLOCK_PG_RESTART_TESTS=1"))
struct RestartTests {
    static func restartServer() throws {
        guard let data = TestServer.env("INTERLOCK_PG_DATA"), let bindir = TestServer.env("INTERLOCK_PG_BINDIR") else {
            throw SetupError(description: "INTERLOCK_PG_DATA and INTERLOCK_PG_BINDIR are not set (run under with-postgres.sh)")
        }
        let runas = TestServer.env("INTERLOCK_PG_RUNAS") ?? ""
        let command = "\(runas) \(bindir)/pg_ctl -D \(data) -m fast -w -t 60 restart >/dev/null"
        let argv = (["/bin/sh", "-c", command] as [String]).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, "/bin/sh", nil, nil, argv, environ) == 0 else { throw SetupError(description: "posix_spawn sh") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else { throw SetupError(description: "pg_ctl restart failed: status \(status)") }
    }

    @Test("a server restart while held: the holder is told, and after the restart tokens still rise")
    func restartWhileHeld() async throws {
        let lock = try TestServer.lock(TestServer.uniqueName())
        let before = Shared<Int64>(0)
        let error = await #expect(throws: PostgresLockError.self) {
            try await lock.withExclusive { hold in
                before.update { $0 = hold.fencingToken }
                try Self.restartServer()
                let loss = await verifyThrowsLoss(hold)
                #expect(loss != nil)
            }
        }
        guard case .sessionLost(let loss)? = error else {
            Issue.record("expected sessionLost, got \(String(describing: error))")
            return
        }
        #expect(loss.fencingToken == before.current)
        let after = try await lock.withExclusive(timeout: .seconds(30)) { $0.fencingToken }
        #expect(after > before.current)
        await lock.close()
    }

    @Test("a server restart while waiting: connectionLost, nothing held")
    func restartWhileWaiting() async throws {
        let name = TestServer.uniqueName()
        let holder = try Holder(name, ["--mode", "exclusive"])
        _ = try holder.waitUntilHeld()
        let lock = try TestServer.lock(name)
        let waiting = Task { try await lock.withExclusive { _ in } }
        _ = try await TestServer.withConnection { try await $0.waitForLocks(lock.key) { $0.contains { !$0.granted } } }
        try Self.restartServer()
        await #expect(throws: PostgresLockError.self) { try await waiting.value }
        holder.kill9()
        #expect(try await lock.withExclusive(timeout: .seconds(30)) { _ in 1 } == 1)
        await lock.close()
    }
}
