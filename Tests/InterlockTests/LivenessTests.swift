// Liveness is the kernel's answer (promise 5): a live holder is never taken for dead,
// whatever its pid namespace, time namespace or thread state, and a dead one is
// reclaimed whatever pid it (or its successor) has.
//
// The holders are real helper processes, some started inside new namespaces with
// `unshare` (CI runs as root). A waiter that would wrongly reclaim a live holder does so
// within a few milliseconds (it scans for dead holders after 2 ms of waiting, then every
// 20 ms); each "must not get in" check below waits 300 ms, so such a waiter has had more
// than ten scans — the check fails on the first release that judged by pid.

import Interlock
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// How a helper is started: the command line in front of it.
struct Launcher: CustomTestStringConvertible, Sendable {
    var label: String
    var command: [String]
    var helperArguments: [String] = []
    var testDescription: String { label }

    static let unshare = "/usr/bin/unshare"
    static let pidNamespace = Launcher(label: "pid namespace", command: [unshare, "-pf", "--kill-child", "--mount-proc"])
    static let timeNamespace = Launcher(
        label: "time namespace",
        command: [unshare, "--time", "--boottime", "1000000", "--monotonic", "1000000", "-f", "--kill-child"])
    static let mainThreadExited = Launcher(label: "main thread exited", command: [], helperArguments: ["--main-exits"])
    static let secondHandleClosed = Launcher(
        label: "second handle on the name closed", command: [], helperArguments: ["--second-handle"])

    /// Whether this machine can run the launcher (namespaces need root and `unshare`).
    var isAvailable: Bool { command.isEmpty || (geteuid() == 0 && access(Launcher.unshare, X_OK) == 0) }
}

@Suite("Liveness by kernel record locks", .serialized, .timeLimit(.minutes(3)))
struct LivenessTests {
    static let launchers: [Launcher] = [.pidNamespace, .timeNamespace, .mainThreadExited, .secondHandleClosed]

    @Test("a live exclusive holder is never reclaimed", arguments: launchers)
    func liveExclusiveHolder(launcher: Launcher) throws {
        try #require(launcher.isAvailable, "needs root and unshare")
        let name = TestLocks.uniqueName("live-x")
        defer { TestLocks.cleanUp(name) }
        let holder = try HelperProcess(lock: name, launcher.helperArguments, launcher: launcher.command)
        #expect(try holder.ask("try-exclusive") == "ok exclusive died=false")

        let waiter = try HelperProcess(lock: name)
        #expect(try waiter.ask("timed-exclusive 300") == "timeout", "a live holder was taken for dead")
        #expect(try waiter.ask("timed-shared 300") == "timeout", "a reader got in beside a live writer")
        let snapshot = try SharedLock.inspect(named: name)
        #expect(snapshot.holders.contains { $0.mode == .exclusive && $0.isAlive }, "\(snapshot)")
        #expect(snapshot.recoveries == 0 && !snapshot.previousHolderDied, "\(snapshot)")
        // Its start time is wall-clock time, right even from another time namespace.
        let started = snapshot.holders.first { $0.mode == .exclusive }.map { Int64($0.startTime) } ?? 0
        #expect(abs(started - Int64(time(nil))) < 120, "start time \(started), now \(time(nil))")

        // The holder releases cleanly (the old release trapped: its bit had been taken),
        // and only then does the waiter get in — told of no death.
        try waiter.begin("exclusive")
        #expect(!waiter.hasOutput(within: .milliseconds(50)))
        #expect(try holder.ask("release-exclusive") == "released")
        #expect(try waiter.readLine() == "ok exclusive died=false")
        #expect(try waiter.ask("release-exclusive") == "released")
        #expect(try holder.quit() == 0)
        #expect(try waiter.quit() == 0)
    }

    @Test("a live shared holder keeps writers out and lets readers in", arguments: launchers)
    func liveSharedHolder(launcher: Launcher) throws {
        try #require(launcher.isAvailable, "needs root and unshare")
        let name = TestLocks.uniqueName("live-s")
        defer { TestLocks.cleanUp(name) }
        let holder = try HelperProcess(lock: name, launcher.helperArguments, launcher: launcher.command)
        #expect(try holder.ask("try-shared") == "ok shared")

        let other = try HelperProcess(lock: name)
        #expect(try other.ask("timed-exclusive 300") == "timeout", "a writer got in beside a live reader")
        #expect(try other.ask("try-shared") == "ok shared")
        #expect(try other.ask("release-shared") == "released")
        try other.begin("exclusive")
        #expect(try holder.ask("release-shared") == "released")
        #expect(try other.readLine() == "ok exclusive died=false")
        #expect(try other.ask("release-exclusive") == "released")
        #expect(try SharedLock.inspect(named: name).recoveries == 0)
        #expect(try holder.quit() == 0)
        #expect(try other.quit() == 0)
    }

