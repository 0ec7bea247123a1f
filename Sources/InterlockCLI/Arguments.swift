// The command-line parser: one table per command (see `Commands.swift`), one parser for all.
//
// The root package has no dependencies, so this is ours. It is deliberately small:
// options are `--name value`, `--name=value` or a bare `--flag`; everything else is a
// positional argument. Every value is validated here, against the kind its table entry
// declares, so a command never sees a malformed value and a bad one is reported in one
// line, with the option's name, before any work starts.

/// A usage error: printed as one line on standard error, exit status 2.
struct UsageError: Error {
    /// The line to print, already prefixed with the command (`interlock stress: …`).
    var message: String
}

/// The unit a bare number means for a duration option (`--duration 10` is 10 s,
/// `--hold 200` is 200 ns). A suffix (`ns`, `us`, `ms`, `s`, `m`, `h`) always wins.
enum DurationUnit: String {
    case nanoseconds = "ns"
    case seconds = "s"
}

/// What an option accepts, and how its text is validated.
enum OptionKind {
    /// Takes no value; present or absent.
    case flag
    /// An integer within the range.
    case integer(ClosedRange<Int>)
    /// A duration such as `250ms` or `2s`; a bare number is in `unit`.
    case duration(unit: DurationUnit)
    /// One of the listed words.
    case choice([String])
    /// Any non-empty text.
    case text(placeholder: String)

    /// The placeholder shown in help: `N`, `DURATION`, `threads|fork|named`.
    var placeholder: String? {
        switch self {
        case .flag: nil
        case .integer: "N"
        case .duration: "DURATION"
        case .choice(let words): words.joined(separator: "|")
        case .text(let placeholder): placeholder
        }
    }
}

/// One row of a command's option table.
struct OptionSpec {
    /// The spelling, with its dashes: `--threads`.
    var name: String
    var kind: OptionKind
    /// The default as the user would type it, or nil when the option has none (help
    /// then shows `help` alone, which should say what happens when it is absent).
    var defaultValue: String?
    var help: String
}

/// One positional argument of a command.
struct PositionalSpec {
    var name: String
    var help: String
}

/// A subcommand: its name, help text, and option table.
struct CommandSpec {
    var name: String
    var summary: String
    var positionals: [PositionalSpec] = []
    var options: [OptionSpec] = []
    /// Hidden commands are internal (`stress-worker`) and left out of `--help`.
    var hidden = false

    func option(named name: String) -> OptionSpec? {
        options.first { $0.name == name }
    }
}

/// A validated option value.
enum OptionValue: Equatable {
    case flag
    case integer(Int)
    case nanoseconds(UInt64)
    case text(String)
}

/// The result of parsing one command line against one `CommandSpec`.
struct ParsedArguments {
    var command: CommandSpec
    var positionals: [String]
    /// The options given on the command line, validated. Absent options are not here.
    var given: [String: OptionValue]

    /// Whether the option appeared on the command line.
    func has(_ name: String) -> Bool { given[name] != nil }

    /// The option's value, or its table default.
    func value(_ name: String) -> OptionValue? {
        if let value = given[name] { return value }
        guard let spec = command.option(named: name) else {
            preconditionFailure("option \(name) is not in the table of '\(command.name)'")
        }
        guard let text = spec.defaultValue else { return nil }
        do {
            return try ArgumentParser.validate(text, for: spec, command: command.name)
        } catch {
            preconditionFailure("bad default for \(name): \(error.message)")
        }
    }

    func integer(_ name: String) -> Int? {
        if case .integer(let n) = value(name) { return n }
        return nil
    }

    func nanoseconds(_ name: String) -> UInt64? {
        if case .nanoseconds(let n) = value(name) { return n }
        return nil
    }

    func text(_ name: String) -> String? {
        if case .text(let s) = value(name) { return s }
        return nil
    }

    func flag(_ name: String) -> Bool { given[name] == .flag }

    /// A usage error for this command, for checks across options.
    func error(_ message: String) -> UsageError {
        UsageError(message: "interlock \(command.name): \(message)")
    }
}

