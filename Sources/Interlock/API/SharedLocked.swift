import Synchronization

/// A value that can be reached only under a ``SharedLock``: shared mode to read,
/// exclusive mode to write.
///
/// ```swift
/// let config = SharedLocked(["mode": "fast"])
/// let mode = config.withShared { $0["mode"] }        // many readers at once
/// config.withExclusive { $0["mode"] = "safe" }       // one writer
/// ```
///
/// **Scopes.** ``init(_:)`` makes a value for the threads of this process (any type; it
/// lives in this process's memory). When `Value` is `BitwiseCopyable` (plain numbers,
/// structs and tuples of them, `InlineArray`s of them; the compiler does not stop raw
/// pointers, which mean nothing in another process, so put none there), the value can
/// also live in the lock's shared memory, for processes:
/// ``forkShared(_:capacity:)`` (a parent and the children it forks afterwards),
/// ``init(named:initialValue:options:)`` and ``init(path:initialValue:options:)``
/// (independent programs). Every process that uses the lock sees the same value.
///
/// **Crash atomicity (process scopes).** The segment keeps two copies of the value and
/// the index of the *committed* one. ``withExclusive(_:)`` copies the committed copy over
/// the other, runs its closure on that one, and, when the closure returns, commits it with
/// one atomic store. A writer killed at any instruction (even `kill -9`) leaves the
/// committed value intact, and the next exclusive holder sees ``previousWriterDied``. A
/// closure that *throws* commits nothing: the value stays as it was (a transaction). Cost:
/// each exclusive hold copies the value once (`MemoryLayout<Value>.stride` bytes); for a
/// large array written in place, see ``SharedLockedArray`` and ``SharedValueMode/inPlace``.
/// In the threads scope the closure writes the value in place, and a throwing closure's
/// changes stay.
///
/// - Warning: Do not `fork()` inside ``withExclusive(_:)`` of a process-scoped value: the
///   child resumes inside the parent's hold, and what it writes before the closure returns
///   lands in the copy the parent is writing (the child never commits it).
///
/// **After `fork()` (threads scope).** The child gets a copy of the value and a free lock. If another
/// thread of the parent was inside ``withExclusive(_:)`` at the instant of the fork, the
/// copy may be half-written (a `Dictionary` caught mid-resize is corrupt memory, not a
/// wrong number), and no thread in the child will ever finish the write. The value is
/// then *poisoned* in that child and its descendants: every ``withShared(_:)`` and
/// ``withExclusive(_:)`` there traps with a message. A fork by the writing thread
/// itself, or while other threads only read, poisons nothing. (A process-scoped value is
/// not copied by `fork()`: parent and child share it under the lock.)
///
/// - Warning: A poisoned child should not let the `SharedLocked` be deinitialised
///   either (that destroys the half-written value); end such a child with `_exit`.
public final class SharedLocked<Value> {
    @usableFromInline let lock: SharedLock
    /// The value in the threads scope. In a process scope it keeps the initial value
    /// given to this handle and is never used: the value is in `region`.
    @usableFromInline var value: Value
    /// Process scopes: where the value lives in the lock's segment (nil: threads scope).
    /// Valid as long as `lock` (which owns the mapping) lives.
    @usableFromInline let region: ValueRegion?
    /// The fork generation in which the value was last found safe (not poisoned).
    /// One relaxed load per access; a mismatch (the first access in a fork child)
    /// checks the parent's lock state, out of line.
    @usableFromInline let checkedGeneration: Atomic<UInt64>
    /// What the current exclusive hold found: the previous writer died mid-update
    /// (process scopes; set and cleared around the writer's closure, read inside it).
    @usableFromInline let writerDied = Atomic<Bool>(false)

    /// Wraps `value`.
    public init(_ value: Value) {
        self.lock = SharedLock()
        self.value = value
        self.region = nil
        self.checkedGeneration = Atomic(Fork.currentGeneration)
    }

    /// A process-scoped value in `lock`'s segment.
    init(lock: SharedLock, initialValue: Value) {
        self.lock = lock
        self.value = initialValue
        self.region = lock.segment?.value?.region
        precondition(region != nil, "Interlock: a process-scoped SharedLocked without a value region")
        self.checkedGeneration = Atomic(Fork.currentGeneration)
    }

    /// Which threads and processes share the value (the scope of its lock).
    public var scope: SharedLock.Scope { lock.scope }

    /// A snapshot of the lock's shared state, or nil in the threads scope (see
    /// ``SharedLock/snapshot()``).
    public func snapshot() -> LockSnapshot? { lock.snapshot() }

