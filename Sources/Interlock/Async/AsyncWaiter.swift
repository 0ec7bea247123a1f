#if canImport(Glibc)
import Glibc
#endif
import CInterlock
import Synchronization

/// The waiter thread of one `SharedLock` in one process: it waits for the lock on behalf
/// of suspended tasks, so that a thousand waiting tasks cost one blocked thread, not a
/// thousand (and none of the cooperative pool's).
///
/// **The loop.** Requests wait in a FIFO. The thread times out queued requests whose
/// deadline passed, then serves the head: it waits for the lock with the ordinary blocking
/// timed calls, in slices of at most `slice` (between slices it checks whether the request
/// was cancelled or timed out, and times out queued requests) — so fairness, writer
/// preference, process-scope waits and crash recovery are exactly those of a blocking
/// waiter. Once it holds the lock it hands the hold to the task (`AsyncRequest.disown`, then
/// `runGranted` in the task) and resumes it; the task releases the hold itself, on its own
/// thread, so the waiter thread never holds anything between requests and never waits for
/// a task. A shared hold goes to every shared request queued at that moment (they share it:
/// `SharedBatch`), so the readers that waited go in together, before the next writer, as
/// blocking readers do. When idle, the thread lingers for `linger`, then stops (the next
/// waiting task starts it again).
///
/// **Cancellation and timeouts.** A queued request is taken out at once. The request the
/// thread is waiting for ends with the current slice: a writer's timed wait gives up its
/// claim before it returns (as every timed-out writer does), so once the task has thrown
/// `CancellationError` the lock carries no trace of it. Between slices the claim is given up
/// and made again within microseconds. A wait that succeeds is granted even if the task was
/// cancelled meanwhile (an exclusive hold may carry the notice that the previous holder
/// died, which must reach a body).
///
/// **Fork.** The waiter belongs to one fork generation (`AsyncWaiterSlot`); a child never
/// touches its parent's (whose thread does not exist there, and whose mutex may have been
/// held at the fork).
final class AsyncWaiter: @unchecked Sendable {
    // Sendable: every mutable field is read and written with `mutex` held, except the
    // atomic `outstanding`.

    /// The longest single blocking wait: how late a cancellation (or the timeout of a
    /// request queued behind the one being served) can take effect.
    static let slice: Int64 = 10_000_000
    /// How long an idle waiter thread stays before it stops.
    static let linger: Int64 = 1_000_000_000

    /// Waiter threads running in this process (all locks).
    static let runningThreads = Atomic<Int>(0)

    let generation: UInt64
    /// pthread mutex and condition (not `Synchronization.Mutex`: the thread sanitizer sees
    /// these, and the condition needs the mutex). Allocated, so their addresses are stable.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    /// Holds granted to tasks and not yet released (for tests).
    private let outstanding = Atomic<Int>(0)

    // Guarded by `mutex`:
    private var queue = AsyncQueue()
    private var timedQueued = 0
    private var acquiringNow = false
    private var granted = 0
    private var cancelledAcquiring = 0
    private var threadRunning = false
    private var closed = false