/// Parses and validates command lines against the tables.
enum ArgumentParser {
    /// Parses `arguments` (the words after the command name).
    ///
    /// `--help`/`-h` is not handled here: callers look for it first, so that
    /// `interlock stress --bogus --help` still shows help.
    static func parse(_ arguments: [String], for command: CommandSpec) throws(UsageError) -> ParsedArguments {
        var result = ParsedArguments(command: command, positionals: [], given: [:])
        let prefix = "interlock \(command.name)"
        var index = 0
        var onlyPositionals = false
        while index < arguments.count {
            let word = arguments[index]
            index += 1
            if onlyPositionals || !word.hasPrefix("-") || word == "-" {
                result.positionals.append(word)
                continue
            }
            if word == "--" {
                onlyPositionals = true
                continue
            }
            var name = word
            var inlineValue: String?
            if let equals = word.firstIndex(of: "=") {
                name = String(word[..<equals])
                inlineValue = String(word[word.index(after: equals)...])
            }
            guard let spec = command.option(named: name) else {
                if let positional = command.positionals.first {
                    // A lock name may start with '-': it goes after '--'.
                    throw UsageError(message: "\(prefix): unknown option '\(name)' (see '\(prefix) --help'; "
                        + "a \(positional.name) that starts with '-' goes after '--': \(prefix) -- \(word))")
                }
                throw UsageError(message: "\(prefix): unknown option '\(name)' (see '\(prefix) --help')")
            }
            if result.given[name] != nil {
                throw UsageError(message: "\(prefix): \(name) given twice")
            }
            if case .flag = spec.kind {
                if inlineValue != nil {
                    throw UsageError(message: "\(prefix): \(name) takes no value")
                }
                result.given[name] = .flag
                continue
            }
            let text: String
            if let inlineValue {
                text = inlineValue
            } else if index < arguments.count {
                text = arguments[index]
                index += 1
            } else {
                throw UsageError(message: "\(prefix): \(name) needs a value (\(spec.kind.placeholder ?? "value"))")
            }
            result.given[name] = try validate(text, for: spec, command: command.name)
        }
        let expected = command.positionals.count
        if result.positionals.count < expected {
            let missing = command.positionals[result.positionals.count].name
            throw UsageError(message: "\(prefix): missing \(missing) (see '\(prefix) --help')")
        }
        if result.positionals.count > expected {
            let extra = result.positionals[expected]
            throw UsageError(message: "\(prefix): unexpected argument '\(extra)'")
        }
        return result
    }

    /// Validates one option's text against its kind.
    static func validate(_ text: String, for spec: OptionSpec, command: String) throws(UsageError) -> OptionValue {
        let prefix = "interlock \(command): \(spec.name)"
        switch spec.kind {
        case .flag:
            return .flag
        case .integer(let range):
            guard let n = Int(text), range.contains(n) else {
                throw UsageError(message: "\(prefix) expects an integer from \(range.lowerBound) to \(range.upperBound), got '\(text)'")
            }
            return .integer(n)
        case .duration(let unit):
            guard let ns = parseDuration(text, unit: unit) else {
                throw UsageError(message: "\(prefix) expects a duration such as 500ms, 2s, 2m or 200ns (at most a day), got '\(text)'")
            }
            return .nanoseconds(ns)
        case .choice(let words):
            guard words.contains(text) else {
                throw UsageError(message: "\(prefix) expects one of \(words.joined(separator: ", ")), got '\(text)'")
            }
            return .text(text)
        case .text:
            guard !text.isEmpty else {
                throw UsageError(message: "\(prefix) expects a non-empty value")
            }
            return .text(text)
        }
    }

    /// `10`, `1.5s`, `250ms`, `20us`, `200ns`, `2m`, `1h` → nanoseconds; nil when
    /// malformed, negative, or over a day. (`m` is minutes; milliseconds are `ms`.)
    static func parseDuration(_ text: String, unit: DurationUnit) -> UInt64? {
        // Longer suffixes first: "ms" before "s" and "m".
        let suffixes: [(String, Double)] = [("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9),
                                            ("m", 60e9), ("h", 3600e9)]
        var number = Substring(text)
        var scale = unit == .seconds ? 1e9 : 1
        for (suffix, factor) in suffixes where text.hasSuffix(suffix) {
            number = text.dropLast(suffix.count)
            scale = factor
            break
        }
        guard !number.isEmpty, number.allSatisfy({ $0.isNumber || $0 == "." }),
              let value = Double(number), value >= 0 else { return nil }
        let ns = value * scale
        guard ns <= 86_400e9 else { return nil }
        return UInt64(ns.rounded())
    }
}
