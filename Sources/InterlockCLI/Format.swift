// Human-readable numbers for reports (no Foundation: fixed-point by hand).

import Glibc
import Interlock

enum Format {
    /// `value` with `digits` decimals.
    static func fixed(_ value: Double, digits: Int) -> String {
        guard value.isFinite else { return "-" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        let whole = UInt64(scaled / scale)
        let fraction = UInt64(scaled - Double(whole) * scale)
        let sign = value < 0 && scaled != 0 ? "-" : ""
        guard digits > 0 else { return sign + String(whole) }
        let text = String(fraction)
        return sign + String(whole) + "." + String(repeating: "0", count: digits - text.count) + text
    }

    /// Nanoseconds in the largest unit that keeps 1–3 integer digits: `850 ns`, `1.25 µs`.
    static func duration(_ nanoseconds: UInt64) -> String {
        let value = Double(nanoseconds)
        if nanoseconds < 1_000 { return "\(nanoseconds) ns" }
        if nanoseconds < 1_000_000 { return fixed(value / 1e3, digits: 2) + " µs" }
        if nanoseconds < 1_000_000_000 { return fixed(value / 1e6, digits: 2) + " ms" }
        return fixed(value / 1e9, digits: 2) + " s"
    }

    /// Seconds with one decimal: `3.2 s`.
    static func seconds(_ nanoseconds: UInt64) -> String {
        fixed(Double(nanoseconds) / 1e9, digits: 1) + " s"
    }

    /// A count with thousands separators: `1,234,567`.
    static func count(_ value: UInt64) -> String {
        let digits = Array(String(value))
        var out = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return out
    }

    static func hex(_ value: UInt32) -> String {
        let text = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: 8 - text.count) + text
    }

    static func yesNo(_ value: Bool) -> String { value ? "yes" : "no" }

    /// The decoded fields of a snapshot's state word.
    static func decode(_ snapshot: LockSnapshot) -> String {
        "exclusive \(yesNo(snapshot.isExclusive)), shared processes \(snapshot.sharedProcessCount), "
            + "waiting writers \(snapshot.waitingWriters), previous holder died \(yesNo(snapshot.previousHolderDied)), "
            + "readers' turn \(yesNo(snapshot.stateWord & 0b1000 != 0))"  // READ_TURN, bit 3 (see Protocol/Control.swift)
    }

    /// `text` with control characters escaped (`\n`, `\u{1B}`), so that a name can never
    /// break a line of output or drive the terminal.
    static func printable(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar.properties.generalCategory == .control {
                out += scalar == "\n" ? "\\n" : scalar == "\t" ? "\\t" : "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// A process start time in seconds since the Unix epoch (what
    /// `LockSnapshot.Holder.startTime` holds) as ISO 8601 in UTC (`2026-12-02T14:05:03Z`).
    /// Nil when the start time is unknown (0) or out of range.
    static func wallClock(epochSeconds: UInt64) -> String? {
        guard epochSeconds > 0, epochSeconds < UInt64(Int32.max) * 4 else { return nil }
        var seconds = time_t(epochSeconds)
        var parts = tm()
        guard gmtime_r(&seconds, &parts) != nil else { return nil }
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))"
            + "T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
    }
}

