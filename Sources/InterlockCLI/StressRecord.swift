// The record writers write and readers verify: a run of words plus a checksum, kept in a
// crash-atomic `SharedLocked` of the run's scope (its lock is the run's lock).
//
// Words: [0] the sequence number, [1, 31) data words, each `SplitMix64.mix(sequence +
// index)`, [31] a checksum over the sequence and the data. A writer writes them one at a
// time inside `withExclusive`, with checks between the words, so a `kill -9` that catches a
// writer usually lands mid-update. The `SharedLocked` commits the new record only when the
// closure returns: readers and the next writer must never see a torn record.

import Interlock

/// The shared record (256 bytes, `BitwiseCopyable`: it can live in a lock's segment).
struct StressRecord: BitwiseCopyable, Sendable {
    static let wordCount = 32
    /// Bumped when the record's meaning changes: a named lock made by another version is
    /// then `incompatibleSegment`.
    static let layoutTag: UInt32 = 0x5354_0001   // "ST", version 1

    var words: InlineArray<32, UInt64>

    /// The first record: sequence 0, consistent.
    static let initial: StressRecord = {
        var record = StressRecord(words: InlineArray(repeating: 0))
        record.writeNext { _ in }
        return record
    }()

    /// Whether the words are one consistent record (data and checksum match the sequence).
    var isWhole: Bool {
        let sequence = words[0]
        var checksum = sequence
        for index in 1..<Self.wordCount - 1 {
            let word = words[index]
            if word != SplitMix64.mix(sequence &+ UInt64(index)) { return false }
            checksum = (checksum &<< 7 | checksum &>> 57) ^ word
        }
        return words[Self.wordCount - 1] == checksum
    }

    var sequence: UInt64 { words[0] }

    /// Writes the next record word by word, calling `between(written)` after each word
    /// but the last (`written` words of the new record are in place).
    mutating func writeNext(between: (Int) -> Void) {
        let sequence = words[0] &+ 1
        words[0] = sequence
        between(1)
        var checksum = sequence
        for index in 1..<Self.wordCount - 1 {
            let word = SplitMix64.mix(sequence &+ UInt64(index))
            words[index] = word
            checksum = (checksum &<< 7 | checksum &>> 57) ^ word
            between(index + 1)
        }
        words[Self.wordCount - 1] = checksum
    }
}
