// The few system calls the CLI makes itself (the lock's own calls are the library's):
// the monotonic clock, shared memory for the stress data, processes and threads.
import Glibc
import Synchronization

/// A failed system call, with its name and `strerror` text.
struct SystemError: Error, CustomStringConvertible {
    var call: String
    var errno: Int32

    init(_ call: String, errno: Int32 = Glibc.errno) {
        self.call = call
        self.errno = errno
    }

    var description: String { "\(call): \(String(cString: strerror(errno)))" }
}

enum System {
    /// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process of the machine.
    @inline(__always)
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// Sleeps (the parent's monitor loop only; workers never sleep while holding).
    static func sleep(nanoseconds: UInt64) {
        var request = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }

    /// Writes a line to standard error, unbuffered (safe in a fork child).
    static func printError(_ line: String) {
        writeError(line.hasSuffix("\n") ? line : line + "\n")
    }

    /// Writes text to standard error as is, unbuffered.
    static func writeError(_ text: String) {
        text.withCString { pointer in
            var offset = 0
            let count = strlen(pointer)
            while offset < count {
                let written = write(STDERR_FILENO, pointer + offset, count - offset)
                if written <= 0 { if errno == EINTR { continue }; return }
                offset += written
            }
        }
    }

    static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    // MARK: Shared memory

    /// Anonymous `MAP_SHARED` zeroed memory: inherited by `fork()` children.
    static func mapAnonymous(size: Int) throws(SystemError) -> UnsafeMutableRawPointer {
        let pointer = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
        guard let pointer, pointer != MAP_FAILED else { throw SystemError("mmap") }
        return pointer
    }

    /// Creates a POSIX shared memory segment (`O_CREAT|O_EXCL`, mode 0600), sized and mapped.
    static func createSegment(_ name: String, size: Int) throws(SystemError) -> UnsafeMutableRawPointer {
        let fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw SystemError("shm_open(\(name))") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(size)) == 0 else {
            let error = SystemError("ftruncate(\(name))")
            shm_unlink(name)
            throw error
        }
        return try map(fd: fd, size: size, name: name)
    }

    /// Opens and maps an existing segment; its size is read with `fstat`.
    static func openSegment(_ name: String) throws(SystemError) -> (UnsafeMutableRawPointer, Int) {
        let fd = shm_open(name, O_RDWR, 0)
        guard fd >= 0 else { throw SystemError("shm_open(\(name))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw SystemError("fstat(\(name))") }
        let size = Int(info.st_size)
        return (try map(fd: fd, size: size, name: name), size)
    }

    private static func map(fd: Int32, size: Int, name: String) throws(SystemError) -> UnsafeMutableRawPointer {
        let pointer = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let pointer, pointer != MAP_FAILED else { throw SystemError("mmap(\(name))") }
        return pointer
    }

    static func unlinkSegment(_ name: String) {
        shm_unlink(name)
    }

    // MARK: Processes

    /// The path of the running executable, for spawning workers of the same build.
    static let executablePath = "/proc/self/exe"

    /// `posix_spawn`s this executable with `arguments` (argv[1...]), inheriting stdio.
    static func spawnSelf(_ arguments: [String]) throws(SystemError) -> pid_t {
        let argv = (["interlock"] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executablePath, nil, nil, argv, environ)
        guard result == 0 else { throw SystemError("posix_spawn", errno: result) }
        return pid
    }

    /// `fork()`, flushing stdio first so the child cannot print the parent's buffer.
    static func forkProcess() throws(SystemError) -> pid_t {
        fflush(nil)
        let pid = fork()
        guard pid >= 0 else { throw SystemError("fork") }
        return pid
    }

    /// How a reaped child ended.
    enum Termination: Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        var description: String {
            switch self {
            case .exited(let status): "exited with status \(status)"
            case .signaled(let signal): "killed by signal \(signal)"
            }
        }
    }

    static func termination(_ status: Int32) -> Termination {
        let signal = status & 0x7f
        return signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal)
    }

    /// Reaps one child without blocking: nil when none has ended.
    static func reapAny() -> (pid_t, Termination)? {
        var status: Int32 = 0
        let pid = waitpid(-1, &status, WNOHANG)
        guard pid > 0 else { return nil }
        return (pid, termination(status))
    }

    /// Waits for `pid` to end (after `kill -9` this returns promptly).
    static func reap(_ pid: pid_t) -> Termination? {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, 0)
            if result == pid { return termination(status) }
            if result < 0 && errno == EINTR { continue }
            return nil
        }
    }

    /// After `SIGSTOP`: waits until `pid` has stopped (nil), or returns how it ended.
    static func waitUntilStopped(_ pid: pid_t) -> Termination? {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, WUNTRACED)
            if result == pid { return status & 0xff == 0x7f ? nil : termination(status) }
            if result < 0 && errno == EINTR { continue }
            return .exited(-1)
        }
    }

    // MARK: Threads

    private final class ThreadBody {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// Starts a joinable POSIX thread (no Foundation, so fork children stay lean).
    static func startThread(_ body: @escaping @Sendable () -> Void) throws(SystemError) -> pthread_t {
        let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { context in
            let box = Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue()
            box.body()
            return nil
        }, context)
        guard result == 0 else {
            Unmanaged<ThreadBody>.fromOpaque(context).release()
            throw SystemError("pthread_create", errno: result)
        }
        return thread
    }

    static func join(_ thread: pthread_t) {
        pthread_join(thread, nil)
    }
}

/// Set by SIGINT/SIGTERM in the stress parent: stop early and print the report.
/// (A C global would need a shim target; a module-level Atomic is lock-free and is
/// touched before the handler is installed, so the handler never runs its initialiser.)
let interruptRequested = Atomic<Bool>(false)

extension System {
    /// Installs SIGINT/SIGTERM handlers that set `interruptRequested`.
    static func installInterruptHandler() {
        _ = interruptRequested.load(ordering: .relaxed)
        let handler: @convention(c) (Int32) -> Void = { _ in
            interruptRequested.store(true, ordering: .relaxed)
        }
        signal(SIGINT, handler)
        signal(SIGTERM, handler)
    }

    /// Worker processes ignore SIGINT (a terminal's Ctrl-C reaches the whole process
    /// group): the parent stops them through shared memory and still prints its report.
    /// A fork child also drops the parent's SIGTERM handler, so SIGTERM ends it.
    static func ignoreInterrupts() {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_DFL)
    }
}
