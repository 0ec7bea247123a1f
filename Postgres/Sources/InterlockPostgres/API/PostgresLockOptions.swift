import Logging

/// Settings of a ``PostgresSharedLock`` beyond the connection itself.
public struct PostgresLockOptions: Sendable {
    /// The sequence whose `nextval` numbers exclusive holds: each exclusive hold's
    /// ``PostgresSharedLock/ExclusiveHold/fencingToken``. Default `interlock_fencing`, in the
    /// first schema of the role's `search_path`; may be schema-qualified (`locks.fencing`).
    ///
    /// It is created (`CREATE SEQUENCE IF NOT EXISTS`) the first time an exclusive hold needs
    /// it. A role that may not create it needs it made once by one that may, with `USAGE` granted.
    /// All locks of a database may share one sequence: its values rise strictly, so they rise
    /// strictly for every key. Do not `setval`, drop, or make it `UNLOGGED`: that would let
    /// tokens go backwards.
    public var fencingSequence: String = "interlock_fencing"

    /// While this process holds shared mode and more of its readers keep joining the hold, how
    /// often it asks the server (one query on its session, in the background) whether a writer
    /// in another session waits for the key. When one does, new local readers wait, the hold
    /// ends when the readers inside leave, and the writer gets in. This bounds how long a
    /// writer elsewhere can be kept out by one process's stream of overlapping readers.
    /// Default 20 ms.
    public var writerCheckInterval: Duration = .milliseconds(20)

    /// How soon the *server* ends a session whose client vanished without closing the
    /// connection (host down, network cut), releasing what it held. Sets the session's
    /// `tcp_keepalives_idle` (half of it), `tcp_keepalives_interval` (a sixth),
    /// `tcp_keepalives_count` (3) and `tcp_user_timeout`; ignored on Unix-domain sockets.
    /// Default 20 s. `nil` keeps the server's settings (often two hours).
    public var deadClientTimeout: Duration? = .seconds(20)

    /// How often the server checks, while this session waits for the lock, that the client is
    /// still connected (`client_connection_check_interval`): a waiting request whose client
    /// closed the connection leaves the server's queue within this time. Default 250 ms;
    /// `nil` keeps the server's setting (often off).
    public var clientConnectionCheckInterval: Duration? = .milliseconds(250)

    /// The `application_name` of the lock's sessions (seen in `pg_stat_activity`).
    /// Default `interlock`.
    public var applicationName: String = "interlock"

    /// Where the connection logs (postgres-nio's log messages). Default: nowhere.
    public var logger: Logger = Logger(label: "interlock.postgres", factory: { _ in SwiftLogNoOpLogHandler() })

    /// The default options.
    public init() {}
}

extension PostgresLockOptions {
    /// The fencing sequence as a quoted SQL name (`"schema"."name"` or `"name"`), or an error
    /// that says why it is not one.
    func quotedFencingSequence() throws(PostgresLockError) -> String {
        let parts = fencingSequence.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count) else {
            throw .invalidOption("fencingSequence \"\(fencingSequence)\"", reason: "write NAME or SCHEMA.NAME")
        }
        for part in parts {
            guard let first = part.unicodeScalars.first,
                  first == "_" || (first.isASCII && first.properties.isAlphabetic),
                  part.utf8.count <= 63,
                  part.unicodeScalars.allSatisfy({ $0 == "_" || $0 == "$" || ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) })
            else {
                throw .invalidOption("fencingSequence \"\(fencingSequence)\"",
                                     reason: "each part must be an SQL identifier: a letter or _, then letters, digits, _ or $, at most 63 bytes")
            }
        }
        return parts.map { "\"\($0)\"" }.joined(separator: ".")
    }

    /// Settings sent with the session's startup packet: no server-wide timeout may end a
    /// wait or an idle hold behind the lock's back, and a vanished client is noticed.
    func startupParameters() -> [(String, String)] {
        var settings: [(String, String)] = [
            ("application_name", applicationName),
            ("statement_timeout", "0"),
            ("lock_timeout", "0"),
            ("idle_session_timeout", "0"),
            ("idle_in_transaction_session_timeout", "0"),
        ]
        if let deadClientTimeout {
            let seconds = max(3, Int(deadClientTimeout.components.seconds))
            settings += [
                ("tcp_keepalives_idle", "\(max(1, seconds / 2))"),
                ("tcp_keepalives_interval", "\(max(1, seconds / 6))"),
                ("tcp_keepalives_count", "3"),
                ("tcp_user_timeout", "\(seconds * 1000)"),
            ]
        }
        if let clientConnectionCheckInterval {
            settings.append(("client_connection_check_interval", "\(max(1, clientConnectionCheckInterval.milliseconds))"))
        }
        return settings
    }
}

extension Duration {
    /// Whole milliseconds, rounded up, saturating at `Int.max`.
    var milliseconds: Int {
        let (seconds, attoseconds) = components
        if seconds < 0 { return 0 }
        let (ms, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        if overflow { return .max }
        let extra = (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        let (total, overflow2) = Int(ms).addingReportingOverflow(Int(extra))
        return overflow2 ? .max : total
    }
}
