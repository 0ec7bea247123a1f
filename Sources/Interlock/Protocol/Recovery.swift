#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Crash recovery: rebuilding the state word from the holder table.
///
/// A process that dies (even by `kill -9`) leaves its share in the state word. A waiter
/// that has waited long enough scans the table; if a non-idle entry belongs to a dead
/// process (pid gone, a zombie, or a different start time), it recovers:
///
/// 1. It claims the `recoverer` word (its pid). A recoverer that died is taken over.
/// 2. It freezes the word by setting `StateWord.recovering`: every other transition
///    now fails its CAS, so the table can no longer change underneath.
/// 3. It waits until no *live* entry is `inFlight`: a live process whose CAS landed
///    before the freeze finishes writing its new mode; one whose CAS failed puts its
///    old mode back.
/// 4. It recounts the word from the live entries alone (shared, waiting, exclusive),
///    sets `ownerDied` if the exclusive bit was set and no live entry holds it, publishes
///    the new word (which clears `recovering`), and only then marks the dead entries idle
///    (registration reuses them). The order matters: a recovery that dies or gives up
///    midway must leave every dead share discoverable through its non-idle entry.
///
/// Because the word is rebuilt from live entries, two recoverers can never both
/// subtract one dead share, and a process that died mid-transition (its entry still
/// `inFlight`) needs no guessing about whether its CAS landed.
extension Segment {
    /// Looks for dead holders (or a dead recoverer) and recovers if there is one.
    /// Returns whether a recovery ran.
    @discardableResult
    func recoverIfNeeded(pid: Int32, startTime: UInt64) -> Bool {
        let s = state.pointee.load(ordering: .acquiring)
        if s & StateWord.recovering != 0 {
            let r = recoverer.pointee.load(ordering: .acquiring)
            if r == 0 || (r != Segment.recovererIdentity(pid: pid, startTime: startTime) && !Segment.recovererIsAlive(r)) {
                return recover(pid: pid, startTime: startTime)
            }
            return false
        }
        for i in 0..<Int32(capacity) {
            let e = entry(i)
            let owner = Int32(bitPattern: e.owner.pointee.load(ordering: .acquiring))
            if owner == 0 || owner == pid { continue }
            if e.mode.pointee.load(ordering: .acquiring) == Entry.idle { continue }
            if !ProcessIdentity.isAlive(pid: owner, startTime: e.startTime.pointee.load(ordering: .relaxed)) {
                return recover(pid: pid, startTime: startTime)
            }
        }
        return false
    }

