// `interlock inspect NAME|PATH`: a lock's header, state word, waiting writer and holders.

import Interlock

enum InspectCommand {
    static func run(_ arguments: ParsedArguments) -> ExitStatus {
        let name = arguments.positionals[0]
        let snapshot: LockSnapshot
        do {
            snapshot = try LockTarget(name).inspect()
        } catch {
            return LockErrors.report(error, command: "inspect")
        }
        print(arguments.flag("--json") ? json(snapshot).rendered() : text(snapshot))
        return .success
    }

    /// Holders waiting for exclusive mode.
    static func waitingWriters(_ snapshot: LockSnapshot) -> [LockSnapshot.Holder] {
        snapshot.holders.filter { $0.mode == .waitingExclusive }
    }

    static func text(_ snapshot: LockSnapshot) -> String {
        var lines = [
            "lock \(snapshot.name.map { "'\(Format.printable($0))'" } ?? "(anonymous)")",
            "  layout version \(snapshot.layoutVersion), segment \(snapshot.segmentSize) bytes, holder table capacity \(snapshot.capacity)",
            "  control word \(Format.hex(snapshot.stateWord)): \(Format.decode(snapshot))",
            "  dead holders reclaimed since creation: \(snapshot.recoveries)",
        ]
        let waiting = waitingWriters(snapshot)
        lines.append("  waiting writer: " + (waiting.isEmpty ? "none"
            : waiting.map { "pid \($0.pid) (\($0.isAlive ? "alive" : "dead"))" }.joined(separator: ", ")))
        if snapshot.holders.isEmpty {
            lines.append("  holders: none")
        } else {
            lines.append("  holders:")
            let widths = [10, 18, 22, 0]
            func row(_ cells: [String]) -> String {
                "    " + zip(cells, widths).map { $1 == 0 ? $0 : $0.padding($1) }.joined()
            }
            lines.append(row(["PID", "MODE", "STARTED (UTC)", "STATUS"]))
            for holder in snapshot.holders {
                lines.append(row([String(holder.pid), holder.mode.rawValue, Format.wallClock(epochSeconds: holder.startTime) ?? "unknown",
                                  status(holder)]))
            }
        }
        return lines.joined(separator: "\n")
    }

    /// "alive" or "dead"; for a live holder in another pid namespace, the pid it has here
    /// (from the kernel's record of its liveness lock), or that it is not visible here.
    static func status(_ holder: LockSnapshot.Holder) -> String {
        guard let here = holder.visiblePID else { return "dead" }
        if here == holder.pid { return "alive" }
        return here == 0 ? "alive (in a pid namespace not visible here)" : "alive (pid \(here) here)"
    }

    static func json(_ snapshot: LockSnapshot) -> JSON {
        let waiting = waitingWriters(snapshot)
        return .object([
            ("name", snapshot.name.map(JSON.string) ?? .null),
            ("layoutVersion", .unsigned(UInt64(snapshot.layoutVersion))),
            ("segmentSize", .integer(Int64(snapshot.segmentSize))),
            ("capacity", .integer(Int64(snapshot.capacity))),
            ("stateWord", .unsigned(UInt64(snapshot.stateWord))),
            ("state", .object([
                ("exclusive", .bool(snapshot.isExclusive)),
                ("sharedProcessCount", .integer(Int64(snapshot.sharedProcessCount))),
                ("waitingWriters", .integer(Int64(snapshot.waitingWriters))),
                ("previousHolderDied", .bool(snapshot.previousHolderDied)),
                ("recovering", .bool(snapshot.isRecovering)),
            ])),
            ("recoveries", .integer(Int64(snapshot.recoveries))),
            ("waitingWriter", waiting.first.map { .integer(Int64($0.pid)) } ?? .null),
            ("holders", .array(snapshot.holders.map { holder in
                .object([
                    ("slot", .integer(Int64(holder.slot))),
                    ("pid", .integer(Int64(holder.pid))),
                    ("visiblePid", holder.visiblePID.map { .integer(Int64($0)) } ?? .null),
                    ("mode", .string(holder.mode.rawValue)),
                    ("startTime", .unsigned(holder.startTime)),  // seconds since the epoch
                    ("startedAt", Format.wallClock(epochSeconds: holder.startTime).map(JSON.string) ?? .null),
                    ("alive", .bool(holder.isAlive)),
                ])
            })),
        ])
    }
}

extension String {
    /// Left-aligned in a column of `width`.
    func padding(_ width: Int) -> String {
        self + String(repeating: " ", count: Swift.max(1, width - count))
    }
}
