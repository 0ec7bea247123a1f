import Synchronization
import CInterlock

// The manual forms: lock and unlock calls for code that cannot use a closure.
//
// These are the unsafe way to use a `SharedLock`: nothing ties an unlock to its lock.
// Prefer `withShared` and `withExclusive`, which cannot forget to unlock. A lock whose
// last reference goes away while a manual hold is still taken traps (see
// `SharedLock+Deinit.swift`).

extension SharedLock {
    // MARK: Algorithm access

    /// The algorithm state for this process: the segment's (process scopes) or the
    /// private one in `state` (threads scope).
    @inlinable @inline(__always)
    func core(_ state: LocalState) -> Core {
        if let segment { return segment.core }
        return state.threadCore
    }

    /// This process's entry: registering first in a process scope that has none yet
    /// (a fork child's first use).
    func registeredSlot(_ state: LocalState) -> Result<Int32, InterlockError> {
        let slot = state.slot
        guard let segment, slot < 0 else { return .success(slot) }
        return state.register(in: segment)
    }

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
        let core = core(state)
        let slot = state.slot
        if _fastPath(slot >= 0 && core.enterSharedFast(core.entry(slot))) {
            cinterlock_held_push(state.base)
            return
        }
        if case .failure(let error) = lockSharedSlow(state, deadline: nil, tryOnly: false) { unavailable(error) }
    }

    /// The contended (or first-use) part of every shared acquisition, out of line so
    /// that the fast paths stay small enough to inline.
    @usableFromInline @inline(never)
    func lockSharedSlow(_ state: LocalState, deadline: Int64?, tryOnly: Bool) -> Result<Void, InterlockError> {
        state.checkNotHoldingExclusive(tryOnly ? "tryLockShared()" : deadline == nil ? "lockShared()" : "lockShared(timeout:)")
        let core = core(state)
        let slot: Int32
        switch registeredSlot(state) {
        case .failure(let error): return .failure(error)
        case .success(let s): slot = s
        }
        var waiter = Waiter(deadline: deadline)
        var acquired = core.enterShared(slot: slot, waiter: &waiter, tryOnly: tryOnly)
        if !acquired && state.recoverIfDue(core) {
            // A dead holder was reclaimed: one more try.
            acquired = core.enterShared(slot: slot, waiter: &waiter, tryOnly: true)
        }
        guard acquired else { return .failure(.timedOut) }
        cinterlock_held_push(state.base)
        return .success(())
    }

    /// Acquires shared mode if that is possible without waiting.
    ///
    /// Fails when a writer holds the lock or is draining the readers inside to take it.
    /// It does not fail otherwise.
    ///
    /// - Returns: whether shared mode was acquired; if so, call ``unlockShared()`` later.
    /// - Warning: The manual, unsafe form; prefer ``withSharedIfAvailable(_:)``.
    @available(*, noasync, message: "a manual hold belongs to a thread, and a task can resume on another one after an await; use withSharedIfAvailable { … } or try await withShared { … }")
    @inlinable
    public func tryLockShared() -> Bool {
        let state = LocalState(local.get())
        let core = core(state)
        let slot = state.slot
        if _fastPath(slot >= 0 && core.enterSharedFast(core.entry(slot))) {
            cinterlock_held_push(state.base)
            return true
        }
        return lockSharedSlow(state, deadline: nil, tryOnly: true).isSuccess
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
        let core = core(state)
        let slot = state.slot
        if slot >= 0 && core.enterSharedFast(core.entry(slot)) {
            cinterlock_held_push(state.base)
            return
        }
        if case .failure(let error) = lockSharedSlow(state, deadline: deadline, tryOnly: false) { throw error }
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
        // Forget the hold first, so that misuse traps before any count moves.
        if _slowPath(!state.forgetSharedHold()) { unlockSharedNotHeld(state); return }
        let core = core(state)
        core.leaveShared(core.entry(state.slot))
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
        let me = currentThreadID()
        let core = core(state)
        let slot = state.slot
        var started: UInt32? = nil
        if _fastPath(slot >= 0 && state.owner.pointee.load(ordering: .relaxed) != me) {
            started = core.startWritePhaseFast(slot)
            if let old = started, _fastPath(core.drained()) {
                grantExclusive(state, core, slot: slot, old: old, me: me)
                return
            }
        }
        if case .failure(let error) = lockExclusiveSlow(state, me: me, started: started, deadline: nil, tryOnly: false) {
            unavailable(error)
        }
    }

    /// Records an exclusive hold that the calling thread now has.
    @inlinable @inline(__always)
    func grantExclusive(_ state: LocalState, _ core: Core, slot: Int32, old: UInt32, me: UInt) {
        state.ownerDied = old & Control.ownerDied != 0
        core.entry(slot).writing.pointee.store(1, ordering: .relaxed)
        // The report stayed in the word while we drained; it is ours now (after
        // `writing`, so that our death from here on reports again).
        if _slowPath(old & Control.ownerDied != 0) { core.takeDeathReport() }
        state.owner.pointee.store(me, ordering: .relaxed)
    }

    /// The contended (or first-use, or misuse) part of every exclusive acquisition.
    /// `started` is the control word that the calling thread's fast path replaced when
    /// it started a write phase that still has readers to drain (nil: none started):
    /// this finishes that phase, or starts one.
    @usableFromInline @inline(never)
    func lockExclusiveSlow(_ state: LocalState, me: UInt, started: UInt32?, deadline: Int64?,
                           tryOnly: Bool) -> Result<Void, InterlockError> {
        let operation = tryOnly ? "tryLockExclusive()" : deadline == nil ? "lockExclusive()" : "lockExclusive(timeout:)"
        if state.owner.pointee.load(ordering: .relaxed) == me {
            misuse("\(operation) on a thread that already holds this lock in exclusive mode (exclusive mode is not recursive)")
        }
        let core = core(state)
        let slot: Int32
        switch registeredSlot(state) {
        case .failure(let error): return .failure(error)
        case .success(let s): slot = s
        }
        var waiter = Waiter(deadline: deadline)
        var old = started
        if state.holdsShared() {
            if let old { core.endWritePhase(extra: old & Control.ownerDied) }
            misuse("\(operation) on a thread that holds this lock in shared mode (shared mode cannot be upgraded)")
        }
        if tryOnly && old == nil && !core.drained() && !(state.recoverIfDue(core) && core.drained()) {
            return .failure(.timedOut)  // readers inside (see tryLockExclusive)
        }
        while true {
            if old == nil {
                old = core.waitForWritePhase(slot: slot, waiter: &waiter, tryOnly: tryOnly)
                if old == nil, state.recoverIfDue(core) {
                    old = core.waitForWritePhase(slot: slot, waiter: &waiter, tryOnly: true)
                }
            }
            guard let started = old else { return .failure(.timedOut) }
            if core.drain(slot: slot, old: started, waiter: &waiter, tryOnly: tryOnly) {
                grantExclusive(state, core, slot: slot, old: started, me: me)
                return .success(())
            }
            // Drained too late: a dead reader may be what kept us out.
            guard state.recoverIfDue(core) else { return .failure(.timedOut) }
            old = nil
            waiter = Waiter(deadline: Sys.monotonicNanoseconds())  // one more try, no wait
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
        let me = currentThreadID()
        let core = core(state)
        let slot = state.slot
        var started: UInt32? = nil
        // Readers inside: fail without starting a write phase, which would turn new
        // readers away for a moment only to give up.
        if _fastPath(slot >= 0 && state.owner.pointee.load(ordering: .relaxed) != me && core.drained()) {
            started = core.startWritePhaseFast(slot)
            if let old = started, _fastPath(core.drained()) {
                grantExclusive(state, core, slot: slot, old: old, me: me)
                return true
            }
        }
        return lockExclusiveSlow(state, me: me, started: started, deadline: nil, tryOnly: true).isSuccess
    }

    /// Acquires exclusive mode, waiting at most `timeout` (on the monotonic clock).
    ///
    /// A writer that times out gives up its write phase, leaving no trace: readers are
    /// not held back by a writer that gave up.
    ///
    /// - Parameter timeout: the longest wait; zero or negative tries once.
    /// - Throws: ``InterlockError/timedOut`` (nothing is left acquired), or
    ///   ``InterlockError/holderTableFull(name:capacity:)``.
    /// - Warning: The manual, unsafe form; prefer ``withExclusive(timeout:_:)``.
    @available(*, noasync, message: "a manual hold belongs to a thread, and a task can resume on another one after an await; use try await withExclusive(timeout:) { … }")
    public func lockExclusive(timeout: Duration) throws(InterlockError) {
        let deadline = SharedLock.deadline(after: timeout)
        let state = LocalState(local.get())
        let me = currentThreadID()
        if case .failure(let error) = lockExclusiveSlow(state, me: me, started: nil, deadline: deadline, tryOnly: false) { throw error }
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
        state.owner.pointee.store(0, ordering: .relaxed)
        state.ownerDied = false
        let core = core(state)
        core.entry(state.slot).writing.pointee.store(0, ordering: .relaxed)
        core.releaseWritePhase()
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
