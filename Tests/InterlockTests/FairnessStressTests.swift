// Fair both ways (issue 10): a stream of writers does not starve a reader, and a stream
// of overlapping readers does not starve a writer — across processes and across threads.
//
// Count-based, never timed: the victim (one reader, or one writer) must complete a fixed
// number of acquisitions while three flooders (writers holding about 10 µs back to
// back, or readers whose holds overlap) keep going until it is done. Each acquisition
// has a generous bound (30 s) only so that a starving victim fails instead of hanging
// (the writer-preferring protocol before layout 3 gave such a reader about 11
// acquisitions in 20 s). Every hold checks the mode invariants.
//
// Process bodies run in exit tests (the safe place to fork) and use one thread per
// process, so they also run under ThreadSanitizer.

import Interlock
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Counters in anonymous MAP_SHARED memory, seen by forked children.
struct FloodCounters: @unchecked Sendable {
    // Sendable: atomics in shared memory, mapped once and never moved.
    let base: UnsafeMutablePointer<Atomic<Int>>
    static let count = 8
    init() {
        let size = MemoryLayout<Atomic<Int>>.stride * FloodCounters.count
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            Proc.fail("mmap: errno \(errno)")
        }
        base = p.bindMemory(to: Atomic<Int>.self, capacity: FloodCounters.count)
        for i in 0..<FloodCounters.count { (base + i).initialize(to: Atomic(0)) }
    }
    static let stop = 0, writersInside = 1, readersInside = 2, violations = 3, flooderOps = 4, victimOps = 5, timeouts = 6
    subscript(_ i: Int) -> Int { base[i].load(ordering: .sequentiallyConsistent) }
    @discardableResult func add(_ i: Int, _ d: Int = 1) -> Int { base[i].wrappingAdd(d, ordering: .sequentiallyConsistent).newValue }
    func set(_ i: Int, _ v: Int) { base[i].store(v, ordering: .sequentiallyConsistent) }
}

enum Flood {
    /// Victim acquisitions asked for.
    static let victimAcquisitions = 100
    /// Bounds on one victim acquisition, and on all of them: only so that starvation
    /// fails instead of hanging (a passing run takes a fraction of a second).
    static let bound: Duration = .seconds(30)
    static let totalBound: Duration = .seconds(60)

