import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The stress run's witness: shared memory (a file in /dev/shm) that every worker process
/// maps, independent of the lock under test. Every word is an `Atomic<UInt64>`.
///
/// ```
/// header   0 magic  1 largest accepted fencing token  2 accepted writes  3 stop
///          4 operations left (signed)  5 processes  6 tasks per process
/// slots    one per task of every worker (processes × tasks), `slotWords` each:
///            0 state: serial << 2 | mode (0 none, 1 shared, 2 exclusive)
///            1 last serial used   2 lost count   3 overlap count
///            4 …          the serials of holds that ended lost (told sessionLost, or killed)
///            4+lostCapacity …  overlaps seen: (own serial, other slot, other serial)
/// stats    one per worker process, `statsWords` each: the Stat words, then two
///          latency histograms (shared, exclusive) of `buckets` words
/// ```
///
/// A hold publishes its state in its slot, then scans every other slot: an exclusive hold
/// beside any other hold is an *overlap*. An overlap is allowed only when one of the two
/// holds was lost (its session ended while it was held: the server released the lock) — that
/// is the case fencing tokens exist for; any other overlap is a violation. Whether a hold was
/// lost is known only when it ends, so overlaps are judged after the run.
final class StressRegion: @unchecked Sendable {
    // @unchecked: the mapping is shared memory, reached only through atomic words.
    static let magic: UInt64 = 0x494C_5047_5354_5231  // "ILPGSTR1"
    static let headerWords = 16
    static let lostCapacity = 4096
    static let overlapCapacity = 1024
    static let slotWords = 4 + lostCapacity + 3 * overlapCapacity
    static let buckets = 512
    static let statsWords = 16 + 2 * buckets

    enum Header: Int { case magic = 0, maxToken, acceptedWrites, stop, operationsLeft, processes, tasks }
    enum Stat: Int, CaseIterable {
        case sharedOps = 0, exclusiveOps, lostShared, lostExclusive, staleRejected, maxReaders, failedAcquisitions, errors
    }

    let processes: Int
    let tasks: Int
    private let words: UnsafeMutablePointer<Atomic<UInt64>>
    private let count: Int

    static func size(processes: Int, tasks: Int) -> Int {
        (headerWords + processes * tasks * slotWords + processes * statsWords) * 8
    }

