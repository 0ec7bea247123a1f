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
    /// Decodes the segment without changing it. Lists every entry whose owner is alive
    /// or that still holds something (a dead holder not yet reclaimed).
    func snapshot(name: String?) -> LockSnapshot {
        checkHeader()
        let s = state.pointee.load(ordering: .acquiring)
        var holders: [LockSnapshot.Holder] = []
        for i in 0..<Int32(capacity) {
            let e = entry(i)
            let visible = liveLock(i)?.pid
            let rawMode = e.mode.pointee.load(ordering: .acquiring)
            if visible == nil && rawMode == Entry.idle { continue }
            let owner = Int32(bitPattern: e.owner.pointee.load(ordering: .acquiring))
            let start = e.startTime.pointee.load(ordering: .relaxed)
            let mode: LockSnapshot.HolderMode
            switch rawMode & Entry.modeMask {
            case Entry.shared: mode = .shared
            case Entry.exclusive: mode = .exclusive
            case Entry.waiting: mode = .waitingExclusive
            default: mode = .idle
            }
            holders.append(.init(slot: Int(i), pid: owner, visiblePID: visible, startTime: start, mode: mode,
                                 isAlive: visible != nil))
        }
        return LockSnapshot(
            name: name, layoutVersion: version, segmentSize: mappedSize, capacity: capacity,
            stateWord: s, isExclusive: s & StateWord.exclusive != 0,
            sharedProcessCount: StateWord.sharedCount(s), waitingWriters: StateWord.waitingCount(s),
            previousHolderDied: s & StateWord.ownerDied != 0, isRecovering: s & StateWord.recovering != 0,
            recoveries: Int(recoveries.pointee.load(ordering: .relaxed)), holders: holders)
    }
}
