import Synchronization

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
///
/// **After `fork()`.** The child gets a copy of the value and a free lock. If another
/// thread of the parent was inside ``withExclusive(_:)`` at the instant of the fork, the
/// copy may be half-written (a `Dictionary` caught mid-resize is corrupt memory, not a
/// wrong number), and no thread in the child will ever finish the write. The value is
/// then *poisoned* in that child and its descendants: every ``withShared(_:)`` and
/// ``withExclusive(_:)`` there traps with a message. A fork by the writing thread
/// itself, or while other threads only read, poisons nothing.
///
/// - Warning: A poisoned child should not let the `SharedLocked` be deinitialised
///   either (that destroys the half-written value); end such a child with `_exit`.
public final class SharedLocked<Value> {
    @usableFromInline let lock = SharedLock()
    @usableFromInline var value: Value
    /// The fork generation in which the value was last found safe (not poisoned).
    /// One relaxed load per access; a mismatch (the first access in a fork child)
    /// checks the parent's lock state, out of line.
    @usableFromInline let checkedGeneration: Atomic<UInt64>

    /// Wraps `value`.
    public init(_ value: Value) {
        self.value = value
        self.checkedGeneration = Atomic(Fork.currentGeneration)
    }

    /// Runs `body` with read access to the value, under shared mode.
    ///
    /// - Parameter body: reads the value; it must not let the value escape in a way that
    ///   outlives the hold (copy what you need).
    /// - Returns: what `body` returns.
    /// - Precondition: The value is not poisoned (see the type's note on `fork()`).
    @inlinable
    public func withShared<R, E: Error>(_ body: (borrowing Value) throws(E) -> R) throws(E) -> R {
        try lock.withShared { () throws(E) -> R in
            checkNotPoisoned()
            return try body(value)
        }
    }

    /// Runs `body` with write access to the value, under exclusive mode.
    ///
    /// - Parameter body: reads and changes the value.
    /// - Returns: what `body` returns.
    /// - Precondition: The value is not poisoned (see the type's note on `fork()`).
    @inlinable
    public func withExclusive<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        try lock.withExclusive { () throws(E) -> R in
            checkNotPoisoned()
            return try body(&value)
        }
    }

    /// Traps if the value is poisoned: called under the lock, once the lock's state of
    /// this process exists (so it knows what it inherited).
    @inlinable @inline(__always)
    func checkNotPoisoned() {
        if _slowPath(checkedGeneration.load(ordering: .relaxed) != Fork.currentGeneration) { checkAfterFork() }
    }

    @usableFromInline @inline(never)
    func checkAfterFork() {
        if lock.wasHeldExclusivelyByAnotherThreadAtFork() {
            fatalError("Interlock: SharedLocked<\(Value.self)> is poisoned in this fork() child: another thread of the "
                + "parent was inside withExclusive at the instant of the fork, so the value may be half-written. "
                + "Fork while no other thread writes it, or make the value again in the child.")
        }
        checkedGeneration.store(Fork.currentGeneration, ordering: .relaxed)
    }
}

// Sendable when the value is: `value` is only reached inside the lock's scoped forms —
// reads under shared mode (several threads may borrow it at once, hence `Value: Sendable`),
// writes under exclusive mode.
extension SharedLocked: @unchecked Sendable where Value: Sendable {}
