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
    static let isDirectory = Errno(EISDIR)
    static let loop = Errno(ELOOP)

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

    /// A short busy-wait hint to the CPU (PAUSE on x86).
    @inlinable
    static func spinHint() {
        _ = cinterlock_cpu_relax()
    }

    // MARK: Processes

    static func effectiveUserID() -> UInt32 { geteuid() }

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

    static func setMode(_ fd: Int32, _ mode: mode_t) -> Errno? {
        fchmod(fd, mode) == 0 ? nil : Errno.current
    }

    static func fileStatus(_ fd: Int32) -> Result<stat, Errno> {
        var st = stat()
        return fstat(fd, &st) == 0 ? .success(st) : .failure(Errno.current)
    }

    /// `lstat`: what is at `path`, without following a symbolic link.
    static func linkStatus(_ path: String) -> Result<stat, Errno> {
        var st = stat()
        return lstat(path, &st) == 0 ? .success(st) : .failure(Errno.current)
    }

    static func close(_ fd: Int32) { _ = Glibc.close(fd) }

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
