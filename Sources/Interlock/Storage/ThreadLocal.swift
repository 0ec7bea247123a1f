#if canImport(Glibc)
import Glibc
#endif
import CInterlock
import Synchronization

/// One value per thread, fresh in every `fork()` child.
///
/// Each thread's value is made by `initial` on its first access from that thread, and
/// destroyed when the thread exits. In a child created by `fork()`, the forking thread —
/// the only thread there — gets a fresh value on its first access, instead of the one its
/// parent thread had.
///
/// ```swift
/// let scratch = ThreadLocal { [UInt8](repeating: 0, count: 4096) }
/// scratch.withValue { buffer in buffer[0] = 1 }   // no locking: only this thread sees it
/// ```
///
/// **Limits and costs.**
/// - Any number of `ThreadLocal`s may exist: all of them share one pthread key (used only
///   to learn of thread exits), so they do not use up `PTHREAD_KEYS_MAX`. If the process
///   has no key left when the first `ThreadLocal` value is made, that traps with a
///   message saying so.
/// - The first 32 alive at once each get a fast slot (a read is two TLS loads and a
///   compare); a destroyed instance's slot goes to the next one made. Instances beyond
///   those 32 are read through a per-thread dictionary (a hash lookup).
/// - When a `ThreadLocal` is destroyed, every thread's value is destroyed, on the thread
///   that destroys it (values are not tied to their thread after that).
///
/// - Important: In `async` code, a task may continue on another thread after every `await`,
///   so a read before an `await` and one after it may see two threads' values. Use a
///   `ThreadLocal` there only within a synchronous stretch (a per-thread cache or scratch
///   buffer); for a value that follows the task, use `@TaskLocal` (see <doc:Concurrency>).
///
/// - Note: In a fork child the inherited value is abandoned without running its
///   deinitialiser (it may own resources that belong to the parent), once per fork per
///   instance; the values of the parent's other threads are abandoned the same way. A
///   thread that used more than 32 instances keeps a small dictionary entry for each
///   destroyed one until its dictionary next grows (then the dead ones are dropped) or the
///   thread exits.
public final class ThreadLocal<Value>: @unchecked Sendable {
    // Sendable: each thread only ever reaches its own cell (its TLS slot or dictionary),
    // cells are made and destroyed under `ThreadCells`'s rules, and `initial` is Sendable.

    /// Never reused: tags this instance's cells in every thread's slots.
    @usableFromInline let serial: UInt64
    /// This instance's fast slot, or -1 when all are taken by live instances.
    @usableFromInline let fastIndex: Int
    @usableFromInline let initial: @Sendable () -> Value

    /// Creates a per-thread value.
    ///
    /// - Parameter initial: makes the value, on each thread's first access (and again
    ///   in a fork child).
    public init(_ initial: @escaping @Sendable () -> Value) {
        Fork.registerHandler()
        self.initial = initial
        self.serial = ThreadCells.nextSerial.add(1, ordering: .relaxed).newValue
        self.fastIndex = ThreadCells.claimFastIndex()
    }

    deinit {
        ThreadCells.destroyAll(serial: serial, fastIndex: fastIndex)
    }

    /// The calling thread's value, made on first access.
    @inlinable @inline(__always)
    func slot() -> UnsafeMutablePointer<Value> {
        if fastIndex >= 0, let cell = cinterlock_thread_cell(fastIndex, serial),
           _fastPath(ThreadCells.generation(cell) == Fork.currentGeneration) {
            return ThreadCells.value(cell, as: Value.self)
        }
        return slotSlow()
    }

    /// No fast slot, or none filled for this thread (first access, or in a fork child).
    @usableFromInline @inline(never)
    func slotSlow() -> UnsafeMutablePointer<Value> {
        if fastIndex < 0, let cell = ThreadCells.overflowCell(serial: serial),
           ThreadCells.generation(cell) == Fork.currentGeneration {
            return ThreadCells.value(cell, as: Value.self)
        }
        // An inherited cell (fork child) is abandoned, not destroyed: see the type's note.
        let cell = ThreadCells.make(initial(), serial: serial, fastIndex: fastIndex)
        return ThreadCells.value(cell, as: Value.self)
    }

    /// Runs `body` with the calling thread's value.
    ///
    /// No lock is taken: only this thread can reach its value.
    ///
    /// - Parameter body: reads or changes the value.
    /// - Returns: what `body` returns.
    @inlinable
    public func withValue<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        try body(&slot().pointee)
    }

    /// The calling thread's value.
    public var value: Value {
        @inlinable get { slot().pointee }
        @inlinable set { slot().pointee = newValue }
    }
}
