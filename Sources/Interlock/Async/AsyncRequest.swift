import CInterlock
import Synchronization

/// One task's wait for a `SharedLock`, from the moment its attempt without waiting failed
/// until its hold is handed back (see `AsyncWaiter`).
///
/// Life of a request (`state`, changed only with the waiter's mutex held):
/// ```
///   new ──enqueue──▶ queued ──▶ acquiring ──granted──▶ held ──release──▶ releasing ──▶ done
///                      │  ▲          │                                (the waiter thread
///                      │  └──busy────┘ (a join that must wait)         unlocks, then resumes)
///                      └──cancelled / timed out / failed──────────────────────────────▶ done
/// ```
/// A queued request is cancelled or timed out at once (it is only unlinked); one being
/// acquired ends when the waiter thread's current slice does (see `AsyncWaiter.slice`).
/// Whoever moves a request to `done` takes its continuation and resumes it exactly once,
/// after unlocking the mutex.
final class AsyncRequest: @unchecked Sendable {
    // Sendable: the mutable fields are written only with the waiter's mutex held, except
    // `holder`, written by the waiter thread before it resumes the task (the resumption
    // orders it before the task's read), and the task's own bookkeeping in `runBody`.

    enum State { case new, queued, acquiring, held, releasing, done }

    /// The lock. Not retained: the waiting task holds it from before `enqueue` until its
    /// last continuation is resumed, and the waiter thread touches it only before resuming
    /// that continuation; so a lock is never deinitialised on the waiter thread (where its
    /// `deinit`, closing the waiter, would take the waiter's mutex again).
    unowned let lock: SharedLock
    let exclusive: Bool
    /// Absolute CLOCK_MONOTONIC deadline in nanoseconds; `Int64.max` for none.
    let deadline: Int64
    /// The fork generation the request was made in: a hold is released only there.
    let generation: UInt64

    var state = State.new
    /// The task was cancelled (set by its cancellation handler; the waiter thread looks at
    /// it between slices).
    var cancelled = false
    /// Resumed once the lock is granted (or with the error that ends the wait).
    var acquired: UnsafeContinuation<Void, any Error>?
    /// Resumed once the waiter thread has released the hold.
    var released: UnsafeContinuation<Void, Never>?
    /// `currentThreadID()` of the waiter thread that holds the lock for this request.
    var holder: UInt = 0
    /// Links in the waiter's queue or release list (a request is in at most one).
    var previous: AsyncRequest?
    var next: AsyncRequest?

    init(lock: SharedLock, exclusive: Bool, deadline: Int64) {
        self.lock = lock
        self.exclusive = exclusive
        self.deadline = deadline
        self.generation = Fork.currentGeneration
    }

    /// Runs the task's synchronous `body` while the waiter thread holds the lock for it.
    ///
    /// The rwlock stays with the waiter thread (glibc's rwlock must be released by the
    /// thread that took it). For the length of `body`, which cannot suspend, the calling
    /// thread is made to look like the holder to the lock's own bookkeeping, so that
    /// everything a holder may ask works here too, and every misuse check still traps:
    /// - exclusive: the owner field names this thread (so `previousHolderDied` answers,
    ///   and a nested `withExclusive` or `try…` on this lock traps as misuse), and one
    ///   more writer is announced at the gate (so a nested `withShared` reaches the gate's
    ///   misuse check instead of blocking in the rwlock, which the waiter thread holds;
    ///   other threads' readers, who could not get in anyway, wait at the gate meanwhile);
    /// - shared: this thread's record of shared holds lists the lock (so a nested
    ///   `withExclusive` traps as an upgrade instead of waiting for itself).
    /// Afterwards both are put back, and a hold released by hand inside `body` (misuse)
    /// traps. In a fork child made inside `body` the hold is the parent's: the record is
    /// cleared, the owner left as the fork found it, and nothing is released.
    ///
    /// - Returns: what `body` returns.
    func runBody<R>(_ body: () throws -> R) throws -> R {
        // Invariant: `local.get()` is the state the waiter thread locked (same process:
        // the task runs in the process that made the request).
        let state = LocalState(lock.local.get())
        let me = currentThreadID()
        if exclusive {
            let owner = state.owner.pointee.load(ordering: .relaxed)
            if owner != holder { misuse("an async exclusive hold lost its owner before its body ran (owner \(owner))") }
            state.owner.pointee.store(me, ordering: .relaxed)
            state.gate.pointee.add(Gate.oneWriter, ordering: .acquiringAndReleasing)
        } else {
            cinterlock_held_push(state.base)
        }
        defer { endBody(state, me) }
        return try body()
    }

    private func endBody(_ state: LocalState, _ me: UInt) {
        if Fork.currentGeneration != generation {
            // `body` forked and this is the child: forget the parent's hold quietly.
            if !exclusive { _ = cinterlock_held_find(state.base, 1) }
            return
        }
        if exclusive {
            if state.owner.pointee.load(ordering: .relaxed) != me {
                misuse("the async withExclusive hold was released inside its body (unlockExclusive() on a hold it does not own)")
            }
            state.owner.pointee.store(holder, ordering: .relaxed)
            state.leaveGate()
        } else if cinterlock_held_find(state.base, 1) == 0 {
            misuse("the async withShared hold was released inside its body (unlockShared() on a hold it does not own)")
        }
    }

    /// Whether the hold must be handed back: false in a fork child made inside the body.
    var mustRelease: Bool { Fork.currentGeneration == generation }
}

/// A FIFO of requests linked through their own `previous`/`next` (no allocation; O(1)
/// removal of a cancelled request). Used only with the waiter's mutex held.
struct AsyncQueue {
    private(set) var first: AsyncRequest?
    private var last: AsyncRequest?
    private(set) var count = 0

    var isEmpty: Bool { first == nil }

    mutating func append(_ r: AsyncRequest) {
        r.previous = last
        r.next = nil
        if let last { last.next = r } else { first = r }
        last = r
        count += 1
    }

    mutating func prepend(_ r: AsyncRequest) {
        r.previous = nil
        r.next = first
        if let first { first.previous = r } else { last = r }
        first = r
        count += 1
    }

    mutating func remove(_ r: AsyncRequest) {
        if let previous = r.previous { previous.next = r.next } else { first = r.next }
        if let next = r.next { next.previous = r.previous } else { last = r.previous }
        r.previous = nil
        r.next = nil
        count -= 1
    }

    mutating func popFirst() -> AsyncRequest? {
        guard let r = first else { return nil }
        remove(r)
        return r
    }
}
