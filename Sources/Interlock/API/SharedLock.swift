import Synchronization

/// A reader-writer lock for the threads of one process, or of several processes.
///
/// Any number of holders may share the lock (shared mode), or exactly one may hold it
/// exclusively (exclusive mode) — across all threads of all processes that use the same
/// lock, never both at once.
///
/// ```swift
/// let lock = SharedLock()                       // threads of this process
/// let total = lock.withShared { table.sum() }   // many readers at once
/// lock.withExclusive { table.append(42) }       // one writer, nobody else
/// ```
///
/// Four scopes:
/// - ``init()``: the threads of this process (state in this process's memory).
/// - ``forkShared(capacity:)``: anonymous shared memory (a memfd), for a parent and the
///   children it forks afterwards.
/// - ``init(named:options:)``: a named segment (`shm_open`) that independently launched
///   programs open by name.
/// - ``init(path:options:)``: a lock file at a path, for programs that share a directory
///   (next to the data the lock guards, or on a volume several containers mount).
///
/// **Fair both ways.** Once a writer waits, new shared acquisitions wait too — in every
/// thread of every process — so a stream of readers cannot starve a writer; and the
/// readers that waited for a writer go in before the next writer, so a stream of writers
/// cannot starve readers either (phase fairness; see the article "Protocol").
///
/// **Timeouts.** Every blocking acquisition has a timed form (monotonic clock) and a
/// try form; a failed attempt leaves no trace.
///
/// **Async code.** ``withShared(isolation:_:)`` and ``withExclusive(isolation:_:)`` (and
/// their `timeout:` forms) suspend the task instead of blocking its thread while the lock is
/// busy; the lock's waiter thread waits in its place (see <doc:Concurrency>).
///
/// **Fork.** A `fork()` child holds nothing its parent held: the lock's per-process
/// state is fresh in the child, even if a parent thread held the lock at the instant of
/// the fork. A process-scoped lock made before the fork coordinates parent and child.
///
/// **Crashes.** If a process dies holding a process-scoped lock (even `kill -9`), the
/// others reclaim its share after a short wait (about 2–25 ms); the next exclusive
/// holder learns that its predecessor died through ``previousHolderDied``. Whether a
/// holder lives is the kernel's answer (a record lock each registered process holds on
/// its entry of the lock's file, dropped when it dies), never a pid: a live process in
/// another pid or time namespace, or whose main thread exited, is never taken for dead.
///
/// - Warning: Neither mode is recursive, and shared mode cannot be upgraded. Re-acquiring
///   exclusive mode on the thread that holds it, asking for exclusive mode while holding
///   shared mode, or unlocking a mode the thread does not hold, traps with a message.
///   Re-acquiring shared mode on a thread that holds it deadlocks if a writer is waiting.
///
/// - Important: Release every manual hold (``lockShared()``, ``lockExclusive()``) before
///   the last reference to the lock goes away. A lock deinitialised while a thread of its
///   process holds it traps with a message naming the lock: the hold could never be
///   released, and other processes' writers would wait until this process exits.
public final class SharedLock: @unchecked Sendable {
    // Sendable: all mutable state is reached through atomics (`ForkLocalPointer`, the
    // control word and counts); see `LocalState`, `Core` and `Segment`.

    /// Which threads and processes a lock coordinates.
    public enum Scope: Sendable, Equatable {
        /// The threads of the process that made the lock.
        case threads
        /// A process and the children it forks after making the lock.
        case forkShared
        /// Every process that opens the lock by this name.
        case named(String)
        /// Every process that opens the lock file at this path.
        case path(String)
    }

    /// Which threads and processes this lock coordinates.
    public let scope: Scope
    @usableFromInline let local: ForkLocalPointer
    @usableFromInline let segment: Segment?
    /// The file the segment is mapped from (process scopes); it carries this process's
    /// liveness byte lock and stays open as long as the lock exists.
    let file: LockFile?
    /// The thread that waits for the lock on behalf of suspended tasks (see
    /// `SharedLock+Async.swift`), made on first need.
    let asyncWaiters = AsyncWaiterSlot()

    private init(scope: Scope, opened: OpenSegment?) {
        self.scope = scope
        self.segment = opened?.segment
        self.file = opened?.file
        let threadsScope = opened == nil
        self.local = ForkLocalPointer(
            make: { LocalState.make(generation: $0, threadsScope: threadsScope) },
            discard: { LocalState.destroy($0) })
    }

    /// Creates a lock for the threads of this process.
    public convenience init() {
        self.init(scope: .threads, opened: nil)
    }

    /// Creates a lock in anonymous shared memory (a memfd), for this process and the
    /// children it forks afterwards.
    ///
    /// Create the lock *before* calling `fork()`; each child uses the same `SharedLock`
    /// object it inherited. Processes that were not forked from the creator cannot reach
    /// it: use ``init(named:options:)`` for those.
    ///
    /// - Parameter capacity: how many processes can use the lock at once (1…4095).
    ///   Entries of exited processes are reused.
    /// - Throws: ``InterlockError/invalidCapacity(_:)`` for a capacity outside 1…4095, or
    ///   ``InterlockError/systemCall(_:errno:)`` if the memory cannot be made or mapped.
    public static func forkShared(capacity: Int = 64) throws(InterlockError) -> SharedLock {
        let lock = SharedLock(scope: .forkShared, opened: try Segment.anonymous(capacity: capacity).get())
        try lock.registerNow()
        return lock
    }

