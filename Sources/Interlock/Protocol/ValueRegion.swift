import Synchronization

/// The shape of the data a process-scoped `SharedLocked` or `SharedLockedArray` keeps in
/// its lock's segment, as the caller's type says it (creation writes it into the header;
/// opening compares it with the header's).
@usableFromInline
struct ValueLayout: Equatable {
    /// `MemoryLayout<Element>.stride`: the distance between elements (≥ 1).
    let elementStride: Int
    /// `MemoryLayout<Element>.alignment`: a power of two, at most a page.
    let elementAlignment: Int
    /// Number of elements (1 for a `SharedLocked`).
    let count: Int
    /// 2: two copies and a committed index (crash-atomic); 1: one copy, written in place.
    let copies: Int
    /// The user's layout tag (`NamedLockOptions.layoutTag`).
    let tag: UInt32
    /// `elementStride × count`, the bytes of one copy.
    let valueSize: Int

    /// The largest value (one copy), in bytes: 1 GiB.
    static let maximumValueSize = 1 << 30

    /// The layout of `count` elements of `T`, or the typed error that says why it cannot
    /// be kept in shared memory (zero count, zero-size element, too large, overflow).
    static func of<T>(_: T.Type, count: Int, copies: Int, tag: UInt32) -> Result<ValueLayout, InterlockError> {
        if MemoryLayout<T>.size == 0 {
            return .failure(.invalidSharedValue(reason: "\(T.self) has no bytes to share; use a SharedLock alone"))
        }
        if count < 1 { return .failure(.invalidSharedValue(reason: "the element count is \(count); it must be at least 1")) }
        let stride = MemoryLayout<T>.stride, alignment = MemoryLayout<T>.alignment
        if alignment > Sys.pageSize {
            return .failure(.invalidSharedValue(reason: "\(T.self) needs \(alignment)-byte alignment; at most a page (\(Sys.pageSize)) is supported"))
        }
        let (size, overflow) = stride.multipliedReportingOverflow(by: count)
        if overflow || size > maximumValueSize {
            return .failure(.invalidSharedValue(reason: "\(count) elements of \(stride) bytes exceed the \(maximumValueSize >> 30) GiB limit of a shared value"))
        }
        return .success(ValueLayout(elementStride: stride, elementAlignment: alignment, count: count,
                                    copies: copies, tag: tag, valueSize: size))
    }

    private init(elementStride: Int, elementAlignment: Int, count: Int, copies: Int, tag: UInt32, valueSize: Int) {
        self.elementStride = elementStride
        self.elementAlignment = elementAlignment
        self.count = count
        self.copies = copies
        self.tag = tag
        self.valueSize = valueSize
    }

    /// Validates raw header numbers (untrusted) as a layout; nil if they are not one.
    static func decoded(stride: UInt64, alignment: UInt64, count: UInt64, copies: UInt64, tag: UInt32) -> ValueLayout? {
        guard stride >= 1, stride <= UInt64(maximumValueSize), alignment >= 1, alignment <= UInt64(Sys.pageSize),
              alignment & (alignment - 1) == 0, stride % alignment == 0,
              count >= 1, count <= UInt64(maximumValueSize), copies == 1 || copies == 2 else { return nil }
        let (size, overflow) = Int(stride).multipliedReportingOverflow(by: Int(count))
        guard !overflow, size <= maximumValueSize else { return nil }
        return ValueLayout(elementStride: Int(stride), elementAlignment: Int(alignment), count: Int(count),
                           copies: Int(copies), tag: tag, valueSize: size)
    }

    /// Where the copies go in a segment whose holder table has `capacity` + 1 entries:
    /// the first copy at the first multiple of max(64, alignment) after the table, each
    /// next one `copyStride` further (the copy size rounded up the same way), so that
    /// every copy starts on its own cache line. No overflow: capacity ≤ 4095 and
    /// valueSize ≤ 1 GiB.
    func geometry(capacity: Int) -> (offset: Int, copyStride: Int, end: Int) {
        let unit = max(64, elementAlignment)
        let tableEnd = Segment.headerSize + Segment.entrySize * (capacity + 1)
        let offset = (tableEnd + unit - 1) / unit * unit
        let copyStride = (valueSize + unit - 1) / unit * unit
        return (offset, copyStride, offset + copies * copyStride)
    }

    /// The first field in which `self` (the header's) differs from `expected` (the
    /// caller's), said for an `incompatibleSegment` reason; nil if they agree.
    func mismatch(expecting expected: ValueLayout) -> String? {
        func differs(_ field: String, _ found: some CustomStringConvertible, _ wanted: some CustomStringConvertible) -> String {
            "its shared value's \(field) is \(found) but this program expects \(wanted) (a different type or layout; bump NamedLockOptions.layoutTag when you change it, and use a new name)"
        }
        if elementStride != expected.elementStride { return differs("element stride (bytes)", elementStride, expected.elementStride) }
        if elementAlignment != expected.elementAlignment { return differs("element alignment", elementAlignment, expected.elementAlignment) }
        if count != expected.count { return differs("element count", count, expected.count) }
        if copies != expected.copies {
            func mode(_ c: Int) -> String { c == 2 ? "crashAtomic (2 copies)" : "inPlace (1 copy)" }
            return differs("mode", mode(copies), mode(expected.copies))
        }
        if tag != expected.tag { return differs("layout tag", tag, expected.tag) }
        return nil
    }
}

