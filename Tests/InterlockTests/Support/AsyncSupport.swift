// Support for the async tests: a thread that holds a lock until told to let go, and bounded
// polls that suspend (rather than block a pool thread) between looks.

@testable import Interlock
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A real thread that takes `lock` in one mode and holds it until ``release()``.
final class ThreadHold: @unchecked Sendable {
    // Sendable: the thread handle is set once in init and joined once in `release`.
    private let parking = Parking()
    private let state = Counters(1)  // 1 once held, 2 once released
    private var thread: TestThread?

    /// Starts the thread and returns once it holds the lock (traps after `handshakeLimit`).
    init(_ lock: SharedLock, exclusive: Bool) {
        let parking = self.parking, state = self.state
        thread = TestThread {
            synchronously {
                if exclusive { lock.lockExclusive() } else { lock.lockShared() }
                state.set(0, 1)
                parking.park()
                if exclusive { lock.unlockExclusive() } else { lock.unlockShared() }
                state.set(0, 2)
            }
        }
        precondition(state.wait { $0[0] == 1 }, "the holding thread did not get the lock")
    }

    /// Lets go of the lock and joins the thread.
    func release() {
        parking.release()
        thread?.join()
        thread = nil
    }
}

/// Polls `condition` until it holds, suspending briefly between polls; false after `limit`.
func eventually(
    within limit: Duration = handshakeLimit, isolation: isolated (any Actor)? = #isolation, _ condition: () -> Bool
) async -> Bool {
    let deadline = ContinuousClock.now + limit
    while !condition() {
        if ContinuousClock.now >= deadline { return false }
        try? await Task.sleep(for: .microseconds(200))
    }
    return true
}

extension SharedLock {
    /// Requests the lock's waiter thread has, queued or being acquired, in this process.
    var asyncWaiting: Int {
        guard let counts = asyncWaiterCounts() else { return 0 }
        return counts.queued + (counts.acquiring ? 1 : 0)
    }

    /// Holds the waiter thread keeps for tasks in this process.
    var asyncHeld: Int { asyncWaiterCounts()?.held ?? 0 }

    /// Holds the waiter thread has granted to tasks in this process.
    var asyncGranted: Int { asyncWaiterCounts()?.granted ?? 0 }

    /// Requests the waiter thread ended because their task was cancelled while it was
    /// acquiring the lock for them.
    var asyncCancelledAcquiring: Int { asyncWaiterCounts()?.cancelledAcquiring ?? 0 }
}

/// The number of threads of this process (`Threads:` in /proc/self/status).
func processThreadCount() -> Int {
    let fd = open("/proc/self/status", O_RDONLY)
    guard fd >= 0 else { return -1 }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard n > 0 else { return -1 }
    let text = String(decoding: buffer[0..<n], as: UTF8.self)
    for line in text.split(separator: "\n") where line.hasPrefix("Threads:") {
        return Int(line.dropFirst("Threads:".count).trimmingPrefix(while: { $0 == " " || $0 == "\t" })) ?? -1
    }
    return -1
}

/// The error `body` threw, or nil.
func thrownError<R>(isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> R) async -> (any Error)? {
    do { _ = try await body() } catch { return error }
    return nil
}

/// Exits 0 once no async waiter thread runs (at most 5 s; an idle one stops after 1 s):
/// `exit` runs the process's destructors, which a still-running waiter thread would race
/// with (a thread-sanitizer report at exit, exit code 66).
func exitOnceWaitersStopped() -> Never {
    _ = waitUntil(for: .seconds(5)) { AsyncWaiter.runningThreads.load(ordering: .relaxed) == 0 }
    exit(0)
}
