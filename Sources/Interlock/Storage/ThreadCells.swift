#if canImport(Glibc)
import Glibc
#endif
import CInterlock
import Synchronization

/// The cells of every `ThreadLocal`: their memory layout, the fast-slot allocator, and the
/// registry that lets a cell be destroyed exactly once — by its thread at exit, or by its
/// instance's `deinit` — whichever comes first.
///
/// A cell is `[generation: UInt64][owner][value]`. The owner is an object whose `deinit`
/// knows `Value` and destroys the value and frees the cell (the exit handler is generic
/// over nothing).
///
/// The registry maps each live instance's serial to the set of its cells made in this
/// process. Whoever removes a cell from it (under its mutex) owns the cell and destroys it,
/// after unlocking (a value's `deinit` may use other `ThreadLocal`s). Nobody dereferences
/// a cell without owning it or having found it through its own thread's slot with a
/// matching serial — which a destroyed instance never has again. The registry is per
/// process: a fork child starts with an empty one and never touches the parent's (its
/// mutex may have been held by a thread that does not exist in the child), so cells
/// inherited through `fork()` are abandoned, never destroyed in the child.
@usableFromInline
enum ThreadCells {
    @usableFromInline static let ownerOffset = 8

    @inlinable static func valueOffset<Value>(_: Value.Type) -> Int {
        let a = MemoryLayout<Value>.alignment
        return (16 + a - 1) / a * a
    }

    @inlinable static func generation(_ cell: UnsafeMutableRawPointer) -> UInt64 {
        cell.load(as: UInt64.self)
    }

    @inlinable static func value<Value>(_ cell: UnsafeMutableRawPointer, as: Value.Type) -> UnsafeMutablePointer<Value> {
        (cell + valueOffset(Value.self)).assumingMemoryBound(to: Value.self)
    }

    // MARK: Serials and fast slots

    /// The last serial handed out (0 is never used: an empty slot has serial 0).
    static let nextSerial = Atomic<UInt64>(0)
    /// Bit `i` set: fast slot `i` belongs to a live instance. Lock-free, so it stays
    /// consistent in a fork child (instances inherited keep their slots).
    static let fastSlotsInUse = Atomic<UInt64>(0)

    static func claimFastIndex() -> Int {
        let all: UInt64 = CINTERLOCK_THREAD_SLOTS >= 64 ? ~0 : (1 << UInt64(CINTERLOCK_THREAD_SLOTS)) - 1
        var used = fastSlotsInUse.load(ordering: .relaxed)
        while true {
            let free = ~used & all
            if free == 0 { return -1 }
            let index = free.trailingZeroBitCount
            let (exchanged, seen) = fastSlotsInUse.compareExchange(
                expected: used, desired: used | (1 << UInt64(index)), ordering: .relaxed)
            if exchanged { return index }
            used = seen
        }
    }

    static func releaseFastIndex(_ index: Int) {
        guard index >= 0 else { return }
        fastSlotsInUse.bitwiseAnd(~(UInt64(1) << UInt64(index)), ordering: .relaxed)
    }

    // MARK: Making and destroying cells

    final class Owner<Value> {
        let cell: UnsafeMutableRawPointer
        init(_ cell: UnsafeMutableRawPointer) { self.cell = cell }
        deinit {
            ThreadCells.value(cell, as: Value.self).deinitialize(count: 1)
            cell.deallocate()
        }
    }

    /// Makes the calling thread's cell for instance `serial`, registers it, and puts it in
    /// the thread's fast slot (or its dictionary).
    static func make<Value>(_ initialValue: consuming Value, serial: UInt64, fastIndex: Int) -> UnsafeMutableRawPointer {
        let size = valueOffset(Value.self) + MemoryLayout<Value>.size
        let cell = UnsafeMutableRawPointer.allocate(
            byteCount: max(size, 16), alignment: max(8, MemoryLayout<Value>.alignment))
        let registry = Registry.current()
        cell.storeBytes(of: registry.generation, as: UInt64.self)
        let owner = Unmanaged.passRetained(Owner<Value>(cell) as AnyObject)
        cell.storeBytes(of: owner.toOpaque(), toByteOffset: ownerOffset, as: UnsafeMutableRawPointer.self)
        value(cell, as: Value.self).initialize(to: initialValue)
        registry.insert(cell, serial: serial)
        if fastIndex >= 0 {
            cinterlock_set_thread_cell(fastIndex, serial, cell)
        } else {
            Overflow.current(creating: true)!.insert(cell, serial: serial, registry: registry)
        }
        ExitHook.arm()
        return cell
    }