/// The data region of a segment, as validated at open (or made at creation) and kept in
/// process memory: nothing read from the segment later changes where this process reads
/// or writes (see `Segment`, "Trust").
///
/// Copies: `copies` (1 or 2) blocks of `valueSize` bytes, `copyStride` apart, from
/// `first`. The header's `committed` word: bit 0 names the copy that holds the value (two
/// copies; the other is scratch for the next writer), bit 1 (`writing`) is set while a
/// writer's update is under way — set before its first byte is written, cleared by its
/// commit (or when it throws). A writer that finds `writing` set knows the previous
/// writer died mid-update (`previousWriterDied`), whoever else took the lock in between
/// (a plain `SharedLock` on the same name takes the lock's own `previousHolderDied`), and
/// a writer that died after its commit is not reported: its change was kept.
/// - readers (shared mode) read the committed copy;
/// - a writer (exclusive mode) copies the committed copy over the other one, runs its
///   closure on that one, and on normal return publishes it with one release store of
///   `committed`. A writer killed at any instruction before that store leaves the
///   committed copy untouched; one killed after it has committed. A closure that throws
///   commits nothing, and neither does a `fork()` child that returns from a closure its
///   parent was running (the hold is the parent's).
/// With one copy (in place) the closure writes the only copy, and a writer's death may
/// leave it torn; the next writer is told (`previousHolderDied`).
///
/// Invariant: `first ..< first + copies × copyStride` lies inside the mapping, and
/// `valueSize ≤ copyStride`; the index read from `committed` is masked to `copies − 1`,
/// so a corrupt header cannot send an access outside.
@usableFromInline @frozen
struct ValueRegion: @unchecked Sendable {
    // Sendable: shared memory by design; reached only under the lock.
    @usableFromInline let first: UnsafeMutableRawPointer
    @usableFromInline let copyStride: Int
    @usableFromInline let valueSize: Int
    /// 0 for one copy, 1 for two: the mask applied to the committed index.
    @usableFromInline let indexMask: UInt32
    @usableFromInline let committed: UnsafeMutablePointer<Atomic<UInt32>>

    /// Bit 1 of `committed`: an update is under way (see the type's description).
    @usableFromInline static let writing: UInt32 = 2

    @usableFromInline init(first: UnsafeMutableRawPointer, copyStride: Int, valueSize: Int, copies: Int,
                           committed: UnsafeMutablePointer<Atomic<UInt32>>) {
        self.first = first
        self.copyStride = copyStride
        self.valueSize = valueSize
        self.indexMask = copies == 2 ? 1 : 0
        self.committed = committed
    }

    /// The committed copy; read it under shared or exclusive mode. `T` is the type the
    /// region was made and validated for (its stride × count fit the copy).
    @inlinable
    func committedCopy<T>(as _: T.Type) -> UnsafeMutablePointer<T> {
        let index = Int(committed.pointee.load(ordering: .acquiring) & indexMask)
        return (first + index * copyStride).assumingMemoryBound(to: T.self)
    }

    /// Runs `body` on the copy to write — passing whether the previous writer died
    /// mid-update — and commits it if `body` returns (see the type's description). Call
    /// under exclusive mode only.
    @inlinable
    func update<T, R, E: Error>(
        as _: T.Type, _ body: (UnsafeMutablePointer<T>, _ previousWriterDied: Bool) throws(E) -> R
    ) throws(E) -> R {
        // Under exclusive mode nobody else writes `committed`: a relaxed load is enough.
        let word = committed.pointee.load(ordering: .relaxed)
        let died = word & ValueRegion.writing != 0
        let current = word & indexMask
        committed.pointee.store(current | ValueRegion.writing, ordering: .relaxed)
        // The mark reaches memory before any byte of the update does.
        atomicMemoryFence(ordering: .releasing)
        let target = first + Int(current ^ indexMask) * copyStride  // the only copy, in place
        if indexMask != 0 { target.copyMemory(from: first + Int(current) * copyStride, byteCount: valueSize) }
        let generation = Fork.currentGeneration
        let result: R
        do throws(E) {
            result = try body(target.assumingMemoryBound(to: T.self), died)
        } catch {
            // Not a death: nothing is committed (two copies), and the mark goes.
            if Fork.currentGeneration == generation { committed.pointee.store(current, ordering: .releasing) }
            throw error
        }
        // A fork child that resumed inside its parent's hold (`body` forked) returns here
        // too: the hold and the copy are the parent's, so only the parent commits.
        if _fastPath(Fork.currentGeneration == generation) {
            committed.pointee.store(current ^ indexMask, ordering: .releasing)
        }
        return result
    }
}

/// A shared value to create with a segment: its layout, and how to write the initial
/// value into one copy (raw, zero-filled memory of `layout.valueSize` bytes, aligned
/// for the element). Used by the creator only; an opener compares `layout`.
struct InitialValue {
    let layout: ValueLayout
    let initialise: (UnsafeMutableRawPointer) -> Void
}
