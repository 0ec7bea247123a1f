#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Creating, opening and removing segments (anonymous and named).
extension Segment {
    /// Longest accepted name, in UTF-8 bytes (NAME_MAX 255 less the "/interlock." prefix).
    static let maximumNameLength = 200

    /// Checks a lock name and returns its `shm_open` path.
    static func path(forName name: String) -> Result<String, InterlockError> {
        if name.isEmpty { return .failure(.invalidName(name, reason: "the name is empty")) }
        if name.utf8.count > maximumNameLength {
            return .failure(.invalidName(name, reason: "the name is \(name.utf8.count) bytes long; the limit is \(maximumNameLength)"))
        }
        if name.utf8.contains(UInt8(ascii: "/")) {
            return .failure(.invalidName(name, reason: "the name contains '/'; use a plain name such as \"myapp.db\""))
        }
        if name.utf8.contains(0) { return .failure(.invalidName(name, reason: "the name contains a NUL byte")) }
        // Control characters (a newline, an escape) would reach `inspect` output, logs
        // and command lines, where they can forge lines or move the cursor.
        if let control = name.unicodeScalars.first(where: { $0.properties.generalCategory == .control }) {
            let code = String(control.value, radix: 16, uppercase: true)
            return .failure(.invalidName(name, reason: "the name contains a control character (U+\(String(repeating: "0", count: max(0, 4 - code.count)))\(code)); use printable characters"))
        }
        if name == "." || name == ".." { return .failure(.invalidName(name, reason: "the name is reserved")) }
        return .success("/interlock." + name)
    }

    static func checkCapacity(_ capacity: Int) -> InterlockError? {
        capacity >= 1 && capacity <= StateWord.maximumCapacity ? nil : .invalidCapacity(capacity)
    }

    /// Maps a new anonymous shared segment, inherited by `fork()` children.
    static func anonymous(capacity: Int) -> Result<Segment, InterlockError> {
        if let error = checkCapacity(capacity) { return .failure(error) }
        let size = byteCount(capacity: capacity)
        switch Sys.mapShared(size: size, fd: nil) {
        case .failure(let e): return .failure(.systemCall("mmap", errno: e.rawValue))
        case .success(let p): return .success(initialise(p, size: size, capacity: capacity))
        }
    }

    /// Creates or opens a named segment as the options say.
    static func named(_ name: String, options: NamedLockOptions) -> Result<Segment, InterlockError> {
        if options.creation != .openOnly, let error = checkCapacity(options.capacity) { return .failure(error) }
        let path: String
        switch Segment.path(forName: name) {
        case .failure(let e): return .failure(e)
        case .success(let p): path = p
        }
        let mode: mode_t = options.shareWithGroup ? 0o660 : 0o600
        // A create can race with a remove: retry the open-or-create dance a few times.
        for _ in 0..<8 {
            if options.creation != .openOnly {
                switch Sys.sharedMemoryOpen(path, flags: O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode: mode) {
                case .success(let fd):
                    defer { Sys.close(fd) }
                    return create(fd: fd, name: name, path: path, mode: mode, capacity: options.capacity)
                case .failure(let e) where e == .exists:
                    if options.creation == .createOnly { return .failure(.alreadyExists(name: name)) }
                case .failure(let e):
                    return .failure(openError(e, call: "shm_open", name: name))
                }
            }
            switch Sys.sharedMemoryOpen(path, flags: O_RDWR | O_CLOEXEC, mode: 0) {
            case .success(let fd):
                defer { Sys.close(fd) }
                return open(fd: fd, name: name, options: options)
            case .failure(let e) where e == .noEntry:
                if options.creation == .openOnly { return .failure(.notFound(name: name)) }
                continue
            case .failure(let e):
                return .failure(openError(e, call: "shm_open", name: name))
            }
        }
        return .failure(.systemCall("shm_open (the lock was created and removed repeatedly meanwhile)", errno: EAGAIN))
    }

    private static func openError(_ e: Errno, call: String, name: String) -> InterlockError {
        // Something other than a segment in the lock's place: glibc's shm_open reports a
        // directory as EINVAL, O_NOFOLLOW a symbolic link as ELOOP. Say what is there.
        if e == .invalid || e == .isDirectory || e == .loop {
            let path = "/dev/shm/interlock." + name
            if case .success(let st) = Sys.linkStatus(path), st.st_mode & S_IFMT != S_IFREG {
                let found = switch st.st_mode & S_IFMT {
                case S_IFDIR: "a directory"
                case S_IFLNK: "a symbolic link"
                case S_IFIFO: "a named pipe"
                case S_IFSOCK: "a socket"
                default: "a device or special file"
                }
                return .notALock(name: name, path: path, found: found)
            }
        }
        if e == .accessDenied || e == .notPermitted { return .permissionDenied(name: name) }
        if e == .nameTooLong { return .invalidName(name, reason: "the name is too long for this system") }
        if e == .invalid { return .invalidName(name, reason: "the system rejected the name") }
        return .systemCall(call, errno: e.rawValue)
    }

