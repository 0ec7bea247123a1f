/// The control word of a `SharedLock` (layout 3): one `Atomic<UInt32>`, in the lock's
/// segment (process scopes) or in the per-process state (threads scope). It is also the
/// futex word that readers and the draining writer sleep on, each class with its own
/// futex bitset (`Control.readerBits`, `Control.drainBits`), so a wake-up reaches only
/// the waiters that can make progress. Writers waiting for a write phase sleep on a
/// separate event counter (`Core.writerSeq`).
///
/// The algorithm (see `Core` and the DocC article "Protocol"): each participant (a
/// process; the one process of the threads scope) counts its shared holders in its own
/// holder-table entry, and a writer announces itself here. A reader bumps its count
/// *then* reads this word; a writer sets `writer` *then* reads the counts (both
/// sequentially consistent), so at least one of them sees the other (Dekker). The word
/// holds no counts, so a dead process leaves nothing here but, at most, the write phase
/// it owned (`owner` names its entry).
///
/// ```
///  31 … 29   28 … 16    15 … 5   4           3          2                1           0
/// [ unused |  owner   | unused | OWNER_DIED | READ_TURN | READERS_BLOCKED | DRAIN_WAIT | WRITER ]
/// ```
@usableFromInline
enum Control {
    /// Bit 0: a writer owns the write phase: it is draining the readers that were
    /// inside when it arrived, or it holds exclusive mode. New readers back off.
    @usableFromInline static let writer: UInt32 = 1 << 0
    /// Bit 1: the writer owning the write phase sleeps on this word (bitset
    /// `drainBits`) until the shared counts drain; a reader whose entry's count reaches
    /// 0 clears the bit and wakes it.
    @usableFromInline static let drainWait: UInt32 = 1 << 1
    /// Bit 2: readers sleep on this word (bitset `readerBits`) until the write phase
    /// ends; whoever ends it wakes them all.
    @usableFromInline static let readersBlocked: UInt32 = 1 << 2
    /// Bit 3: the last write phase ended while readers were blocked. No writer may start
    /// a write phase until every live entry's `blocked` count is 0: the readers that
    /// waited for that phase go in before the next writer (phase fairness). Cleared by
    /// the writer that starts the next phase.
    @usableFromInline static let readTurn: UInt32 = 1 << 3
    /// Bit 4: a writer died holding exclusive mode. Set when its phase is reclaimed;
    /// reported (`previousHolderDied`) to the writer that next *holds* exclusive mode,
    /// which clears it once it holds (it stays set while a phase drains: that writer may
    /// still die or give up before it holds).
    @usableFromInline static let ownerDied: UInt32 = 1 << 4
    /// Bits 16…28: the entry (slot + 1) of the writer owning the write phase, 0 when
    /// `writer` is clear. 13 bits: slots 0…4094 (`maximumCapacity`).
    @usableFromInline static let ownerShift: UInt32 = 16
    @usableFromInline static let ownerMask: UInt32 = 0x1FFF << 16

    /// Futex bitset of readers waiting for a write phase to end.
    @usableFromInline static let readerBits: UInt32 = 1
    /// Futex bitset of the writer waiting for readers to drain.
    @usableFromInline static let drainBits: UInt32 = 2

    /// The largest holder table the word can name (`owner` is slot + 1 in 13 bits, and
    /// the table has one reserved entry after the last).
    static let maximumCapacity = 4095

    /// The `owner` field for entry `slot`.
    @inlinable static func owner(_ slot: Int32) -> UInt32 { UInt32(slot + 1) << ownerShift }

    /// The slot named by `owner`, or nil when no writer owns the phase.
    @inlinable static func ownerSlot(_ c: UInt32) -> Int32? {
        let o = (c & ownerMask) >> ownerShift
        return o == 0 ? nil : Int32(o) - 1
    }

    /// The word once the current write phase ends: no writer; blocked readers, if any,
    /// get the read turn.
    @inlinable static func phaseEnded(_ c: UInt32) -> UInt32 {
        var n = c & ~(writer | ownerMask | drainWait)
        if c & readersBlocked != 0 { n = (n & ~readersBlocked) | readTurn }
        return n
    }
}
