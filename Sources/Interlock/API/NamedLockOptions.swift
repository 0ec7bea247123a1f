/// How `SharedLock(named:options:)` opens or creates a named lock.
///
/// The defaults are the safe ones: open the lock or create it, readable and writable by
/// the calling user only (mode `0600`), refusing a segment that others can write.
public struct NamedLockOptions: Sendable, Equatable {
    /// Whether to create the segment, open an existing one, or either.
    public enum Creation: Sendable, Equatable {
        /// Open the lock if it exists, create it otherwise (race-free: exactly one creator).
        case openOrCreate
        /// Create the lock; fail with ``InterlockError/alreadyExists(name:)`` if it exists.
        case createOnly
        /// Open an existing lock; fail with ``InterlockError/notFound(name:)`` otherwise.
        case openOnly
    }

    /// Whether to create the segment, open an existing one, or either. Default: `.openOrCreate`.
    public var creation: Creation = .openOrCreate
    /// Create the segment with mode `0660` (the group may use it) instead of `0600`, and
    /// accept a group-writable segment when opening. Default: `false`.
    public var shareWithGroup: Bool = false
    /// Accept a segment that users outside the caller's choice can write (for example
    /// mode `0666`). Anyone who can write it can break the lock. Default: `false`.
    public var allowInsecurePermissions: Bool = false
    /// The number of processes that can use the lock at once (holder-table entries),
    /// from 1 to 4095. Used when creating; an existing lock keeps its own. Default: 64.
    public var capacity: Int = 64
    /// How long to wait for a concurrent creator to finish initialising. Default: 2 s.
    ///
    /// Any `Duration` is accepted: one longer than ``longestReadyTimeout`` (about 31
    /// years, which is waiting forever) is stored as that, and a negative one as zero
    /// (look once), so that no value can overflow the deadline it becomes.
    public var readyTimeout: Duration = .seconds(2) {
        didSet {
            if readyTimeout > Self.longestReadyTimeout { readyTimeout = Self.longestReadyTimeout }
            if readyTimeout < .zero { readyTimeout = .zero }
        }
    }

    /// A number that names the layout of the shared value of a ``SharedLocked`` or
    /// ``SharedLockedArray``, recorded when the lock is created and compared when it is
    /// opened: a different tag is ``InterlockError/incompatibleSegment(name:reason:)``.
    /// Bump it when the value's type changes in a way its size, alignment and count do
    /// not show (say, two `Int` fields swapped). Ignored by a plain ``SharedLock``.
    /// Default: 0.
    public var layoutTag: UInt32 = 0

    /// The longest ``readyTimeout`` kept as given: 10^9 seconds (about 31 years).
    public static let longestReadyTimeout: Duration = .seconds(1_000_000_000)

    /// The default options: open or create, mode `0600`, capacity 64.
    public init() {}
}
