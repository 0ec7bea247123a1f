// Names (issue 14 item 6): control characters are refused; a leading '-' stays a valid
// name; something other than a segment in the lock's place says what it is.

import Interlock
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Lock names: control characters and what is in the lock's place", .serialized, .timeLimit(.minutes(1)))
struct NameEdgeTests {
    @Test("control characters are refused by every entry point", arguments: [
        "a\nb", "tab\there", "bell\u{7}", "esc\u{1B}[31mred", "del\u{7F}", "c1\u{85}next", "cr\r",
    ])
    func controlCharactersRefused(name: String) {
        let unique = name + "-\(getpid())"
        defer { try? SharedLock.remove(named: unique, force: true) }  // if it was wrongly created
        for (entry, error) in [
            ("open", TestLocks.error { _ = try SharedLock(named: unique) }),
            ("inspect", TestLocks.error { _ = try SharedLock.inspect(named: unique) }),
            ("remove", TestLocks.error { try SharedLock.remove(named: unique) }),
        ] {
            guard case .invalidName(let reported, let reason)? = error else {
                Issue.record("\(entry) of \(unique.debugDescription): expected invalidName, got \(String(describing: error))")
                continue
            }
            #expect(reported == unique)
            #expect(reason.contains("control character"), "\(entry): \(reason)")
        }
    }

    @Test func leadingDashIsAValidName() throws {
        let name = "-lead-\(getpid())"
        defer { TestLocks.cleanUp(name) }
        let lock = try SharedLock(named: name)
        lock.withExclusive {}
        #expect(try SharedLock.inspect(named: name).name == name)
    }

    /// A directory or a symbolic link at /dev/shm/interlock.NAME is reported as what it
    /// is, not as a name the system rejected.
    @Test(arguments: ["directory", "symlink"])
    func somethingElseInTheLocksPlace(kind: String) throws {
        let name = TestLocks.uniqueName("occupied-\(kind)")
        let path = "/dev/shm/interlock." + name
        if kind == "directory" {
            try #require(mkdir(path, 0o700) == 0, "mkdir: errno \(errno)")
        } else {
            try #require(symlink("/nonexistent-interlock-target", path) == 0, "symlink: errno \(errno)")
        }
        defer { if kind == "directory" { rmdir(path) } else { unlink(path) } }
        let found = kind == "directory" ? "a directory" : "a symbolic link"
        for (entry, error) in [
            ("open", TestLocks.error { _ = try SharedLock(named: name) }),
            ("openOnly", TestLocks.error {
                var options = NamedLockOptions()
                options.creation = .openOnly
                _ = try SharedLock(named: name, options: options)
            }),
            ("inspect", TestLocks.error { _ = try SharedLock.inspect(named: name) }),
        ] {
            #expect(error == .notALock(name: name, path: path, found: found), "\(entry): \(String(describing: error))")
            #expect(error?.description.contains("is \(found), not a lock segment") == true, "\(entry)")
        }
        // Nothing was changed there by the failed opens.
        var st = stat()
        #expect(lstat(path, &st) == 0)
        #expect(st.st_mode & S_IFMT == (kind == "directory" ? S_IFDIR : S_IFLNK))
        // remove: shm_unlink cannot remove a directory (say what is there); a symbolic
        // link in the lock's place is unlinked like a broken segment.
        let removal = TestLocks.error { try SharedLock.remove(named: name) }
        if kind == "directory" {
            #expect(removal == .notALock(name: name, path: path, found: found), "remove: \(String(describing: removal))")
        } else {
            #expect(removal == nil, "remove: \(String(describing: removal))")
            #expect(lstat(path, &st) != 0, "the link is still there")
        }
    }
}
