#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The reader-writer algorithm shared by every scope (layout 3): per-participant shared
/// counts, a control word (`Control`), phase-fair hand-over and targeted wake-ups.
///
/// A *participant* owns one entry of the holder table: each registered process in a
/// process scope, the one process in the threads scope (a private table of one entry).
/// Every thread of a participant counts its shared holds in that entry's `readers`.
///
/// **Safety (Dekker).** A reader is inside only after it incremented its entry's
/// `readers` and *then* saw `Control.writer` clear; a writer holds only after it set
/// `Control.writer` and *then* saw every entry's `readers` at 0. All four operations are
/// sequentially consistent, so a reader and a writer that race cannot both miss each
/// other. A reader that sees a writer backs off (decrements) before it waits.
///
/// **Fairness both ways.** A writer that sets `writer` keeps new readers out (they back
/// off and wait) and waits only for the readers already inside: writers never starve.
/// Readers that had to wait are counted in their entry's `blocked` and flag
/// `readersBlocked`; the end of that write phase turns the flag into `readTurn`, and no
/// writer may start the next phase until every live entry's `blocked` is 0 — the waiting
/// readers go in first (phase fairness, as in Brandenburg and Anderson's phase-fair
/// locks). Readers that arrive during the read turn go in too, but a writer that starts
/// its phase after the turn waits only for them to leave.
///
/// **Wake-ups.** Readers sleep on the control word with futex bitset `readerBits` and are
/// woken (all) by the end of the write phase they wait for; the draining writer sleeps
/// on it with `drainBits` and is woken by the reader whose entry's count reaches 0;
/// writers waiting to start a phase sleep on the event counter `writerSeq` and are woken
/// one at a time (`writerSleepers` counts them), by the end of a phase or of a read turn.
///
/// **Deaths (process scopes).** The word holds no counts, so a dead process leaves only
/// its entry's counts (which stop counting once the entry is *reclaimed*) and, if it
/// owned the write phase, the phase itself. Waiters look for dead entries from time to
/// time (`Waiter.checkIntervalNanoseconds`; the kernel wakes no futex sleeper when
/// another process dies) and reclaim them under the dead entry's liveness byte lock
/// (see `Core.reclaim`).
@usableFromInline @frozen
struct Core {
    /// The control word (see `Control`).
    @usableFromInline let control: UnsafeMutablePointer<Atomic<UInt32>>
    /// Three words: `highWater` (+0), `writerSleepers` (+4), `writerSeq` (+8).
    @usableFromInline let words: UnsafeMutableRawPointer
    /// Entry 0 of the holder table; entries are 64 bytes apart (see `Entry`).
    @usableFromInline let entries: UnsafeMutableRawPointer
    /// The lock file's descriptor, for liveness byte locks; -1 in the threads scope,
    /// whose one participant is this process (never dead to itself).
    @usableFromInline let fd: Int32
    /// The number of entries (validated at open; never re-read from shared memory).
    @usableFromInline let capacity: Int
    /// The count of reclaimed dead holders (process scopes; a private word otherwise).
    @usableFromInline let recoveries: UnsafeMutablePointer<Atomic<UInt32>>

    @inlinable init(control: UnsafeMutablePointer<Atomic<UInt32>>, words: UnsafeMutableRawPointer,
                    entries: UnsafeMutableRawPointer, fd: Int32, capacity: Int,
                    recoveries: UnsafeMutablePointer<Atomic<UInt32>>) {
        self.control = control
        self.words = words
        self.entries = entries
        self.fd = fd
        self.capacity = capacity
        self.recoveries = recoveries
    }

    @inlinable var processShared: Bool { fd >= 0 }

    /// Entry `slot`. Invariant: `0 <= slot < capacity`.
    @inlinable func entry(_ slot: Int32) -> Entry { Entry(entries + Segment.entrySize * Int(slot)) }

    /// Entries ever claimed: writers scan `0 ..< scanLimit`. Raised by registration
    /// (before the new participant's first count), never lowered.
    @inlinable var highWater: UnsafeMutablePointer<Atomic<UInt32>> { words.assumingMemoryBound(to: Atomic<UInt32>.self) }
    /// Writers sleeping (or about to) on `writerSeq`.
    @inlinable var writerSleepers: UnsafeMutablePointer<Atomic<UInt32>> { (words + 4).assumingMemoryBound(to: Atomic<UInt32>.self) }
    /// The event counter writers sleep on: bumped before each wake-up.
    @inlinable var writerSeq: UnsafeMutablePointer<Atomic<UInt32>> { (words + 8).assumingMemoryBound(to: Atomic<UInt32>.self) }

