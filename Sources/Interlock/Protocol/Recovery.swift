#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Crash recovery: rebuilding the state word from the holder table.
///
/// A process that dies (even by `kill -9`) leaves its share in the state word. Whether
/// an entry's owner lives is the kernel's answer: the owner holds a record lock on the
/// entry's byte of the lock file, dropped when it dies (see `Segment`). A waiter that has
/// waited long enough scans the table; if a non-idle entry's byte is free, its owner is
/// dead and the waiter recovers:
///
/// 1. It claims the `recoverer` word with its own identity (its slot and that entry's
///    epoch). A recoverer that died is taken over: its byte is free, or its entry was
///    claimed again since (another epoch).
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
/// `inFlight`) needs no guessing about whether its CAS landed. A dead entry stays
/// non-idle until recovery has discounted it, and registration only claims idle
/// entries, so a new process can never inherit (or hide) a dead share — whatever pid
/// it has.
extension Segment {
    /// Looks for dead holders (or a dead recoverer) and recovers if there is one.
    /// `slot` is the caller's own registered entry. Returns whether a recovery ran.
    @discardableResult
    func recoverIfNeeded(slot: Int32) -> Bool {
        let s = state.pointee.load(ordering: .acquiring)
        if s & StateWord.recovering != 0 {
            let r = recoverer.pointee.load(ordering: .acquiring)
            if r == 0 || (r != recovererIdentity(slot: slot) && !recovererIsAlive(r)) {
                return recover(slot: slot)
            }
            return false
        }
        for i in 0..<Int32(capacity) {
            if entry(i).mode.pointee.load(ordering: .acquiring) == Entry.idle { continue }
            if !isLive(i) { return recover(slot: slot) }
        }
        return false
    }

