// One worker thread's loop, and the checks made inside every hold.
//
// What is checked, and why it cannot report a violation that did not happen:
//
// * Holders per mode. Each slot has an in-section flag (none/shared/exclusive) set
//   right after acquiring and cleared right before releasing, with sequentially
//   consistent atomics. A writer counts the other slots' flags (must be 0); a reader
//   counts exclusive flags (must be 0) and the readers present. If two holds that must
//   exclude each other overlap, the Dekker argument says at least one of the two sees
//   the other's flag. Per-slot flags rather than global counters: a holder killed with
//   `kill -9` between "count +1" and "flag set" would leave a counter nobody can repair
//   exactly, whereas a dead slot's flag is simply cleared by the parent after reaping.
// * Dead holders. The parent bumps `killEpoch` to odd before `kill -9`, reaps the
//   victim, clears its flags, bumps its slots' incarnation, and bumps the epoch to even.
//   A check reads the epoch before and after: if a kill window overlapped it, what it
//   saw may be a dead holder's flag and is excused. Outside such windows every flag
//   belongs to a live holder.
// * The record, a crash-atomic `SharedLocked<StressRecord>` whose lock is the run's
//   lock. A reader checks it in its shared hold (consistent, and unchanged to the end
//   of the hold); a writer checks it before writing the next one word by word, with
//   overlap checks between the words. Any inconsistency is a torn record: with
//   crash-atomic values even a writer killed mid-update must leave none.
// * Dead writers. Around its update a writer stores its token (slot, incarnation) in the
//   region's `updateToken` (not crash-atomic), and clears it after the last word. A
//   token left by a writer whose incarnation is over (or during a kill window) means the
//   writer died inside `withExclusive`: the next writer must be told
//   `previousWriterDied` (else `ownerDeathNotReported`). A live writer's token is an
//   overlap. And no more writers may be told `previousWriterDied` than workers were
//   killed waiting for or holding exclusive mode (else `spuriousOwnerDeath`; the
//   parent counts those before each kill).

import Glibc
import Interlock
import Synchronization

/// A small, fast, seeded generator (SplitMix64) for mode choices.
struct SplitMix64 {
    var state: UInt64

    @inline(__always)
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A well-mixed function of `value`, for the record's data words.
    @inline(__always)
    static func mix(_ value: UInt64) -> UInt64 {
        var generator = SplitMix64(state: value)
        return generator.next()
    }
}

/// One worker thread of a stress run: runs operations until the run stops or its quota
/// is done, checking the invariants inside every hold.
struct StressWorkload: Sendable {
    let region: StressRegion
    /// The record, and through it the run's lock.
    let record: SharedLocked<StressRecord>
    let slot: Int
    /// The process that must stay our parent (process scopes); a worker whose parent
    /// died exits instead of hammering on forever.
    let parentPID: pid_t?

    /// Runs the loop; returns when the run stops or the quota is used up.
    func run() {
        let incarnation = region.slotValue(slot, .incarnation)
        region.slot(slot, .pid).store(UInt64(getpid()), ordering: .relaxed)
        setState(.idle)
        while region.phase == .starting {
            if orphaned() { _exit(1) }
            System.sleep(nanoseconds: 100_000)
        }
        var random = SplitMix64(state: region.get(.seed) ^ (UInt64(slot + 1) &* 0xD6E8_FEB8_6659_FD93) ^ (incarnation &* 0xA076_1D64_78BD_642F))
        let readPercent = region.get(.readPercent)
        let hold = region.get(.holdNanoseconds)
        let token = (incarnation << 16) | UInt64(slot + 1)
        let quota = region.slot(slot, .quota)
        var iteration: UInt64 = 0
        while region.phase == .running {
            if quota.load(ordering: .relaxed) == 0 { break }
            iteration &+= 1
            if iteration & 1023 == 0 && orphaned() { _exit(1) }
            if random.next() % 100 < readPercent {
                sharedOperation(hold: hold)
            } else {
                exclusiveOperation(hold: hold, token: token)
            }
            if quota.load(ordering: .relaxed) != .max { quota.subtract(1, ordering: .relaxed) }
        }
        setState(.finished)
    }

    private func orphaned() -> Bool {
        guard let parentPID else { return false }
        return getppid() != parentPID
    }

    @inline(__always)
    private func setState(_ state: SlotState, at time: UInt64 = System.now()) {
        region.slot(slot, .stateSince).store(time, ordering: .relaxed)
        region.slot(slot, .state).store(state.rawValue, ordering: .relaxed)
    }

    @inline(__always)
    private func recordLatency(_ latency: UInt64, exclusive: Bool) {
        Histogram.record(latency, into: region.histogram(slot, exclusive: exclusive))
        let max = region.slot(slot, exclusive ? .maxExclusive : .maxShared)
        if latency > max.load(ordering: .relaxed) { max.store(latency, ordering: .relaxed) }
    }

    // MARK: Shared

    private func sharedOperation(hold: UInt64) {
        let start = System.now()
        setState(.waitingShared, at: start)
        record.withShared { value in
            let acquired = System.now()
            recordLatency(acquired &- start, exclusive: false)
            setState(.holdingShared, at: acquired)
            region.flag(slot).store(InSection.shared.rawValue, ordering: .sequentiallyConsistent)
            var seen = SeenViolations()
            let sequence = value.sequence
            repeat {
                checkAsReader(&seen)
                if !value.isWhole || value.sequence != sequence { seen.report(.tornRecord, region: region, slot: slot) }
            } while System.now() &- acquired < hold
            // Counted inside the hold: an exclusive count that grows after a shared holder
            // was killed proves the dead share was reclaimed (see `StressRun`).
            region.slot(slot, .opsShared).add(1, ordering: .relaxed)
            region.flag(slot).store(InSection.none.rawValue, ordering: .sequentiallyConsistent)
        }
        setState(.idle)
    }

