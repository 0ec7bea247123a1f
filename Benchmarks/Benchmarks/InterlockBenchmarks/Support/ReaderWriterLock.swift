// The one shape every lock under test has, so each group is written once and specialized per
// lock type (generic code in this module is specialized: no existential call in a timed loop).

import Interlock

protocol ReaderWriterLock: AnyObject, Sendable {
    func lockShared()
    func unlockShared()
    func lockExclusive()
    func unlockExclusive()
}

// Ours: the manual forms of the public API, exactly what a caller would write.
extension SharedLock: ReaderWriterLock {}

/// What the critical sections touch: one word, read in shared mode and incremented in exclusive
/// mode. It lives in shared memory so that forked helpers touch the same word.
struct GuardedCounter: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Int>

    @inline(__always) func read() -> Int { pointer.pointee }
    @inline(__always) func increment() { pointer.pointee &+= 1 }
}
