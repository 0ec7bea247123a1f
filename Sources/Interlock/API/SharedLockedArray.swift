import Synchronization

/// How a process-scoped ``SharedLockedArray`` survives a writer that dies mid-write.
public enum SharedValueMode: Sendable, Equatable {
    /// Two copies of the data and the index of the committed one. Each exclusive hold
    /// first copies the whole committed copy over the other (O(count): `count × stride`
    /// bytes), the closure writes that one, and a single atomic store commits it when the
    /// closure returns. A writer killed at any instruction, or a closure that throws,
    /// commits nothing: everyone keeps seeing the last committed data. Twice the memory.
    case crashAtomic
    /// One copy, written in place: an exclusive hold costs nothing beyond the lock, but a
    /// writer killed mid-write may leave the data torn (and a closure that throws keeps
    /// the changes it made). The next writer's closure is told (`previousWriterDied`) so
    /// that it can repair; readers before it may see the torn data.
    case inPlace
}

/// A fixed number of `BitwiseCopyable` elements reached only under a ``SharedLock``:
/// shared mode to read, exclusive mode to write — like Python's
/// `multiprocessing.Array('d', n)`, with the count chosen at creation.
///
/// ```swift
/// let samples = try SharedLockedArray<Double>.forkShared(count: 1024, repeating: 0)
/// samples.withExclusive { values, _ in values[7] = 3.5 }
/// let first = samples.withShared { $0[0] }
/// ```
///
/// The elements are reached as a `Span` (read) or `MutableSpan` (write) that cannot
/// outlive the closure. Scopes are those of ``SharedLocked``: ``forkShared(count:repeating:mode:capacity:)``,
/// ``init(named:count:repeating:mode:options:)``, ``init(path:count:repeating:mode:options:)``
/// for processes (the data lives in the lock's segment, which records the element
/// size, alignment, count, mode and layout tag, checked when another process opens it),
/// and ``init(count:repeating:)`` for the threads of this process. See
/// ``SharedValueMode`` for the cost and crash behaviour of each mode.
public final class SharedLockedArray<Element: BitwiseCopyable> {
    @usableFromInline let lock: SharedLock
    /// Where the elements live: the lock's segment, or `owned` in the threads scope.
    /// Valid as long as `lock` (which owns the mapping) and `owned` live.
    @usableFromInline let region: ValueRegion
    /// The number of elements.
    public let count: Int
    /// How the data survives a writer's death (``SharedValueMode/inPlace`` in the threads
    /// scope, where no writer can die alone).
    public let mode: SharedValueMode
    /// Threads scope: the allocation `region` points into (freed at deinit).
    let owned: UnsafeMutableRawPointer?
    /// Threads scope: the fork generation in which a writer last checked for a write cut
    /// off by `fork()` (see ``withExclusive(_:)``).
    @usableFromInline let checkedGeneration: Atomic<UInt64>

    private init(lock: SharedLock, region: ValueRegion, count: Int, mode: SharedValueMode, owned: UnsafeMutableRawPointer?) {
        self.lock = lock
        self.region = region
        self.count = count
        self.mode = mode
        self.owned = owned
        self.checkedGeneration = Atomic(Fork.currentGeneration)
    }

    /// Creates `count` elements for the threads of this process, all `repeating`.
    ///
    /// Written in place. After `fork()`, if another thread of the parent was inside
    /// ``withExclusive(_:)`` at the instant of the fork, the child's copy may be torn; the
    /// child's first writer is then told through its `previousWriterDied` argument.
    ///
    /// - Throws: ``InterlockError/invalidSharedValue(reason:)`` for a zero count, an
    ///   element with no bytes, or more than 1 GiB.
    public convenience init(count: Int, repeating element: Element) throws(InterlockError) {
        let layout = try ValueLayout.of(Element.self, count: count, copies: 1, tag: 0).get()
        let unit = max(64, layout.elementAlignment)
        // 64 bytes for the (unused) committed word, then the elements.
        let memory = UnsafeMutableRawPointer.allocate(byteCount: unit + layout.valueSize, alignment: unit)
        let committed = memory.initializeMemory(as: Atomic<UInt32>.self, to: Atomic(0))
        (memory + unit).initializeMemory(as: Element.self, repeating: element, count: count)
        let region = ValueRegion(first: memory + unit, copyStride: layout.valueSize, valueSize: layout.valueSize,
                                 copies: 1, committed: committed)
        self.init(lock: SharedLock(), region: region, count: count, mode: .inPlace, owned: memory)
    }

