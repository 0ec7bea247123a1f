// Adoption (issue 14): the license, the changelog's release, the README's platform and
// dependency lines, the non-Linux #error, and the benchmark manifest's platforms. Docs and
// packaging cannot fail at run time, so these read the files.

import Foundation
import Testing

@Suite("Packaging and docs for a release")
struct PackagingTests {
    private func read(_ relative: String) throws -> String {
        try String(contentsOfFile: Repository.path(relative), encoding: .utf8)
    }

    @Test func licenseIsApache2() throws {
        let license = try read("LICENSE")
        #expect(license.contains("Apache License"))
        #expect(license.contains("Version 2.0, January 2004"))
        #expect(license.contains("END OF TERMS AND CONDITIONS"))
        #expect(try read("README.md").contains("Apache License, Version 2.0"))
    }

    @Test func changelogHasAnUnreleasedHeadingAboveTheRelease() throws {
        let headings = try read("CHANGELOG.md").split(separator: "\n").filter { $0.hasPrefix("## [") }
        #expect(headings.first == "## [Unreleased]")
        #expect(headings.dropFirst().first == "## [0.1.0] - 2026-12-02")
    }

    @Test func readmeSaysLinuxOnlyAndHowToDepend() throws {
        let readme = try read("README.md")
        #expect(readme.contains("Linux with glibc only"))
        #expect(readme.contains(#".package(url: "https://example.com/interlock.git", from: "0.1.0")"#))
        #expect(readme.contains(#".product(name: "Interlock", package: "interlock")"#))
        #expect(readme.contains("interlock hold NAME [--mode shared|exclusive] [--timeout D]"))
        #expect(readme.contains("interlock --version"))
    }

    @Test func otherPlatformsStopAtOneError() throws {
        let platform = try read("Sources/Interlock/Platform.swift")
        #expect(platform.contains("#if !os(Linux) || !canImport(Glibc)"))
        #expect(platform.contains("#error(\"Interlock supports Linux (glibc) only"))
    }

    @Test func benchmarksDoNotDeclareMacOS() throws {
        #expect(!(try read("Benchmarks/Package.swift")).contains(".macOS"))
    }
}
