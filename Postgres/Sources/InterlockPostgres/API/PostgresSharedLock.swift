import PostgresNIO

/// A reader-writer lock shared by every process, on any machine, that uses the same key on
/// the same PostgreSQL database: Interlock's ``Interlock/SharedLock`` beyond one machine.
///
/// ```swift
/// let lock = try PostgresSharedLock(name: "reports", configuration: config)
/// try await lock.withExclusive { hold in
///     try await store.write(report, fencingToken: hold.fencingToken)
/// }
/// let total = try await lock.withShared { _ in try await store.total() }
/// await lock.close()
/// ```
///
/// **Modes.** Any number of holders in shared mode, or one in exclusive mode, across all
/// sessions of the database — on the server, PostgreSQL's advisory locks
/// (`pg_advisory_lock_shared`, `pg_advisory_lock`) with the key ``key``.
///
/// **One session per lock per process.** The tasks of a process that share one
/// `PostgresSharedLock` share one PostgreSQL session: a reader-writer gate in the process
/// lets them in, and only the first holder in asks the server (one round trip) and the last
/// one out releases there. A thousand local readers need one connection, and join a held
/// shared lock without a round trip. Make one instance per lock and share it; two instances
/// of the same key in one process are two sessions, which is correct but costs twice. The
/// session opens at the first acquisition (the `IfAvailable` forms too) and stays open,
/// idle, between holds until ``close()``.
///
/// **Fair.** Writer-preferring and phase-fair within the process (as `SharedLock`); across
/// sessions PostgreSQL queues a new shared request behind a waiting exclusive one, and a
/// process whose readers overlap without end lets a waiting writer elsewhere in after at
/// most ``PostgresLockOptions/writerCheckInterval`` plus the readers' current holds.
///
/// **Timeouts and cancellation leave no trace.** A wait in the server's queue has a
/// `lock_timeout` from the deadline; a cancelled task's wait is cancelled at the server
/// (`pg_cancel_backend` from a second, short-lived connection); in both cases the call
/// returns only once the request has left the server's queue, and a grant that raced with
/// the timeout or the cancel is released. Waiters in the process leave at once.
///
/// **Losing the session.** If the session ends while the lock is held (connection cut,
/// server restart, `pg_terminate_backend`, the client host paused long enough for the
/// server's keepalives to give up), the server releases the lock and someone else may take
/// it. The holder is told: ``SharedHold/isLost`` turns true as soon as the connection is
/// seen closing, ``ExclusiveHold/verify()`` asks the server, and the scoped call throws
/// ``PostgresLockError/sessionLost(_:)`` when the body returns. That last check is exact,
/// for every holder: a scoped call returns normally only if the server answered on the
/// session *after* the body ended — the unlock's answer for an exclusive hold and for the
/// last reader out, a `SELECT 1` (one round trip, shared by the readers leaving at the same
/// moment) for a reader who leaves while others of its process still hold. A session that
/// answers then held the lock all along, since an advisory lock leaves a live session only
/// by an unlock. What no lock can do is stop
/// a holder that is paused (a stop-the-world pause, a suspended VM) and resumes, unaware,
/// after its session expired: for that every exclusive hold carries a
/// ``ExclusiveHold/fencingToken``, strictly larger for every later exclusive hold of the key,
/// and the resource you guard should refuse a write with a token smaller than one it has
/// seen. See "Beyond one machine" in the README.
///
/// Use a direct connection or a session-pooling proxy: a transaction-pooling proxy (PgBouncer
/// in `transaction` mode) hands the session to others between statements, and advisory
/// session locks mean nothing there.
public final class PostgresSharedLock: Sendable {
    let core: LockCore

    /// The advisory lock key this lock uses at the server.
    public var key: AdvisoryKey { core.key }

