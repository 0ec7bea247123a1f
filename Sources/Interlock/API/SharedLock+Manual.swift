import Synchronization

// The manual forms: lock and unlock calls for code that cannot use a closure.
//
// These are the unsafe way to use a `SharedLock`: nothing ties an unlock to its lock.
// Prefer `withShared` and `withExclusive`, which cannot forget to unlock. A lock whose
// last reference goes away while a manual hold is still taken traps (see
// `SharedLock+Deinit.swift`).

extension SharedLock {
    // MARK: Shared

    /// Acquires shared mode, waiting as long as it takes.
    ///
    /// - Warning: The manual, unsafe form: every call must be balanced by exactly one
    ///   ``unlockShared()`` on the same thread. Prefer ``withShared(_:)``. Shared mode is
    ///   not recursive: calling this again on a thread that holds it deadlocks if a writer
    ///   is waiting. In a process scope, a process that cannot register (a full holder
    ///   table) traps; use ``lockShared(timeout:)`` to get that as an error.
    /// - Important: Keep a reference to the lock until you release it: a `SharedLock`
    ///   deinitialised while its process holds it traps (see ``SharedLock``).
    @available(*, noasync, message: "a manual hold belongs to a thread, and a task can resume on another one after an await; use try await withShared { … }")
    @inlinable @inline(__always)
    public func lockShared() {
        let state = LocalState(local.get())
        state.lockSharedThread()
        if let segment { lockSharedProcess(state, segment) }
    }

    /// The process-level half of ``lockShared()``, kept out of line so the
    /// threads-scope fast path stays small enough to inline.
    @usableFromInline @inline(never)
    func lockSharedProcess(_ state: LocalState, _ segment: Segment) {
        if case .failure(let error) = state.enterShared(segment, deadline: nil, tryOnly: false) {
            state.unlockSharedThread()
            unavailable(error)
        }
    }

    /// Acquires shared mode if that is possible without waiting.
    ///
    /// Fails when a writer holds the lock or waits for it, or (process scopes) while a
    /// process is recovering the lock from a crashed holder. It does not fail otherwise.
    ///
    /// - Returns: whether shared mode was acquired; if so, call ``unlockShared()`` later.
    /// - Warning: The manual, unsafe form; prefer ``withSharedIfAvailable(_:)``.
    @available(*, noasync, message: "a manual hold belongs to a thread, and a task can resume on another one after an await; use withSharedIfAvailable { … } or try await withShared { … }")
    @inlinable
    public func tryLockShared() -> Bool {
        let state = LocalState(local.get())
        guard state.tryLockSharedThread() else { return false }
        if let segment, !state.enterShared(segment, deadline: nil, tryOnly: true).isSuccess {
            state.unlockSharedThread()
            return false
        }
        return true
    }

    /// Acquires shared mode, waiting at most `timeout` (on the monotonic clock).
    ///
    /// - Parameter timeout: the longest wait; zero or negative tries once.
    /// - Throws: ``InterlockError/timedOut`` if the lock could not be acquired in time
    ///   (nothing is left acquired), or ``InterlockError/holderTableFull(name:capacity:)``.
    /// - Warning: The manual, unsafe form; prefer ``withShared(timeout:_:)``.
    @available(*, noasync, message: "a manual hold belongs to a thread, and a task can resume on another one after an await; use try await withShared(timeout:) { … }")
    public func lockShared(timeout: Duration) throws(InterlockError) {
        let deadline = SharedLock.deadline(after: timeout)
        let state = LocalState(local.get())
        guard state.lockSharedThread(deadline: deadline) else { throw .timedOut }
        if let segment, case .failure(let error) = state.enterShared(segment, deadline: deadline, tryOnly: false) {
            state.unlockSharedThread()
            throw error
        }
    }

    /// Releases shared mode held by the calling thread.
    ///
    /// In a `fork()` child, releasing a hold that the forking thread took before the
    /// fork is a no-op: the child never held it, and the parent's hold is not touched.
    ///
    /// - Warning: The manual, unsafe form. Calling it without holding shared mode, or
    ///   while holding exclusive mode, traps.
    @available(*, noasync, message: "a manual hold belongs to a thread, and a task can resume on another one after an await; use try await withShared { … }")
    @inlinable @inline(__always)
    public func unlockShared() {
        let state = LocalState(local.get())
        // Forget the hold first, so that misuse traps before the process-level count moves.
        if _slowPath(!state.forgetSharedHold()) { unlockSharedNotHeld(state); return }
        if let segment { state.leaveShared(segment) }
        state.releaseSharedThread()
    }

    // MARK: Exclusive

