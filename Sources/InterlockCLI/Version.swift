// The version `interlock --version` prints: the latest release in CHANGELOG.md (a test
// checks that they agree).

enum Version {
    /// The release this build belongs to (semantic versioning).
    static let current = "0.1.0"
}