    /// Creates `count` elements in anonymous shared memory (a memfd), for this process
    /// and the children it forks afterwards; each child uses the array it inherited.
    ///
    /// - Parameters:
    ///   - count: the number of elements (at least 1; at most 1 GiB of bytes in all).
    ///   - element: the initial value of every element.
    ///   - mode: ``SharedValueMode/crashAtomic`` (default) or ``SharedValueMode/inPlace``.
    ///   - capacity: how many processes can use it at once (1…4095).
    /// - Throws: ``InterlockError/invalidSharedValue(reason:)``,
    ///   ``InterlockError/invalidCapacity(_:)`` or ``InterlockError/systemCall(_:errno:)``.
    public static func forkShared(
        count: Int, repeating element: Element, mode: SharedValueMode = .crashAtomic, capacity: Int = 64
    ) throws(InterlockError) -> SharedLockedArray {
        let value = try initial(count: count, element, mode: mode, tag: 0)
        return SharedLockedArray(
            lock: try SharedLock.withValue(.forkShared, capacity: capacity, options: NamedLockOptions(), value: value), mode: mode)
    }

    /// Opens or creates the named lock `name` with `count` elements in its segment,
    /// shared by every process that opens it.
    ///
    /// The creator fills the elements with `element`; an opener sees the existing data.
    /// Opening a lock made with another element size or alignment, count, mode or
    /// ``NamedLockOptions/layoutTag`` is ``InterlockError/incompatibleSegment(name:reason:)``
    /// and changes nothing. Otherwise as ``SharedLock/init(named:options:)``.
    ///
    /// - Parameters:
    ///   - name: 1 to 200 bytes, without `/`.
    ///   - count: the number of elements (at least 1; at most 1 GiB of bytes in all).
    ///   - element: the initial value of every element, if this call creates the lock.
    ///   - mode: ``SharedValueMode/crashAtomic`` (default) or ``SharedValueMode/inPlace``.
    ///   - options: creation mode, permissions, capacity and layout tag.
    /// - Throws: the errors of ``SharedLock/init(named:options:)``,
    ///   ``InterlockError/incompatibleSegment(name:reason:)`` or
    ///   ``InterlockError/invalidSharedValue(reason:)``.
    public convenience init(
        named name: String, count: Int, repeating element: Element, mode: SharedValueMode = .crashAtomic,
        options: NamedLockOptions = NamedLockOptions()
    ) throws(InterlockError) {
        let value = try Self.initial(count: count, element, mode: mode, tag: options.layoutTag)
        self.init(lock: try SharedLock.withValue(.named(name), capacity: options.capacity, options: options, value: value), mode: mode)
    }

