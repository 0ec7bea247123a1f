// The async scoped forms: wait for the lock by suspending the task, not by blocking its thread.
//
// A free lock is taken at once, on the task's own thread, without suspending: the same try
// as `withSharedIfAvailable`. A busy lock makes the task suspend: the lock's waiter thread
// (one per lock per process, started on first need, stopped when idle; see `AsyncWaiter`)
// waits for it with the blocking calls and hands the hold to the task, which runs its body
// and releases the hold on the thread it resumed on (see `AsyncRequest`). The body stays
// synchronous, so a hold never spans an `await`: a hold belongs to a thread (the misuse
// checks and `previousHolderDied` name the holding thread), a task may resume on another
// thread after every `await`, and a hold kept while its task is suspended would keep every
// other waiter waiting for whatever the task awaits.

extension SharedLock {
    /// Runs `body` under shared mode, suspending the task (not blocking its thread) while
    /// the lock is busy.
    ///
    /// ```swift
    /// let rows = try await lock.withShared { table.rows }
    /// ```
    /// When the lock is free it is taken at once, without suspending. When a writer holds
    /// it or waits for it, the task suspends and its thread goes back to the pool; the
    /// lock's waiter thread waits for the lock in the task's place (with the same fairness
    /// and writer preference as a blocking waiter, and in process scopes the same crash
    /// recovery), and resumes the task once it holds it.
    ///
    /// `body` is synchronous: a hold never spans an `await` (see
    /// <doc:Concurrency>). It runs in the caller's isolation (on the caller's actor, if any).
    ///
    /// - Parameters:
    ///   - isolation: the actor `body` runs on; leave it to its default, the caller's.
    ///   - body: the work to do under shared mode; its error passes through.
    /// - Returns: what `body` returns.
    /// - Throws: `CancellationError` if the task is cancelled while it waits (it then
    ///   leaves no trace in the lock, and `body` did not run; a free lock is taken even by a
    ///   cancelled task);
    ///   ``InterlockError/holderTableFull(name:capacity:)`` if this process cannot register
    ///   in a process-scoped lock; ``InterlockError/systemCall(_:errno:)`` if the waiter
    ///   thread cannot be started; or the error `body` throws.
    /// - Warning: Shared mode is not recursive: taking this lock again inside `body` (a
    ///   synchronous form) deadlocks if a writer is waiting, as inside ``withShared(_:)``.
    @inlinable @inline(__always)
    public func withShared<R, E: Error>(
        isolation: isolated (any Actor)? = #isolation, _ body: () throws(E) -> R
    ) async throws -> R {
        if let result = try withSharedIfAvailable(body) { return result }
        return try await waitAsync(exclusive: false, deadline: .max, isolation: isolation, body)
    }

    /// Runs `body` under exclusive mode, suspending the task (not blocking its thread) while
    /// the lock is busy.
    ///
    /// ```swift
    /// try await lock.withExclusive { table.append(row) }
    /// ```
    /// As ``withShared(isolation:_:)``, for exclusive mode. A waiting task counts as a
    /// waiting writer: new shared holders wait behind it, in every thread and process.
    /// Inside `body`, ``previousHolderDied`` tells whether the previous exclusive holder died
    /// holding the lock (process scopes).
    ///
    /// - Parameters:
    ///   - isolation: the actor `body` runs on; leave it to its default, the caller's.
    ///   - body: the work to do alone; its error passes through.
    /// - Returns: what `body` returns.
    /// - Throws: `CancellationError` if the task is cancelled while it waits (its "writer
    ///   waiting" mark is withdrawn before the error is thrown, as for a timeout, and `body`
    ///   did not run); ``InterlockError/holderTableFull(name:capacity:)``,
    ///   ``InterlockError/systemCall(_:errno:)``, or the error `body` throws.
    /// - Warning: Exclusive mode is not recursive: taking this lock again inside `body`
    ///   traps, as inside ``withExclusive(_:)``.
    @inlinable @inline(__always)
    public func withExclusive<R, E: Error>(
        isolation: isolated (any Actor)? = #isolation, _ body: () throws(E) -> R
    ) async throws -> R {
        if let result = try withExclusiveIfAvailable(body) { return result }
        return try await waitAsync(exclusive: true, deadline: .max, isolation: isolation, body)
    }

