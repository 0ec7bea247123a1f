import CInterlock
import Synchronization

/// One task's wait for a `SharedLock`, from the moment its attempt without waiting failed
/// until its hold is released (see `AsyncWaiter`).
///
/// Life of a request (`state`, changed only with the waiter's mutex held):
/// ```
///   new ──enqueue──▶ queued ──▶ acquiring ──granted──▶ granted   (the task runs its body,
///                      │             │                            then releases on its thread)
///                      └─────────────┴──cancelled / timed out / failed──▶ done
/// ```
/// A queued request is cancelled or timed out at once (it is only unlinked); the one being
/// acquired ends when the waiter thread's current slice does (see `AsyncWaiter.slice`).
/// Whoever ends a request takes its continuation and resumes it exactly once, after
/// unlocking the mutex.
///
/// **Moving a hold between threads.** The lock's algorithm (`Core`) counts holds per
/// participant — this process — not per thread. Only two things name a thread: the
/// exclusive holder in `LocalState.owner`, and each thread's record of its shared holds
/// (`cinterlock_held` in the C shim), which the misuse checks and `previousHolderDied` read.
/// So the waiter thread takes the lock with the ordinary calls, then *disowns* the hold (its
/// owner entry or record entry is cleared), and the task, once resumed on whatever thread,
/// *adopts* it (names its own thread there), runs its synchronous body, and releases it
/// with the ordinary calls. From then on it is exactly a hold that thread took itself:
/// misuse traps, `previousHolderDied` answers, a `fork()` inside the body is handled as
/// for any hold.
final class AsyncRequest: @unchecked Sendable {
    // Sendable: the mutable fields are written only with the waiter's mutex held; the task
    // reads `batch` after its resumption, which orders it after the waiter thread's write.

    enum State { case new, queued, acquiring, granted, done }

    /// The lock. Not retained: the waiting task holds it from before `enqueue` until after
    /// its release, and the waiter thread touches it only before resuming the task; so a
    /// lock is never deinitialised on the waiter thread (where its `deinit`, closing the
    /// waiter, would take the waiter's mutex again).
    unowned let lock: SharedLock
    /// The lock's waiter in this process (owned by the lock, so alive as long as it).
    unowned let waiter: AsyncWaiter
    let exclusive: Bool
    /// Absolute CLOCK_MONOTONIC deadline in nanoseconds; `Int64.max` for none.
    let deadline: Int64

    var state = State.new
    /// The task was cancelled (set by its cancellation handler; the waiter thread looks at
    /// it between slices).
    var cancelled = false
    /// Resumed once the lock is held for the task (or with the error that ends the wait).
    var acquired: UnsafeContinuation<Void, any Error>?
    /// Shared mode: the readers granted together, who share one hold.
    var batch: SharedBatch? {
        get { batchBox.withLock { $0 } }
        set { batchBox.withLock { $0 = newValue } }
    }
    /// Behind a mutex: the thread sanitizer does not see every resumption path as ordering
    /// the waiter thread's write before the task's read (a report in CI), so the order is
    /// made explicit. Off the free-lock path: only granted shared requests touch it.
    private let batchBox = Mutex<SharedBatch?>(nil)
    /// Links in the waiter's queue.
    var previous: AsyncRequest?
    var next: AsyncRequest?

    init(lock: SharedLock, waiter: AsyncWaiter, exclusive: Bool, deadline: Int64) {
        self.lock = lock
        self.waiter = waiter
        self.exclusive = exclusive
        self.deadline = deadline
    }

    /// On the waiter thread, right after it took the lock for this request (and before it
    /// resumes the task): clears the calling thread's claim to the hold.
    func disown() {
        // Invariant: the waiter thread's `local.get()` is the state it just locked.
        let state = LocalState(lock.local.get())
        if exclusive {
            state.owner.pointee.store(0, ordering: .relaxed)
        } else if cinterlock_held_find(state.base, 1) == 0 {
            misuse("the waiter thread's shared hold was not in its record")
        }
    }

    /// In the task, once granted: adopts the hold on the calling thread, runs `body`, and
    /// releases the hold there, as `withShared`/`withExclusive` would. Synchronous, so
    /// the hold starts and ends on one thread.
    ///
    /// - Returns: what `body` returns.
    func runGranted<R>(_ body: () throws -> R) throws -> R {
        // Invariant: the task runs in the process that made the request (a fork child has
        // no tasks), so `local.get()` is the state the waiter thread locked.
        let state = LocalState(lock.local.get())
        if exclusive {
            let owner = state.owner.pointee.load(ordering: .relaxed)
            if owner != 0 { misuse("an async exclusive hold found another owner (\(owner)) before its body ran") }
            state.owner.pointee.store(currentThreadID(), ordering: .relaxed)
            defer {
                lock.unlockExclusive()
                waiter.holdEnded()
            }
            return try body()
        }
        cinterlock_held_push(state.base)
        defer {
            batch!.leave(lock, state)
            waiter.holdEnded()
        }
        return try body()
    }
}

/// Readers the waiter thread granted together: every shared request queued when it took
/// shared mode for the first of them shares that one hold, so that all the readers that
/// waited go in together (before the next writer, as blocking readers do). Each adopts it in
/// its thread's record; the last one out releases it.
final class SharedBatch: @unchecked Sendable {
    // Sendable: one atomic.
    private let remaining: Atomic<Int>

    init(count: Int) { remaining = Atomic(count) }

    /// A reader is done (on the thread that adopted the hold).
    func leave(_ lock: SharedLock, _ state: LocalState) {
        if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
            lock.unlockShared()
        } else if !state.forgetSharedHold() {
            // Released by hand inside the body (misuse: traps), or a fork child that
            // inherited the hold (quietly forgotten), as for any unlockShared().
            lock.unlockSharedNotHeld(state)
        }
    }
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
