import Synchronization

/// A pointer to per-process state that is replaced, lazily, in every fork child.
///
/// The pointee's first 8 bytes hold the fork generation it was made in. `get()` is one
/// acquire load of the pointer, one load of the generation and one compare; on a
/// mismatch (the first access in a fork child) `refresh` makes new state and installs
/// it with a compare-and-swap. The inherited state is never touched again, and never
/// freed: it may hold a lock that a parent thread owned at the instant of `fork()`, and
/// its destruction could run code that is unsafe there. That leak is bounded by one
/// state per fork per object.
@usableFromInline
struct ForkLocalPointer: ~Copyable, @unchecked Sendable {
    // Sendable: the pointee is only reached through `get()`, whose result the owner
    // uses with its own synchronisation; the pointer itself is an atomic.
    @usableFromInline let current: Atomic<UnsafeMutableRawPointer>
    @usableFromInline let make: @Sendable (UInt64) -> UnsafeMutableRawPointer
    @usableFromInline let discard: @Sendable (UnsafeMutableRawPointer) -> Void

    /// - Parameters:
    ///   - make: allocates and initialises state for a generation, storing it in the
    ///     first 8 bytes.
    ///   - discard: frees state that lost the installation race (never published).
    init(
        make: @escaping @Sendable (UInt64) -> UnsafeMutableRawPointer,
        discard: @escaping @Sendable (UnsafeMutableRawPointer) -> Void
    ) {
        Fork.registerHandler()
        self.make = make
        self.discard = discard
        self.current = Atomic(make(Fork.currentGeneration))
    }

    /// The state of the current process (made on first use after a fork).
    @inlinable @inline(__always)
    func get() -> UnsafeMutableRawPointer {
        let p = current.load(ordering: .acquiring)
        if _fastPath(p.load(as: UInt64.self) == Fork.currentGeneration) { return p }
        return refresh(p)
    }

    /// The state if it belongs to this process, or nil if it was inherited and not yet replaced.
    func currentIfOwned() -> UnsafeMutableRawPointer? {
        let p = current.load(ordering: .acquiring)
        return p.load(as: UInt64.self) == Fork.currentGeneration ? p : nil
    }

    @usableFromInline @inline(never)
    func refresh(_ old: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        var old = old
        let generation = Fork.currentGeneration
        while true {
            if old.load(as: UInt64.self) == generation { return old }
            let fresh = make(generation)
            let (exchanged, seen) = current.compareExchange(
                expected: old, desired: fresh, ordering: .acquiringAndReleasing)
            if exchanged { return fresh }
            discard(fresh)
            old = seen
        }
    }
}
