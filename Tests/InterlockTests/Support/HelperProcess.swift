// A driver for `InterlockTestHelper`: "another process" that opens a named lock and
// acquires or releases it on command (see Sources/InterlockTestHelper/main.swift).
//
// The helper is spawned with `posix_spawn` and talks through pipes, one line per answer.
// Every read has a bound (poll), so a helper that hangs fails the test instead of hanging
// it. The test target does not depend on the executable, but `swift test` builds every
// target into the products directory that holds the test binary, so it is found there
// (or at $INTERLOCK_TEST_HELPER).

import Interlock
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

struct HelperError: Error, CustomStringConvertible {
    var description: String
}

/// The generous bound on every wait for a helper's answer. Answers normally take well
/// under a millisecond; the bound only matters when something is broken.
let helperAnswerBound: Duration = .seconds(10)

/// A running helper process. Kill or quit it before the test ends; `deinit` kills and
/// reaps it as a last resort so that no helper outlives its test.
final class HelperProcess {
    let pid: pid_t
    let name: String
    private let input: Int32
    private let output: Int32
    private var buffer: [UInt8] = []
    private var reaped = false

    /// Spawns a helper on lock `name` and waits for its `ready` line.
    ///
    /// - Parameter arguments: extra arguments (`--capacity N`, `--create-only`, …).
    /// - Throws: if it cannot start, or answers something else than `ready <pid>` (for
    ///   example `error …` when the lock cannot be opened; use ``spawnExpectingFailure``).
    ///   - launcher: a command that runs the helper, such as
    ///     `["/usr/bin/unshare", "-pf", "--kill-child", "--mount-proc"]` for a new pid
    ///     namespace. Then ``pid`` is the launcher's (killing it kills the helper) and
    ///     ``innerPID`` the helper's own, as it sees itself.
    convenience init(lock name: String, _ arguments: [String] = [], launcher: [String] = []) throws {
        try self.init(spawning: name, arguments, launcher: launcher)
        let line = try readLine()
        guard line.hasPrefix("ready "), let inner = Int32(line.dropFirst(6)), launcher.isEmpty ? inner == pid : inner > 0 else {
            throw HelperError(description: "helper for \(name) did not start: \(line)")
        }
        innerPID = inner
    }

    /// The helper's pid as it sees itself (differs from ``pid`` in another pid namespace).
    private(set) var innerPID: Int32 = 0

