// SharedLocked: a value reachable only under its lock.

import Synchronization
import Testing
import Interlock

#if canImport(Glibc)
import Glibc
#endif

@Suite("SharedLocked", .serialized, .timeLimit(.minutes(1)))
struct SharedLockedTests {
    @Test("values written under exclusive mode are seen by later readers, on any thread")
    func writesAreVisibleToLaterReaders() {
        let config = SharedLocked(["mode": "fast"])
        #expect(config.withShared { $0["mode"] } == "fast")
        config.withExclusive { $0["mode"] = "safe" }
        #expect(config.withShared { $0["mode"] } == "safe")
        #expect(onThread { config.withShared { $0["mode"] } == "safe" })

        // Written on one thread, read on others.
        #expect(onThread {
            config.withExclusive { $0["written-by"] = "other thread"; $0["mode"] = nil }
            return true
        })
        #expect(config.withShared { $0 } == ["written-by": "other thread"])
        let readers = Counters(1)
        let threads = ThreadGroup(4) { _ in
            if config.withShared({ $0["written-by"] }) == "other thread" { readers.add(0) }
        }
        #expect(threads.join(), "readers deadlocked")
        #expect(readers[0] == 4)
    }

    @Test("8 threads x 10 000 increments: none is lost, and readers never see a torn value")
    func concurrentIncrementsAreNeverLost() {
        struct Pair { var a = 0; var b = 0 }  // written together; readers check a == b
        let value = SharedLocked(Pair())
        let threadCount = 8, increments = 10_000
        let c = Counters()  // 0: torn reads, 1: reads, 2: writers done
        let writers = ThreadGroup(threadCount) { _ in
            for _ in 0..<increments {
                value.withExclusive { pair in
                    pair.a += 1
                    pair.b = pair.a
                }
            }
            c.add(2)
        }
        let readers = ThreadGroup(2) { _ in
            repeat {
                value.withShared { pair in
                    if pair.a != pair.b { c.add(0) }
                }
                c.add(1)
            } while c[2] < threadCount
        }
        #expect(writers.join(), "writers deadlocked")
        #expect(readers.join(), "readers deadlocked")
        let total = value.withShared { $0.a }
        #expect(total == threadCount * increments, "lost \(threadCount * increments - total) increments")
        #expect(value.withShared { $0.b } == threadCount * increments)
        #expect(c[0] == 0, "readers saw \(c[0]) half-written values")
        #expect(c[1] > 0)
    }

    @Test("a body's error passes through, and the value stays usable")
    func errorsPassThrough() {
        struct Refused: Error, Equatable {}
        let value = SharedLocked([1, 2, 3])
        #expect(throws: Refused()) {
            try value.withExclusive { (numbers: inout [Int]) throws(Refused) in
                numbers.append(4)
                throw Refused()
            }
        }
        // What the body changed before throwing stays (inout), and the lock was released.
        #expect(value.withShared { $0 } == [1, 2, 3, 4])
        #expect(throws: Refused()) { try value.withShared { (_: borrowing [Int]) throws(Refused) in throw Refused() } }
        #expect(onThread { value.withExclusive { $0.removeAll(); return true } })
        #expect(value.withShared { $0.isEmpty })
    }

    @Test("readers share the value at once")
    func readersOverlap() {
        let value = SharedLocked(7)
        let c = Counters()  // 0: inside, 1: saw everyone
        let readerCount = 4
        let threads = ThreadGroup(readerCount) { _ in
            value.withShared { v in
                c.add(0)
                if c.wait(until: { $0[0] == readerCount }), v == 7 { c.add(1) }
            }
        }
        #expect(threads.join(), "readers deadlocked")
        #expect(c[1] == readerCount)
    }
}
