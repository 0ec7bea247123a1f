/// A decoded view of a process-scoped lock's shared state, for inspection and tooling.
///
/// The snapshot is taken without locking: under concurrent use its fields may be
/// mutually inconsistent by a few transitions.
public struct LockSnapshot: Sendable, Equatable {
    /// The lock's name, or nil for a lock in anonymous shared memory.
    public var name: String?
    /// The segment's layout version.
    public var layoutVersion: UInt32
    /// The segment's size in bytes.
    public var segmentSize: Int
    /// The number of holder-table entries (processes that can use the lock at once).
    public var capacity: Int
    /// The raw state word (see the bit layout in the DocC article and `StateWord`).
    public var stateWord: UInt32
    /// Whether a process holds exclusive mode.
    public var isExclusive: Bool
    /// The number of processes holding shared mode.
    public var sharedProcessCount: Int
    /// The number of processes with a writer waiting for exclusive mode.
    public var waitingWriters: Int
    /// Whether the last exclusive holder died holding the lock and no exclusive holder
    /// has been told yet.
    public var previousHolderDied: Bool
    /// Whether a process is rebuilding the state after a crash.
    public var isRecovering: Bool
    /// The number of dead holders reclaimed since the lock was created.
    public var recoveries: Int
    /// Every process registered in the holder table.
    public var holders: [Holder]

    /// One registered process.
    public struct Holder: Sendable, Equatable {
        /// Its process id.
        public var pid: Int32
        /// Its start time in clock ticks since boot (field 22 of `/proc/PID/stat`); with
        /// the pid it identifies the process even if the pid is reused.
        public var startTime: UInt64
        /// What it holds or waits for.
        public var mode: HolderMode
        /// Whether the process is still running (zombies count as dead).
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
    /// Decodes the segment without changing it.
    func snapshot(name: String?) -> LockSnapshot {
        let s = state.pointee.load(ordering: .acquiring)
        var holders: [LockSnapshot.Holder] = []
        for i in 0..<Int32(capacity) {
            let e = entry(i)
            let owner = Int32(bitPattern: e.owner.pointee.load(ordering: .acquiring))
            if owner == 0 { continue }
            let start = e.startTime.pointee.load(ordering: .relaxed)
            let mode: LockSnapshot.HolderMode
            switch e.mode.pointee.load(ordering: .acquiring) & Entry.modeMask {
            case Entry.shared: mode = .shared
            case Entry.exclusive: mode = .exclusive
            case Entry.waiting: mode = .waitingExclusive
            default: mode = .idle
            }
            holders.append(.init(pid: owner, startTime: start, mode: mode,
                                 isAlive: ProcessIdentity.isAlive(pid: owner, startTime: start)))
        }
        return LockSnapshot(
            name: name, layoutVersion: version, segmentSize: mappedSize, capacity: capacity,
            stateWord: s, isExclusive: s & StateWord.exclusive != 0,
            sharedProcessCount: StateWord.sharedCount(s), waitingWriters: StateWord.waitingCount(s),
            previousHolderDied: s & StateWord.ownerDied != 0, isRecovering: s & StateWord.recovering != 0,
            recoveries: Int(recoveries.pointee.load(ordering: .relaxed)), holders: holders)
    }
}
