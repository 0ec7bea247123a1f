/// A value that can be reached only under a ``SharedLock``: shared mode to read,
/// exclusive mode to write.
///
/// ```swift
/// let config = SharedLocked(["mode": "fast"])
/// let mode = config.withShared { $0["mode"] }        // many readers at once
/// config.withExclusive { $0["mode"] = "safe" }       // one writer
/// ```
///
/// The lock coordinates the threads of this process (the value lives in its memory).
public final class SharedLocked<Value> {
    @usableFromInline let lock = SharedLock()
    @usableFromInline var value: Value

    /// Wraps `value`.
    public init(_ value: Value) { self.value = value }

    /// Runs `body` with read access to the value, under shared mode.
    ///
    /// - Parameter body: reads the value; it must not let the value escape in a way that
    ///   outlives the hold (copy what you need).
    /// - Returns: what `body` returns.
    @inlinable
    public func withShared<R, E: Error>(_ body: (borrowing Value) throws(E) -> R) throws(E) -> R {
        try lock.withShared { () throws(E) -> R in try body(value) }
    }

    /// Runs `body` with write access to the value, under exclusive mode.
    ///
    /// - Parameter body: reads and changes the value.
    /// - Returns: what `body` returns.
    @inlinable
    public func withExclusive<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        try lock.withExclusive { () throws(E) -> R in try body(&value) }
    }
}

// Sendable when the value is: `value` is only reached inside the lock's scoped forms —
// reads under shared mode (several threads may borrow it at once, hence `Value: Sendable`),
// writes under exclusive mode.
extension SharedLocked: @unchecked Sendable where Value: Sendable {}
