/// A decoded view of a process-scoped lock's shared state, for inspection and tooling.
///
/// The snapshot is taken without locking: under concurrent use its fields may be
/// mutually inconsistent by a few transitions.
public struct LockSnapshot: Sendable, Equatable {
    /// The lock's name (or path, for a lock file), or nil for a lock in anonymous shared memory.
    public var name: String?
    /// The segment's layout version.
    public var layoutVersion: UInt32
    /// The segment's size in bytes.
    public var segmentSize: Int
    /// The number of holder-table entries (processes that can use the lock at once).
    public var capacity: Int
    /// The raw control word (layout 3; see the bit layout in the DocC article "Protocol").
    public var stateWord: UInt32
    /// Whether a process holds exclusive mode.
    public var isExclusive: Bool
    /// The number of processes holding shared mode.
    public var sharedProcessCount: Int
    /// The number of writer threads of live processes waiting for exclusive mode: the
    /// one that owns the write phase while readers drain, and those waiting behind it.
    public var waitingWriters: Int
    /// Whether the last exclusive holder died holding the lock and no exclusive holder
    /// has been told yet.
    public var previousHolderDied: Bool
    /// Whether a process is rebuilding the state after a crash. Always false since
    /// layout 3, whose recovery is a single step (kept for source compatibility).
    public var isRecovering: Bool
    /// The number of dead holders reclaimed since the lock was created.
    public var recoveries: Int
    /// Every process registered in the holder table.
    public var holders: [Holder]

    /// One registered process (or a dead one whose share has not been reclaimed yet).
    public struct Holder: Sendable, Equatable {
        /// Its holder-table entry.
        public var slot: Int
        /// Its process id as it saw itself when it registered (in its own pid namespace).
        public var pid: Int32
        /// Its process id as the inspecting process sees it, from the kernel's record of
        /// its liveness lock: nil if it is dead, 0 if it runs in a pid namespace the
        /// inspecting process cannot see.
        public var visiblePID: Int32?
        /// When it started, in seconds since the Unix epoch (UTC), as it computed it itself
        /// (right in any time namespace); 0 if unknown. Information only: liveness is not
        /// judged by it.
        public var startTime: UInt64
        /// What it holds or waits for.
        public var mode: HolderMode
        /// Whether the process still holds its entry's liveness lock, which the kernel
        /// drops when it dies (or `exec`s).
        public var isAlive: Bool
    }

    /// What a registered process holds or waits for.
    public enum HolderMode: String, Sendable, Equatable {
        /// Registered, holding nothing.
        case idle
        /// Holding shared mode.
        case shared
        /// Holding exclusive mode.
        case exclusive
        /// A writer of this process waits for exclusive mode.
        case waitingExclusive
    }
}

extension Segment {
    func snapshot(name: String?) -> LockSnapshot {
        checkHeader()
        let c = control.pointee.load(ordering: .acquiring)
        let writerSlot = c & Control.writer != 0 ? Control.ownerSlot(c) : nil
        var holders: [LockSnapshot.Holder] = []
        var sharedProcesses = 0, waiting = 0, exclusive = false
        for i in 0..<Int32(capacity) {
            let e = entry(i)
            let visible = liveLock(i)?.pid
            let readers = e.readers.pointee.load(ordering: .acquiring)
            let writers = e.waitingWriters.pointee.load(ordering: .acquiring)
            let blocked = e.blocked.pointee.load(ordering: .acquiring)
            if visible == nil && readers == 0 && blocked == 0 && writerSlot != i { continue }
            let mode: LockSnapshot.HolderMode
            let writing = e.writing.pointee.load(ordering: .acquiring) != 0
            if writerSlot == i && writing {
                mode = .exclusive
                exclusive = true
            } else if writerSlot == i {
                mode = .waitingExclusive  // owns the write phase, waiting for readers to leave
                if visible != nil { waiting += 1 }
            } else if readers != 0 {
                mode = .shared
                sharedProcesses += 1
            } else if writers != 0 {
                mode = .waitingExclusive
            } else {
                mode = .idle
            }
            if visible != nil { waiting += Int(writers) }
            holders.append(.init(slot: Int(i), pid: Int32(bitPattern: e.owner.pointee.load(ordering: .acquiring)),
                                 visiblePID: visible, startTime: e.startTime.pointee.load(ordering: .relaxed),
                                 mode: mode, isAlive: visible != nil))
        }
        return LockSnapshot(
            name: name, layoutVersion: version, segmentSize: mappedSize, capacity: capacity,
            stateWord: c, isExclusive: exclusive,
            sharedProcessCount: sharedProcesses, waitingWriters: waiting,
            previousHolderDied: c & Control.ownerDied != 0, isRecovering: false,
            recoveries: Int(recoveries.pointee.load(ordering: .relaxed)), holders: holders)
    }
}
