// interlock-pg: the PostgreSQL lock's command-line tool.
//
//   interlock-pg stress [options]     several processes hammer one lock; violations, ops/s, latencies
//   interlock-pg bench [options]      uncontended round trips beside SharedLock(named:)
//   interlock-pg hold NAME [options]  hold the lock until standard input says so (for tests)
//
// Connection settings come from INTERLOCK_PG_HOST, _PORT, _USER, _PASSWORD, _DATABASE (as
// Postgres/scripts/with-postgres.sh exports them), else PGHOST, PGPORT, PGUSER, PGPASSWORD,
// PGDATABASE.
#if canImport(Glibc)
import Glibc
#endif

var arguments = Array(CommandLine.arguments.dropFirst())
let command = arguments.isEmpty ? "--help" : arguments.removeFirst()
let status: Int32
switch command {
case "stress":
    status = await StressCommand.run(arguments)
case "stress-worker":
    status = await StressWorker.run(arguments)
case "bench":
    status = await BenchCommand.run(arguments)
case "hold":
    status = await HoldCommand.run(arguments)
case "-h", "--help", "help":
    say("""
        usage: interlock-pg stress [--processes N] [--tasks N] [--duration D | --operations N]
                                   [--read-percent P] [--hold D] [--name NAME]
                                   [--kill] [--terminate] [--every D] [--json]
               interlock-pg bench [--iterations N] [--name NAME]
               interlock-pg hold NAME [--mode shared|exclusive] [--timeout D]
        Durations take a unit: us, ms, s (2s, 500ms). Connection: INTERLOCK_PG_HOST, _PORT, _USER,
        _PASSWORD, _DATABASE, else PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE.
        """)
    status = command == "--help" && CommandLine.arguments.count == 1 ? 2 : 0
default:
    printError("unknown command '\(command)' (try --help)")
    status = 2
}
exit(status)