    /// Opens or creates the lock called `name`, shared by every process that opens it.
    ///
    /// The segment is `/dev/shm/interlock.NAME`. It outlives the processes that use it
    /// until ``remove(named:force:)`` (or `interlock remove NAME`) unlinks it.
    /// Creation is race-free: exactly one process creates and initialises the segment;
    /// the others wait (up to ``NamedLockOptions/readyTimeout``) until it is published.
    ///
    /// - Parameters:
    ///   - name: 1 to 200 bytes, without `/`.
    ///   - options: creation mode, permissions (`0600` by default) and capacity.
    /// - Throws: ``InterlockError`` — invalid name, not found, already exists, permission
    ///   denied, insecure permissions, incompatible segment, not ready, or a full holder
    ///   table. A failed open changes nothing in an existing segment.
    public convenience init(named name: String, options: NamedLockOptions = NamedLockOptions()) throws(InterlockError) {
        self.init(scope: .named(name), opened: try Segment.named(name, options: options).get())
        try registerNow()
    }

    /// Opens or creates the lock file at `path`, shared by every process that opens it.
    ///
    /// The file is the lock: its contents are the lock's state (a few kilobytes), and it
    /// outlives the processes that use it until ``remove(path:force:)`` (or
    /// `interlock remove PATH`) deletes it. Put it on a local file system (ext4, xfs,
    /// btrfs, tmpfs, overlayfs); network file systems are refused. Creation is race-free,
    /// as for named locks; the file is created `0600` (`0660` with
    /// ``NamedLockOptions/shareWithGroup``). Do not open, read or close the lock file
    /// yourself in a process that uses the lock: closing any descriptor of it drops the
    /// process's record locks, which tell the others it is alive.
    ///
    /// - Parameters:
    ///   - path: the lock file's path (absolute, or relative to the working directory).
    ///     A symbolic link, directory or other non-regular file in its place is refused.
    ///   - options: creation mode, permissions and capacity, as for named locks.
    /// - Throws: ``InterlockError`` — invalid path, insecure directory or file, not found,
    ///   already exists, permission denied, unsupported file system, incompatible or
    ///   unready file, or a full holder table. A failed open changes nothing in an
    ///   existing lock file.
    public convenience init(path: String, options: NamedLockOptions = NamedLockOptions()) throws(InterlockError) {
        self.init(scope: .path(path), opened: try Segment.atPath(path, options: options).get())
        try registerNow()
    }

    /// A process-scoped lock whose segment also holds a shared value (for `SharedLocked`
    /// and `SharedLockedArray`): created with `value`, or opened and checked against its
    /// layout. `scope` is `.forkShared`, `.named` or `.path`.
    static func withValue(_ scope: Scope, capacity: Int, options: NamedLockOptions,
                          value: InitialValue) throws(InterlockError) -> SharedLock {
        let opened: OpenSegment
        switch scope {
        case .threads: preconditionFailure("a threads-scoped lock keeps no shared value")
        case .forkShared: opened = try Segment.anonymous(capacity: capacity, value: value).get()
        case .named(let name): opened = try Segment.named(name, options: options, value: value).get()
        case .path(let path): opened = try Segment.atPath(path, options: options, value: value).get()
        }
        let lock = SharedLock(scope: scope, opened: opened)
        try lock.registerNow()
        return lock
    }

    deinit {
        checkNotHeldAtDeinit()
        if let p = local.currentIfOwned() {
            let state = LocalState(p)
            if let segment, state.slot >= 0 {
                LockFile.withTableLock { segment.unregister(slot: state.slot) }
            }
            LocalState.destroy(p)
        }
        segment?.unmap()
        file?.release()
    }

    /// Claims this process's holder-table entry now, so that a full table is reported
    /// at creation rather than at first use.
    private func registerNow() throws(InterlockError) {
        guard let segment else { return }
        let state = LocalState(local.get())
        if case .failure(let error) = state.register(in: segment) {
            switch (error, scope) {
            case (.holderTableFull(_, let capacity), .named(let name)), (.holderTableFull(_, let capacity), .path(let name)):
                throw .holderTableFull(name: name, capacity: capacity)
            case (.foreignRecordLock(_, let pid), .named(let name)), (.foreignRecordLock(_, let pid), .path(let name)):
                throw .foreignRecordLock(name: name, pid: pid)
            default: throw error
            }
        }
    }

