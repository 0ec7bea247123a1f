// The `interlock` command's edges (issue 14 items 6 and 8): --version, names after '--',
// control characters, something else in a lock's place, `hold --timeout` and its waiting
// line, minutes in durations, and start times shown as times.

import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("interlock CLI: names, hold, version, start times", .serialized, .timeLimit(.minutes(2)))
struct CLIEdgeTests {
    @Test("--version prints the latest release of the CHANGELOG")
    func version() throws {
        let result = try CLIRunner.run(["--version"])
        #expect(result.status == 0)
        let changelog = try String(contentsOfFile: Repository.path("CHANGELOG.md"), encoding: .utf8)
        let release = changelog.split(separator: "\n").first { $0.hasPrefix("## [") && !$0.hasPrefix("## [Unreleased]") }
        let version = release.flatMap { $0.split(separator: "]").first?.dropFirst(4) }
        #expect(version != nil, "no release heading in CHANGELOG.md")
        #expect(result.stdout == "interlock \(version ?? "?")\n", "stdout: \(result.stdout)")
    }

    @Test("a name that starts with '-' works after '--', and the error without it says so")
    func dashName() throws {
        let name = "-" + CLIRunner.uniqueName("dash")
        defer { _ = try? CLIRunner.run(["remove", "--force", "--", name]) }
        let holder = try CLIRunner.start(["hold", "--", name])
        #expect(try holder.readLine() == "held")
        let inspected = try CLIRunner.run(["inspect", "--json", "--", name])
        #expect(inspected.status == 0, "stderr: \(inspected.stderr)")
        #expect(try inspected.jsonObject()["name"] as? String == name)
        #expect(try holder.release() == 0)

        let confused = try CLIRunner.run(["inspect", name])
        #expect(confused.status == 2)
        #expect(confused.stderr.split(separator: "\n").count == 1, "stderr: \(confused.stderr)")
        #expect(confused.stderr.contains("interlock inspect -- \(name)"), "stderr: \(confused.stderr)")

        let removed = try CLIRunner.run(["remove", "--", name])
        #expect(removed.status == 0, "stderr: \(removed.stderr)")
    }

    @Test("a name with a control character is a usage error on one line")
    func controlCharacterName() throws {
        let result = try CLIRunner.run(["inspect", "two\nlines"])
        #expect(result.status == 2)
        #expect(result.stderr.split(separator: "\n").count == 1, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("two\\nlines"), "stderr: \(result.stderr)")
        #expect(result.stderr.contains("control character"), "stderr: \(result.stderr)")
    }

    @Test("a directory in the lock's place is named as such")
    func directoryInPlace() throws {
        let name = CLIRunner.uniqueName("dir")
        let path = "/dev/shm/interlock." + name
        try #require(mkdir(path, 0o700) == 0)
        defer { rmdir(path) }
        for command in ["inspect", "remove"] {
            let result = try CLIRunner.run([command, name])
            #expect(result.status == 1)
            #expect(result.stderr.contains("is a directory"), "\(command): \(result.stderr)")
            #expect(!result.stderr.contains("rejected"), "\(command): \(result.stderr)")
        }
    }

    @Test("hold says on stderr that it waits, and --timeout gives up with exit 1")
    func holdWaitsVisiblyAndTimesOut() throws {
        let name = CLIRunner.uniqueName("hold-wait")
        defer { _ = try? CLIRunner.run(["remove", name, "--force"]) }
        let holder = try CLIRunner.start(["hold", name, "--mode", "exclusive"])
        #expect(try holder.readLine() == "held")

        let gaveUp = try CLIRunner.run(["hold", name, "--timeout", "100ms"])
        #expect(gaveUp.status == 1, "stderr: \(gaveUp.stderr)")
        let lines = gaveUp.stderr.split(separator: "\n")
        #expect(lines.first?.contains("waiting for '\(name)'") == true, "stderr: \(gaveUp.stderr)")
        #expect(lines.last?.contains("timed out") == true, "stderr: \(gaveUp.stderr)")
        #expect(!gaveUp.stdout.contains("held"))

        // Without a timeout it says so once, then gets the lock when the holder lets go.
        let waiter = try CLIRunner.start(["hold", name, "--timeout", "2m"])
        let waiting = try readLine(waiter.stderr)
        #expect(waiting.contains("waiting for '\(name)' in shared mode"), "stderr: \(waiting)")
        #expect(try holder.release() == 0)
        #expect(try waiter.readLine() == "held")
        #expect(try waiter.release() == 0)
    }

    @Test("durations accept minutes and hours, up to a day", arguments: [("2m", 0), ("1.5m", 0), ("1h", 0), ("25h", 2), ("2x", 2)])
    func durationUnits(text: String, status: Int32) throws {
        let name = CLIRunner.uniqueName("units")
        defer { _ = try? CLIRunner.run(["remove", name, "--force"]) }
        let result = try CLIRunner.run(["hold", name, "--timeout", text])
        #expect(result.status == status, "\(text): \(result.stderr)")
        if status == 0 { #expect(result.stdout == "held\n") }
    }

    @Test("inspect shows start times as wall-clock times (UTC)")
    func startTimesAreTimes() throws {
        let name = CLIRunner.uniqueName("started")
        defer { _ = try? CLIRunner.run(["remove", name, "--force"]) }
        let holder = try CLIRunner.start(["hold", name])
        #expect(try holder.readLine() == "held")
        let json = try CLIRunner.run(["inspect", name, "--json"])
        let holders = try json.jsonObject()["holders"] as? [[String: Any]] ?? []
        let started = holders.first { $0["pid"] as? Int == Int(holder.pid) }?["startedAt"] as? String
        let date = started.flatMap { ISO8601DateFormatter().date(from: $0) }
        #expect(date != nil, "startedAt: \(String(describing: started))")
        if let date {
            // The holder started moments ago (btime has one-second resolution, clocks drift).
            #expect(abs(date.timeIntervalSinceNow) < 120, "started \(date), now \(Date())")
        }
        let text = try CLIRunner.run(["inspect", name])
        #expect(text.stdout.contains("STARTED (UTC)"))
        if let started { #expect(text.stdout.contains(started), "text: \(text.stdout)") }
        #expect(try holder.release() == 0)
    }

    /// Reads one line from `fd` (blocking until it comes or the writer exits).
    private func readLine(_ fd: Int32) throws -> String {
        var line = [UInt8]()
        var byte: UInt8 = 0
        while true {
            let count = read(fd, &byte, 1)
            if count == 1 {
                if byte == UInt8(ascii: "\n") { break }
                line.append(byte)
            } else if count == 0 {
                break
            } else if errno != EINTR {
                throw CLIError(description: "read: errno \(errno)")
            }
        }
        return String(decoding: line, as: UTF8.self)
    }
}

/// Files of this repository, found from this source file's path.
enum Repository {
    static func path(_ relative: String, file: String = #filePath) -> String {
        var url = URL(fileURLWithPath: file)
        for _ in 0..<3 { url.deleteLastPathComponent() }  // Tests/InterlockTests/<file>
        return url.appendingPathComponent(relative).path
    }
}