    /// Acquires exclusive mode, waiting as long as it takes.
    ///
    /// - Warning: The manual, unsafe form: balance it with exactly one
    ///   ``unlockExclusive()`` on the same thread. Prefer ``withExclusive(_:)``.
    ///   Exclusive mode is not recursive, and shared mode cannot be upgraded: calling this
    ///   on a thread that holds the lock in either mode traps. In a process scope, a
    ///   process that cannot register (a full holder table) traps; use
    ///   ``lockExclusive(timeout:)`` to get that as an error.
    /// - Important: Keep a reference to the lock until you release it: a `SharedLock`
    ///   deinitialised while its process holds it traps (see ``SharedLock``).
    @available(*, noasync, message: "a manual hold belongs to a thread, and a task can resume on another one after an await; use try await withExclusive { … }")
    @inlinable @inline(__always)
    public func lockExclusive() {
        let state = LocalState(local.get())
        state.lockExclusiveThread()
        if let segment { lockExclusiveProcess(state, segment) }
    }

    /// The process-level half of ``lockExclusive()``, out of line (see ``lockShared()``).
    @usableFromInline @inline(never)
    func lockExclusiveProcess(_ state: LocalState, _ segment: Segment) {
        if case .failure(let error) = state.enterExclusive(segment, deadline: nil, tryOnly: false) {
            state.unlockExclusiveThread()
            unavailable(error)
        }
    }

    /// Acquires exclusive mode if that is possible without waiting.
    ///
    /// - Returns: whether exclusive mode was acquired; if so, call ``unlockExclusive()``.
    /// - Warning: The manual, unsafe form; prefer ``withExclusiveIfAvailable(_:)``.
    @available(*, noasync, message: "a manual hold belongs to a thread, and a task can resume on another one after an await; use withExclusiveIfAvailable { … } or try await withExclusive { … }")
    @inlinable
    public func tryLockExclusive() -> Bool {
        let state = LocalState(local.get())
        guard state.tryLockExclusiveThread() else { return false }
        if let segment, !state.enterExclusive(segment, deadline: nil, tryOnly: true).isSuccess {
            state.unlockExclusiveThread()
            return false
        }
        return true
    }

    /// Acquires exclusive mode, waiting at most `timeout` (on the monotonic clock).
    ///
    /// A writer that times out withdraws its "writer waiting" mark: readers are not held
    /// back by a writer that gave up.
    ///
    /// - Parameter timeout: the longest wait; zero or negative tries once.
    /// - Throws: ``InterlockError/timedOut`` (nothing is left acquired), or
    ///   ``InterlockError/holderTableFull(name:capacity:)``.
    /// - Warning: The manual, unsafe form; prefer ``withExclusive(timeout:_:)``.
    @available(*, noasync, message: "a manual hold belongs to a thread, and a task can resume on another one after an await; use try await withExclusive(timeout:) { … }")
    public func lockExclusive(timeout: Duration) throws(InterlockError) {
        let deadline = SharedLock.deadline(after: timeout)
        let state = LocalState(local.get())
        guard state.lockExclusiveThread(deadline: deadline) else { throw .timedOut }
        if let segment, case .failure(let error) = state.enterExclusive(segment, deadline: deadline, tryOnly: false) {
            state.unlockExclusiveThread()
            throw error
        }
    }

    /// Releases exclusive mode held by the calling thread.
    ///
    /// In a `fork()` child, releasing a hold that the forking thread took before the
    /// fork is a no-op: the child never held it, and the parent's hold is not touched.
    ///
    /// - Warning: The manual, unsafe form. Calling it on a thread that does not hold
    ///   exclusive mode traps.
    @available(*, noasync, message: "a manual hold belongs to a thread, and a task can resume on another one after an await; use try await withExclusive { … }")
    @inlinable @inline(__always)
    public func unlockExclusive() {
        let state = LocalState(local.get())
        if _slowPath(state.owner.pointee.load(ordering: .relaxed) != currentThreadID()) {
            unlockExclusiveNotHeld(state)
            return
        }
        if let segment { unlockExclusiveProcess(state, segment) }
        state.unlockExclusiveThread()
    }

    /// The process-level half of ``unlockExclusive()``, out of line.
    @usableFromInline @inline(never)
    func unlockExclusiveProcess(_ state: LocalState, _ segment: Segment) {
        state.leaveExclusive(segment)
    }

    // MARK: Helpers

    /// The absolute CLOCK_MONOTONIC deadline `timeout` from now, in nanoseconds,
    /// saturating (see `Sys.deadline(after:)`).
    @usableFromInline
    static func deadline(after timeout: Duration) -> Int64 {
        Sys.deadline(after: timeout)
    }

    /// A blocking acquisition could not register this process (a full holder table).
    @usableFromInline @inline(never)
    func unavailable(_ error: InterlockError) -> Never {
        fatalError("Interlock: \(error). Use a timed form (lockShared(timeout:)) to get this as an error.")
    }
}
