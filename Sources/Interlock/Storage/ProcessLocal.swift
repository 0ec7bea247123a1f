#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// One value per process, fresh in every `fork()` child.
///
/// The value is made by `initial` on first use in each process. The threads of a
/// process share it, under a mutex. A child created by `fork()` does not see the
/// parent's value: its first access makes a new one, even if a parent thread was
/// inside ``withValue(_:)`` at the instant of the fork.
///
/// ```swift
/// let connection = ProcessLocal { Database.connect() }
/// connection.withValue { db in db.query("…") }   // each process has its own
/// ```
///
/// This is what a plain global gets wrong after `fork()`: the child inherits the
/// parent's connection, RNG state or cached pid.
///
/// In `async` code a `ProcessLocal` works as from threads: the body of ``withValue(_:)`` is
/// synchronous, so its mutex is never held across an `await`; keep it short, since a task
/// that waits for the mutex blocks its pool thread (see <doc:Concurrency>).
///
/// - Note: In a fork child the inherited value is abandoned, not destroyed: its
///   deinitialiser does not run in the child (it may own resources, such as a socket's
///   protocol state, that belong to the parent), and its storage is leaked, once per
///   fork. In the process that made it, the value is destroyed with the `ProcessLocal`.
public final class ProcessLocal<Value>: @unchecked Sendable {
    // Sendable: the value is only reachable inside `withValue`, under the per-process
    // mutex; the per-process state is published through an atomic (`ForkLocalPointer`).

    /// The per-process state, one raw block made by `ForkLocalPointer` in each process:
    /// ```
    ///  0  generation  UInt64                           fork generation it belongs to
    ///  8  value       Atomic<UnsafeMutableRawPointer?> the value, made on first use
    /// 16  mutex       pthread_mutex_t                  guards first use and every access
    /// ```
    /// A pthread mutex (not `Synchronization.Mutex`), so the thread sanitizer sees it.
    @usableFromInline let state: ForkLocalPointer
    private let initial: @Sendable () -> Value

    @usableFromInline static var valueOffset: Int { 8 }
    @usableFromInline static var mutexOffset: Int { 16 }

    /// Creates a per-process value.
    ///
    /// - Parameter initial: makes the value, once per process: on first use (also in
    ///   every fork child). Threads that race on the first use wait for it.
    public init(_ initial: @escaping @Sendable () -> Value) {
        self.initial = initial
        state = ForkLocalPointer(
            make: { generation in
                let p = UnsafeMutableRawPointer.allocate(
                    byteCount: ProcessLocal.mutexOffset + MemoryLayout<pthread_mutex_t>.stride, alignment: 16)
                p.storeBytes(of: generation, as: UInt64.self)
                (p + ProcessLocal.valueOffset).bindMemory(to: Atomic<UnsafeMutableRawPointer?>.self, capacity: 1)
                    .initialize(to: Atomic(nil))
                pthread_mutex_init((p + ProcessLocal.mutexOffset).assumingMemoryBound(to: pthread_mutex_t.self), nil)
                return p
            },
            discard: { $0.deallocate() })
    }

    deinit {
        // Only the process that owns the current state frees it (see the type's note).
        if let p = state.currentIfOwned() {
            if let value = ProcessLocal.valueSlot(p).pointee.load(ordering: .acquiring) {
                let typed = value.assumingMemoryBound(to: Value.self)
                typed.deinitialize(count: 1)
                typed.deallocate()
            }
            pthread_mutex_destroy(ProcessLocal.mutex(p))
            p.deallocate()
        }
    }

    @inlinable @inline(__always)
    static func valueSlot(_ p: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<UnsafeMutableRawPointer?>> {
        (p + valueOffset).assumingMemoryBound(to: Atomic<UnsafeMutableRawPointer?>.self)
    }

    @inlinable @inline(__always)
    static func mutex(_ p: UnsafeMutableRawPointer) -> UnsafeMutablePointer<pthread_mutex_t> {
        (p + mutexOffset).assumingMemoryBound(to: pthread_mutex_t.self)
    }

    /// Makes this process's value; called with the mutex held.
    @usableFromInline @inline(never)
    func makeValue(_ p: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Value> {
        let value = UnsafeMutablePointer<Value>.allocate(capacity: 1)
        value.initialize(to: initial())
        ProcessLocal.valueSlot(p).pointee.store(UnsafeMutableRawPointer(value), ordering: .releasing)
        return value
    }

    /// Runs `body` with exclusive access to this process's value.
    ///
    /// Equivalent to taking a per-process mutex, calling `body(&value)`, and releasing it.
    /// The first call in each process makes the value (under the same mutex).
    ///
    /// - Warning: Do not call ``withValue(_:)`` on the same `ProcessLocal` from inside
    ///   `body`: the mutex is not recursive, and that deadlocks.
    /// - Parameter body: reads or changes the value.
    /// - Returns: what `body` returns.
    @inlinable
    public func withValue<R, E: Error>(_ body: (inout sending Value) throws(E) -> sending R) throws(E) -> sending R {
        let p = state.get()
        let mutex = ProcessLocal.mutex(p)
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        let value = ProcessLocal.valueSlot(p).pointee.load(ordering: .relaxed)?.assumingMemoryBound(to: Value.self)
            ?? makeValue(p)
        return try body(&value.pointee)
    }
}

extension ProcessLocal where Value: Sendable {
    /// This process's value: a copy on read, a replacement on write.
    public var value: Value {
        @inlinable get { withValue { $0 } }
        @inlinable set { withValue { $0 = newValue } }
    }
}
