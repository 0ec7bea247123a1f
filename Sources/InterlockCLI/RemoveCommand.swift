// `interlock remove NAME|PATH [--force]`: unlink a named lock's segment, or delete a lock file.

import Interlock

enum RemoveCommand {
    static func run(_ arguments: ParsedArguments) -> ExitStatus {
        let name = arguments.positionals[0]
        do {
            try LockTarget(name).remove(force: arguments.flag("--force"))
        } catch {
            return LockErrors.report(error, command: "remove")
        }
        print("removed '\(name)'")
        return .success
    }
}

/// How the commands report a library error: one line, and the exit status it deserves.
enum LockErrors {
    static func report(_ error: InterlockError, command: String) -> ExitStatus {
        let prefix = "interlock \(command)"
        switch error {
        case .invalidName(let name, let reason):
            System.printError("\(prefix): invalid lock name '\(Format.printable(name))': \(reason)")
            return .usage
        case .invalidPath(let path, let reason):
            System.printError("\(prefix): invalid lock path '\(path)': \(reason)")
            return .usage
        case .notFound(let name):
            System.printError("\(prefix): no lock named '\(name)'")
        case .liveHolders(let name, let count):
            System.printError("\(prefix): '\(name)' is open in \(count) live process\(count == 1 ? "" : "es"); stop \(count == 1 ? "it" : "them") first, or use --force")
        default:
            System.printError("\(prefix): \(error)")
        }
        return .failure
    }
}
