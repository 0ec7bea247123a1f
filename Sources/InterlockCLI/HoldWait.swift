// How `interlock hold` acquires: at once when it can; otherwise it says on standard error
// that it waits (so a hold that blocks is never silent), then waits — as long as it takes,
// or up to `--timeout`.

import Interlock

enum HoldWait {
    /// Acquires `lock` in the mode asked for. Returns nil once it is held, or the exit
    /// status to end with (after printing why).
    static func acquire(_ lock: SharedLock, name: String, exclusive: Bool, timeout: UInt64?) -> ExitStatus? {
        if exclusive ? lock.tryLockExclusive() : lock.tryLockShared() { return nil }
        let mode = exclusive ? "exclusive" : "shared"
        let bound = timeout.map { " (up to \(Format.duration($0)))" } ?? ""
        System.printError("interlock hold: waiting for '\(Format.printable(name))' in \(mode) mode\(bound)")
        // No timeout: the timed form with the longest Duration (the deadline saturates),
        // so that a full holder table is an error here, not a trap.
        let limit: Duration = timeout.map { .nanoseconds(Int64(clamping: $0)) } ?? .seconds(Int64.max)
        do {
            if exclusive { try lock.lockExclusive(timeout: limit) } else { try lock.lockShared(timeout: limit) }
            return nil
        } catch .timedOut {
            System.printError("interlock hold: timed out after \(Format.duration(timeout ?? 0)) waiting for '\(Format.printable(name))'")
            return .failure
        } catch {
            return LockErrors.report(error, command: "hold")
        }
    }
}
