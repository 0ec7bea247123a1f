#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A mapped segment and the process's `LockFile` it was mapped from. The file must stay
/// open while the segment is in use: it carries this process's liveness byte locks.
struct OpenSegment {
    let segment: Segment
    let file: LockFile

    /// Unmaps the segment and gives the file back. The caller holds no byte lock in it
    /// (it unregistered, or never registered).
    func close() {
        segment.unmap()
        file.release()
    }
}

/// Creating, opening and removing segments: anonymous (a memfd), named (a shared-memory
/// object) and at a path (a regular file).
extension Segment {
    /// Longest accepted name, in UTF-8 bytes (NAME_MAX 255 less the "/interlock." prefix).
    static let maximumNameLength = 200
    /// Longest accepted path, in UTF-8 bytes (PATH_MAX less the terminating NUL).
    static let maximumPathLength = 4095

    /// Checks a lock name and returns its `shm_open` path.
    static func path(forName name: String) -> Result<String, InterlockError> {
        if name.isEmpty { return .failure(.invalidName(name, reason: "the name is empty")) }
        if name.utf8.count > maximumNameLength {
            return .failure(.invalidName(name, reason: "the name is \(name.utf8.count) bytes long; the limit is \(maximumNameLength)"))
        }
        if name.utf8.contains(UInt8(ascii: "/")) {
            return .failure(.invalidName(name, reason: "the name contains '/'; use a plain name such as \"myapp.db\" (or SharedLock(path:) for a lock file)"))
        }
        if name.utf8.contains(0) { return .failure(.invalidName(name, reason: "the name contains a NUL byte")) }
        if let reason = unprintable(name) { return .failure(.invalidName(name, reason: "the name \(reason)")) }
        if name == "." || name == ".." { return .failure(.invalidName(name, reason: "the name is reserved")) }
        return .success("/interlock." + name)
    }

