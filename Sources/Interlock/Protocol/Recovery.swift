#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Crash recovery (layout 3): a dead participant's share stops counting.
///
/// A process that dies (even by `kill -9`) leaves its entry's counts (`readers`,
/// `blocked`) and, if it owned the write phase, the phase (`Control.owner` names its
/// entry). Whether an entry's owner lives is the kernel's answer: the owner holds a
/// record lock on the entry's byte of the lock file, dropped when it dies (see
/// `Segment`). Nothing needs rebuilding: the control word holds no counts.
///
/// **Reclaiming entry `i`** takes `i`'s byte lock first. Holding it proves that no live
/// process owns the entry, and keeps anyone from registering it meanwhile; so the counts
/// read and zeroed next are a dead process's, and a write phase that the control word
/// still says entry `i` owns is that dead process's (a live process owning the phase
/// holds its byte). The phase is ended with one CAS, exactly like a release, adding
/// `Control.ownerDied` if the dead writer held exclusive mode (its entry's `writing`)
/// rather than only draining. Two processes reclaiming the same entry are serialised by
/// the byte lock (and, within one process, by `LockFile.withTableLock`: record locks do
/// not exclude a process from itself).
///
/// Registration reclaims the entry it takes (it holds the byte anyway), so a table full
/// of dead holders frees itself for the next process that comes.
extension Core {
    /// Looks for dead participants (the write phase's owner, and entries with non-zero
    /// counts) and reclaims them. `except` is the caller's own entry. Returns whether
    /// anything was reclaimed. Process scopes only.
    @discardableResult
    func reclaimDead(except mine: Int32) -> Bool {
        guard fd >= 0 else { return false }
        var any = false
        let c = control.pointee.load(ordering: .sequentiallyConsistent)
        if c & Control.writer != 0, let k = Control.ownerSlot(c), k != mine, k < capacity, !isLive(k) {
            any = reclaim(k) || any
        }
        for i in 0..<Int32(scanLimit) where i != mine {
            let e = entry(i)
            if e.readers.pointee.load(ordering: .relaxed) == 0 && e.blocked.pointee.load(ordering: .relaxed) == 0 { continue }
            if !isLive(i) { any = reclaim(i) || any }
        }
        return any
    }

    /// Whether a live process owns entry `slot` (holds its byte lock); any process's
    /// lock counts, this process's own included (`F_OFD_GETLK` reports it).
    func isLive(_ slot: Int32) -> Bool {
        Sys.byteLockHolder(fd, at: Segment.entryOffset(slot)) != nil
    }

    /// Reclaims entry `slot` if its owner is dead (see the extension's notes).
    func reclaim(_ slot: Int32) -> Bool {
        LockFile.withTableLock {
            if isLive(slot) { return false }
            guard Sys.lockByte(fd, at: Segment.entryOffset(slot)) else { return false }  // another process is on it
            defer { Sys.unlockByte(fd, at: Segment.entryOffset(slot)) }
            return clean(slot)
        }
    }

    /// Zeroes a dead owner's counts in entry `slot` and ends the write phase it owned.
    /// The caller holds `slot`'s byte lock, and no live process owns the entry.
    /// Returns whether the dead owner left anything.
    func clean(_ slot: Int32) -> Bool {
        let e = entry(slot)
        var left = e.readers.pointee.exchange(0, ordering: .sequentiallyConsistent) != 0
        left = e.blocked.pointee.exchange(0, ordering: .sequentiallyConsistent) != 0 || left
        e.waitingWriters.pointee.store(0, ordering: .relaxed)
        // `writing` is zeroed only after the phase has ended: a reclaimer that dies in
        // between leaves it for the next one, which still reports the death.
        let held = e.writing.pointee.load(ordering: .sequentiallyConsistent) != 0
        defer { e.writing.pointee.store(0, ordering: .sequentiallyConsistent) }
        var c = control.pointee.load(ordering: .sequentiallyConsistent)
        while c & Control.writer != 0 && Control.ownerSlot(c) == slot {
            // One CAS ends the dead owner's phase, like its release would have.
            let (ok, seen) = control.pointee.compareExchange(
                expected: c, desired: Control.phaseEnded(c) | (held ? Control.ownerDied : 0),
                ordering: .sequentiallyConsistent)
            if ok {
                left = true
                if c & Control.readersBlocked != 0 {
                    Sys.futexWake(control, count: Int32.max, bitset: Control.readerBits, processShared: true)
                }
                wakeWriter()
                break
            }
            c = seen
        }
        if left {
            recoveries.pointee.wrappingAdd(1, ordering: .relaxed)
            // Counts that reached 0 may be what a drainer or a read turn waits for.
            if control.pointee.load(ordering: .sequentiallyConsistent) & Control.drainWait != 0 { wakeDrainer() }
            wakeWriter()
        }
        return left
    }
}

extension Segment {
    // MARK: Registration

    /// What `register` found.
    enum RegisterResult {
        /// This process now owns entry `slot`.
        case claimed(Int32)
        /// Every entry is owned by a live process.
        case full
        /// Another program holds a record lock over the table (it locked the lock file
        /// itself): its pid as seen here, 0 if not visible.
        case foreignLock(pid: Int32)
    }

    /// Claims a holder-table entry: the first whose liveness byte no live process holds,
    /// which this process then locks, reclaims (a dead previous owner's counts and
    /// phase) and claims.
    ///
    /// Within one process, call it under `LockFile.withTableLock` (the record lock cannot
    /// tell two handles of one process apart, so a live entry — perhaps another handle's —
    /// is skipped first); between processes the record lock is the arbiter.
    func register(pid: Int32, startTime: UInt64) -> RegisterResult {
        checkHeader()
        for i in 0..<Int32(capacity) {
            if let lock = liveLock(i) {
                if !lock.isExact { return .foreignLock(pid: lock.pid) }
                continue  // a live owner, perhaps another handle of this process
            }
            guard Sys.lockByte(fd, at: Segment.entryOffset(i)) else { continue }  // another process won it
            _ = core.clean(i)
            let e = entry(i)
            e.epoch.pointee.wrappingAdd(1, ordering: .relaxed)
            e.owner.pointee.store(UInt32(bitPattern: pid), ordering: .relaxed)
            e.startTime.pointee.store(startTime, ordering: .relaxed)
            // Scanned by writers from now on, before this process's first count.
            let high = core.highWater
            var h = high.pointee.load(ordering: .sequentiallyConsistent)
            while h < UInt32(i + 1) {
                let (ok, seen) = high.pointee.compareExchange(expected: h, desired: UInt32(i + 1), ordering: .sequentiallyConsistent)
                if ok { break }
                h = seen
            }
            return .claimed(i)
        }
        return .full
    }

    /// Gives an idle entry back (under `LockFile.withTableLock`). An entry still in use
    /// (a leaked hold) is left as it is: once this process closes the file or exits, its
    /// byte is free and the entry is reclaimed like any dead holder's.
    func unregister(slot: Int32) {
        let e = entry(slot)
        let c = core.control.pointee.load(ordering: .sequentiallyConsistent)
        guard e.readers.pointee.load(ordering: .sequentiallyConsistent) == 0,
              e.blocked.pointee.load(ordering: .sequentiallyConsistent) == 0,
              !(c & Control.writer != 0 && Control.ownerSlot(c) == slot)
        else { return }
        e.owner.pointee.store(0, ordering: .relaxed)
        e.startTime.pointee.store(0, ordering: .relaxed)
        Sys.unlockByte(fd, at: Segment.entryOffset(slot))
    }
}
