// Locks at a path: `SharedLock(path:)` — creation, other processes, crash recovery,
// and the files and directories it must refuse (promises 7 and 9).

import Interlock
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A fresh private directory for one test, removed (with what the test left) at the end.
final class TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/interlock-test-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw HelperError(description: "mkdtemp: errno \(errno)")
        }
        path = String(cString: made)
    }

    func file(_ name: String) -> String { path + "/" + name }

    deinit {
        // Everything a test leaves is one level deep (files, links, FIFOs, directories).
        if let dir = opendir(path) {
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
                if name == "." || name == ".." { continue }
                if unlink(file(name)) != 0 { rmdir(file(name)) }
            }
            closedir(dir)
        }
        rmdir(path)
    }
}

@Suite("Locks at a path", .serialized, .timeLimit(.minutes(2)))
struct PathLockTests {
    @Test("a lock file is created 0600, shared with other processes, inspected and removed")
    func lifecycle() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("app.lock")
        let lock = try SharedLock(path: path, options: .createOnly)
        #expect(lock.scope == .path(path))
        var st = stat()
        #expect(lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFREG && st.st_mode & 0o777 == 0o600)

        let other = try HelperProcess(lock: path, ["--path", "--open-only"])
        #expect(try other.ask("try-exclusive") == "ok exclusive died=false")
        #expect(lock.tryLockShared() == false)
        let snapshot = try SharedLock.inspect(path: path)
        #expect(snapshot.name == path && snapshot.isExclusive)
        #expect(snapshot.holders.filter(\.isAlive).count == 2, "\(snapshot)")
        #expect(throws: InterlockError.liveHolders(name: path, count: 2)) { try SharedLock.remove(path: path) }
        #expect(try other.ask("release-exclusive") == "released")
        lock.withExclusive {}
        #expect(try other.quit() == 0)

