#if canImport(Glibc)
import Glibc
#endif

/// Locks at a path: the segment is a regular file anywhere in the file system (next to
/// the data it guards, or on a volume that several containers mount).
///
/// Creation and opening are race-free and refuse what others could tamper with:
/// - the directory is opened once and everything else is done relative to it
///   (`openat`), so a directory swapped in meanwhile cannot redirect us;
/// - the last component is opened with `O_NOFOLLOW` (a symbolic link planted in the
///   lock's place is refused) and `O_NONBLOCK` (a FIFO there cannot hang us), and must
///   be a regular file;
/// - the file is created `O_CREAT | O_EXCL` with mode `0600` (`0660` when shared with
///   the group), and published like a named lock;
/// - unless the caller opts in, the directory must not be writable by users who could
///   replace the file: writable by others (or by the group, unless shared with it)
///   only with the sticky bit, and owned by the caller or root.
extension Segment {
    /// A lock path split into the directory to open and the file name inside it.
    struct LockPath {
        let path: String
        let directory: String
        let fileName: String

        static func parse(_ path: String) -> Result<LockPath, InterlockError> {
            func invalid(_ reason: String) -> Result<LockPath, InterlockError> {
                .failure(.invalidPath(path, reason: reason))
            }
            if path.isEmpty { return invalid("the path is empty") }
            if path.utf8.count > maximumPathLength {
                return invalid("the path is \(path.utf8.count) bytes long; the limit is \(maximumPathLength)")
            }
            if path.utf8.contains(0) { return invalid("the path contains a NUL byte") }
            if let reason = unprintable(path) { return invalid("the path \(reason)") }
            let bytes = Array(path.utf8)
            guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else {
                return .success(LockPath(path: path, directory: ".", fileName: path))
            }
            let name = String(decoding: bytes[(slash + 1)...], as: UTF8.self)
            let directory = slash == 0 ? "/" : String(decoding: bytes[..<slash], as: UTF8.self)
            return .success(LockPath(path: path, directory: directory, fileName: name))
        }

        var nameProblem: String? {
            if fileName.isEmpty { return "the path ends with '/'; name a file, such as \"\(path)app.lock\"" }
            if fileName == "." || fileName == ".." { return "the path must name a file, not \"\(fileName)\"" }
            if fileName.utf8.count > 255 { return "the file name is longer than 255 bytes" }
            return nil
        }
    }

    /// Creates or opens the lock file at `path` as the options say.
    static func atPath(_ path: String, options: NamedLockOptions, value: InitialValue? = nil) -> Result<OpenSegment, InterlockError> {
        if options.creation != .openOnly, let error = checkCapacity(options.capacity) { return .failure(error) }
        let lockPath: LockPath
        switch LockPath.parse(path) {
        case .failure(let e): return .failure(e)
        case .success(let p): lockPath = p
        }
        if let problem = lockPath.nameProblem { return .failure(.invalidPath(path, reason: problem)) }
        let directory: Int32
        switch openDirectory(lockPath, options: options) {
        case .failure(let e): return .failure(e)
        case .success(let fd): directory = fd
        }
        defer { Sys.close(directory) }  // a directory, never a lock file: closing it drops no record lock
        let mode: mode_t = options.shareWithGroup ? 0o660 : 0o600
        let flags = O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
        for _ in 0..<8 {
            if options.creation != .openOnly {
                switch Sys.open(lockPath.fileName, at: directory, flags: flags | O_CREAT | O_EXCL, mode: mode) {
                case .success(let fd):
                    return create(fd: fd, label: path, mode: mode, capacity: options.capacity, value: value) {
                        _ = Sys.unlink(lockPath.fileName, at: directory)
                    }
                case .failure(let e) where e == .exists:
                    if options.creation == .createOnly {
                        if let problem = whatIsThere(lockPath, directory: directory) { return .failure(.invalidPath(path, reason: problem)) }
                        return .failure(.alreadyExists(name: path))
                    }
                case .failure(let e):
                    return .failure(pathError(e, lockPath, directory: directory))
                }
            }
            if let file = LockFile.existing(lockPath.fileName, at: directory) {
                return open(file: file, label: path, options: options, expecting: value?.layout)
            }
            switch Sys.open(lockPath.fileName, at: directory, flags: flags) {
            case .success(let fd):
                if case .success(let st) = Sys.fileStatus(fd), st.st_mode & S_IFMT != S_IFREG {
                    Sys.close(fd)  // not a regular file, so never a lock file of ours: no record lock to lose
                    return .failure(.invalidPath(path, reason: whatIsThere(lockPath, directory: directory) ?? "it is not a regular file"))
                }
                return open(fd: fd, label: path, options: options, expecting: value?.layout)
            case .failure(let e) where e == .noEntry:
                if options.creation == .openOnly { return .failure(.notFound(name: path)) }
                continue
            case .failure(let e):
                return .failure(pathError(e, lockPath, directory: directory))
            }
        }
        return .failure(.systemCall("open (the lock file was created and removed repeatedly meanwhile)", errno: EAGAIN))
    }

