#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The shared-memory segment of a process-scoped `SharedLock`, mapped from the lock's
/// file: a memfd (`forkShared`), a shared-memory object (named) or a regular file (path).
///
/// Layout, version 3 (offsets in bytes; little-endian, native alignment):
/// ```
///   0  magic        UInt64          "INTLOCK1"; written last by the creator, before `ready`
///   8  version      UInt32          layout version (3)
///  12  ready        Atomic<UInt32>  0 while the creator initialises, 1 once published
///  16  size         UInt64          total segment size in bytes
///  24  capacity     UInt32          number of holder-table entries
///  32  (reserved)   8 bytes         0 (layout 2's recoverer word)
///  40  recoveries   Atomic<UInt32>  number of dead holders reclaimed so far
///  44  committed    Atomic<UInt32>  shared value: bit 0 is the committed copy (0 or 1);
///                                   bits 1…31 are 0. Only with 2 copies; see `ValueRegion`
///  48  highWater    Atomic<UInt32>  entries ever claimed: writers scan that many (see `Core`)
///  52  writerSleepers Atomic<UInt32> writers sleeping on `writerSeq`
///  56  writerSeq    Atomic<UInt32>  futex event counter of writers waiting for a phase
///  60  (free)       4 bytes
///  64  control      Atomic<UInt32>  the control word, see `Control`
///  68  (free)       4 bytes
///  72  valueOffset  UInt64          shared value: offset of copy 0; 0 if the lock has no value
///  80  copyStride   UInt64          shared value: bytes from one copy to the next
///  88  valueSize    UInt64          shared value: bytes of one copy (elementStride × count)
///  96  elemStride   UInt32          shared value: `MemoryLayout<Element>.stride`
/// 100  elemAlign    UInt32          shared value: `MemoryLayout<Element>.alignment`
/// 104  elemCount    UInt64          shared value: number of elements (1 for `SharedLocked`)
/// 112  copies       UInt32          shared value: 0 none, 1 in place, 2 crash-atomic copies
/// 116  layoutTag    UInt32          shared value: the creator's `NamedLockOptions.layoutTag`
/// 120  (free)       8 bytes
/// 128  entries      capacity × 64 bytes, one per participating process, see `Entry`,
///                   then one more, reserved (layout 2's guest entry)
/// [valueOffset]     copies × copyStride bytes: the shared value (see `ValueRegion`)
/// ```
/// Version 3 changed the protocol (per-entry shared counts, the control word); its
/// header is version 2's with the words at 48…63 added. A lock
/// without a value has them all 0. The value region starts at the first multiple of
/// max(64, elemAlign) after the table; `copyStride` is `valueSize` rounded up the same
/// way (`ValueLayout.geometry`). The size is the end of the table (or of the value
/// region), rounded up to whole pages. The value fields are written by the creator
/// before `ready`, validated once at open (against the mapping, and against the type
/// the opener expects) and kept in process memory like `capacity`.
///
/// **Liveness.** A process registered in entry `i` holds a POSIX record lock on the byte
/// at the entry's offset (`128 + 64 × i`) of the lock's file, from registration until it
/// unregisters. The kernel drops that lock the instant the process dies (or `exec`s: the
/// descriptor is close-on-exec), so "is the owner of entry `i` alive?" is a question for
/// the kernel (`Sys.byteLockHolder`) — exact whatever the pid, pid namespace, time
/// namespace, user or thread state. pid and start time in the entry are information for
/// `inspect`, never the judge.
///
/// **Trust.** `capacity`, `mappedSize` and `fd` are validated when the segment is opened
/// and kept here, in process memory; every table walk and every index uses them, never
/// the header again, so nothing written to the segment later can make this process
/// touch memory outside its mapping.
@usableFromInline @frozen
struct Segment: @unchecked Sendable {
    // Sendable: the memory is shared between processes by design; every field that
    // changes after publication is an Atomic.
    @usableFromInline let base: UnsafeMutableRawPointer
    let mappedSize: Int
    /// The holder-table capacity, validated at open (the header's copy is not re-read).
    @usableFromInline let capacity: Int
    /// The lock file's descriptor (owned by a `LockFile`), for the liveness byte locks.
    @usableFromInline let fd: Int32
    /// The shared value's layout and place, validated at open (nil: the lock has none, or
    /// the opener did not ask for it).
    let value: (layout: ValueLayout, region: ValueRegion)?

