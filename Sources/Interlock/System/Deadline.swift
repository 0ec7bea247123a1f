// Durations to deadlines, saturating: the one place where a `Duration` becomes a count of
// nanoseconds or an absolute CLOCK_MONOTONIC deadline.
//
// A `Duration` holds up to about ±2.9 × 10^11 years; Int64 nanoseconds hold ±292 years.
// Every conversion saturates instead of trapping (`*`, `+`) or wrapping (`&+`): a huge
// timeout means "wait as long as it takes", never "give up at once" or a crash.

extension Sys {
    /// `duration` in whole nanoseconds, saturating at `Int64.min` / `Int64.max`
    /// (sub-nanosecond parts are dropped, towards zero).
    static func saturatingNanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let whole = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if whole.overflow { return seconds < 0 ? .min : .max }
        let sum = whole.partialValue.addingReportingOverflow(attoseconds / 1_000_000_000)
        if sum.overflow { return attoseconds < 0 ? .min : .max }
        return sum.partialValue
    }

    /// The absolute CLOCK_MONOTONIC deadline `timeout` after `now`, in nanoseconds:
    /// `now` for a zero or negative timeout, `Int64.max` (never) when the sum would
    /// overflow.
    static func deadline(after timeout: Duration, now: Int64 = Sys.monotonicNanoseconds()) -> Int64 {
        let nanoseconds = saturatingNanoseconds(timeout)
        if nanoseconds <= 0 { return now }
        let (sum, overflow) = now.addingReportingOverflow(nanoseconds)
        return overflow ? .max : sum
    }
}
