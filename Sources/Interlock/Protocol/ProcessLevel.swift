#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A waiting strategy for cross-process waits: spin briefly, then sleep on the shared
/// futex in bounded slices, and every so often ask the kernel whether a holder died
/// (one `fcntl(F_OFD_GETLK)` per non-idle entry; see `Segment.recoverIfNeeded`).
@usableFromInline
struct Waiter {
    /// Absolute CLOCK_MONOTONIC deadline in nanoseconds, or nil to wait forever.
    @usableFromInline let deadline: Int64?
    var spins = 0
    /// When to next scan the holder table for dead holders (0: not yet waiting long).
    var nextCheck: Int64 = 0

    @usableFromInline init(deadline: Int64?) { self.deadline = deadline }

    /// Busy-wait rounds before sleeping.
    static let spinRounds = 100
    /// How long a waiter sleeps before it first looks for dead holders.
    static let firstCheckNanoseconds: Int64 = 2_000_000
    /// How often it looks again while it keeps waiting (also the longest futex sleep).
    static let checkIntervalNanoseconds: Int64 = 20_000_000
}

extension Segment {
    // MARK: Shared mode (a process's first holder in, last holder out)

    /// Adds this process to the shared holders. Returns false if `tryOnly` and the lock
    /// is not available now, or at the waiter's deadline.
    @usableFromInline
    func acquireShared(entry: Entry, slot: Int32, waiter: inout Waiter, tryOnly: Bool) -> Bool {
        let blocked = StateWord.exclusive | StateWord.waitingMask | StateWord.recovering
        while true {
            let s = state.pointee.load(ordering: .acquiring)
            if s & blocked == 0 {
                if transition(s, s + StateWord.oneShared, entry: entry, from: Entry.idle, to: Entry.shared) { return true }
                continue
            }
            if tryOnly || !wait(observed: s, slot: slot, waiter: &waiter) { return false }
        }
    }

    /// Removes this process from the shared holders; the last one out wakes sleepers.
    @usableFromInline
    func releaseShared(entry: Entry, slot: Int32) {
        var waiter = Waiter(deadline: nil)
        while true {
            let s = state.pointee.load(ordering: .relaxed)
            if s & StateWord.recovering != 0 { _ = wait(observed: s, slot: slot, waiter: &waiter); continue }
            precondition(s & StateWord.sharedMask != 0, "Interlock: shared count underflow in the state word")
            var n = s - StateWord.oneShared
            let wake = n & StateWord.sharedMask == 0 && n & StateWord.parked != 0
            if wake { n &= ~StateWord.parked }
            if transition(s, n, entry: entry, from: Entry.shared, to: Entry.idle) {
                if wake { Sys.futexWakeAll(state, processShared: true) }
                return
            }
        }
    }

    // MARK: Exclusive mode

    /// Takes exclusive mode for this process. Returns nil if not acquired (try, or
    /// deadline), otherwise whether the previous exclusive holder died holding it.
    @usableFromInline
    func acquireExclusive(entry: Entry, slot: Int32, waiter: inout Waiter, tryOnly: Bool) -> Bool? {
        let busy = StateWord.exclusive | StateWord.sharedMask | StateWord.recovering
        if tryOnly {
            while true {
                let s = state.pointee.load(ordering: .acquiring)
                if s & busy != 0 { return nil }
                if let died = take(s, from: Entry.idle, entry: entry) { return died }
            }
        }
        // Free and nobody queued: take it at once, without announcing.
        let s0 = state.pointee.load(ordering: .acquiring)
        if s0 & (busy | StateWord.waitingMask) == 0, let died = take(s0, from: Entry.idle, entry: entry) {
            return died
        }
        // Announce: from now on no new shared hold is granted anywhere.
        while true {
            let s = state.pointee.load(ordering: .acquiring)
            if s & StateWord.recovering != 0 {
                if !wait(observed: s, slot: slot, waiter: &waiter) { return nil }
                continue
            }
            if transition(s, s + StateWord.oneWaiting, entry: entry, from: Entry.idle, to: Entry.waiting) { break }
        }
        while true {
            let s = state.pointee.load(ordering: .acquiring)
            if s & busy == 0 {
                if let died = take(s, from: Entry.waiting, entry: entry) { return died }
                continue
            }
            if !wait(observed: s, slot: slot, waiter: &waiter) {
                withdrawWaiting(entry: entry, slot: slot)
                return nil
            }
        }
    }

