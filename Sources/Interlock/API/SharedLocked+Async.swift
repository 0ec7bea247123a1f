// The async scoped forms of `SharedLocked` and `SharedLockedArray`: as those of `SharedLock`
// (see `SharedLock+Async.swift`), with the value reached inside the synchronous body.

extension SharedLocked {
    /// Runs `body` with read access to the value, under shared mode, suspending the task
    /// (not blocking its thread) while the lock is busy.
    ///
    /// As ``SharedLock/withShared(isolation:_:)``: taken at once when free; otherwise the
    /// task suspends until the lock's waiter thread holds the lock for it.
    ///
    /// - Parameters:
    ///   - isolation: the actor `body` runs on; leave it to its default, the caller's.
    ///   - body: reads the value (synchronously: a hold never spans an `await`).
    /// - Returns: what `body` returns.
    /// - Throws: `CancellationError` if the task is cancelled while it waits, the other
    ///   errors of ``SharedLock/withShared(isolation:_:)``, or the error `body` throws.
    /// - Precondition: The value is not poisoned (see the type's note on `fork()`).
    @inlinable @inline(__always)
    public func withShared<R, E: Error>(
        isolation: isolated (any Actor)? = #isolation, _ body: (borrowing Value) throws(E) -> R
    ) async throws -> R {
        if let result = try withSharedIfAvailable(body) { return result }
        return try await lock.waitAsync(exclusive: false, deadline: .max, isolation: isolation) { try read(body) }
    }

    /// Runs `body` with write access to the value, under exclusive mode, suspending the task
    /// (not blocking its thread) while the lock is busy.
    ///
    /// Committed as by ``withExclusive(_:)`` (process scopes: when `body` returns, and not at
    /// all if it throws or its process dies); inside `body`, ``previousWriterDied`` tells
    /// whether the previous writer died.
    ///
    /// - Parameters:
    ///   - isolation: the actor `body` runs on; leave it to its default, the caller's.
    ///   - body: reads and changes the value (synchronously).
    /// - Returns: what `body` returns.
    /// - Throws: `CancellationError` if the task is cancelled while it waits (its "writer
    ///   waiting" mark is withdrawn first), the other errors of
    ///   ``SharedLock/withExclusive(isolation:_:)``, or the error `body` throws.
    /// - Precondition: The value is not poisoned (see the type's note on `fork()`).
    @inlinable @inline(__always)
    public func withExclusive<R, E: Error>(
        isolation: isolated (any Actor)? = #isolation, _ body: (inout Value) throws(E) -> R
    ) async throws -> R {
        if let result = try withExclusiveIfAvailable(body) { return result }
        return try await lock.waitAsync(exclusive: true, deadline: .max, isolation: isolation) { try write(body) }
    }

    /// Runs `body` with read access to the value, suspending the task for at most `timeout`
    /// while the lock is busy.
    ///
    /// - Parameters:
    ///   - timeout: the longest wait, on the monotonic clock; zero or negative tries once.
    ///   - isolation: the actor `body` runs on; leave it to its default, the caller's.
    ///   - body: reads the value.
    /// - Returns: what `body` returns.
    /// - Throws: ``InterlockError/timedOut`` if the lock was not acquired in time (then
    ///   `body` did not run), `CancellationError`, the other errors of
    ///   ``SharedLock/withShared(timeout:isolation:_:)``, or the error `body` throws.
    public func withShared<R, E: Error>(
        timeout: Duration, isolation: isolated (any Actor)? = #isolation, _ body: (borrowing Value) throws(E) -> R
    ) async throws -> R {
        try await lock.withShared(timeout: timeout, isolation: isolation) { try read(body) }
    }

    /// Runs `body` with write access to the value, suspending the task for at most
    /// `timeout` while the lock is busy (committed as by ``withExclusive(_:)``).
    ///
    /// - Parameters:
    ///   - timeout: the longest wait, on the monotonic clock; zero or negative tries once.
    ///   - isolation: the actor `body` runs on; leave it to its default, the caller's.
    ///   - body: reads and changes the value.
    /// - Returns: what `body` returns.
    /// - Throws: ``InterlockError/timedOut`` if the lock was not acquired in time (then
    ///   `body` did not run), `CancellationError`, the other errors of
    ///   ``SharedLock/withExclusive(timeout:isolation:_:)``, or the error `body` throws.
    public func withExclusive<R, E: Error>(
        timeout: Duration, isolation: isolated (any Actor)? = #isolation, _ body: (inout Value) throws(E) -> R
    ) async throws -> R {
        try await lock.withExclusive(timeout: timeout, isolation: isolation) { try write(body) }
    }
}

