import CInterlock

// Releasing, in a fork child, a hold taken before the fork.
//
// A child holds nothing its parent held: its per-process state is fresh (see
// `ForkLocalPointer`). But a child forked *inside* `withShared`/`withExclusive` returns
// from the closure, and its `defer` releases the hold the parent took. That release is
// a no-op — the parent's hold is the parent's — and must not trap as misuse.
//
// The unlock paths find no hold in the current state, and come here (out of line, so
// the fast paths do not grow). A pre-fork hold is recognised in the states this process
// inherited (`ForkLocalPointer.forEachInherited`, never freed): a shared hold by the
// forking thread's record of holds (the C shim keeps it across the fork), an exclusive
// one by the owner field, if the caller is the thread that forked (the only thread of
// the parent that exists in the child). Each is forgotten once, so a second release of
// it traps like any other unlock of what the thread does not hold.

extension SharedLock {
    /// `unlockShared()` found no shared hold of this lock in the calling thread's record.
    /// Returns if it was a hold taken before a fork (forgotten now); traps otherwise.
    @usableFromInline @inline(never)
    func unlockSharedNotHeld(_ state: LocalState) {
        if local.forEachInherited({ cinterlock_held_find($0, 1) != 0 }) { return }
        state.notHoldingShared()
    }

    /// `unlockExclusive()` found that the calling thread is not the owner. Returns if it
    /// was an exclusive hold the forking thread took before a fork (forgotten now);
    /// traps otherwise.
    @usableFromInline @inline(never)
    func unlockExclusiveNotHeld(_ state: LocalState) {
        let me = currentThreadID()
        if me == cinterlock_forking_thread() && local.forEachInherited({ inherited in
            let owner = LocalState(inherited).owner
            guard owner.pointee.load(ordering: .relaxed) == me else { return false }
            owner.pointee.store(0, ordering: .relaxed)  // the inherited copy: the parent's is untouched
            return true
        }) { return }
        state.notHoldingExclusive()
    }
}

extension SharedLock {
    /// Whether, at the instant of a fork that made this process (or an ancestor since
    /// this lock was made), a thread other than the forking one held exclusive mode: its
    /// write was cut off in the child. Used by `SharedLocked` to poison its value.
    func wasHeldExclusivelyByAnotherThreadAtFork() -> Bool {
        let forking = cinterlock_forking_thread()
        return local.forEachInherited { inherited in
            let owner = LocalState(inherited).owner.pointee.load(ordering: .relaxed)
            return owner != 0 && owner != forking
        }
    }
}
