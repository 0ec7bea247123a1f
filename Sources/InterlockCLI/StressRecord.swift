// The record writers write and readers verify: a run of words plus a checksum.
//
// Words (see `StressRegion.recordWords`): [0] the dirty token, [1] the sequence number,
// [2, 31) data words, each `SplitMix64.mix(sequence + index)`, [31] a checksum over the
// sequence and the data. A writer stores the token (its slot and incarnation; never 0)
// before touching anything else and clears it last, so a writer killed mid-record
// leaves the token behind, and a reader can tell a torn record from a whole one.

import Synchronization

/// What a reader found.
enum RecordRead: Equatable {
    /// Not dirty, consistent, and unchanged while it was read.
    case whole
    /// Not dirty, but inconsistent or changed while it was read: someone wrote
    /// concurrently.
    case torn
    /// Dirty with this token; `epochBefore` is the kill epoch read before the token.
    case dirty(token: UInt64, epochBefore: UInt64)
}

extension StressRegion {
    private static let dataRange = 2..<(recordWords - 1)

    /// Reads and checks the record.
    func readRecord() -> RecordRead {
        let epochBefore = header(.killEpoch).load(ordering: .sequentiallyConsistent)
        let dirty = record(0).load(ordering: .sequentiallyConsistent)
        if dirty != 0 { return .dirty(token: dirty, epochBefore: epochBefore) }
        let sequence = record(1).load(ordering: .acquiring)
        var checksum = sequence
        var consistent = true
        for index in Self.dataRange {
            let word = record(index).load(ordering: .relaxed)
            if word != SplitMix64.mix(sequence &+ UInt64(index)) { consistent = false }
            checksum = (checksum &<< 7 | checksum &>> 57) ^ word
        }
        if record(Self.recordWords - 1).load(ordering: .relaxed) != checksum { consistent = false }
        let dirtyAfter = record(0).load(ordering: .sequentiallyConsistent)
        let sequenceAfter = record(1).load(ordering: .relaxed)
        return consistent && dirtyAfter == 0 && sequenceAfter == sequence ? .whole : .torn
    }

    /// Writes the next record, marked dirty with `token` while it is incomplete (a
    /// token of 0 only at initialisation, before any worker exists).
    func writeRecord(token: UInt64) {
        record(0).store(token, ordering: .sequentiallyConsistent)
        let sequence = record(1).load(ordering: .relaxed) &+ 1
        record(1).store(sequence, ordering: .relaxed)
        var checksum = sequence
        for index in Self.dataRange {
            let word = SplitMix64.mix(sequence &+ UInt64(index))
            record(index).store(word, ordering: .relaxed)
            checksum = (checksum &<< 7 | checksum &>> 57) ^ word
        }
        record(Self.recordWords - 1).store(checksum, ordering: .relaxed)
        record(0).store(0, ordering: .sequentiallyConsistent)
    }
}
