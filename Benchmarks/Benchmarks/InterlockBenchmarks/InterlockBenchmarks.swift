// Interlock benchmarks: ours side by side with baselines, in one run. One file per group:
//   Uncontended.swift   acquire+release pairs, every scope vs pthread_rwlock, Mutex, fcntl OFD
//   Contended.swift     2 threads / 2 processes, read/write mixes, vs pthread_rwlock both kinds
//   ReaderFlood.swift   a writer's wait while two readers hold back to back
//   LocalStorage.swift  ThreadLocal/ProcessLocal reads vs pthread_getspecific and a global
//   WriterFlood.swift   a reader's wait while three writers (threads or processes) hold back to back
//   Async.swift         async pairs vs the blocking closure pairs; release → suspended waiter running
// `Benchmarks/compare.sh` runs them and prints ours ÷ baseline per group.

import Benchmark

let benchmarks: @Sendable () -> Void = {
    registerUncontended()
    registerContended()
    registerReaderFlood()
    registerLocalStorage()
    registerWriterFlood()
    registerAsync()
}