        #expect(throws: InterlockError.liveHolders(name: path, count: 1)) { try SharedLock.remove(path: path) }
        try SharedLock.remove(path: path, force: true)
        #expect(access(path, F_OK) != 0, "the file is gone")
        #expect(throws: InterlockError.notFound(name: path)) { try SharedLock.inspect(path: path) }
    }

    @Test("a relative path names a file in the working directory")
    func relativePath() throws {
        let dir = try TemporaryDirectory()
        let here = getcwd(nil, 0)!
        defer { _ = chdir(here); free(here) }
        #expect(chdir(dir.path) == 0)
        let lock = try SharedLock(path: "./rel.lock")
        lock.withShared {}
        #expect(access(dir.file("rel.lock"), F_OK) == 0)
        #expect(try SharedLock.inspect(path: "rel.lock").holders.count == 1)
    }

    @Test("a path-lock holder killed with -9 is reclaimed; the next writer is told")
    func crashRecovery() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("crash.lock")
        let victim = try HelperProcess(lock: path, ["--path"])
        #expect(try victim.ask("try-exclusive") == "ok exclusive died=false")
        let survivor = try HelperProcess(lock: path, ["--path"])
        try survivor.begin("exclusive")
        victim.kill9()
        #expect(try survivor.readLine() == "ok exclusive died=true")
        #expect(try survivor.ask("release-exclusive") == "released")
        #expect(try survivor.quit() == 0)
        let after = try SharedLock.inspect(path: path)
        #expect(after.recoveries == 1 && TestLocks.problems(in: after).isEmpty, "\(after)")
    }

    /// Something put in the lock file's place before the lock is opened.
    struct Planted: CustomTestStringConvertible, Sendable {
        var label: String
        var reasonMentions: String
        var plant: @Sendable (String) -> Bool
        var testDescription: String { label }
    }

    static let planted: [Planted] = [
        Planted(label: "symbolic link", reasonMentions: "symbolic link") { symlink($0 + ".target", $0) == 0 },
        Planted(label: "dangling symbolic link", reasonMentions: "symbolic link") { symlink("/nonexistent/x", $0) == 0 },
        Planted(label: "directory", reasonMentions: "directory") { mkdir($0, 0o700) == 0 },
        Planted(label: "FIFO", reasonMentions: "FIFO") { mkfifo($0, 0o600) == 0 },
    ]

    @Test("a link, directory or FIFO in the lock file's place is refused, and nothing is followed or created",
          arguments: planted)
    func plantedFile(planted: Planted) throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("x.lock")
        let target = path + ".target"
        let fd = open(target, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        #expect(fd >= 0 && write(fd, "precious", 8) == 8)
        close(fd)
        try #require(planted.plant(path))

        for (entry, error) in [
            ("openOrCreate", TestLocks.error { _ = try SharedLock(path: path) }),
            ("createOnly", TestLocks.error { _ = try SharedLock(path: path, options: .createOnly) }),
            ("openOnly", TestLocks.error { _ = try SharedLock(path: path, options: .openOnly) }),
            ("inspect", TestLocks.error { _ = try SharedLock.inspect(path: path) }),
            ("remove", TestLocks.error { try SharedLock.remove(path: path, force: true) }),
        ] {
            guard case .invalidPath(let reported, let reason)? = error else {
                Issue.record("\(entry): expected invalidPath, got \(String(describing: error))")
                continue
            }
            #expect(reported == path, "\(entry)")
            #expect(reason.contains(planted.reasonMentions), "\(entry): \(reason)")
        }
        var st = stat()
        #expect(stat(target, &st) == 0 && st.st_size == 8, "the link's target was not touched")
    }

    @Test("invalid paths are errors", arguments: [
        ("", "empty"), ("/tmp/", "ends with"), ("/nonexistent-interlock-dir/x.lock", "does not exist"),
        ("/tmp/a\nb.lock", "control"), ("/tmp/..", "must name a file"), ("/etc/passwd/x.lock", "not a directory"),
        ("/tmp/evil\u{202E}kcol.txt", "invisible"), ("/tmp/a\u{2028}b.lock", "invisible"),
    ])
    func invalidPaths(path: String, mentions: String) {
        let error = TestLocks.error { _ = try SharedLock(path: path) }
        guard case .invalidPath(let reported, let reason)? = error else {
            Issue.record("expected invalidPath, got \(String(describing: error))")
            return
        }
        #expect(reported == path)
        #expect(reason.contains(mentions), "\(reason)")
    }

    @Test("invisible formatting characters are refused in names too")
    func invisibleCharactersInNames() {
        for name in ["evil\u{202E}txt", "a\u{200B}b", "a\u{2029}b", "\u{FEFF}bom"] {
            guard case .invalidName(_, let reason)? = TestLocks.error(of: { _ = try SharedLock(named: name) }) else {
                Issue.record("\(name.unicodeScalars.map { $0.value }): expected invalidName")
                continue
            }
            #expect(reason.contains("invisible"), "\(reason)")
        }
    }

    @Test("a file on a file system that is not a local one is refused before waiting for a creator")
    func notALocalFileSystem() {
        var options = NamedLockOptions()
        options.creation = .openOnly
        options.allowInsecurePermissions = true
        let error = TestLocks.error { _ = try SharedLock(path: "/proc/self/mem", options: options) }
        guard case .unsupportedFileSystem(let path, _)? = error else {
            Issue.record("expected unsupportedFileSystem, got \(String(describing: error))")
            return
        }
        #expect(path == "/proc/self/mem")  // (it used to wait out readyTimeout, then say notReady)
    }

    @Test("a directory others can write without the sticky bit is refused unless allowed")
    func insecureDirectory() throws {
        let dir = try TemporaryDirectory()
        #expect(chmod(dir.path, 0o777) == 0)
        let path = dir.file("open.lock")
        #expect(throws: InterlockError.insecureDirectory(path: dir.path, mode: 0o777, owner: geteuid())) {
            try SharedLock(path: path)
        }
        #expect(access(path, F_OK) != 0, "nothing was created")
        var options = NamedLockOptions()
        options.allowInsecurePermissions = true
        try SharedLock(path: path, options: options).withShared {}
        // With the sticky bit (like /tmp) nobody else can replace our file: accepted.
        #expect(chmod(dir.path, 0o1777) == 0)
        try SharedLock(path: dir.file("sticky.lock")).withShared {}
    }

    @Test("a lock file others can write is refused, and a file of other data is neither used nor removed")
    func insecureAndForeignFiles() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("shared.lock")
        try SharedLock(path: path).withShared {}
        #expect(chmod(path, 0o666) == 0)
        #expect(throws: InterlockError.insecureSegment(name: path, mode: 0o666)) { try SharedLock(path: path) }

        let data = dir.file("data.db")
        let fd = open(data, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        let text = String(repeating: "important rows\n", count: 20)
        #expect(fd >= 0 && write(fd, text, text.utf8.count) == text.utf8.count)
        close(fd)
        for (entry, error) in [
            ("open", TestLocks.error { _ = try SharedLock(path: data) }),
            ("remove", TestLocks.error { try SharedLock.remove(path: data) }),
            ("remove force", TestLocks.error { try SharedLock.remove(path: data, force: true) }),
        ] {
            guard case .incompatibleSegment(let reported, _)? = error else {
                Issue.record("\(entry): expected incompatibleSegment, got \(String(describing: error))")
                continue
            }
            #expect(reported == data)
        }
        var st = stat()
        #expect(stat(data, &st) == 0 && st.st_size == text.utf8.count, "the data file is intact")
    }

    @Test("remove never deletes small, zero-filled or zero-headed files of other data", arguments: [
        ("pid file", Array("12345\n".utf8), 6),
        ("zero-filled image", [], 1 << 20),
        ("8 zero bytes, then data", [UInt8](repeating: 0, count: 8) + Array("rows".utf8), 4096),
    ] as [(String, [UInt8], Int)])
    func removeRefusesData(label: String, bytes: [UInt8], size: Int) throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("data")
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0o600)
        #expect(fd >= 0 && ftruncate(fd, off_t(size)) == 0)
        if !bytes.isEmpty { #expect(pwrite(fd, bytes, bytes.count, 0) == bytes.count) }
        close(fd)
        for force in [false, true] {
            let error = TestLocks.error { try SharedLock.remove(path: path, force: force) }
            guard case .incompatibleSegment(_, let reason)? = error else {
                Issue.record("\(label), force \(force): expected incompatibleSegment, got \(String(describing: error))")
                continue
            }
            #expect(reason.contains("not removed"), "\(reason)")
        }
        #expect(access(path, F_OK) == 0, "\(label) was deleted")
    }
}

