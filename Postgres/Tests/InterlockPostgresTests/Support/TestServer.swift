// The server the tests run against: the one Postgres/scripts/with-postgres.sh started (or
// any other named by INTERLOCK_PG_*). Without these settings every test fails, saying how
// to run them: a silently skipped suite would look green.

import InterlockPostgres
import Logging
import PostgresNIO
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

struct SetupError: Error, CustomStringConvertible {
    var description: String
}

enum TestServer {
    static func env(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// The tests' connection settings, or an error saying how to provide them.
    static func configuration() throws -> PostgresConnection.Configuration {
        guard let host = env("INTERLOCK_PG_HOST"), let port = env("INTERLOCK_PG_PORT").flatMap(Int.init),
              let user = env("INTERLOCK_PG_USER"), let database = env("INTERLOCK_PG_DATABASE") else {
            throw SetupError(description: """
                no PostgreSQL server for the tests: INTERLOCK_PG_HOST, INTERLOCK_PG_PORT, INTERLOCK_PG_USER, \
                INTERLOCK_PG_PASSWORD and INTERLOCK_PG_DATABASE are not set. Run the tests through \
                Postgres/scripts/with-postgres.sh (it starts a throwaway server and sets them): \
                Postgres/scripts/with-postgres.sh swift test --package-path Postgres
                """)
        }
        return PostgresConnection.Configuration(host: host, port: port, username: user,
                                                password: env("INTERLOCK_PG_PASSWORD"), database: database, tls: .disable)
    }

    static let logger = Logger(label: "tests", factory: { _ in SwiftLogNoOpLogHandler() })
    private static let ids = Atomic<Int>(1000)

    /// Runs `body` with a plain postgres-nio connection (the tests' independent view of the
    /// server: `pg_locks`, `pg_terminate_backend`).
    static func withConnection<R>(_ body: (PostgresConnection) async throws -> R) async throws -> R {
        let connection = try await PostgresConnection.connect(configuration: configuration(), id: ids.add(1, ordering: .relaxed).newValue, logger: logger)
        do {
            let result = try await body(connection)
            try await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// A lock name no other test uses.
    static func uniqueName(_ label: String = #function) -> String {
        "test.\(label).\(getpid()).\(ids.add(1, ordering: .relaxed).newValue)"
    }

    static func lock(_ name: String, options: PostgresLockOptions = .init()) throws -> PostgresSharedLock {
        try PostgresSharedLock(name: name, configuration: configuration(), options: options)
    }
}

/// One row of `pg_locks` for an advisory key, as the server sees it.
struct ServerLock: Equatable, CustomStringConvertible {
    var pid: Int32
    var mode: String  // ShareLock or ExclusiveLock
    var granted: Bool
    var description: String { "pid \(pid) \(mode)\(granted ? "" : " (waiting)")" }
}

extension PostgresConnection {
    /// The server's own view of an advisory key: every session that holds or waits for it.
    func advisoryLocks(_ key: AdvisoryKey) async throws -> [ServerLock] {
        let rows = try await query("""
            SELECT pid, mode, granted FROM pg_locks
            WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND classid::bigint = \(Int64(key.classID)) AND objid::bigint = \(Int64(key.objectID)) AND objsubid = 1
            ORDER BY pid
            """, logger: TestServer.logger).collect()
        return try rows.map { row in
            let (pid, mode, granted) = try row.decode((Int32, String, Bool).self)
            return ServerLock(pid: pid, mode: mode, granted: granted)
        }
    }

    /// Waits until the server's view of `key` satisfies `condition`, checking every 5 ms up
    /// to `bound` (a handshake with the server's state, not a guess at timing).
    func waitForLocks(_ key: AdvisoryKey, within bound: Duration = .seconds(30), until condition: ([ServerLock]) -> Bool) async throws -> [ServerLock] {
        let deadline = ContinuousClock.now + bound
        while true {
            let locks = try await advisoryLocks(key)
            if condition(locks) { return locks }
            if ContinuousClock.now >= deadline {
                throw SetupError(description: "pg_locks for \(key) never reached the expected state; last: \(locks)")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// `pg_terminate_backend(pid)` and wait for the backend to be gone.
    func terminate(_ pid: Int32) async throws {
        let rows = try await query("SELECT pg_terminate_backend(\(pid), 10000)", logger: TestServer.logger).collect()
        #expect(try rows.first?.decode(Bool.self) == true, "pg_terminate_backend(\(pid))")
    }
}

/// An atomic counter that tasks can share.
final class Counter: Sendable {
    private let value: Atomic<Int>
    init(_ initial: Int = 0) { value = Atomic(initial) }
    @discardableResult func add(_ n: Int = 1) -> Int { value.add(n, ordering: .sequentiallyConsistent).newValue }
    @discardableResult func subtract(_ n: Int = 1) -> Int { value.subtract(n, ordering: .sequentiallyConsistent).newValue }
    var current: Int { value.load(ordering: .sequentiallyConsistent) }
}

/// A value that tasks can share, behind a mutex.
final class Shared<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ initial: Value) { value = Mutex(initial) }
    func update<R>(_ body: (inout Value) -> R) -> R { value.withLock { body(&$0) } }
    var current: Value { value.withLock { $0 } }
}