    static let magic: UInt64 = 0x314B_434F_4C54_4E49  // "INTLOCK1" as little-endian bytes
    static let layoutVersion: UInt32 = 3
    @usableFromInline static let headerSize = 128
    @usableFromInline static let entrySize = 64

    init(base: UnsafeMutableRawPointer, mappedSize: Int, capacity: Int, fd: Int32,
         value: (layout: ValueLayout, region: ValueRegion)? = nil) {
        self.base = base
        self.mappedSize = mappedSize
        self.capacity = capacity
        self.fd = fd
        self.value = value
    }

    /// The segment size for a table of `capacity` entries (plus the reserved one) and an
    /// optional shared value, in whole pages.
    static func byteCount(capacity: Int, value: ValueLayout? = nil) -> Int {
        let raw = value?.geometry(capacity: capacity).end ?? headerSize + entrySize * (capacity + 1)
        return (raw + Sys.pageSize - 1) / Sys.pageSize * Sys.pageSize
    }

    /// The largest segment this version makes: the largest table and the largest value
    /// in two copies (with alignment padding). Opening refuses anything bigger.
    static var maximumSize: Int {
        byteCount(capacity: Control.maximumCapacity) + 2 * (ValueLayout.maximumValueSize + Sys.pageSize)
    }

    /// The offset of entry `slot`, which is also the byte its owner keeps locked.
    static func entryOffset(_ slot: Int32) -> Int { headerSize + entrySize * Int(slot) }


    var magicValue: UInt64 { base.load(as: UInt64.self) }
    var version: UInt32 { base.load(fromByteOffset: 8, as: UInt32.self) }
    var ready: UnsafeMutablePointer<Atomic<UInt32>> { (base + 12).assumingMemoryBound(to: Atomic<UInt32>.self) }
    var declaredSize: UInt64 { base.load(fromByteOffset: 16, as: UInt64.self) }
    /// The capacity the header declares now (validated once at open; see `capacity`).
    var declaredCapacity: Int { Int(base.load(fromByteOffset: 24, as: UInt32.self)) }
    var recoveries: UnsafeMutablePointer<Atomic<UInt32>> { (base + 40).assumingMemoryBound(to: Atomic<UInt32>.self) }
    @inlinable var control: UnsafeMutablePointer<Atomic<UInt32>> { (base + 64).assumingMemoryBound(to: Atomic<UInt32>.self) }

    /// The algorithm's view of this segment (see `Core`).
    @inlinable var core: Core {
        Core(control: control, words: base + 48, entries: base + Segment.headerSize, fd: fd, capacity: capacity,
             recoveries: (base + 40).assumingMemoryBound(to: Atomic<UInt32>.self))
    }
    var committed: UnsafeMutablePointer<Atomic<UInt32>> { (base + 44).assumingMemoryBound(to: Atomic<UInt32>.self) }

    /// Entry `index`. Invariant: `0 <= index < capacity` (callers index with slots they
    /// own, or loop over `0..<capacity`; a slot read from shared memory is range-checked
    /// first).
    @inlinable func entry(_ index: Int32) -> Entry {
        Entry(base + 128 + 64 * Int(index))
    }

    // MARK: Liveness

    /// Whether a live process owns entry `slot` (holds its byte lock). Any process's
    /// lock counts, this process's own included. A foreign program's record lock over
    /// the byte counts too: when in doubt, a holder is alive (a hang, never a second
    /// writer); registration reports such a lock (`RegisterResult.foreignLock`).
    func isLive(_ slot: Int32) -> Bool {
        Sys.byteLockHolder(fd, at: Segment.entryOffset(slot)) != nil
    }

    /// The record lock on entry `slot`'s byte, or nil when no live process owns it.
    func liveLock(_ slot: Int32) -> Sys.ByteLock? {
        Sys.byteLockHolder(fd, at: Segment.entryOffset(slot))
    }

