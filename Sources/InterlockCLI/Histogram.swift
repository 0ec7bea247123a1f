// A fixed log-linear latency histogram: no allocation per recorded value.
//
// Values are nanoseconds. Below 16 each value has its own bucket; above, every power of
// two is split into 8 equal sub-buckets, so a bucket's width is at most 1/8 of its lower
// bound (quantiles are exact to within 12.5 %). 496 buckets cover all of `UInt64`. The
// counters live in the stress run's shared memory (one histogram per worker thread and
// mode, each written by one thread only), so they survive a worker killed with `kill -9`.

import Synchronization

enum Histogram {
    /// Values below this have a bucket each.
    static let linearLimit: UInt64 = 16
    /// Sub-buckets per power of two, as a shift.
    static let subBucketBits = 3
    /// The number of buckets.
    static let bucketCount = 16 + (64 - 4) * 8

    /// The bucket of `value`.
    @inline(__always)
    static func bucket(of value: UInt64) -> Int {
        if value < linearLimit { return Int(value) }
        let exponent = 63 - value.leadingZeroBitCount            // ≥ 4
        let sub = Int(truncatingIfNeeded: value >> UInt64(exponent - subBucketBits)) & 7
        return 16 + (exponent - 4) * 8 + sub
    }

    /// The largest value that falls in `bucket`.
    static func upperBound(of bucket: Int) -> UInt64 {
        if bucket < Int(linearLimit) { return UInt64(bucket) }
        let exponent = (bucket - 16) / 8 + 4
        let sub = UInt64((bucket - 16) % 8)
        let width = UInt64(1) << UInt64(exponent - subBucketBits)
        let lower = (8 + sub) << UInt64(exponent - subBucketBits)
        return lower &+ (width - 1)
    }

    /// Records one value into the counters at `buckets` (one writer per histogram).
    @inline(__always)
    static func record(_ value: UInt64, into buckets: UnsafeMutablePointer<Atomic<UInt64>>) {
        (buckets + bucket(of: value)).add(1, ordering: .relaxed)
    }

    /// The summary printed in reports.
    struct Summary: Equatable {
        var count: UInt64 = 0
        var p50: UInt64 = 0
        var p99: UInt64 = 0
        var p999: UInt64 = 0
        var max: UInt64 = 0
    }

    /// Quantiles of merged counts (bucket upper bounds, capped at the exact maximum).
    static func summarize(_ counts: [UInt64], max: UInt64) -> Summary {
        let total = counts.reduce(0, +)
        guard total > 0 else { return Summary() }
        func quantile(_ q: Double) -> UInt64 {
            let rank = Swift.max(1, UInt64((q * Double(total)).rounded(.up)))
            var seen: UInt64 = 0
            for (bucket, count) in counts.enumerated() {
                seen += count
                if seen >= rank { return Swift.min(upperBound(of: bucket), max) }
            }
            return max
        }
        return Summary(count: total, p50: quantile(0.5), p99: quantile(0.99), p999: quantile(0.999), max: max)
    }
}
