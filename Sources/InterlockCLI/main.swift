// `interlock`: the command-line tool of the Interlock package.
//
//     interlock stress [options]        hammer a lock and check its promises
//     interlock inspect NAME [--json]   show a lock's state and holders (NAME: a name, or a path with '/')
//     interlock remove NAME [--force]   unlink a named lock, or delete a lock file
//     interlock hold NAME [--mode M] [--timeout D]
//                                       hold a lock until stdin closes (test aid)
//     interlock --version               print the version
//
// See `Commands.swift` for every option; `interlock --help` prints them.

import Glibc

/// Dispatches one command line; returns the exit status.
func runCommandLine(_ arguments: [String]) -> ExitStatus {
    guard let first = arguments.first else {
        System.printError("interlock: missing command (see 'interlock --help')")
        return .usage
    }
    if first == "--version" {
        print("interlock \(Version.current)")
        return .success
    }
    if ["--help", "-h", "help"].contains(first) {
        if first == "help", arguments.count > 1, let command = Commands.named(arguments[1]) {
            print(Help.command(command))
        } else {
            print(Help.overview())
        }
        return .success
    }
    guard let command = Commands.named(first) else {
        let what = first.hasPrefix("-") ? "option" : "command"
        System.printError("interlock: unknown \(what) '\(first)' (see 'interlock --help')")
        return .usage
    }
    let rest = Array(arguments.dropFirst())
    if rest.prefix(while: { $0 != "--" }).contains(where: { $0 == "--help" || $0 == "-h" }) {
        print(Help.command(command))
        return .success
    }
    do {
        let parsed = try ArgumentParser.parse(rest, for: command)
        switch command.name {
        case Commands.stress.name: return try StressCommand.run(parsed)
        case Commands.stressWorker.name: return try StressCommand.runWorker(parsed)
        case Commands.inspect.name: return InspectCommand.run(parsed)
        case Commands.remove.name: return RemoveCommand.run(parsed)
        case Commands.hold.name: return HoldCommand.run(parsed)
        default: preconditionFailure("command \(command.name) has no handler")
        }
    } catch {
        System.printError(error.message)
        return .usage
    }
}

let status = runCommandLine(Array(CommandLine.arguments.dropFirst()))
fflush(nil)
exit(status.rawValue)