    /// Initialises a zero-filled mapping as an empty lock (with its shared value, if
    /// any) and publishes it (`ready` = 1). Only the creator calls this, before anyone
    /// else can use the segment; `size` is `byteCount(capacity:value:)`.
    static func initialise(_ base: UnsafeMutableRawPointer, size: Int, capacity: Int, fd: Int32,
                           value: InitialValue? = nil) -> Segment {
        base.storeBytes(of: layoutVersion, toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: UInt64(size), toByteOffset: 16, as: UInt64.self)
        base.storeBytes(of: UInt32(capacity), toByteOffset: 24, as: UInt32.self)
        (base + 44).initializeMemory(as: Atomic<UInt32>.self, to: Atomic(0))
        var regionInfo: (layout: ValueLayout, region: ValueRegion)?
        if let value {
            let layout = value.layout
            let (offset, copyStride, _) = layout.geometry(capacity: capacity)
            base.storeBytes(of: UInt64(offset), toByteOffset: 72, as: UInt64.self)
            base.storeBytes(of: UInt64(copyStride), toByteOffset: 80, as: UInt64.self)
            base.storeBytes(of: UInt64(layout.valueSize), toByteOffset: 88, as: UInt64.self)
            base.storeBytes(of: UInt32(layout.elementStride), toByteOffset: 96, as: UInt32.self)
            base.storeBytes(of: UInt32(layout.elementAlignment), toByteOffset: 100, as: UInt32.self)
            base.storeBytes(of: UInt64(layout.count), toByteOffset: 104, as: UInt64.self)
            base.storeBytes(of: UInt32(layout.copies), toByteOffset: 112, as: UInt32.self)
            base.storeBytes(of: layout.tag, toByteOffset: 116, as: UInt32.self)
            // Every copy holds the initial value (copy 0 is the committed one).
            for copy in 0..<layout.copies { value.initialise(base + offset + copy * copyStride) }
            let region = ValueRegion(first: base + offset, copyStride: copyStride, valueSize: layout.valueSize,
                                     copies: layout.copies, committed: (base + 44).assumingMemoryBound(to: Atomic<UInt32>.self))
            regionInfo = (layout, region)
        }
        let segment = Segment(base: base, mappedSize: size, capacity: capacity, fd: fd, value: regionInfo)
        segment.ready.initialize(to: Atomic(0))
        segment.recoveries.initialize(to: Atomic(0))
        for offset in [48, 52, 56] { (base + offset).initializeMemory(as: Atomic<UInt32>.self, to: Atomic(0)) }
        segment.control.initialize(to: Atomic(0))
        for i in 0..<capacity { segment.entry(Int32(i)).initialise() }
        base.storeBytes(of: magic, as: UInt64.self)
        segment.ready.pointee.store(1, ordering: .releasing)
        Sys.futexWakeAll(segment.ready, processShared: true)
        return segment
    }

    /// Checks a published header against the mapping (this segment's `capacity` is not
    /// yet trusted: it is the header's). Returns a reason on mismatch.
    func validate() -> String? {
        if magicValue != Segment.magic { return "it is not an Interlock lock (bad magic number)" }
        if version != Segment.layoutVersion {
            return "its layout version is \(version); this Interlock reads version \(Segment.layoutVersion)"
        }
        if declaredSize != UInt64(mappedSize) {
            return "its header says \(declaredSize) bytes but the segment is \(mappedSize) bytes"
        }
        let cap = declaredCapacity
        if cap != capacity { return "its header changed while it was being opened" }
        if cap < 1 || cap > Control.maximumCapacity || Segment.headerSize + Segment.entrySize * (cap + 1) > mappedSize {
            return "its holder table capacity \(cap) does not fit its size \(mappedSize)"
        }
        if case .failure(let reason) = decodeValue() { return reason.text }
        return nil
    }

    struct Reason: Error { let text: String }

    /// Reads and checks the header's value fields against the mapping (`capacity` and
    /// `mappedSize` are already validated). nil when the lock has no value.
    func decodeValue() -> Result<(layout: ValueLayout, region: ValueRegion)?, Reason> {
        let copies = base.load(fromByteOffset: 112, as: UInt32.self)
        let offset = base.load(fromByteOffset: 72, as: UInt64.self)
        if copies == 0 {
            return offset == 0 ? .success(nil) : .failure(Reason(text: "its shared value fields are inconsistent (no copies at offset \(offset))"))
        }
        guard let layout = ValueLayout.decoded(
            stride: UInt64(base.load(fromByteOffset: 96, as: UInt32.self)),
            alignment: UInt64(base.load(fromByteOffset: 100, as: UInt32.self)),
            count: base.load(fromByteOffset: 104, as: UInt64.self), copies: UInt64(copies),
            tag: base.load(fromByteOffset: 116, as: UInt32.self))
        else { return .failure(Reason(text: "its shared value's element size, alignment, count or copies are invalid")) }
        let (expectedOffset, copyStride, end) = layout.geometry(capacity: capacity)
        if offset != UInt64(expectedOffset) || base.load(fromByteOffset: 80, as: UInt64.self) != UInt64(copyStride)
            || base.load(fromByteOffset: 88, as: UInt64.self) != UInt64(layout.valueSize) || end > mappedSize {
            return .failure(Reason(text: "its shared value's place (offset \(offset), \(layout.copies) × \(layout.valueSize) bytes) does not fit its size \(mappedSize)"))
        }
        let region = ValueRegion(first: base + expectedOffset, copyStride: copyStride, valueSize: layout.valueSize,
                                 copies: layout.copies, committed: committed)
        return .success((layout, region))
    }

