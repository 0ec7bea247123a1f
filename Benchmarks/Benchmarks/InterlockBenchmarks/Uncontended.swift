// Group 1: one thread, nobody else around: the cost of an acquire+release pair.
//
// Ours in each scope (threads, fork-shared memory, named segment, lock file at a path) against:
//   - raw pthread_rwlock, glibc default (reader-preferring) and writer-preferring kinds,
//   - raw pthread_rwlock, default kind, PTHREAD_PROCESS_SHARED in MAP_SHARED memory
//     (`pthread-pshared`: the baseline for the process scopes),
//   - Synchronization.Mutex (exclusive only: it has no shared mode),
//   - an fcntl OFD lock on a temporary file (the file-lock approach: fasteners and friends).
// Also ours through the closure API (`withShared`/`withExclusive`), which callers normally use,
// and shared data in a named `SharedLocked` (issue 11): a shared-mode read of an `Int`, and a
// crash-atomic exclusive increment of a 64-byte struct (one 64-byte copy per hold), beside the
// named lock's own pairs.
//
// Gated: zero mallocs per acquire+release (Thresholds/, see Settings.mallocGate).

import Benchmark
import Interlock
import Synchronization

func registerUncontended() {
    let configuration = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: Settings.maxDuration,
        maxIterations: Settings.maxIterations(10_000),
        thresholds: Settings.mallocGate
    )
    let counter = GuardedCounter(pointer: .allocate(capacity: 1))
    counter.pointer.initialize(to: 0)

    func pair<Lock: ReaderWriterLock>(_ label: String, _ make: @escaping () throws -> Lock, undo: @escaping (Lock) throws -> Void = { _ in }) {
        let shared = Fixture(make, undo: undo)
        Benchmark("Uncontended.shared.\(label)", configuration: configuration, closure: { benchmark in
            let lock = shared.current
            for _ in benchmark.scaledIterations {
                lock.lockShared()
                blackHole(counter.read())
                lock.unlockShared()
            }
        }, setup: { try shared.setUp() }, teardown: { try shared.tearDown() })

        let exclusive = Fixture(make, undo: undo)
        Benchmark("Uncontended.exclusive.\(label)", configuration: configuration, closure: { benchmark in
            let lock = exclusive.current
            for _ in benchmark.scaledIterations {
                lock.lockExclusive()
                counter.increment()
                lock.unlockExclusive()
            }
        }, setup: { try exclusive.setUp() }, teardown: { try exclusive.tearDown() })
    }

    // Ours, manual forms, one per scope.
    pair("SharedLock-threads") { SharedLock() }
    pair("SharedLock-forkShared") { try SharedLock.forkShared() }
    pair("SharedLock-named", { try SharedLock(named: uniqueLockName("uncontended")) }, undo: removeIfNamed)
    pair("SharedLock-path", { try SharedLock(path: "/tmp/\(uniqueLockName("uncontended")).lock") }, undo: removeIfNamed)

    // Baselines.
    pair(RawRWLock.Kind.readerPreferring.rawValue) { RawRWLock(.readerPreferring) }
    pair(RawRWLock.Kind.writerPreferring.rawValue) { RawRWLock(.writerPreferring) }
    // What a C programmer writes for processes: default kind, PTHREAD_PROCESS_SHARED, in
    // MAP_SHARED memory (the process scopes' baseline, issue 10).
    pair("pthread-pshared") { RawRWLock(.readerPreferring, processShared: SharedRegion()) }
    pair("fcntl-OFD") { OFDLock() }

    // Ours through the closure API, threads scope.
    let closureForm = Fixture { SharedLock() }
    Benchmark("Uncontended.shared.SharedLock-threads-withShared", configuration: configuration, closure: { benchmark in
        let lock = closureForm.current
        for _ in benchmark.scaledIterations {
            lock.withShared { blackHole(counter.read()) }
        }
    }, setup: { try closureForm.setUp() }, teardown: { try closureForm.tearDown() })
    Benchmark("Uncontended.exclusive.SharedLock-threads-withExclusive", configuration: configuration, closure: { benchmark in
        let lock = closureForm.current
        for _ in benchmark.scaledIterations {
            lock.withExclusive { counter.increment() }
        }
    }, setup: { try closureForm.setUp() }, teardown: { try closureForm.tearDown() })

    // Shared data in a named segment (issue 11).
    let namedInt = Fixture({ try SharedLocked(named: uniqueLockName("value-int"), initialValue: 0) }, undo: removeIfNamedValue)
    Benchmark("Uncontended.shared.SharedLocked-named-Int", configuration: configuration, closure: { benchmark in
        let value = namedInt.current
        for _ in benchmark.scaledIterations {
            blackHole(value.withShared { $0 })
        }
    }, setup: { try namedInt.setUp() }, teardown: { try namedInt.tearDown() })
    let namedBlock = Fixture({ try SharedLocked(named: uniqueLockName("value-64B"), initialValue: Block64()) }, undo: removeIfNamedValue)
    Benchmark("Uncontended.exclusive.SharedLocked-named-64B", configuration: configuration, closure: { benchmark in
        let value = namedBlock.current
        for _ in benchmark.scaledIterations {
            value.withExclusive { $0.words[0] &+= 1 }
        }
    }, setup: { try namedBlock.setUp() }, teardown: { try namedBlock.tearDown() })

    // Synchronization.Mutex: the standard library's exclusive lock.
    let mutex = Fixture { MutexBox() }
    Benchmark("Uncontended.exclusive.Mutex", configuration: configuration, closure: { benchmark in
        let box = mutex.current
        for _ in benchmark.scaledIterations {
            box.mutex.withLock { $0 &+= 1 }
        }
    }, setup: { try mutex.setUp() }, teardown: { try mutex.tearDown() })
}

/// 64 bytes of shared data, for the crash-atomic increment.
struct Block64: BitwiseCopyable {
    var words = InlineArray<8, UInt64>(repeating: 0)
}

/// A `Mutex` at a stable address (it is ~Copyable; a class holds it in place).
final class MutexBox: Sendable {
    let mutex = Mutex(0)
}
