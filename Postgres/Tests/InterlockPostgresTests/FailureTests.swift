@testable import InterlockPostgres
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Timeouts, cancellation, dead and terminated holders", .timeLimit(.minutes(2)))
struct FailureTests {
    @Test("a timed-out wait throws timedOut and leaves nothing queued at the server", arguments: [LockMode.shared, .exclusive])
    func timeoutLeavesNoTrace(mode: LockMode) async throws {
        let name = TestServer.uniqueName()
        let holder = try TestServer.lock(name), waiter = try TestServer.lock(name)
        try await holder.withExclusive { hold in
            await #expect(throws: PostgresLockError.timedOut) {
                switch mode {
                case .shared: try await waiter.withShared(timeout: .milliseconds(150)) { _ in }
                case .exclusive: try await waiter.withExclusive(timeout: .milliseconds(150)) { _ in }
                }
            }
            // At once, with no waiting: the server's queue is empty again.
            let locks = try await TestServer.withConnection { try await $0.advisoryLocks(holder.key) }
            #expect(locks == [ServerLock(pid: hold.serverProcessID, mode: "ExclusiveLock", granted: true)])
        }
        // The waiter's session is still good.
        #expect(try await waiter.withExclusive(timeout: .seconds(10)) { _ in 7 } == 7)
        await holder.close(); await waiter.close()
    }

    @Test("a task cancelled while waiting at the server throws CancellationError and leaves nothing queued", arguments: [LockMode.shared, .exclusive])
    func cancelLeavesNoTrace(mode: LockMode) async throws {
        let name = TestServer.uniqueName()
        let holder = try TestServer.lock(name), waiter = try TestServer.lock(name)
        try await TestServer.withConnection { admin in
            try await holder.withExclusive { hold in
                let task = Task {
                    switch mode {
                    case .shared: try await waiter.withShared { _ in }
                    case .exclusive: try await waiter.withExclusive { _ in }
                    }
                }
                // Handshake: the server lists the waiter's request.
                _ = try await admin.waitForLocks(holder.key) { $0.contains { !$0.granted } }
                task.cancel()
                await #expect(throws: CancellationError.self) { try await task.value }
                let locks = try await admin.advisoryLocks(holder.key)
                #expect(locks == [ServerLock(pid: hold.serverProcessID, mode: "ExclusiveLock", granted: true)])
            }
        }
        #expect(try await waiter.withExclusive(timeout: .seconds(10)) { _ in 7 } == 7)
        await holder.close(); await waiter.close()
    }

    @Test("a task cancelled while queued in the process leaves; the acquirer's wait goes on")
    func cancelInProcessQueue() async throws {
        let name = TestServer.uniqueName()
        let holder = try TestServer.lock(name), waiter = try TestServer.lock(name)
        try await TestServer.withConnection { admin in
            let first = Shared<Task<Int64, any Error>?>(nil)
            let firstToken: Int64 = try await holder.withExclusive { hold in
                // The first waiter is the one that waits at the server...
                first.update { $0 = Task { try await waiter.withExclusive { hold in hold.fencingToken } } }
                _ = try await admin.waitForLocks(holder.key) { $0.contains { !$0.granted } }
                // ...the second waits in the process behind it: cancel the second.
                let second = Task { try await waiter.withShared { _ in } }
                while waiter.core.queuedInProcess == 0 { await Task.yield() }
                second.cancel()
                await #expect(throws: CancellationError.self) { try await second.value }
                return hold.fencingToken
            }
            #expect(try await first.current!.value > firstToken)
            #expect(try await admin.advisoryLocks(holder.key).isEmpty)
        }
        await holder.close(); await waiter.close()
    }

    @Test("a holder process killed with SIGKILL: the server frees the lock and the next holder gets in, with a larger token")
    func killedHolder() async throws {
        let name = TestServer.uniqueName()
        let lock = try TestServer.lock(name)
        let holder = try Holder(name, ["--mode", "exclusive"])
        let (holderPID, holderToken) = try holder.waitUntilHeld()
        try await TestServer.withConnection { admin in
            #expect(try await admin.advisoryLocks(lock.key) == [ServerLock(pid: holderPID, mode: "ExclusiveLock", granted: true)])
            #expect(try await lock.withExclusiveIfAvailable { _ in } == nil)
            holder.kill9()
            // Waits (at the server) until the server has ended the dead client's session.
            let token = try await lock.withExclusive(timeout: .seconds(30)) { hold in
                let locks = try await admin.advisoryLocks(lock.key)
                #expect(locks == [ServerLock(pid: hold.serverProcessID, mode: "ExclusiveLock", granted: true)])
                return hold.fencingToken
            }
            #expect(token > holderToken!)
        }
        await lock.close()
    }

    @Test("pg_terminate_backend of a holder's session: the holder is told, and the next holder's token is larger")
    func terminatedExclusiveHolder() async throws {
        let name = TestServer.uniqueName()
        let lock = try TestServer.lock(name), other = try TestServer.lock(name)
        let lostToken = Shared<Int64>(0)
        let error = await #expect(throws: PostgresLockError.self) {
            try await lock.withExclusive { hold in
                lostToken.update { $0 = hold.fencingToken }
                try await TestServer.withConnection { try await $0.terminate(hold.serverProcessID) }
                // The server ended the session: asking it says so...
                let loss = await verifyThrowsLoss(hold)
                #expect(loss?.mode == .exclusive && loss?.fencingToken == hold.fencingToken && loss?.serverProcessID == hold.serverProcessID)
                #expect(hold.isLost)
                #expect(throws: PostgresLockError.self) { try hold.checkHeld() }
                // ...and another writer gets in while this body still runs: the case fencing is for.
                let newer = try await other.withExclusive(timeout: .seconds(10)) { $0.fencingToken }
                #expect(newer > hold.fencingToken)
            }
        }
        guard case .sessionLost(let loss)? = error else {
            Issue.record("withExclusive threw \(String(describing: error))")
            return
        }
        #expect(loss.fencingToken == lostToken.current && loss.mode == .exclusive)
        // The lock opens a new session for the next hold.
        let next = try await lock.withExclusive(timeout: .seconds(10)) { $0.fencingToken }
        #expect(next > lostToken.current)
        await lock.close(); await other.close()
    }

    @Test("a terminated session while readers hold: every reader is told; the lock recovers")
    func terminatedSharedHolders() async throws {
        let name = TestServer.uniqueName()
        let lock = try TestServer.lock(name)
        let allIn = AsyncCountdown(4), terminated = AsyncCountdown(4)
        let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<4 {
                group.addTask {
                    do {
                        try await lock.withShared { hold in
                            await allIn.arriveAndWait()
                            if index == 0 {
                                try await TestServer.withConnection { try await $0.terminate(hold.serverProcessID) }
                                await #expect(throws: PostgresLockError.self) { try await hold.verify() }
                            }
                            await terminated.arriveAndWait()
                        }
                        return false
                    } catch PostgresLockError.sessionLost(let loss) {
                        return loss.mode == .shared
                    }
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes == [true, true, true, true])
        #expect(try await lock.withShared(timeout: .seconds(10)) { _ in 1 } == 1)
        await lock.close()
    }
}

/// `hold.verify()` must throw `sessionLost`; returns the loss.
func verifyThrowsLoss(_ hold: PostgresSharedLock.ExclusiveHold) async -> SessionLoss? {
    do {
        try await hold.verify()
        Issue.record("verify() did not throw")
    } catch .sessionLost(let loss) {
        return loss
    } catch {
        Issue.record("verify() threw \(error)")
    }
    return nil
}
