// Information about processes from /proc, for `inspect`. Never the judge of whether a
// holder lives: that is the kernel's record lock (see `Segment`), because pids and
// start times mean different things in other pid and time namespaces.

#if canImport(Glibc)
import Glibc
#endif

/// Process information from /proc.
enum ProcessIdentity {
    /// The start time of `pid` in clock ticks since boot (field 22 of
    /// `/proc/PID/stat`), and whether it is a zombie or dead (state Z or X).
    /// Returns nil when the process does not exist.
    static func status(of pid: Int32) -> (startTime: UInt64, isZombie: Bool)? {
        // "/proc/" + up to 10 digits + "/stat" + NUL fits in 32 bytes.
        var path = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let ok: Bool = withUnsafeMutableBytes(of: &path) { buf in
            var i = 0
            for c in "/proc/".utf8 { buf[i] = c; i += 1 }
            var digits = (UInt64(0), UInt64(0))
            var n = 0
            var v = UInt32(bitPattern: pid)
            withUnsafeMutableBytes(of: &digits) { d in
                repeat { d[n] = UInt8(48 + v % 10); v /= 10; n += 1 } while v > 0
                for k in stride(from: n - 1, through: 0, by: -1) { buf[i] = d[k]; i += 1 }
            }
            for c in "/stat".utf8 { buf[i] = c; i += 1 }
            buf[i] = 0
            return true
        }
        guard ok else { return nil }
        let fd: Int32 = withUnsafeBytes(of: &path) { p in
            open(p.baseAddress!.assumingMemoryBound(to: CChar.self), O_RDONLY | O_CLOEXEC)
        }
        if fd < 0 {
            // /proc cannot tell (not mounted, or hidepid hides the process with ENOENT or
            // EACCES): ask kill(0). ESRCH is the only proof of death; a live process whose
            // start time we cannot read is reported with start time 0 (unknown).
            return kill(pid, 0) == 0 || errno == EPERM ? (0, false) : nil
        }
        defer { close(fd) }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1024) { buf -> (UInt64, Bool)? in
            var count = 0
            while count < buf.count {
                let r = read(fd, buf.baseAddress! + count, buf.count - count)
                if r < 0 { if errno == EINTR { continue }; return nil }
                if r == 0 { break }
                count += r
            }
            // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
            var close = -1
            for k in 0..<count where buf[k] == UInt8(ascii: ")") { close = k }
            guard close >= 0, close + 2 < count else { return nil }
            let state = buf[close + 2]
            // Fields after ')' start with field 3 (state); start time is field 22.
            var field = 3
            var k = close + 2
            var start: UInt64 = 0
            while k < count {
                if buf[k] == UInt8(ascii: " ") {
                    field += 1
                } else if field == 22 {
                    let c = buf[k]
                    if c < 48 || c > 57 { break }
                    start = start &* 10 &+ UInt64(c - 48)
                } else if field > 22 {
                    break
                }
                k += 1
            }
            return (start, state == UInt8(ascii: "Z") || state == UInt8(ascii: "X"))
        }
    }

    /// When the calling process started, in seconds since the Unix epoch (UTC), 0 if
    /// unknown. Computed here, in the process's own namespaces: its start in clock ticks
    /// since boot (/proc/self/stat) is on this time namespace's boot clock, so it is
    /// turned into wall-clock time with this namespace's `CLOCK_BOOTTIME` — a process in
    /// another time namespace records the same instant a host process would.
    static func currentStartTime() -> UInt64 {
        guard let ticks = status(of: getpid())?.startTime, ticks > 0 else { return 0 }
        var boot = timespec(), real = timespec()
        guard clock_gettime(CLOCK_BOOTTIME, &boot) == 0, clock_gettime(CLOCK_REALTIME, &real) == 0 else { return 0 }
        let perSecond = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
        let started = Int64(real.tv_sec) - Int64(boot.tv_sec) + Int64(ticks / perSecond)
        return started > 0 ? UInt64(started) : 0
    }
}
