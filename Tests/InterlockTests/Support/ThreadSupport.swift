// Support for the thread-scope, misuse, SharedLocked and fork-local tests: handshakes
// without sleeps (atomic flags polled with bounded waits), a seeded RNG, a way to see that
// another thread is blocked in the kernel, and a fork helper for exit-test bodies.

#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// How long a handshake may take before a test gives up. Generous: it only bounds a
/// failure (a lost wake-up or a deadlock), never the speed of a passing run.
let handshakeLimit: Duration = .seconds(10)

/// How long a helper thread that holds a lock waits to be told to release it. Longer than
/// `handshakeLimit`, so that a holder never lets go on its own while the test is still
/// checking what happens behind it; bounded, so a failed test still ends.
let releaseLimit: Duration = .seconds(30)

/// Atomic integers shared between a test and its threads.
final class Counters: @unchecked Sendable {
    // Sendable: the slots are atomics, allocated once and freed in deinit.
    private let count: Int
    private let slots: UnsafeMutablePointer<Atomic<Int>>
    init(_ count: Int = 8) {
        self.count = count
        slots = .allocate(capacity: count)
        for i in 0..<count { (slots + i).initialize(to: Atomic(0)) }
    }
    deinit {
        slots.deinitialize(count: count)
        slots.deallocate()
    }
    subscript(_ i: Int) -> Int {
        slots[i].load(ordering: .sequentiallyConsistent)
    }
    func set(_ i: Int, _ value: Int) {
        slots[i].store(value, ordering: .sequentiallyConsistent)
    }
    @discardableResult
    func add(_ i: Int, _ delta: Int = 1) -> Int {
        slots[i].wrappingAdd(delta, ordering: .sequentiallyConsistent).newValue
    }
    /// Waits (polling, yielding the CPU) until `condition` holds, at most `limit`.
    /// Returns whether it held.
    func wait(
        for limit: Duration = handshakeLimit,
        until condition: (Counters) -> Bool
    ) -> Bool {
        waitUntil(for: limit) { condition(self) }
    }
}

/// Threads started together and joined with a bound: a test whose threads deadlock
/// (a lock bug) fails instead of hanging the whole run.
final class ThreadGroup {
    private var threads: [TestThread] = []
    private var started = 0
    private let finished = Counters(1)

    init() {}

    /// Starts `count` threads running `body(index)`.
    convenience init(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        self.init()
        for index in 0..<count { spawn { body(index) } }
    }

    /// Starts one more thread.
    func spawn(_ body: @escaping @Sendable () -> Void) {
        let finished = self.finished
        started += 1
        threads.append(TestThread {
            body()
            finished.add(0)
        })
    }

    /// Waits until every thread has finished, at most `limit`, then joins them (so their
    /// thread-local destructors have run). Returns false if some did not finish in time:
    /// those are detached and left behind, blocked.
    func join(within limit: Duration = releaseLimit + .seconds(10)) -> Bool {
        let count = started
        let done = finished.wait(for: limit) { $0[0] == count }
        for thread in threads {
            if done { thread.join() } else { pthread_detach(thread.handle) }
        }
        threads.removeAll()
        return done
    }
}

/// Runs `body` on a new thread and returns its answer; false if it did not answer within
/// `limit` (the thread is then left behind, blocked).
func onThread(within limit: Duration = handshakeLimit + .seconds(10), _ body: @escaping @Sendable () -> Bool) -> Bool {
    let answer = Counters(1)
    let group = ThreadGroup()
    group.spawn { answer.set(0, body() ? 1 : 0) }
    return group.join(within: limit) && answer[0] == 1
}

/// Polls `condition` until it holds or `limit` passes (yielding the CPU between polls).
func waitUntil(for limit: Duration = handshakeLimit, _ condition: () -> Bool) -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: limit)
    var polls = 0
    while !condition() {
        polls += 1
        if polls % 64 == 0, clock.now >= deadline { return false }
        sched_yield()
    }
    return true
}

/// The kernel id of the calling thread.
func currentTID() -> Int32 {
    // gettid() is not imported; /proc/thread-self links to "PID/task/TID".
    var buffer = [CChar](repeating: 0, count: 64)
    let n = readlink("/proc/thread-self", &buffer, buffer.count - 1)
    precondition(n > 0, "readlink(/proc/thread-self) failed: errno \(errno)")
    let link = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return Int32(link.split(separator: "/").last!)!
}

/// The scheduler state of thread `tid` of this process ("R", "S", "D", ...), from
/// /proc/self/task/TID/stat, or nil if it cannot be read.
func threadState(_ tid: Int32) -> Character? {
    let fd = open("/proc/self/task/\(tid)/stat", O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 512)
    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard n > 0 else { return nil }
    let text = String(decoding: buffer[0..<n], as: UTF8.self)
    // "tid (comm) S ..." — comm may contain spaces or parentheses; the state follows the last ')'.
    guard let close = text.lastIndex(of: ")") else { return nil }
    let rest = text[text.index(after: close)...].drop(while: { $0 == " " })
    return rest.first
}

