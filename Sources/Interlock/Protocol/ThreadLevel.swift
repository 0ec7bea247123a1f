#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import CInterlock

/// The thread level of a `SharedLock`: glibc's default `pthread_rwlock` plus a writer
/// gate of our own.
///
/// glibc offers a reader-preferring rwlock (fast under mixed loads, but a stream of
/// readers can starve a writer for seconds) and a writer-preferring one (which loses
/// most of its throughput under a 90/10 load). We keep the fast kind and add a gate: a
/// writer that cannot get in at once announces itself in `gate`, and new readers wait
/// (spinning briefly, then on a futex) until no writer is announced. Readers already
/// inside, or already queued in the rwlock, finish; then the writer gets in.
///
/// Gate word bits:
/// - `Gate.parked` (bit 0): at least one reader sleeps on the gate's futex; the last
///   writer to leave must wake them.
/// - `Gate.oneWriter` (bits 1…): count of writers announced (waiting for or holding the
///   rwlock after a contended start). New shared acquisitions wait while it is non-zero.
///
/// - Warning: Shared mode is not recursive: a thread that holds shared mode and asks
///   for it again while a writer waits deadlocks (as with any writer-preferring lock).
@usableFromInline
enum Gate {
    @usableFromInline static let parked: UInt32 = 1
    @usableFromInline static let oneWriter: UInt32 = 2
    /// Busy-wait rounds before a reader sleeps at the gate.
    static let spinRounds = 64
}

extension LocalState {
    // MARK: Shared

    /// Thread-level shared acquire, waiting as long as it takes.
    @inlinable @inline(__always)
    func lockSharedThread() {
        if _slowPath(gate.pointee.load(ordering: .relaxed) >= Gate.oneWriter) {
            _ = waitAtGate(deadline: nil)
        }
        let rc = pthread_rwlock_rdlock(rwlock)
        if _slowPath(rc != 0) { sharedAcquireFailed(rc) }
        cinterlock_held_push(base)
    }

    @inlinable @inline(__always)
    func tryLockSharedThread() -> Bool {
        if gate.pointee.load(ordering: .relaxed) < Gate.oneWriter {
            let rc = pthread_rwlock_tryrdlock(rwlock)
            if rc == 0 { cinterlock_held_push(base); return true }
            if rc != EBUSY { sharedAcquireFailed(rc) }
        }
        checkNotHoldingExclusive("tryLockShared()")
        return false
    }

    /// Thread-level shared acquire with a deadline (monotonic ns). Returns false on timeout.
    @usableFromInline
    func lockSharedThread(deadline: Int64) -> Bool {
        if gate.pointee.load(ordering: .relaxed) >= Gate.oneWriter {
            if !waitAtGate(deadline: deadline) { return false }
        }
        var ts = Sys.makeTimespec(nanoseconds: deadline)
        let rc = cinterlock_rwlock_rdlock_until(rwlock, &ts)
        if rc == 0 { cinterlock_held_push(base); return true }
        if rc == ETIMEDOUT { return false }
        sharedAcquireFailed(rc)
    }

    /// Thread-level shared release. Traps unless the calling thread holds this lock in
    /// shared mode (see `cinterlock_held` in the C shim).
    @inlinable @inline(__always)
    func unlockSharedThread() {
        if _slowPath(!forgetSharedHold()) { notHoldingShared() }
        releaseSharedThread()
    }

    /// Forgets one shared hold of this lock in the calling thread's record; false if
    /// the thread has none (the caller decides whether that is misuse).
    @inlinable @inline(__always)
    func forgetSharedHold() -> Bool {
        cinterlock_held_find(base, 1) != 0
    }

    /// Unlocks the rwlock's read side, once the hold has been forgotten.
    @inlinable @inline(__always)
    func releaseSharedThread() {
        let rc = pthread_rwlock_unlock(rwlock)
        if _slowPath(rc != 0) { misuse("pthread_rwlock_unlock failed (errno \(rc)) in unlockShared()") }
    }

    @usableFromInline @inline(never)
    func notHoldingExclusive() -> Never {
        misuse("unlockExclusive() on a thread that does not hold this lock in exclusive mode")
    }

    @usableFromInline @inline(never)
    func notHoldingShared() -> Never {
        checkNotHoldingExclusive("unlockShared()")
        misuse("unlockShared() on a thread that does not hold this lock in shared mode")
    }

    /// Waits until no writer is announced at the gate. Returns false at the deadline.
    @usableFromInline @inline(never)
    func waitAtGate(deadline: Int64?) -> Bool {
        checkNotHoldingExclusive("lockShared()")
        var spins = 0
        while true {
            let g = gate.pointee.load(ordering: .acquiring)
            if g < Gate.oneWriter { return true }
            if spins < Gate.spinRounds {
                spins += 1
                Sys.spinHint()
                continue
            }
            if g & Gate.parked == 0 {
                let (ok, _) = gate.pointee.compareExchange(
                    expected: g, desired: g | Gate.parked, ordering: .relaxed)
                if !ok { continue }
            }
            var timeout: Int64? = nil
            if let deadline {
                let left = deadline - Sys.monotonicNanoseconds()
                if left <= 0 { return false }
                timeout = left
            }
            Sys.futexWait(gate, expected: g | Gate.parked, timeoutNanoseconds: timeout, processShared: false)
        }
    }