    /// Busy-waits about `nanoseconds` on the monotonic clock (the "work" of a hold).
    static func spin(nanoseconds: Int64) {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        let end = Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec) + nanoseconds
        repeat { clock_gettime(CLOCK_MONOTONIC, &t) } while Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec) < end
    }

    static func writeSection(_ c: FloodCounters, nanoseconds: Int64) {
        if c.add(FloodCounters.writersInside) != 1 || c[FloodCounters.readersInside] != 0 { c.add(FloodCounters.violations) }
        spin(nanoseconds: nanoseconds)
        if c[FloodCounters.readersInside] != 0 { c.add(FloodCounters.violations) }
        c.add(FloodCounters.writersInside, -1)
    }

    static func readSection(_ c: FloodCounters, nanoseconds: Int64) {
        c.add(FloodCounters.readersInside)
        if c[FloodCounters.writersInside] != 0 { c.add(FloodCounters.violations) }
        spin(nanoseconds: nanoseconds)
        if c[FloodCounters.writersInside] != 0 { c.add(FloodCounters.violations) }
        c.add(FloodCounters.readersInside, -1)
    }

    /// A flooder: writers hold 10 µs back to back; readers hold 30 µs, so that three of
    /// them overlap and the reader count would never drop to zero by itself.
    static func flood(_ lock: SharedLock, _ c: FloodCounters, writers: Bool) {
        while c[FloodCounters.stop] == 0 {
            if writers {
                lock.withExclusive { writeSection(c, nanoseconds: 10_000) }
            } else {
                lock.withShared { readSection(c, nanoseconds: 30_000) }
            }
            c.add(FloodCounters.flooderOps)
        }
    }

    /// The victim: `victimAcquisitions` of the other mode, each bounded, and each only
    /// once the flooders made 3 more holds since the last one (so that every acquisition
    /// competes with a flood that is on, whatever the scheduler does). Returns problems.
    static func victim(_ lock: SharedLock, _ c: FloodCounters, reader: Bool) -> [String] {
        var problems: [String] = []
        let deadline = ContinuousClock.now + totalBound
        for _ in 0..<victimAcquisitions {
            let seen = c[FloodCounters.flooderOps]
            if !Proc.spin(until: { c[FloodCounters.flooderOps] >= seen + 3 }) {
                problems.append("the flooders stopped making progress")
                break
            }
            do {
                if reader {
                    try lock.withShared(timeout: bound) { readSection(c, nanoseconds: 1_000) }
                } else {
                    try lock.withExclusive(timeout: bound) { writeSection(c, nanoseconds: 1_000) }
                }
                c.add(FloodCounters.victimOps)
            } catch {
                c.add(FloodCounters.timeouts)
                break
            }
            if ContinuousClock.now > deadline { break }
        }
        c.set(FloodCounters.stop, 1)
        let done = c[FloodCounters.victimOps]
        if done != victimAcquisitions {
            problems.append("the \(reader ? "reader" : "writer") starved: \(done) of \(victimAcquisitions) acquisitions "
                + "(\(c[FloodCounters.timeouts]) waited \(bound); the bound for all is \(totalBound))")
        }
        return problems
    }

    static func check(_ c: FloodCounters, _ problems: [String]) -> [String] {
        var problems = problems
        if c[FloodCounters.violations] != 0 { problems.append("\(c[FloodCounters.violations]) holds saw a writer together with someone else") }
        return problems
    }

    /// Three flooder processes and a victim process on a `forkShared` lock.
    static func runProcesses(victimReads: Bool) -> Never {
        let lock: SharedLock
        do { lock = try SharedLock.forkShared(capacity: 8) } catch { Proc.fail("forkShared: \(error)") }
        let c = FloodCounters()
        let flooders = (0..<3).map { _ in
            Proc.forkChild { flood(lock, c, writers: victimReads); return nil }
        }
        let problems = victim(lock, c, reader: victimReads)
        for pid in flooders { Proc.expectChildSucceeded(pid) }
        let all = check(c, problems)
        if !all.isEmpty { Proc.fail(all.joined(separator: "; ")) }
        Proc.checkIdle(lock)
        exit(0)
    }
}

@Suite("Fair both ways under floods", .serialized, .timeLimit(.minutes(3)))
struct FairnessStressTests {
    @Test("a reader process makes progress while three writer processes hold back to back")
    func readerUnderWriterProcesses() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            Flood.runProcesses(victimReads: true)
        }
        if let result, result.exitStatus != .exitCode(0) {
            Issue.record("\(String(decoding: result.standardErrorContent, as: UTF8.self))")
        }
    }

    @Test("a writer process makes progress while three reader processes overlap")
    func writerUnderReaderProcesses() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            Flood.runProcesses(victimReads: false)
        }
        if let result, result.exitStatus != .exitCode(0) {
            Issue.record("\(String(decoding: result.standardErrorContent, as: UTF8.self))")
        }
    }

    @Test("threads: a reader makes progress among three writers, a writer among three readers",
          arguments: [true, false])
    func threads(victimReads: Bool) {
        let lock = SharedLock()
        let c = FloodCounters()
        defer { munmap(c.base, MemoryLayout<Atomic<Int>>.stride * FloodCounters.count) }
        let flooders = ThreadGroup(3) { _ in Flood.flood(lock, c, writers: victimReads) }
        let problems = Flood.check(c, Flood.victim(lock, c, reader: victimReads))
        #expect(flooders.join(), "flooders deadlocked")
        #expect(problems == [])
    }
}

