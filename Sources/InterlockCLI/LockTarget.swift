// A lock named on the command line: a name (`SharedLock(named:)`), or — when the
// argument contains '/', which no lock name may — the path of a lock file
// (`SharedLock(path:)`). `./app.lock` names a file in the working directory.

import Interlock

enum LockTarget {
    case named(String)
    case path(String)

    init(_ argument: String) {
        self = argument.utf8.contains(UInt8(ascii: "/")) ? .path(argument) : .named(argument)
    }

    /// Opens (or creates) the lock.
    func open(_ options: NamedLockOptions = NamedLockOptions()) throws(InterlockError) -> SharedLock {
        switch self {
        case .named(let name): return try SharedLock(named: name, options: options)
        case .path(let path): return try SharedLock(path: path, options: options)
        }
    }

    /// Opens (or creates) the lock with a stress run's record in its segment, made for
    /// `StressRecord.layoutTag`.
    func openRecord(_ options: NamedLockOptions) throws(InterlockError) -> SharedLocked<StressRecord> {
        var options = options
        options.layoutTag = StressRecord.layoutTag
        switch self {
        case .named(let name): return try SharedLocked(named: name, initialValue: .initial, options: options)
        case .path(let path): return try SharedLocked(path: path, initialValue: .initial, options: options)
        }
    }

    func inspect() throws(InterlockError) -> LockSnapshot {
        switch self {
        case .named(let name): return try SharedLock.inspect(named: name)
        case .path(let path): return try SharedLock.inspect(path: path)
        }
    }

    func remove(force: Bool) throws(InterlockError) {
        switch self {
        case .named(let name): try SharedLock.remove(named: name, force: force)
        case .path(let path): try SharedLock.remove(path: path, force: force)
        }
    }

    /// A form of the name or path that fits in a shared-memory object's name.
    var fileNameSafe: String {
        switch self {
        case .named(let name): return name
        case .path(let path): return String(path.map { $0 == "/" ? "%" : $0 }.suffix(120))
        }
    }
}
