import PostgresNIO

/// Every SQL statement the lock sends, in one place.
///
/// Advisory locks here are the one-`bigint` forms: `pg_locks` shows them with
/// `locktype = 'advisory'`, `classid` = the key's high 32 bits, `objid` = its low 32 bits,
/// `objsubid = 1`, `mode` = `ShareLock` or `ExclusiveLock`. They are *session* locks: a
/// transaction's rollback does not release them, only `pg_advisory_unlock*` or the end of
/// the session does.
enum Statements {
    /// A blocking acquisition that waits at most `lockTimeoutMilliseconds` (0: no limit) in
    /// the server's queue, then (exclusive) draws the fencing token.
    ///
    /// Materialized CTEs fix the order: `lock_timeout` is set before the lock function runs
    /// (it is read when the wait starts), and `nextval` runs only after the lock is granted.
    /// A wait that times out fails with SQLSTATE 55P03 and leaves the queue.
    static func acquire(_ mode: LockMode, key: AdvisoryKey, lockTimeoutMilliseconds: Int, sequence: String) -> PostgresQuery {
        let timeout = "\(lockTimeoutMilliseconds)"
        switch mode {
        case .shared:
            return """
                WITH t AS MATERIALIZED (SELECT set_config('lock_timeout', \(timeout), false) AS v), \
                l AS MATERIALIZED (SELECT pg_advisory_lock_shared(\(key.rawValue)) FROM t) \
                SELECT count(*)::bigint FROM l
                """
        case .exclusive:
            return """
                WITH t AS MATERIALIZED (SELECT set_config('lock_timeout', \(timeout), false) AS v), \
                l AS MATERIALIZED (SELECT pg_advisory_lock(\(key.rawValue)) FROM t) \
                SELECT nextval(\(sequence)::regclass) FROM l
                """
        }
    }

    /// A try: shared answers a `bool`; exclusive answers the fencing token, or NULL when the
    /// lock is not free (`CASE` evaluates `nextval` only when the lock was taken).
    static func tryAcquire(_ mode: LockMode, key: AdvisoryKey, sequence: String) -> PostgresQuery {
        switch mode {
        case .shared:
            return "SELECT pg_try_advisory_lock_shared(\(key.rawValue))"
        case .exclusive:
            return "SELECT CASE WHEN pg_try_advisory_lock(\(key.rawValue)) THEN nextval(\(sequence)::regclass) END"
        }
    }

    /// Releases one hold of `mode`; answers whether the session held it.
    static func release(_ mode: LockMode, key: AdvisoryKey) -> PostgresQuery {
        switch mode {
        case .shared: return "SELECT pg_advisory_unlock_shared(\(key.rawValue))"
        case .exclusive: return "SELECT pg_advisory_unlock(\(key.rawValue))"
        }
    }

    /// Releases every advisory lock of the session. Sent after a failed, timed-out or
    /// cancelled acquisition, when the session holds nothing else of ours: a grant that raced
    /// with the timeout or the cancel (the statement fails, but a session lock stays) is
    /// undone.
    static let releaseAll: PostgresQuery = "SELECT count(*)::bigint FROM pg_advisory_unlock_all()"

    /// Whether the fencing sequence exists (as the role sees it).
    static func sequenceExists(_ sequence: String) -> PostgresQuery {
        "SELECT to_regclass(\(sequence)) IS NOT NULL"
    }

    /// Creates the fencing sequence. `quoted` was validated as an SQL name and quoted.
    static func createSequence(quoted: String) -> PostgresQuery {
        PostgresQuery(unsafeSQL: "CREATE SEQUENCE IF NOT EXISTS \(quoted)")
    }

    /// Resets `lock_timeout` (before statements that may wait on catalog locks).
    static let noLockTimeout: PostgresQuery = "SELECT set_config('lock_timeout', '0', false)"

    /// The number of requests for `key` in exclusive mode that wait at the server (from any
    /// session of this database).
    static func waitingWriters(key: AdvisoryKey) -> PostgresQuery {
        """
        SELECT count(*)::bigint FROM pg_locks \
        WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
        AND classid::bigint = \(Int64(key.classID)) AND objid::bigint = \(Int64(key.objectID)) AND objsubid = 1 \
        AND mode = 'ExclusiveLock' AND NOT granted
        """
    }

    /// Whether this session holds `key` in `mode`, as the server's lock table says.
    static func holds(_ mode: LockMode, key: AdvisoryKey) -> PostgresQuery {
        let lockMode = mode == .shared ? "ShareLock" : "ExclusiveLock"
        return """
            SELECT count(*)::bigint FROM pg_locks \
            WHERE locktype = 'advisory' AND pid = pg_backend_pid() \
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
            AND classid::bigint = \(Int64(key.classID)) AND objid::bigint = \(Int64(key.objectID)) AND objsubid = 1 \
            AND mode = \(lockMode) AND granted
            """
    }
}