    /// The entries to scan, clamped to the validated capacity (the shared word is not trusted).
    @inlinable var scanLimit: Int {
        min(Int(highWater.pointee.load(ordering: .sequentiallyConsistent)), capacity)
    }

    // MARK: Shared mode

    /// One attempt: count this thread in `e`, then look for a writer. On failure the
    /// count is taken back (and the draining writer woken if need be).
    @inlinable @inline(__always)
    func enterSharedFast(_ e: Entry) -> Bool {
        e.readers.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        if _fastPath(control.pointee.load(ordering: .sequentiallyConsistent) & Control.writer == 0) { return true }
        leaveCount(e)
        return false
    }

    /// Releases one shared hold counted in `e`.
    @inlinable @inline(__always)
    func leaveShared(_ e: Entry) {
        if e.readers.pointee.wrappingSubtract(1, ordering: .sequentiallyConsistent).newValue == 0,
           _slowPath(control.pointee.load(ordering: .sequentiallyConsistent) & Control.drainWait != 0) {
            wakeDrainer()
        }
    }

    /// Takes back one count of `e` (a reader backing off).
    @usableFromInline @inline(never)
    func leaveCount(_ e: Entry) {
        leaveShared(e)
    }

    /// Shared acquisition after a failed fast attempt (not counted). Returns false if
    /// `tryOnly` and a writer owns the phase, or at the waiter's deadline.
    @usableFromInline
    func enterShared(slot: Int32, waiter: inout Waiter, tryOnly: Bool) -> Bool {
        let e = entry(slot)
        if enterSharedFast(e) { return true }
        if tryOnly { return false }
        e.blocked.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        while true {
            let c = control.pointee.load(ordering: .sequentiallyConsistent)
            if c & Control.writer == 0 {
                if enterSharedFast(e) {
                    unblock(e)
                    return true
                }
                continue
            }
            if waiter.spin() { continue }
            var expected = c
            if c & Control.readersBlocked == 0 {
                guard control.pointee.compareExchange(
                    expected: c, desired: c | Control.readersBlocked, ordering: .sequentiallyConsistent).exchanged
                else { continue }
                expected = c | Control.readersBlocked
            }
            if !sleep(&waiter, on: control, expected: expected, bitset: Control.readerBits, slot: slot) {
                unblock(e)
                return false
            }
        }
    }

    /// A blocked reader of `e` stops waiting (it went in, or gave up). During a read
    /// turn, the last of them lets a writer start the next phase.
    func unblock(_ e: Entry) {
        e.blocked.pointee.wrappingSubtract(1, ordering: .sequentiallyConsistent)
        if control.pointee.load(ordering: .sequentiallyConsistent) & Control.readTurn != 0 { wakeWriter() }
    }

    /// Clears `drainWait` and wakes the draining writer (it re-scans the counts).
    @usableFromInline @inline(never)
    func wakeDrainer() {
        var c = control.pointee.load(ordering: .sequentiallyConsistent)
        while c & Control.drainWait != 0 {
            let (ok, seen) = control.pointee.compareExchange(
                expected: c, desired: c & ~Control.drainWait, ordering: .sequentiallyConsistent)
            if ok {
                Sys.futexWake(control, count: 1, bitset: Control.drainBits, processShared: processShared)
                return
            }
            c = seen
        }
    }

    // MARK: Exclusive mode

    /// Starts a write phase if none is owned and no read turn is pending. Returns the
    /// control word it replaced (its `ownerDied` is the report), or nil.
    ///
    /// `ownerDied` stays set while the phase drains: the report belongs to the next
    /// writer that *holds*, and a writer that dies draining never held. The owner clears
    /// it once it holds (`takeDeathReport`).
    @inlinable @inline(__always)
    func startWritePhaseFast(_ slot: Int32) -> UInt32? {
        let c = control.pointee.load(ordering: .relaxed)
        guard c & (Control.writer | Control.readTurn) == 0 else { return nil }
        let n = c | Control.writer | Control.owner(slot)
        return control.pointee.compareExchange(expected: c, desired: n, ordering: .sequentiallyConsistent).exchanged ? c : nil
    }