    init(generation: UInt64) {
        self.generation = generation
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        // Only a waiter of this process is ever released (see `AsyncWaiterSlot`), and only
        // once its thread has stopped (the thread keeps a reference while it runs).
        pthread_cond_destroy(condition)
        condition.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    // MARK: Called by tasks

    /// Queues `request` (its attempt without waiting failed); `acquired` is resumed when the
    /// lock is held for it, or with the error that ends the wait.
    func enqueue(_ request: AsyncRequest, _ acquired: UnsafeContinuation<Void, any Error>) {
        pthread_mutex_lock(mutex)
        if request.cancelled {
            request.state = .done
            pthread_mutex_unlock(mutex)
            acquired.resume(throwing: CancellationError())
            return
        }
        if !threadRunning {
            let rc = startThread()
            if rc != 0 {
                request.state = .done
                pthread_mutex_unlock(mutex)
                acquired.resume(throwing: InterlockError.systemCall("pthread_create (the lock's waiter thread)", errno: rc))
                return
            }
            threadRunning = true
        }
        request.acquired = acquired
        request.state = .queued
        queue.append(request)
        if request.deadline != .max { timedQueued += 1 }
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    /// The task's cancellation handler: a queued request ends now; one being acquired
    /// ends with the thread's current slice; a granted one is not affected.
    func cancel(_ request: AsyncRequest) {
        pthread_mutex_lock(mutex)
        request.cancelled = true
        var continuation: UnsafeContinuation<Void, any Error>?
        if request.state == .queued {
            dequeueLocked(request)
            request.state = .done
            continuation = request.acquired.take()
        }
        pthread_mutex_unlock(mutex)
        continuation?.resume(throwing: CancellationError())
    }

    /// A task released a hold this waiter granted.
    func holdEnded() {
        outstanding.subtract(1, ordering: .relaxed)
    }

    /// The lock is being deinitialised: an idle thread stops now.
    func close() {
        pthread_mutex_lock(mutex)
        closed = true
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    /// What the waiter is doing, for tests: requests queued (not counting the one being
    /// acquired), whether one is being acquired, holds granted and not yet released, holds
    /// granted since it was made, and requests cancelled while it was acquiring for them.
    func counts() -> (queued: Int, acquiring: Bool, held: Int, granted: Int, cancelledAcquiring: Int) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return (queue.count, acquiringNow, outstanding.load(ordering: .relaxed), granted, cancelledAcquiring)
    }

    // MARK: The queue (mutex held)

    private func dequeueLocked(_ request: AsyncRequest) {
        queue.remove(request)
        if request.deadline != .max { timedQueued -= 1 }
    }

    /// The earliest deadline among queued requests (`Int64.max` if none).
    private func earliestQueuedDeadline() -> Int64 {
        guard timedQueued > 0 else { return .max }
        var earliest = Int64.max
        var r = queue.first
        while let request = r {
            earliest = min(earliest, request.deadline)
            r = request.next
        }
        return earliest
    }

    /// Times out the queued requests whose deadline is `now` or past: unlocks the mutex to
    /// resume them, and locks it again.
    private func expireQueued(_ now: Int64) {
        guard timedQueued > 0 else { return }
        var expired = AsyncQueue()
        var r = queue.first
        while let request = r {
            r = request.next
            if request.deadline <= now {
                dequeueLocked(request)
                request.state = .done
                expired.append(request)
            }
        }
        if expired.isEmpty { return }
        pthread_mutex_unlock(mutex)
        while let request = expired.popFirst() {
            request.acquired.take()?.resume(throwing: InterlockError.timedOut)
        }
        pthread_mutex_lock(mutex)
    }

    /// Sleeps on the condition until signalled or until `deadline` (monotonic ns).
    private func waitForEvent(until deadline: Int64) {
        if deadline == .max {
            pthread_cond_wait(condition, mutex)
        } else {
            var ts = Sys.makeTimespec(nanoseconds: deadline)
            _ = pthread_cond_timedwait(condition, mutex, &ts)
        }
    }

    // MARK: The thread

    private func startThread() -> Int32 {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        // The thread takes no signals (it inherits the mask of the thread that makes it):
        // a process's handlers run elsewhere, and its waits are never cut short.
        var all = sigset_t(), previous = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_SETMASK, &all, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        let context = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { raw in
            // Invariant: `raw` is the retained waiter passed below; the thread owns that reference.
            let waiter = Unmanaged<AsyncWaiter>.fromOpaque(raw!).takeRetainedValue()
            cinterlock_name_thread("interlock-wait")
            waiter.run()
            return nil
        }, context)
        if rc != 0 {
            Unmanaged<AsyncWaiter>.fromOpaque(context).release()
            return rc
        }
        AsyncWaiter.runningThreads.add(1, ordering: .relaxed)
        return 0
    }

    private enum Outcome {
        case granted, cancelled, timedOut
        case failed(InterlockError)
    }

    private func run() {
        var idleSince: Int64 = 0
        pthread_mutex_lock(mutex)
        while true {
            let now = Sys.monotonicNanoseconds()
            expireQueued(now)
            if let head = queue.first {
                idleSince = 0
                dequeueLocked(head)
                head.state = .acquiring
                acquiringNow = true
                pthread_mutex_unlock(mutex)
                let outcome = acquire(head)
                if case .granted = outcome { head.disown() }
                pthread_mutex_lock(mutex)
                acquiringNow = false
                settle(head, outcome)
                continue
            }
            if closed { break }
            if idleSince == 0 { idleSince = now }
            if now - idleSince >= AsyncWaiter.linger { break }
            waitForEvent(until: idleSince + AsyncWaiter.linger)
        }
        threadRunning = false
        pthread_mutex_unlock(mutex)
        AsyncWaiter.runningThreads.subtract(1, ordering: .relaxed)
    }

    /// Waits for the lock for `request` (mutex not held), in slices.
    private func acquire(_ request: AsyncRequest) -> Outcome {
        while true {
            pthread_mutex_lock(mutex)
            expireQueued(Sys.monotonicNanoseconds())
            let cancelled = request.cancelled
            let horizon = earliestQueuedDeadline()
            pthread_mutex_unlock(mutex)
            if cancelled { return .cancelled }
            let now = Sys.monotonicNanoseconds()
            if now >= request.deadline { return .timedOut }
            let end = min(request.deadline, horizon, now + AsyncWaiter.slice)
            let timeout = Duration.nanoseconds(max(end - now, 1))
            do throws(InterlockError) {
                if request.exclusive {
                    try request.lock.lockExclusive(timeout: timeout)
                } else {
                    try request.lock.lockShared(timeout: timeout)
                }
                return .granted
            } catch .timedOut {
                continue
            } catch {
                return .failed(error)
            }
        }
    }

    /// Ends the wait for `request` (mutex held; unlocked and locked again to resume). A
    /// granted shared hold goes to every shared request queued now, too.
    private func settle(_ request: AsyncRequest, _ outcome: Outcome) {
        let error: (any Error)?
        switch outcome {
        case .granted: error = nil
        case .cancelled: error = CancellationError(); cancelledAcquiring += 1
        case .timedOut: error = InterlockError.timedOut
        case .failed(let failure): error = failure
        }
        var resumed = AsyncQueue()
        resumed.append(request)
        if error == nil && !request.exclusive {
            var r = queue.first
            while let other = r {
                r = other.next
                if !other.exclusive {
                    dequeueLocked(other)
                    resumed.append(other)
                }
            }
            let batch = SharedBatch(count: resumed.count)
            var member = resumed.first
            while let m = member {
                m.batch = batch
                member = m.next
            }
        }
        if error == nil {
            granted += resumed.count
            outstanding.add(resumed.count, ordering: .relaxed)
        }
        var continuations: [UnsafeContinuation<Void, any Error>] = []
        continuations.reserveCapacity(resumed.count)
        while let r = resumed.popFirst() {
            r.state = error == nil ? .granted : .done
            if let c = r.acquired.take() { continuations.append(c) }
        }
        pthread_mutex_unlock(mutex)
        for c in continuations {
            if let error { c.resume(throwing: error) } else { c.resume() }
        }
        pthread_mutex_lock(mutex)
    }
}

/// The `AsyncWaiter` of a lock in the current process, made on first need: a lock whose
/// tasks never wait never has one. Stored in the `SharedLock`.
///
/// A fork child finds its parent's waiter (another generation) and makes its own; the
/// parent's is abandoned, never touched, never released (its thread does not exist in the
/// child, and its mutex may have been held at the instant of the fork).
struct AsyncWaiterSlot: ~Copyable, @unchecked Sendable {
    // Sendable: the only field is an atomic.

