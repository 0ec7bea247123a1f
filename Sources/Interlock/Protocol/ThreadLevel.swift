#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import CInterlock

// What a thread holds: misuse checks.
//
// The algorithm (`Core`) counts holds per participant, not per thread. Which thread holds
// what is kept beside it, for the checks that turn a mistake into a trap with a message
// instead of a deadlock or a broken lock: the exclusive holder's thread in
// `LocalState.owner`, and each thread's shared holds in its record (`cinterlock_held` in
// the C shim, keyed by the `LocalState` address).
//
// - Warning: Shared mode is not recursive: a thread that holds shared mode and asks
//   for it again while a writer waits deadlocks (as with any writer-preferring lock).

extension LocalState {
    /// Forgets one shared hold of this lock in the calling thread's record; false if
    /// the thread has none (the caller decides whether that is misuse).
    @inlinable @inline(__always)
    func forgetSharedHold() -> Bool {
        cinterlock_held_find(base, 1) != 0
    }

    /// Whether the calling thread holds this lock in shared mode (per its record).
    @usableFromInline
    func holdsShared() -> Bool {
        cinterlock_held_find(base, 0) != 0
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

    @usableFromInline
    func checkNotHoldingExclusive(_ operation: String) {
        if owner.pointee.load(ordering: .relaxed) == currentThreadID() {
            misuse("\(operation) on a thread that holds this lock in exclusive mode")
        }
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