    /// Runs the recovery described on this extension. Returns false if another live
    /// process is already recovering, or if a live process did not settle in time.
    func recover(slot: Int32) -> Bool {
        checkHeader()
        let me = recovererIdentity(slot: slot)
        // 1. Claim the recoverer word.
        while true {
            let r = recoverer.pointee.load(ordering: .acquiring)
            if r == me { return false }  // another thread of this process is on it
            if r != 0 && recovererIsAlive(r) { return false }
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
        /// A live process is stuck mid-transition (stopped?): undo the freeze, retry later.
        func giveUp() -> Bool {
            state.pointee.bitwiseAnd(~StateWord.recovering, ordering: .acquiringAndReleasing)
            recoverer.pointee.store(0, ordering: .releasing)
            Sys.futexWakeAll(state, processShared: true)
            return false
        }
        for i in 0..<Int32(capacity) {
            let e = entry(i)
            while e.mode.pointee.load(ordering: .acquiring) & Entry.inFlight != 0 && isLive(i) {
                if Sys.monotonicNanoseconds() > settleDeadline { return giveUp() }
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
                // While the word is frozen a live entry's mode cannot change, except for a
                // transient in-flight mark (a CAS attempt that must fail, then restores the
                // mode). But an in-flight entry may also be a *dead* one whose byte a
                // registering process holds for a moment (it then lets go: not idle), and
                // its mode says nothing about whether its CAS landed. So an in-flight,
                // locked entry is waited out here too, as in step 3.
                // One mode load, then one liveness query, and the decision uses exactly those.
                var mode = entry(i).mode.pointee.load(ordering: .acquiring)
                var live = mode != Entry.idle && isLive(i)
                while live && mode & Entry.inFlight != 0 {
                    if Sys.monotonicNanoseconds() > settleDeadline { return giveUp() }
                    Sys.yield()
                    mode = entry(i).mode.pointee.load(ordering: .acquiring)
                    live = mode != Entry.idle && isLive(i)
                }
                if mode == Entry.idle { continue }
                if !live {
                    reclaimed += 1
                    dead[Int(i) / 64] |= 1 << UInt64(Int(i) % 64)
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
            // Only the mode of a dead entry is reset (non-idle to idle): that is what lets
            // registration claim it again.
            for i in 0..<capacity where dead[i / 64] & (1 << UInt64(i % 64)) != 0 {
                entry(Int32(i)).mode.pointee.store(Entry.idle, ordering: .releasing)
            }
            recoveries.pointee.add(reclaimed, ordering: .relaxed)
            recoverer.pointee.store(0, ordering: .releasing)
            Sys.futexWakeAll(state, processShared: true)
            return true
        }
    }

    /// The recoverer word's value for the owner of entry `slot`: slot + 1 in the low 32
    /// bits, the entry's epoch in the high ones. The epoch changes whenever the entry is
    /// claimed again, so a dead recoverer's word never names its entry's next owner.
    func recovererIdentity(slot: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: slot + 1)) | UInt64(entry(slot).epoch.pointee.load(ordering: .acquiring)) << 32
    }

    /// Whether the process named by a recoverer word still owns the entry it named.
    func recovererIsAlive(_ identity: UInt64) -> Bool {
        let slot = Int64(identity & 0xFFFF_FFFF) - 1
        guard slot >= 0 && slot <= Int64(guestSlot) else { return false }  // not one of ours: corrupt
        return recovererIdentity(slot: Int32(slot)) == identity && isLive(Int32(slot))
    }

    // MARK: Registration

    /// What `register` found.
    enum RegisterResult {
        /// This process now owns entry `slot`.
        case claimed(Int32)
        /// Every entry is used by a live process or waits for recovery; `deadHolders` is
        /// how many of them belong to dead processes (recovery can free those).
        case full(deadHolders: Int)
        /// Another program holds a record lock over the table (it locked the lock file
        /// itself): its pid as seen here, 0 if not visible.
        case foreignLock(pid: Int32)
    }

    /// Claims a holder-table entry: the first entry that is idle and whose liveness byte
    /// no live process holds, which this process then locks.
    ///
    /// Within one process, call it under `LockFile.withTableLock` (the record lock cannot
    /// tell two handles of one process apart, so a live entry — perhaps another handle's —
    /// is skipped first); between processes the record lock is the arbiter.
    ///
    /// The byte is taken *before* the mode is read: once this process holds it, no live
    /// process owns the entry, and a dead owner's mode can only go from non-idle to idle
    /// (recovery), so "idle" read now stays true. Reading the mode first would be wrong:
    /// a live owner could acquire and die between that read and the lock, and this
    /// process would claim an entry that still holds a dead share, hiding it from
    /// recovery for good (the model's `REGISTER_CHECK_FIRST` trail).
    func register(pid: Int32, startTime: UInt64) -> RegisterResult {
        checkHeader()
        var dead = 0
        for i in 0..<Int32(capacity) {
            let e = entry(i)
            if let lock = liveLock(i) {
                if !lock.isExact { return .foreignLock(pid: lock.pid) }
                continue  // a live owner, perhaps another handle of this process
            }
            guard Sys.lockByte(fd, at: Segment.entryOffset(i)) else { continue }  // another process won it
            if e.mode.pointee.load(ordering: .acquiring) != Entry.idle {
                // A dead holder's entry, not recovered yet: leave it to recovery. (While we
                // held its byte a recount may have taken it for live; see `recover`.)
                Sys.unlockByte(fd, at: Segment.entryOffset(i))
                dead += 1
                continue
            }
            claim(e, pid: pid, startTime: startTime)
            return .claimed(i)
        }
        return .full(deadHolders: dead)
    }

    private func claim(_ e: Entry, pid: Int32, startTime: UInt64) {
        e.epoch.pointee.add(1, ordering: .acquiringAndReleasing)
        e.owner.pointee.store(UInt32(bitPattern: pid), ordering: .releasing)
        e.startTime.pointee.store(startTime, ordering: .releasing)
    }

    /// Recovers dead holders as a guest: for a process that could not register because
    /// the table is full and some entries belong to dead processes. It borrows the guest
    /// entry (its byte lock and a new epoch) as its recoverer identity, recovers, and
    /// gives the entry back. Returns whether a recovery ran; false also when another
    /// process is the guest right now (the caller retries later).
    ///
    /// Within one process, call it under `LockFile.withTableLock`, like `register`.
    func recoverAsGuest(pid: Int32) -> Bool {
        let guest = guestSlot
        if isLive(guest) { return false }
        guard Sys.lockByte(fd, at: Segment.entryOffset(guest)) else { return false }
        defer { unregister(slot: guest) }
        claim(entry(guest), pid: pid, startTime: 0)
        return recover(slot: guest)
    }

    /// Gives an idle entry back (under `LockFile.withTableLock`). An entry that is not
    /// idle is left as it is: once this process closes the file or exits, its byte is
    /// free and recovery discounts the entry like any dead holder's.
    func unregister(slot: Int32) {
        let e = entry(slot)
        guard e.mode.pointee.load(ordering: .acquiring) == Entry.idle else { return }
        e.owner.pointee.store(0, ordering: .releasing)
        e.startTime.pointee.store(0, ordering: .relaxed)
        Sys.unlockByte(fd, at: Segment.entryOffset(slot))
    }
}
