// The settings of one stress run, validated from the command line.

/// A stress run's settings. Built from `interlock stress` options by `init(_:)`; the
/// checks across options (those one table row cannot express) are here.
struct StressConfig {
    /// Where the workers live, and which kind of `SharedLock` they share.
    enum Scope: String {
        /// Threads of one process; `SharedLock()`.
        case threads
        /// Forked processes; `SharedLock.forkShared()` created before the first fork.
        case fork
        /// Processes spawned from this executable; `SharedLock(named:)`.
        case named
    }

    var scope: Scope
    var processes: Int
    var threadsPerProcess: Int
    /// Run length for a timed run; nil with `operations`.
    var durationNanoseconds: UInt64?
    /// Total operations for a counted run; nil for a timed run.
    var operations: Int?
    var readPercent: Int
    var holdNanoseconds: UInt64
    var name: String?
    var kill: Bool
    var killEveryNanoseconds: UInt64
    var watchdogNanoseconds: UInt64
    var seed: UInt64
    var json: Bool

    /// Worker threads over all processes.
    var slotCount: Int { processes * threadsPerProcess }

    /// The operations slot `slot` runs in a counted run (the total split evenly, the
    /// remainder to the first slots); `UInt64.max` in a timed run.
    func quota(forSlot slot: Int) -> UInt64 {
        guard let operations else { return .max }
        let base = operations / slotCount
        return UInt64(base + (slot < operations % slotCount ? 1 : 0))
    }

    init(_ arguments: ParsedArguments) throws(UsageError) {
        scope = Scope(rawValue: arguments.text("--scope")!)!
        threadsPerProcess = arguments.integer("--threads")!
        processes = arguments.integer("--processes")!
        if scope == .threads {
            if arguments.has("--processes") && processes != 1 {
                throw arguments.error("--processes applies to the fork and named scopes (the threads scope is one process)")
            }
            processes = 1
        }
        if processes * threadsPerProcess > StressRegion.maxSlots {
            throw arguments.error("--processes × --threads is at most \(StressRegion.maxSlots), got \(processes * threadsPerProcess)")
        }
        if arguments.has("--operations") && arguments.has("--duration") {
            throw arguments.error("give --duration or --operations, not both")
        }
        operations = arguments.integer("--operations")
        durationNanoseconds = operations == nil ? arguments.nanoseconds("--duration")! : nil
        if durationNanoseconds == 0 {
            throw arguments.error("--duration must be more than 0")
        }
        readPercent = arguments.integer("--read-percent")!
        holdNanoseconds = arguments.nanoseconds("--hold")!
        name = arguments.text("--name")
        if name != nil && scope != .named {
            throw arguments.error("--name applies to --scope named only")
        }
        kill = arguments.flag("--kill")
        if kill && scope == .threads {
            throw arguments.error("--kill needs worker processes: use --scope fork or --scope named")
        }
        if arguments.has("--kill-every") && !kill {
            throw arguments.error("--kill-every needs --kill")
        }
        killEveryNanoseconds = arguments.nanoseconds("--kill-every")!
        if kill && killEveryNanoseconds < 1_000_000 {
            throw arguments.error("--kill-every must be at least 1ms")
        }
        watchdogNanoseconds = arguments.nanoseconds("--watchdog")!
        if watchdogNanoseconds < 100_000_000 {
            throw arguments.error("--watchdog must be at least 100ms")
        }
        seed = arguments.integer("--seed").map { UInt64($0) } ?? UInt64.random(in: 0...UInt64(Int.max))
        json = arguments.flag("--json")
    }
}