/// Waits until thread `tid` sleeps in the kernel (state "S"): it is blocked, for instance
/// on a lock's futex. Returns false if it did not happen within `limit`, or if the thread
/// exited (it was not blocked at all).
func waitUntilSleeping(_ tid: Int32, for limit: Duration = handshakeLimit) -> Bool {
    var exited = false
    let sleeping = waitUntil(for: limit) {
        guard let state = threadState(tid) else {
            exited = true
            return true
        }
        return state == "S"
    }
    return sleeping && !exited
}

/// A small seeded generator (SplitMix64), so a stress run's choices can be replayed.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Forks; the child runs `child` and `_exit`s with its result (it never returns here).
/// The parent runs `parent` (while the child may still run), then waits for the child
/// and returns its exit code, or 128 + the signal that killed it.
///
/// Call it only inside an exit-test body: the exit-test process is quiet, so the child
/// starts from a process that is not running the parallel test runner.
///
/// The child is killed by SIGALRM after `limit` seconds (exit code 128 + 14), so a child
/// that deadlocks fails instead of hanging. The forking thread may be a Swift concurrency
/// worker, which blocks most signals; the child, whose only thread it is, unblocks
/// SIGALRM first.
func forkAndWait(limit: UInt32 = 20, parent: () -> Void = {}, child: () -> Int32) -> Int32 {
    let pid = fork()
    precondition(pid >= 0, "fork failed: errno \(errno)")
    if pid == 0 {
        var alarmOnly = sigset_t()
        sigemptyset(&alarmOnly)
        sigaddset(&alarmOnly, SIGALRM)
        pthread_sigmask(SIG_UNBLOCK, &alarmOnly, nil)
        alarm(limit)
        _exit(child())
    }
    parent()
    return waitForChild(pid)
}

/// Waits for child `pid` and returns its exit code, or 128 + the signal that killed it.
func waitForChild(_ pid: pid_t) -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
        precondition(errno == EINTR, "waitpid failed: errno \(errno)")
    }
    // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift cannot import.
    let signal = status & 0x7f
    if signal == 0 { return (status >> 8) & 0xff }
    return 128 + signal
}

/// Ends an exit-test body: exits with `code` (0 is success), after writing `why` to
/// stderr when it is a failure, so a failing test's output says what went wrong.
func finish(_ code: Int32, _ why: @autoclosure () -> String = "") -> Never {
    if code != 0 {
        let message = "fork test failed with code \(code): \(why())\n"
        _ = message.withCString { write(2, $0, strlen($0)) }
    }
    exit(code)
}

/// A place where a helper thread waits, blocked in `poll(2)` on a pipe, until the test
/// releases it: for a thread that must be inside a hold at the instant of a `fork()`.
///
/// A thread that waits by polling a clock may be, at the instant of the fork, running
/// code for the first time and holding one of the Swift runtime's locks (metadata and
/// conformance caches are not fork-safe): the child then deadlocks on its first generic
/// call. A thread blocked in a system call holds none. `waitParked()` returns once the
/// thread sleeps there (seen in `/proc`), so the test forks only then.
final class Parking: @unchecked Sendable {
    // Sendable: the descriptors are fixed at init; the thread id is an atomic.
    private let readEnd: Int32
    private let writeEnd: Int32
    private let parked = Counters(1)  // the parked thread's kernel id, once it parks

    init() {
        var ends: [Int32] = [0, 0]
        precondition(pipe(&ends) == 0, "pipe failed: errno \(errno)")
        readEnd = ends[0]
        writeEnd = ends[1]
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }

    /// Called by the helper thread: blocks until `release()`, at most `releaseLimit`.
    func park() {
        let tid = currentTID()  // before announcing: /proc work allocates
        parked.set(0, Int(tid))
        var fds = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(releaseLimit.components.seconds * 1000)
        while poll(&fds, 1, milliseconds) < 0 && errno == EINTR {}
    }

    /// Waits until the helper thread sleeps in `park()`. False after `limit`.
    func waitParked(for limit: Duration = handshakeLimit) -> Bool {
        guard waitUntil(for: limit, { parked[0] != 0 }) else { return false }
        return waitUntilSleeping(Int32(parked[0]), for: limit)
    }

    /// Lets the parked thread go on (and any later `park()` return at once).
    func release() {
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
    }
}

/// Runs `body` in a synchronous context. An exit test's body is an async closure, where the
/// manual lock calls (`lockShared()`, `unlockExclusive()`, …) are unavailable: they tie a
/// hold to a thread, and a task may resume on another one after an `await`.
func synchronously<R>(_ body: () throws -> R) rethrows -> R {
    try body()
}