    /// Whether the previous writer died in the middle of its update.
    ///
    /// Read it inside ``withExclusive(_:)`` (or its other forms): true in the first
    /// exclusive hold after a writer's process died between the start of its update and
    /// its commit (process scopes). The value is still the last committed one — the dead
    /// writer's change was not committed — so this is for information (logging, or
    /// redoing the lost update). A writer that died *after* committing is not reported:
    /// its change was kept. The notice belongs to the value: a plain ``SharedLock`` opened
    /// on the same name (which is told ``SharedLock/previousHolderDied``) does not take
    /// it. Always false in the threads scope and outside an exclusive hold.
    public var previousWriterDied: Bool { writerDied.load(ordering: .relaxed) }

    /// Runs `body` with read access to the value, under shared mode.
    ///
    /// - Parameter body: reads the value; it must not let the value escape in a way that
    ///   outlives the hold (copy what you need).
    /// - Returns: what `body` returns.
    /// - Precondition: The value is not poisoned (see the type's note on `fork()`).
    @inlinable
    public func withShared<R, E: Error>(_ body: (borrowing Value) throws(E) -> R) throws(E) -> R {
        lock.lockShared()
        defer { lock.unlockShared() }
        return try read(body)
    }

    /// Runs `body` with write access to the value, under exclusive mode.
    ///
    /// In a process scope the change is committed when `body` returns, and not at all if
    /// it throws or its process dies (see the type's note on crash atomicity); inside
    /// `body`, ``previousWriterDied`` tells whether the previous writer died.
    ///
    /// - Parameter body: reads and changes the value.
    /// - Returns: what `body` returns.
    /// - Precondition: The value is not poisoned (see the type's note on `fork()`).
    @inlinable
    public func withExclusive<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        lock.lockExclusive()
        defer { lock.unlockExclusive() }
        return try write(body)
    }

    /// Runs `body` with read access to the value if shared mode is available without
    /// waiting.
    ///
    /// - Parameter body: reads the value.
    /// - Returns: what `body` returns, or nil if a writer holds or waits for the lock.
    @inlinable
    public func withSharedIfAvailable<R, E: Error>(_ body: (borrowing Value) throws(E) -> R) throws(E) -> R? {
        guard lock.tryLockShared() else { return nil }
        defer { lock.unlockShared() }
        return try read(body)
    }

    /// Runs `body` with write access to the value if exclusive mode is available without
    /// waiting (committed as by ``withExclusive(_:)``).
    ///
    /// - Parameter body: reads and changes the value.
    /// - Returns: what `body` returns, or nil if anyone holds the lock.
    @inlinable
    public func withExclusiveIfAvailable<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R? {
        guard lock.tryLockExclusive() else { return nil }
        defer { lock.unlockExclusive() }
        return try write(body)
    }

    /// Runs `body` with read access to the value, waiting at most `timeout` for shared
    /// mode.
    ///
    /// - Parameters:
    ///   - timeout: the longest wait, on the monotonic clock.
    ///   - body: reads the value.
    /// - Returns: what `body` returns.
    /// - Throws: ``InterlockError/timedOut`` if the lock was not acquired in time (then
    ///   `body` did not run), or the error `body` throws.
    public func withShared<R>(timeout: Duration, _ body: (borrowing Value) throws -> R) throws -> R {
        try lock.lockShared(timeout: timeout)
        defer { lock.unlockShared() }
        return try read(body)
    }

    /// Runs `body` with write access to the value, waiting at most `timeout` for
    /// exclusive mode (committed as by ``withExclusive(_:)``).
    ///
    /// - Parameters:
    ///   - timeout: the longest wait, on the monotonic clock.
    ///   - body: reads and changes the value.
    /// - Returns: what `body` returns.
    /// - Throws: ``InterlockError/timedOut`` if the lock was not acquired in time (then
    ///   `body` did not run), or the error `body` throws.
    public func withExclusive<R>(timeout: Duration, _ body: (inout Value) throws -> R) throws -> R {
        try lock.lockExclusive(timeout: timeout)
        defer { lock.unlockExclusive() }
        return try write(body)
    }

    /// Reads the value; the caller holds the lock in either mode.
    @inlinable @inline(__always)
    func read<R, E: Error>(_ body: (borrowing Value) throws(E) -> R) throws(E) -> R {
        if let region {
            // Invariant: the region was made or validated for `Value` (BitwiseCopyable,
            // its stride fits a copy), and the lock is held.
            return try body(region.committedCopy(as: Value.self).pointee)
        }
        checkNotPoisoned()
        return try body(value)
    }

    /// Writes the value; the caller holds exclusive mode.
    @inlinable @inline(__always)
    func write<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        if let region {
            // Invariant: as in `read`, and exclusive mode is held (only we write).
            return try region.update(as: Value.self) { (copy, died) throws(E) -> R in
                writerDied.store(died, ordering: .relaxed)
                defer { writerDied.store(false, ordering: .relaxed) }
                return try body(&copy.pointee)
            }
        }
        checkNotPoisoned()
        return try body(&value)
    }

    /// Traps if the value is poisoned: called under the lock, once the lock's state of
    /// this process exists (so it knows what it inherited).
    @inlinable @inline(__always)
    func checkNotPoisoned() {
        if _slowPath(checkedGeneration.load(ordering: .relaxed) != Fork.currentGeneration) { checkAfterFork() }
    }

    @usableFromInline @inline(never)
    func checkAfterFork() {
        if lock.wasHeldExclusivelyByAnotherThreadAtFork() {
            fatalError("Interlock: SharedLocked<\(Value.self)> is poisoned in this fork() child: another thread of the "
                + "parent was inside withExclusive at the instant of the fork, so the value may be half-written. "
                + "Fork while no other thread writes it, or make the value again in the child.")
        }
        checkedGeneration.store(Fork.currentGeneration, ordering: .relaxed)
    }
}

