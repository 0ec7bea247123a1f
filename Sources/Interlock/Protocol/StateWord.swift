/// The process-level state word: one `Atomic<UInt32>` in shared memory, also the futex
/// word every cross-process waiter sleeps on.
///
/// Algorithm: a counting reader-writer lock with writer preference, whose truth for
/// *live* processes is the holder table (see `Segment`). Every transition is a single
/// compare-and-swap on this word, bracketed by the process's holder-table entry
/// (`Entry.inFlight` set before the CAS, the new mode stored after it), so that a
/// recovering process can rebuild the word from the table alone (see `Recovery`).
///
/// Fairness: once any writer waits (`waiting` non-zero), no new shared hold is granted
/// in any process — including threads of a process that already holds shared mode —
/// until every waiting writer has been served or has withdrawn.
///
/// ```
///  31        30      29          28           27 … 16          15 … 0
/// [EXCLUSIVE|PARKED|RECOVERING|OWNER_DIED| waiting writers | shared processes]
/// ```
@usableFromInline
enum StateWord {
    /// Bits 0…15: processes holding shared mode. +1 by a process's first shared holder,
    /// −1 by its last. Never non-zero together with `exclusive`.
    @usableFromInline static let oneShared: UInt32 = 1
    @usableFromInline static let sharedMask: UInt32 = 0x0000_FFFF
    /// Bits 16…27: processes with a writer waiting for exclusive mode. While non-zero no
    /// new shared hold is granted. A writer that times out subtracts itself.
    @usableFromInline static let oneWaiting: UInt32 = 1 << 16
    @usableFromInline static let waitingMask: UInt32 = 0x0FFF_0000
    /// Bit 28: the last exclusive holder died holding the lock. Set only by recovery;
    /// cleared (and reported) by the next exclusive acquisition.
    @usableFromInline static let ownerDied: UInt32 = 1 << 28
    /// Bit 29: a process is rebuilding the word from the holder table. While set, no
    /// other transition may happen (every CAS expects it clear), except setting `parked`.
    @usableFromInline static let recovering: UInt32 = 1 << 29
    /// Bit 30: at least one process sleeps on the futex; whoever makes progress possible
    /// clears it and wakes everybody.
    @usableFromInline static let parked: UInt32 = 1 << 30
    /// Bit 31: one process holds exclusive mode.
    @usableFromInline static let exclusive: UInt32 = 1 << 31

    /// The largest holder table the word can count (12 bits of waiting writers).
    static let maximumCapacity = 4095

    @inlinable static func sharedCount(_ s: UInt32) -> Int { Int(s & sharedMask) }
    @inlinable static func waitingCount(_ s: UInt32) -> Int { Int((s & waitingMask) >> 16) }
}
