// The baselines, called directly with no wrapper beyond a stable address:
// glibc pthread_rwlock (both kinds, optionally PTHREAD_PROCESS_SHARED) and fcntl OFD locks.

import Glibc

/// Baseline: glibc `pthread_rwlock_t`.
final class RawRWLock: ReaderWriterLock, @unchecked Sendable {
    // Sound: pthread_rwlock_t is made to be shared between threads; its address never changes.
    enum Kind: String, Sendable {
        /// glibc's default (PTHREAD_RWLOCK_PREFER_READER_NP): a stream of readers can starve writers.
        case readerPreferring = "pthread-default"
        /// PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP via pthread_rwlockattr_setkind_np.
        case writerPreferring = "pthread-preferWriter"
    }

    private let lock: UnsafeMutablePointer<pthread_rwlock_t>
    /// Keeps process-shared memory mapped for as long as the lock lives.
    private let region: SharedRegion?

    /// - Parameter region: when given, the lock is placed there with PTHREAD_PROCESS_SHARED, for
    ///   parent and fork() children; otherwise it is a heap lock for the threads of this process.
    init(_ kind: Kind, processShared region: SharedRegion? = nil) {
        self.region = region
        if let region {
            lock = region.allocate(pthread_rwlock_t.self)
        } else {
            lock = .allocate(capacity: 1)
        }
        var attributes = pthread_rwlockattr_t()
        check(pthread_rwlockattr_init(&attributes), "pthread_rwlockattr_init")
        defer { pthread_rwlockattr_destroy(&attributes) }
        if kind == .writerPreferring {
            check(
                pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP)),
                "pthread_rwlockattr_setkind_np"
            )
        }
        if region != nil {
            check(pthread_rwlockattr_setpshared(&attributes, Int32(PTHREAD_PROCESS_SHARED)), "pthread_rwlockattr_setpshared")
        }
        check(pthread_rwlock_init(lock, &attributes), "pthread_rwlock_init")
    }

    deinit {
        pthread_rwlock_destroy(lock)
        if region == nil { lock.deallocate() }
    }

    // Return codes are not checked in the timed paths: the baseline is the bare call.
    @inline(__always) func lockShared() { pthread_rwlock_rdlock(lock) }
    @inline(__always) func unlockShared() { pthread_rwlock_unlock(lock) }
    @inline(__always) func lockExclusive() { pthread_rwlock_wrlock(lock) }
    @inline(__always) func unlockExclusive() { pthread_rwlock_unlock(lock) }
}

/// Baseline: an open-file-description lock (what file-lock libraries such as `fasteners` build on),
/// on the whole of an unlinked temporary file: F_OFD_SETLKW with F_RDLCK/F_WRLCK, then F_UNLCK.
final class OFDLock: ReaderWriterLock, @unchecked Sendable {
    // Sound: the descriptor is only used by fcntl, which the kernel serializes.

    // From <bits/fcntl-linux.h>; Swift's Glibc module does not export the F_OFD_* names
    // (they sit behind __USE_GNU). Linux ABI constants, stable since Linux 3.15.
    private static let setLock: Int32 = 37 // F_OFD_SETLK
    private static let setLockWait: Int32 = 38 // F_OFD_SETLKW

    private let fd: Int32

    init() {
        var template = Array("/tmp/interlock-bench-ofd.XXXXXX".utf8CString)
        fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        precondition(fd >= 0, "mkstemp failed: errno \(errno)")
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
    }

    deinit {
        close(fd)
    }

    @inline(__always) func lockShared() { apply(F_RDLCK, Self.setLockWait) }
    @inline(__always) func unlockShared() { apply(F_UNLCK, Self.setLock) }
    @inline(__always) func lockExclusive() { apply(F_WRLCK, Self.setLockWait) }
    @inline(__always) func unlockExclusive() { apply(F_UNLCK, Self.setLock) }

    @inline(__always) private func apply(_ type: Int32, _ command: Int32) {
        var region = flock()
        region.l_type = Int16(type)
        region.l_whence = Int16(SEEK_SET)
        region.l_start = 0
        region.l_len = 0 // the whole file
        while fcntl(fd, command, &region) == -1 {
            precondition(errno == EINTR, "fcntl(F_OFD_SETLK[W]) failed: errno \(errno)")
        }
    }
}

@inline(__always) func check(_ result: Int32, _ function: StaticString) {
    precondition(result == 0, "\(function) failed: \(result)")
}
