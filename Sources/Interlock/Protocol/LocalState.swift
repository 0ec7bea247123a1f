#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The per-process state of one `SharedLock`: its `pthread_rwlock`, the writer gate
/// and the process-level bookkeeping. It lives in one raw allocation made by
/// `ForkLocalPointer`, so every fork child gets a fresh one and a child never
/// inherits a rwlock that a parent thread held at `fork()`.
///
/// Layout (offsets in bytes; the block is 64-byte aligned):
/// ```
///   0  generation     UInt64          fork generation this state belongs to (immutable)
///   8  gate           Atomic<UInt32>  writer gate, see `Gate`
///  12  readers        Atomic<UInt32>  process scopes: this process's shared holders, see `Readers`
///  16  owner          Atomic<UInt>    pthread_self() of the exclusive holder, 0 if none
///  24  slot           Int32           our holder-table entry, -1 until registered
///  28  ownerDied      UInt8           the current exclusive hold reclaimed a dead holder's
///  29  gated          UInt8           the current exclusive holder announced itself at the gate
///  32  startTime      UInt64          this process's start time (0 until registered)
///  40  pid            Int32           this process's pid
///  48  lastRecoveryCheck Atomic<Int64> when a failed try last looked for dead holders (monotonic ns)
///  64  rwlock         pthread_rwlock_t
/// ```
/// Fields without `Atomic` are written only by the thread(s) that the protocol
/// serialises: `slot` under process-level serialisation (see `ProcessLevel`),
/// `ownerDied` and `gated` by the exclusive holder.
@usableFromInline @frozen
struct LocalState {
    @usableFromInline let base: UnsafeMutableRawPointer

    @inlinable init(_ base: UnsafeMutableRawPointer) { self.base = base }

    static let byteCount = 64 + MemoryLayout<pthread_rwlock_t>.stride

    @inlinable var gate: UnsafeMutablePointer<Atomic<UInt32>> {
        (base + 8).assumingMemoryBound(to: Atomic<UInt32>.self)
    }
    @inlinable var readers: UnsafeMutablePointer<Atomic<UInt32>> {
        (base + 12).assumingMemoryBound(to: Atomic<UInt32>.self)
    }
    @inlinable var owner: UnsafeMutablePointer<Atomic<UInt>> {
        (base + 16).assumingMemoryBound(to: Atomic<UInt>.self)
    }
    @inlinable var slot: Int32 {
        get { base.load(fromByteOffset: 24, as: Int32.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: 24, as: Int32.self) }
    }
    @inlinable var ownerDied: Bool {
        get { base.load(fromByteOffset: 28, as: UInt8.self) != 0 }
        nonmutating set { base.storeBytes(of: newValue ? 1 : 0, toByteOffset: 28, as: UInt8.self) }
    }
    @inlinable var gated: Bool {
        get { base.load(fromByteOffset: 29, as: UInt8.self) != 0 }
        nonmutating set { base.storeBytes(of: newValue ? 1 : 0, toByteOffset: 29, as: UInt8.self) }
    }
    var startTime: UInt64 {
        get { base.load(fromByteOffset: 32, as: UInt64.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: 32, as: UInt64.self) }
    }
    var pid: Int32 {
        get { base.load(fromByteOffset: 40, as: Int32.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: 40, as: Int32.self) }
    }
    @usableFromInline var lastRecoveryCheck: UnsafeMutablePointer<Atomic<Int64>> {
        (base + 48).assumingMemoryBound(to: Atomic<Int64>.self)
    }
    @inlinable var rwlock: UnsafeMutablePointer<pthread_rwlock_t> {
        (base + 64).assumingMemoryBound(to: pthread_rwlock_t.self)
    }

    /// Allocates and initialises the state for a fork generation.
    static func make(generation: UInt64) -> UnsafeMutableRawPointer {
        let base = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 64)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        base.storeBytes(of: generation, as: UInt64.self)
        let s = LocalState(base)
        s.gate.initialize(to: Atomic(0))
        s.readers.initialize(to: Atomic(0))
        s.owner.initialize(to: Atomic(0))
        s.lastRecoveryCheck.initialize(to: Atomic(0))
        s.slot = -1
        s.pid = getpid()
        // The default (reader-preferring) kind: fast under mixed loads. Writer
        // preference comes from our gate on top of it (see `ThreadLevel`).
        let rc = pthread_rwlock_init(s.rwlock, nil)
        precondition(rc == 0, "Interlock: pthread_rwlock_init failed (errno \(rc))")
        return base
    }

    /// Frees state that was never published or that belongs to this process.
    static func destroy(_ base: UnsafeMutableRawPointer) {
        pthread_rwlock_destroy(LocalState(base).rwlock)
        base.deallocate()
    }
}
