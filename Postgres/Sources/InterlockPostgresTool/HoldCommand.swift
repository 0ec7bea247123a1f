import InterlockPostgres
#if canImport(Glibc)
import Glibc
#endif

/// `interlock-pg hold NAME [--mode shared|exclusive] [--timeout D]`: acquires the lock, prints
/// `held <server pid> <fencing token or ->`, and keeps it until a line arrives on standard
/// input (or it closes); then releases and prints `released`, or `lost <reason>` when the
/// session was lost while held (exit 4). A timeout prints `timed out` (exit 1); other errors
/// `error <message>` (exit 3). Tests use it as "another process" that can be killed while it holds.
enum HoldCommand {
    static func run(_ arguments: [String]) async -> Int32 {
        let name: String, mode: String, timeout: Duration?
        do {
            let options = try Options(arguments, switches: [], values: ["--mode", "--timeout"])
            guard options.positional.count == 1 else { throw ToolError("hold takes one NAME") }
            name = options.positional[0]
            mode = options.string("--mode") ?? "exclusive"
            guard mode == "shared" || mode == "exclusive" else { throw ToolError("--mode is shared or exclusive") }
            timeout = try options.string("--timeout").map(parseDuration)
        } catch {
            printError("\(error)")
            return 2
        }
        let lock: PostgresSharedLock
        do {
            lock = try PostgresSharedLock(name: name, configuration: try ConnectionSettings.configuration())
        } catch {
            say("error \(error)")
            return 3
        }
        let status = await hold(lock, mode: mode, timeout: timeout)
        await lock.close()
        return status
    }

    static func hold(_ lock: PostgresSharedLock, mode: String, timeout: Duration?) async -> Int32 {
        do {
            let report: @Sendable (Int32, Int64?) async -> Void = { pid, token in
                say("held \(pid) \(token.map(String.init) ?? "-")")
                await waitForLine()
            }
            switch (mode, timeout) {
            case ("shared", let timeout?): try await lock.withShared(timeout: timeout) { await report($0.serverProcessID, nil) }
            case ("shared", nil): try await lock.withShared { await report($0.serverProcessID, nil) }
            case (_, let timeout?): try await lock.withExclusive(timeout: timeout) { await report($0.serverProcessID, $0.fencingToken) }
            default: try await lock.withExclusive { await report($0.serverProcessID, $0.fencingToken) }
            }
            say("released")
            return 0
        } catch PostgresLockError.timedOut {
            say("timed out")
            return 1
        } catch PostgresLockError.sessionLost(let loss) {
            say("lost \(loss.reason)")
            return 4
        } catch {
            say("error \(error)")
            return 3
        }
    }

    /// Waits, off the cooperative pool, for a line (or the end) of standard input.
    static func waitForLine() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            var thread = pthread_t()
            let box = Unmanaged.passRetained(ContinuationBox(continuation)).toOpaque()
            pthread_create(&thread, nil, { raw in
                let box = Unmanaged<ContinuationBox>.fromOpaque(raw!).takeRetainedValue()
                var byte: UInt8 = 0
                while read(0, &byte, 1) == 1 && byte != UInt8(ascii: "\n") {}
                box.continuation.resume()
                return nil
            }, box)
            pthread_detach(thread)
        }
    }

    final class ContinuationBox: @unchecked Sendable {
        let continuation: CheckedContinuation<Void, Never>
        init(_ continuation: CheckedContinuation<Void, Never>) { self.continuation = continuation }
    }
}