    /// Opens or creates the lock file at `path` with `count` elements in it, shared by
    /// every process that opens it.
    ///
    /// As ``init(named:count:repeating:mode:options:)``, for a lock file (see
    /// ``SharedLock/init(path:options:)``).
    ///
    /// - Parameters:
    ///   - path: the lock file's path.
    ///   - count: the number of elements (at least 1; at most 1 GiB of bytes in all).
    ///   - element: the initial value of every element, if this call creates the file.
    ///   - mode: ``SharedValueMode/crashAtomic`` (default) or ``SharedValueMode/inPlace``.
    ///   - options: creation mode, permissions, capacity and layout tag.
    /// - Throws: the errors of ``SharedLock/init(path:options:)``,
    ///   ``InterlockError/incompatibleSegment(name:reason:)`` or
    ///   ``InterlockError/invalidSharedValue(reason:)``.
    public convenience init(
        path: String, count: Int, repeating element: Element, mode: SharedValueMode = .crashAtomic,
        options: NamedLockOptions = NamedLockOptions()
    ) throws(InterlockError) {
        let value = try Self.initial(count: count, element, mode: mode, tag: options.layoutTag)
        self.init(lock: try SharedLock.withValue(.path(path), capacity: options.capacity, options: options, value: value), mode: mode)
    }

    private convenience init(lock: SharedLock, mode: SharedValueMode) {
        guard let value = lock.segment?.value else { preconditionFailure("Interlock: a process-scoped array without a value region") }
        self.init(lock: lock, region: value.region, count: value.layout.count, mode: mode, owned: nil)
    }

    private static func initial(count: Int, _ element: Element, mode: SharedValueMode, tag: UInt32) throws(InterlockError) -> InitialValue {
        let layout = try ValueLayout.of(Element.self, count: count, copies: mode == .crashAtomic ? 2 : 1, tag: tag).get()
        return InitialValue(layout: layout) { $0.initializeMemory(as: Element.self, repeating: element, count: count) }
    }

    deinit {
        owned?.deallocate()
    }

    /// Which threads and processes share the elements (the scope of its lock).
    public var scope: SharedLock.Scope { lock.scope }

    /// A snapshot of the lock's shared state, or nil in the threads scope (see
    /// ``SharedLock/snapshot()``).
    public func snapshot() -> LockSnapshot? { lock.snapshot() }

    // MARK: Access

    /// Runs `body` with read access to the elements, under shared mode.
    ///
    /// - Parameter body: reads the elements through a span that cannot outlive it.
    /// - Returns: what `body` returns.
    @inlinable
    public func withShared<R, E: Error>(_ body: (Span<Element>) throws(E) -> R) throws(E) -> R {
        lock.lockShared()
        defer { lock.unlockShared() }
        return try read(body)
    }

    /// Runs `body` with write access to the elements, under exclusive mode.
    ///
    /// In ``SharedValueMode/crashAtomic`` mode the changes are committed when `body`
    /// returns, and not at all if it throws or its process dies; in
    /// ``SharedValueMode/inPlace`` mode they are made in place as `body` runs.
    ///
    /// - Parameter body: changes the elements. Its second argument, `previousWriterDied`,
    ///   is true in the first exclusive hold after a writer died in the middle of its
    ///   update (from its start to its commit; the notice belongs to the array, so a plain
    ///   `SharedLock` on the same name does not take it): in place, the data may be torn
    ///   and `body` should repair it; crash-atomic, the data is the last committed one and
    ///   the flag is for information.
    /// - Warning: Do not `fork()` inside `body`: the child returns into the parent's
    ///   hold and its writes land in the parent's copy (the child never commits it).
    /// - Returns: what `body` returns.
    @inlinable
    public func withExclusive<R, E: Error>(
        _ body: (inout MutableSpan<Element>, _ previousWriterDied: Bool) throws(E) -> R
    ) throws(E) -> R {
        lock.lockExclusive()
        defer { lock.unlockExclusive() }
        return try write(body)
    }

    /// Runs `body` with read access if shared mode is available without waiting.
    ///
    /// - Parameter body: reads the elements.
    /// - Returns: what `body` returns, or nil if a writer holds or waits for the lock.
    @inlinable
    public func withSharedIfAvailable<R, E: Error>(_ body: (Span<Element>) throws(E) -> R) throws(E) -> R? {
        guard lock.tryLockShared() else { return nil }
        defer { lock.unlockShared() }
        return try read(body)
    }