    /// Why a name or path would be unsafe to print, or nil. Control characters (a
    /// newline, an escape) and invisible format characters (a right-to-left override,
    /// zero-width or line and paragraph separators) would reach `inspect` output, logs and
    /// command lines, where they can forge lines, move the cursor or disguise a name.
    static func unprintable(_ text: String) -> String? {
        let bad = text.unicodeScalars.first { scalar in
            switch scalar.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator: return true
            default: return false
            }
        }
        guard let bad else { return nil }
        let code = String(bad.value, radix: 16, uppercase: true)
        let kind = bad.properties.generalCategory == .control ? "a control character" : "an invisible formatting character"
        return "contains \(kind) (U+\(String(repeating: "0", count: max(0, 4 - code.count)))\(code)); use printable characters"
    }

    static func checkCapacity(_ capacity: Int) -> InterlockError? {
        capacity >= 1 && capacity <= Control.maximumCapacity ? nil : .invalidCapacity(capacity)
    }

    // MARK: Anonymous (fork-shared)

    /// A new anonymous segment, inherited by `fork()` children: a sealed memfd, so that
    /// liveness byte locks have a file to live in.
    static func anonymous(capacity: Int, value: InitialValue? = nil) -> Result<OpenSegment, InterlockError> {
        if let error = checkCapacity(capacity) { return .failure(error) }
        let size = byteCount(capacity: capacity, value: value?.layout)
        let file: LockFile
        switch Sys.memoryFile(name: "interlock").flatMap(LockFile.adopt) {
        case .failure(let e): return .failure(.systemCall("memfd_create", errno: e.rawValue))
        case .success(let f): file = f
        }
        if let e = Sys.setSize(file.fd, size) ?? Sys.reserve(file.fd, size) ?? Sys.sealSize(file.fd) {
            file.release()
            return .failure(.systemCall("ftruncate", errno: e.rawValue))
        }
        switch Sys.mapShared(size: size, fd: file.fd) {
        case .failure(let e):
            file.release()
            return .failure(.systemCall("mmap", errno: e.rawValue))
        case .success(let p):
            return .success(OpenSegment(segment: initialise(p, size: size, capacity: capacity, fd: file.fd, value: value), file: file))
        }
    }

    // MARK: Named

    /// Creates or opens a named segment as the options say. With `value`, a created
    /// segment holds that shared value, and an opened one must hold one of its layout.
    static func named(_ name: String, options: NamedLockOptions, value: InitialValue? = nil) -> Result<OpenSegment, InterlockError> {
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
                    return create(fd: fd, label: name, mode: mode, capacity: options.capacity, value: value) {
                        _ = Sys.sharedMemoryUnlink(path)
                    }
                case .failure(let e) where e == .exists:
                    if options.creation == .createOnly { return .failure(.alreadyExists(name: name)) }
                case .failure(let e):
                    return .failure(openError(e, call: "shm_open", name: name))
                }
            }
            // glibc's shm_open opens /dev/shm/NAME (without following a link there).
            if let file = LockFile.existing("/dev/shm" + path, at: AT_FDCWD) {
                return open(file: file, label: name, options: options, expecting: value?.layout)
            }
            switch Sys.sharedMemoryOpen(path, flags: O_RDWR | O_CLOEXEC, mode: 0) {
            case .success(let fd):
                return open(fd: fd, label: name, options: options, expecting: value?.layout)
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
        if e == .invalid || e == .isDirectory || e == .symbolicLinkLoop {
            let path = "/dev/shm/interlock." + name
            if case .success(let st) = Sys.linkStatus(path, at: AT_FDCWD), st.st_mode & S_IFMT != S_IFREG {
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

    // MARK: Shared by every file-backed kind

    /// Sizes, maps and initialises a segment whose file we just created with O_EXCL.
    /// `discard` removes the half-made file on failure.
    static func create(
        fd: Int32, label: String, mode: mode_t, capacity: Int, value: InitialValue?, discard: () -> Void
    ) -> Result<OpenSegment, InterlockError> {
        let file: LockFile
        switch LockFile.adopt(fd) {
        case .failure(let e): discard(); return .failure(.systemCall("fstat", errno: e.rawValue))
        case .success(let f): file = f
        }
        let size = byteCount(capacity: capacity, value: value?.layout)
        func fail(_ error: InterlockError) -> Result<OpenSegment, InterlockError> {
            discard()  // never leave a half-made lock behind
            file.release()
            return .failure(error)
        }
        if let error = checkFileSystem(file.fd, label: label) { return fail(error) }
        // The creating call applied the umask; set exactly the mode asked for.
        if let e = Sys.setMode(file.fd, mode) { return fail(.systemCall("fchmod", errno: e.rawValue)) }
        if let e = Sys.setSize(file.fd, size) { return fail(.systemCall("ftruncate", errno: e.rawValue)) }
        if let e = Sys.reserve(file.fd, size) {
            return fail(.systemCall("posix_fallocate (no room for the lock on its file system)", errno: e.rawValue))
        }
        switch Sys.mapShared(size: size, fd: file.fd) {
        case .failure(let e): return fail(.systemCall("mmap", errno: e.rawValue))
        case .success(let p):
            return .success(OpenSegment(segment: initialise(p, size: size, capacity: capacity, fd: file.fd, value: value), file: file))
        }
    }

    /// Maps and validates an existing segment's file, waiting (bounded) for its creator
    /// to publish it. Writes nothing to it. With `expecting`, the segment must hold a
    /// shared value of that layout (otherwise it is `incompatibleSegment`).
    static func open(fd: Int32, label: String, options: NamedLockOptions,
                     expecting: ValueLayout? = nil) -> Result<OpenSegment, InterlockError> {
        switch LockFile.adopt(fd) {
        case .failure(let e): return .failure(.systemCall("fstat", errno: e.rawValue))
        case .success(let file): return open(file: file, label: label, options: options, expecting: expecting)
        }
    }

    /// Maps and validates an existing segment through a file this process has open
    /// (one use, given back on failure).
    static func open(file: LockFile, label: String, options: NamedLockOptions,
                     expecting: ValueLayout? = nil) -> Result<OpenSegment, InterlockError> {
        switch mapExisting(file: file, label: label, options: options, expecting: expecting) {
        case .failure(let e): file.release(); return .failure(e)
        case .success(let segment): return .success(OpenSegment(segment: segment, file: file))
        }
    }

    private static func mapExisting(file: LockFile, label: String, options: NamedLockOptions,
                                    expecting: ValueLayout?) -> Result<Segment, InterlockError> {
        let deadline = SharedLock.deadline(after: options.readyTimeout)
        // Wait for the creator's ftruncate.
        var st: stat
        while true {
            switch Sys.fileStatus(file.fd) {
            case .failure(let e): return .failure(.systemCall("fstat", errno: e.rawValue))
            case .success(let s): st = s
            }
            if st.st_mode & S_IFMT != S_IFREG {
                if !label.contains("/") {  // a named lock: say what is in its place
                    return .failure(.notALock(name: label, path: "/dev/shm/interlock." + label,
                                              found: st.st_mode & S_IFMT == S_IFIFO ? "a named pipe" : "a special file"))
                }
                return .failure(.incompatibleSegment(name: label, reason: "it is not a regular file"))
            }
            // Before any wait: a file on a file system we refuse is refused at once.
            if let error = checkFileSystem(file.fd, label: label) { return .failure(error) }
            if st.st_size > 0 { break }
            if Sys.monotonicNanoseconds() >= deadline { return .failure(.notReady(name: label)) }
            var pause = timespec(tv_sec: 0, tv_nsec: 1_000_000)
            nanosleep(&pause, nil)
        }
        let permissions = UInt32(st.st_mode) & 0o7777
        if !options.allowInsecurePermissions {
            let othersWrite = permissions & 0o002 != 0
            let groupWrite = permissions & 0o020 != 0 && !options.shareWithGroup
            // Another user's file is accepted only when sharing with a group we are in.
            let foreignOwner = st.st_uid != Sys.effectiveUserID()
                && !(options.shareWithGroup && Sys.isMember(ofGroup: st.st_gid))
            if othersWrite || groupWrite || foreignOwner { return .failure(.insecureSegment(name: label, mode: permissions)) }
        }
        guard st.st_size >= headerSize, st.st_size <= Int64(maximumSize) else {
            return .failure(.incompatibleSegment(name: label, reason: "it is \(st.st_size) bytes; a lock is a header (\(headerSize) bytes) plus its table and shared value, at most \(maximumSize) bytes"))
        }
        let size = Int(st.st_size)
        let base: UnsafeMutableRawPointer
        switch Sys.mapShared(size: size, fd: file.fd) {
        case .failure(let e): return .failure(.systemCall("mmap", errno: e.rawValue))
        case .success(let p): base = p
        }
        let ready = (base + 12).assumingMemoryBound(to: Atomic<UInt32>.self)
        while ready.pointee.load(ordering: .acquiring) != 1 {
            let m = base.load(as: UInt64.self)
            if m != 0 && m != magic { break }  // foreign data: report it below, do not wait
            let left = deadline - Sys.monotonicNanoseconds()
            if left <= 0 { Sys.unmap(base, size: size); return .failure(.notReady(name: label)) }
            Sys.futexWait(ready, expected: 0, timeoutNanoseconds: min(left, 10_000_000), processShared: true)
        }
        // From here on the capacity is the one read now, once; see `Segment` ("Trust").
        let capacity = Int(base.load(fromByteOffset: 24, as: UInt32.self))
        let segment = Segment(base: base, mappedSize: size, capacity: capacity, fd: file.fd)
        if let reason = segment.validate() {
            Sys.unmap(base, size: size)
            return .failure(.incompatibleSegment(name: label, reason: reason))
        }
        // The value fields, read once (validated just now by `validate` as well).
        guard case .success(let value) = segment.decodeValue() else {
            Sys.unmap(base, size: size)
            return .failure(.incompatibleSegment(name: label, reason: "its shared value fields changed while it was being opened"))
        }
        guard let expecting else { return .success(segment) }  // a plain SharedLock ignores any value
        let problem: String? = if let value { value.layout.mismatch(expecting: expecting) }
            else { "it holds no shared value (it was made by SharedLock, not SharedLocked)" }
        if let problem {
            Sys.unmap(base, size: size)
            return .failure(.incompatibleSegment(name: label, reason: problem))
        }
        return .success(Segment(base: base, mappedSize: size, capacity: capacity, fd: file.fd, value: value))
    }

    /// Local file systems, on which POSIX record locks and shared mappings are the
    /// kernel's own: a lock's file must be on one of these (by `statfs` magic number).
    /// Network and user-space file systems (NFS, SMB, 9p, FUSE, virtiofs, …) are
    /// refused: there a holder's death, or even its lock, may not be seen by all.
    static let localFileSystems: [Int64: String] = [
        0xEF53: "ext2/3/4", 0x5846_5342: "xfs", 0x9123_683E: "btrfs", 0x0102_1994: "tmpfs",
        0x8584_58F6: "ramfs", 0x9584_58F6: "hugetlbfs", 0x794C_7630: "overlayfs", 0xF2F5_2010: "f2fs",
        0x2FC1_2FC1: "zfs", 0xCA45_1A4E: "bcachefs", 0x3153_464A: "jfs", 0x5265_4973: "reiserfs",
        0x3434: "nilfs2", 0x4D44: "vfat", 0x2011_BAB0: "exfat",
    ]

    /// Refuses a file that is not on a known local file system (see `localFileSystems`).
    static func checkFileSystem(_ fd: Int32, label: String) -> InterlockError? {
        let type = Sys.fileSystemType(fd)
        if localFileSystems[type] != nil { return nil }
        let known: [Int64: String] = [
            0x6969: "NFS", 0xFF53_4D42: "CIFS", 0x517B: "SMB", 0xFE53_4D42: "SMB2", 0x0102_1997: "9P",
            0x00C3_6400: "Ceph", 0x0BD0_0BD0: "Lustre", 0x6573_5546: "FUSE", 0x6A65_6A62: "virtiofs",
        ]
        return .unsupportedFileSystem(path: label, fileSystem: known[type] ?? "a file system of type 0x\(String(type, radix: 16))")
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
