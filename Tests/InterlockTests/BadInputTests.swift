// Bad input is a typed error, not a crash, and nothing stored is damaged (promises 7, 8).
//
// Broken segments are written by hand (shm_open + ftruncate + pwrite, following the
// header layout documented in Protocol/Segment.swift); each test then checks the exact
// `InterlockError` case and that the bytes are unchanged after the failed open.
// Permission tests run as root and drop to `nobody` (65534) inside an exit test.

import Interlock
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Bad input", .serialized, .timeLimit(.minutes(3)))
struct BadInputTests {
    // MARK: Names

    /// A name the library must refuse, labelled for the test report (one contains a NUL).
    struct BadName: CustomTestStringConvertible, Sendable {
        var label: String
        var name: String
        var testDescription: String { label }
    }

    @Test("invalid names are refused by every entry point", arguments: [
        BadName(label: "empty", name: ""),
        BadName(label: "201 bytes", name: String(repeating: "a", count: 201)),
        BadName(label: "202 bytes in 101 characters", name: String(repeating: "é", count: 101)),
        BadName(label: "slash inside", name: "a/b"),
        BadName(label: "leading slash", name: "/lock"),
        BadName(label: "trailing slash", name: "lock/"),
        BadName(label: "dot", name: "."),
        BadName(label: "dot dot", name: ".."),
        BadName(label: "NUL byte", name: "a\u{0}b"),
    ])
    func invalidNames(bad: BadName) {
        let name = bad.name
        for (entry, error) in [
            ("init", TestLocks.error { _ = try SharedLock(named: name) }),
            ("init openOnly", TestLocks.error { _ = try SharedLock(named: name, options: .openOnly) }),
            ("inspect", TestLocks.error { _ = try SharedLock.inspect(named: name) }),
            ("remove", TestLocks.error { try SharedLock.remove(named: name) }),
            ("remove force", TestLocks.error { try SharedLock.remove(named: name, force: true) }),
        ] {
            guard case .invalidName(let reported, let reason)? = error else {
                Issue.record("\(entry) of \(bad.label) name: expected invalidName, got \(String(describing: error))")
                continue
            }
            #expect(reported == name, "\(entry)")
            #expect(!reason.isEmpty, "\(entry)")
        }
    }

    @Test("the longest valid name (200 bytes, also in multi-byte characters) works")
    func longestNameWorks() throws {
        for stem in ["a", "é"] {
            let prefix = "t-\(getpid())-"
            let count = (200 - prefix.utf8.count) / stem.utf8.count
            var name = prefix + String(repeating: stem, count: count)
            name += String(repeating: "x", count: 200 - name.utf8.count)
            #expect(name.utf8.count == 200)
            defer { TestLocks.cleanUp(name) }
            let lock = try SharedLock(named: name, options: .createOnly)
            lock.withExclusive {}
            #expect(try SharedLock.inspect(named: name).name == name)
        }
    }

    // MARK: Hand-made segments

