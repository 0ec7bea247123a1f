import Logging
import PostgresNIO
import Synchronization

/// One PostgreSQL session (connection) of a lock: the server-side identity that holds the
/// advisory lock. Lost for good when its connection closes; the lock then opens a new one.
///
/// Every query runs in an unstructured task, so that cancelling the caller's task never
/// reaches postgres-nio: a cancelled row stream would leave the server still executing (and a
/// lock request still queued) while the client stops listening. Cancelling a server wait is
/// done on purpose instead, by ``requestCancel(configuration:options:)``.
final class Session: Sendable {
    let connection: PostgresConnection
    /// `pg_backend_pid()`: how `pg_locks` and `pg_stat_activity` name this session.
    let serverProcessID: Int32
    /// `backend_start` in microseconds since 1970: with the pid, names this backend and no
    /// later one that reuses its pid (so a cancel never reaches another session).
    private let backendStart: Int64
    private let logger: Logger
    private let lossReason = Mutex<String?>(nil)
    /// Whether the fencing sequence was checked (or created) on this session.
    let sequenceReady = Atomic<Bool>(false)

    private init(connection: PostgresConnection, serverProcessID: Int32, backendStart: Int64, logger: Logger) {
        self.connection = connection
        self.serverProcessID = serverProcessID
        self.backendStart = backendStart
        self.logger = logger
    }

    private static let connectionIDs = Atomic<Int>(0)