    /// Creates and maps the region at `path` (the parent).
    init(creating path: String, processes: Int, tasks: Int, operations: Int?) throws {
        let bytes = StressRegion.size(processes: processes, tasks: tasks)
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ToolError("cannot create \(path): errno \(errno)") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(bytes)) == 0 else { throw ToolError("ftruncate \(path): errno \(errno)") }
        guard let base = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            throw ToolError("mmap \(path): errno \(errno)")
        }
        self.processes = processes
        self.tasks = tasks
        count = bytes / 8
        words = base.bindMemory(to: Atomic<UInt64>.self, capacity: count)
        for index in 0..<count { (words + index).initialize(to: Atomic(0)) }
        set(.operationsLeft, UInt64(bitPattern: Int64(operations ?? Int(Int64.max))))
        set(.processes, UInt64(processes))
        set(.tasks, UInt64(tasks))
        set(.magic, StressRegion.magic)
    }

    /// Maps an existing region (a worker).
    init(opening path: String) throws {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw ToolError("cannot open \(path): errno \(errno)") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size >= StressRegion.headerWords * 8 else { throw ToolError("\(path) is not a stress region") }
        let bytes = Int(info.st_size)
        guard let base = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            throw ToolError("mmap \(path): errno \(errno)")
        }
        count = bytes / 8
        words = base.assumingMemoryBound(to: Atomic<UInt64>.self)
        guard words.pointee.load(ordering: .acquiring) == StressRegion.magic else { throw ToolError("\(path) is not a stress region") }
        processes = Int(words[Header.processes.rawValue].load(ordering: .relaxed))
        tasks = Int(words[Header.tasks.rawValue].load(ordering: .relaxed))
        guard bytes == StressRegion.size(processes: processes, tasks: tasks) else { throw ToolError("\(path) has the wrong size") }
    }

    private func word(_ index: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        precondition(index >= 0 && index < count)
        return words + index
    }

    // MARK: Header

    func get(_ header: Header) -> UInt64 { word(header.rawValue).pointee.load(ordering: .sequentiallyConsistent) }
    func set(_ header: Header, _ value: UInt64) { word(header.rawValue).pointee.store(value, ordering: .sequentiallyConsistent) }
    func add(_ header: Header, _ value: UInt64) { word(header.rawValue).pointee.add(value, ordering: .sequentiallyConsistent) }

    /// Takes one operation from the shared budget; false when it is spent or the run stops.
    func takeOperation() -> Bool {
        if get(.stop) != 0 { return false }
        let left = Int64(bitPattern: word(Header.operationsLeft.rawValue).pointee.wrappingSubtract(1, ordering: .relaxed).newValue)
        return left >= 0
    }

    /// The fenced resource: accepts a write whose token is at least the largest it accepted
    /// (a holder may write more than once), refuses an older one.
    func write(token: Int64) -> Bool {
        let max = word(Header.maxToken.rawValue)
        var current = max.pointee.load(ordering: .sequentiallyConsistent)
        while true {
            guard UInt64(token) >= current else { return false }
            let (exchanged, original) = max.pointee.compareExchange(expected: current, desired: UInt64(token), ordering: .sequentiallyConsistent)
            if exchanged {
                add(.acceptedWrites, 1)
                return true
            }
            current = original
        }
    }

    // MARK: Slots

    var slotCount: Int { processes * tasks }
    private func slot(_ slot: Int, _ offset: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        word(StressRegion.headerWords + slot * StressRegion.slotWords + offset)
    }

    func state(_ index: Int) -> UInt64 { slot(index, 0).pointee.load(ordering: .sequentiallyConsistent) }
    func setState(_ index: Int, _ value: UInt64) { slot(index, 0).pointee.store(value, ordering: .sequentiallyConsistent) }
    func nextSerial(_ index: Int) -> UInt64 { slot(index, 1).pointee.add(1, ordering: .relaxed).newValue }

    /// Records that the hold `serial` of slot `index` ended lost.
    func recordLost(_ index: Int, serial: UInt64) {
        let n = Int(slot(index, 2).pointee.add(1, ordering: .sequentiallyConsistent).oldValue)
        if n < StressRegion.lostCapacity { slot(index, 4 + n).pointee.store(serial, ordering: .sequentiallyConsistent) }
    }

    func lostSerials(_ index: Int) -> (serials: Set<UInt64>, overflow: Bool) {
        let n = Int(slot(index, 2).pointee.load(ordering: .sequentiallyConsistent))
        let kept = min(n, StressRegion.lostCapacity)
        return (Set((0..<kept).map { slot(index, 4 + $0).pointee.load(ordering: .sequentiallyConsistent) }), n > kept)
    }

    /// Records an overlap seen by hold `serial` of slot `index` with slot `other`'s state.
    func recordOverlap(_ index: Int, serial: UInt64, other: Int, otherSerial: UInt64) {
        let n = Int(slot(index, 3).pointee.add(1, ordering: .sequentiallyConsistent).oldValue)
        guard n < StressRegion.overlapCapacity else { return }
        let base = 4 + StressRegion.lostCapacity + 3 * n
        slot(index, base).pointee.store(serial, ordering: .relaxed)
        slot(index, base + 1).pointee.store(UInt64(other), ordering: .relaxed)
        slot(index, base + 2).pointee.store(otherSerial, ordering: .sequentiallyConsistent)
    }

    func overlaps(_ index: Int) -> (list: [(serial: UInt64, other: Int, otherSerial: UInt64)], overflow: Int) {
        let n = Int(slot(index, 3).pointee.load(ordering: .sequentiallyConsistent))
        let kept = min(n, StressRegion.overlapCapacity)
        let list = (0..<kept).map { i -> (UInt64, Int, UInt64) in
            let base = 4 + StressRegion.lostCapacity + 3 * i
            return (slot(index, base).pointee.load(ordering: .sequentiallyConsistent),
                    Int(slot(index, base + 1).pointee.load(ordering: .sequentiallyConsistent)),
                    slot(index, base + 2).pointee.load(ordering: .sequentiallyConsistent))
        }
        return (list.map { (serial: $0.0, other: $0.1, otherSerial: $0.2) }, n - kept)
    }

    // MARK: Stats

    private func stats(_ process: Int, _ offset: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        word(StressRegion.headerWords + slotCount * StressRegion.slotWords + process * StressRegion.statsWords + offset)
    }

    func add(_ process: Int, _ stat: Stat, _ value: UInt64 = 1) { stats(process, stat.rawValue).pointee.add(value, ordering: .relaxed) }
    func get(_ process: Int, _ stat: Stat) -> UInt64 { stats(process, stat.rawValue).pointee.load(ordering: .relaxed) }
    func raiseMax(_ process: Int, _ stat: Stat, to value: UInt64) {
        var current = get(process, stat)
        while value > current {
            let (done, original) = stats(process, stat.rawValue).pointee.compareExchange(expected: current, desired: value, ordering: .relaxed)
            if done { return }
            current = original
        }
    }

    /// Log-linear buckets: 8 per power of two.
    static func bucket(_ nanoseconds: UInt64) -> Int {
        guard nanoseconds >= 8 else { return Int(nanoseconds) }
        let exponent = 63 - nanoseconds.leadingZeroBitCount
        let sub = Int((nanoseconds >> UInt64(exponent - 3)) & 7)
        return min(buckets - 1, exponent * 8 + sub)
    }

    /// The smallest value in a bucket.
    static func bucketFloor(_ bucket: Int) -> Double {
        guard bucket >= 8 else { return Double(bucket) }
        let exponent = bucket / 8, sub = bucket % 8
        return Double(8 + sub) * Double(1 << UInt64(exponent - 3))
    }

    func record(_ process: Int, exclusive: Bool, latency: UInt64) {
        stats(process, 16 + (exclusive ? StressRegion.buckets : 0) + StressRegion.bucket(latency)).pointee.add(1, ordering: .relaxed)
    }

    func histogram(exclusive: Bool) -> [UInt64] {
        var total = [UInt64](repeating: 0, count: StressRegion.buckets)
        for process in 0..<processes {
            for bucket in 0..<StressRegion.buckets {
                total[bucket] += stats(process, 16 + (exclusive ? StressRegion.buckets : 0) + bucket).pointee.load(ordering: .relaxed)
            }
        }
        return total
    }
}
