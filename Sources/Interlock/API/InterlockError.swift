/// What went wrong in an Interlock call, and what to do about it.
///
/// Environmental problems (a missing segment, permissions, a full holder table, a
/// timeout) are errors. Misuse of a lock — unlocking what you do not hold, re-entering
/// exclusive mode — is a programmer error and traps with a message instead.
public enum InterlockError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A timed acquisition reached its deadline without getting the lock. Nothing was
    /// acquired and no trace was left.
    case timedOut
    /// The lock name cannot be used: `reason` says why.
    case invalidName(String, reason: String)
    /// No named lock exists with this name (and the options said not to create one).
    case notFound(name: String)
    /// A named lock with this name exists already (and the options asked to create it).
    case alreadyExists(name: String)
    /// The operating system refused access to the named lock's segment.
    case permissionDenied(name: String)
    /// The segment exists but is not a lock this version of Interlock can use.
    case incompatibleSegment(name: String, reason: String)
    /// The segment can be written by other users or groups than the caller asked for.
    case insecureSegment(name: String, mode: UInt32)
    /// A holder-table capacity outside 1…4095 was asked for.
    case invalidCapacity(Int)
    /// Every entry of the holder table belongs to a live process.
    case holderTableFull(name: String?, capacity: Int)
    /// The segment exists but its creator never finished initialising it.
    case notReady(name: String)
    /// `remove(named:)` refused: live processes still use the lock.
    case liveHolders(name: String, count: Int)
    /// A system call failed unexpectedly.
    case systemCall(String, errno: Int32)
    /// The lock path cannot be used: `reason` says why (for example a symbolic link or a
    /// directory in the lock file's place, or a directory that does not exist).
    case invalidPath(String, reason: String)
    /// The lock file's directory lets other users replace the lock file: it is writable
    /// by others (or by the group) without the sticky bit, or owned by another user.
    case insecureDirectory(path: String, mode: UInt32, owner: UInt32)
    /// The lock's file is on a file system where record locks and shared mappings are
    /// not known to behave (a network or user-space file system), so a holder's death
    /// could not be told.
    case unsupportedFileSystem(path: String, fileSystem: String)
    /// Another program holds an `fcntl` record lock on the lock's file (pid as seen
    /// here, 0 if not visible). Interlock's liveness is the file's byte locks, so while
    /// that lock is held no process can register and no dead holder can be told apart.
    case foreignRecordLock(name: String?, pid: Int32)
    /// Something other than a lock segment (`found`: "a directory", "a symbolic link", …)
    /// is at the named lock's path.
    case notALock(name: String, path: String, found: String)
    /// A shared value (``SharedLocked`` or ``SharedLockedArray`` in a process scope)
    /// cannot be kept in shared memory: a zero element count, an element type with no
    /// bytes, an alignment above a page, or more than 1 GiB (including a count whose size
    /// overflows). `reason` says which.
    case invalidSharedValue(reason: String)

    /// A sentence that says what happened and what to do.
    public var description: String {
        switch self {
        case .timedOut:
            return "timed out waiting for the lock; nothing was acquired (retry, or use a longer timeout)"
        case .invalidName(let name, let reason):
            return "invalid lock name \"\(name)\": \(reason)"
        case .notFound(let name):
            return "no lock named \"\(name)\" exists; create it first (NamedLockOptions.creation = .openOrCreate)"
        case .alreadyExists(let name):
            return "a lock named \"\(name)\" already exists; open it instead, or remove it first (interlock remove \(name))"
        case .permissionDenied(let name):
            return "permission denied for lock \"\(name)\"; it belongs to another user, or was not shared with your group"
        case .incompatibleSegment(let name, let reason):
            if name.contains("/") {
                return "the file \(name) cannot be used as a lock: \(reason); if it is a stale lock file no program uses, "
                    + "remove it (interlock remove \(name) --force); Interlock never deletes a file that is not a lock"
            }
            return "the segment of lock \"\(name)\" cannot be used: \(reason); remove it (interlock remove \(name) --force) if no program uses it"
        case .insecureSegment(let name, let mode):
            return "lock \"\(name)\" (mode \(String(mode & 0o777, radix: 8))) can be written by other users than you asked for, or belongs to another user; "
                + "remove and recreate it, or set NamedLockOptions.allowInsecurePermissions to accept it"
        case .invalidCapacity(let capacity):
            return "invalid holder-table capacity \(capacity): choose 1 to 4095 processes"
        case .holderTableFull(let name, let capacity):
            return "the holder table\(name.map { " of lock \"\($0)\"" } ?? "") is full: its \(capacity) entries are in use by live "
                + "processes (one per process and lock handle); create the lock with a larger capacity"
        case .notReady(let name):
            return "lock \"\(name)\" was never initialised by its creator (did it crash?); remove it (interlock remove \(name) --force) and retry"
        case .liveHolders(let name, let count):
            return "lock \"\(name)\" is in use by \(count) live process\(count == 1 ? "" : "es"); stop them first, or remove with force"
        case .systemCall(let call, let errno):
            return "\(call) failed: \(Errno(errno).description) (errno \(errno))"
        case .invalidPath(let path, let reason):
            return "invalid lock path \"\(path)\": \(reason)"
        case .insecureDirectory(let path, let mode, let owner):
            return "the directory \(path) (mode \(String(mode, radix: 8)), owner uid \(owner)) lets other users replace the lock file; "
                + "use a directory only you (or root) can write, or set NamedLockOptions.allowInsecurePermissions to accept it"
        case .foreignRecordLock(let name, let pid):
            return "another program (pid \(pid == 0 ? "not visible here" : String(pid))) holds an fcntl record lock on the file of "
                + "\(name.map { "lock \"\($0)\"" } ?? "this lock"); Interlock keeps its own byte locks there: do not lock the lock file yourself (lock another file)"
        case .unsupportedFileSystem(let path, let fileSystem):
            return "\(path) is on \(fileSystem), not a local file system: its record locks cannot be trusted to tell whether a holder died; "
                + "put the lock on a local file system (ext4, xfs, btrfs, tmpfs, overlayfs, …)"
        case .notALock(let name, let path, let found):
            return "\(path), the place of lock \"\(name)\", is \(found), not a lock segment; "
                + "move it away (or choose another name) and retry"
        case .invalidSharedValue(let reason):
            return "cannot keep this value in shared memory: \(reason)"
        }
    }
}
