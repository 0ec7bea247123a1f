// The command table: every command, option, default and help line of `interlock`, in one
// place. `Arguments.swift` parses against it and `Help` renders it, so the help text and
// the behaviour cannot drift apart.

/// The exit statuses of `interlock`, as documented in `--help`.
enum ExitStatus: Int32 {
    /// Success: the run finished with no violation; the command did what was asked.
    case success = 0
    /// A stress run found a violation, a worker failed, or a lock operation failed.
    case failure = 1
    /// A usage error: unknown option, bad value, missing argument.
    case usage = 2
    /// A stress run stopped making progress and the watchdog ended it.
    case hung = 3
}

/// All commands of `interlock`.
enum Commands {
    static let stress = CommandSpec(
        name: "stress",
        summary: "Hammer a lock with reader and writer processes and check that its promises held.",
        options: [
            OptionSpec(name: "--scope", kind: .choice(["threads", "fork", "named"]), defaultValue: "fork",
                       help: "threads: one process, SharedLock(); fork: forked workers, SharedLock.forkShared(); named: workers spawned from this executable, SharedLock(named:)."),
            OptionSpec(name: "--processes", kind: .integer(1...64), defaultValue: "2",
                       help: "Worker processes (fork and named scopes; the threads scope is one process)."),
            OptionSpec(name: "--threads", kind: .integer(1...64), defaultValue: "2",
                       help: "Worker threads per process."),
            OptionSpec(name: "--duration", kind: .duration(unit: .seconds), defaultValue: "10s",
                       help: "How long to run (a bare number is seconds). Not with --operations."),
            OptionSpec(name: "--operations", kind: .integer(1...1_000_000_000_000), defaultValue: nil,
                       help: "Run this many lock operations in total, split evenly over the worker threads, instead of for a duration."),
            OptionSpec(name: "--read-percent", kind: .integer(0...100), defaultValue: "90",
                       help: "Share of operations that take shared (reader) mode; the rest take exclusive (writer) mode."),
            OptionSpec(name: "--hold", kind: .duration(unit: .nanoseconds), defaultValue: "200ns",
                       help: "Busy work inside each critical section, measured on the monotonic clock (a bare number is nanoseconds). Holders re-check the invariants until it has elapsed."),
            OptionSpec(name: "--name", kind: .text(placeholder: "NAME"), defaultValue: nil,
                       help: "The lock to use (named scope only): a name, or a lock file path (anything with a '/', such as ./app.lock); default stress-<pid>, created and removed by the run."),
            OptionSpec(name: "--kill", kind: .flag, defaultValue: nil,
                       help: "Every --kill-every, kill -9 a random worker process that holds the lock and start a replacement, to exercise crash recovery (fork and named scopes)."),
            OptionSpec(name: "--kill-every", kind: .duration(unit: .seconds), defaultValue: "250ms",
                       help: "The interval between kills with --kill."),
            OptionSpec(name: "--watchdog", kind: .duration(unit: .seconds), defaultValue: "10s",
                       help: "End the run (exit 3) when no operation completes for this long, naming the stuck holders."),
            OptionSpec(name: "--seed", kind: .integer(0...Int.max), defaultValue: nil,
                       help: "Seed for the reader/writer choices and the kill schedule; default random, printed in the report."),
            OptionSpec(name: "--json", kind: .flag, defaultValue: nil,
                       help: "Print the report as JSON on standard output."),
        ]
    )

    static let inspect = CommandSpec(
        name: "inspect",
        summary: "Print a lock's header, decoded state word, waiting writer and holder table. Does not register with the lock.",
        positionals: [PositionalSpec(name: "NAME", help: "The lock's name, as given to SharedLock(named:), or a lock file's path (anything with a '/', such as ./app.lock), as given to SharedLock(path:).")],
        options: [
            OptionSpec(name: "--json", kind: .flag, defaultValue: nil, help: "Print the snapshot as JSON."),
        ]
    )

    static let remove = CommandSpec(
        name: "remove",
        summary: "Unlink a named lock's segment, or delete a lock file. Refuses while a live process has it open (is registered in its holder table): they would keep the old lock while new openers get a new one. Never deletes a file that is not a lock.",
        positionals: [PositionalSpec(name: "NAME", help: "The lock's name, or a lock file's path (anything with a '/').")],
        options: [
            OptionSpec(name: "--force", kind: .flag, defaultValue: nil,
                       help: "Unlink even with live holders (they keep their mapping; new openers get a new lock)."),
        ]
    )

