// Things a benchmark needs (a lock, helper threads or processes, a named segment) are made in
// the benchmark's setup and undone in its teardown, never at registration: listing the
// benchmarks, or running another one, creates nothing.

import Glibc
import Interlock

final class Fixture<Value>: @unchecked Sendable {
    // Sound: the harness calls setup, the benchmark closure and teardown one after another on
    // one thread; `value` is not touched concurrently.
    private let make: () throws -> Value
    private let undo: (Value) throws -> Void
    private var value: Value?

    init(_ make: @escaping () throws -> Value, undo: @escaping (Value) throws -> Void = { _ in }) {
        self.make = make
        self.undo = undo
    }

    func setUp() throws { value = try make() }

    func tearDown() throws {
        guard let value else { return }
        self.value = nil
        try undo(value)
    }

    /// The value made by `setUp`.
    var current: Value {
        guard let value else { fatalError("Fixture used outside setup/teardown") }
        return value
    }
}

/// A lock name no other run uses: the pid plus a per-process sequence number.
func uniqueLockName(_ purpose: String) -> String {
    uniqueNameSequence += 1
    return "bench-\(purpose)-\(getpid())-\(uniqueNameSequence)"
}

nonisolated(unsafe) private var uniqueNameSequence = 0 // registration and setup run on one thread

/// Removes a named lock's segment (or a path-scoped lock's file) at the end of its benchmark;
/// other scopes leave nothing behind. `force`: this benchmark is the only process that ever
/// opened the name.
func removeIfNamed(_ lock: SharedLock) throws {
    switch lock.scope {
    case .named(let name): try SharedLock.remove(named: name, force: true)
    case .path(let path): try SharedLock.remove(path: path, force: true)
    default: break
    }
}

/// The same, for a named shared value's lock.
func removeIfNamedValue<Value>(_ value: SharedLocked<Value>) throws {
    if case .named(let name) = value.scope {
        try SharedLock.remove(named: name, force: true)
    }
}
