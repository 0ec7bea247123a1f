// Shared values (issue 11): `SharedLocked` and `SharedLockedArray` in process scopes —
// values seen by later openers, InlineArray and run-time-sized arrays, layout mismatch,
// size limits, throwing writers, and the IfAvailable / timeout forms. Tests that fork are
// in SharedValueProcessTests.swift.

import Interlock
import Testing

#if canImport(Glibc)
import Glibc
#endif

private struct Pair: BitwiseCopyable, Equatable {
    var a: Int
    var b: Int
}

private struct Empty: BitwiseCopyable {}

private struct Failure: Error {}

@Suite("Shared values in process scopes", .timeLimit(.minutes(1)))
struct SharedValueTests {
    @Test func namedValueIsSeenByALaterOpener() throws {
        let name = TestLocks.uniqueName("value")
        defer { TestLocks.cleanUp(name) }
        do {
            let first = try SharedLocked(named: name, initialValue: Pair(a: 1, b: 1))
            #expect(first.scope == .named(name))
            let second = try SharedLocked(named: name, initialValue: Pair(a: 9, b: 9))  // opener: initial value unused
            #expect(second.withShared { $0 } == Pair(a: 1, b: 1))
            first.withExclusive { $0.a = 42; $0.b = 43 }
            #expect(second.withShared { $0 } == Pair(a: 42, b: 43))
        }
        // Every handle is gone; the segment stays, and a new opener sees the value.
        let later = try SharedLocked(named: name, initialValue: Pair(a: 0, b: 0))
        #expect(later.withShared { $0 } == Pair(a: 42, b: 43))
        // A plain SharedLock opens the same lock (ignoring the value), and inspect works.
        let plain = try SharedLock(named: name)
        plain.withExclusive {}
        let snapshot = try SharedLock.inspect(named: name)
        #expect(snapshot.segmentSize > 128 + 64 * 65)
        #expect(TestLocks.problems(in: snapshot) == [])
    }

    @Test func pathValueIsSeenByALaterOpenerAndRemoved() throws {
        let path = "/tmp/interlock-test-\(getpid())-\(TestLocks.uniqueName("v")).lock"
        defer { try? SharedLock.remove(path: path, force: true) }
        do {
            let array = try SharedLockedArray<Double>(path: path, count: 1000, repeating: 0.5)
            array.withExclusive { values, died in
                #expect(!died)
                for i in 0..<values.count { values[i] = Double(i) }
            }
        }
        do {
            let again = try SharedLockedArray<Double>(path: path, count: 1000, repeating: 0)
            #expect(again.withShared { span in (0..<span.count).reduce(0) { $0 + span[$1] } } == 499_500)
            #expect(again.mode == .crashAtomic && again.count == 1000)
        }
        try SharedLock.remove(path: path)  // still recognised as a lock file, at its larger size
        #expect(throws: InterlockError.notFound(name: path)) { try SharedLock.inspect(path: path) }
    }

    @Test func pathValueOfAStruct() throws {
        let path = "/tmp/interlock-test-\(getpid())-\(TestLocks.uniqueName("s")).lock"
        defer { try? SharedLock.remove(path: path, force: true) }
        do {
            let value = try SharedLocked(path: path, initialValue: Pair(a: 1, b: 2))
            #expect(value.scope == .path(path))
            value.withExclusive { $0.a += 10 }
            #expect(value.snapshot()?.capacity == 64)
        }
        var tagged = NamedLockOptions()
        tagged.layoutTag = 3
        let error = TestLocks.error { _ = try SharedLocked(path: path, initialValue: Pair(a: 0, b: 0), options: tagged) }
        guard case .incompatibleSegment(_, let why)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(why.contains("layout tag is 0 but this program expects 3"))
        let again = try SharedLocked(path: path, initialValue: Pair(a: 0, b: 0))
        #expect(again.withShared { $0 } == Pair(a: 11, b: 2))
    }

    @Test func inlineArrayValue() throws {
        let name = TestLocks.uniqueName("inline")
        defer { TestLocks.cleanUp(name) }
        let forked = try SharedLocked.forkShared(InlineArray<8, Int>(repeating: 1))
        #expect(forked.scope == .forkShared)
        forked.withExclusive { for i in $0.indices { $0[i] = i * i } }
        #expect(forked.withShared { v in v.indices.map { v[$0] } } == [0, 1, 4, 9, 16, 25, 36, 49])

        let named = try SharedLocked(named: name, initialValue: InlineArray<4, UInt8>(repeating: 7))
        named.withExclusive { $0[3] = 9 }
        let reopened = try SharedLocked(named: name, initialValue: InlineArray<4, UInt8>(repeating: 0))
        #expect(reopened.withShared { v in v.indices.map { v[$0] } } == [7, 7, 7, 9])
    }