    /// A lock named `name`, whose key is ``AdvisoryKey/init(name:)``.
    ///
    /// No connection is made here: the session opens at the first acquisition.
    ///
    /// - Parameters:
    ///   - name: the lock's name (not empty); every process that uses the same name on the
    ///     same database shares the lock.
    ///   - configuration: how to connect (postgres-nio's configuration: host, port, user,
    ///     password, database, TLS).
    ///   - options: fencing sequence, keepalives, logging.
    /// - Throws: ``PostgresLockError/invalidName(_:reason:)``,
    ///   ``PostgresLockError/invalidOption(_:reason:)``.
    public convenience init(name: String, configuration: PostgresConnection.Configuration, options: PostgresLockOptions = .init()) throws(PostgresLockError) {
        try self.init(key: AdvisoryKey(name: name), configuration: configuration, options: options)
    }

    /// A lock on an explicit advisory key (to share a lock with code that calls
    /// `pg_advisory_lock(key)` itself).
    ///
    /// - Throws: ``PostgresLockError/invalidOption(_:reason:)``.
    public init(key: AdvisoryKey, configuration: PostgresConnection.Configuration, options: PostgresLockOptions = .init()) throws(PostgresLockError) {
        core = try LockCore(key: key, configuration: configuration, options: options)
    }

    deinit {
        core.closeSoon()
    }

    /// Closes the lock's session and fails every task still waiting with
    /// ``PostgresLockError/closed``. Holds in progress end normally; the session closes after
    /// the last one. Later calls throw ``PostgresLockError/closed``.
    public func close() async {
        await core.close()
    }

    /// The server process id (`pg_backend_pid()`) of the lock's open session, if one is open:
    /// the `pid` that `pg_locks` and `pg_stat_activity` show for it.
    public var serverProcessID: Int32? { core.serverProcessID }
}

extension PostgresSharedLock {
    /// A shared hold, valid inside the body of `withShared`.
    public struct SharedHold: Sendable {
        let record: HoldRecord

        /// The server process id of the session that holds the lock.
        public var serverProcessID: Int32 { record.session.serverProcessID }

        /// Whether this process has seen the session end (without a round trip). Once true,
        /// the server no longer holds the lock for this hold.
        public var isLost: Bool { record.isLost }

        /// Throws ``PostgresLockError/sessionLost(_:)`` if ``isLost``: a cheap check for loops.
        public func checkHeld() throws(PostgresLockError) {
            if record.isLost { throw .sessionLost(record.loss(reason: record.session.lossDescription)) }
        }

        /// Asks the server (one round trip on the session) whether the session still holds
        /// the lock; throws ``PostgresLockError/sessionLost(_:)`` if not.
        public func verify() async throws(PostgresLockError) {
            try await record.verify()
        }
    }

    /// An exclusive hold, valid inside the body of `withExclusive`.
    public struct ExclusiveHold: Sendable {
        let record: HoldRecord

        /// The fencing token of this hold: a value of the fencing sequence drawn after the
        /// lock was granted, so every later exclusive hold of this key (in any process) has
        /// a larger one. Give it to the resource you write, and have the resource refuse a
        /// write whose token is smaller than the largest it has seen.
        public var fencingToken: Int64 { record.fencingToken! }

        /// The server process id of the session that holds the lock.
        public var serverProcessID: Int32 { record.session.serverProcessID }

        /// Whether this process has seen the session end (without a round trip). Once true,
        /// the server no longer holds the lock for this hold.
        public var isLost: Bool { record.isLost }

        /// Throws ``PostgresLockError/sessionLost(_:)`` if ``isLost``: a cheap check for loops.
        public func checkHeld() throws(PostgresLockError) {
            if record.isLost { throw .sessionLost(record.loss(reason: record.session.lossDescription)) }
        }

        /// Asks the server (one round trip on the session) whether the session still holds
        /// the lock; throws ``PostgresLockError/sessionLost(_:)`` if not.
        public func verify() async throws(PostgresLockError) {
            try await record.verify()
        }
    }
}
