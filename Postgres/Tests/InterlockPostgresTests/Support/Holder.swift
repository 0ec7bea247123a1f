// "Another process" that holds the lock: `interlock-pg hold NAME`, spawned with posix_spawn,
// talking through pipes (see Sources/InterlockPostgresTool/HoldCommand.swift). Every read
// has a bound (poll), so a holder that hangs fails the test instead of hanging it.

import Testing

#if canImport(Glibc)
import Glibc
#endif

final class Holder {
    let pid: pid_t
    private let input: Int32
    private let output: Int32
    private var buffer: [UInt8] = []
    private var reaped = false

    /// The `interlock-pg` executable: beside the test bundle (`swift test` builds every
    /// product of the package), or at $INTERLOCK_PG_TOOL.
    static func executable() throws -> String {
        if let path = getenv("INTERLOCK_PG_TOOL") { return String(cString: path) }
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { throw SetupError(description: "readlink /proc/self/exe failed") }
        var path = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // …/debug/InterlockPostgresPackageTests.xctest (a file on Linux)
        while let slash = path.lastIndex(of: "/") {
            path = String(path[..<slash])
            let candidate = path + "/interlock-pg"
            if access(candidate, X_OK) == 0 { return candidate }
            if path.hasSuffix("/.build") || path.isEmpty { break }
        }
        throw SetupError(description: "interlock-pg not found beside the test binary; build it (swift build --package-path Postgres) or set INTERLOCK_PG_TOOL")
    }

    /// Starts `interlock-pg hold NAME ARGS…` with the tests' connection settings.
    init(_ name: String, _ arguments: [String] = []) throws {
        func makePipe() throws -> (read: Int32, write: Int32) {
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else { throw SetupError(description: "pipe: errno \(errno)") }
            // Close-on-exec, so holders spawned concurrently do not inherit each other's pipes.
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
        let tool = try Holder.executable()
        let argv = ([tool, "hold", name] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, tool, &actions, nil, argv, environ)
        close(toChild.read)
        close(fromChild.write)
        guard rc == 0 else {
            close(toChild.write)
            close(fromChild.read)
            throw SetupError(description: "posix_spawn \(tool): errno \(rc)")
        }
        pid = child
        input = toChild.write
        output = fromChild.read
    }

    deinit {
        if !reaped { kill(pid, SIGKILL); _ = waitForExit() }
        close(input)
        close(output)
    }

    /// Reads the next line, waiting at most `bound`.
    func readLine(within bound: Duration = .seconds(30)) throws -> String {
        let deadline = ContinuousClock.now + bound
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { throw SetupError(description: "holder \(pid) did not answer within \(bound)") }
            var fd = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
            let ready = poll(&fd, 1, Int32(min(left.components.seconds * 1000 + 1, 60_000)))
            if ready < 0 { if errno == EINTR { continue }; throw SetupError(description: "poll: errno \(errno)") }
            if ready == 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(output, &chunk, chunk.count)
            if n > 0 { buffer += chunk[..<n] } else if n == 0 {
                throw SetupError(description: "holder \(pid) exited before answering")
            } else if errno != EINTR { throw SetupError(description: "read: errno \(errno)") }
        }
    }

    /// Waits for `held <server pid> <token>`; returns the server pid and the token (nil for shared).
    func waitUntilHeld() throws -> (serverPID: Int32, token: Int64?) {
        let line = try readLine()
        let parts = line.split(separator: " ")
        guard parts.count == 3, parts[0] == "held", let pid = Int32(parts[1]) else {
            throw SetupError(description: "holder \(self.pid): expected 'held <pid> <token>', got '\(line)'")
        }
        return (pid, Int64(parts[2]))
    }

    /// Tells the holder to release; returns its last line (`released`, `lost …`).
    func release() throws -> String {
        var newline: UInt8 = UInt8(ascii: "\n")
        _ = write(input, &newline, 1)
        return try readLine()
    }

    func kill9() {
        kill(pid, SIGKILL)
        _ = waitForExit()
    }

    @discardableResult
    func waitForExit() -> Int32 {
        if reaped { return 0 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        reaped = true
        return status
    }
}