    /// Whether every entry's shared count is 0 (the write phase's owner may hold).
    @inlinable @inline(__always)
    func drained() -> Bool {
        let limit = scanLimit
        var i = 0
        while i < limit {
            if entry(Int32(i)).readers.pointee.load(ordering: .sequentiallyConsistent) != 0 { return false }
            i += 1
        }
        return true
    }

    /// Whether a reader waits for a read turn in any entry.
    func anyBlocked() -> Bool {
        for i in 0..<scanLimit where entry(Int32(i)).blocked.pointee.load(ordering: .sequentiallyConsistent) != 0 {
            return true
        }
        return false
    }

    /// One attempt to start a write phase, read turn included: a pending read turn is
    /// over once no reader is blocked. Returns the replaced word, or nil.
    func startWritePhase(_ slot: Int32) -> UInt32? {
        while true {
            let c = control.pointee.load(ordering: .sequentiallyConsistent)
            if c & Control.writer != 0 { return nil }
            if c & Control.readTurn != 0 && anyBlocked() { return nil }
            let n = (c & ~Control.readTurn) | Control.writer | Control.owner(slot)  // `ownerDied` kept: see `startWritePhaseFast`
            if control.pointee.compareExchange(expected: c, desired: n, ordering: .sequentiallyConsistent).exchanged {
                return c
            }
        }
    }

    /// Waits to start a write phase. Returns the replaced control word, or nil if
    /// `tryOnly` and none could start now, or at the waiter's deadline.
    @usableFromInline
    func waitForWritePhase(slot: Int32, waiter: inout Waiter, tryOnly: Bool) -> UInt32? {
        if let old = startWritePhase(slot) { return old }
        if tryOnly { return nil }
        let e = entry(slot)
        e.waitingWriters.pointee.wrappingAdd(1, ordering: .relaxed)
        defer { e.waitingWriters.pointee.wrappingSubtract(1, ordering: .relaxed) }
        while true {
            if waiter.spin() {
                if let old = startWritePhase(slot) { return old }
                continue
            }
            // Eventcount: read the counter, announce ourselves, re-check, then sleep on
            // the value read. A wake-up after the read changes the counter, so it is
            // never lost.
            let seq = writerSeq.pointee.load(ordering: .sequentiallyConsistent)
            writerSleepers.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
            if let old = startWritePhase(slot) {
                writerSleepers.pointee.wrappingSubtract(1, ordering: .sequentiallyConsistent)
                return old
            }
            let inTime = sleep(&waiter, on: writerSeq, expected: seq, bitset: UInt32.max, slot: slot)
            writerSleepers.pointee.wrappingSubtract(1, ordering: .sequentiallyConsistent)
            if !inTime {
                wakeWriter()  // this one may have taken a wake-up meant for a writer that can go on
                return nil
            }
        }
    }

    /// Waits, owning the write phase, until the readers inside have left. Returns false
    /// if `tryOnly` and some are inside, or at the deadline: the phase is then given up
    /// (restoring the death report it took, `old & ownerDied`).
    @usableFromInline
    func drain(slot: Int32, old: UInt32, waiter: inout Waiter, tryOnly: Bool) -> Bool {
        while true {
            if drained() { return true }
            if tryOnly || waiter.expired() {
                endWritePhase(extra: old & Control.ownerDied)
                return false
            }
            if waiter.spin() { continue }
            let c = control.pointee.load(ordering: .sequentiallyConsistent)
            var expected = c
            if c & Control.drainWait == 0 {
                guard control.pointee.compareExchange(
                    expected: c, desired: c | Control.drainWait, ordering: .sequentiallyConsistent).exchanged
                else { continue }
                expected = c | Control.drainWait
            }
            if drained() { return true }
            if !sleep(&waiter, on: control, expected: expected, bitset: Control.drainBits, slot: slot) {
                if drained() { return true }
                endWritePhase(extra: old & Control.ownerDied)
                return false
            }
        }
    }

