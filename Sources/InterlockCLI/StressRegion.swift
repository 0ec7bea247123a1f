// The stress run's shared data region: the same layout for every scope.
//
// threads scope: anonymous memory in the one process; fork scope: anonymous MAP_SHARED
// memory mapped before the first fork(); named scope: a POSIX shm segment
// ("/interlock-stress.<name>.<parent pid>", 0600) that spawned workers open.
//
// Everything in it is a 64-bit `Atomic<UInt64>` word, so every access is well defined
// across threads and processes. Layout, in words:
//
//     [0, 64)            header: configuration, phase, violation and recovery counters
//     [64, 64 + S')      in-section flags, one per worker slot (S' = S rounded up to 8)
//     then S blocks of `Slot.words` words: identity, state, counters, two histograms
//
// A *slot* is one worker thread; its block outlives the process, so a replacement
// worker (after `--kill`) continues the same slot and the statistics of killed workers
// are kept.
//
// The record writers write and readers verify is not here: it is a crash-atomic
// `SharedLocked<StressRecord>` whose lock is the run's lock (see `StressRecord`).

import Glibc
import Synchronization

/// Header words.
enum HeaderWord: Int {
    case magic = 0, layoutVersion, slotCount, threadsPerProcess, readPercent, holdNanoseconds, seed
    /// 0 starting, 1 running, 2 stopping (see `Phase`).
    case phase
    case parentPID
    /// Odd while the parent is killing a worker and clearing its flags; bumped to even
    /// when done. Checkers read it before and after a scan: a scan that overlapped a
    /// kill window excuses what it saw (see `StressWorkload`).
    case killEpoch
    /// Writers told `previousWriterDied`.
    case previousHolderDiedObserved
    /// Kills of a worker with a thread waiting for or holding exclusive mode, counted
    /// by the parent before the kill: a bound on the `previousWriterDied` reports.
    case exclusiveKillCandidates
    /// The token (slot, incarnation) of the writer inside its record update, 0 when none;
    /// not crash-atomic on purpose: a writer killed mid-update leaves it behind.
    case updateToken
    /// Writers that found the update token of a dead writer.
    case deadWriterUpdatesSeen
    case maxConcurrentReaders
    /// `Violation.rawValue + 1` of the first violation, 0 when none.
    case firstViolationKind
    case firstViolationSlot
    /// The violation counters: `violationBase + Violation.rawValue`.
    case violationBase = 32
}

/// The kinds of violation a stress run can observe. Any of them is a failed run.
enum Violation: Int, CaseIterable {
    /// An exclusive holder saw another live holder's in-section flag.
    case exclusiveOverlap
    /// A shared holder saw a live exclusive holder's in-section flag.
    case readerSawWriter
    /// A reader or writer found the record torn: data or checksum not matching its
    /// sequence, or changed during a shared hold.
    case tornRecord
    /// An exclusive holder found the update token of a writer that died mid-update, but
    /// was not told `previousWriterDied`.
    case ownerDeathNotReported
    /// `previousWriterDied` was reported more often than workers were killed while
    /// waiting for or holding exclusive mode.
    case spuriousOwnerDeath

    /// The JSON key and report label.
    var key: String {
        switch self {
        case .exclusiveOverlap: "exclusiveOverlap"
        case .readerSawWriter: "readerSawWriter"
        case .tornRecord: "tornRecord"
        case .ownerDeathNotReported: "ownerDeathNotReported"
        case .spuriousOwnerDeath: "spuriousOwnerDeath"
        }
    }
}

enum Phase: UInt64 { case starting = 0, running = 1, stopping = 2 }

/// A worker slot's state, for the progress line and the watchdog.
enum SlotState: UInt64 {
    case unused = 0, idle, waitingShared, waitingExclusive, holdingShared, holdingExclusive, finished

    var label: String {
        switch self {
        case .unused: "not started"
        case .idle: "between operations"
        case .waitingShared: "waiting for shared"
        case .waitingExclusive: "waiting for exclusive"
        case .holdingShared: "holding shared"
        case .holdingExclusive: "holding exclusive"
        case .finished: "finished"
        }
    }
}

/// In-section flag values.
enum InSection: UInt64 { case none = 0, shared = 1, exclusive = 2 }