    // MARK: Exclusive

    @inlinable @inline(__always)
    func lockExclusiveThread() {
        let me = currentThreadID()
        if _slowPath(owner.pointee.load(ordering: .relaxed) == me) {
            misuse("lockExclusive() on a thread that already holds this lock in exclusive mode (exclusive mode is not recursive)")
        }
        // Uncontended: take the rwlock without announcing ourselves at the gate.
        if _fastPath(pthread_rwlock_trywrlock(rwlock) == 0) {
            gated = false
        } else {
            _ = lockExclusiveThreadSlow(deadline: nil)
        }
        owner.pointee.store(me, ordering: .relaxed)
    }

    @inlinable @inline(__always)
    func tryLockExclusiveThread() -> Bool {
        let me = currentThreadID()
        if _slowPath(owner.pointee.load(ordering: .relaxed) == me) {
            misuse("tryLockExclusive() on a thread that already holds this lock in exclusive mode (exclusive mode is not recursive)")
        }
        guard pthread_rwlock_trywrlock(rwlock) == 0 else { return false }
        gated = false
        owner.pointee.store(me, ordering: .relaxed)
        return true
    }

    @usableFromInline
    func lockExclusiveThread(deadline: Int64) -> Bool {
        let me = currentThreadID()
        if owner.pointee.load(ordering: .relaxed) == me {
            misuse("lockExclusive(timeout:) on a thread that already holds this lock in exclusive mode (exclusive mode is not recursive)")
        }
        if pthread_rwlock_trywrlock(rwlock) == 0 {
            gated = false
        } else if !lockExclusiveThreadSlow(deadline: deadline) {
            return false
        }
        owner.pointee.store(me, ordering: .relaxed)
        return true
    }

    /// Announces a writer at the gate and waits for the rwlock. On timeout the
    /// announcement is withdrawn (no trace is left).
    @usableFromInline @inline(never)
    func lockExclusiveThreadSlow(deadline: Int64?) -> Bool {
        // glibc reports EDEADLK only for a thread holding the write lock; one holding a
        // read lock would wait for itself forever (and, announced at the gate, stop every
        // new reader of the process too).
        if cinterlock_held_find(base, 0) == 1 {
            misuse("lockExclusive() on a thread that holds this lock in shared mode (shared mode cannot be upgraded)")
        }
        gate.pointee.add(Gate.oneWriter, ordering: .acquiringAndReleasing)
        let rc: Int32
        if let deadline {
            var ts = Sys.makeTimespec(nanoseconds: deadline)
            rc = cinterlock_rwlock_wrlock_until(rwlock, &ts)
        } else {
            rc = pthread_rwlock_wrlock(rwlock)
        }
        if rc == 0 { gated = true; return true }
        leaveGate()
        if rc == ETIMEDOUT { return false }
        if rc == EDEADLK { misuse("lockExclusive() on a thread that holds this lock (exclusive mode is not recursive)") }
        misuse("pthread_rwlock_wrlock failed (errno \(rc))")
    }

    @inlinable @inline(__always)
    func unlockExclusiveThread() {
        let me = currentThreadID()
        if _slowPath(owner.pointee.load(ordering: .relaxed) != me) { notHoldingExclusive() }
        owner.pointee.store(0, ordering: .relaxed)
        let wasGated = gated
        let rc = pthread_rwlock_unlock(rwlock)
        if _slowPath(rc != 0) { misuse("pthread_rwlock_unlock failed (errno \(rc)) in unlockExclusive()") }
        if wasGated { leaveGate() }
    }

    /// Withdraws one writer announcement; the last one out wakes parked readers.
    @usableFromInline
    func leaveGate() {
        let now = gate.pointee.subtract(Gate.oneWriter, ordering: .acquiringAndReleasing).newValue
        if now == Gate.parked {
            let (ok, _) = gate.pointee.compareExchange(expected: Gate.parked, desired: 0, ordering: .acquiringAndReleasing)
            if ok { Sys.futexWakeAll(gate, processShared: false) }
        }
    }

    // MARK: Misuse

    @usableFromInline
    func checkNotHoldingExclusive(_ operation: String) {
        if owner.pointee.load(ordering: .relaxed) == currentThreadID() {
            misuse("\(operation) on a thread that holds this lock in exclusive mode")
        }
    }

    @usableFromInline @inline(never)
    func sharedAcquireFailed(_ rc: Int32) -> Never {
        if rc == EDEADLK { misuse("lockShared() on a thread that holds this lock in exclusive mode") }
        if rc == EAGAIN { misuse("too many shared holders (pthread_rwlock_rdlock: EAGAIN)") }
        misuse("pthread_rwlock_rdlock failed (errno \(rc))")
    }
}

/// Traps with a message naming the mistake. Misuse of a lock is a programmer error:
/// continuing would deadlock or corrupt the lock.
@usableFromInline @inline(never)
func misuse(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    fatalError("Interlock misuse: \(message)", file: file, line: line)
}

/// An identifier of the calling thread, never 0 and never reused within the process
/// (`cinterlock_thread_serial`): `pthread_self()` is handed to the next thread once one
/// exits, which would let a new thread pass for a dead holder.
@inlinable @inline(__always)
func currentThreadID() -> UInt {
    UInt(cinterlock_thread_serial())
}
