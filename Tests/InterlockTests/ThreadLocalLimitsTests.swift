// ThreadLocal's limits (issue 14 item 7): fast slots of destroyed instances are reused,
// other threads' values are destroyed with their ThreadLocal, and any number of
// ThreadLocals may exist (no pthread key per instance).

@testable import Interlock
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Counts deinitialisations.
private final class Counted: Sendable {
    let deaths: Counters
    let id: Int
    init(_ id: Int, deaths: Counters) {
        self.id = id
        self.deaths = deaths
    }
    deinit { deaths.add(0) }
}

@Suite("ThreadLocal limits", .serialized, .timeLimit(.minutes(1)))
struct ThreadLocalLimitsTests {
    /// After many ThreadLocals have come and gone, a new one still gets a fast slot (it used
    /// to fall to the slow path for good once 64 had ever existed).
    @Test func fastSlotsAreReused() {
        for round in 0..<200 {
            let local = ThreadLocal { round }
            #expect(local.fastIndex >= 0, "round \(round): no fast slot")
            #expect(local.value == round)
        }
    }

    /// A thread that used a destroyed instance's fast slot never sees its value through
    /// the next instance that gets the slot.
    @Test func aReusedSlotNeverShowsTheOldValue() {
        let progress = Counters(2)  // 0: round the main thread set up, 1: rounds checked wrong
        let rounds = 100
        final class Box: @unchecked Sendable { var local: ThreadLocal<Int>? }
        let box = Box()
        let worker = TestThread {
            for round in 0..<rounds {
                _ = progress.wait(for: releaseLimit) { $0[0] == round + 1 }
                if box.local!.value != round { _ = progress.add(1) }
                box.local!.value = -1  // leave a value behind in this slot
                progress.set(0, -(round + 1))  // done with this round
            }
        }
        for round in 0..<rounds {
            box.local = ThreadLocal { round }  // the previous one is destroyed here
            progress.set(0, round + 1)
            _ = progress.wait(for: releaseLimit) { $0[0] == -(round + 1) }
        }
        worker.join()
        #expect(progress[1] == 0, "\(progress[1]) rounds saw a stale value")
    }

    /// Destroying a ThreadLocal destroys the values of threads that are still running
    /// (they used to leak until the process exited).
    @Test func otherThreadsValuesAreDestroyedWithTheThreadLocal() {
        let deaths = Counters(1)
        let gate = Counters(2)  // 0: threads that made their value, 1: let them exit
        let threads = 4
        final class Box: @unchecked Sendable { var local: ThreadLocal<Counted>? }
        let box = Box()  // the only reference: the threads read it before the main thread drops it
        box.local = ThreadLocal { Counted(1, deaths: deaths) }
        let group = ThreadGroup(threads) { _ in
            _ = box.local!.value.id
            _ = gate.add(0)
            _ = gate.wait(for: releaseLimit) { $0[1] == 1 }
        }
        #expect(gate.wait(until: { $0[0] == threads }))
        _ = box.local!.value.id  // and this thread's
        box.local = nil
        // Every value is destroyed now, while their threads still run.
        #expect(deaths[0] == threads + 1, "\(deaths[0]) of \(threads + 1) values destroyed")
        gate.set(1, 1)
        #expect(group.join())
        #expect(deaths[0] == threads + 1, "a value was destroyed twice")
    }

    /// More ThreadLocals alive at once than the process has pthread keys (1024): each used
    /// to take a key, and the 1025th trapped. Beyond the fast slots, values still work.
    @Test func moreThanPthreadKeysMaxAlive() async {
        await #expect(processExitsWith: .success) {
            alarm(20)
            let count = 2_000
            let locals = (0..<count).map { i in ThreadLocal { i } }
            for (i, local) in locals.enumerated() where local.value != i { finish(1, "instance \(i) read \(local.value)") }
            for (i, local) in locals.enumerated() { local.value = -i }
            let ok = onOtherThread {
                locals.enumerated().allSatisfy { i, local in local.value == i }
            }
            if !ok { finish(1, "another thread saw a value that is not its own") }
            for (i, local) in locals.enumerated() where local.value != -i { finish(1, "instance \(i) lost its value") }
            finish(0)
        }
    }

    /// In a fork child, destroying a ThreadLocal destroys only the values made in the
    /// child: values inherited from the parent (the forking thread's and other threads')
    /// are abandoned, never destroyed there.
    @Test func forkChildDestroysOnlyItsOwnValues() async {
        await #expect(processExitsWith: .success) {
            alarm(20)
            let deaths = Counters(1)
            final class Box: @unchecked Sendable { var local: ThreadLocal<Counted>? }
            let box = Box()
            box.local = ThreadLocal { Counted(1, deaths: deaths) }
            let parking = Parking()
            let other = TestThread {
                _ = box.local!.value.id
                parking.park()
            }
            if !parking.waitParked() { finish(1, "the other thread never made its value") }
            _ = box.local!.value.id  // the forking thread's value
            let status = forkAndWait {
                _ = box.local!.value.id  // a fresh value in the child
                box.local = nil
                // Only the child's own value: not the two inherited ones.
                return deaths[0] == 1 ? 0 : 1
            }
            parking.release()
            other.join()
            box.local = nil
            if status != 0 { finish(1, "the child destroyed values it inherited (status \(status))") }
            finish(deaths[0] == 2 ? 0 : 1, "the parent destroyed \(deaths[0]) values, expected 2")
        }
    }
}