    /// The waiter (an `Unmanaged` reference the slot owns), or 0.
    private let current = Atomic<UInt>(0)

    init() {}

    /// This process's waiter, made on first use.
    func waiter() -> AsyncWaiter {
        let generation = Fork.currentGeneration
        var seen = current.load(ordering: .acquiring)
        while true {
            if let raw = UnsafeRawPointer(bitPattern: seen) {
                // Invariant: a published waiter is released only by `deinit`, and one of
                // another generation never; so this reference is alive.
                let waiter = Unmanaged<AsyncWaiter>.fromOpaque(raw).takeUnretainedValue()
                if waiter.generation == generation { return waiter }
            }
            let fresh = Unmanaged.passRetained(AsyncWaiter(generation: generation))
            let (exchanged, now) = current.compareExchange(
                expected: seen, desired: UInt(bitPattern: fresh.toOpaque()), ordering: .acquiringAndReleasing)
            if exchanged { return fresh.takeUnretainedValue() }
            fresh.release()
            seen = now
        }
    }

    /// This process's waiter if it has one.
    func existing() -> AsyncWaiter? {
        guard let raw = UnsafeRawPointer(bitPattern: current.load(ordering: .acquiring)) else { return nil }
        let waiter = Unmanaged<AsyncWaiter>.fromOpaque(raw).takeUnretainedValue()
        return waiter.generation == Fork.currentGeneration ? waiter : nil
    }

    deinit {
        // The lock is going away, so no task waits for it: stop an idle thread now.
        guard let raw = UnsafeRawPointer(bitPattern: current.load(ordering: .acquiring)) else { return }
        let waiter = Unmanaged<AsyncWaiter>.fromOpaque(raw)
        guard waiter.takeUnretainedValue().generation == Fork.currentGeneration else { return }  // inherited: abandoned
        waiter.takeUnretainedValue().close()
        waiter.release()
    }
}