    @Test("a holder killed in a pid namespace is reclaimed by a process with the same pid")
    func reusedPID() throws {
        try #require(Launcher.pidNamespace.isAvailable, "needs root and unshare")
        let name = TestLocks.uniqueName("reuse")
        defer { TestLocks.cleanUp(name) }
        let first = try HelperProcess(lock: name, launcher: Launcher.pidNamespace.command)
        #expect(try first.ask("try-exclusive") == "ok exclusive died=false")
        let deadPID = first.innerPID
        first.kill9()  // kills unshare; --kill-child takes the helper (the namespace's init) with it
        let (gone, met) = try TestLocks.awaitSnapshot(name) { s in !s.holders.contains { $0.isAlive } }
        try #require(met, "the killed holder still looks alive: \(gone)")

        let second = try HelperProcess(lock: name, launcher: Launcher.pidNamespace.command)
        #expect(second.innerPID == deadPID, "both are their namespace's first process")
        #expect(try second.ask("timed-exclusive 5000") == "ok exclusive died=true")
        #expect(try second.ask("release-exclusive") == "released")
        let after = try SharedLock.inspect(named: name)
        #expect(after.recoveries == 1 && TestLocks.problems(in: after).isEmpty, "\(after)")
        #expect(try second.quit() == 0)
    }

    @Test("a holder that execs holds nothing any more: reclaimed while its pid lives on")
    func holderExecs() throws {
        let name = TestLocks.uniqueName("exec")
        defer { TestLocks.cleanUp(name) }
        let holder = try HelperProcess(lock: name)
        #expect(try holder.ask("try-exclusive") == "ok exclusive died=false")
        #expect(try holder.ask("exec") == "exec")
        let waiter = try HelperProcess(lock: name)
        #expect(try waiter.ask("timed-exclusive 5000") == "ok exclusive died=true")
        #expect(kill(holder.pid, 0) == 0, "the exec'd process is still running")
        #expect(try waiter.ask("release-exclusive") == "released")
        #expect(try waiter.quit() == 0)
        holder.kill9()
    }

    @Test("a holder killed after closing a second handle on the same name is reclaimed")
    func killedAfterSecondHandleClosed() throws {
        let name = TestLocks.uniqueName("two-handles")
        defer { TestLocks.cleanUp(name) }
        let holder = try HelperProcess(lock: name, ["--second-handle"])
        #expect(try holder.ask("try-exclusive") == "ok exclusive died=false")
        let waiter = try HelperProcess(lock: name)
        try waiter.begin("exclusive")
        #expect(!waiter.hasOutput(within: .milliseconds(300)), "the holder was taken for dead")
        holder.kill9()
        #expect(try waiter.readLine() == "ok exclusive died=true")
        #expect(try waiter.ask("release-exclusive") == "released")
        #expect(try waiter.quit() == 0)
    }

    @Test("two handles in this process: closing one keeps the other alive, and inspect closes nothing it must not")
    func twoHandlesInOneProcess() throws {
        let name = TestLocks.uniqueName("in-process")
        defer { TestLocks.cleanUp(name) }
        let keeper = try SharedLock(named: name)
        do {
            let other = try SharedLock(named: name)
            other.withShared {}
        }
        _ = try SharedLock.inspect(named: name)
        keeper.lockExclusive()
        let waiter = try HelperProcess(lock: name)
        #expect(try waiter.ask("timed-exclusive 300") == "timeout", "this process was taken for dead")
        #expect(keeper.snapshot()!.holders.filter(\.isAlive).count == 2)
        keeper.unlockExclusive()
        #expect(try waiter.ask("timed-exclusive 5000") == "ok exclusive died=false")
        #expect(try waiter.quit() == 0)
    }

