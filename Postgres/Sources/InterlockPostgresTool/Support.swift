import InterlockPostgres
import Logging
import PostgresNIO
#if canImport(Glibc)
import Glibc
#endif

/// A usage or setup error: printed, exit status 2.
struct ToolError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The connection settings from the environment.
enum ConnectionSettings {
    static func value(_ name: String, fallback: String) -> String? {
        if let value = getenv("INTERLOCK_PG_\(name)") { return String(cString: value) }
        if let value = getenv(fallback) { return String(cString: value) }
        return nil
    }

    static func configuration() throws -> PostgresConnection.Configuration {
        guard let host = value("HOST", fallback: "PGHOST"), let user = value("USER", fallback: "PGUSER") else {
            throw ToolError("no server: set INTERLOCK_PG_HOST and INTERLOCK_PG_USER (and _PORT, _PASSWORD, _DATABASE), or run under Postgres/scripts/with-postgres.sh")
        }
        let port = value("PORT", fallback: "PGPORT").flatMap(Int.init) ?? 5432
        return PostgresConnection.Configuration(host: host, port: port, username: user,
                                                password: value("PASSWORD", fallback: "PGPASSWORD"),
                                                database: value("DATABASE", fallback: "PGDATABASE"), tls: .disable)
    }
}

/// Parses `500ms`, `2s`, `100us`, `1m`.
func parseDuration(_ text: String) throws -> Duration {
    let units: [(String, Duration)] = [("ns", .nanoseconds(1)), ("us", .microseconds(1)), ("ms", .milliseconds(1)), ("s", .seconds(1)), ("m", .seconds(60))]
    for (suffix, unit) in units where text.hasSuffix(suffix) {
        if let value = Double(text.dropLast(suffix.count)), value >= 0, value <= 86_400 * 1e9 {
            return unit * value
        }
    }
    throw ToolError("bad duration '\(text)': write a number and a unit (us, ms, s, m)")
}

/// Pulls `--flag VALUE` pairs and bare `--switch`es out of an argument list.
struct Options {
    private var values: [String: String] = [:]
    private var switches: Set<String> = []
    private(set) var positional: [String] = []

    init(_ arguments: [String], switches known: Set<String>, values allowed: Set<String>) throws {
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if known.contains(argument) {
                switches.insert(argument)
            } else if allowed.contains(argument) {
                guard index + 1 < arguments.count else { throw ToolError("\(argument) needs a value") }
                values[argument] = arguments[index + 1]
                index += 1
            } else if argument.hasPrefix("--") {
                throw ToolError("unknown option \(argument) (try --help)")
            } else {
                positional.append(argument)
            }
            index += 1
        }
    }

    func has(_ name: String) -> Bool { switches.contains(name) }
    func string(_ name: String) -> String? { values[name] }
    func int(_ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = values[name] else { return value }
        guard let number = Int(text), range.contains(number) else { throw ToolError("\(name) takes a number in \(range.lowerBound)...\(range.upperBound)") }
        return number
    }
    func duration(_ name: String, default value: Duration) throws -> Duration {
        try values[name].map(parseDuration) ?? value
    }
}

/// Monotonic nanoseconds.
@inline(__always) func nowNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Formats nanoseconds as `812 ns`, `1.28 µs`, `36.03 ms`, `1.20 s`.
func formatNanoseconds(_ value: Double) -> String {
    func fixed(_ x: Double) -> String {
        let scaled = (x * 100).rounded() / 100
        var text = "\(scaled)"
        if let dot = text.firstIndex(of: ".") {
            let decimals = text.distance(from: dot, to: text.endIndex) - 1
            if decimals < 2 { text += String(repeating: "0", count: 2 - decimals) }
        }
        return text
    }
    switch value {
    case ..<1_000: return "\(Int(value.rounded())) ns"
    case ..<1_000_000: return "\(fixed(value / 1_000)) µs"
    case ..<1_000_000_000: return "\(fixed(value / 1_000_000)) ms"
    default: return "\(fixed(value / 1_000_000_000)) s"
    }
}

/// `1,234,567`.
func grouped(_ value: Int) -> String {
    let digits = Array(String(value.magnitude))
    var out = ""
    for (index, digit) in digits.enumerated() {
        if index > 0 && (digits.count - index) % 3 == 0 { out.append(",") }
        out.append(digit)
    }
    return (value < 0 ? "-" : "") + out
}

/// Writes a line to standard error, at once.
func printError(_ text: String) {
    writeAll(2, "interlock-pg: \(text)\n")
}

/// Writes a line to standard output, at once (not buffered: tests and the stress parent read
/// it through a pipe).
func say(_ text: String) {
    writeAll(1, text + "\n")
}

private func writeAll(_ fd: Int32, _ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 { if errno == EINTR { continue } else { return } }
        bytes = bytes.dropFirst(n)
    }
}
