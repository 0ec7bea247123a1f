import InterlockPostgres
import PostgresNIO
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Bad input", .timeLimit(.minutes(1)))
struct BadInputTests {
    @Test("an unreachable server is connectionFailed, not a hang")
    func unreachable() async throws {
        var configuration = try TestServer.configuration()
        // A port nobody listens on: bind one, then close it.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        let port = Int(UInt16(bigEndian: address.sin_port))
        close(fd)
        configuration = PostgresConnection.Configuration(host: "127.0.0.1", port: port, username: configuration.username,
                                                         password: configuration.password, database: configuration.database, tls: .disable)
        let lock = try PostgresSharedLock(name: "unreachable", configuration: configuration)
        let error = await #expect(throws: PostgresLockError.self) { try await lock.withExclusive { _ in } }
        guard case .connectionFailed(let server, _)? = error else {
            Issue.record("expected connectionFailed, got \(String(describing: error))")
            return
        }
        #expect(server == "127.0.0.1:\(port)")
        #expect(error?.description.contains("check that the server runs") == true)
    }

    @Test("a wrong password is authenticationFailed")
    func badPassword() async throws {
        var configuration = try TestServer.configuration()
        configuration.password = "not-the-password"
        let lock = try PostgresSharedLock(name: "bad-password", configuration: configuration)
        let error = await #expect(throws: PostgresLockError.self) { try await lock.withShared { _ in } }
        guard case .authenticationFailed(let user, _)? = error else {
            Issue.record("expected authenticationFailed, got \(String(describing: error))")
            return
        }
        #expect(user == configuration.username)
    }

    @Test("an unknown role is authenticationFailed")
    func unknownRole() async throws {
        var configuration = try TestServer.configuration()
        configuration.username = "no_such_role_for_interlock"
        let lock = try PostgresSharedLock(name: "bad-role", configuration: configuration)
        let error = await #expect(throws: PostgresLockError.self) { try await lock.withShared { _ in } }
        guard case .authenticationFailed? = error else {
            Issue.record("expected authenticationFailed, got \(String(describing: error))")
            return
        }
    }

    @Test("a database that does not exist is serverUnavailable (3D000)")
    func missingDatabase() async throws {
        var configuration = try TestServer.configuration()
        configuration.database = "no_such_database_for_interlock"
        let lock = try PostgresSharedLock(name: "bad-db", configuration: configuration)
        let error = await #expect(throws: PostgresLockError.self) { try await lock.withShared { _ in } }
        #expect(error == .serverUnavailable(sqlState: "3D000", reason: "database \"no_such_database_for_interlock\" does not exist"))
    }

    @Test("a fencing sequence name that is not an SQL name is invalidOption")
    func badSequenceName() throws {
        for bad in ["", "a.b.c", "1abc", "x;DROP TABLE y", "a..b", "\"q\"", String(repeating: "s", count: 64)] {
            var options = PostgresLockOptions()
            options.fencingSequence = bad
            #expect(throws: PostgresLockError.self, "\(bad)") {
                try PostgresSharedLock(name: "x", configuration: TestServer.configuration(), options: options)
            }
        }
    }

    @Test("a fencing sequence that cannot be created: typed error, and nothing held or queued")
    func unusableSequence() async throws {
        var options = PostgresLockOptions()
        options.fencingSequence = "no_such_schema.fencing"
        let lock = try TestServer.lock(TestServer.uniqueName(), options: options)
        let error = await #expect(throws: PostgresLockError.self) { try await lock.withExclusive { _ in } }
        guard case .fencingSequenceUnavailable(let sequence, _)? = error else {
            Issue.record("expected fencingSequenceUnavailable, got \(String(describing: error))")
            return
        }
        #expect(sequence == "\"no_such_schema\".\"fencing\"")
        #expect(try await TestServer.withConnection { try await $0.advisoryLocks(lock.key) }.isEmpty)
        // Shared mode needs no token.
        #expect(try await lock.withShared { _ in 1 } == 1)
        await lock.close()
    }

    @Test("a closed lock refuses, with a typed error")
    func closed() async throws {
        let lock = try TestServer.lock(TestServer.uniqueName())
        try await lock.withShared { _ in }
        await lock.close()
        await #expect(throws: PostgresLockError.closed) { try await lock.withShared { _ in } }
    }
}

@Suite("Misuse", .timeLimit(.minutes(1)))
struct MisuseTests {
    @Test("asking for exclusive mode inside a hold of the same lock, in the same task, traps")
    func reentryTraps() async throws {
        _ = try TestServer.configuration()
        await #expect(processExitsWith: .failure) {
            let lock = try TestServer.lock(TestServer.uniqueName("reentry"))
            try await lock.withShared { _ in
                try await lock.withExclusive { _ in }
            }
        }
        await #expect(processExitsWith: .failure) {
            let lock = try TestServer.lock(TestServer.uniqueName("reentry"))
            try await lock.withExclusive { _ in
                try await lock.withShared { _ in }
            }
        }
    }

    @Test("shared inside shared, from the same task, is allowed while no writer waits")
    func sharedInShared() async throws {
        let lock = try TestServer.lock(TestServer.uniqueName())
        let value = try await lock.withShared { _ in try await lock.withShared { _ in 5 } }
        #expect(value == 5)
        // Inside an exclusive hold, the forms that do not wait for ever answer.
        try await lock.withExclusive { _ in
            let inner = try await lock.withSharedIfAvailable { _ in 1 }
            #expect(inner == nil)
            await #expect(throws: PostgresLockError.timedOut) { try await lock.withExclusive(timeout: .milliseconds(20)) { _ in } }
        }
        // The outer hold's record is kept: exclusive is available again afterwards.
        #expect(try await lock.withExclusiveIfAvailable { _ in 6 } == 6)
        await lock.close()
    }

    @Test("close() ends a wait at the server: the waiter gets closed, nothing stays queued")
    func closeEndsServerWait() async throws {
        let name = TestServer.uniqueName()
        let holder = try TestServer.lock(name), waiter = try TestServer.lock(name)
        try await TestServer.withConnection { admin in
            try await holder.withExclusive { hold in
                let waiting = Task { try await waiter.withExclusive { _ in } }
                _ = try await admin.waitForLocks(holder.key) { $0.contains { !$0.granted } }
                await waiter.close()
                await #expect(throws: PostgresLockError.closed) { try await waiting.value }
                let locks = try await admin.waitForLocks(holder.key) { $0.allSatisfy(\.granted) }
                #expect(locks == [ServerLock(pid: hold.serverProcessID, mode: "ExclusiveLock", granted: true)])
            }
        }
        await holder.close()
    }
}
