#if canImport(Glibc)
import Glibc
#endif
import CInterlock
import Synchronization

/// One value per thread, fresh in every `fork()` child.
///
/// Each thread's value is made by `initial` on its first access from that thread, and
/// destroyed when the thread exits (through the pthread key's destructor). In a child
/// created by `fork()`, the forking thread — the only thread there — gets a fresh
/// value on its first access, instead of the one its parent thread had.
///
/// ```swift
/// let scratch = ThreadLocal { [UInt8](repeating: 0, count: 4096) }
/// scratch.withValue { buffer in buffer[0] = 1 }   // no locking: only this thread sees it
/// ```
///
/// - Note: In a fork child the inherited value is abandoned without running its
///   deinitialiser (it may own resources that belong to the parent), once per fork.
///   Values of threads still running when the `ThreadLocal` itself is destroyed are
///   leaked (`pthread_key_delete` runs no destructors); the calling thread's is freed.
public final class ThreadLocal<Value>: @unchecked Sendable {
    // Sendable: each thread only ever reaches its own slot (pthread_getspecific), and
    // `initial` is Sendable.

    /// The pthread key; its destructor releases the slot's owner object.
    @usableFromInline let key: pthread_key_t
    /// This instance's fast slot (see `cinterlock_thread_slots`), or -1 when all are taken.
    /// Fast slots are never reused: another thread may still point at its slot.
    @usableFromInline let fastIndex: Int
    @usableFromInline let initial: @Sendable () -> Value

    /// Creates a per-thread value.
    ///
    /// - Parameter initial: makes the value, on each thread's first access (and again
    ///   in a fork child).
    public init(_ initial: @escaping @Sendable () -> Value) {
        Fork.registerHandler()
        self.initial = initial
        var key = pthread_key_t()
        let rc = pthread_key_create(&key, { raw in
            // Thread exit: release the owner, whose deinit destroys and frees the slot —
            // unless the slot was inherited through fork() (then it is abandoned).
            if let raw, ThreadSlot.generation(raw) == Fork.currentGeneration { ThreadSlot.release(raw) }
        })
        precondition(rc == 0, "Interlock: pthread_key_create failed (errno \(rc)): too many thread-local keys (PTHREAD_KEYS_MAX)")
        self.key = key
        let index = ThreadSlot.nextFastIndex.add(1, ordering: .relaxed).oldValue
        self.fastIndex = index < Int(CINTERLOCK_THREAD_SLOTS) ? index : -1
    }

    deinit {
        if let raw = pthread_getspecific(key), ThreadSlot.generation(raw) == Fork.currentGeneration {
            ThreadSlot.release(raw)
        }
        pthread_key_delete(key)
    }

    /// The calling thread's raw slot, if it has one: the fast slot, else the pthread key.
    @inlinable @inline(__always)
    func currentRaw() -> UnsafeMutableRawPointer? {
        fastIndex >= 0 ? cinterlock_thread_slot(fastIndex) : pthread_getspecific(key)
    }

    /// The calling thread's value, made on first access.
    @inlinable @inline(__always)
    func slot() -> UnsafeMutablePointer<Value> {
        if let raw = currentRaw(), _fastPath(ThreadSlot.generation(raw) == Fork.currentGeneration) {
            return ThreadSlot.value(raw, as: Value.self)
        }
        return makeSlot()
    }

    @usableFromInline @inline(never)
    func makeSlot() -> UnsafeMutablePointer<Value> {
        // An inherited slot (fork child) is abandoned, not released: see the type's note.
        let raw = ThreadSlot.make(initial(), generation: Fork.currentGeneration, fastIndex: fastIndex)
        // The key (even with a fast slot) is what runs the destructor at thread exit.
        let rc = pthread_setspecific(key, raw)
        precondition(rc == 0, "Interlock: pthread_setspecific failed (errno \(rc))")
        if fastIndex >= 0 { cinterlock_set_thread_slot(fastIndex, raw) }
        return ThreadSlot.value(raw, as: Value.self)
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

/// The memory layout of a thread's slot: `[generation: UInt64][owner][fast index: Int][value]`.
///
/// The key destructor is a C function and cannot know `Value`, so the slot carries an
/// owner object (an `AnyObject`) whose `deinit` knows how to destroy the value.
@usableFromInline
enum ThreadSlot {
    @usableFromInline static let ownerOffset = 8
    static let fastIndexOffset = 16
    @inlinable static func valueOffset<Value>(_: Value.Type) -> Int {
        let a = MemoryLayout<Value>.alignment
        return (24 + a - 1) / a * a
    }

    /// The next fast-slot index to hand out (never reused).
    static let nextFastIndex = Atomic<Int>(0)

    @inlinable static func generation(_ raw: UnsafeMutableRawPointer) -> UInt64 {
        raw.load(as: UInt64.self)
    }

    @inlinable static func value<Value>(_ raw: UnsafeMutableRawPointer, as: Value.Type) -> UnsafeMutablePointer<Value> {
        (raw + valueOffset(Value.self)).assumingMemoryBound(to: Value.self)
    }

    final class Owner<Value> {
        let raw: UnsafeMutableRawPointer
        init(_ raw: UnsafeMutableRawPointer) { self.raw = raw }
        deinit {
            ThreadSlot.value(raw, as: Value.self).deinitialize(count: 1)
            raw.deallocate()
        }
    }

    static func make<Value>(_ initialValue: consuming Value, generation: UInt64, fastIndex: Int) -> UnsafeMutableRawPointer {
        let size = valueOffset(Value.self) + MemoryLayout<Value>.size
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: max(size, 24), alignment: max(8, MemoryLayout<Value>.alignment))
        raw.storeBytes(of: generation, as: UInt64.self)
        raw.storeBytes(of: fastIndex, toByteOffset: fastIndexOffset, as: Int.self)
        let owner = Unmanaged.passRetained(Owner<Value>(raw) as AnyObject)
        raw.storeBytes(of: owner.toOpaque(), toByteOffset: ownerOffset, as: UnsafeMutableRawPointer.self)
        value(raw, as: Value.self).initialize(to: initialValue)
        return raw
    }

    /// Destroys a slot; runs on the slot's own thread (key destructor or `deinit`), so it
    /// also clears that thread's fast slot, which would otherwise dangle.
    static func release(_ raw: UnsafeMutableRawPointer) {
        let index = raw.load(fromByteOffset: fastIndexOffset, as: Int.self)
        if index >= 0 && cinterlock_thread_slot(index) == raw { cinterlock_set_thread_slot(index, nil) }
        let owner = raw.load(fromByteOffset: ownerOffset, as: UnsafeMutableRawPointer.self)
        Unmanaged<AnyObject>.fromOpaque(owner).release()
    }
}
