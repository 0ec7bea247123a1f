import Crypto

/// The 64-bit key of a PostgreSQL advisory lock, the server-side identity of a
/// ``PostgresSharedLock``.
///
/// PostgreSQL's advisory locks are keyed by one `bigint` per database (the one-argument forms
/// of `pg_advisory_lock`, shown in `pg_locks` with `objsubid = 1`). Two locks with the same key
/// in the same database are the same lock, whatever their names.
///
/// ## From a name
///
/// ``init(name:)`` hashes the name, stably across versions, processes and machines:
/// the first 8 bytes of SHA-256 over the bytes `interlock:` followed by the name's UTF-8
/// bytes, read as a big-endian two's-complement `Int64`. The same key in SQL, for `psql` or a
/// program in another language:
///
/// ```sql
/// SELECT ('x' || left(encode(sha256(convert_to('interlock:' || 'jobs', 'UTF8')), 'hex'), 16))::bit(64)::bigint;
/// ```
///
/// The name is hashed as its bytes, with no Unicode normalization: `"é"` written as one scalar
/// and as `e` plus a combining accent are two different locks (as they are two different file
/// names), although Swift compares the two strings equal.
///
/// **Collisions.** Two different names share a key only by chance: SHA-256 is collision
/// resistant, so with *n* names in one database the chance that any two collide is about
/// n² / 2⁶⁵ (one in 37 billion for a million names). A collision makes two locks one: never
/// wrong for safety (more exclusion, not less), only slower. Keys chosen by other code in the
/// same database (`pg_advisory_lock(42)` in an application) share the same space; the
/// `interlock:` prefix makes an accidental match with a small hand-picked number as unlikely
/// as any other collision. Use ``init(_:)`` with an explicit key to coordinate with such code.
public struct AdvisoryKey: Hashable, Sendable, CustomStringConvertible {
    /// The key as PostgreSQL's `bigint` argument of `pg_advisory_lock`.
    public let rawValue: Int64

    /// An explicit key, for coordinating with other code that uses `pg_advisory_lock(key)`.
    public init(_ rawValue: Int64) {
        self.rawValue = rawValue
    }

    /// The key for a lock name (see the type's documentation for the formula).
    ///
    /// - Throws: ``PostgresLockError/invalidName(_:reason:)`` when the name is empty.
    public init(name: String) throws(PostgresLockError) {
        guard !name.isEmpty else {
            throw .invalidName(name, reason: "a lock name cannot be empty")
        }
        var hasher = SHA256()
        hasher.update(data: Array("interlock:".utf8))
        hasher.update(data: Array(name.utf8))
        var value: UInt64 = 0
        for byte in hasher.finalize().prefix(8) {
            value = value << 8 | UInt64(byte)
        }
        self.rawValue = Int64(bitPattern: value)
    }

    /// The high 32 bits, as `pg_locks.classid` shows them.
    public var classID: UInt32 { UInt32(truncatingIfNeeded: UInt64(bitPattern: rawValue) >> 32) }

    /// The low 32 bits, as `pg_locks.objid` shows them.
    public var objectID: UInt32 { UInt32(truncatingIfNeeded: UInt64(bitPattern: rawValue)) }

    /// `advisory key <n>`.
    public var description: String { "advisory key \(rawValue)" }
}
