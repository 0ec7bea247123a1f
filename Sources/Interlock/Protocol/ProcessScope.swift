#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The per-process shared-holder count of a process-scoped lock (`LocalState.readers`).
///
/// Only a process's first shared holder in and last one out touch the state word;
/// threads in between change this process-local word alone (plus one load of the
/// state word, for writer preference).
///
/// Bits:
/// - 0…29 (`count`): threads of this process holding shared mode at the process level.
///   Non-zero only while this process is counted in the state word.
/// - 30 (`parked`): a thread sleeps on this word's (private) futex, waiting for `busy`
///   to clear.
/// - 31 (`busy`): a thread is moving this process into or out of the state word; the
///   others wait.
@usableFromInline
enum Readers {
    @usableFromInline static let countMask: UInt32 = (1 << 30) - 1
    @usableFromInline static let parked: UInt32 = 1 << 30
    @usableFromInline static let busy: UInt32 = 1 << 31
}

extension LocalState {
    /// This process's holder-table entry, registering on first use.
    /// Called only under process-level serialisation (busy bit, or the exclusive rwlock).
    @usableFromInline
    func entry(in segment: Segment) -> Result<Entry, InterlockError> {
        if slot >= 0 { return .success(segment.entry(slot)) }
        if startTime == 0 { startTime = ProcessIdentity.currentStartTime() }
        let (pid, startTime) = (pid, startTime)
        // A table full of entries that dead processes left is recovered as a guest (see
        // `Segment.guestSlot`), then registration is tried again; another process may be
        // the guest or the recoverer right now, so a few rounds are allowed.
        for _ in 0..<50 {
            switch LockFile.withTableLock({ segment.register(pid: pid, startTime: startTime) }) {
            case .claimed(let s):
                slot = s
                return .success(segment.entry(s))
            case .foreignLock(let holder):
                return .failure(.foreignRecordLock(name: nil, pid: holder))
            case .full(let dead):
                if dead == 0 { return .failure(.holderTableFull(name: nil, capacity: segment.capacity)) }
                if !LockFile.withTableLock({ segment.recoverAsGuest(pid: pid) }) {
                    var pause = timespec(tv_sec: 0, tv_nsec: 1_000_000)
                    nanosleep(&pause, nil)
                }
            }
        }
        return .failure(.holderTableFull(name: nil, capacity: segment.capacity))
    }

    /// After a failed try or timed acquisition: looks for dead holders, at most once per
    /// `Waiter.checkIntervalNanoseconds` per process, so that a caller that only polls
    /// (`…IfAvailable`, or timeouts shorter than a waiter's first scan) still gets a dead
    /// holder's share reclaimed. Returns whether a recovery ran.
    @usableFromInline
    func recoverIfDue(_ segment: Segment) -> Bool {
        guard slot >= 0 else { return false }
        let now = Sys.monotonicNanoseconds()
        let last = lastRecoveryCheck.pointee.load(ordering: .relaxed)
        guard now - last >= Waiter.checkIntervalNanoseconds,
              lastRecoveryCheck.pointee.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged
        else { return false }
        return segment.recoverIfNeeded(slot: slot)
    }

    // MARK: Shared

    /// Process-level part of a shared acquire (the caller holds the thread-level rdlock).
    @inlinable @inline(__always)
    func enterShared(_ segment: Segment, deadline: Int64?, tryOnly: Bool) -> Result<Void, InterlockError> {
        let r = readers.pointee.load(ordering: .relaxed)
        if _fastPath(r & Readers.busy == 0 && r & Readers.countMask != 0
            && segment.state.pointee.load(ordering: .relaxed) & StateWord.waitingMask == 0) {
            if readers.pointee.compareExchange(expected: r, desired: r + 1, ordering: .acquiring).exchanged {
                return .success(())
            }
        }
        return enterSharedSlow(segment, deadline: deadline, tryOnly: tryOnly)
    }