    @Test(arguments: [SharedValueMode.crashAtomic, .inPlace])
    func runTimeSizedArray(mode: SharedValueMode) throws {
        let name = TestLocks.uniqueName("array")
        defer { TestLocks.cleanUp(name) }
        let a = try SharedLockedArray<Int32>.forkShared(count: 5000, repeating: 3, mode: mode)
        a.withExclusive { values, _ in values[4999] = 4 }
        #expect(a.withShared { $0[0] + $0[4999] } == 7)
        #expect(a.count == 5000 && a.mode == mode && a.scope == .forkShared)

        let b = try SharedLockedArray<Int32>(named: name, count: 3, repeating: -1, mode: mode)
        b.withExclusive { values, _ in values[1] = 1 }
        let c = try SharedLockedArray<Int32>(named: name, count: 3, repeating: 0, mode: mode)
        #expect(c.withShared { [$0[0], $0[1], $0[2]] } == [-1, 1, -1])

        let threads = try SharedLockedArray<UInt64>(count: 16, repeating: 2)
        #expect(threads.scope == .threads && threads.mode == .inPlace && threads.snapshot() == nil)
        threads.withExclusive { values, died in
            #expect(!died)
            values[15] = 5
        }
        #expect(threads.withShared { $0[14] + $0[15] } == 7)
    }

