// Group 4: reading per-thread / per-process storage.
//
// Ours (`ThreadLocal.value`, `ProcessLocal.value`, which also check the fork generation) against
// raw pthread_getspecific (reading the Int its pointer designates) and a plain global variable.

import Benchmark
import Glibc
import Interlock

nonisolated(unsafe) private var plainGlobal = 42 // the floor: a load from a global

func registerLocalStorage() {
    let configuration = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: Settings.maxDuration,
        maxIterations: Settings.maxIterations(10_000),
        thresholds: Settings.mallocGate
    )

    let threadLocal = Fixture { ThreadLocal<Int> { 42 } }
    Benchmark("Local.ThreadLocal", configuration: configuration, closure: { benchmark in
        let storage = threadLocal.current
        for _ in benchmark.scaledIterations { blackHole(storage.value) }
    }, setup: { try threadLocal.setUp() }, teardown: { try threadLocal.tearDown() })

    let processLocal = Fixture { ProcessLocal<Int> { 42 } }
    Benchmark("Local.ProcessLocal", configuration: configuration, closure: { benchmark in
        let storage = processLocal.current
        for _ in benchmark.scaledIterations { blackHole(storage.value) }
    }, setup: { try processLocal.setUp() }, teardown: { try processLocal.tearDown() })

    let key = Fixture({ SpecificKey() }, undo: { $0.delete() })
    Benchmark("Local.pthread_getspecific", configuration: configuration, closure: { benchmark in
        let key = key.current.key
        for _ in benchmark.scaledIterations {
            blackHole(pthread_getspecific(key)!.load(as: Int.self))
        }
    }, setup: { try key.setUp() }, teardown: { try key.tearDown() })

    Benchmark("Local.global", configuration: configuration) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(plainGlobal) }
    }
}

/// A pthread key whose value, on the benchmark's thread, points at an Int.
final class SpecificKey: @unchecked Sendable {
    // Sound: the key is process-wide and immutable; the value is only set and read on one thread.
    var key = pthread_key_t()
    private let value = UnsafeMutablePointer<Int>.allocate(capacity: 1)

    init() {
        value.initialize(to: 42)
        check(pthread_key_create(&key, nil), "pthread_key_create")
        check(pthread_setspecific(key, value), "pthread_setspecific")
    }

    func delete() {
        pthread_key_delete(key)
        value.deallocate()
    }
}