    @usableFromInline @inline(never)
    func enterSharedSlow(_ segment: Segment, deadline: Int64?, tryOnly: Bool) -> Result<Void, InterlockError> {
        var waiter = Waiter(deadline: deadline)
        while true {
            let r = readers.pointee.load(ordering: .acquiring)
            if r & Readers.busy != 0 {
                // Another thread of this process is moving it into or out of the state
                // word. A try fails only if a writer holds or waits; otherwise the move is
                // quick, so wait for it rather than fail spuriously.
                if tryOnly && segment.state.pointee.load(ordering: .acquiring)
                    & (StateWord.exclusive | StateWord.waitingMask | StateWord.recovering) != 0 {
                    return .failure(.timedOut)
                }
                if tryOnly {
                    // Re-check for a writer every millisecond while waiting.
                    _ = parkOnReaders(r, deadline: Sys.deadline(after: .milliseconds(1)))
                } else if !parkOnReaders(r, deadline: deadline) {
                    return .failure(.timedOut)
                }
                continue
            }
            if r & Readers.countMask != 0 {
                // This process already holds shared mode; still defer to waiting writers.
                let s = segment.state.pointee.load(ordering: .acquiring)
                if s & StateWord.waitingMask != 0 {
                    if tryOnly || !segment.wait(observed: s, slot: slot, waiter: &waiter) {
                        // (`slot` is stable here: this process is registered and counted.)
                        // A dead waiting writer is reclaimed once per interval, then one retry.
                        if recoverIfDue(segment) { continue }
                        return .failure(.timedOut)
                    }
                    continue
                }
                if readers.pointee.compareExchange(expected: r, desired: r + 1, ordering: .acquiring).exchanged {
                    return .success(())
                }
                continue
            }
            // First holder of this process: move it into the state word.
            guard readers.pointee.compareExchange(
                expected: r, desired: Readers.busy | (r & Readers.parked), ordering: .acquiring).exchanged
            else { continue }
            let result: Result<Void, InterlockError>
            switch entry(in: segment) {
            case .failure(let e):
                result = .failure(e)
            case .success(let e):
                // Under `busy`, so `slot` is ours to read; a failed attempt looks for dead
                // holders (once per interval) and tries once more.
                let acquired = segment.acquireShared(entry: e, slot: slot, waiter: &waiter, tryOnly: tryOnly)
                    || (recoverIfDue(segment) && segment.acquireShared(entry: e, slot: slot, waiter: &waiter, tryOnly: true))
                result = acquired ? .success(()) : .failure(.timedOut)
            }
            let old = readers.pointee.exchange(result.isSuccess ? 1 : 0, ordering: .acquiringAndReleasing)
            if old & Readers.parked != 0 { Sys.futexWakeAll(readers, processShared: false) }
            return result
        }
    }

    /// Process-level part of a shared release (before the thread-level unlock).
    @inlinable @inline(__always)
    func leaveShared(_ segment: Segment) {
        let r = readers.pointee.load(ordering: .relaxed)
        if _fastPath(r & Readers.busy == 0 && r & Readers.countMask > 1) {
            if readers.pointee.compareExchange(expected: r, desired: r - 1, ordering: .releasing).exchanged { return }
        }
        leaveSharedSlow(segment)
    }

    @usableFromInline @inline(never)
    func leaveSharedSlow(_ segment: Segment) {
        while true {
            let r = readers.pointee.load(ordering: .acquiring)
            if r & Readers.busy != 0 { _ = parkOnReaders(r, deadline: nil); continue }
            let count = r & Readers.countMask
            if count == 0 { misuse("unlockShared() called, but this process holds no shared mode on this lock") }
            if count > 1 {
                if readers.pointee.compareExchange(expected: r, desired: r - 1, ordering: .releasing).exchanged { return }
                continue
            }
            guard readers.pointee.compareExchange(
                expected: r, desired: Readers.busy | (r & Readers.parked), ordering: .acquiringAndReleasing).exchanged
            else { continue }
            segment.releaseShared(entry: segment.entry(slot), slot: slot)
            let old = readers.pointee.exchange(0, ordering: .acquiringAndReleasing)
            if old & Readers.parked != 0 { Sys.futexWakeAll(readers, processShared: false) }
            return
        }
    }

    /// Sleeps until the readers word changes from `r` (which has `busy` set).
    /// Returns false at the deadline.
    @usableFromInline
    func parkOnReaders(_ r: UInt32, deadline: Int64?) -> Bool {
        for _ in 0..<Gate.spinRounds {
            if readers.pointee.load(ordering: .relaxed) != r { return true }
            Sys.spinHint()
        }
        var expected = r
        if r & Readers.parked == 0 {
            guard readers.pointee.compareExchange(expected: r, desired: r | Readers.parked, ordering: .relaxed).exchanged
            else { return true }
            expected = r | Readers.parked
        }
        var timeout: Int64? = nil
        if let deadline {
            let left = deadline - Sys.monotonicNanoseconds()
            if left <= 0 { return false }
            timeout = left
        }
        Sys.futexWait(readers, expected: expected, timeoutNanoseconds: timeout, processShared: false)
        return true
    }

    // MARK: Exclusive

    /// Process-level part of an exclusive acquire (the caller holds the thread-level
    /// exclusive lock, which serialises this with every other process-level step of ours).
    @usableFromInline
    func enterExclusive(_ segment: Segment, deadline: Int64?, tryOnly: Bool) -> Result<Void, InterlockError> {
        let e: Entry
        switch entry(in: segment) {
        case .failure(let error): return .failure(error)
        case .success(let entry): e = entry
        }
        var waiter = Waiter(deadline: deadline)
        var acquired = segment.acquireExclusive(entry: e, slot: slot, waiter: &waiter, tryOnly: tryOnly)
        if acquired == nil && recoverIfDue(segment) {
            acquired = segment.acquireExclusive(entry: e, slot: slot, waiter: &waiter, tryOnly: true)
        }
        guard let died = acquired else { return .failure(.timedOut) }
        ownerDied = died
        return .success(())
    }

    @usableFromInline
    func leaveExclusive(_ segment: Segment) {
        ownerDied = false
        segment.releaseExclusive(entry: segment.entry(slot), slot: slot)
    }
}

extension Result {
    @usableFromInline var isSuccess: Bool {
        if case .success = self { return true }
        return false
    }
}
