// `interlock hold NAME|PATH [--mode shared|exclusive] [--timeout D]`: a test and debugging aid.
//
// Opens (or creates) the named lock, acquires it, prints "held" on its own line, and
// keeps it until standard input reaches end of file; then releases and exits 0. Tests
// use it as "another process that holds the lock": they wait for the line, look, and
// close the pipe.

import Glibc
import Interlock

enum HoldCommand {
    static func run(_ arguments: ParsedArguments) -> ExitStatus {
        let name = arguments.positionals[0]
        let exclusive = arguments.text("--mode") == "exclusive"
        let lock: SharedLock
        do {
            lock = try LockTarget(name).open()
        } catch {
            return LockErrors.report(error, command: "hold")
        }
        let body = {
            print("held")
            fflush(nil)
            var buffer = [UInt8](repeating: 0, count: 256)
            while true {
                let count = read(STDIN_FILENO, &buffer, buffer.count)
                if count == 0 || (count < 0 && errno != EINTR) { break }
            }
        }
        if let failure = HoldWait.acquire(lock, name: name, exclusive: exclusive,
                                          timeout: arguments.nanoseconds("--timeout")) { return failure }
        body()
        if exclusive { lock.unlockExclusive() } else { lock.unlockShared() }
        return .success
    }
}