@Suite("A lock file that does not fit", .serialized, .timeLimit(.minutes(1)))
struct NoRoomTests {
    /// Runs a command and returns its exit status.
    static func run(_ argv: [String]) -> Int32 {
        var pid: pid_t = 0
        let args = argv.map { strdup($0) } + [nil]
        defer { args.forEach { free($0) } }
        guard posix_spawn(&pid, argv[0], nil, nil, args, environ) == 0 else { return -1 }
        return Proc.reap(pid)
    }

    @Test("a shared value too large for its file system is an error, not a SIGBUS, and leaves no file")
    func noRoom() throws {
        try #require(geteuid() == 0, "mounting a small tmpfs needs root (CI runs as root)")
        let dir = try TemporaryDirectory()
        #expect(NoRoomTests.run(["/bin/mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", dir.path]) == 0)
        defer { _ = NoRoomTests.run(["/bin/umount", dir.path]) }
        let path = dir.file("big.lock")
        let error = TestLocks.error { _ = try SharedLockedArray<UInt8>(path: path, count: 4_000_000, repeating: 1) }
        guard case .systemCall(let call, let errno)? = error else {
            Issue.record("expected a systemCall error, got \(String(describing: error))")
            return
        }
        #expect(call.contains("posix_fallocate") && errno == ENOSPC, "\(call) \(errno)")
        #expect(access(path, F_OK) != 0, "the half-made lock file was left behind")
    }
}
