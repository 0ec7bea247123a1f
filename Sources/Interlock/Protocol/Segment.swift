#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The shared-memory segment of a process-scoped `SharedLock` (anonymous or named).
///
/// Layout, version 1 (offsets in bytes; little-endian, native alignment):
/// ```
///   0  magic        UInt64          "INTLOCK1"; written last by the creator, before `ready`
///   8  version      UInt32          layout version (1)
///  12  ready        Atomic<UInt32>  0 while the creator initialises, 1 once published
///  16  size         UInt64          total segment size in bytes
///  24  capacity     UInt32          number of holder-table entries
///  32  recoverer    Atomic<UInt64>  identity of the process rebuilding the state word, 0 if
///                                   none: pid in the low 32 bits, the low 32 bits of its start
///                                   time in the high ones (a reused pid is not the recoverer)
///  40  recoveries   Atomic<UInt32>  number of dead holders reclaimed so far
///  64  state        Atomic<UInt32>  the state word (own cache line), see `StateWord`
/// 128  entries      capacity × 64 bytes, one per participating process, see `Entry`
/// ```
/// The size is `128 + 64 × capacity`, rounded up to whole pages.
@usableFromInline @frozen
struct Segment: @unchecked Sendable {
    // Sendable: the memory is shared between processes by design; every field that
    // changes after publication is an Atomic.
    @usableFromInline let base: UnsafeMutableRawPointer
    let mappedSize: Int

    static let magic: UInt64 = 0x314B_434F_4C54_4E49  // "INTLOCK1" as little-endian bytes
    static let layoutVersion: UInt32 = 1
    static let headerSize = 128
    static let entrySize = 64

    init(base: UnsafeMutableRawPointer, mappedSize: Int) {
        self.base = base
        self.mappedSize = mappedSize
    }

    static func byteCount(capacity: Int) -> Int {
        let raw = headerSize + entrySize * capacity
        return (raw + Sys.pageSize - 1) / Sys.pageSize * Sys.pageSize
    }

    var magicValue: UInt64 { base.load(as: UInt64.self) }
    var version: UInt32 { base.load(fromByteOffset: 8, as: UInt32.self) }
    var ready: UnsafeMutablePointer<Atomic<UInt32>> { (base + 12).assumingMemoryBound(to: Atomic<UInt32>.self) }
    var declaredSize: UInt64 { base.load(fromByteOffset: 16, as: UInt64.self) }
    var capacity: Int { Int(base.load(fromByteOffset: 24, as: UInt32.self)) }
    var recoverer: UnsafeMutablePointer<Atomic<UInt64>> { (base + 32).assumingMemoryBound(to: Atomic<UInt64>.self) }
    var recoveries: UnsafeMutablePointer<Atomic<UInt32>> { (base + 40).assumingMemoryBound(to: Atomic<UInt32>.self) }
    @inlinable var state: UnsafeMutablePointer<Atomic<UInt32>> { (base + 64).assumingMemoryBound(to: Atomic<UInt32>.self) }

    @inlinable func entry(_ index: Int32) -> Entry {
        Entry(base + 128 + 64 * Int(index))
    }

    /// Initialises a zero-filled mapping as an empty lock and publishes it (`ready` = 1).
    /// Only the creator calls this, before anyone else can use the segment.
    static func initialise(_ base: UnsafeMutableRawPointer, size: Int, capacity: Int) -> Segment {
        base.storeBytes(of: layoutVersion, toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: UInt64(size), toByteOffset: 16, as: UInt64.self)
        base.storeBytes(of: UInt32(capacity), toByteOffset: 24, as: UInt32.self)
        let segment = Segment(base: base, mappedSize: size)
        segment.ready.initialize(to: Atomic(0))
        segment.recoverer.initialize(to: Atomic(0))
        segment.recoveries.initialize(to: Atomic(0))
        segment.state.initialize(to: Atomic(0))
        for i in 0..<capacity { segment.entry(Int32(i)).initialise() }
        base.storeBytes(of: magic, as: UInt64.self)
        segment.ready.pointee.store(1, ordering: .releasing)
        Sys.futexWakeAll(segment.ready, processShared: true)
        return segment
    }

    /// Checks a published header against the mapping. Returns a reason on mismatch.
    func validate() -> String? {
        if magicValue != Segment.magic { return "it is not an Interlock lock (bad magic number)" }
        if version != Segment.layoutVersion {
            return "its layout version is \(version); this Interlock reads version \(Segment.layoutVersion)"
        }
        if declaredSize != UInt64(mappedSize) {
            return "its header says \(declaredSize) bytes but the segment is \(mappedSize) bytes"
        }
        let cap = capacity
        if cap < 1 || cap > StateWord.maximumCapacity || Segment.headerSize + Segment.entrySize * cap > mappedSize {
            return "its holder table capacity \(cap) does not fit its size \(mappedSize)"
        }
        return nil
    }
}

/// One holder-table entry: what one participating process holds.
///
/// Layout (64 bytes, one cache line):
/// ```
///  0  owner      Atomic<UInt32>  pid of the process using this entry, 0 if free
///  4  mode       Atomic<UInt32>  `Entry.idle/shared/exclusive/waiting`, plus `inFlight`
///  8  startTime  Atomic<UInt64>  the owner's start time (guards pid reuse), 0 if unknown
/// ```
/// Rules: only the owner changes its `mode` (and recovery, for dead owners, while the
/// state word is frozen). `inFlight` is set before the owner's CAS on the state word
/// and cleared after it, so recovery knows which entries may not yet reflect the word.
@usableFromInline @frozen
struct Entry {
    @usableFromInline let base: UnsafeMutableRawPointer
    @inlinable init(_ base: UnsafeMutableRawPointer) { self.base = base }

    @usableFromInline static let idle: UInt32 = 0
    @usableFromInline static let shared: UInt32 = 1
    @usableFromInline static let exclusive: UInt32 = 2
    @usableFromInline static let waiting: UInt32 = 3
    @usableFromInline static let modeMask: UInt32 = 0xFF
    @usableFromInline static let inFlight: UInt32 = 0x100

    @inlinable var owner: UnsafeMutablePointer<Atomic<UInt32>> { base.assumingMemoryBound(to: Atomic<UInt32>.self) }
    @inlinable var mode: UnsafeMutablePointer<Atomic<UInt32>> { (base + 4).assumingMemoryBound(to: Atomic<UInt32>.self) }
    @inlinable var startTime: UnsafeMutablePointer<Atomic<UInt64>> { (base + 8).assumingMemoryBound(to: Atomic<UInt64>.self) }

    func initialise() {
        owner.initialize(to: Atomic(0))
        mode.initialize(to: Atomic(0))
        startTime.initialize(to: Atomic(0))
    }
}