    private init(spawning name: String, _ arguments: [String], launcher: [String] = []) throws {
        self.name = name
        let helper = try HelperProcess.executable()
        let path = launcher.first ?? helper
        func makePipe() throws -> (read: Int32, write: Int32) {
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else { throw HelperError(description: "pipe: errno \(errno)") }
            // Close-on-exec, so helpers spawned concurrently do not inherit each other's pipes.
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
            return (fds[0], fds[1])
        }
        let toChild = try makePipe(), fromChild = try makePipe()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild.read, 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild.write, 1)
        let argv = (launcher + [helper, name] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, nil, argv, environ)
        close(toChild.read)
        close(fromChild.write)
        guard rc == 0 else {
            close(toChild.write)
            close(fromChild.read)
            throw HelperError(description: "posix_spawn \(path): errno \(rc)")
        }
        pid = child
        input = toChild.write
        output = fromChild.read
    }

    /// Starts a helper that is expected to fail to open the lock; returns its `error …`
    /// line and exit status (3 when the open failed).
    static func spawnExpectingFailure(lock name: String, _ arguments: [String] = []) throws -> (line: String, status: Int32) {
        let helper = try HelperProcess(spawning: name, arguments)
        let line = try helper.readLine()
        return (line, helper.waitForExit())
    }

    deinit {
        if !reaped { kill(pid, SIGKILL); _ = waitForExit() }
        close(input)
        close(output)
    }

    // MARK: Talking

    /// Sends one command line.
    func send(_ command: String) throws {
        var bytes = Array((command + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(input, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw HelperError(description: "write to helper \(pid): errno \(errno)")
            }
            offset += n
        }
    }

    /// Reads the next line, waiting at most `bound`.
    func readLine(within bound: Duration = helperAnswerBound) throws -> String {
        let deadline = ContinuousClock.now + bound
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            let left = ContinuousClock.now.duration(to: deadline)
            if left <= .zero {
                throw HelperError(description: "helper \(pid) on \(name) did not answer within \(bound)")
            }
            var fd = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
            let ms = Int32(min(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1, 60_000))
            let ready = poll(&fd, 1, ms)
            if ready < 0 {
                if errno == EINTR { continue }
                throw HelperError(description: "poll: errno \(errno)")
            }
            if ready == 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(output, &chunk, chunk.count)
            if n > 0 {
                buffer += chunk[..<n]
            } else if n == 0 {
                throw HelperError(description: "helper \(pid) on \(name) exited before answering")
            } else if errno != EINTR {
                throw HelperError(description: "read from helper \(pid): errno \(errno)")
            }
        }
    }

    /// Whether a line is already available (or arrives within `bound`); reads nothing.
    func hasOutput(within bound: Duration = .zero) -> Bool {
        if buffer.contains(UInt8(ascii: "\n")) { return true }
        var fd = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
        let ms = Int32(bound.components.seconds * 1000 + bound.components.attoseconds / 1_000_000_000_000_000)
        return poll(&fd, 1, ms) > 0
    }

    /// Sends a command and returns its one-line answer.
    @discardableResult
    func ask(_ command: String, within bound: Duration = helperAnswerBound) throws -> String {
        try send(command)
        return try readLine(within: bound)
    }

    /// Starts a blocking acquisition (`shared` or `exclusive`): returns once the helper
    /// said `pending`, that is, it is about to call the blocking lock function. Its
    /// `ok …` answer comes later: read it with ``readLine(within:)``.
    func begin(_ command: String) throws {
        let line = try ask(command)
        guard line == "pending" else { throw HelperError(description: "\(command): expected pending, got \(line)") }
    }

    // MARK: Ending

    /// Asks the helper to release what it holds and exit; returns its exit status.
    @discardableResult
    func quit() throws -> Int32 {
        let bye = try ask("quit")
        guard bye == "bye" else { throw HelperError(description: "quit: expected bye, got \(bye)") }
        return waitForExit()
    }

    /// Kills the helper with SIGKILL and (unless `reap` is false) reaps it; returns the
    /// instant of the kill. An unreaped helper stays a zombie until ``waitForExit()``.
    @discardableResult
    func kill9(reap: Bool = true) -> ContinuousClock.Instant {
        let now = ContinuousClock.now
        kill(pid, SIGKILL)
        if reap { _ = waitForExit() }
        return now
    }

    /// Waits for the exit (the helper must be exiting). Returns the exit status, or
    /// 128 + signal.
    @discardableResult
    func waitForExit() -> Int32 {
        guard !reaped else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        reaped = true
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    // MARK: Finding the executable

    /// `$INTERLOCK_TEST_HELPER`, or `InterlockTestHelper` in the products directory that
    /// holds this test binary (`.build/<config>/`).
    static func executable() throws -> String {
        if let path = getenv("INTERLOCK_TEST_HELPER") { return String(cString: path) }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { throw HelperError(description: "readlink /proc/self/exe: errno \(errno)") }
        var directory = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // The test binary may sit inside a bundle (….xctest/Contents/…); walk up.
        for _ in 0..<4 {
            guard let slash = directory.lastIndex(of: "/") else { break }
            directory = String(directory[..<slash])
            let candidate = directory + "/InterlockTestHelper"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw HelperError(description: "InterlockTestHelper is not beside the test binary; build it (swift build) or set INTERLOCK_TEST_HELPER")
    }
}

// MARK: - Lock names and inspection

enum TestLocks {
    private static let counter = Atomic<Int>(0)

    /// A lock name no other test (or test run) uses.
    static func uniqueName(_ tag: String) -> String {
        "t-\(getpid())-\(tag)-\(counter.add(1, ordering: .relaxed).newValue)"
    }

    /// The control word's `READ_TURN` bit (3, see Protocol/Control.swift): the end of a
    /// write phase that readers waited for may leave it set on an idle lock, until the
    /// next writer.
    static let staleBits: UInt32 = 1 << 3

    /// Runs `body` and returns the `InterlockError` it threw, or nil. (The API throws
    /// `InterlockError` only — typed throws — so nothing else can come out.)
    static func error(of body: () throws -> Void) -> InterlockError? {
        do { try body() } catch { return error as? InterlockError }
        return nil
    }

    /// Removes the named lock if it exists (force: holders may have been killed).
    static func cleanUp(_ name: String) {
        try? SharedLock.remove(named: name, force: true)
    }

    /// Polls `inspect` until `condition` holds, at most `bound`. Returns the last snapshot
    /// and whether the condition was met. Yields the CPU between polls (no fixed sleep).
    static func awaitSnapshot(_ name: String, within bound: Duration = .seconds(10),
                              _ condition: (LockSnapshot) -> Bool) throws -> (LockSnapshot, met: Bool) {
        let deadline = ContinuousClock.now + bound
        while true {
            let snapshot = try SharedLock.inspect(named: name)
            if condition(snapshot) { return (snapshot, true) }
            if ContinuousClock.now >= deadline { return (snapshot, false) }
            var pause = timespec(tv_sec: 0, tv_nsec: 200_000)
            nanosleep(&pause, nil)
        }
    }

    /// Checks that a snapshot is consistent with its holder table: no dead process holds
    /// or waits, nothing is mid-recovery, and the counts in the state word match the
    /// live entries. Returns a list of problems (empty when sane).
    static func problems(in s: LockSnapshot) -> [String] {
        var problems: [String] = []
        let dead = s.holders.filter { !$0.isAlive && $0.mode != .idle }
        if !dead.isEmpty { problems.append("dead processes still hold or wait: \(dead)") }
        if s.isRecovering { problems.append("recovery bit left set") }
        let shared = s.holders.filter { $0.mode == .shared }.count
        let waiting = s.holders.filter { $0.mode == .waitingExclusive }.count
        let exclusive = s.holders.filter { $0.mode == .exclusive }.count
        if s.sharedProcessCount != shared { problems.append("word counts \(s.sharedProcessCount) shared, table \(shared)") }
        if s.waitingWriters != waiting { problems.append("word counts \(s.waitingWriters) waiting, table \(waiting)") }
        if s.isExclusive != (exclusive == 1) || exclusive > 1 { problems.append("word exclusive=\(s.isExclusive), table \(exclusive)") }
        if s.isExclusive && s.sharedProcessCount != 0 { problems.append("exclusive together with shared") }
        return problems
    }
}

// MARK: - Exit-test bodies and forked children

/// Helpers for code that runs in an exit test's process or in a child it forks.
enum Proc {
    /// In an exit-test body: record an issue (Swift Testing forwards it to the parent),
    /// repeat it on stderr, and exit 1.
    static func fail(_ message: String, sourceLocation: SourceLocation = #_sourceLocation) -> Never {
        Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
        writeError(message)
        exit(1)
    }

    /// In a forked child: report on stderr and `_exit(1)` (no atexit handlers, no stdio flush).
    static func childFail(_ message: String) -> Never {
        writeError(message)
        _exit(1)
    }

    static func writeError(_ message: String) {
        let line = message + "\n"
        _ = line.utf8CString.withUnsafeBufferPointer { write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
    }

    /// Forks; the child runs `body` and `_exit`s 0 if it returns nil, or prints the message
    /// and exits 1. Returns the child's pid in the parent.
    static func forkChild(_ body: () -> String?) -> pid_t {
        let pid = fork()
        if pid < 0 { fail("fork: errno \(errno)") }
        if pid == 0 {
            if let problem = body() { childFail("child \(getpid()): \(problem)") }
            _exit(0)
        }
        return pid
    }

    /// Waits for a child; returns its exit status, or 128 + signal.
    static func reap(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    static func expectChildSucceeded(_ pid: pid_t, sourceLocation: SourceLocation = #_sourceLocation) {
        let status = reap(pid)
        if status != 0 { fail("child \(pid) exited \(status)", sourceLocation: sourceLocation) }
    }

    /// Spins (yielding the CPU) until `condition` holds or 30 s pass. Returns whether it held.
    static func spin(until condition: () -> Bool) -> Bool {
        let deadline = ContinuousClock.now + .seconds(30)
        while !condition() {
            if ContinuousClock.now >= deadline { return false }
            sched_yield()
        }
        return true
    }

    /// Spins until `condition` holds; fails the exit test after 30 s.
    static func waitFor(_ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ condition: () -> Bool) {
        if !spin(until: condition) { fail(what + " (within 30 s)", sourceLocation: sourceLocation) }
    }

    /// Fails unless the lock is idle: no holder, no waiter, nothing left to recover.
    static func checkIdle(_ lock: SharedLock, sourceLocation: SourceLocation = #_sourceLocation) {
        let s = lock.snapshot()!
        if s.stateWord & ~TestLocks.staleBits != 0 || s.holders.contains(where: { $0.mode != .idle }) {
            fail("the lock is not idle at the end: \(s)", sourceLocation: sourceLocation)
        }
    }
}
