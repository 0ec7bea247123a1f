// The one door to the operating system.
//
// Every libc call Interlock makes goes through `Sys`. Failures come back as
// `Errno` values; EINTR is retried here and nowhere else. Only the public layer
// turns errors into `InterlockError`s or traps.

#if canImport(Glibc)
import Glibc
#endif
import CInterlock
import Synchronization

/// A C `errno` value with the names Interlock needs.
@usableFromInline
struct Errno: Error, Equatable, Sendable {
    @usableFromInline let rawValue: Int32
    @inlinable init(_ rawValue: Int32) { self.rawValue = rawValue }

    static var current: Errno { Errno(errno) }

    static let interrupted = Errno(EINTR)
    static let exists = Errno(EEXIST)
    static let noEntry = Errno(ENOENT)
    static let accessDenied = Errno(EACCES)
    static let notPermitted = Errno(EPERM)
    static let invalid = Errno(EINVAL)
    static let nameTooLong = Errno(ENAMETOOLONG)
    static let wouldBlock = Errno(EAGAIN)
    static let isDirectory = Errno(EISDIR)
    static let notDirectory = Errno(ENOTDIR)
    static let symbolicLinkLoop = Errno(ELOOP)

    /// The C library's description of this errno.
    var description: String { String(cString: strerror(rawValue)) }
}

/// Internal system-call wrappers. Each returns an `Errno` on failure, never throws a
/// public error, and never retries except on EINTR.
@usableFromInline
enum Sys {
    // MARK: Clock