    /// A version-3 header with the given fields (see the layout in Segment.swift).
    static func header(magic: UInt64 = RawSegment.magic, version: UInt32 = 3, ready: UInt32 = 1,
                       size: UInt64, capacity: UInt32 = 64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 128)
        bytes.withUnsafeMutableBytes { p in
            p.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt64.self)
            p.storeBytes(of: version.littleEndian, toByteOffset: 8, as: UInt32.self)
            p.storeBytes(of: ready.littleEndian, toByteOffset: 12, as: UInt32.self)
            p.storeBytes(of: size.littleEndian, toByteOffset: 16, as: UInt64.self)
            p.storeBytes(of: capacity.littleEndian, toByteOffset: 24, as: UInt32.self)
        }
        return bytes
    }

    /// A broken segment: its header bytes, its file size, and the word its reason must use.
    struct Broken: CustomTestStringConvertible, Sendable {
        var label: String
        var bytes: [UInt8]
        var fileSize: Int
        var reasonMentions: String
        var testDescription: String { label }
    }

    static let size = RawSegment.byteCount(capacity: 64)
    static let brokenSegments: [Broken] = [
        Broken(label: "wrong magic", bytes: header(magic: 0x4B43_4F4C_544F_4E21, size: UInt64(size)), fileSize: size,
               reasonMentions: "magic"),
        Broken(label: "foreign data, not published", bytes: Array("#!/bin/sh\necho not a lock\n".utf8), fileSize: size,
               reasonMentions: "magic"),
        Broken(label: "wrong layout version", bytes: header(version: 1, size: UInt64(size)), fileSize: size,
               reasonMentions: "version"),
        Broken(label: "header size larger than the file", bytes: header(size: UInt64(size * 2)), fileSize: size,
               reasonMentions: "bytes"),
        Broken(label: "file larger than the header says", bytes: header(size: UInt64(size)), fileSize: size * 2,
               reasonMentions: "bytes"),
        Broken(label: "file smaller than a header", bytes: Array(header(size: 64).prefix(64)), fileSize: 64,
               reasonMentions: "header"),
        Broken(label: "capacity 0", bytes: header(size: UInt64(size), capacity: 0), fileSize: size,
               reasonMentions: "capacity"),
        Broken(label: "capacity too large for the size", bytes: header(size: UInt64(size), capacity: 4000), fileSize: size,
               reasonMentions: "capacity"),
    ]

    /// Upgrading: a lock of the previous layout (0.1.0 wrote version 2) that its programs
    /// still use cannot be decoded, but its holders' liveness locks can be seen. A plain
    /// remove refuses (old and new programs would stop excluding each other); once nobody
    /// holds it, remove clears it.
    @Test func removeRefusesAnOlderLayoutStillInUse() async throws {
        let name = TestLocks.uniqueName("v2")
        defer { TestLocks.cleanUp(name) }
        let size = RawSegment.byteCount(capacity: 8)
        try RawSegment.create(name, bytes: BadInputTests.header(version: 2, size: UInt64(size), capacity: 8), fileSize: size)
        // The holder is another process: this one's own record locks would be dropped by
        // remove's look at the file (closing any descriptor of a file drops them).
        await #expect(processExitsWith: .success) { [name = name as String] in
            alarm(30)
            let locked = sharedFlag()
            let holder = Proc.forkChild {
                alarm(30)  // never outlives the test (its pipes would keep the test waiting)
                // What a 0.1.0 holder keeps: a record lock on its entry's byte (offset 128).
                guard let fd = try? RawSegment.open(name, O_RDWR) else { return "open failed" }
                var lock = Glibc.flock()
                lock.l_type = Int16(F_WRLCK)
                lock.l_whence = Int16(SEEK_SET)
                lock.l_start = 128
                lock.l_len = 1
                guard fcntl(fd, F_SETLK, &lock) == 0 else { return "F_SETLK: errno \(errno)" }
                locked.pointee.store(1, ordering: .releasing)
                while true { pause() }
            }
            Proc.waitFor("the holder never locked") { locked.pointee.load(ordering: .acquiring) == 1 }
            let refusal = TestLocks.error { try SharedLock.remove(named: name) }
            if refusal != .liveHolders(name: name, count: 1) {
                Proc.fail("remove of a layout-2 lock that a live process holds: \(String(describing: refusal))")
            }
            kill(holder, SIGKILL)
            _ = Proc.reap(holder)
            if let error = TestLocks.error(of: { try SharedLock.remove(named: name) }) { Proc.fail("remove after the holder died: \(error)") }
            exit(0)
        }
    }

    @Test("a segment of the wrong size, magic or layout version is incompatible, and left intact",
          arguments: brokenSegments)
    func incompatibleSegment(broken: Broken) throws {
        let name = TestLocks.uniqueName("broken")
        defer { TestLocks.cleanUp(name) }
        try RawSegment.create(name, bytes: broken.bytes, fileSize: broken.fileSize)
        let before = try RawSegment.contents(name)

        for (entry, error) in [
            ("init", TestLocks.error { _ = try SharedLock(named: name) }),
            ("init openOnly", TestLocks.error { _ = try SharedLock(named: name, options: .openOnly) }),
            ("inspect", TestLocks.error { _ = try SharedLock.inspect(named: name) }),
        ] {
            guard case .incompatibleSegment(let reported, let reason)? = error else {
                Issue.record("\(entry): expected incompatibleSegment, got \(String(describing: error))")
                continue
            }
            #expect(reported == name)
            #expect(reason.contains(broken.reasonMentions), "\(entry): \(reason)")
        }
        #expect(try RawSegment.contents(name) == before, "a failed open changed the segment")
        #expect(throws: InterlockError.alreadyExists(name: name)) { try SharedLock(named: name, options: .createOnly) }
        // Nobody is registered in a broken segment: a plain remove clears it.
        try SharedLock.remove(named: name)
        #expect(throws: InterlockError.notFound(name: name)) { try SharedLock.inspect(named: name) }
    }

    @Test("a segment whose creator never published it is not ready, and left intact")
    func notReady() throws {
        let name = TestLocks.uniqueName("unready")
        defer { TestLocks.cleanUp(name) }
        var options = NamedLockOptions.openOnly
        options.readyTimeout = .milliseconds(50)
        // Creator died after ftruncate, before publishing: right size, all zero.
        try RawSegment.create(name, bytes: [], fileSize: Self.size)
        let before = try RawSegment.contents(name)
        #expect(throws: InterlockError.notReady(name: name)) { try SharedLock(named: name, options: options) }
        options.creation = .openOrCreate
        #expect(throws: InterlockError.notReady(name: name)) { try SharedLock(named: name, options: options) }
        #expect(try RawSegment.contents(name) == before)
        // Half-written header (magic still 0, ready 0): still not ready, not "incompatible".
        TestLocks.cleanUp(name)
        try RawSegment.create(name, bytes: Self.header(magic: 0, ready: 0, size: UInt64(Self.size)), fileSize: Self.size)
        #expect(throws: InterlockError.notReady(name: name)) { try SharedLock(named: name, options: options) }
        // Everything written but `ready`: still not ready.
        TestLocks.cleanUp(name)
        try RawSegment.create(name, bytes: Self.header(ready: 0, size: UInt64(Self.size)), fileSize: Self.size)
        let unpublished = try RawSegment.contents(name)
        #expect(throws: InterlockError.notReady(name: name)) { try SharedLock(named: name, options: options) }
        #expect(try RawSegment.contents(name) == unpublished)
        // Creator died before ftruncate: an empty file.
        TestLocks.cleanUp(name)
        try RawSegment.create(name, bytes: [], fileSize: 0)
        #expect(throws: InterlockError.notReady(name: name)) { try SharedLock(named: name, options: options) }
        #expect(try RawSegment.contents(name) == [])
        try SharedLock.remove(named: name)
    }

    @Test("an opener waits for a creator that publishes within the ready timeout")
    func latePublisherIsAwaited() throws {
        let name = TestLocks.uniqueName("late")
        defer { TestLocks.cleanUp(name) }
        // A creator that has written everything but `ready` (the last step of publishing).
        let mapping = try RawSegment.create(name, bytes: Self.header(ready: 0, size: UInt64(Self.size)),
                                            fileSize: Self.size, keepMapped: true)
        defer { munmap(mapping, Self.size) }
        let opened = OpenResultBox()
        let opener = TestThread {
            var options = NamedLockOptions.openOnly
            options.readyTimeout = .seconds(10)
            let result = Result { () throws(InterlockError) in try SharedLock(named: name, options: options) }
            opened.value.withLock { $0 = result }
        }
        // The opener maps the segment before it waits for `ready`: once a second mapping
        // shows in /proc/self/maps, it is waiting (or about to). Bounded poll.
        let deadline = ContinuousClock.now + .seconds(10)
        while try RawSegment.mappingCount(name) < 2 && opened.value.withLock({ $0 == nil }) && ContinuousClock.now < deadline {
            sched_yield()
        }
        #expect(opened.value.withLock { $0 == nil }, "the opener did not wait for ready")
        (mapping + 12).assumingMemoryBound(to: Atomic<UInt32>.self).pointee.store(1, ordering: .releasing)
        opener.join()
        let lock = try #require(try opened.value.withLock { $0 }?.get())
        #expect(lock.tryLockExclusive())
        lock.unlockExclusive()
    }

    // MARK: Permissions

    @Test("named locks are created 0600, or 0660 when shared with the group")
    func creationModes() throws {
        let name = TestLocks.uniqueName("mode")
        defer { TestLocks.cleanUp(name) }
        _ = try SharedLock(named: name)
        #expect(try RawSegment.mode(name) == 0o600)
        TestLocks.cleanUp(name)
        var group = NamedLockOptions()
        group.shareWithGroup = true
        _ = try SharedLock(named: name, options: group)
        #expect(try RawSegment.mode(name) == 0o660)
    }

    @Test("a segment others can write is refused unless allowed", arguments: [0o666, 0o622, 0o660, 0o620] as [UInt32])
    func insecureSegment(mode: UInt32) throws {
        let name = TestLocks.uniqueName("insecure")
        defer { TestLocks.cleanUp(name) }
        do {
            let creator = try SharedLock(named: name, options: .createOnly)
            creator.withExclusive {}
        }
        try RawSegment.setMode(name, mode)
        let before = try RawSegment.contents(name)
        #expect(throws: InterlockError.insecureSegment(name: name, mode: mode)) { try SharedLock(named: name) }
        #expect(throws: InterlockError.insecureSegment(name: name, mode: mode)) { try SharedLock(named: name, options: .openOnly) }
        #expect(try RawSegment.contents(name) == before, "a refused open changed the segment")

        let groupWritableOnly = mode & 0o002 == 0
        var group = NamedLockOptions()
        group.shareWithGroup = true
        if groupWritableOnly {
            _ = try SharedLock(named: name, options: group)  // the group was meant to share it
        } else {
            #expect(throws: InterlockError.insecureSegment(name: name, mode: mode)) { try SharedLock(named: name, options: group) }
        }
        var allowed = NamedLockOptions()
        allowed.allowInsecurePermissions = true
        let lock = try SharedLock(named: name, options: allowed)
        #expect(lock.tryLockExclusive())
        lock.unlockExclusive()
        #expect(try SharedLock.inspect(named: name).capacity == 64, "inspect reads any segment")
    }

    @Test("a segment owned by another user is refused unless allowed", .enabled(if: getuid() == 0, "needs root"))
    func foreignOwner() async throws {
        let name = TestLocks.uniqueName("foreign")
        defer { TestLocks.cleanUp(name) }
        // A child turns into `nobody` and creates the lock (mode 0600, owned by nobody).
        await #expect(processExitsWith: .success) { [name = name as String] in
            guard setgid(65534) == 0, setuid(65534) == 0 else { Proc.fail("setuid: errno \(errno)") }
            do {
                _ = try SharedLock(named: name, options: .createOnly)
            } catch {
                Proc.fail("create as nobody: \(error)")
            }
            exit(0)
        }
        #expect(throws: InterlockError.insecureSegment(name: name, mode: 0o600)) { try SharedLock(named: name) }
        var allowed = NamedLockOptions()
        allowed.allowInsecurePermissions = true
        _ = try SharedLock(named: name, options: allowed)
    }

    @Test("permission denied is an error", .enabled(if: getuid() == 0, "needs root to drop privileges"))
    func permissionDenied() async throws {
        let name = TestLocks.uniqueName("denied")
        defer { TestLocks.cleanUp(name) }
        _ = try SharedLock(named: name)  // root, 0600
        let before = try RawSegment.contents(name)
        await #expect(processExitsWith: .success) { [name = name as String] in
            guard setgid(65534) == 0, setuid(65534) == 0 else { Proc.fail("setuid: errno \(errno)") }
            var openOnly = NamedLockOptions()
            openOnly.creation = .openOnly
            let expected = InterlockError.permissionDenied(name: name)
            for (entry, error) in [
                ("init", TestLocks.error { _ = try SharedLock(named: name) }),
                ("init openOnly", TestLocks.error { _ = try SharedLock(named: name, options: openOnly) }),
                ("inspect", TestLocks.error { _ = try SharedLock.inspect(named: name) }),
                ("remove", TestLocks.error { try SharedLock.remove(named: name) }),
                ("remove force", TestLocks.error { try SharedLock.remove(named: name, force: true) }),
            ] where error != expected {
                Proc.fail("\(entry): expected \(expected), got \(String(describing: error))")
            }
            exit(0)
        }
        #expect(try RawSegment.contents(name) == before, "the refused process changed the segment")
        _ = try SharedLock.inspect(named: name)
    }

    // MARK: Holder table, creation and removal

    @Test("a full holder table is an error, and an exited holder's entry is reused")
    func holderTableFull() throws {
        let name = TestLocks.uniqueName("full")
        defer { TestLocks.cleanUp(name) }
        let first = try HelperProcess(lock: name, ["--capacity", "1"])
        #expect(throws: InterlockError.holderTableFull(name: name, capacity: 1)) { try SharedLock(named: name) }
        let second = try HelperProcess.spawnExpectingFailure(lock: name)
        #expect(second.status == 3)
        #expect(second.line.hasPrefix("error ") && second.line.contains("holder table"), "\(second.line)")
        let snapshot = try SharedLock.inspect(named: name)
        #expect(snapshot.holders.map(\.pid) == [first.pid], "the refused processes left no entry")

        try first.quit()
        let lock = try SharedLock(named: name)  // the exited helper's entry is free again
        #expect(lock.tryLockExclusive())
        lock.unlockExclusive()
        #expect(throws: InterlockError.holderTableFull(name: name, capacity: 1)) { try SharedLock(named: name) }
    }

    @Test("a forked child finds a full holder table an error, not a hang")
    func holderTableFullForkShared() async {
        await #expect(processExitsWith: .success) { synchronously {
            let lock: SharedLock
            do { lock = try SharedLock.forkShared(capacity: 1) } catch { Proc.fail("forkShared: \(error)") }
            let child = fork()
            if child == 0 {
                // The parent holds the only entry.
                if lock.tryLockShared() { Proc.childFail("tryLockShared succeeded with a full table") }
                if lock.tryLockExclusive() { Proc.childFail("tryLockExclusive succeeded with a full table") }
                let error = TestLocks.error { try lock.lockExclusive(timeout: .seconds(1)) }
                if error != .holderTableFull(name: nil, capacity: 1) { Proc.childFail("lockExclusive(timeout:): \(String(describing: error))") }
                let shared = TestLocks.error { try lock.lockShared(timeout: .seconds(1)) }
                if shared != .holderTableFull(name: nil, capacity: 1) { Proc.childFail("lockShared(timeout:): \(String(describing: shared))") }
                _exit(0)
            }
            guard child > 0 else { Proc.fail("fork: errno \(errno)") }
            let status = Proc.reap(child)
            guard status == 0 else { Proc.fail("child exited \(status)") }
            // The parent is unaffected.
            guard lock.tryLockExclusive() else { Proc.fail("parent lost its lock") }
            lock.unlockExclusive()
            exit(0)
        } }
    }

    @Test("a capacity outside 1…4095 is an error, not a crash", arguments: [0, -1, 4096, 1 << 40])
    func invalidCapacity(capacity: Int) {
        #expect(throws: InterlockError.invalidCapacity(capacity)) { try SharedLock.forkShared(capacity: capacity) }
        let name = TestLocks.uniqueName("capacity")
        defer { TestLocks.cleanUp(name) }
        var options = NamedLockOptions()
        options.capacity = capacity
        #expect(throws: InterlockError.invalidCapacity(capacity)) { try SharedLock(named: name, options: options) }
        #expect(throws: InterlockError.notFound(name: name)) { try SharedLock.inspect(named: name) }
    }

    @Test("createOnly on an existing name, openOnly on a missing one")
    func creationConflicts() throws {
        let name = TestLocks.uniqueName("exists")
        defer { TestLocks.cleanUp(name) }
        #expect(throws: InterlockError.notFound(name: name)) { try SharedLock(named: name, options: .openOnly) }
        #expect(throws: InterlockError.notFound(name: name)) { try SharedLock.inspect(named: name) }
        #expect(throws: InterlockError.notFound(name: name)) { try SharedLock.remove(named: name) }
        #expect(throws: InterlockError.notFound(name: name)) { try SharedLock.remove(named: name, force: true) }
        let first = try SharedLock(named: name, options: .createOnly)
        first.lockShared()
        let before = try RawSegment.contents(name)
        #expect(throws: InterlockError.alreadyExists(name: name)) { try SharedLock(named: name, options: .createOnly) }
        #expect(try RawSegment.contents(name) == before, "a refused create changed the segment")
        #expect(try SharedLock.inspect(named: name).sharedProcessCount == 1)
        first.unlockShared()
    }

    @Test("remove refuses while a live process uses the lock, unless forced")
    func removeWhileHeld() throws {
        let name = TestLocks.uniqueName("remove")
        defer { TestLocks.cleanUp(name) }
        let holder = try HelperProcess(lock: name)
        #expect(try holder.ask("try-shared") == "ok shared")
        let other = try HelperProcess(lock: name)
        #expect(throws: InterlockError.liveHolders(name: name, count: 2)) { try SharedLock.remove(named: name) }
        #expect(try other.quit() == 0)
        #expect(throws: InterlockError.liveHolders(name: name, count: 1)) { try SharedLock.remove(named: name) }
        // Refused: the lock is still there and still works.
        #expect(try SharedLock.inspect(named: name).sharedProcessCount == 1)
        #expect(try holder.ask("release-shared") == "released")
        #expect(try holder.ask("try-exclusive") == "ok exclusive died=false")
        try SharedLock.remove(named: name, force: true)
        #expect(throws: InterlockError.notFound(name: name)) { try SharedLock.inspect(named: name) }
        // The holder keeps its mapping; a new lock under the same name is a different lock.
        #expect(try holder.ask("release-exclusive") == "released")
        try holder.quit()
        let fresh = try SharedLock(named: name, options: .createOnly)
        fresh.withExclusive {}
        try SharedLock.remove(named: name, force: true)
        // A lock whose only users exited can be removed without force.
        let quitter = try HelperProcess(lock: name)
        try quitter.quit()
        try SharedLock.remove(named: name)
    }
}

