/// The scoped forms: acquire, run the body, release — the release always runs, and a lost
/// session is reported after the body.
///
/// Every form runs its body on the caller's actor (`isolation`), so the body may touch the
/// caller's state. Each throws ``PostgresLockError`` for the lock's own failures,
/// `CancellationError` when the task was cancelled while waiting (nothing is then held or
/// queued), or the body's error as it is — except when the session was lost during the
/// hold: then ``PostgresLockError/sessionLost(_:)`` is thrown, carrying the body's error.
///
/// Not recursive. A task that holds the lock and asks again, waiting without a timeout, for
/// exclusive mode (or for any mode while it holds exclusive mode) would wait for ever: that
/// traps with a message starting `Interlock misuse:`. The `IfAvailable` forms answer nil and
/// the `timeout:` forms time out instead.
extension PostgresSharedLock {
    /// Runs `body` holding the lock in shared mode, waiting as long as it takes.
    ///
    /// Equivalent to acquiring shared mode, then `defer { release }`, then `body`.
    ///
    /// - Warning: Not recursive. Asking for exclusive mode inside the body traps (it would
    ///   wait for ever); asking for shared mode again from the same task can wait for ever
    ///   when a writer waits (a waiting writer keeps new shared holds out).
    @discardableResult
    public func withShared<R>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: (SharedHold) async throws -> R
    ) async throws -> R {
        core.checkReentry(.shared)
        let record = try await core.acquire(.shared, deadline: nil, tryOnly: false)!
        return try await run(record, body: { try await body(SharedHold(record: $0)) })
    }

    /// Runs `body` holding the lock in shared mode if it can be had by `timeout`; throws
    /// ``PostgresLockError/timedOut`` otherwise (nothing held, nothing left queued).
    @discardableResult
    public func withShared<R>(
        timeout: Duration,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (SharedHold) async throws -> R
    ) async throws -> R {
        let record = try await core.acquire(.shared, deadline: .now.advanced(by: timeout), tryOnly: false)!
        return try await run(record, body: { try await body(SharedHold(record: $0)) })
    }

    /// Runs `body` holding the lock in shared mode if it is free now (one round trip when
    /// this process does not hold it already); returns nil, without waiting, if not.
    @discardableResult
    public func withSharedIfAvailable<R>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: (SharedHold) async throws -> R
    ) async throws -> R? {
        guard let record = try await core.acquire(.shared, deadline: nil, tryOnly: true) else { return nil }
        return try await run(record, body: { try await body(SharedHold(record: $0)) })
    }

    /// Runs `body` holding the lock in exclusive mode, waiting as long as it takes.
    ///
    /// - Warning: Not recursive: calling a `with…` method of the same lock inside the body,
    ///   in the same task, traps with a message (it would wait for ever).
    @discardableResult
    public func withExclusive<R>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: (ExclusiveHold) async throws -> R
    ) async throws -> R {
        core.checkReentry(.exclusive)
        let record = try await core.acquire(.exclusive, deadline: nil, tryOnly: false)!
        return try await run(record, body: { try await body(ExclusiveHold(record: $0)) })
    }

    /// Runs `body` holding the lock in exclusive mode if it can be had by `timeout`; throws
    /// ``PostgresLockError/timedOut`` otherwise (nothing held, nothing left queued).
    @discardableResult
    public func withExclusive<R>(
        timeout: Duration,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (ExclusiveHold) async throws -> R
    ) async throws -> R {
        let record = try await core.acquire(.exclusive, deadline: .now.advanced(by: timeout), tryOnly: false)!
        return try await run(record, body: { try await body(ExclusiveHold(record: $0)) })
    }

    /// Runs `body` holding the lock in exclusive mode if it is free now (one round trip);
    /// returns nil, without waiting, if not.
    @discardableResult
    public func withExclusiveIfAvailable<R>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: (ExclusiveHold) async throws -> R
    ) async throws -> R? {
        guard let record = try await core.acquire(.exclusive, deadline: nil, tryOnly: true) else { return nil }
        return try await run(record, body: { try await body(ExclusiveHold(record: $0)) })
    }

    /// Runs the body, releases, and reports a loss.
    private func run<R>(
        _ record: HoldRecord,
        isolation: isolated (any Actor)? = #isolation,
        body: (HoldRecord) async throws -> R
    ) async throws -> R {
        let nested = core.isHeldByCurrentTask()
        core.noteHolder(record.mode)
        let result: Result<R, any Error>
        do {
            result = .success(try await body(record))
        } catch {
            result = .failure(error)
        }
        core.forgetHolder(nested: nested)
        if let reason = await record.release() {
            if case .failure(let error) = result {
                throw PostgresLockError.sessionLost(record.loss(reason: reason, bodyError: error))
            }
            throw PostgresLockError.sessionLost(record.loss(reason: reason))
        }
        return try result.get()
    }
}
