#if canImport(Glibc)
import Glibc
#endif

// A `SharedLock` deinitialised while its process holds it.
//
// Only the manual forms can do that (`lockExclusive()` or `lockShared()`, then the last
// reference dropped): the scoped forms keep the lock alive until they release it. The
// hold could never be released afterwards — in a process scope, other processes'
// writers would wait until this process exits, with no message anywhere; in the threads
// scope the lock's state would be freed while held. Releasing it quietly on the caller's
// behalf would hide the bug (the data the lock guards may be half-written). So it is
// misuse, and traps with a message that names the lock.

extension SharedLock {
    /// Traps if a thread of this process still holds the lock, in either mode. Called
    /// first thing in `deinit`.
    ///
    /// Sound without racing anyone: no other thread can be acquiring the lock (it would
    /// hold a reference), so this process's entry counts a shared hold, or the owner
    /// field an exclusive one, only if a hold was never released. State inherited
    /// through `fork()` is skipped: a child holds nothing its parent held.
    func checkNotHeldAtDeinit() {
        guard let p = local.currentIfOwned() else { return }
        let state = LocalState(p)
        let slot = state.slot
        let exclusive = state.owner.pointee.load(ordering: .relaxed) != 0
        let shared = slot >= 0 && core(state).entry(slot).readers.pointee.load(ordering: .acquiring) != 0
        if !exclusive && !shared { return }
        let mode = exclusive ? "exclusive" : "shared"
        misuse("\(lockDescription) deinitialised while this process holds it in \(mode) mode; "
            + "release every lockShared()/lockExclusive() before the last reference goes away")
    }

    /// How the lock was made, to name it in messages: `SharedLock(named: "jobs")`.
    var lockDescription: String {
        switch scope {
        case .threads: return "SharedLock() (threads scope)"
        case .forkShared: return "SharedLock.forkShared()"
        case .named(let name): return "SharedLock(named: \"\(name)\")"
        case .path(let path): return "SharedLock(path: \"\(path)\")"
        }
    }
}
