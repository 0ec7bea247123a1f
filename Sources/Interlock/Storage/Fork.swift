import CInterlock

/// The fork generation of the current process.
///
/// Every `fork()` child starts with a generation one higher than its parent's at the
/// instant of the fork. State tagged with the generation it was made in can tell, with
/// one load, whether it was inherited from a parent; ``ProcessLocal``, ``ThreadLocal``
/// and ``SharedLock`` all work this way.
///
/// The counter is bumped by a `pthread_atfork` child handler that does nothing else
/// (the child of a multi-threaded process may only do async-signal-safe work).
/// Interlock registers the handler the first time any of its types is created;
/// reading ``generation`` also registers it.
public enum Fork {
    /// The current fork generation: 0 in a process that was not forked since
    /// Interlock registered its handler, and one more in each forked child.
    ///
    /// Use it to build your own fork-aware state: remember the generation a value was
    /// made in, and make a fresh one when they differ.
    public static var generation: UInt64 {
        registerHandler()
        return cinterlock_fork_generation()
    }

    /// The current generation, without registering the handler (for hot paths of
    /// types whose initialiser already registered it).
    @inlinable
    static var currentGeneration: UInt64 { cinterlock_fork_generation() }

    /// Registers the `pthread_atfork` child handler (once per process; idempotent).
    @usableFromInline
    static func registerHandler() {
        let rc = cinterlock_register_atfork()
        precondition(rc == 0, "Interlock: pthread_atfork failed (errno \(rc)); fork detection is unavailable")
    }
}