extension SharedLockedArray {
    /// Runs `body` with read access to the elements, under shared mode, suspending the task
    /// (not blocking its thread) while the lock is busy.
    ///
    /// As ``SharedLock/withShared(isolation:_:)``: taken at once when free; otherwise the
    /// task suspends until the lock's waiter thread holds the lock for it.
    ///
    /// - Parameters:
    ///   - isolation: the actor `body` runs on; leave it to its default, the caller's.
    ///   - body: reads the elements through a span that cannot outlive it (synchronously).
    /// - Returns: what `body` returns.
    /// - Throws: `CancellationError` if the task is cancelled while it waits, the other
    ///   errors of ``SharedLock/withShared(isolation:_:)``, or the error `body` throws.
    @inlinable @inline(__always)
    public func withShared<R, E: Error>(
        isolation: isolated (any Actor)? = #isolation, _ body: (Span<Element>) throws(E) -> R
    ) async throws -> R {
        if let result = try withSharedIfAvailable(body) { return result }
        return try await lock.waitAsync(exclusive: false, deadline: .max, isolation: isolation) { try read(body) }
    }

    /// Runs `body` with write access to the elements, under exclusive mode, suspending the
    /// task (not blocking its thread) while the lock is busy.
    ///
    /// Committed as by ``withExclusive(_:)``.
    ///
    /// - Parameters:
    ///   - isolation: the actor `body` runs on; leave it to its default, the caller's.
    ///   - body: changes the elements (synchronously); its second argument is
    ///     `previousWriterDied`, as for ``withExclusive(_:)``.
    /// - Returns: what `body` returns.
    /// - Throws: `CancellationError` if the task is cancelled while it waits (its "writer
    ///   waiting" mark is withdrawn first), the other errors of
    ///   ``SharedLock/withExclusive(isolation:_:)``, or the error `body` throws.
    @inlinable @inline(__always)
    public func withExclusive<R, E: Error>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: (inout MutableSpan<Element>, _ previousWriterDied: Bool) throws(E) -> R
    ) async throws -> R {
        if let result = try withExclusiveIfAvailable(body) { return result }
        return try await lock.waitAsync(exclusive: true, deadline: .max, isolation: isolation) { try write(body) }
    }

    /// Runs `body` with read access, suspending the task for at most `timeout` while the
    /// lock is busy.
    ///
    /// - Parameters:
    ///   - timeout: the longest wait, on the monotonic clock; zero or negative tries once.
    ///   - isolation: the actor `body` runs on; leave it to its default, the caller's.
    ///   - body: reads the elements.
    /// - Returns: what `body` returns.
    /// - Throws: ``InterlockError/timedOut`` if the lock was not acquired in time (then
    ///   `body` did not run), `CancellationError`, the other errors of
    ///   ``SharedLock/withShared(timeout:isolation:_:)``, or the error `body` throws.
    public func withShared<R, E: Error>(
        timeout: Duration, isolation: isolated (any Actor)? = #isolation, _ body: (Span<Element>) throws(E) -> R
    ) async throws -> R {
        try await lock.withShared(timeout: timeout, isolation: isolation) { try read(body) }
    }

    /// Runs `body` with write access, suspending the task for at most `timeout` while the
    /// lock is busy (as ``withExclusive(_:)``).
    ///
    /// - Parameters:
    ///   - timeout: the longest wait, on the monotonic clock; zero or negative tries once.
    ///   - isolation: the actor `body` runs on; leave it to its default, the caller's.
    ///   - body: changes the elements; see ``withExclusive(_:)``.
    /// - Returns: what `body` returns.
    /// - Throws: ``InterlockError/timedOut`` if the lock was not acquired in time (then
    ///   `body` did not run), `CancellationError`, the other errors of
    ///   ``SharedLock/withExclusive(timeout:isolation:_:)``, or the error `body` throws.
    public func withExclusive<R, E: Error>(
        timeout: Duration, isolation: isolated (any Actor)? = #isolation,
        _ body: (inout MutableSpan<Element>, _ previousWriterDied: Bool) throws(E) -> R
    ) async throws -> R {
        try await lock.withExclusive(timeout: timeout, isolation: isolation) { try write(body) }
    }
}