// MARK: - Support

extension NamedLockOptions {
    static var createOnly: NamedLockOptions { var o = NamedLockOptions(); o.creation = .createOnly; return o }
    static var openOnly: NamedLockOptions { var o = NamedLockOptions(); o.creation = .openOnly; return o }
}

/// A result handed from another thread.
final class OpenResultBox: Sendable {
    let value = Mutex<Result<SharedLock, InterlockError>?>(nil)
}

/// Direct access to a named segment's file, bypassing Interlock.
enum RawSegment {
    static let magic: UInt64 = 0x314B_434F_4C54_4E49  // "INTLOCK1"

    static func byteCount(capacity: Int) -> Int {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        return (128 + 64 * capacity + page - 1) / page * page
    }

    static func path(_ name: String) -> String { "/interlock." + name }

    static func open(_ name: String, _ flags: Int32, _ mode: mode_t = 0) throws -> Int32 {
        let fd = shm_open(path(name), flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw HelperError(description: "shm_open \(name): errno \(errno)") }
        return fd
    }

    /// Creates `/interlock.NAME` (mode 0600) of `fileSize` bytes starting with `bytes`.
    /// With `keepMapped`, returns a shared mapping of it (unmap it with `munmap`).
    @discardableResult
    static func create(_ name: String, bytes: [UInt8], fileSize: Int, keepMapped: Bool = false) throws -> UnsafeMutableRawPointer {
        let fd = try open(name, O_RDWR | O_CREAT | O_EXCL, 0o600)
        defer { close(fd) }
        guard fchmod(fd, 0o600) == 0, ftruncate(fd, off_t(fileSize)) == 0 else {
            throw HelperError(description: "fchmod/ftruncate: errno \(errno)")
        }
        if !bytes.isEmpty {
            guard pwrite(fd, bytes, bytes.count, 0) == bytes.count else { throw HelperError(description: "pwrite: errno \(errno)") }
        }
        guard keepMapped else { return UnsafeMutableRawPointer(bitPattern: 1)! }
        guard let p = mmap(nil, fileSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw HelperError(description: "mmap: errno \(errno)")
        }
        return p
    }

