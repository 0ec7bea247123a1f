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
/// - Note: In a fork child the inherited value is abandoned, not destroyed: its
///   deinitialiser does not run in the child (it may own resources, such as a socket's
///   protocol state, that belong to the parent), and its storage is leaked, once per
///   fork. In the process that made it, the value is destroyed with the `ProcessLocal`.
public final class ProcessLocal<Value>: @unchecked Sendable {
    // Sendable: the value is only reachable inside `box.storage.withLock`, and the box
    // pointer is published through an atomic (`ForkLocalPointer`).

    /// The value of one process and the pthread mutex that guards it. (A pthread mutex
    /// rather than `Synchronization.Mutex`: the thread sanitizer understands it, so
    /// `swift test --sanitize=thread` checks code that uses `ProcessLocal`.)
    @usableFromInline
    final class Box {
        @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
        @usableFromInline var value: Value
        init(_ value: consuming Value) {
            mutex = .allocate(capacity: 1)
            let rc = pthread_mutex_init(mutex, nil)
            precondition(rc == 0, "Interlock: pthread_mutex_init failed (errno \(rc))")
            self.value = value
        }
        deinit {
            pthread_mutex_destroy(mutex)
            mutex.deallocate()
        }
    }

    @usableFromInline let state: ForkLocalPointer
    private let initial: @Sendable () -> Value

    /// Creates a per-process value.
    ///
    /// - Parameter initial: makes the value, once per process: on first use (also in
    ///   every fork child). Threads that race on the first use wait for it.
    public init(_ initial: @escaping @Sendable () -> Value) {
        self.initial = initial
        // The pointee is [fork generation: UInt64][Unmanaged<Box>?][pthread_mutex_t]; the
        // box is made lazily, under the mutex, so `initial` runs once per process.
        state = ForkLocalPointer(
            make: { generation in
                let p = UnsafeMutableRawPointer.allocate(
                    byteCount: ProcessLocal.mutexOffset + MemoryLayout<pthread_mutex_t>.stride, alignment: 16)
                p.storeBytes(of: generation, as: UInt64.self)
                p.storeBytes(of: nil, toByteOffset: 8, as: UnsafeMutableRawPointer?.self)
                pthread_mutex_init((p + ProcessLocal.mutexOffset).assumingMemoryBound(to: pthread_mutex_t.self), nil)
                return p
            },
            discard: { $0.deallocate() })
    }

    private static var mutexOffset: Int { 16 }

    deinit {
        // Only the process that owns the current state frees it (see the type's note).
        if let p = state.currentIfOwned() {
            if let box = p.load(fromByteOffset: 8, as: UnsafeMutableRawPointer?.self) {
                Unmanaged<Box>.fromOpaque(box).release()
            }
            pthread_mutex_destroy((p + ProcessLocal.mutexOffset).assumingMemoryBound(to: pthread_mutex_t.self))
            p.deallocate()
        }
    }

    /// The box of this process, made on first use.
    @inlinable @inline(__always)
    func box() -> Unmanaged<Box> {
        let p = state.get()
        let atomicBox = p.advanced(by: 8).assumingMemoryBound(to: Atomic<UnsafeMutableRawPointer?>.self)
        if let b = atomicBox.pointee.load(ordering: .acquiring) { return Unmanaged<Box>.fromOpaque(b) }
        return makeBox(atomicBox)
    }

    @usableFromInline @inline(never)
    func makeBox(_ slot: UnsafeMutablePointer<Atomic<UnsafeMutableRawPointer?>>) -> Unmanaged<Box> {
        // Serialise first uses so `initial` runs once in this process.
        let mutex = (UnsafeMutableRawPointer(slot) - 8 + ProcessLocal.mutexOffset)
            .assumingMemoryBound(to: pthread_mutex_t.self)
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if let made = slot.pointee.load(ordering: .acquiring) { return Unmanaged<Box>.fromOpaque(made) }
        let fresh = Unmanaged.passRetained(Box(initial()))
        slot.pointee.store(fresh.toOpaque(), ordering: .releasing)
        return fresh
    }

    /// Runs `body` with exclusive access to this process's value.
    ///
    /// Equivalent to taking a per-process mutex, calling `body(&value)`, and releasing it.
    ///
    /// - Warning: Do not call ``withValue(_:)`` on the same `ProcessLocal` from inside
    ///   `body`: the mutex is not recursive, and that deadlocks.
    /// - Parameter body: reads or changes the value.
    /// - Returns: what `body` returns.
    @inlinable
    public func withValue<R, E: Error>(_ body: (inout sending Value) throws(E) -> sending R) throws(E) -> sending R {
        let box = box().takeUnretainedValue()
        pthread_mutex_lock(box.mutex)
        defer { pthread_mutex_unlock(box.mutex) }
        return try body(&box.value)
    }
}

extension ProcessLocal where Value: Sendable {
    /// This process's value: a copy on read, a replacement on write.
    public var value: Value {
        @inlinable get { withValue { $0 } }
        @inlinable set { withValue { $0 = newValue } }
    }
}