    /// Runs the recovery described on this extension. Returns false if another live
    /// process is already recovering, or if a live process did not settle in time.
    func recover(pid: Int32, startTime: UInt64) -> Bool {
        let me = Segment.recovererIdentity(pid: pid, startTime: startTime)
        // 1. Claim the recoverer word.
        while true {
            let r = recoverer.pointee.load(ordering: .acquiring)
            if r == me { return false }  // another thread of this process is on it
            if r != 0 && Segment.recovererIsAlive(r) { return false }
            let (ok, _) = recoverer.pointee.compareExchange(expected: r, desired: me, ordering: .acquiringAndReleasing)
            if ok { break }
        }
        // 2. Freeze the word.
        var s = state.pointee.load(ordering: .acquiring)
        while s & StateWord.recovering == 0 {
            let (ok, seen) = state.pointee.compareExchange(
                expected: s, desired: s | StateWord.recovering, ordering: .acquiringAndReleasing)
            if ok { s |= StateWord.recovering; break }
            s = seen
        }
        // 3. Let live in-flight transitions settle.
        let settleDeadline = Sys.monotonicNanoseconds() + 2_000_000_000
        for i in 0..<Int32(capacity) {
            let e = entry(i)
            while true {
                let owner = Int32(bitPattern: e.owner.pointee.load(ordering: .acquiring))
                if owner == 0 || e.mode.pointee.load(ordering: .acquiring) & Entry.inFlight == 0 { break }
                if owner != pid && !ProcessIdentity.isAlive(pid: owner, startTime: e.startTime.pointee.load(ordering: .relaxed)) { break }
                if Sys.monotonicNanoseconds() > settleDeadline {
                    // A live process is stuck mid-transition (stopped?): undo the freeze, retry later.
                    state.pointee.bitwiseAnd(~StateWord.recovering, ordering: .acquiringAndReleasing)
                    recoverer.pointee.store(0, ordering: .releasing)
                    Sys.futexWakeAll(state, processShared: true)
                    return false
                }
                Sys.yield()
            }
        }
        // 4. Recount from live entries. Dead entries are marked idle only after the new
        //    word is published: if this recovery died (or gave up, after a takeover) in
        //    between, a dead share must still be discoverable through its non-idle entry.
        let words = (capacity + 63) / 64
        return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: words) { dead -> Bool in
            dead.initialize(repeating: 0)
            var shared: UInt32 = 0, waiting: UInt32 = 0, exclusive = false, reclaimed: UInt32 = 0
            for i in 0..<Int32(capacity) {
                let e = entry(i)
                let owner = e.owner.pointee.load(ordering: .acquiring)
                if owner == 0 { continue }
                let mode = e.mode.pointee.load(ordering: .acquiring)
                let alive = Int32(bitPattern: owner) == pid
                    || ProcessIdentity.isAlive(pid: Int32(bitPattern: owner), startTime: e.startTime.pointee.load(ordering: .relaxed))
                if !alive {
                    if mode != Entry.idle {
                        reclaimed += 1
                        dead[Int(i) / 64] |= 1 << UInt64(Int(i) % 64)
                    }
                    continue
                }
                switch mode & Entry.modeMask {
                case Entry.shared: shared += 1
                case Entry.waiting: waiting += 1
                case Entry.exclusive: exclusive = true
                default: break
                }
            }
            var n = shared | (waiting << 16)
            if exclusive { n |= StateWord.exclusive }
            if (s & StateWord.exclusive != 0 && !exclusive) || s & StateWord.ownerDied != 0 { n |= StateWord.ownerDied }
            state.pointee.store(n, ordering: .releasing)
            // Only the mode of a dead entry is reset; owner and start time stay, so recovery
            // never writes the fields `register` uses to claim a dead idle entry.
            for i in 0..<capacity where dead[i / 64] & (1 << UInt64(i % 64)) != 0 {
                entry(Int32(i)).mode.pointee.store(Entry.idle, ordering: .releasing)
            }
            recoveries.pointee.add(reclaimed, ordering: .relaxed)
            recoverer.pointee.store(0, ordering: .releasing)
            Sys.futexWakeAll(state, processShared: true)
            return true
        }
    }

    /// The recoverer word's value for a process: pid in the low 32 bits, the low 32 bits
    /// of its start time in the high ones.
    static func recovererIdentity(pid: Int32, startTime: UInt64) -> UInt64 {
        UInt64(UInt32(bitPattern: pid)) | (startTime << 32)
    }

    /// Whether the process named by a recoverer word is still running (and is the same
    /// process, not a reused pid).
    static func recovererIsAlive(_ identity: UInt64) -> Bool {
        let pid = Int32(bitPattern: UInt32(truncatingIfNeeded: identity))
        guard let status = ProcessIdentity.status(of: pid), !status.isZombie else { return false }
        let start = identity >> 32
        return start == 0 || status.startTime == 0 || status.startTime & 0xFFFF_FFFF == start
    }

    // MARK: Registration

    /// Claims a holder-table entry for `pid`. Returns nil if the table is full of live
    /// processes. Entries of dead processes that hold nothing are reused.
    func register(pid: Int32, startTime: UInt64) -> Int32? {
        let me = UInt32(bitPattern: pid)
        for i in 0..<Int32(capacity) {
            let e = entry(i)
            if e.owner.pointee.compareExchange(expected: 0, desired: me, ordering: .acquiringAndReleasing).exchanged {
                e.mode.pointee.store(Entry.idle, ordering: .releasing)
                e.startTime.pointee.store(startTime, ordering: .releasing)
                return i
            }
        }
        for i in 0..<Int32(capacity) {
            let e = entry(i)
            let owner = e.owner.pointee.load(ordering: .acquiring)
            if owner == 0 || e.mode.pointee.load(ordering: .acquiring) != Entry.idle { continue }
            if ProcessIdentity.isAlive(pid: Int32(bitPattern: owner), startTime: e.startTime.pointee.load(ordering: .relaxed)) { continue }
            if e.owner.pointee.compareExchange(expected: owner, desired: me, ordering: .acquiringAndReleasing).exchanged {
                e.startTime.pointee.store(startTime, ordering: .releasing)
                return i
            }
        }
        return nil
    }

    /// Gives an idle entry back.
    func unregister(slot: Int32, pid: Int32) {
        let e = entry(slot)
        guard e.mode.pointee.load(ordering: .acquiring) == Entry.idle else { return }
        e.startTime.pointee.store(0, ordering: .relaxed)
        _ = e.owner.pointee.compareExchange(expected: UInt32(bitPattern: pid), desired: 0, ordering: .acquiringAndReleasing)
    }
}