    /// Destroys a cell this caller owns (removed from the registry).
    static func destroy(_ cell: UnsafeMutableRawPointer) {
        let owner = cell.load(fromByteOffset: ownerOffset, as: UnsafeMutableRawPointer.self)
        Unmanaged<AnyObject>.fromOpaque(owner).release()
    }

    /// `ThreadLocal.deinit`: destroys every thread's value of instance `serial` (made in
    /// this process), then frees its fast slot for the next instance.
    static func destroyAll(serial: UInt64, fastIndex: Int) {
        let cells = Registry.current().removeAll(serial: serial)
        // This thread's slot would otherwise point at a freed cell (harmless, since the
        // serial is dead, but keep it tidy); other threads' slots keep a stale tag.
        if fastIndex >= 0, cinterlock_thread_cell(fastIndex, serial) != nil {
            cinterlock_set_thread_cell(fastIndex, 0, nil)
        }
        Overflow.current(creating: false)?.remove(serial: serial)
        for cell in cells { destroy(cell) }
        releaseFastIndex(fastIndex)
    }

    /// The calling thread's cell for `serial` in its dictionary (instances without a fast slot).
    static func overflowCell(serial: UInt64) -> UnsafeMutableRawPointer? {
        Overflow.current(creating: false)?.cell(serial: serial)
    }

    /// Thread exit (the pthread key's destructor): destroys the cells of this thread that
    /// are still registered (instances alive, made in this process).
    static func threadExit() {
        var mine: [(UInt64, UnsafeMutableRawPointer)] = []
        for index in 0..<Int(CINTERLOCK_THREAD_SLOTS) {
            let serial = cinterlock_thread_slot_serial(index)
            if serial != 0, let cell = cinterlock_thread_slot_cell(index) { mine.append((serial, cell)) }
            cinterlock_set_thread_cell(index, 0, nil)
        }
        if let overflow = Overflow.detach() { mine += overflow.entries() }
        if mine.isEmpty { return }
        let owned = Registry.current().removeEach(mine)
        for cell in owned { destroy(cell) }
    }
}

extension ThreadCells {
    /// The cells made in this process, by instance serial (see `ThreadCells`). One per
    /// process, made on first use there; a fork child abandons the inherited one.
    final class Registry: @unchecked Sendable {
        // Sendable: `cells` is only read or written with `mutex` held.
        let generation: UInt64
        /// A pthread mutex (not `Synchronization.Mutex`) so the thread sanitizer sees it;
        /// allocated, so its address is stable. Never destroyed: a published registry
        /// lives as long as its process.
        private let mutex: UnsafeMutablePointer<pthread_mutex_t>
        private var cells: [UInt64: Set<UnsafeMutableRawPointer>] = [:]

        private init(generation: UInt64) {
            self.generation = generation
            mutex = .allocate(capacity: 1)
            pthread_mutex_init(mutex, nil)
        }

        /// The published registry: the address of an `Unmanaged` (retained forever), or 0.
        private static let installed = Atomic<UInt>(0)

        /// This process's registry, made on first use in each process.
        static func current() -> Registry {
            let generation = Fork.currentGeneration
            var seen = installed.load(ordering: .acquiring)
            while true {
                if let raw = UnsafeMutableRawPointer(bitPattern: seen) {
                    let registry = Unmanaged<Registry>.fromOpaque(raw).takeUnretainedValue()
                    if registry.generation == generation { return registry }
                }
                // None yet, or inherited through fork(): replace it (the old one is never
                // locked again, nor released).
                let fresh = Unmanaged.passRetained(Registry(generation: generation))
                let (exchanged, now) = installed.compareExchange(
                    expected: seen, desired: UInt(bitPattern: fresh.toOpaque()), ordering: .acquiringAndReleasing)
                if exchanged { return fresh.takeUnretainedValue() }
                fresh.release()
                seen = now
            }
        }