    /// Sizes, maps and initialises a segment we just created with O_EXCL.
    private static func create(fd: Int32, name: String, path: String, mode: mode_t, capacity: Int) -> Result<Segment, InterlockError> {
        let size = byteCount(capacity: capacity)
        func fail(_ error: InterlockError) -> Result<Segment, InterlockError> {
            _ = Sys.sharedMemoryUnlink(path)  // never leave a half-made segment behind
            return .failure(error)
        }
        // shm_open applied the umask; set exactly the mode asked for.
        if let e = Sys.setMode(fd, mode) { return fail(.systemCall("fchmod", errno: e.rawValue)) }
        if let e = Sys.setSize(fd, size) { return fail(.systemCall("ftruncate", errno: e.rawValue)) }
        switch Sys.mapShared(size: size, fd: fd) {
        case .failure(let e): return fail(.systemCall("mmap", errno: e.rawValue))
        case .success(let p): return .success(initialise(p, size: size, capacity: capacity))
        }
    }

    /// Maps and validates an existing segment, waiting (bounded) for its creator to
    /// publish it. Writes nothing to it.
    private static func open(fd: Int32, name: String, options: NamedLockOptions) -> Result<Segment, InterlockError> {
        let (seconds, attoseconds) = options.readyTimeout.components
        let deadline = Sys.monotonicNanoseconds() + max(0, seconds) * 1_000_000_000 + max(0, attoseconds) / 1_000_000_000
        // Wait for the creator's ftruncate.
        var st: stat
        while true {
            switch Sys.fileStatus(fd) {
            case .failure(let e): return .failure(.systemCall("fstat", errno: e.rawValue))
            case .success(let s): st = s
            }
            if st.st_size > 0 { break }
            if Sys.monotonicNanoseconds() >= deadline { return .failure(.notReady(name: name)) }
            var pause = timespec(tv_sec: 0, tv_nsec: 1_000_000)
            nanosleep(&pause, nil)
        }
        let permissions = UInt32(st.st_mode) & 0o7777
        if !options.allowInsecurePermissions {
            let othersWrite = permissions & 0o002 != 0
            let groupWrite = permissions & 0o020 != 0 && !options.shareWithGroup
            let foreignOwner = st.st_uid != Sys.effectiveUserID() && !options.shareWithGroup
            if othersWrite || groupWrite || foreignOwner { return .failure(.insecureSegment(name: name, mode: permissions)) }
        }
        let size = Int(st.st_size)
        if size < headerSize {
            return .failure(.incompatibleSegment(name: name, reason: "it is \(size) bytes, smaller than a header (\(headerSize) bytes)"))
        }
        let base: UnsafeMutableRawPointer
        switch Sys.mapShared(size: size, fd: fd) {
        case .failure(let e): return .failure(.systemCall("mmap", errno: e.rawValue))
        case .success(let p): base = p
        }
        let segment = Segment(base: base, mappedSize: size)
        while segment.ready.pointee.load(ordering: .acquiring) != 1 {
            let m = segment.magicValue
            if m != 0 && m != magic { break }  // foreign data: report it below, do not wait
            let left = deadline - Sys.monotonicNanoseconds()
            if left <= 0 { Sys.unmap(base, size: size); return .failure(.notReady(name: name)) }
            Sys.futexWait(segment.ready, expected: 0, timeoutNanoseconds: min(left, 10_000_000), processShared: true)
        }
        if let reason = segment.validate() {
            Sys.unmap(base, size: size)
            return .failure(.incompatibleSegment(name: name, reason: reason))
        }
        return .success(segment)
    }

    /// Unmaps this process's view of the segment.
    func unmap() { Sys.unmap(base, size: mappedSize) }

    /// Unlinks a named segment.
    static func remove(name: String) -> Result<Void, InterlockError> {
        switch path(forName: name) {
        case .failure(let e): return .failure(e)
        case .success(let p):
            guard let e = Sys.sharedMemoryUnlink(p) else { return .success(()) }
            if e == .noEntry { return .failure(.notFound(name: name)) }
            return .failure(openError(e, call: "shm_unlink", name: name))
        }
    }
}
