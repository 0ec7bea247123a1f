// Shared values between processes (issue 11), in exit tests (they fork): values across
// generations of fork children and seen by a child that opens the name itself, and
// crash atomicity — writers killed with SIGKILL at random points inside withExclusive,
// while keeping an invariant over the whole value (every word equal), which the
// survivors check after each death, and see `previousWriterDied`.

import Interlock
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The value the killed writers update: 32 words, all equal when committed.
typealias Words = InlineArray<32, UInt64>

/// Busy work between two words of a write, so that a kill lands at a random point of it.
nonisolated(unsafe) var busySink: UInt64 = 0

@inline(never)
func busyWork(_ seed: UInt64) {
    var x = seed
    for _ in 0..<200 { x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407 }
    busySink = x
}

/// Sets `started` to 1, then writes `next`, `next + 1`, … into every word, word by word,
/// until killed (or until `started` becomes 2, which no test does).
func writeForever(_ words: inout MutableSpan<UInt64>, from next: UInt64, started: UnsafeMutablePointer<Atomic<UInt32>>) {
    var n = next
    started.pointee.store(1, ordering: .releasing)
    while started.pointee.load(ordering: .relaxed) != 2 {
        for i in 0..<words.count { words[i] = n; busyWork(n &+ UInt64(i)) }
        n &+= 1
    }
}

func writeForever(_ words: inout Words, from next: UInt64, started: UnsafeMutablePointer<Atomic<UInt32>>) {
    var n = next
    started.pointee.store(1, ordering: .releasing)
    while started.pointee.load(ordering: .relaxed) != 2 {
        for i in words.indices { words[i] = n; busyWork(n &+ UInt64(i)) }
        n &+= 1
    }
}

/// One word in anonymous shared memory, for handshakes with forked children.
func sharedFlag() -> UnsafeMutablePointer<Atomic<UInt32>> {
    guard let page = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), page != MAP_FAILED else {
        Proc.fail("mmap: errno \(errno)")
    }
    return page.initializeMemory(as: Atomic<UInt32>.self, to: Atomic(0))
}

/// Kills `pid` with SIGKILL after a random pause of 0–300 µs, and reaps it.
func killAtRandomPoint(_ pid: pid_t, _ random: inout SeededRandom) {
    var pause = timespec(tv_sec: 0, tv_nsec: Int(random.next() % 300_000))
    nanosleep(&pause, nil)
    kill(pid, SIGKILL)
    if Proc.reap(pid) != 128 + SIGKILL { Proc.fail("the writer \(pid) was not killed by SIGKILL") }
}