    /// The phase's owner now holds exclusive mode, its `writing` already 1, and was told
    /// of a death (`ownerDied` in the word its phase replaced): the report is delivered.
    /// A death of this writer from here on is reported again (its `writing` is 1).
    @usableFromInline @inline(never)
    func takeDeathReport() {
        control.pointee.bitwiseAnd(~Control.ownerDied, ordering: .sequentiallyConsistent)
    }

    /// Releases exclusive mode (the caller owns the write phase).
    @inlinable @inline(__always)
    func releaseWritePhase() {
        let c = control.pointee.load(ordering: .relaxed)
        if _fastPath(c & Control.readersBlocked == 0),
           control.pointee.compareExchange(
               expected: c, desired: c & ~(Control.writer | Control.ownerMask | Control.drainWait),
               ordering: .sequentiallyConsistent).exchanged {
            if _slowPath(writerSleepers.pointee.load(ordering: .sequentiallyConsistent) != 0) { wakeWriter() }
            return
        }
        endWritePhase(extra: 0)
    }

    /// Ends the write phase (a release, a writer giving up, or a dead owner's phase
    /// reclaimed), adding `extra` bits: blocked readers get the read turn and are woken,
    /// then one sleeping writer.
    @usableFromInline @inline(never)
    func endWritePhase(extra: UInt32) {
        var c = control.pointee.load(ordering: .relaxed)
        while true {
            let (ok, seen) = control.pointee.compareExchange(
                expected: c, desired: Control.phaseEnded(c) | extra, ordering: .sequentiallyConsistent)
            if ok { break }
            c = seen
        }
        if c & Control.readersBlocked != 0 {
            Sys.futexWake(control, count: Int32.max, bitset: Control.readerBits, processShared: processShared)
        }
        wakeWriter()
    }

    /// Wakes one writer sleeping on `writerSeq`, if any.
    @usableFromInline @inline(never)
    func wakeWriter() {
        guard writerSleepers.pointee.load(ordering: .sequentiallyConsistent) != 0 else { return }
        writerSeq.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        Sys.futexWake(writerSeq, count: 1, bitset: UInt32.max, processShared: processShared)
    }

    // MARK: Sleeping

    /// Sleeps on `word` while it holds `expected` (tagged `bitset`), at most until the
    /// waiter's deadline or its next look for dead holders. Returns false once the
    /// deadline has passed.
    func sleep(_ waiter: inout Waiter, on word: UnsafeMutablePointer<Atomic<UInt32>>,
               expected: UInt32, bitset: UInt32, slot: Int32) -> Bool {
        let now = Sys.monotonicNanoseconds()
        if let deadline = waiter.deadline, now >= deadline { return false }
        var until = waiter.deadline
        if fd >= 0 {
            if waiter.nextCheck == 0 {
                waiter.nextCheck = now + Waiter.firstCheckNanoseconds
            } else if now >= waiter.nextCheck {
                waiter.nextCheck = now + Waiter.checkIntervalNanoseconds
                if reclaimDead(except: slot) { return true }
            }
            until = min(until ?? .max, waiter.nextCheck)
        }
        Sys.futexWait(word, expected: expected, bitset: bitset, deadline: until, processShared: processShared)
        return true
    }
}

/// How long a waiter spins before it sleeps, its deadline, and when it next looks for
/// dead holders (process scopes).
@usableFromInline
struct Waiter {
    /// Absolute CLOCK_MONOTONIC deadline in nanoseconds, or nil to wait forever.
    @usableFromInline let deadline: Int64?
    var spins = 0
    /// When to next look for dead holders (0: not yet waiting long).
    var nextCheck: Int64 = 0

    @usableFromInline init(deadline: Int64?) { self.deadline = deadline }

    /// Busy-wait rounds before sleeping.
    static let spinRounds = 100
    /// How long a waiter sleeps before it first looks for dead holders.
    static let firstCheckNanoseconds: Int64 = 2_000_000
    /// How often it looks again while it keeps waiting (also the longest futex sleep).
    static let checkIntervalNanoseconds: Int64 = 20_000_000

    /// One busy-wait round, while the spin budget lasts.
    mutating func spin() -> Bool {
        guard spins < Waiter.spinRounds else { return false }
        spins += 1
        Sys.spinHint()
        return true
    }

    /// Whether the deadline has passed.
    func expired() -> Bool {
        guard let deadline else { return false }
        return Sys.monotonicNanoseconds() >= deadline
    }
}
