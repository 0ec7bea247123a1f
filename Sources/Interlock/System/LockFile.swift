#if canImport(Glibc)
import Glibc
#endif
import CInterlock

/// A lock's file (a memfd, a shared-memory object or a regular file) and this process's
/// descriptor for it, shared by every handle of this process on the same file.
///
/// Why a table: liveness is a POSIX record lock per holder-table slot (see `Segment`),
/// and POSIX record locks belong to the process — which means the kernel drops *all*
/// of a process's locks on a file as soon as the process closes *any* descriptor of
/// that file. Two `SharedLock(named: "x")` handles in one process, one of them
/// deinitialised, or an `inspect(named: "x")` in a process that uses "x", would
/// otherwise silently make the process look dead to the others.
///
/// So every descriptor Interlock opens for a lock file is handed to `adopt` at once.
/// The table, keyed by device and inode, keeps the first descriptor of each file as
/// the one every handle uses, and keeps later descriptors of the same file open
/// (`spares`) until the last user releases the file; only then is anything closed, when
/// no handle of this process is registered in it any more.
///
/// The table is guarded by a process-wide mutex that `fork()` holds across the fork
/// (see `cinterlock_files_lock`); a fork child inherits the table and the descriptors,
/// but none of the parent's record locks.
final class LockFile: @unchecked Sendable {
    // Sendable: `fd`, `device` and `inode` are immutable; `users` and `spares` are only
    // read or written with the files mutex held.

    /// The descriptor every handle of this process uses for record locks.
    let fd: Int32
    let device: UInt64
    let inode: UInt64
    private var users = 1
    private var spares: [Int32] = []

    private init(fd: Int32, device: UInt64, inode: UInt64) {
        self.fd = fd
        self.device = device
        self.inode = inode
    }

    private struct Key: Hashable {
        let device: UInt64
        let inode: UInt64
    }

    /// Every lock file this process has open. Guarded by the files mutex.
    nonisolated(unsafe) private static var table: [Key: LockFile] = [:]

    /// Runs `body` with the files mutex held. Registration and unregistration in a
    /// segment run under it too: within one process they must be serialised, because
    /// the record lock that arbitrates between processes cannot tell two handles of the
    /// same process apart.
    static func withTableLock<R>(_ body: () throws -> R) rethrows -> R {
        Fork.registerHandler()  // the atfork handlers that keep the mutex fork-safe
        cinterlock_files_lock()
        defer { cinterlock_files_unlock() }
        return try body()
    }

    /// Takes ownership of `fd`, an open descriptor of a lock file. Returns the process's
    /// `LockFile` for that file (one use more); `fd` itself is never closed before the
    /// file's last user releases it.
    static func adopt(_ fd: Int32) -> Result<LockFile, Errno> {
        let st: stat
        switch Sys.fileStatus(fd) {
        case .failure(let e):
            // Not closed: closing a descriptor of a file this process has locks in would
            // drop them, and without fstat we cannot tell which file it is. (fstat of a
            // descriptor just opened does not fail in practice.)
            return .failure(e)
        case .success(let s): st = s
        }
        let key = Key(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
        return withTableLock {
            if let file = table[key] {
                file.users += 1
                file.spares.append(fd)
                return .success(file)
            }
            let file = LockFile(fd: fd, device: key.device, inode: key.inode)
            table[key] = file
            return .success(file)
        }
    }

    /// The file at `path` (relative to `directory`, not following a symbolic link in the
    /// last component) if this process has it open already: one use more, and no new
    /// descriptor. Opening it again would have to keep the new descriptor open until the
    /// last user goes (see `spares`), so a program that inspects a lock it uses, or opens
    /// and drops handles in a loop, would pile descriptors up.
    ///
    /// Reusing the open file is what an `open` at the instant of the `stat` would have
    /// given: the path named this very file then.
    static func existing(_ path: String, at directory: Int32) -> LockFile? {
        guard case .success(let st) = Sys.linkStatus(path, at: directory) else { return nil }
        let key = Key(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
        return withTableLock {
            guard let file = table[key] else { return nil }
            file.users += 1
            return file
        }
    }

    /// Runs `body` with `fd`, a descriptor opened only to look at a file, then disposes
    /// of it: closes it if this process has no lock file open on the same file, and
    /// otherwise keeps it with that file's spares (closing it would drop the process's
    /// record locks). `body` runs with the table locked, so no handle of this process
    /// can start using the file meanwhile; it must be short and take no other lock.
    static func withTransient<R>(_ fd: Int32, _ body: (Int32) -> R) -> R {
        withTableLock {
            let result = body(fd)
            // (If fstat failed we cannot tell which file it is: the descriptor is leaked.)
            if case .success(let st) = Sys.fileStatus(fd) {
                if let file = table[Key(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))] {
                    file.spares.append(fd)
                } else {
                    Sys.close(fd)
                }
            }
            return result
        }
    }

    /// Gives one use back; the last user closes every descriptor of the file.
    ///
    /// Invariant: the caller holds no record lock in this file through this use (it
    /// unregistered its slot, or never registered).
    func release() {
        LockFile.withTableLock {
            users -= 1
            guard users == 0 else { return }
            LockFile.table[Key(device: device, inode: inode)] = nil
            for spare in spares { Sys.close(spare) }
            spares = []
            Sys.close(fd)
        }
    }
}