@Suite("Shared values between processes", .serialized, .timeLimit(.minutes(3)))
struct SharedValueProcessTests {
    /// A forkShared value (and array) updated by four generations of fork children, each
    /// checking what its ancestors wrote.
    @Test func forkSharedAcrossGenerations() async {
        await #expect(processExitsWith: .success) {
            let tally = try! SharedLocked.forkShared(0)
            let trail = try! SharedLockedArray<Int>.forkShared(count: 5, repeating: -1)
            func generation(_ depth: Int) -> Int32 {
                let seen = tally.withExclusive { v -> Int in v += 1; return v }
                if seen != depth { return 10 }
                trail.withExclusive { s, _ in s[depth] = depth }
                if !trail.withShared({ s in (1...depth).allSatisfy { s[$0] == $0 } }) { return 11 }
                if depth == 4 { return 0 }
                let status = forkAndWait { generation(depth + 1) }
                // The descendants' writes are visible here.
                return status != 0 ? Int32(status) : tally.withShared { $0 } == 4 ? 0 : 12
            }
            let status = forkAndWait { generation(1) }
            if status != 0 { finish(1, "a generation failed with \(status)") }
            if tally.withShared({ $0 }) != 4 { finish(1, "the parent sees \(tally.withShared { $0 })") }
            trail.withShared { s in if s[0] != -1 || s[4] != 4 { finish(1, "trail \([s[0], s[1], s[2], s[3], s[4]])") } }
            finish(0)
        }
    }

    /// A child that opens the named value itself sees what the parent wrote, and the
    /// parent sees the child's write.
    @Test func namedValueSeenByAChildThatOpensIt() async {
        let name = TestLocks.uniqueName("value-child")
        defer { TestLocks.cleanUp(name) }
        await #expect(processExitsWith: .success) { [name = name as String] in
            let parent = try! SharedLocked(named: name, initialValue: 7)
            parent.withExclusive { $0 = 41 }
            let status = forkAndWait {
                guard let mine = try? SharedLocked(named: name, initialValue: 0) else { return 2 }
                return mine.withExclusive { v -> Int32 in
                    guard v == 41 else { return 3 }
                    v += 1
                    return 0
                }
            }
            if status != 0 { finish(1, "the child failed with \(status)") }
            finish(parent.withShared { $0 } == 42 ? 0 : 1, "the parent sees \(parent.withShared { $0 })")
        }
    }

    /// 100 writers of a forkShared `SharedLocked<InlineArray>` killed at random points
    /// inside withExclusive: after each death the survivors read every word equal to the
    /// last committed count, and the next writer sees `previousWriterDied`.
    @Test func killedWritersOfAForkSharedValue() async {
        await #expect(processExitsWith: .success) {
            alarm(150)
            let value = try! SharedLocked.forkShared(Words(repeating: 0))
            let started = sharedFlag()
            var random = SeededRandom(seed: 11)
            var committed: UInt64 = 0
            for kill in 0..<100 {
                let commits = random.next() % 3
                started.pointee.store(0, ordering: .relaxed)
                let pid = Proc.forkChild {
                    for _ in 0..<commits {
                        value.withExclusive { w in
                            let n = w[0] &+ 1
                            for i in w.indices { w[i] = n; busyWork(n) }
                        }
                    }
                    value.withExclusive { w in writeForever(&w, from: w[0] &+ 1, started: started) }
                    return nil
                }
                Proc.waitFor("writer \(kill) to start its last write") { started.pointee.load(ordering: .acquiring) == 1 }
                killAtRandomPoint(pid, &random)
                committed += commits
                let (sameInShared, first) = value.withShared { w in (w.indices.allSatisfy { w[$0] == w[0] }, w[0]) }
                if !sameInShared || first != committed { Proc.fail("kill \(kill): a reader saw a torn or wrong value (\(first), expected \(committed))") }
                value.withExclusive { w in
                    if !value.previousWriterDied { Proc.fail("kill \(kill): the next writer was not told that the writer died") }
                    if !w.indices.allSatisfy({ w[$0] == committed }) { Proc.fail("kill \(kill): the writer saw a torn value") }
                }
                if value.withExclusive({ _ in value.previousWriterDied }) { Proc.fail("previousWriterDied reported twice") }
            }
            let recoveries = value.snapshot()!.recoveries
            if recoveries != 100 { Proc.fail("\(recoveries) recoveries for 100 kills") }
            exit(0)
        }
    }

    /// 100 writers of a named crash-atomic `SharedLockedArray`, each opening the name
    /// itself, killed at random points inside withExclusive.
    @Test func killedWritersOfANamedArray() async {
        let name = TestLocks.uniqueName("value-kill")
        defer { TestLocks.cleanUp(name) }
        await #expect(processExitsWith: .success) { [name = name as String] in
            alarm(150)
            let array = try! SharedLockedArray<UInt64>(named: name, count: 64, repeating: 0)
            let started = sharedFlag()
            var random = SeededRandom(seed: 12)
            var committed: UInt64 = 0
            for kill in 0..<100 {
                let commits = random.next() % 3
                started.pointee.store(0, ordering: .relaxed)
                let pid = Proc.forkChild {
                    guard let mine = try? SharedLockedArray<UInt64>(named: name, count: 64, repeating: 0) else { return "cannot open" }
                    for _ in 0..<commits {
                        mine.withExclusive { w, _ in
                            let n = w[0] &+ 1
                            for i in 0..<w.count { w[i] = n; busyWork(n) }
                        }
                    }
                    mine.withExclusive { w, _ in writeForever(&w, from: w[0] &+ 1, started: started) }
                    return nil
                }
                Proc.waitFor("writer \(kill) to start its last write") { started.pointee.load(ordering: .acquiring) == 1 }
                killAtRandomPoint(pid, &random)
                committed += commits
                let torn = array.withShared { s in (0..<s.count).contains { s[$0] != committed } }
                if torn { Proc.fail("kill \(kill): a reader saw a torn or wrong array (expected all \(committed))") }
                array.withExclusive { w, died in
                    if !died { Proc.fail("kill \(kill): the next writer was not told that the writer died") }
                    if (0..<w.count).contains(where: { w[$0] != committed }) { Proc.fail("kill \(kill): the writer saw a torn array") }
                }
            }
            if let problems = array.snapshot().map(TestLocks.problems(in:)), !problems.isEmpty { Proc.fail("\(problems)") }
            exit(0)
        }
    }

    /// Forks a writer of `array` that writes its first half, then kills it there (in an
    /// exit test's process).
    static func killWriterHalfway(_ array: SharedLockedArray<UInt64>) {
        let started = sharedFlag()
        let pid = Proc.forkChild {
            array.withExclusive { w, _ in
                for i in 0..<w.count / 2 { w[i] = 1 }
                started.pointee.store(1, ordering: .releasing)
                while true { pause() }
            }
        }
        Proc.waitFor("the writer to tear the array") { started.pointee.load(ordering: .acquiring) == 1 }
        kill(pid, SIGKILL)
        _ = Proc.reap(pid)
    }

    /// An in-place array torn by a killed writer: readers may see the tear, and the next
    /// writer's closure is told so that it can repair.
    @Test func inPlaceArrayTornByAKilledWriterIsReported() async {
        await #expect(processExitsWith: .success) {
            alarm(30)
            let array = try! SharedLockedArray<UInt64>.forkShared(count: 64, repeating: 0, mode: .inPlace)
            SharedValueProcessTests.killWriterHalfway(array)
            if !array.withShared({ s in s[0] == 1 && s[63] == 0 }) { Proc.fail("expected the torn array in place") }
            array.withExclusive { w, died in
                if !died { Proc.fail("the next writer was not told that the writer died") }
                for i in 0..<w.count { w[i] = 1 }  // repair
            }
            array.withExclusive { _, died in if died { Proc.fail("previousWriterDied reported twice") } }
            exit(0)
        }
    }

    /// The death notice belongs to the value, not to the lock: a plain `SharedLock` on the
    /// same name taking the lock in between (and being told `previousHolderDied`) leaves it
    /// for the array's next writer.
    @Test func plainLockInBetweenDoesNotSwallowTheNotice() async {
        await #expect(processExitsWith: .success) {
            alarm(30)
            let name = TestLocks.uniqueName("notice")
            let array = try! SharedLockedArray<UInt64>(named: name, count: 64, repeating: 0, mode: .inPlace)
            SharedValueProcessTests.killWriterHalfway(array)
            let plain = try! SharedLock(named: name)
            plain.withExclusive { if !plain.previousHolderDied { Proc.fail("the plain lock was not told") } }
            array.withExclusive { _, died in if !died { Proc.fail("the array's next writer was not told") } }
            array.withExclusive { _, died in if died { Proc.fail("told twice") } }
            TestLocks.cleanUp(name)
            exit(0)
        }
    }

    /// Threads scope: a child forked while another parent thread was writing the array
    /// tells its first writer (`previousWriterDied`), once.
    @Test func threadsScopeArrayTornByForkIsReported() async {
        await #expect(processExitsWith: .success) {
            alarm(30)
            let array = try! SharedLockedArray<Int>(count: 8, repeating: 0)
            let parking = Parking()
            let writer = TestThread {
                array.withExclusive { w, _ in
                    w[0] = 1  // torn: w[1] not yet
                    parking.park()
                    w[1] = 1
                }
            }
            if !parking.waitParked() { finish(1, "the writer never started") }
            let status = forkAndWait {
                let first = array.withExclusive { w, died in died && w[0] == 1 && w[1] == 0 }
                let second = array.withExclusive { _, died in died }
                return first && !second ? 0 : 1
            }
            parking.release()
            writer.join()
            if array.withExclusive({ _, died in died }) { finish(1, "the parent was told of a death") }
            finish(status, "the child's first writer was not told exactly once")
        }
    }

    /// A fork child that returns from the closure its parent was running in `withExclusive`
    /// does not commit: only the parent could, and this parent's closure throws.
    @Test func forkInsideAProcessScopedWriteCommitsOnlyInTheParent() async {
        await #expect(processExitsWith: .success) {
            struct Abandon: Error {}
            alarm(30)
            let value = try! SharedLocked.forkShared(0)
            var pid: pid_t = -1
            do {
                try value.withExclusive { v in
                    v = 5
                    pid = fork()
                    if pid == 0 { v = 7; return }  // the child returns from the closure
                    if Proc.reap(pid) != 0 { finish(1, "the child failed") }
                    throw Abandon()  // the parent commits nothing
                }
            } catch {}
            if pid == 0 { _exit(0) }
            finish(value.withShared { $0 } == 0 ? 0 : 1, "the value is \(value.withShared { $0 }): the child committed")
        }
    }

    /// Making and dropping shared values in every scope, and failed opens (another
    /// layout), leak no descriptor. (An exit test: it counts the process's descriptors.)
    @Test func noDescriptorLeak() async {
        let name = TestLocks.uniqueName("value-fds")
        defer { TestLocks.cleanUp(name) }
        await #expect(processExitsWith: .success) { [name = name as String] in
            let path = "/tmp/interlock-test-\(getpid())-fds.lock"
            let keeper = try! SharedLocked(named: name, initialValue: 1)
            let before = openDescriptorCount()
            for _ in 0..<100 {
                try! SharedLocked.forkShared(2).withExclusive { $0 += 1 }
                try! SharedLocked(named: name, initialValue: 0).withExclusive { $0 += 1 }
                _ = try? SharedLocked<Int32>(named: name, initialValue: 0)  // incompatible
                try! SharedLockedArray<UInt8>(path: path, count: 10, repeating: 0).withExclusive { v, _ in v[0] &+= 1 }
                _ = try? SharedLockedArray<UInt8>(path: path, count: 11, repeating: 0)  // incompatible
                _ = try! SharedLockedArray<UInt8>(count: 10, repeating: 0)
            }
            let after = openDescriptorCount()
            if before < 1 { Proc.fail("the keeper's lock file descriptor was not counted") }
            if after != before { Proc.fail("descriptors grew from \(before) to \(after)") }
            try? SharedLock.remove(path: path, force: true)  // before exit: `exit` runs no `defer`
            if keeper.withShared({ $0 }) != 101 { Proc.fail("the value is \(keeper.withShared { $0 })") }
            exit(0)
        }
    }
}
