// interlock-test-helper: "another process" for Interlock's multi-process tests.
//
//     interlock-test-helper NAME [--capacity N] [--create-only | --open-only] [--allow-insecure]
//                                [--path] [--main-exits] [--second-handle]
//
// Opens (or creates) the named lock NAME (with --path: the lock file at path NAME),
// prints `ready <pid>`, then obeys one command per
// line on standard input and answers each with exactly one line on standard output
// (flushed at once), except that a blocking acquisition first prints `pending`:
//
//     shared | exclusive                 pending, then  ok shared | ok exclusive died=<true|false>
//     try-shared | try-exclusive         ok shared | ok exclusive died=… | busy
//     timed-shared MS | timed-exclusive MS   ok … | timeout
//     release-shared | release-exclusive released
//     snapshot                           snapshot word=0x… shared=N waiting=N exclusive=B died=B
//                                        recovering=B recoveries=N holders=N
//     pid                                <pid>
//     exec                               prints `exec`, then replaces itself with
//                                        `sleep 600` (same pid; what it held is gone)
//     quit (or end of input)             releases what it holds, prints `bye`, exits 0
//
// With --second-handle, it opens a second handle on the same lock and drops it again
// before `ready` (closing a descriptor of the lock's file must not cost the first
// handle its liveness). With --main-exits, the session runs on a second thread and the main thread calls
// exits at once (the raw exit system call): the process lives on with its leader a zombie in /proc.
//
// `died=` is `SharedLock.previousHolderDied`, read inside the exclusive hold. A command
// it does not understand, or a timed acquisition that fails otherwise, answers
// `error <description>`. If the lock cannot be opened it prints `error <description>`
// and exits 3; bad arguments exit 2. Every acquisition runs on the main thread, so
// releases are always made by the thread that acquired.
//
// Tests kill it with SIGKILL while it holds or waits, to check crash recovery.

#if canImport(Glibc)
import Glibc
#endif
import CTestHelper
import Interlock

/// Prints one line and flushes it, so the test reading the pipe sees it at once.
func say(_ line: String) {
    print(line)
    fflush(nil)
}

func usage(_ message: String) -> Never {
    let text = "interlock-test-helper: \(message)\n"
        + "usage: interlock-test-helper NAME [--capacity N] [--create-only|--open-only] [--allow-insecure]\n"
    _ = text.utf8CString.withUnsafeBufferPointer { write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
    exit(2)
}

/// The opened lock and what this process holds of it.
struct Session {
    let lock: SharedLock
    var sharedHeld = 0
    var exclusiveHeld = false

    mutating func acquired(_ exclusive: Bool) -> String {
        if exclusive {
            exclusiveHeld = true
            return "ok exclusive died=\(lock.previousHolderDied)"
        }
        sharedHeld += 1
        return "ok shared"
    }

    mutating func timed(_ exclusive: Bool, _ milliseconds: Substring?) -> String {
        guard let milliseconds, let ms = Int(milliseconds), ms >= 0 else { return "error timed acquisition needs MS" }
        do {
            if exclusive {
                try lock.lockExclusive(timeout: .milliseconds(ms))
            } else {
                try lock.lockShared(timeout: .milliseconds(ms))
            }
        } catch .timedOut {
            return "timeout"
        } catch {
            return "error \(error)"
        }
        return acquired(exclusive)
    }

    func snapshotLine() -> String {
        guard let s = lock.snapshot() else { return "error no snapshot" }
        return "snapshot word=0x\(String(s.stateWord, radix: 16)) shared=\(s.sharedProcessCount) "
            + "waiting=\(s.waitingWriters) exclusive=\(s.isExclusive) died=\(s.previousHolderDied) "
            + "recovering=\(s.isRecovering) recoveries=\(s.recoveries) holders=\(s.holders.count)"
    }

    mutating func releaseAll() {
        if exclusiveHeld { lock.unlockExclusive() }
        for _ in 0..<sharedHeld { lock.unlockShared() }
        exclusiveHeld = false
        sharedHeld = 0
    }

    /// Obeys one command line. Returns false to quit.
    mutating func obey(_ line: String) -> Bool {
        let words = line.split(separator: " ")
        guard let command = words.first else { return true }
        switch command {
        case "shared":
            say("pending")
            lock.lockShared()
            say(acquired(false))
        case "exclusive":
            say("pending")
            lock.lockExclusive()
            say(acquired(true))
        case "try-shared":
            say(lock.tryLockShared() ? acquired(false) : "busy")
        case "try-exclusive":
            say(lock.tryLockExclusive() ? acquired(true) : "busy")
        case "timed-shared":
            say(timed(false, words.dropFirst().first))
        case "timed-exclusive":
            say(timed(true, words.dropFirst().first))
        case "release-shared":
            guard sharedHeld > 0 else { say("error not holding shared"); break }
            lock.unlockShared()
            sharedHeld -= 1
            say("released")
        case "release-exclusive":
            guard exclusiveHeld else { say("error not holding exclusive"); break }
            lock.unlockExclusive()
            exclusiveHeld = false
            say("released")
        case "snapshot":
            say(snapshotLine())
        case "pid":
            say("\(getpid())")
        case "exec":
            say("exec")
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup("sleep"), strdup("600"), nil]
            execv("/bin/sleep", argv)
            say("error exec: errno \(errno)")
        case "quit":
            return false
        default:
            say("error unknown command \(command)")
        }
        return true
    }
}

// MARK: Arguments

var options = NamedLockOptions()
var name: String?
var isPath = false
var mainExits = false
var secondHandle = false
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--capacity":
        guard let value = arguments.popFirst().flatMap({ Int($0) }), (1...4095).contains(value) else {
            usage("--capacity needs a number from 1 to 4095")
        }
        options.capacity = value
    case "--create-only": options.creation = .createOnly
    case "--open-only": options.creation = .openOnly
    case "--allow-insecure": options.allowInsecurePermissions = true
    case "--path": isPath = true
    case "--main-exits": mainExits = true
    case "--second-handle": secondHandle = true
    default:
        if argument.hasPrefix("--") || name != nil { usage("unexpected argument \(argument)") }
        name = argument
    }
}
guard let name else { usage("missing NAME") }

// MARK: Open, then obey

/// What `run` opens; written once before any second thread starts.
struct Target { let name: String; let isPath: Bool; let options: NamedLockOptions; let secondHandle: Bool }
nonisolated(unsafe) var target: Target?

@Sendable nonisolated func run() -> Never {
    guard let t = target else { exit(3) }
    func open() throws(InterlockError) -> SharedLock {
        try t.isPath ? SharedLock(path: t.name, options: t.options) : SharedLock(named: t.name, options: t.options)
    }
    var session: Session
    do {
        session = Session(lock: try open())
        if t.secondHandle { try open().withShared {} }
    } catch {
        say("error \(error)")
        exit(3)
    }
    say("ready \(getpid())")
    while let line = readLine(), session.obey(line) {}
    session.releaseAll()
    say("bye")
    exit(0)
}

target = Target(name: name, isPath: isPath, options: options, secondHandle: secondHandle)
if mainExits {
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { @Sendable _ in run() }, nil)
    guard rc == 0 else { say("error pthread_create: \(rc)"); exit(3) }
    ctesthelper_exit_thread()
}
run()