    @Test("fork children hold none of their parent's liveness: a parent's hold keeps a child out, a child's death is reclaimed")
    func forkChildren() async {
        await #expect(processExitsWith: .success) { synchronously {
            let lock = try! SharedLock.forkShared()
            lock.lockExclusive()
            let child = Proc.forkChild {
                // The child inherited the memfd but not the parent's record lock: it must
                // still see the parent as alive.
                (try? lock.lockExclusive(timeout: .milliseconds(300))) == nil ? nil : "got in beside the parent"
            }
            Proc.expectChildSucceeded(child)
            lock.unlockExclusive()

            var ready: [Int32] = [0, 0]
            guard pipe(&ready) == 0 else { Proc.fail("pipe") }
            let victim = fork()
            if victim == 0 {
                lock.lockExclusive()
                var byte: UInt8 = 1
                _ = write(ready[1], &byte, 1)
                while true { pause() }
            }
            var byte: UInt8 = 0
            guard read(ready[0], &byte, 1) == 1 else { Proc.fail("the victim did not report its hold") }
            kill(victim, SIGKILL)
            _ = Proc.reap(victim)
            do {
                try lock.lockExclusive(timeout: .seconds(5))
            } catch {
                Proc.fail("the dead child's hold was not reclaimed: \(error)")
            }
            if !lock.previousHolderDied { Proc.fail("previousHolderDied is false after the child died holding") }
            lock.unlockExclusive()
            Proc.checkIdle(lock)
        } }
    }

    @Test("a header overwritten after open is never followed: the lock goes on, a table walk traps naming the lock")
    func headerOverwritten() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let name = TestLocks.uniqueName("tamper")
            let lock = try! SharedLock(named: name)
            // Another process raises the capacity field far past the mapping.
            let writer = Proc.forkChild {
                let fd = shm_open("/interlock." + name, O_RDWR, 0)
                var capacity = UInt32(4000)
                return fd >= 0 && pwrite(fd, &capacity, 4, 24) == 4 ? nil : "could not write the header"
            }
            Proc.expectChildSucceeded(writer)
            lock.withExclusive {}  // the hot paths never read the header
            lock.withShared {}
            TestLocks.cleanUp(name)
            _ = lock.snapshot()  // walks the table: must trap, not read past the mapping
            Proc.fail("snapshot() of a tampered segment returned")
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.contains("overwritten") && stderr.contains("capacity 64 became 4000"), "\(stderr)")
    }
}