    /// Counts the readers present and looks for a live writer.
    private func checkAsReader(_ seen: inout SeenViolations) {
        let epochBefore = region.header(.killEpoch).load(ordering: .sequentiallyConsistent)
        var readers: UInt64 = 0
        var writer = false
        for other in 0..<region.slotCount {
            let flag = region.flag(other).load(ordering: .sequentiallyConsistent)
            if flag == InSection.shared.rawValue { readers += 1 } else if flag == InSection.exclusive.rawValue { writer = true }
        }
        if writer && noKillWindow(since: epochBefore) { seen.report(.readerSawWriter, region: region, slot: slot) }
        if readers > region.get(.maxConcurrentReaders) && noKillWindow(since: epochBefore) {
            region.raise(.maxConcurrentReaders, to: readers)
        }
    }

    // MARK: Exclusive

    private func exclusiveOperation(hold: UInt64, token: UInt64) {
        let start = System.now()
        setState(.waitingExclusive, at: start)
        record.withExclusive { value in
            let acquired = System.now()
            recordLatency(acquired &- start, exclusive: true)
            setState(.holdingExclusive, at: acquired)
            region.flag(slot).store(InSection.exclusive.rawValue, ordering: .sequentiallyConsistent)
            var seen = SeenViolations()
            checkDeadWriter(&seen)
            checkAsWriter(&seen)
            if !value.isWhole { seen.report(.tornRecord, region: region, slot: slot) }
            // The update, word by word, with the hold's busy work (overlap checks) spread
            // between the words: a kill that catches this writer usually lands here.
            region.header(.updateToken).store(token, ordering: .sequentiallyConsistent)
            let progress = region.slot(slot, .updateProgress)
            let perWord = hold / UInt64(StressRecord.wordCount)
            value.writeNext { written in
                progress.store(UInt64(written), ordering: .relaxed)
                repeat {
                    checkAsWriter(&seen)
                } while System.now() &- acquired < perWord &* UInt64(written)
            }
            progress.store(0, ordering: .relaxed)
            region.header(.updateToken).store(0, ordering: .sequentiallyConsistent)
            while System.now() &- acquired < hold {
                checkAsWriter(&seen)
            }
            region.slot(slot, .opsExclusive).add(1, ordering: .relaxed)
            region.flag(slot).store(InSection.none.rawValue, ordering: .sequentiallyConsistent)
        }
        setState(.idle)
    }

    /// Checks `previousWriterDied` against the update token a dead writer leaves behind,
    /// and against the parent's count of workers killed around exclusive mode.
    private func checkDeadWriter(_ seen: inout SeenViolations) {
        let died = record.previousWriterDied
        if died {
            let observed = region.header(.previousHolderDiedObserved).pointee.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue
            if observed > region.header(.exclusiveKillCandidates).load(ordering: .sequentiallyConsistent) {
                seen.report(.spuriousOwnerDeath, region: region, slot: slot)
            }
        }
        let epochBefore = region.header(.killEpoch).load(ordering: .sequentiallyConsistent)
        let left = region.header(.updateToken).load(ordering: .sequentiallyConsistent)
        guard left != 0 else { return }
        if writerIsDead(token: left, epochBefore: epochBefore) {
            region.header(.deadWriterUpdatesSeen).add(1, ordering: .relaxed)
            if !died { seen.report(.ownerDeathNotReported, region: region, slot: slot) }
        } else {
            seen.report(.exclusiveOverlap, region: region, slot: slot)
        }
    }

    /// Looks for any other live holder.
    private func checkAsWriter(_ seen: inout SeenViolations) {
        let epochBefore = region.header(.killEpoch).load(ordering: .sequentiallyConsistent)
        var others = false
        for other in 0..<region.slotCount where other != slot {
            if region.flag(other).load(ordering: .sequentiallyConsistent) != InSection.none.rawValue { others = true }
        }
        if others && noKillWindow(since: epochBefore) { seen.report(.exclusiveOverlap, region: region, slot: slot) }
    }

    // MARK: Dead writers

    /// Whether the writer that left `token` is dead: its slot has a new incarnation, or
    /// a kill window overlapped the check.
    private func writerIsDead(token: UInt64, epochBefore: UInt64) -> Bool {
        let writerSlot = Int(token & 0xFFFF) - 1
        guard writerSlot >= 0 && writerSlot < region.slotCount else { return false }
        let incarnation = region.slotValue(writerSlot, .incarnation)
        return incarnation != token >> 16 || !noKillWindow(since: epochBefore)
    }

    /// True when no kill window was open at `epochBefore` or began since.
    @inline(__always)
    private func noKillWindow(since epochBefore: UInt64) -> Bool {
        epochBefore & 1 == 0 && region.header(.killEpoch).load(ordering: .sequentiallyConsistent) == epochBefore
    }
}

/// The violations already counted in one hold (each is counted once per hold), as a bit
/// set: no allocation per operation.
struct SeenViolations {
    var raw: UInt32 = 0

    func contains(_ bit: Int) -> Bool { raw & (1 << UInt32(bit)) != 0 }
    mutating func insert(_ bit: Int) { raw |= 1 << UInt32(bit) }

    mutating func report(_ kind: Violation, region: StressRegion, slot: Int) {
        guard !contains(kind.rawValue) else { return }
        insert(kind.rawValue)
        region.report(kind, slot: slot)
    }
}
