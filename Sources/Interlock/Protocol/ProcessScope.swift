#if canImport(Glibc)
import Glibc
#endif
import Synchronization

extension LocalState {
    /// This process's holder-table entry in `segment`, registering on first use (in a
    /// fork child, the first use after the fork). Serialised per process by
    /// `LockFile.withTableLock`, so two threads never register twice.
    @usableFromInline
    func register(in segment: Segment) -> Result<Int32, InterlockError> {
        let current = slot
        if current >= 0 { return .success(current) }
        return LockFile.withTableLock { () -> Result<Int32, InterlockError> in
            let current = slot
            if current >= 0 { return .success(current) }
            if startTime == 0 { startTime = ProcessIdentity.currentStartTime() }
            switch segment.register(pid: pid, startTime: startTime) {
            case .claimed(let s):
                slotWord.pointee.store(s, ordering: .releasing)
                return .success(s)
            case .foreignLock(let holder):
                return .failure(.foreignRecordLock(name: nil, pid: holder))
            case .full:
                return .failure(.holderTableFull(name: nil, capacity: segment.capacity))
            }
        }
    }

    /// After a failed try or timed acquisition: looks for dead holders, at most once per
    /// `Waiter.checkIntervalNanoseconds` per process, so that a caller that only polls
    /// (`…IfAvailable`, or timeouts shorter than a waiter's first look) still gets a
    /// dead holder's share reclaimed. Returns whether anything was reclaimed.
    @usableFromInline
    func recoverIfDue(_ core: Core) -> Bool {
        guard core.fd >= 0 else { return false }
        let now = Sys.monotonicNanoseconds()
        let last = lastRecoveryCheck.pointee.load(ordering: .relaxed)
        guard now - last >= Waiter.checkIntervalNanoseconds,
              lastRecoveryCheck.pointee.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged
        else { return false }
        return core.reclaimDead(except: slot)
    }
}

extension Result {
    @usableFromInline var isSuccess: Bool {
        if case .success = self { return true }
        return false
    }
}