        private func locked<R>(_ body: () -> R) -> R {
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            return body()
        }

        func insert(_ cell: UnsafeMutableRawPointer, serial: UInt64) {
            locked { _ = cells[serial, default: []].insert(cell) }
        }

        /// Takes every cell of `serial` (its instance is being destroyed).
        func removeAll(serial: UInt64) -> Set<UnsafeMutableRawPointer> {
            locked { cells.removeValue(forKey: serial) ?? [] }
        }

        /// Takes the cells among `entries` that are still registered: the caller owns them.
        func removeEach(_ entries: [(UInt64, UnsafeMutableRawPointer)]) -> [UnsafeMutableRawPointer] {
            locked { entries.compactMap { serial, cell in cells[serial]?.remove(cell) } }
        }

        /// The serials among `serials` that have cells registered in this process.
        func registered(_ serials: some Sequence<UInt64>) -> Set<UInt64> {
            locked { Set(serials.filter { cells[$0] != nil }) }
        }
    }

    /// A thread's cells of instances that have no fast slot, by serial. Reached through
    /// the thread's `cinterlock_thread_more` pointer (retained), freed at thread exit.
    final class Overflow {
        private var cells: [UInt64: UnsafeMutableRawPointer] = [:]
        /// Drop dead instances' entries when the dictionary reaches this size.
        private var pruneAt = 16

        static func current(creating: Bool) -> Overflow? {
            if let raw = cinterlock_thread_overflow() { return Unmanaged<Overflow>.fromOpaque(raw).takeUnretainedValue() }
            guard creating else { return nil }
            let table = Overflow()
            cinterlock_set_thread_overflow(Unmanaged.passRetained(table).toOpaque())
            return table
        }

        /// Unhooks the calling thread's table (thread exit); the caller owns it.
        static func detach() -> Overflow? {
            guard let raw = cinterlock_thread_overflow() else { return nil }
            cinterlock_set_thread_overflow(nil)
            return Unmanaged<Overflow>.fromOpaque(raw).takeRetainedValue()
        }

        func cell(serial: UInt64) -> UnsafeMutableRawPointer? { cells[serial] }

        func insert(_ cell: UnsafeMutableRawPointer, serial: UInt64, registry: Registry) {
            if cells.count >= pruneAt {
                // Entries of destroyed instances (or inherited through fork) only take room.
                let live = registry.registered(cells.keys)
                cells = cells.filter { live.contains($0.key) }
                pruneAt = max(16, cells.count * 2)
            }
            cells[serial] = cell
        }

        func remove(serial: UInt64) { cells[serial] = nil }

        func entries() -> [(UInt64, UnsafeMutableRawPointer)] { cells.map { ($0.key, $0.value) } }
    }

    /// The one pthread key of all `ThreadLocal`s. Its value is a marker, set in threads
    /// that have cells, so that its destructor (`threadExit`) runs when they exit.
    enum ExitHook {
        static let key: pthread_key_t = {
            var key = pthread_key_t()
            let rc = pthread_key_create(&key, { _ in ThreadCells.threadExit() })
            if rc != 0 {
                fatalError("Interlock: ThreadLocal needs one pthread key for the whole process and none is left "
                    + "(pthread_key_create: errno \(rc); other code uses all PTHREAD_KEYS_MAX keys)")
            }
            return key
        }()

        /// Makes sure the calling thread's exit runs `threadExit`.
        static func arm() {
            if pthread_getspecific(key) == nil {
                let rc = pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
                precondition(rc == 0, "Interlock: pthread_setspecific failed (errno \(rc))")
            }
        }
    }
}