    /// One CAS that grants exclusive mode; returns whether the previous holder died, or
    /// nil when the word changed underneath.
    private func take(_ s: UInt32, from mode: UInt32, entry: Entry) -> Bool? {
        var n = (s | StateWord.exclusive) & ~StateWord.ownerDied
        if mode == Entry.waiting { n -= StateWord.oneWaiting }
        guard transition(s, n, entry: entry, from: mode, to: Entry.exclusive) else { return nil }
        return s & StateWord.ownerDied != 0
    }

    /// A timed-out writer takes back its announcement, leaving no trace.
    private func withdrawWaiting(entry: Entry, slot: Int32) {
        var waiter = Waiter(deadline: nil)
        while true {
            let s = state.pointee.load(ordering: .relaxed)
            if s & StateWord.recovering != 0 { _ = wait(observed: s, slot: slot, waiter: &waiter); continue }
            var n = s - StateWord.oneWaiting
            let wake = n & StateWord.waitingMask == 0 && n & StateWord.parked != 0
            if wake { n &= ~StateWord.parked }
            if transition(s, n, entry: entry, from: Entry.waiting, to: Entry.idle) {
                if wake { Sys.futexWakeAll(state, processShared: true) }
                return
            }
        }
    }

    /// Releases exclusive mode and wakes every sleeper.
    @usableFromInline
    func releaseExclusive(entry: Entry, slot: Int32) {
        var waiter = Waiter(deadline: nil)
        while true {
            let s = state.pointee.load(ordering: .relaxed)
            if s & StateWord.recovering != 0 { _ = wait(observed: s, slot: slot, waiter: &waiter); continue }
            precondition(s & StateWord.exclusive != 0, "Interlock: exclusive bit missing in the state word on release")
            let n = s & ~(StateWord.exclusive | StateWord.parked)
            if transition(s, n, entry: entry, from: Entry.exclusive, to: Entry.idle) {
                if s & StateWord.parked != 0 { Sys.futexWakeAll(state, processShared: true) }
                return
            }
        }
    }

    /// One state-word CAS bracketed by the entry's in-flight mark (see `Entry`).
    private func transition(_ s: UInt32, _ n: UInt32, entry: Entry, from: UInt32, to: UInt32) -> Bool {
        entry.mode.pointee.store(from | Entry.inFlight, ordering: .releasing)
        let (ok, _) = state.pointee.compareExchange(expected: s, desired: n, ordering: .acquiringAndReleasing)
        entry.mode.pointee.store(ok ? to : from, ordering: .releasing)
        return ok
    }

    // MARK: Waiting

    /// Waits for the state word to change from `observed`. Returns false at the deadline.
    /// Spins first, then sleeps on the shared futex in bounded slices; a waiter that has
    /// waited long enough scans the holder table for dead holders and recovers.
    @usableFromInline
    func wait(observed s: UInt32, slot: Int32, waiter: inout Waiter) -> Bool {
        if waiter.spins < Waiter.spinRounds {
            waiter.spins += 1
            Sys.spinHint()
            return true
        }
        let now = Sys.monotonicNanoseconds()
        if let deadline = waiter.deadline, now >= deadline { return false }
        if waiter.nextCheck == 0 {
            waiter.nextCheck = now + Waiter.firstCheckNanoseconds
        } else if now >= waiter.nextCheck {
            waiter.nextCheck = now + Waiter.checkIntervalNanoseconds
            if recoverIfNeeded(slot: slot) { return true }
        }
        var expected = s
        if s & StateWord.parked == 0 {
            let (ok, _) = state.pointee.compareExchange(
                expected: s, desired: s | StateWord.parked, ordering: .relaxed)
            if !ok { return true }
            expected = s | StateWord.parked
        }
        var timeout = max(waiter.nextCheck - now, 1)
        if let deadline = waiter.deadline { timeout = min(timeout, deadline - now) }
        Sys.futexWait(state, expected: expected, timeoutNanoseconds: timeout, processShared: true)
        return true
    }
}