/// Words of one slot block.
enum SlotWord: Int {
    case pid = 0, processIndex, threadIndex, incarnation, state, stateSince
    case opsShared, opsExclusive, maxShared, maxExclusive
    /// Operations this slot still may run; `UInt64.max` for a timed run.
    case quota
    /// Words of the new record written so far by this slot's writer; 0 outside an update.
    case updateProgress
    case sharedHistogram = 16
}

/// A view of the region. Copyable and `Sendable`: it is a pointer to memory that is
/// only ever accessed through atomics, and that outlives every thread that uses it.
struct StressRegion: @unchecked Sendable {
    static let magic: UInt64 = 0x494C_4F43_4B53_5452   // "ILOCKSTR"
    static let layoutVersion: UInt64 = 2
    static let maxSlots = 256

    static let flagsBase = 64
    static let slotWords = 16 + 2 * Histogram.bucketCount

    let words: UnsafeMutablePointer<Atomic<UInt64>>
    let slotCount: Int

    static func flagsWords(_ slots: Int) -> Int { (slots + 7) / 8 * 8 }

    static func byteSize(slots: Int) -> Int {
        (flagsBase + flagsWords(slots) + slots * slotWords) * MemoryLayout<UInt64>.stride
    }

    /// Wraps freshly mapped zeroed memory and writes the header.
    static func initialize(at base: UnsafeMutableRawPointer, config: StressConfig) -> StressRegion {
        let count = byteSize(slots: config.slotCount) / 8
        let words = base.bindMemory(to: Atomic<UInt64>.self, capacity: count)
        for index in 0..<count { (words + index).initialize(to: Atomic(0)) }
        let region = StressRegion(words: words, slotCount: config.slotCount)
        region.set(.slotCount, UInt64(config.slotCount))
        region.set(.threadsPerProcess, UInt64(config.threadsPerProcess))
        region.set(.readPercent, UInt64(config.readPercent))
        region.set(.holdNanoseconds, config.holdNanoseconds)
        region.set(.seed, config.seed)
        region.set(.parentPID, UInt64(getpid()))
        for slot in 0..<config.slotCount {
            region.slot(slot, .quota).store(config.quota(forSlot: slot), ordering: .relaxed)
            region.slot(slot, .processIndex).store(UInt64(slot / config.threadsPerProcess), ordering: .relaxed)
            region.slot(slot, .threadIndex).store(UInt64(slot % config.threadsPerProcess), ordering: .relaxed)
        }
        region.set(.layoutVersion, layoutVersion)
        region.header(.magic).store(magic, ordering: .releasing)
        return region
    }

    /// Wraps a region another process initialised (a named-scope worker); nil if it is
    /// not one of ours.
    static func attach(at base: UnsafeMutableRawPointer, size: Int) -> StressRegion? {
        guard size >= byteSize(slots: 0) else { return nil }
        let words = base.assumingMemoryBound(to: Atomic<UInt64>.self)
        guard (words + HeaderWord.magic.rawValue).load(ordering: .acquiring) == magic,
              (words + HeaderWord.layoutVersion.rawValue).load(ordering: .relaxed) == layoutVersion else { return nil }
        let slots = Int((words + HeaderWord.slotCount.rawValue).load(ordering: .relaxed))
        guard slots <= maxSlots, size >= byteSize(slots: slots) else { return nil }
        return StressRegion(words: words, slotCount: slots)
    }

    // MARK: Access

    @inline(__always)
    func header(_ word: HeaderWord) -> UnsafeMutablePointer<Atomic<UInt64>> { words + word.rawValue }

    func get(_ word: HeaderWord) -> UInt64 { header(word).load(ordering: .relaxed) }
    func set(_ word: HeaderWord, _ value: UInt64) { header(word).store(value, ordering: .relaxed) }

    var phase: Phase { Phase(rawValue: header(.phase).load(ordering: .acquiring)) ?? .stopping }
    func setPhase(_ phase: Phase) { header(.phase).store(phase.rawValue, ordering: .releasing) }

    @inline(__always)
    func flag(_ slot: Int) -> UnsafeMutablePointer<Atomic<UInt64>> { words + Self.flagsBase + slot }