    /// Opens a session and reads its server process id.
    ///
    /// - Parameter onLoss: called once, on an event loop thread, when the connection closes
    ///   for any reason other than ``close()``.
    static func open(
        configuration: PostgresConnection.Configuration,
        options: PostgresLockOptions,
        connectTimeout: Duration?,
        onLoss: @escaping @Sendable (Session) -> Void
    ) async throws -> Session {
        var configuration = configuration
        configuration.options.additionalStartupParameters = options.startupParameters() + configuration.options.additionalStartupParameters
        if let connectTimeout {
            let limit = TimeAmount.milliseconds(Int64(max(1, min(connectTimeout.milliseconds, Int(Int32.max)))))
            configuration.options.connectTimeout = min(configuration.options.connectTimeout, limit)
        }
        let id = connectionIDs.add(1, ordering: .relaxed).newValue
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: configuration, id: id, logger: options.logger)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw Session.connectError(error, configuration: configuration)
        }
        let identity: (Int32, Int64)
        do {
            let rows = try await shielded(connection, logger: options.logger,
                "SELECT pg_backend_pid(), (SELECT (extract(epoch FROM backend_start) * 1000000)::bigint FROM pg_stat_activity WHERE pid = pg_backend_pid())")
            guard let row = rows.first else { throw PostgresLockError.server(sqlState: "", message: "no row for pg_backend_pid()") }
            identity = try row.decode((Int32, Int64).self)
        } catch {
            try? await connection.close()
            throw Session.mapped(error, whileHolding: false)
        }
        let session = Session(connection: connection, serverProcessID: identity.0, backendStart: identity.1, logger: options.logger)
        connection.closeFuture.whenComplete { [weak session] _ in
            guard let session else { return }
            session.failInFlight()
            let first = session.lossReason.withLock { reason -> Bool in
                guard reason == nil else { return false }
                reason = "the connection closed"
                return true
            }
            if first { onLoss(session) }
        }
        return session
    }

    /// Whether the connection has closed (the server ended the session, the network failed,
    /// or ``close()`` ran).
    var isLost: Bool { lossReason.withLock { $0 != nil } || connection.isClosed }

    /// Why the session was lost, as far as the client knows.
    var lossDescription: String {
        lossReason.withLock { $0 } ?? (connection.isClosed ? "the connection closed" : "the session is still open")
    }

    /// Records the most telling reason (a server message such as "terminating connection due
    /// to administrator command") before the close callback records a generic one.
    func noteLoss(_ reason: String) {
        lossReason.withLock { current in
            if current == nil || current == "the connection closed" { current = reason }
        }
    }

    /// Runs one statement and collects its rows, out of reach of the caller's cancellation.
    ///
    /// A statement written to a connection that closes at that instant may never be answered
    /// (the write fails before it reaches postgres-nio's handler, whose promise is then never
    /// completed), so the close also ends the wait: every statement in flight is registered
    /// here, and the session's close handler fails the ones still unanswered.
    func query(_ query: PostgresQuery) async throws -> [PostgresRow] {
        let outcome = Once<Result<[PostgresRow], any Error>>()
        let id: UInt64? = inFlight.withLock { inFlight in
            guard !inFlight.closed else { return nil }
            inFlight.nextID += 1
            inFlight.waiting[inFlight.nextID] = outcome
            return inFlight.nextID
        }
        guard let id else { throw ConnectionClosed() }
        defer { inFlight.withLock { _ = $0.waiting.removeValue(forKey: id) } }
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[PostgresRow], any Error>) in
            outcome.onResult { continuation.resume(with: $0) }
            Session.send(query, on: connection, logger: logger, to: outcome)
        }
    }

    /// Sends a statement through postgres-nio's future interface: its result arrives on the
    /// event loop, with no task of its own for a cancellation to reach (and no hop to one).
    private static func send(_ query: PostgresQuery, on connection: PostgresConnection, logger: Logger,
                             to outcome: Once<Result<[PostgresRow], any Error>>) {
        let result: EventLoopFuture<PostgresQueryResult> = connection.query(query, logger: logger)
        result.whenComplete { outcome.complete($0.map(\.rows)) }
    }

    private struct InFlight {
        var nextID: UInt64 = 0
        var waiting: [UInt64: Once<Result<[PostgresRow], any Error>>] = [:]
        var closed = false
    }
    private let inFlight = Mutex(InFlight())

    /// Fails every statement still waiting for an answer (the connection closed).
    private func failInFlight() {
        let waiting = inFlight.withLock { inFlight in
            inFlight.closed = true
            defer { inFlight.waiting = [:] }
            return Array(inFlight.waiting.values)
        }
        for outcome in waiting { outcome.complete(.failure(ConnectionClosed())) }
    }

    /// A statement on a connection that is not yet a session (once, while opening one); a
    /// close also ends its wait, as in ``query(_:)``.
    private static func shielded(_ connection: PostgresConnection, logger: Logger, _ query: PostgresQuery) async throws -> [PostgresRow] {
        let outcome = Once<Result<[PostgresRow], any Error>>()
        connection.closeFuture.whenComplete { _ in outcome.complete(.failure(ConnectionClosed())) }
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[PostgresRow], any Error>) in
            outcome.onResult { continuation.resume(with: $0) }
            send(query, on: connection, logger: logger, to: outcome)
        }
    }

    // MARK: Confirming that the session lives

    private struct Pings {
        var running = false
        /// Waiting for the ping in flight.
        var current: [CheckedContinuation<Bool, Never>] = []
        /// Arrived while a ping was in flight (which may have been sent before they asked):
        /// they share the next one.
        var next: [CheckedContinuation<Bool, Never>] = []
    }
    private let pings = Mutex(Pings())

    /// Whether the session is alive *now*: one round trip (`SELECT 1`) sent after this call
    /// began, shared by every caller that arrives while it is being prepared. A session that
    /// answers after a hold's body ended held the lock through that body, since an advisory
    /// lock leaves a live session only by an unlock.
    func confirmAlive() async -> Bool {
        if isLost { return false }
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let start = pings.withLock { pings -> Bool in
                if pings.running {
                    pings.next.append(continuation)
                    return false
                }
                pings.running = true
                pings.current = [continuation]
                return true
            }
            if start { ping() }
        }
    }

    private func ping() {
        Task {
            let alive: Bool
            do {
                _ = try await self.query("SELECT 1")
                alive = true
            } catch {
                self.noteLoss(Session.describe(error))
                if !Session.isConnectionLoss(error) { self.closeSoon() }
                alive = false
            }
            let (done, again) = self.pings.withLock { pings -> ([CheckedContinuation<Bool, Never>], Bool) in
                let done = pings.current
                pings.current = pings.next
                pings.next = []
                pings.running = !pings.current.isEmpty
                return (done, pings.running)
            }
            for continuation in done { continuation.resume(returning: alive) }
            if again { self.ping() }
        }
    }

    /// Closes the connection (idempotent). A session closed here is not reported as lost
    /// through `onLoss`.
    func close() async {
        lossReason.withLock { if $0 == nil { $0 = "closed by this process" } }
        try? await connection.close()
    }

    /// Closes the connection without waiting.
    func closeSoon() {
        lossReason.withLock { if $0 == nil { $0 = "closed by this process" } }
        Session.closeKeepingAlive(connection)
    }

    /// Starts closing `connection` and keeps it alive until it is closed (postgres-nio
    /// requires a connection to be closed before it is deinitialized).
    private static func closeKeepingAlive(_ connection: PostgresConnection) {
        connection.closeFuture.whenComplete { _ in withExtendedLifetime(connection) {} }
        let closing: EventLoopFuture<Void> = connection.close()
        _ = closing
    }

    deinit {
        if !connection.isClosed { Session.closeKeepingAlive(connection) }
    }

    /// Asks the server to cancel this session's running statement, from a second, short-lived
    /// connection (`pg_cancel_backend`, guarded by the backend's start time so that a reused
    /// pid is never hit). Returns when the server has sent the signal: a statement that is
    /// still waiting then ends with SQLSTATE 57014, and one that had already finished is not
    /// affected (a cancel that reaches an idle backend is dropped).
    ///
    /// - Returns: whether the signal was sent.
    func requestCancel(configuration: PostgresConnection.Configuration, options: PostgresLockOptions) async -> Bool {
        do {
            var options = options
            options.clientConnectionCheckInterval = nil
            let side = try await Session.open(configuration: configuration, options: options, connectTimeout: .seconds(10)) { _ in }
            let sent: Bool
            do {
                let rows = try await side.query("""
                    SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
                    WHERE pid = \(serverProcessID) AND (extract(epoch FROM backend_start) * 1000000)::bigint = \(backendStart)
                    """)
                sent = try rows.first?.decode(Bool.self) ?? false
            } catch {
                await side.close()
                throw error
            }
            await side.close()
            return sent
        } catch {
            logger.debug("interlock: cancel request failed: \(error)")
            return false
        }
    }
}