    static let hold = CommandSpec(
        name: "hold",
        summary: "A test and debugging aid: open (or create) a lock, acquire it, print \"held\", and release when standard input closes.",
        positionals: [PositionalSpec(name: "NAME", help: "The lock's name, or a lock file's path (anything with a '/').")],
        options: [
            OptionSpec(name: "--mode", kind: .choice(["shared", "exclusive"]), defaultValue: "shared",
                       help: "The mode to hold."),
            OptionSpec(name: "--timeout", kind: .duration(unit: .seconds), defaultValue: nil,
                       help: "Give up (exit 1) if the lock is not acquired within this long (a bare number is seconds); default: wait as long as it takes. While it waits, a line on standard error says so."),
        ]
    )

    /// Internal: one worker process of a named-scope stress run (spawned by `stress`).
    static let stressWorker = CommandSpec(
        name: "stress-worker",
        summary: "Internal: a worker process of 'interlock stress --scope named'.",
        options: [
            OptionSpec(name: "--name", kind: .text(placeholder: "NAME"), defaultValue: nil, help: "The lock."),
            OptionSpec(name: "--data", kind: .text(placeholder: "SHM"), defaultValue: nil, help: "The data segment."),
            OptionSpec(name: "--process", kind: .integer(0...63), defaultValue: nil, help: "The worker's index."),
        ],
        hidden: true
    )

    static let all = [stress, inspect, remove, hold, stressWorker]

    static func named(_ name: String) -> CommandSpec? {
        all.first { $0.name == name }
    }
}

/// Renders help text from the command table.
enum Help {
    /// `interlock --help`: every visible command with all its options.
    static func overview() -> String {
        var lines = [
            "interlock: reader-writer locks between threads and processes.",
            "",
            "USAGE: interlock <command> [options]",
            "",
            "COMMANDS:",
        ]
        for command in Commands.all where !command.hidden {
            lines.append("  \(synopsis(command))")
            lines.append("      \(command.summary)")
        }
        lines.append("")
        for command in Commands.all where !command.hidden && !command.options.isEmpty {
            lines.append("OPTIONS of \(command.name):")
            lines += optionLines(command)
            lines.append("")
        }
        lines += nameLines()
        lines.append("`interlock --version` prints the version.")
        lines.append("")
        lines += exitStatusLines()
        return lines.joined(separator: "\n")
    }

    /// How to write a NAME that looks like an option, and a DURATION.
    private static func nameLines() -> [String] {
        ["A NAME that starts with '-' goes after '--': interlock inspect -- -name.",
         "DURATION: a number with ns, us, ms, s, m (minutes) or h; at most a day."]
    }

    /// `interlock COMMAND --help`.
    static func command(_ command: CommandSpec) -> String {
        var lines = ["USAGE: interlock \(synopsis(command))", "", command.summary, ""]
        if !command.positionals.isEmpty {
            lines.append("ARGUMENTS:")
            for positional in command.positionals {
                lines.append("  \(positional.name)")
                lines.append("      \(positional.help)")
            }
            lines.append("")
            lines += nameLines()
            lines.append("")
        }
        lines.append("OPTIONS:")
        lines += optionLines(command)
        lines.append("  -h, --help")
        lines.append("      Show this help.")
        lines.append("")
        lines += exitStatusLines()
        return lines.joined(separator: "\n")
    }

    private static func synopsis(_ command: CommandSpec) -> String {
        let positionals = command.positionals.map(\.name).joined(separator: " ")
        return [command.name, positionals, command.options.isEmpty ? "" : "[options]"]
            .filter { !$0.isEmpty }.joined(separator: " ")
    }

    private static func optionLines(_ command: CommandSpec) -> [String] {
        var lines: [String] = []
        for option in command.options {
            var head = "  \(option.name)"
            if let placeholder = option.kind.placeholder { head += " \(placeholder)" }
            if let value = option.defaultValue { head += "  (default: \(value))" }
            lines.append(head)
            lines.append("      \(option.help)")
        }
        return lines
    }

    private static func exitStatusLines() -> [String] {
        [
            "EXIT STATUS: 0 success; 1 violation, worker failure or lock error; 2 usage error;",
            "3 a stress run hung and the watchdog ended it.",
        ]
    }
}
