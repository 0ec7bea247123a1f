// The scoped forms: run a closure while holding the lock.

extension SharedLock {
    /// Runs `body` while holding shared mode, and returns its result.
    ///
    /// Equivalent to:
    /// ```swift
    /// lock.lockShared()
    /// defer { lock.unlockShared() }
    /// return try body()
    /// ```
    /// Waits while a writer holds the lock or waits for it.
    ///
    /// - Parameter body: the work to do under shared mode; its error passes through.
    /// - Returns: what `body` returns.
    /// - Warning: Shared mode is not recursive: calling this from inside `body` on the
    ///   same lock deadlocks if a writer is waiting.
    @inlinable
    public func withShared<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        lockShared()
        defer { unlockShared() }
        return try body()
    }

    /// Runs `body` while holding exclusive mode, and returns its result.
    ///
    /// Equivalent to `lockExclusive()`, `defer { unlockExclusive() }`, `try body()`.
    /// Inside `body`, ``previousHolderDied`` tells whether the previous exclusive holder
    /// died holding the lock (process scopes).
    ///
    /// - Parameter body: the work to do alone; its error passes through.
    /// - Returns: what `body` returns.
    /// - Warning: Exclusive mode is not recursive: calling this from inside `body` on the
    ///   same lock traps.
    @inlinable
    public func withExclusive<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        lockExclusive()
        defer { unlockExclusive() }
        return try body()
    }

    /// Runs `body` under shared mode if it can be acquired without waiting.
    ///
    /// - Parameter body: the work to do under shared mode.
    /// - Returns: what `body` returns, or nil if a writer holds or waits for the lock.
    @inlinable
    public func withSharedIfAvailable<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R? {
        guard tryLockShared() else { return nil }
        defer { unlockShared() }
        return try body()
    }

    /// Runs `body` under exclusive mode if it can be acquired without waiting.
    ///
    /// - Parameter body: the work to do alone.
    /// - Returns: what `body` returns, or nil if anyone holds the lock.
    @inlinable
    public func withExclusiveIfAvailable<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R? {
        guard tryLockExclusive() else { return nil }
        defer { unlockExclusive() }
        return try body()
    }

    /// Runs `body` under shared mode, waiting at most `timeout` for it.
    ///
    /// - Parameters:
    ///   - timeout: the longest wait, on the monotonic clock.
    ///   - body: the work to do under shared mode.
    /// - Returns: what `body` returns.
    /// - Throws: ``InterlockError/timedOut`` if the lock was not acquired in time (then
    ///   `body` did not run), or the error `body` throws.
    public func withShared<R>(timeout: Duration, _ body: () throws -> R) throws -> R {
        try lockShared(timeout: timeout)
        defer { unlockShared() }
        return try body()
    }

    /// Runs `body` under exclusive mode, waiting at most `timeout` for it.
    ///
    /// - Parameters:
    ///   - timeout: the longest wait, on the monotonic clock.
    ///   - body: the work to do alone.
    /// - Returns: what `body` returns.
    /// - Throws: ``InterlockError/timedOut`` if the lock was not acquired in time (then
    ///   `body` did not run), or the error `body` throws.
    public func withExclusive<R>(timeout: Duration, _ body: () throws -> R) throws -> R {
        try lockExclusive(timeout: timeout)
        defer { unlockExclusive() }
        return try body()
    }
}