    /// Runs `body` under shared mode, suspending the task for at most `timeout` while the
    /// lock is busy.
    ///
    /// - Parameters:
    ///   - timeout: the longest wait, on the monotonic clock; zero or negative tries once,
    ///     without suspending.
    ///   - isolation: the actor `body` runs on; leave it to its default, the caller's.
    ///   - body: the work to do under shared mode.
    /// - Returns: what `body` returns.
    /// - Throws: ``InterlockError/timedOut`` if the lock was not acquired in time,
    ///   `CancellationError` if the task was cancelled while it waited (in both cases
    ///   `body` did not run and nothing is left in the lock), the other errors of
    ///   ``withShared(isolation:_:)``, or the error `body` throws.
    public func withShared<R, E: Error>(
        timeout: Duration, isolation: isolated (any Actor)? = #isolation, _ body: () throws(E) -> R
    ) async throws -> R {
        let deadline = SharedLock.deadline(after: timeout)
        if timeout <= .zero { return try withSharedOnce(body) }
        if let result = try withSharedIfAvailable(body) { return result }
        return try await waitAsync(exclusive: false, deadline: deadline, isolation: isolation, body)
    }

    /// Runs `body` under exclusive mode, suspending the task for at most `timeout` while the
    /// lock is busy.
    ///
    /// - Parameters:
    ///   - timeout: the longest wait, on the monotonic clock; zero or negative tries once,
    ///     without suspending.
    ///   - isolation: the actor `body` runs on; leave it to its default, the caller's.
    ///   - body: the work to do alone.
    /// - Returns: what `body` returns.
    /// - Throws: ``InterlockError/timedOut`` if the lock was not acquired in time,
    ///   `CancellationError` if the task was cancelled while it waited (in both cases its
    ///   "writer waiting" mark is withdrawn and `body` did not run), the other errors of
    ///   ``withExclusive(isolation:_:)``, or the error `body` throws.
    public func withExclusive<R, E: Error>(
        timeout: Duration, isolation: isolated (any Actor)? = #isolation, _ body: () throws(E) -> R
    ) async throws -> R {
        let deadline = SharedLock.deadline(after: timeout)
        if timeout <= .zero { return try withExclusiveOnce(body) }
        if let result = try withExclusiveIfAvailable(body) { return result }
        return try await waitAsync(exclusive: true, deadline: deadline, isolation: isolation, body)
    }

    /// One attempt through the synchronous timed form (a synchronous context, where the
    /// manual forms are available), so that its errors come out as they do there.
    func withSharedOnce<R>(_ body: () throws -> R) throws -> R {
        try lockShared(timeout: .zero)
        defer { unlockShared() }
        return try body()
    }

    /// See ``withSharedOnce(_:)``.
    func withExclusiveOnce<R>(_ body: () throws -> R) throws -> R {
        try lockExclusive(timeout: .zero)
        defer { unlockExclusive() }
        return try body()
    }

    /// The slow path of every async form: the attempt without waiting failed. Queues a
    /// request with this process's waiter thread, suspends until it holds the lock for the
    /// task (or the wait ends with an error), then takes the hold over, runs `body` and
    /// releases it, on this thread.
    ///
    /// - Parameters:
    ///   - deadline: absolute CLOCK_MONOTONIC nanoseconds, `Int64.max` for none.
    @usableFromInline
    func waitAsync<R>(
        exclusive: Bool, deadline: Int64, isolation: isolated (any Actor)?, _ body: () throws -> R
    ) async throws -> R {
        let waiter = asyncWaiters.waiter()
        let request = AsyncRequest(lock: self, waiter: waiter, exclusive: exclusive, deadline: deadline)
        try await withTaskCancellationHandler(operation: {
            try await withUnsafeThrowingContinuation(isolation: isolation) { (acquired: UnsafeContinuation<Void, any Error>) in
                waiter.enqueue(request, acquired)
            }
        }, onCancel: {
            waiter.cancel(request)
        }, isolation: isolation)
        // The lock is held for us: take the hold over on this thread, run `body`, release.
        // `body` cannot suspend, so all of it happens on one thread.
        return try request.runGranted(body)
    }

    /// What this lock's waiter thread is doing in this process (for tests): see
    /// `AsyncWaiter.counts()`; nil if the lock has no waiter here.
    func asyncWaiterCounts() -> (queued: Int, acquiring: Bool, held: Int, granted: Int, cancelledAcquiring: Int)? {
        asyncWaiters.existing()?.counts()
    }
}
