#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The per-process state of one `SharedLock`. It lives in one raw allocation made by
/// `ForkLocalPointer`, so every fork child gets a fresh one: a child holds nothing its
/// parent held, and in the threads scope it gets a free lock.
///
/// Layout (offsets in bytes; the block is 64-byte aligned):
/// ```
///   0  generation     UInt64          fork generation this state belongs to (immutable)
///  16  owner          Atomic<UInt>    `currentThreadID()` of this process's exclusive holder, 0 if none
///  24  slot           Atomic<Int32>   process scopes: our holder-table entry, -1 until registered;
///                                     threads scope: 0 (the private entry below)
///  28  ownerDied      UInt8           the current exclusive hold followed a writer that died holding
///  32  startTime      UInt64          this process's start time (0 until registered)
///  40  pid            Int32           this process's pid
///  44  recoveries     Atomic<UInt32>  threads scope: `Core.recoveries` (stays 0)
///  48  lastRecoveryCheck Atomic<Int64> when a failed try last looked for dead holders (monotonic ns)
///  64  control        Atomic<UInt32>  threads scope: the control word (see `Control`)
///  68  highWater      Atomic<UInt32>  threads scope: 1 (one entry)
///  72  writerSleepers Atomic<UInt32>  threads scope: see `Core`
///  76  writerSeq      Atomic<UInt32>  threads scope: see `Core`
/// 128  entry 0        64 bytes        threads scope: this process's entry (see `Entry`)
/// ```
/// Fields without `Atomic` are written only by the thread(s) that the protocol
/// serialises: `ownerDied` by the exclusive holder, `startTime` under
/// `LockFile.withTableLock`.
@usableFromInline @frozen
struct LocalState {
    @usableFromInline let base: UnsafeMutableRawPointer

    @inlinable init(_ base: UnsafeMutableRawPointer) { self.base = base }

    static let byteCount = 192

    @inlinable var owner: UnsafeMutablePointer<Atomic<UInt>> {
        (base + 16).assumingMemoryBound(to: Atomic<UInt>.self)
    }
    @inlinable var slotWord: UnsafeMutablePointer<Atomic<Int32>> {
        (base + 24).assumingMemoryBound(to: Atomic<Int32>.self)
    }
    /// This process's entry: -1 until a process-scoped lock registers.
    @inlinable var slot: Int32 { slotWord.pointee.load(ordering: .acquiring) }
    @inlinable var ownerDied: Bool {
        get { base.load(fromByteOffset: 28, as: UInt8.self) != 0 }
        nonmutating set { base.storeBytes(of: newValue ? 1 : 0, toByteOffset: 28, as: UInt8.self) }
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

    /// The threads scope's algorithm state: a private table of one entry.
    @inlinable var threadCore: Core {
        Core(control: (base + 64).assumingMemoryBound(to: Atomic<UInt32>.self), words: base + 68,
             entries: base + 128, fd: -1, capacity: 1,
             recoveries: (base + 44).assumingMemoryBound(to: Atomic<UInt32>.self))
    }

    /// Allocates and initialises the state for a fork generation.
    static func make(generation: UInt64, threadsScope: Bool) -> UnsafeMutableRawPointer {
        let base = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 64)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        base.storeBytes(of: generation, as: UInt64.self)
        let s = LocalState(base)
        s.owner.initialize(to: Atomic(0))
        s.slotWord.initialize(to: Atomic(threadsScope ? 0 : -1))
        s.lastRecoveryCheck.initialize(to: Atomic(0))
        for offset in [44, 64, 68, 72, 76] { (base + offset).initializeMemory(as: Atomic<UInt32>.self, to: Atomic(0)) }
        Entry(base + 128).initialise()
        s.threadCore.highWater.pointee.store(1, ordering: .relaxed)
        s.pid = getpid()
        return base
    }

    /// Frees state that was never published or that belongs to this process.
    static func destroy(_ base: UnsafeMutableRawPointer) {
        base.deallocate()
    }
}
