import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `interlock-pg stress` as a test: real worker processes, each with several tasks sharing
/// one session, checked by the witness in shared memory (not by the lock's own view).
@Suite("Stress runs across processes", .timeLimit(.minutes(3)))
struct StressTests {
    /// Runs the tool; returns its exit status and standard output.
    static func runTool(_ arguments: [String]) throws -> (status: Int32, output: String) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw SetupError(description: "pipe: errno \(errno)") }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        let tool = try Holder.executable()
        let argv = ([tool] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, tool, &actions, nil, argv, environ)
        close(fds[1])
        guard rc == 0 else { close(fds[0]); throw SetupError(description: "posix_spawn: errno \(rc)") }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fds[0], &chunk, chunk.count)
            if n > 0 { output += chunk[..<n] } else if n == 0 || errno != EINTR { break }
        }
        close(fds[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return (status, String(decoding: output, as: UTF8.self))
    }

    /// A number from the tool's one-line JSON report.
    static func field(_ json: String, _ name: String) -> Int? {
        guard let range = json.range(of: "\"\(name)\":") else { return nil }
        let digits = json[range.upperBound...].prefix { $0.isNumber || $0 == "-" || $0 == "." }
        return Double(digits).map { Int($0) }
    }

    @Test("several processes: one writer at a time, readers together, tokens fence every write")
    func exclusion() throws {
        let (status, json) = try Self.runTool(["stress", "--processes", "3", "--tasks", "3", "--operations", "1500",
                                               "--read-percent", "70", "--hold", "200us", "--name", TestServer.uniqueName(), "--json"])
        #expect(status == 0, "\(json)")
        #expect(Self.field(json, "violations") == 0, "\(json)")
        #expect(Self.field(json, "overlaps") == 0, "\(json)")
        #expect(Self.field(json, "staleRejected") == 0, "\(json)")
        #expect((Self.field(json, "exclusiveOps") ?? 0) > 0 && (Self.field(json, "sharedOps") ?? 0) > 0, "\(json)")
        #expect((Self.field(json, "maxReaders") ?? 0) > 1, "readers never held together: \(json)")
    }

    @Test("holders killed with SIGKILL: no violation, the others go on")
    func kills() throws {
        let (status, json) = try Self.runTool(["stress", "--processes", "3", "--tasks", "2", "--duration", "3s", "--kill", "--every", "100ms",
                                               "--read-percent", "60", "--hold", "1ms", "--name", TestServer.uniqueName(), "--json"])
        #expect(status == 0, "\(json)")
        #expect(Self.field(json, "violations") == 0, "\(json)")
        #expect((Self.field(json, "kills") ?? 0) > 5, "\(json)")
        #expect(Self.field(json, "workerFailures") == 0, "\(json)")
    }

    @Test("holders' sessions terminated: the holders are told, every overlap is one of theirs, stale writes are refused")
    func terminations() throws {
        let (status, json) = try Self.runTool(["stress", "--processes", "3", "--tasks", "2", "--duration", "3s", "--terminate", "--every", "50ms",
                                               "--read-percent", "50", "--hold", "5ms", "--name", TestServer.uniqueName(), "--json"])
        #expect(status == 0, "\(json)")
        #expect(Self.field(json, "violations") == 0, "\(json)")
        #expect((Self.field(json, "terminations") ?? 0) > 5, "\(json)")
        let lost = (Self.field(json, "lostShared") ?? 0) + (Self.field(json, "lostExclusive") ?? 0)
        #expect(lost > 0, "\(json)")
        #expect(Self.field(json, "overlaps") == Self.field(json, "explained"), "\(json)")
    }
}