    @inline(__always)
    func slotBase(_ slot: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        words + Self.flagsBase + Self.flagsWords(slotCount) + slot * Self.slotWords
    }

    @inline(__always)
    func slot(_ slot: Int, _ word: SlotWord) -> UnsafeMutablePointer<Atomic<UInt64>> { slotBase(slot) + word.rawValue }

    func slotValue(_ slot: Int, _ word: SlotWord) -> UInt64 { self.slot(slot, word).load(ordering: .relaxed) }

    func histogram(_ slot: Int, exclusive: Bool) -> UnsafeMutablePointer<Atomic<UInt64>> {
        slotBase(slot) + SlotWord.sharedHistogram.rawValue + (exclusive ? Histogram.bucketCount : 0)
    }

    func state(_ slot: Int) -> SlotState { SlotState(rawValue: slotValue(slot, .state)) ?? .unused }

    // MARK: Counters

    func violations(_ kind: Violation) -> UInt64 {
        (words + HeaderWord.violationBase.rawValue + kind.rawValue).load(ordering: .relaxed)
    }

    var totalViolations: UInt64 { Violation.allCases.reduce(0) { $0 + violations($1) } }

    /// Counts a violation, remembering the first one.
    func report(_ kind: Violation, slot: Int) {
        (words + HeaderWord.violationBase.rawValue + kind.rawValue).add(1, ordering: .relaxed)
        if header(.firstViolationKind).compareExchange(expected: 0, desired: UInt64(kind.rawValue + 1), ordering: .relaxed).exchanged {
            set(.firstViolationSlot, UInt64(slot))
        }
    }

    /// Raises `word` to at least `value`.
    func raise(_ word: HeaderWord, to value: UInt64) {
        var current = get(word)
        while value > current {
            let (exchanged, original) = header(word).compareExchange(expected: current, desired: value, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    /// Operations completed so far, over all slots, per mode.
    func totalOps() -> (shared: UInt64, exclusive: UInt64) {
        var shared: UInt64 = 0, exclusive: UInt64 = 0
        for slot in 0..<slotCount {
            shared += slotValue(slot, .opsShared)
            exclusive += slotValue(slot, .opsExclusive)
        }
        return (shared, exclusive)
    }
}

/// Atomic operations through a pointer into the region (the words are `Atomic`, which is
/// `~Copyable`, so they are reached through pointers and used in place).
///
/// `Atomic` requires orderings that are constant at compile time, so each wrapper
/// branches over the orderings this program uses; inlined, the branch folds away.
extension UnsafeMutablePointer where Pointee == Atomic<UInt64> {
    @inline(__always)
    func load(ordering: AtomicLoadOrdering) -> UInt64 {
        if ordering == .relaxed { return pointee.load(ordering: .relaxed) }
        if ordering == .acquiring { return pointee.load(ordering: .acquiring) }
        return pointee.load(ordering: .sequentiallyConsistent)
    }

    @inline(__always)
    func store(_ value: UInt64, ordering: AtomicStoreOrdering) {
        if ordering == .relaxed { pointee.store(value, ordering: .relaxed) }
        else if ordering == .releasing { pointee.store(value, ordering: .releasing) }
        else { pointee.store(value, ordering: .sequentiallyConsistent) }
    }

    @inline(__always)
    func add(_ value: UInt64, ordering: AtomicUpdateOrdering) {
        if ordering == .relaxed { pointee.wrappingAdd(value, ordering: .relaxed) }
        else { pointee.wrappingAdd(value, ordering: .sequentiallyConsistent) }
    }

    @inline(__always)
    func subtract(_ value: UInt64, ordering: AtomicUpdateOrdering) {
        if ordering == .relaxed { pointee.wrappingSubtract(value, ordering: .relaxed) }
        else { pointee.wrappingSubtract(value, ordering: .sequentiallyConsistent) }
    }

    @inline(__always)
    func compareExchange(expected: UInt64, desired: UInt64, ordering: AtomicUpdateOrdering) -> (exchanged: Bool, original: UInt64) {
        if ordering == .relaxed {
            return pointee.compareExchange(expected: expected, desired: desired, ordering: .relaxed)
        }
        return pointee.compareExchange(expected: expected, desired: desired, ordering: .sequentiallyConsistent)
    }
}