@Suite("Recovery when nobody can register, or nobody waits", .serialized, .timeLimit(.minutes(2)))
struct RecoveryEdgeTests {
    @Test("a table full of dead holders is recovered by the next process (capacity 1 and 2)", arguments: [1, 2])
    func fullOfDeadHolders(capacity: Int) throws {
        let name = TestLocks.uniqueName("full-dead")
        defer { TestLocks.cleanUp(name) }
        var victims: [HelperProcess] = []
        for index in 0..<capacity {
            let victim = try HelperProcess(lock: name, ["--capacity", String(capacity)])
            #expect(try victim.ask(capacity == 1 ? "try-exclusive" : "try-shared")
                    == (capacity == 1 ? "ok exclusive died=false" : "ok shared"), "victim \(index)")
            victims.append(victim)
        }
        for victim in victims { victim.kill9() }
        let next = try HelperProcess(lock: name)  // registers: the guest recovery freed an entry
        #expect(try next.ask("timed-exclusive 5000") == "ok exclusive died=\(capacity == 1)")
        #expect(try next.ask("release-exclusive") == "released")
        let after = try SharedLock.inspect(named: name)
        #expect(after.recoveries == capacity && TestLocks.problems(in: after).isEmpty, "\(after)")
        #expect(try next.quit() == 0)
    }

    @Test("a process that only polls (try, or timeouts shorter than a scan) still reclaims a dead holder")
    func pollingReclaims() throws {
        for form in ["try-exclusive", "timed-exclusive 1", "try-shared"] {
            let name = TestLocks.uniqueName("poll")
            defer { TestLocks.cleanUp(name) }
            let victim = try HelperProcess(lock: name)
            #expect(try victim.ask("try-exclusive") == "ok exclusive died=false")
            let poller = try HelperProcess(lock: name)
            victim.kill9()
            let deadline = ContinuousClock.now + .seconds(5)
            var answer = ""
            while ContinuousClock.now < deadline {
                answer = try poller.ask(form)
                if answer.hasPrefix("ok") { break }
                var pause = timespec(tv_sec: 0, tv_nsec: 1_000_000)
                nanosleep(&pause, nil)
            }
            #expect(answer.hasPrefix("ok"), "\(form): never got in after the holder died (last answer \(answer))")
            #expect(try poller.quit() == 0)
        }
    }

    /// Runs in an exit test: it counts the whole process's descriptors, which tests running
    /// in parallel in the runner's process would change meanwhile.
    @Test("inspecting a lock this process uses, or opening and dropping handles, leaks no descriptor")
    func noDescriptorLeak() async {
        let name = TestLocks.uniqueName("fds")
        defer { TestLocks.cleanUp(name) }
        await #expect(processExitsWith: .success) { [name = name as String] in
            let keeper = try! SharedLock(named: name)
            keeper.withShared {}
            let before = openDescriptorCount()
            for _ in 0..<200 {
                _ = try! SharedLock.inspect(named: name)
                try! SharedLock(named: name).withShared {}
            }
            let after = openDescriptorCount()
            if before < 1 { Proc.fail("the keeper's lock file descriptor was not counted") }
            if after != before { Proc.fail("descriptors grew from \(before) to \(after)") }
            keeper.withExclusive {}
            exit(0)
        }
    }

    @Test("another program's record lock on the lock file is reported, never taken for holders")
    func foreignRecordLock() async {
        await #expect(processExitsWith: .success) {
            let dir = try! TemporaryDirectory()
            let path = dir.file("foreign.lock")
            try! SharedLock(path: path).withShared {}
            var ready: [Int32] = [0, 0]
            guard pipe(&ready) == 0 else { Proc.fail("pipe") }
            let foreign = fork()
            if foreign == 0 {
                // What a careless tool does: lock the whole file for reading.
                let fd = open(path, O_RDONLY)
                var lock = flock()
                lock.l_type = Int16(F_RDLCK)
                lock.l_whence = Int16(SEEK_SET)
                guard fd >= 0, fcntl(fd, F_SETLK, &lock) == 0 else { Proc.childFail("could not lock") }
                var byte: UInt8 = 1
                _ = write(ready[1], &byte, 1)
                while true { pause() }
            }
            var byte: UInt8 = 0
            guard read(ready[0], &byte, 1) == 1 else { Proc.fail("the foreign locker did not start") }
            defer { kill(foreign, SIGKILL); _ = Proc.reap(foreign) }
            let error = TestLocks.error { _ = try SharedLock(path: path) }
            guard case .foreignRecordLock(let name, let pid)? = error, name == path, pid == foreign else {
                Proc.fail("expected foreignRecordLock(\(path), \(foreign)), got \(String(describing: error))")
            }
        }
    }
}

@Suite("Thread identity", .timeLimit(.minutes(1)))
struct ThreadIdentityTests {
    /// Runs `body(lock)` on a new thread and joins it. glibc reuses the stack, and with it
    /// the `pthread_self()` value, of a joined thread for the next one.
    static func onNewThread(_ lock: SharedLock, _ body: @convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer?) -> pthread_t {
        var thread = pthread_t()
        _ = pthread_create(&thread, nil, body, Unmanaged.passUnretained(lock).toOpaque())
        _ = pthread_join(thread, nil)
        return thread
    }

    @Test("a thread that exited holding exclusive mode does not let its successor release it")
    func successorCannotRelease() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let lock = SharedLock()
            let first = ThreadIdentityTests.onNewThread(lock) { p in
                Unmanaged<SharedLock>.fromOpaque(p!).takeUnretainedValue().lockExclusive()
                return nil
            }
            let second = ThreadIdentityTests.onNewThread(lock) { p in
                Unmanaged<SharedLock>.fromOpaque(p!).takeUnretainedValue().unlockExclusive()
                return nil
            }
            Proc.writeError("same pthread_t: \(first == second)")
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.contains("does not hold this lock in exclusive mode"), "\(stderr)")
    }
}

/// The number of descriptors this process has open (entries of /proc/self/fd, counting the
/// one that lists them, and `.` and `..`).
/// The number of this process's descriptors open on lock files.
func openDescriptorCount() -> Int {
    guard let dir = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(dir) }
    var n = 0
    while let entry = readdir(dir) {
        // Only descriptors of lock files (shared-memory objects, memfds, lock files):
        // the test runtime of an exit-test process may open a pipe or socket meanwhile.
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard Int32(name) != nil else { continue }
        var target = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/fd/" + name, &target, target.count - 1)
        guard length > 0 else { continue }
        let link = String(decoding: target[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if link.contains("interlock") || link.contains(".lock") || link.hasPrefix("/memfd:") { n += 1 }
    }
    return n
}