    /// Every byte of the segment's file.
    static func contents(_ name: String) throws -> [UInt8] {
        let fd = try open(name, O_RDONLY)
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw HelperError(description: "fstat: errno \(errno)") }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        if !bytes.isEmpty {
            guard pread(fd, &bytes, bytes.count, 0) == bytes.count else { throw HelperError(description: "pread: errno \(errno)") }
        }
        return bytes
    }

    static func mode(_ name: String) throws -> UInt32 {
        let fd = try open(name, O_RDONLY)
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw HelperError(description: "fstat: errno \(errno)") }
        return UInt32(st.st_mode) & 0o7777
    }

    /// How many mappings of the segment this process has (from /proc/self/maps).
    static func mappingCount(_ name: String) throws -> Int {
        guard let file = fopen("/proc/self/maps", "r") else { throw HelperError(description: "fopen maps: errno \(errno)") }
        defer { fclose(file) }
        var count = 0
        var line = [CChar](repeating: 0, count: 4096)
        let suffix = "/dev/shm/interlock." + name
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text.hasSuffix(suffix + "\n") || text.hasSuffix(suffix) { count += 1 }
        }
        return count
    }

    static func setMode(_ name: String, _ mode: UInt32) throws {
        let fd = try open(name, O_RDWR)
        defer { close(fd) }
        guard fchmod(fd, mode_t(mode)) == 0 else { throw HelperError(description: "fchmod: errno \(errno)") }
    }
}