extension Session {
    /// The typed error for a failed connection attempt.
    static func connectError(_ error: any Error, configuration: PostgresConnection.Configuration) -> PostgresLockError {
        let server = configuration.host.map { "\($0):\(configuration.port ?? 5432)" } ?? configuration.unixSocketPath ?? "the configured channel"
        if let error = error as? PSQLError {
            if error.code == .server, let state = error.serverInfo?[.sqlState] {
                let message = error.serverInfo?[.message] ?? "no message"
                if state.hasPrefix("28") {
                    return .authenticationFailed(user: configuration.username, reason: message)
                }
                return .serverUnavailable(sqlState: state, reason: message)
            }
            if error.code == .authMechanismRequiresPassword || error.code == .unsupportedAuthMechanism || error.code == .saslError {
                return .authenticationFailed(user: configuration.username, reason: "\(error.code)")
            }
            let underlying = error.underlying.map { "\($0)" } ?? "\(error.code)"
            return .connectionFailed(server: server, reason: underlying)
        }
        if let error = error as? PostgresLockError { return error }
        return .connectionFailed(server: server, reason: "\(error)")
    }

    /// Whether an error means the connection is gone (as opposed to a statement that failed
    /// on a live session).
    static func isConnectionLoss(_ error: any Error) -> Bool {
        if error is ConnectionClosed { return true }
        guard let error = error as? PSQLError else { return false }
        switch error.code {
        case .serverClosedConnection, .clientClosedConnection, .connectionError, .uncleanShutdown, .messageDecodingFailure, .unexpectedBackendMessage:
            return true
        case .server:
            // FATAL and PANIC end the session (57P01 when a backend is terminated).
            let severity = error.serverInfo?[.severity] ?? ""
            return severity == "FATAL" || severity == "PANIC"
        default:
            return false
        }
    }

    /// The SQLSTATE of a server error, if the error is one.
    static func sqlState(_ error: any Error) -> String? {
        guard let error = error as? PSQLError, error.code == .server else { return nil }
        return error.serverInfo?[.sqlState]
    }

    /// A short text for an error from a statement.
    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] {
                return "\(message) (SQLSTATE \(error.serverInfo?[.sqlState] ?? "?"))"
            }
            return error.underlying.map { "\(error.code): \($0)" } ?? "\(error.code)"
        }
        return "\(error)"
    }

    /// Maps a statement's error to the typed error (used where no more specific one applies).
    static func mapped(_ error: any Error, whileHolding: Bool) -> any Error {
        if error is CancellationError || error is PostgresLockError { return error }
        if isConnectionLoss(error) { return PostgresLockError.connectionLost(reason: describe(error)) }
        if let state = sqlState(error) {
            return PostgresLockError.server(sqlState: state, message: (error as? PSQLError)?.serverInfo?[.message] ?? "")
        }
        return PostgresLockError.connectionLost(reason: describe(error))
    }
}

/// A result delivered once, to one handler, whichever of several sources completes first.
final class Once<Value: Sendable>: Sendable {
    private let state = Mutex<(value: Value?, handler: (@Sendable (Value) -> Void)?, done: Bool)>((nil, nil, false))

    func onResult(_ handler: @escaping @Sendable (Value) -> Void) {
        let ready: Value? = state.withLock { state in
            if let value = state.value, !state.done { state.done = true; return value }
            state.handler = handler
            return nil
        }
        if let ready { handler(ready) }
    }

    func complete(_ value: Value) {
        let handler: (@Sendable (Value) -> Void)? = state.withLock { state in
            guard state.value == nil else { return nil }
            state.value = value
            guard let handler = state.handler, !state.done else { return nil }
            state.done = true
            return handler
        }
        handler?(value)
    }
}

/// The connection closed before a statement was answered.
struct ConnectionClosed: Error, CustomStringConvertible {
    var description: String { "the connection closed before the server answered" }
}