    /// Nanoseconds on CLOCK_MONOTONIC (the clock every deadline in Interlock uses).
    @usableFromInline
    static func monotonicNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }

    /// A `timespec` for an absolute CLOCK_MONOTONIC instant in nanoseconds.
    @usableFromInline
    static func makeTimespec(nanoseconds ns: Int64) -> timespec {
        let clamped = max(ns, 0)
        return timespec(tv_sec: Int(clamped / 1_000_000_000), tv_nsec: Int(clamped % 1_000_000_000))
    }

    // MARK: Futex

    /// Sleeps while `*word == expected`, at most `timeout` nanoseconds (nil: no limit).
    /// Returns normally on wake, on a value mismatch, on timeout and on a signal:
    /// callers always re-check their condition. `processShared` selects the shared
    /// futex operations (required for memory shared between processes).
    ///
    /// Invariant: `word` points at a live, 4-byte aligned `Atomic<UInt32>`.
    @usableFromInline
    static func futexWait(
        _ word: UnsafeMutablePointer<Atomic<UInt32>>, expected: UInt32,
        timeoutNanoseconds: Int64?, processShared: Bool
    ) {
        let raw = UnsafeMutableRawPointer(word).assumingMemoryBound(to: UInt32.self)
        if let timeoutNanoseconds {
            var ts = makeTimespec(nanoseconds: timeoutNanoseconds)
            _ = cinterlock_futex_wait(raw, expected, &ts, processShared ? 1 : 0)
        } else {
            _ = cinterlock_futex_wait(raw, expected, nil, processShared ? 1 : 0)
        }
    }

    /// Wakes every waiter sleeping on `word`.
    @usableFromInline
    static func futexWakeAll(_ word: UnsafeMutablePointer<Atomic<UInt32>>, processShared: Bool) {
        let raw = UnsafeMutableRawPointer(word).assumingMemoryBound(to: UInt32.self)
        _ = cinterlock_futex_wake(raw, Int32.max, processShared ? 1 : 0)
    }

    /// Sleeps on `word` while it holds `expected`, tagged with `bitset` (see
    /// `cinterlock_futex_wait_bitset`), until woken, `deadline` (absolute monotonic
    /// nanoseconds; nil: none), a signal, or a spurious wake-up: callers re-check.
    ///
    /// Invariant: `word` points at a live, 4-byte aligned `Atomic<UInt32>`.
    @usableFromInline
    static func futexWait(
        _ word: UnsafeMutablePointer<Atomic<UInt32>>, expected: UInt32, bitset: UInt32,
        deadline: Int64?, processShared: Bool
    ) {
        let raw = UnsafeMutableRawPointer(word).assumingMemoryBound(to: UInt32.self)
        if let deadline {
            var ts = makeTimespec(nanoseconds: deadline)
            _ = cinterlock_futex_wait_bitset(raw, expected, &ts, bitset, processShared ? 1 : 0)
        } else {
            _ = cinterlock_futex_wait_bitset(raw, expected, nil, bitset, processShared ? 1 : 0)
        }
    }

    /// Wakes up to `count` waiters on `word` whose bitset meets `bitset`; returns how many.
    @usableFromInline @discardableResult
    static func futexWake(
        _ word: UnsafeMutablePointer<Atomic<UInt32>>, count: Int32, bitset: UInt32, processShared: Bool
    ) -> Int32 {
        let raw = UnsafeMutableRawPointer(word).assumingMemoryBound(to: UInt32.self)
        return cinterlock_futex_wake_bitset(raw, count, bitset, processShared ? 1 : 0)
    }

    /// A short busy-wait hint to the CPU (PAUSE on x86).
    @inlinable
    static func spinHint() {
        _ = cinterlock_cpu_relax()
    }

    // MARK: Processes

    static func effectiveUserID() -> UInt32 { geteuid() }

    /// Whether the calling process is in group `gid` (effective or supplementary).
    static func isMember(ofGroup gid: UInt32) -> Bool {
        if getegid() == gid { return true }
        let count = getgroups(0, nil)
        guard count > 0 else { return false }
        var groups = [gid_t](repeating: 0, count: Int(count))
        let n = getgroups(count, &groups)
        return n > 0 && groups[..<Int(n)].contains(gid)
    }

    // MARK: Shared memory

    /// `shm_open`, retrying EINTR.
    static func sharedMemoryOpen(_ path: String, flags: Int32, mode: mode_t) -> Result<Int32, Errno> {
        while true {
            let fd = shm_open(path, flags, mode)
            if fd >= 0 { return .success(fd) }
            let e = Errno.current
            if e != .interrupted { return .failure(e) }
        }
    }

    static func sharedMemoryUnlink(_ path: String) -> Errno? {
        shm_unlink(path) == 0 ? nil : Errno.current
    }

    static func setSize(_ fd: Int32, _ size: Int) -> Errno? {
        while true {
            if ftruncate(fd, off_t(size)) == 0 { return nil }
            let e = Errno.current
            if e != .interrupted { return e }
        }
    }

    /// Allocates the file's first `size` bytes (`posix_fallocate`), so that writing the
    /// mapping cannot fail later with `SIGBUS` on a full file system (tmpfs, `/dev/shm`).
    static func reserve(_ fd: Int32, _ size: Int) -> Errno? {
        while true {
            let e = posix_fallocate(fd, 0, off_t(size))
            if e == 0 { return nil }
            if e != EINTR { return Errno(e) }
        }
    }

    static func setMode(_ fd: Int32, _ mode: mode_t) -> Errno? {
        fchmod(fd, mode) == 0 ? nil : Errno.current
    }

    static func fileStatus(_ fd: Int32) -> Result<stat, Errno> {
        var st = stat()
        return fstat(fd, &st) == 0 ? .success(st) : .failure(Errno.current)
    }

    static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// `open`/`openat` (relative to `directory`, or the working directory when nil),
    /// retrying EINTR.
    static func open(_ path: String, at directory: Int32? = nil, flags: Int32, mode: mode_t = 0) -> Result<Int32, Errno> {
        while true {
            let fd = openat(directory ?? AT_FDCWD, path, flags, mode)
            if fd >= 0 { return .success(fd) }
            let e = Errno.current
            if e != .interrupted { return .failure(e) }
        }
    }

    /// `fstatat` without following a symbolic link in the last component.
    static func linkStatus(_ path: String, at directory: Int32) -> Result<stat, Errno> {
        var st = stat()
        return fstatat(directory, path, &st, AT_SYMLINK_NOFOLLOW) == 0 ? .success(st) : .failure(Errno.current)
    }

    /// `unlinkat` of a file (not a directory).
    static func unlink(_ path: String, at directory: Int32) -> Errno? {
        unlinkat(directory, path, 0) == 0 ? nil : Errno.current
    }

    /// A new anonymous memory file (`memfd_create`, close-on-exec, sealable).
    static func memoryFile(name: String) -> Result<Int32, Errno> {
        let fd = cinterlock_memfd_create(name)
        return fd >= 0 ? .success(fd) : .failure(Errno(-fd))
    }

    /// Seals a memory file against resizing (see `cinterlock_memfd_seal`).
    static func sealSize(_ fd: Int32) -> Errno? {
        let e = cinterlock_memfd_seal(fd)
        return e == 0 ? nil : Errno(e)
    }

    /// What the kernel calls the file behind `fd` (`/proc/self/fd/N`), for messages.
    static func pathOfDescriptor(_ fd: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: 4097)
        let n = readlink("/proc/self/fd/\(fd)", &buffer, 4096)
        guard n > 0 else { return "(descriptor \(fd))" }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The file-system magic number (`statfs.f_type`) of `fd`, 0 if unknown.
    static func fileSystemType(_ fd: Int32) -> Int64 { cinterlock_filesystem_type(fd) }

    // MARK: Record locks (liveness bytes)

    /// Takes this process's record lock on byte `offset` of `fd`. Returns false if
    /// another process holds it. Traps on any other failure: the descriptor is ours and
    /// valid, so EBADF or EINVAL would be a bug, and ENOLCK means the kernel cannot
    /// track the liveness on which crash recovery depends.
    static func lockByte(_ fd: Int32, at offset: Int) -> Bool {
        let e = cinterlock_lock_byte(fd, Int64(offset))
        if e == 0 { return true }
        if e == EAGAIN || e == EACCES { return false }
        fatalError("Interlock: fcntl(F_SETLK) on a lock file failed: \(Errno(e).description) (errno \(e))")
    }

    /// Releases this process's record lock on byte `offset` of `fd`.
    static func unlockByte(_ fd: Int32, at offset: Int) {
        _ = cinterlock_unlock_byte(fd, Int64(offset))
    }

    /// A record lock found on a byte: its holder's pid as this process's pid namespace
    /// sees it (0 when it cannot see it), and whether the lock covers exactly that byte,
    /// as Interlock's liveness locks do (false: some other program locked the file).
    struct ByteLock {
        var pid: Int32
        var isExact: Bool
    }

    /// Whether any process (this one included) holds a record lock on byte `offset` of
    /// `fd`: nil when free. Traps if the kernel cannot answer (it lacks F_OFD_GETLK,
    /// Linux 3.15): liveness would be unknowable.
    static func byteLockHolder(_ fd: Int32, at offset: Int) -> ByteLock? {
        var holder: Int32 = 0
        let r = cinterlock_byte_lock_holder(fd, Int64(offset), &holder)
        if r == 1 || r == 2 { return ByteLock(pid: max(holder, 0), isExact: r == 1) }
        if r == 0 { return nil }
        fatalError("Interlock: fcntl(F_OFD_GETLK) on a lock file failed: \(Errno(-r).description) (errno \(-r)); Linux 3.15 or later is required")
    }

    /// Maps `size` bytes shared: of `fd`, or anonymous memory (inherited by fork children) when `fd` is nil.
    static func mapShared(size: Int, fd: Int32?) -> Result<UnsafeMutableRawPointer, Errno> {
        let flags = fd == nil ? (MAP_SHARED | MAP_ANONYMOUS) : MAP_SHARED
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, flags, fd ?? -1, 0)
        guard let p, p != MAP_FAILED else { return .failure(Errno.current) }
        return .success(p)
    }

    static func unmap(_ p: UnsafeMutableRawPointer, size: Int) { _ = munmap(p, size) }

    static let pageSize: Int = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Lets another thread run (used while waiting for a peer to finish a few instructions).
    static func yield() { _ = sched_yield() }
}
