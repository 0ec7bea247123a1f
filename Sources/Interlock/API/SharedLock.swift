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
/// Three scopes:
/// - ``init()``: the threads of this process (`pthread_rwlock` with a writer gate).
/// - ``forkShared(capacity:)``: anonymous shared memory, for a parent and the children
///   it forks afterwards.
/// - ``init(named:options:)``: a named segment (`shm_open`) that independently launched
///   programs open by name.
///
/// **Writer preference.** Once a writer waits, new shared acquisitions wait too — in
/// every thread of every process — so a stream of readers cannot starve a writer.
///
/// **Timeouts.** Every blocking acquisition has a timed form (monotonic clock) and a
/// try form; a failed attempt leaves no trace.
///
/// **Fork.** A `fork()` child holds nothing its parent held: the lock's per-process
/// state is fresh in the child, even if a parent thread held the lock at the instant of
/// the fork. A process-scoped lock made before the fork coordinates parent and child.
///
/// **Crashes.** If a process dies holding a process-scoped lock (even `kill -9`), the
/// others reclaim its share after a short wait (about 2–25 ms); the next exclusive
/// holder learns that its predecessor died through ``previousHolderDied``.
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
    // state words) or through the pthread rwlock; see `LocalState` and `Segment`.

    /// Which threads and processes a lock coordinates.
    public enum Scope: Sendable, Equatable {
        /// The threads of the process that made the lock.
        case threads
        /// A process and the children it forks after making the lock.
        case forkShared
        /// Every process that opens the lock by this name.
        case named(String)
    }

    /// Which threads and processes this lock coordinates.
    public let scope: Scope
    @usableFromInline let local: ForkLocalPointer
    @usableFromInline let segment: Segment?

    private init(scope: Scope, segment: Segment?) {
        self.scope = scope
        self.segment = segment
        self.local = ForkLocalPointer(
            make: { LocalState.make(generation: $0) },
            discard: { LocalState.destroy($0) })
    }

    /// Creates a lock for the threads of this process.
    public convenience init() {
        self.init(scope: .threads, segment: nil)
    }

    /// Creates a lock in anonymous shared memory, for this process and the children it
    /// forks afterwards.
    ///
    /// Create the lock *before* calling `fork()`; each child uses the same `SharedLock`
    /// object it inherited. Processes that were not forked from the creator cannot reach
    /// it: use ``init(named:options:)`` for those.
    ///
    /// - Parameter capacity: how many processes can use the lock at once (1…4095).
    ///   Entries of exited processes are reused.
    /// - Throws: ``InterlockError/invalidCapacity(_:)`` for a capacity outside 1…4095, or
    ///   ``InterlockError/systemCall(_:errno:)`` if the memory cannot be mapped.
    public static func forkShared(capacity: Int = 64) throws(InterlockError) -> SharedLock {
        let segment = try Segment.anonymous(capacity: capacity).get()
        let lock = SharedLock(scope: .forkShared, segment: segment)
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
        let segment = try Segment.named(name, options: options).get()
        self.init(scope: .named(name), segment: segment)
        do {
            try registerNow()
        } catch {
            if case .holderTableFull(_, let capacity) = error { throw .holderTableFull(name: name, capacity: capacity) }
            throw error
        }
    }

    deinit {
        checkNotHeldAtDeinit()
        if let p = local.currentIfOwned() {
            let state = LocalState(p)
            if let segment, state.slot >= 0 { segment.unregister(slot: state.slot, pid: state.pid) }
            LocalState.destroy(p)
        }
        segment?.unmap()
    }

    /// Claims this process's holder-table entry now, so that a full table is reported
    /// at creation rather than at first use.
    private func registerNow() throws(InterlockError) {
        guard let segment else { return }
        let state = LocalState(local.get())
        // Serialise with this process's other process-level steps (none can run yet, but
        // keep the rule that registration happens under the exclusive rwlock).
        state.lockExclusiveThread()
        defer { state.unlockExclusiveThread() }
        _ = try state.entry(in: segment).get()
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
        if !force {
            var options = NamedLockOptions()
            options.creation = .openOnly
            options.allowInsecurePermissions = true
            options.readyTimeout = .zero
            do throws(InterlockError) {
                let live = try inspect(named: name, options: options).holders.filter(\.isAlive).count
                if live > 0 { throw .liveHolders(name: name, count: live) }
            } catch {
                switch error {
                case .liveHolders, .notFound, .invalidName, .permissionDenied: throw error
                default: break  // a broken or half-made segment can always be removed
                }
            }
        }
        try Segment.remove(name: name).get()
    }

    /// Reads the named lock's state without taking it or registering in it.
    ///
    /// - Parameter name: the lock's name.
    /// - Returns: a decoded snapshot of the header, state word and holder table.
    /// - Throws: the errors of ``init(named:options:)`` with `.openOnly`.
    public static func inspect(named name: String) throws(InterlockError) -> LockSnapshot {
        var options = NamedLockOptions()
        options.creation = .openOnly
        options.allowInsecurePermissions = true
        return try inspect(named: name, options: options)
    }

    private static func inspect(named name: String, options: NamedLockOptions) throws(InterlockError) -> LockSnapshot {
        let segment = try Segment.named(name, options: options).get()
        defer { segment.unmap() }
        return segment.snapshot(name: name)
    }

    /// A snapshot of this lock's shared state, or nil for a threads-scoped lock.
    public func snapshot() -> LockSnapshot? {
        guard let segment else { return nil }
        if case .named(let name) = scope { return segment.snapshot(name: name) }
        return segment.snapshot(name: nil)
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