extension FairnessStressTests {
    /// Phase fairness, deterministically: a reader blocked behind a writer goes in
    /// before any other writer — even one that spins on `tryLockExclusive` right at the
    /// release, hot on another CPU while the reader still has to wake up. The reader then
    /// holds until told, so the spinner cannot get in before it has; the order is seen by
    /// which of them got in first. (Without the read turn, the spinner wins the race.)
    @Test("a reader blocked behind a writer goes in before a writer spinning on tryLockExclusive",
          arguments: ["threads", "forkShared"])
    func blockedReaderBeatsSpinningWriter(scope: String) async {
        if scope == "threads" {
            let lock = SharedLock()
            for _ in 0..<Flood.races {
                let c = FloodCounters()
                defer { munmap(c.base, MemoryLayout<Atomic<Int>>.stride * FloodCounters.count) }
                let problems = Flood.readTurnRace(lock, c, reader: { body in
                    let g = ThreadGroup(); g.spawn(body); return { g.join() }
                })
                #expect(problems == [])
                if !problems.isEmpty { break }
            }
        } else {
            await #expect(processExitsWith: .success) {
                let lock: SharedLock
                do { lock = try SharedLock.forkShared(capacity: 4) } catch { Proc.fail("forkShared: \(error)") }
                for _ in 0..<Flood.races {
                    let c = FloodCounters()
                    let problems = Flood.readTurnRace(lock, c, reader: { body in
                        let pid = Proc.forkChild { body(); return nil }
                        return { Proc.reap(pid) == 0 }
                    })
                    if !problems.isEmpty { Proc.fail(problems.joined(separator: "; ")) }
                    munmap(c.base, MemoryLayout<Atomic<Int>>.stride * FloodCounters.count)
                }
                Proc.checkIdle(lock)
                exit(0)
            }
        }
    }
}

extension Flood {
    /// Races per test case: one may go the reader's way by chance when the read turn is
    /// missing; twenty in a row do not.
    static let races = 20
    static let readerIn = 1, spinnerIn = 2, release = 3, readerTID = 4, spinning = 5
    /// The body of `blockedReaderBeatsSpinningWriter`. `reader` starts its closure on
    /// another thread or process and returns a join. Returns problems.
    static func readTurnRace(_ lock: SharedLock, _ c: FloodCounters,
                             reader: (@escaping @Sendable () -> Void) -> () -> Bool) -> [String] {
        var problems: [String] = []
        lock.lockExclusive()
        let joinReader = reader {
            c.set(readerTID, Int(currentTID()))
            lock.lockShared()
            _ = c.base[0].compareExchange(expected: 0, desired: readerIn, ordering: .sequentiallyConsistent)
            _ = Proc.spin { c[release] != 0 }
            lock.unlockShared()
        }
        _ = Proc.spin { c[readerTID] != 0 }
        // Blocked: asleep (threads), or flagged READERS_BLOCKED (bit 2) in the word (processes).
        let blocked = lock.snapshot().map { _ in Proc.spin { lock.snapshot()!.stateWord & 4 != 0 } }
            ?? waitUntilSleeping(Int32(c[readerTID]))
        if !blocked { problems.append("the reader never blocked") }
        let spinner = TestThread {
            c.set(spinning, 1)
            while !lock.tryLockExclusive() {
                if c[release] != 0 { return }
            }
            _ = c.base[0].compareExchange(expected: 0, desired: spinnerIn, ordering: .sequentiallyConsistent)
            lock.unlockExclusive()
        }
        _ = Proc.spin { c[spinning] != 0 }
        lock.unlockExclusive()
        if !Proc.spin(until: { c[0] != 0 }) { problems.append("nobody got in after the writer released") }
        if c[0] == spinnerIn { problems.append("a writer got in before the reader that waited for the previous writer") }
        c.set(release, 1)
        spinner.join()
        if !joinReader() { problems.append("the reader failed") }
        return problems
    }
}
