// Anonymous MAP_SHARED memory: inherited by fork() children. Holds the process-shared
// pthread_rwlock baselines, the counters the critical sections touch, and the control words
// that drive forked helpers.

import Glibc

final class SharedRegion: @unchecked Sendable {
    // Sound: the region's memory is only reached through the typed pointers handed out by
    // `allocate`, each used by the protocol (lock, semaphore, atomic) it was made for.
    private let base: UnsafeMutableRawPointer
    private let size: Int
    private var used = 0

    init(size: Int = 64 * 1024) {
        let address = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
        guard let address, address != MAP_FAILED else {
            fatalError("mmap(MAP_SHARED|MAP_ANONYMOUS, \(size)) failed: errno \(errno)")
        }
        self.base = address
        self.size = size
    }

    deinit {
        munmap(base, size)
    }

    /// Uninitialized room for one `T`, on its own cache line (no false sharing between the
    /// lock word, the counter and the control words). Not thread-safe: call during setup.
    func allocate<T: ~Copyable>(_: T.Type) -> UnsafeMutablePointer<T> {
        let lineSize = 64
        let stride = (MemoryLayout<T>.size + lineSize - 1) / lineSize * lineSize
        precondition(used + stride <= size, "SharedRegion is full")
        let pointer = (base + used).bindMemory(to: T.self, capacity: 1)
        used += max(stride, lineSize)
        return pointer
    }

    /// A counter for critical sections, zeroed.
    func makeCounter() -> GuardedCounter {
        let pointer = allocate(Int.self)
        pointer.initialize(to: 0)
        return GuardedCounter(pointer: pointer)
    }
}