    /// Unlinks the named lock's segment.
    ///
    /// Processes that have it open keep using their mapping; processes that open the name
    /// afterwards get a new lock. That split is why removal refuses while live processes
    /// are registered in the lock, unless `force` is true.
    ///
    /// - Parameters:
    ///   - name: the lock's name.
    ///   - force: remove even while live processes use it.
    /// - Throws: ``InterlockError/liveHolders(name:count:)``, ``InterlockError/notFound(name:)``,
    ///   or an open error.
    public static func remove(named name: String, force: Bool = false) throws(InterlockError) {
        if !force { try refuseWhileLive(name, file: (try? Segment.path(forName: name).get()).map { "/dev/shm" + $0 }) { options throws(InterlockError) in try inspect(named: name, options: options) } }
        try Segment.remove(name: name).get()
    }

    /// Throws ``InterlockError/liveHolders(name:count:)`` if a live process is registered in
    /// the lock that `inspect` opens, or the error that says the lock cannot be reached. A
    /// broken or half-made lock does not stop a removal.
    private static func refuseWhileLive(
        _ label: String, file: String?, _ inspect: (NamedLockOptions) throws(InterlockError) -> LockSnapshot
    ) throws(InterlockError) {
        var options = NamedLockOptions()
        options.creation = .openOnly
        options.allowInsecurePermissions = true
        options.readyTimeout = .zero
        do throws(InterlockError) {
            let live = try inspect(options).holders.filter(\.isAlive).count
            if live > 0 { throw .liveHolders(name: label, count: live) }
        } catch {
            switch error {
            case .liveHolders, .notFound, .invalidName, .invalidPath, .permissionDenied: throw error
            default:
                // A broken or half-made lock can be removed (removePath refuses foreign
                // files) — unless some process holds record locks in it: a lock of an
                // older layout that its programs still use, whose holders this version
                // cannot decode.
                if let file, Segment.anyRecordLock(inFileAt: file) { throw .liveHolders(name: label, count: 1) }
            }
        }
    }

    /// Deletes the lock file at `path`.
    ///
    /// As with ``remove(named:force:)``, processes that have the lock open keep using
    /// it, and processes that open the path afterwards get a new lock; so removal refuses
    /// while live processes are registered, unless `force` is true. It never deletes a
    /// file that is not an Interlock lock file (or a half-made one), nor follows a
    /// symbolic link.
    ///
    /// - Parameters:
    ///   - path: the lock file's path.
    ///   - force: remove even while live processes use it.
    /// - Throws: ``InterlockError/liveHolders(name:count:)``, ``InterlockError/notFound(name:)``,
    ///   ``InterlockError/incompatibleSegment(name:reason:)`` for a file of other data,
    ///   or a path error.
    public static func remove(path: String, force: Bool = false) throws(InterlockError) {
        if !force { try refuseWhileLive(path, file: path) { options throws(InterlockError) in try inspect(path: path, options: options) } }
        try Segment.removePath(path).get()
    }

    /// Reads the named lock's state without taking it or registering in it.
    ///
    /// - Parameter name: the lock's name.
    /// - Returns: a decoded snapshot of the header, control word and holder table.
    /// - Throws: the errors of ``init(named:options:)`` with `.openOnly`.
    public static func inspect(named name: String) throws(InterlockError) -> LockSnapshot {
        var options = NamedLockOptions()
        options.creation = .openOnly
        options.allowInsecurePermissions = true
        return try inspect(named: name, options: options)
    }

    private static func inspect(named name: String, options: NamedLockOptions) throws(InterlockError) -> LockSnapshot {
        let opened = try Segment.named(name, options: options).get()
        defer { opened.close() }
        return opened.segment.snapshot(name: name)
    }

    /// Reads the state of the lock file at `path` without taking the lock or registering
    /// in it.
    ///
    /// - Parameter path: the lock file's path.
    /// - Returns: a decoded snapshot of the header, control word and holder table.
    /// - Throws: the errors of ``init(path:options:)`` with `.openOnly`.
    public static func inspect(path: String) throws(InterlockError) -> LockSnapshot {
        var options = NamedLockOptions()
        options.creation = .openOnly
        options.allowInsecurePermissions = true
        return try inspect(path: path, options: options)
    }

    private static func inspect(path: String, options: NamedLockOptions) throws(InterlockError) -> LockSnapshot {
        let opened = try Segment.atPath(path, options: options).get()
        defer { opened.close() }
        return opened.segment.snapshot(name: path)
    }

    /// A snapshot of this lock's shared state, or nil for a threads-scoped lock.
    public func snapshot() -> LockSnapshot? {
        guard let segment else { return nil }
        switch scope {
        case .named(let name), .path(let name): return segment.snapshot(name: name)
        default: return segment.snapshot(name: nil)
        }
    }

    /// Whether the previous exclusive holder died while holding the lock.
    ///
    /// Read it inside an exclusive hold: when true, the data the lock guards may be
    /// half-written, and this holder should repair it. It is reported to exactly one
    /// exclusive holder (like `EOWNERDEAD` for robust mutexes). Always false for a
    /// threads-scoped lock, and outside an exclusive hold.
    public var previousHolderDied: Bool {
        let state = LocalState(local.get())
        return state.owner.pointee.load(ordering: .relaxed) == currentThreadID() && state.ownerDied
    }
}