    /// Opens the lock's directory and checks who could replace files in it.
    private static func openDirectory(_ lockPath: LockPath, options: NamedLockOptions) -> Result<Int32, InterlockError> {
        let path = lockPath.path
        let fd: Int32
        switch Sys.open(lockPath.directory, flags: O_RDONLY | O_DIRECTORY | O_CLOEXEC) {
        case .success(let d): fd = d
        case .failure(let e):
            if e == .noEntry { return .failure(.invalidPath(path, reason: "its directory \(lockPath.directory) does not exist")) }
            if e == .notDirectory { return .failure(.invalidPath(path, reason: "\(lockPath.directory) is not a directory")) }
            if e == .accessDenied || e == .notPermitted { return .failure(.permissionDenied(name: path)) }
            return .failure(.systemCall("open \(lockPath.directory)", errno: e.rawValue))
        }
        guard !options.allowInsecurePermissions else { return .success(fd) }
        let st: stat
        switch Sys.fileStatus(fd) {
        case .failure(let e): Sys.close(fd); return .failure(.systemCall("fstat", errno: e.rawValue))
        case .success(let s): st = s
        }
        let permissions = UInt32(st.st_mode) & 0o7777
        let sticky = permissions & UInt32(S_ISVTX) != 0
        let othersWrite = permissions & 0o002 != 0 && !sticky
        let groupWrite = permissions & 0o020 != 0 && !sticky && !options.shareWithGroup
        let foreignOwner = st.st_uid != Sys.effectiveUserID() && st.st_uid != 0
        if othersWrite || groupWrite || foreignOwner {
            Sys.close(fd)
            return .failure(.insecureDirectory(path: lockPath.directory, mode: permissions, owner: st.st_uid))
        }
        return .success(fd)
    }

    /// Explains a failed open of the lock file.
    private static func pathError(_ e: Errno, _ lockPath: LockPath, directory: Int32) -> InterlockError {
        let path = lockPath.path
        if e == .symbolicLinkLoop || e == .isDirectory || e == .notDirectory,
           let problem = whatIsThere(lockPath, directory: directory) {
            return .invalidPath(path, reason: problem)
        }
        if e == .accessDenied || e == .notPermitted { return .permissionDenied(name: path) }
        if e == .nameTooLong { return .invalidPath(path, reason: "the path is too long for this system") }
        return .systemCall("open \(path)", errno: e.rawValue)
    }

    /// What stands in the lock file's place, if it is not a regular file.
    private static func whatIsThere(_ lockPath: LockPath, directory: Int32) -> String? {
        guard case .success(let st) = Sys.linkStatus(lockPath.fileName, at: directory) else { return nil }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return nil
        case S_IFLNK: return "a symbolic link is in the lock file's place; Interlock does not follow links there"
        case S_IFDIR: return "a directory is in the lock file's place"
        case S_IFIFO: return "a FIFO is in the lock file's place"
        case S_IFSOCK: return "a socket is in the lock file's place"
        default: return "a device file is in the lock file's place"
        }
    }

    /// Whether a file is an Interlock lock, or one its creator did not finish: empty (not
    /// sized yet), or of a lock's size (whole pages) with the magic number (at most the
    /// largest lock with the largest shared value, `maximumSize`) or, before publication,
    /// a zero header (at most the largest lock *without* a value: a zero-filled file of
    /// other data, say a disk image, can be of any larger size, so a half-made lock with a
    /// large value is left for the user to delete). Anything else is somebody's data.
    private static func isLockFile(_ fd: Int32, size: Int) -> Bool {
        if size == 0 { return true }
        guard size % Sys.pageSize == 0, size <= maximumSize else { return false }
        var header = [UInt8](repeating: 0xFF, count: headerSize)
        let n = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, headerSize, 0) }
        guard n == headerSize else { return false }
        let head = header.withUnsafeBytes { $0.load(as: UInt64.self) }
        if head == magic { return true }
        return size <= byteCount(capacity: Control.maximumCapacity) && header.allSatisfy { $0 == 0 }
    }

    /// Unlinks the lock file at `path` — only if it is a regular file that is an Interlock
    /// lock (or a half-made one: empty, or not yet published); never a file of other data.
    static func removePath(_ path: String) -> Result<Void, InterlockError> {
        let lockPath: LockPath
        switch LockPath.parse(path) {
        case .failure(let e): return .failure(e)
        case .success(let p): lockPath = p
        }
        if let problem = lockPath.nameProblem { return .failure(.invalidPath(path, reason: problem)) }
        var options = NamedLockOptions()
        options.allowInsecurePermissions = true
        let directory: Int32
        switch openDirectory(lockPath, options: options) {
        case .failure(let e): return .failure(e)
        case .success(let fd): directory = fd
        }
        defer { Sys.close(directory) }
        let fd: Int32
        switch Sys.open(lockPath.fileName, at: directory, flags: O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) {
        case .failure(let e) where e == .noEntry: return .failure(.notFound(name: path))
        case .failure(let e): return .failure(pathError(e, lockPath, directory: directory))
        case .success(let d): fd = d
        }
        // Only looked at, never used for record locks: a read-only descriptor must not
        // become the one this process's handles lock through.
        let problem: InterlockError? = LockFile.withTransient(fd) { fd in
            guard case .success(let st) = Sys.fileStatus(fd), st.st_mode & S_IFMT == S_IFREG else {
                return .invalidPath(path, reason: whatIsThere(lockPath, directory: directory) ?? "it is not a regular file")
            }
            return isLockFile(fd, size: Int(st.st_size)) ? nil
                : .incompatibleSegment(name: path, reason: "it is not an Interlock lock file, so it was not removed")
        }
        if let problem { return .failure(problem) }
        if let e = Sys.unlink(lockPath.fileName, at: directory) {
            if e == .noEntry { return .failure(.notFound(name: path)) }
            return .failure(pathError(e, lockPath, directory: directory))
        }
        return .success(())
    }
}