    /// Traps, naming the lock's file, if the header no longer says what it said when this
    /// process validated it: somebody wrote over the segment. Checked on the rare paths
    /// (registration, recovery, snapshots); the values in use are never re-read anyway.
    func checkHeader() {
        let cap = declaredCapacity, size = declaredSize
        if cap != capacity || size != UInt64(mappedSize) || magicValue != Segment.magic {
            fatalError("Interlock: the lock file \(Sys.pathOfDescriptor(fd)) was overwritten (capacity \(capacity) became \(cap), "
                + "size \(mappedSize) became \(size)): corrupt or tampered; remove it once no program uses it")
        }
    }
}

/// One holder-table entry: what one participating process holds.
///
/// Layout (64 bytes, one cache line, written by its owner's threads alone):
/// ```
///  0  owner          Atomic<UInt32>  the owner's pid in its own pid namespace, 0 if free (information)
///  4  readers        Atomic<UInt32>  threads of the owner holding shared mode, or counted
///                                    while they look for a writer (see `Core`)
///  8  startTime      Atomic<UInt64>  the owner's start, seconds since the Unix epoch (information)
/// 16  epoch          Atomic<UInt32>  +1 each time a process claims the entry (information)
/// 20  blocked        Atomic<UInt32>  threads of the owner waiting for a write phase to end
/// 24  writing        Atomic<UInt32>  1 while the owner's writer holds exclusive mode (after
///                                    draining the readers; 0 again before it releases)
/// 28  waitingWriters Atomic<UInt32>  threads of the owner waiting to start a write phase (information)
/// ```
/// Rules: the entry belongs to the process holding its liveness byte lock (see
/// `Segment`), and only that process's threads change it — except that a process
/// holding the byte of a dead owner's entry zeroes it (`Core.clean`). In the threads
/// scope a private entry of the same layout is the one participant's.
@usableFromInline @frozen
struct Entry {
    @usableFromInline let base: UnsafeMutableRawPointer
    @inlinable init(_ base: UnsafeMutableRawPointer) { self.base = base }

    @inlinable var owner: UnsafeMutablePointer<Atomic<UInt32>> { base.assumingMemoryBound(to: Atomic<UInt32>.self) }
    @inlinable var readers: UnsafeMutablePointer<Atomic<UInt32>> { (base + 4).assumingMemoryBound(to: Atomic<UInt32>.self) }
    @inlinable var startTime: UnsafeMutablePointer<Atomic<UInt64>> { (base + 8).assumingMemoryBound(to: Atomic<UInt64>.self) }
    var epoch: UnsafeMutablePointer<Atomic<UInt32>> { (base + 16).assumingMemoryBound(to: Atomic<UInt32>.self) }
    @inlinable var blocked: UnsafeMutablePointer<Atomic<UInt32>> { (base + 20).assumingMemoryBound(to: Atomic<UInt32>.self) }
    @inlinable var writing: UnsafeMutablePointer<Atomic<UInt32>> { (base + 24).assumingMemoryBound(to: Atomic<UInt32>.self) }
    @inlinable var waitingWriters: UnsafeMutablePointer<Atomic<UInt32>> { (base + 28).assumingMemoryBound(to: Atomic<UInt32>.self) }

    /// Initialises zeroed memory as a free entry.
    func initialise() {
        for offset in [0, 4, 16, 20, 24, 28] { (base + offset).initializeMemory(as: Atomic<UInt32>.self, to: Atomic(0)) }
        startTime.initialize(to: Atomic(0))
    }
}
