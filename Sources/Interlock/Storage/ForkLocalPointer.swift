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
///
/// The replaced states are remembered, newest first, in `inherited` (a list of small
/// nodes, one per replacement, also leaked): read-only facts about the parent — which
/// thread held a lock at the instant of the fork, which shared holds the forking thread
/// had recorded — are read from them (see `forEachInherited`). They stay valid because
/// they are never freed.
@usableFromInline
struct ForkLocalPointer: ~Copyable, @unchecked Sendable {
    // Sendable: the pointee is only reached through `get()`, whose result the owner
    // uses with its own synchronisation; the pointer itself is an atomic.
    @usableFromInline let current: Atomic<UnsafeMutableRawPointer>
    @usableFromInline let make: @Sendable (UInt64) -> UnsafeMutableRawPointer
    @usableFromInline let discard: @Sendable (UnsafeMutableRawPointer) -> Void
    /// Head of the list of replaced (inherited) states: nodes of two words,
    /// `[state, next node]`, pushed before the replacement is published.
    let inherited: Atomic<UnsafeMutableRawPointer?>

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
        self.inherited = Atomic(nil)
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
            remember(old)
            let fresh = make(generation)
            let (exchanged, seen) = current.compareExchange(
                expected: old, desired: fresh, ordering: .acquiringAndReleasing)
            if exchanged { return fresh }
            discard(fresh)
            old = seen
        }
    }

    /// Pushes `old` on the list of inherited states, unless it is already the head (a
    /// racing refresher pushed it). Done before `old` is replaced, so whoever sees the
    /// replacement also sees the node.
    private func remember(_ old: UnsafeMutableRawPointer) {
        let node = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 8)
        node.storeBytes(of: old, as: UnsafeMutableRawPointer.self)
        var head = inherited.load(ordering: .acquiring)
        while true {
            if let head, head.load(as: UnsafeMutableRawPointer.self) == old { node.deallocate(); return }
            node.storeBytes(of: head, toByteOffset: 8, as: UnsafeMutableRawPointer?.self)
            let (exchanged, seen) = inherited.compareExchange(
                expected: head, desired: node, ordering: .acquiringAndReleasing)
            if exchanged { return }
            head = seen
        }
    }

    /// Calls `body` with each state this process inherited and replaced (newest first),
    /// until it returns true. Returns whether it did. Empty outside fork children.
    func forEachInherited(_ body: (UnsafeMutableRawPointer) -> Bool) -> Bool {
        var node = inherited.load(ordering: .acquiring)
        while let n = node {
            if body(n.load(as: UnsafeMutableRawPointer.self)) { return true }
            node = n.load(fromByteOffset: 8, as: UnsafeMutableRawPointer?.self)
        }
        return false
    }
}
