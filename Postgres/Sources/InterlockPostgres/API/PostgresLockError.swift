/// What went wrong in a ``PostgresSharedLock`` call, and what to do about it.
///
/// A scoped call (`withShared`, `withExclusive`, and their forms) throws one of these, a
/// `CancellationError` when its task was cancelled while waiting, or the error the body threw
/// (passed through as it is). Every description is a sentence that says what to do.
public enum PostgresLockError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The lock name cannot be used: `reason` says why.
    case invalidName(String, reason: String)
    /// An option cannot be used (for example a fencing sequence name that is not an SQL
    /// identifier): `reason` says why.
    case invalidOption(String, reason: String)
    /// No session could be opened: the server did not answer, refused the connection, or
    /// the TLS handshake failed. Nothing was acquired.
    case connectionFailed(server: String, reason: String)
    /// The server refused the role or its password (SQLSTATE class 28). Nothing was acquired.
    case authenticationFailed(user: String, reason: String)
    /// The server answered but would not open a session (no such database, too many
    /// connections, starting up or shutting down): `sqlState` and `reason` say which.
    case serverUnavailable(sqlState: String, reason: String)
    /// A timed acquisition reached its deadline. Nothing was acquired and nothing is left
    /// queued at the server.
    case timedOut
    /// The session was lost while waiting for the lock (connection cut, server restart,
    /// backend terminated). Nothing is held; a retry opens a new session.
    case connectionLost(reason: String)
    /// The session was lost while the lock was held: the server released the lock when the
    /// session ended, and another holder may have taken it while the body still ran.
    case sessionLost(SessionLoss)
    /// An exclusive hold needs a fencing token, and the fencing sequence could not be used
    /// or created. The lock was released.
    case fencingSequenceUnavailable(sequence: String, reason: String)
    /// The server answered an unexpected error (`sqlState`, the server's message).
    case server(sqlState: String, message: String)
    /// ``PostgresSharedLock/close()`` was called: the lock cannot be used any more.
    case closed

    /// A sentence that says what happened and what to do.
    public var description: String {
        switch self {
        case .invalidName(let name, let reason):
            return "invalid lock name \"\(name)\": \(reason) (use a non-empty name, or AdvisoryKey(_:) for an explicit key)"
        case .invalidOption(let option, let reason):
            return "invalid option \(option): \(reason)"
        case .connectionFailed(let server, let reason):
            return "could not connect to PostgreSQL at \(server): \(reason) (check that the server runs and listens there, and the host, port and TLS settings)"
        case .authenticationFailed(let user, let reason):
            return "PostgreSQL refused role \"\(user)\": \(reason) (check the user name and password, and pg_hba.conf)"
        case .serverUnavailable(let sqlState, let reason):
            return "PostgreSQL would not open a session (SQLSTATE \(sqlState)): \(reason) (check the database name and the server's state; retry later if it is starting or full)"
        case .timedOut:
            return "timed out waiting for the lock; nothing was acquired and nothing is left queued at the server (retry, or use a longer timeout)"
        case .connectionLost(let reason):
            return "the connection to PostgreSQL was lost while waiting for the lock: \(reason); nothing is held (retry: a new session is opened)"
        case .sessionLost(let loss):
            return loss.description
        case .fencingSequenceUnavailable(let sequence, let reason):
            return "the fencing sequence \(sequence) cannot be used: \(reason) (create it once as a role that may: CREATE SEQUENCE \(sequence); then GRANT USAGE ON SEQUENCE \(sequence) TO the lock's role; or name another in PostgresLockOptions.fencingSequence); the lock was released"
        case .server(let sqlState, let message):
            return "PostgreSQL error \(sqlState): \(message)"
        case .closed:
            return "the lock was closed; make a new PostgresSharedLock to use it again"
        }
    }
}

/// How a held lock was lost: what was held, and why the session ended.
public struct SessionLoss: Equatable, Sendable, CustomStringConvertible {
    /// The lock's key.
    public var key: AdvisoryKey
    /// The mode that was held.
    public var mode: LockMode
    /// The fencing token of the lost exclusive hold (`nil` for a shared hold). Any writer that
    /// took the lock after the loss holds a larger one.
    public var fencingToken: Int64?
    /// The server process id of the lost session (`pg_backend_pid()`).
    public var serverProcessID: Int32
    /// Why the session ended, as far as the client knows (the server's message, or how the
    /// connection closed).
    public var reason: String
    /// The description of the error the body threw, if it threw (the loss is reported
    /// instead, since it may explain it).
    public var bodyError: String?

    /// Creates a description of a loss (the lock makes these; public for tests of your own
    /// code that handles ``PostgresLockError/sessionLost(_:)``).
    public init(key: AdvisoryKey, mode: LockMode, fencingToken: Int64?, serverProcessID: Int32, reason: String, bodyError: String? = nil) {
        self.key = key
        self.mode = mode
        self.fencingToken = fencingToken
        self.serverProcessID = serverProcessID
        self.reason = reason
        self.bodyError = bodyError
    }

    /// A sentence that says what happened and what to do.
    public var description: String {
        var text = "the PostgreSQL session holding \(key) in \(mode) mode"
        if let fencingToken { text += " (fencing token \(fencingToken))" }
        text += " was lost while held (server process \(serverProcessID)): \(reason). "
        text += "The server released the lock when the session ended, so another holder may have overlapped the end of this one"
        text += mode == .exclusive ? "; writes guarded by the fencing token are rejected by a resource that has seen a larger one" : ""
        text += ". Treat the work done under the lock as unconfirmed, and retry it under a new hold."
        if let bodyError { text += " The body also threw: \(bodyError)." }
        return text
    }
}

/// The two modes of a reader-writer lock.
public enum LockMode: String, Sendable, Hashable, CustomStringConvertible {
    /// Any number of holders at once (readers).
    case shared
    /// One holder, alone (a writer).
    case exclusive

    /// `shared` or `exclusive`.
    public var description: String { rawValue }
}