    /// Runs `body` with write access if exclusive mode is available without waiting (as
    /// ``withExclusive(_:)``).
    ///
    /// - Parameter body: changes the elements; see ``withExclusive(_:)``.
    /// - Returns: what `body` returns, or nil if anyone holds the lock.
    @inlinable
    public func withExclusiveIfAvailable<R, E: Error>(
        _ body: (inout MutableSpan<Element>, _ previousWriterDied: Bool) throws(E) -> R
    ) throws(E) -> R? {
        guard lock.tryLockExclusive() else { return nil }
        defer { lock.unlockExclusive() }
        return try write(body)
    }

    /// Runs `body` with read access, waiting at most `timeout` for shared mode.
    ///
    /// - Parameters:
    ///   - timeout: the longest wait, on the monotonic clock.
    ///   - body: reads the elements.
    /// - Returns: what `body` returns.
    /// - Throws: ``InterlockError/timedOut`` if the lock was not acquired in time (then
    ///   `body` did not run), or the error `body` throws.
    public func withShared<R>(timeout: Duration, _ body: (Span<Element>) throws -> R) throws -> R {
        try lock.lockShared(timeout: timeout)
        defer { lock.unlockShared() }
        return try read(body)
    }

    /// Runs `body` with write access, waiting at most `timeout` for exclusive mode (as
    /// ``withExclusive(_:)``).
    ///
    /// - Parameters:
    ///   - timeout: the longest wait, on the monotonic clock.
    ///   - body: changes the elements; see ``withExclusive(_:)``.
    /// - Returns: what `body` returns.
    /// - Throws: ``InterlockError/timedOut`` if the lock was not acquired in time (then
    ///   `body` did not run), or the error `body` throws.
    public func withExclusive<R>(
        timeout: Duration, _ body: (inout MutableSpan<Element>, _ previousWriterDied: Bool) throws -> R
    ) throws -> R {
        try lock.lockExclusive(timeout: timeout)
        defer { lock.unlockExclusive() }
        return try write(body)
    }

    /// Reads the committed copy; the caller holds the lock in either mode.
    @inlinable @inline(__always)
    func read<R, E: Error>(_ body: (Span<Element>) throws(E) -> R) throws(E) -> R {
        // Invariant: the region holds `count` initialised elements (made or validated for
        // `Element`), and the span does not outlive the hold (it cannot escape `body`).
        let buffer = UnsafeBufferPointer(start: region.committedCopy(as: Element.self), count: count)
        return try body(buffer.span)
    }

    /// Writes a copy (or in place) and commits; the caller holds exclusive mode.
    @inlinable @inline(__always)
    func write<R, E: Error>(_ body: (inout MutableSpan<Element>, _ previousWriterDied: Bool) throws(E) -> R) throws(E) -> R {
        var cutByFork = false
        if _slowPath(checkedGeneration.load(ordering: .relaxed) != Fork.currentGeneration) { cutByFork = checkAfterFork() }
        let count = self.count
        return try region.update(as: Element.self) { (first, died) throws(E) -> R in
            // Invariant: as in `read`; exclusive mode is held, so nobody else writes.
            var span = UnsafeMutableBufferPointer(start: first, count: count).mutableSpan
            return try body(&span, died || cutByFork)
        }
    }

    /// First write in a fork child: whether a thread of the parent (threads scope) was
    /// cut off mid-write by the fork. Process scopes are not copied by fork: false.
    @usableFromInline @inline(never)
    func checkAfterFork() -> Bool {
        checkedGeneration.store(Fork.currentGeneration, ordering: .relaxed)
        return owned != nil && lock.wasHeldExclusivelyByAnotherThreadAtFork()
    }
}

// Sendable when the element is: the elements are reached only inside the scoped forms,
// under shared mode (several threads may read at once) or exclusive mode (one writer);
// `region` and `owned` are fixed at creation.
extension SharedLockedArray: @unchecked Sendable where Element: Sendable {}