    /// Opening with another layout is `incompatibleSegment` naming the field, and changes
    /// nothing: the value and the lock stay as they were.
    @Test func layoutMismatchIsRefusedAndChangesNothing() throws {
        let name = TestLocks.uniqueName("layout")
        defer { TestLocks.cleanUp(name) }
        let original = try SharedLocked(named: name, initialValue: Pair(a: 5, b: 6))
        let before = try SharedLock.inspect(named: name)
        func reason(_ body: () throws -> Void) -> String {
            guard case .incompatibleSegment(let n, let reason)? = TestLocks.error(of: body), n == name else { return "no error" }
            return reason
        }
        #expect(reason { _ = try SharedLocked<Int>(named: name, initialValue: 0) }.contains("element stride"))
        #expect(reason { _ = try SharedLocked<(Int32, Int32, Int32, Int32)>(named: name, initialValue: (0, 0, 0, 0)) }
            .contains("element alignment"))
        var tagged = NamedLockOptions()
        tagged.layoutTag = 1
        #expect(reason { _ = try SharedLocked(named: name, initialValue: Pair(a: 0, b: 0), options: tagged) }.contains("layout tag"))
        #expect(reason { _ = try SharedLockedArray<Pair>(named: name, count: 2, repeating: Pair(a: 0, b: 0)) }.contains("element count"))
        #expect(reason { _ = try SharedLockedArray<Pair>(named: name, count: 1, repeating: Pair(a: 0, b: 0), mode: .inPlace) }
            .contains("mode"))
        // The same layout opens (a one-element crash-atomic array is a SharedLocked).
        let asArray = try SharedLockedArray<Pair>(named: name, count: 1, repeating: Pair(a: 0, b: 0))
        #expect(asArray.withShared { $0[0] } == Pair(a: 5, b: 6))

        // A lock made without a value cannot be opened as one.
        let plainName = TestLocks.uniqueName("plain")
        defer { TestLocks.cleanUp(plainName) }
        _ = try SharedLock(named: plainName)
        let error = TestLocks.error { _ = try SharedLocked(named: plainName, initialValue: 1) }
        guard case .incompatibleSegment(_, let why)? = error else { Issue.record("expected incompatibleSegment, got \(String(describing: error))"); return }
        #expect(why.contains("holds no shared value"))

        #expect(original.withShared { $0 } == Pair(a: 5, b: 6))
        let after = try SharedLock.inspect(named: name)
        #expect(after.segmentSize == before.segmentSize && after.stateWord == before.stateWord)
    }

    @Test func sizeLimitsAreTypedErrors() throws {
        func invalid(_ body: () throws -> Void) -> String? {
            guard case .invalidSharedValue(let reason)? = TestLocks.error(of: body) else { return nil }
            return reason
        }
        #expect(invalid { _ = try SharedLockedArray<Int>.forkShared(count: 0, repeating: 0) }?.contains("count is 0") == true)
        #expect(invalid { _ = try SharedLockedArray<Int>.forkShared(count: -1, repeating: 0) } != nil)
        #expect(invalid { _ = try SharedLockedArray<Int>.forkShared(count: Int.max, repeating: 0) }?.contains("GiB") == true)
        #expect(invalid { _ = try SharedLockedArray<Int>.forkShared(count: (1 << 27) + 1, repeating: 0) }?.contains("GiB") == true)
        #expect(invalid { _ = try SharedLockedArray<Int>(count: 0, repeating: 0) } != nil)
        #expect(invalid { _ = try SharedLocked.forkShared(Empty()) }?.contains("no bytes") == true)
        let name = TestLocks.uniqueName("huge")
        defer { TestLocks.cleanUp(name) }
        #expect(invalid { _ = try SharedLockedArray<UInt8>(named: name, count: Int.max / 2, repeating: 0) } != nil)
        #expect(TestLocks.error { _ = try SharedLock.inspect(named: name) } == .notFound(name: name))  // nothing was created
    }

    /// A header whose value fields were overwritten is refused at open.
    @Test func tamperedValueFieldsAreRefused() throws {
        let name = TestLocks.uniqueName("tamper")
        defer { TestLocks.cleanUp(name) }
        _ = try SharedLockedArray<UInt32>(named: name, count: 10, repeating: 1)
        let fd = open("/dev/shm/interlock." + name, O_RDWR)
        try #require(fd >= 0)
        var huge: UInt64 = 1 << 40
        #expect(pwrite(fd, &huge, 8, 104) == 8)  // the element count
        close(fd)
        let error = TestLocks.error { _ = try SharedLock(named: name) }
        guard case .incompatibleSegment(_, let why)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(why.contains("shared value"))
    }

    @Test(arguments: ["forkShared", "threads"])
    func throwingWriterCommitsNothing(scope: String) throws {
        let value = scope == "threads" ? SharedLocked(Pair(a: 1, b: 1)) : try SharedLocked.forkShared(Pair(a: 1, b: 1))
        #expect(throws: Failure.self) { try value.withExclusive { v in v.a = 7; throw Failure() } }
        // Process scopes commit nothing; the threads scope writes in place (documented).
        #expect(value.withShared { $0.a } == (scope == "threads" ? 7 : 1))

        let atomic = try SharedLockedArray<Int>.forkShared(count: 4, repeating: 0)
        #expect(throws: Failure.self) { try atomic.withExclusive { v, _ in v[0] = 7; throw Failure() } }
        #expect(atomic.withShared { $0[0] } == 0)
        let inPlace = try SharedLockedArray<Int>.forkShared(count: 4, repeating: 0, mode: .inPlace)
        #expect(throws: Failure.self) { try inPlace.withExclusive { v, _ in v[0] = 7; throw Failure() } }
        #expect(inPlace.withShared { $0[0] } == 7)
    }

    /// The IfAvailable and timeout forms, in the threads scope and a process scope: nil
    /// or `timedOut` while another thread holds exclusive mode, the value otherwise.
    @Test(arguments: ["threads", "forkShared"])
    func ifAvailableAndTimeoutForms(scope: String) throws {
        let value = scope == "threads" ? SharedLocked(10) : try SharedLocked.forkShared(10)
        let array = scope == "threads" ? try SharedLockedArray(count: 2, repeating: 10)
            : try SharedLockedArray<Int>.forkShared(count: 2, repeating: 10)
        #expect(value.withSharedIfAvailable { $0 } == 10)
        #expect(value.withExclusiveIfAvailable { $0 += 1; return $0 } == 11)
        #expect(try value.withShared(timeout: .seconds(1)) { $0 } == 11)
        #expect(try value.withExclusive(timeout: .seconds(1)) { $0 += 1; return $0 } == 12)
        #expect(array.withSharedIfAvailable { $0[0] } == 10)
        #expect(array.withExclusiveIfAvailable { v, _ in v[0] += 1; return v[0] } == 11)
        #expect(try array.withShared(timeout: .seconds(1)) { $0[0] } == 11)
        #expect(try array.withExclusive(timeout: .seconds(1)) { v, _ in v[1] += 1; return v[1] } == 11)

        let gate = Counters(2)
        let holder = TestThread {
            value.withExclusive { _ in
                array.withExclusive { _, _ in
                    gate.set(0, 1)
                    _ = gate.wait(for: releaseLimit) { $0[1] == 1 }
                }
            }
        }
        #expect(gate.wait { $0[0] == 1 })
        #expect(value.withSharedIfAvailable { $0 } == nil)
        #expect(value.withExclusiveIfAvailable { $0 } == nil)
        #expect(array.withSharedIfAvailable { $0[0] } == nil)
        #expect(array.withExclusiveIfAvailable { v, _ in v[0] } == nil)
        #expect(throws: InterlockError.timedOut) { try value.withShared(timeout: .milliseconds(20)) { $0 } }
        #expect(throws: InterlockError.timedOut) { try value.withExclusive(timeout: .milliseconds(20)) { $0 } }
        #expect(throws: InterlockError.timedOut) { try array.withShared(timeout: .milliseconds(20)) { $0[0] } }
        #expect(throws: InterlockError.timedOut) { try array.withExclusive(timeout: .milliseconds(20)) { v, _ in v[0] } }
        gate.set(1, 1)
        holder.join()
        #expect(value.withShared { $0 } == 12)
        #expect(!value.withExclusive { _ in value.previousWriterDied })
    }
}