extension SharedLocked where Value: BitwiseCopyable {
    /// Creates a value in anonymous shared memory (a memfd), for this process and the
    /// children it forks afterwards; each child uses the `SharedLocked` it inherited.
    ///
    /// ```swift
    /// let tally = try SharedLocked.forkShared(0)
    /// // in each fork() child:
    /// tally.withExclusive { $0 += 1 }
    /// ```
    ///
    /// - Parameters:
    ///   - initialValue: the value.
    ///   - capacity: how many processes can use it at once (1…4095), as for
    ///     ``SharedLock/forkShared(capacity:)``.
    /// - Throws: ``InterlockError/invalidCapacity(_:)``,
    ///   ``InterlockError/invalidSharedValue(reason:)`` (a `Value` with no bytes, or over
    ///   1 GiB), or ``InterlockError/systemCall(_:errno:)``.
    public static func forkShared(_ initialValue: Value, capacity: Int = 64) throws(InterlockError) -> SharedLocked {
        let value = try Self.initial(initialValue, tag: 0)
        return SharedLocked(lock: try SharedLock.withValue(.forkShared, capacity: capacity, options: NamedLockOptions(), value: value),
                            initialValue: initialValue)
    }

    /// Opens or creates the named lock `name` with a value in its segment, shared by
    /// every process that opens it.
    ///
    /// The creator stores `initialValue`; a process that opens an existing lock sees the
    /// value stored there (its `initialValue` is not used). The segment records the
    /// value's size, alignment and ``NamedLockOptions/layoutTag``; opening one made for
    /// another layout is ``InterlockError/incompatibleSegment(name:reason:)`` and changes
    /// nothing. Otherwise as ``SharedLock/init(named:options:)``.
    ///
    /// - Parameters:
    ///   - name: 1 to 200 bytes, without `/`.
    ///   - initialValue: the value, if this call creates the lock.
    ///   - options: creation mode, permissions, capacity and layout tag.
    /// - Throws: the errors of ``SharedLock/init(named:options:)``,
    ///   ``InterlockError/incompatibleSegment(name:reason:)`` for another layout (or a
    ///   lock without a value), or ``InterlockError/invalidSharedValue(reason:)``.
    public convenience init(named name: String, initialValue: Value, options: NamedLockOptions = NamedLockOptions()) throws(InterlockError) {
        let value = try Self.initial(initialValue, tag: options.layoutTag)
        self.init(lock: try SharedLock.withValue(.named(name), capacity: options.capacity, options: options, value: value),
                  initialValue: initialValue)
    }

    /// Opens or creates the lock file at `path` with a value in it, shared by every
    /// process that opens it.
    ///
    /// As ``init(named:initialValue:options:)``, for a lock file (see
    /// ``SharedLock/init(path:options:)``); the file's size grows by two copies of the value.
    ///
    /// - Parameters:
    ///   - path: the lock file's path.
    ///   - initialValue: the value, if this call creates the lock file.
    ///   - options: creation mode, permissions, capacity and layout tag.
    /// - Throws: the errors of ``SharedLock/init(path:options:)``,
    ///   ``InterlockError/incompatibleSegment(name:reason:)`` for another layout, or
    ///   ``InterlockError/invalidSharedValue(reason:)``.
    public convenience init(path: String, initialValue: Value, options: NamedLockOptions = NamedLockOptions()) throws(InterlockError) {
        let value = try Self.initial(initialValue, tag: options.layoutTag)
        self.init(lock: try SharedLock.withValue(.path(path), capacity: options.capacity, options: options, value: value),
                  initialValue: initialValue)
    }

    /// The value's layout (two copies) and its initialiser.
    private static func initial(_ initialValue: Value, tag: UInt32) throws(InterlockError) -> InitialValue {
        let layout = try ValueLayout.of(Value.self, count: 1, copies: 2, tag: tag).get()
        return InitialValue(layout: layout) { $0.initializeMemory(as: Value.self, to: initialValue) }
    }
}

// Sendable when the value is: `value` is only reached inside the lock's scoped forms —
// reads under shared mode (several threads may borrow it at once, hence `Value: Sendable`),
// writes under exclusive mode.
extension SharedLocked: @unchecked Sendable where Value: Sendable {}
