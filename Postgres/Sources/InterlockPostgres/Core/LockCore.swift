import PostgresNIO
import Synchronization

/// The process-local half of a ``PostgresSharedLock``: a reader-writer gate in front of one
/// session, so that the tasks of a process share one server-side hold.
///
/// ## Phases
///
/// The lock is always in one phase:
///
/// ```
///  idle ──▶ acquiring(mode) ──▶ held(mode, holders) ──▶ releasing ──▶ idle
///    ▲            │ (failed, timed out, cancelled)           │ (lost: no query)
///    └────────────┴──────────────────────────────────────────┘
/// ```
///
/// - `acquiring`: one task, the *acquirer*, asks the server for the lock on the session; the
///   others wait here, in the process. The session holds nothing during this phase, which is
///   why a failed or cancelled acquisition may end with `pg_advisory_unlock_all()`.
/// - `held(shared)`: the session holds the server's shared lock; more local readers join
///   without a round trip while no local writer waits and no writer elsewhere was seen
///   waiting (`closedToReaders`). The last reader out releases it at the server.
/// - `held(exclusive)`: one local holder, with the fencing token drawn under the lock.
/// - `releasing`: the last holder is sending the unlock.
///
/// ## Fairness
///
/// Writer-preferring and phase-fair, like ``Interlock/SharedLock``: once a local writer
/// waits, new local readers wait too; when an exclusive phase ends, every reader waiting then
/// goes in together before the next writer; when a shared phase ends, the first waiting
/// writer goes next. Between processes the server decides: PostgreSQL queues a new shared
/// request behind a waiting exclusive one, and the background writer check
/// (``PostgresLockOptions/writerCheckInterval``) makes a process whose readers overlap
/// without end let a waiting writer elsewhere in.
final class LockCore: Sendable {
    let key: AdvisoryKey
    let configuration: PostgresConnection.Configuration
    let options: PostgresLockOptions
    /// The fencing sequence, quoted (`"name"` or `"schema"."name"`).
    let sequence: String
    private let state = Mutex(State())

    init(key: AdvisoryKey, configuration: PostgresConnection.Configuration, options: PostgresLockOptions) throws(PostgresLockError) {
        self.key = key
        self.configuration = configuration
        self.options = options
        self.sequence = try options.quotedFencingSequence()
    }

    // MARK: State

    enum Grant {
        /// The waiter is the acquirer: it asks the server.
        case acquire
        /// The waiter joined a shared hold that is already held at the server.
        case joined(HoldRecord)
    }

    struct Waiter {
        let id: UInt64
        let mode: LockMode
        let continuation: CheckedContinuation<Grant, any Error>
    }

    struct Held {
        var mode: LockMode
        var holders: Int
        var closedToReaders: Bool
        let session: Session
        let generation: UInt64
        let fencingToken: Int64?
    }

    enum Phase {
        case idle
        case acquiring(LockMode, id: UInt64)
        case held(Held)
        case releasing
    }

    struct State {
        var phase: Phase = .idle
        var queue: [Waiter] = []
        var nextID: UInt64 = 1
        var generation: UInt64 = 0
        var session: Session?
        /// Opening a session, shared by the acquirers that wait for it.
        var opening: Task<Session, any Error>?
        var lastMode: LockMode?
        var closed = false
        var checkInFlight = false
        var lastCheck: ContinuousClock.Instant = .now
        var writersWaiting: Int { queue.reduce(0) { $0 + ($1.mode == .exclusive ? 1 : 0) } }
    }

    // MARK: Misuse

    /// The tasks inside a hold of this lock, by task identity, and their mode: re-entering
    /// from the same task is misuse that would wait for ever (as `SharedLock` traps it).
    private let holdingTasks = Mutex<[Int: LockMode]>([:])

    private static var currentTask: Int? { withUnsafeCurrentTask { $0?.hashValue } }

    /// Traps if the current task holds this lock in a way that makes `mode` wait for ever:
    /// exclusive after anything (no recursion, no upgrade), shared after exclusive.
    func checkReentry(_ mode: LockMode) {
        guard let task = Self.currentTask, let held = holdingTasks.withLock({ $0[task] }) else { return }
        if mode == .exclusive || held == .exclusive {
            preconditionFailure("Interlock misuse: this task holds PostgresSharedLock \(key) in \(held) mode and asked for \(mode) mode; that waits for ever (no recursion, no upgrade: release first)")
        }
    }

    func noteHolder(_ mode: LockMode) {
        guard let task = Self.currentTask else { return }
        holdingTasks.withLock { tasks in
            // A shared hold nested in a shared hold keeps the outer entry.
            if tasks[task] == nil { tasks[task] = mode }
        }
    }

    func forgetHolder(nested: Bool) {
        guard !nested, let task = Self.currentTask else { return }
        holdingTasks.withLock { _ = $0.removeValue(forKey: task) }
    }

    func isHeldByCurrentTask() -> Bool {
        guard let task = Self.currentTask else { return false }
        return holdingTasks.withLock { $0[task] != nil }
    }

    // MARK: Acquire

    /// Acquires `mode`, waiting until `deadline` (nil: no limit), or only if available now
    /// (`tryOnly`: returns nil when not). Throws `CancellationError`, ``PostgresLockError``.
    func acquire(_ mode: LockMode, deadline: ContinuousClock.Instant?, tryOnly: Bool) async throws -> HoldRecord? {
        try Task.checkCancellation()
        enum Fast { case joined(HoldRecord), acquire(UInt64), wait(UInt64), busy, closed }
        let fast: Fast = state.withLock { state in
            if state.closed { return .closed }
            let id = state.nextID
            state.nextID += 1
            switch state.phase {
            case .held(var held) where mode == .shared && held.mode == .shared && !held.closedToReaders
                && state.writersWaiting == 0 && !held.session.isLost:
                held.holders += 1
                state.phase = .held(held)
                return .joined(HoldRecord(core: self, mode: .shared, session: held.session, generation: held.generation, fencingToken: nil))
            case .idle where state.queue.isEmpty:
                state.phase = .acquiring(mode, id: id)
                return .acquire(id)
            default:
                return tryOnly ? .busy : .wait(id)
            }
        }
        switch fast {
        case .closed:
            throw PostgresLockError.closed
        case .busy:
            return nil
        case .joined(let record):
            maybeCheckForWriters()
            return record
        case .acquire(let id):
            return try await acquireAtServer(mode, id: id, deadline: deadline, tryOnly: tryOnly)
        case .wait(let id):
            switch try await waitInProcess(mode, id: id, deadline: deadline) {
            case .joined(let record):
                return record
            case .acquire:
                return try await acquireAtServer(mode, id: id, deadline: deadline, tryOnly: false)
            }
        }
    }

    /// Waits in the process's queue until this waiter is the acquirer or joins a shared hold.
    private func waitInProcess(_ mode: LockMode, id: UInt64, deadline: ContinuousClock.Instant?) async throws -> Grant {
        let timer: Task<Void, Never>? = deadline.map { deadline in
            Task { [weak self] in
                try? await Task.sleep(until: deadline, clock: .continuous)
                if !Task.isCancelled { self?.removeWaiter(id, with: PostgresLockError.timedOut) }
            }
        }
        defer { timer?.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Grant, any Error>) in
                let refused: (any Error)? = state.withLock { state in
                    if state.closed { return PostgresLockError.closed }
                    if Task.isCancelled { return CancellationError() }
                    if let deadline, deadline <= .now { return PostgresLockError.timedOut }
                    state.queue.append(Waiter(id: id, mode: mode, continuation: continuation))
                    let resume = dispatch(&state)
                    // Resuming under the lock is fine: a continuation only schedules its task.
                    resume()
                    return nil
                }
                if let refused { continuation.resume(throwing: refused) }
            }
        } onCancel: {
            removeWaiter(id, with: CancellationError())
        }
    }

    /// Takes a waiter out of the queue and fails it (timeout or cancellation); nothing if it
    /// was already granted.
    private func removeWaiter(_ id: UInt64, with error: any Error) {
        let waiter: Waiter? = state.withLock { state in
            guard let index = state.queue.firstIndex(where: { $0.id == id }) else { return nil }
            let waiter = state.queue.remove(at: index)
            // A reader that left may have been what kept a writer behind... and a writer that
            // left may let readers join a held shared phase.
            dispatch(&state)()
            return waiter
        }
        waiter?.continuation.resume(throwing: error)
    }

    /// Starts the next phase if the lock is idle, or lets readers join an open shared hold.
    /// Returns the resumptions to run (the caller may run them under the lock).
    private func dispatch(_ state: inout State) -> () -> Void {
        var resumes: [() -> Void] = []
        switch state.phase {
        case .idle:
            guard !state.queue.isEmpty else { break }
            let hasReader = state.queue.contains { $0.mode == .shared }
            let hasWriter = state.queue.contains { $0.mode == .exclusive }
            let mode: LockMode
            switch state.lastMode {
            case .exclusive? where hasReader: mode = .shared
            case .shared? where hasWriter: mode = .exclusive
            default: mode = state.queue[0].mode
            }
            let index = state.queue.firstIndex { $0.mode == mode }!
            let acquirer = state.queue.remove(at: index)
            state.phase = .acquiring(mode, id: acquirer.id)
            resumes.append { acquirer.continuation.resume(returning: .acquire) }
        case .held(var held) where held.mode == .shared && !held.closedToReaders && !held.session.isLost && state.writersWaiting == 0:
            let readers = state.queue.filter { $0.mode == .shared }
            guard !readers.isEmpty else { break }
            state.queue.removeAll { $0.mode == .shared }
            held.holders += readers.count
            state.phase = .held(held)
            for reader in readers {
                let record = HoldRecord(core: self, mode: .shared, session: held.session, generation: held.generation, fencingToken: nil)
                resumes.append { reader.continuation.resume(returning: .joined(record)) }
            }
        default:
            break
        }
        return { resumes.forEach { $0() } }
    }

    /// The acquirer's part: ask the server on the session, then open the phase (and let the
    /// waiting readers of a shared phase in), or give the phase up and let the next waiter try.
    private func acquireAtServer(_ mode: LockMode, id: UInt64, deadline: ContinuousClock.Instant?, tryOnly: Bool) async throws -> HoldRecord? {
        let outcome: Result<(Session, Int64?)?, any Error>
        do {
            outcome = .success(try await serverAcquire(mode, deadline: deadline, tryOnly: tryOnly))
        } catch {
            outcome = .failure(error)
        }
        let (record, resume): (HoldRecord?, () -> Void) = state.withLock { state in
            guard case .success(let granted?) = outcome else {
                state.phase = .idle
                return (nil, dispatch(&state))
            }
            state.generation += 1
            state.lastMode = mode
            var held = Held(mode: mode, holders: 1, closedToReaders: false, session: granted.0,
                            generation: state.generation, fencingToken: granted.1)
            let record = HoldRecord(core: self, mode: mode, session: granted.0, generation: held.generation, fencingToken: granted.1)
            var resumes: [() -> Void] = []
            if mode == .shared {
                // Phase-fair: every reader waiting now goes in with this one.
                let readers = state.queue.filter { $0.mode == .shared }
                state.queue.removeAll { $0.mode == .shared }
                held.holders += readers.count
                for reader in readers {
                    let joined = HoldRecord(core: self, mode: .shared, session: granted.0, generation: held.generation, fencingToken: nil)
                    resumes.append { reader.continuation.resume(returning: .joined(joined)) }
                }
                state.lastCheck = .now
            }
            state.phase = .held(held)
            return (record, { resumes.forEach { $0() } })
        }
        resume()
        return try outcome.get().map { _ in record! }
    }

    /// Asks the server for the lock on this lock's session (opening one if needed). Returns
    /// the session and the fencing token, or nil when a try found the lock taken. Leaves the
    /// session holding nothing when it does not return a grant.
    private func serverAcquire(_ mode: LockMode, deadline: ContinuousClock.Instant?, tryOnly: Bool) async throws -> (Session, Int64?)? {
        let session = try await currentSession(deadline: deadline)
        // Cancelled before asking the server: nothing to undo there.
        try Task.checkCancellation()
        if mode == .exclusive {
            try await ensureSequence(on: session)
        }
        if tryOnly {
            do {
                let rows = try await session.query(Statements.tryAcquire(mode, key: key, sequence: sequence))
                switch mode {
                case .shared:
                    return try rows.first?.decode(Bool.self) == true ? (session, nil) : nil
                case .exclusive:
                    guard let token = try rows.first?.decode(Int64?.self) else { return nil }
                    return (session, token)
                }
            } catch {
                throw await failedAcquisition(error, session: session, cancelled: false)
            }
        }
        var lockTimeout = 0
        if let deadline {
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else { throw PostgresLockError.timedOut }
            lockTimeout = max(1, remaining.milliseconds)
            if lockTimeout > Int(Int32.max) { lockTimeout = 0 }  // beyond lock_timeout's range: no limit
        }
        let query = Statements.acquire(mode, key: key, lockTimeoutMilliseconds: lockTimeout, sequence: sequence)
        let cancel = CancelRequest()
        let result: Result<[PostgresRow], any Error> = await withTaskCancellationHandler {
            do {
                return .success(try await session.query(query))
            } catch {
                return .failure(error)
            }
        } onCancel: {
            cancel.start { [configuration, options] in
                let sent = await session.requestCancel(configuration: configuration, options: options)
                if !sent {
                    // The server could not be asked (no second connection): close the session,
                    // so that the server drops the waiting request when it notices the client
                    // is gone (within `clientConnectionCheckInterval`).
                    session.noteLoss("closed to cancel a wait")
                    await session.close()
                }
            }
        }
        // A cancel that was sent has reached the backend by now, so it cannot hit a later
        // statement on this session.
        let cancelled = await cancel.finish()
        switch result {
        case .success(let rows):
            if cancelled {
                _ = try? await session.query(Statements.releaseAll)
                throw CancellationError()
            }
            switch mode {
            case .shared: return (session, nil)
            case .exclusive:
                guard let token = try rows.first?.decode(Int64.self) else {
                    throw await failedAcquisition(PostgresLockError.server(sqlState: "", message: "no fencing token returned"), session: session, cancelled: false)
                }
                return (session, token)
            }
        case .failure(let error):
            throw await failedAcquisition(error, session: session, cancelled: cancelled)
        }
    }

    /// Undoes whatever a failed acquisition may have left at the server, and says why it
    /// failed.
    private func failedAcquisition(_ error: any Error, session: Session, cancelled: Bool) async -> any Error {
        if Session.isConnectionLoss(error) || session.isLost {
            session.noteLoss(Session.describe(error))
            if cancelled { return CancellationError() }
            return isClosed ? PostgresLockError.closed : PostgresLockError.connectionLost(reason: Session.describe(error))
        }
        // The statement failed on a live session. A grant can race with the timeout or the
        // cancel (the lock is granted, then the statement fails): release everything.
        do {
            _ = try await session.query(Statements.releaseAll)
        } catch {
            session.noteLoss(Session.describe(error))
            session.closeSoon()
        }
        let state = Session.sqlState(error)
        if cancelled { return CancellationError() }
        switch state {
        case "55P03": return PostgresLockError.timedOut
        case "42P01", "42501", "55000", "2200H", "42809":
            return PostgresLockError.fencingSequenceUnavailable(sequence: sequence, reason: Session.describe(error))
        default: return Session.mapped(error, whileHolding: false)
        }
    }

    /// The session, opened (again) if there is none or it was lost.
    ///
    /// Opening runs in its own task, shared by every acquirer that needs it, and is not cut
    /// short by the caller's deadline or cancellation: a caller that stops waiting gets
    /// ``PostgresLockError/timedOut`` or `CancellationError`, and the session, once open,
    /// serves the next acquisition (a short timeout must not doom every attempt to pay for a
    /// connection it never finishes).
    private func currentSession(deadline: ContinuousClock.Instant?) async throws -> Session {
        enum Step { case ready(Session), wait(Task<Session, any Error>, old: Session?) }
        let step: Step = state.withLock { state in
            if let session = state.session, !session.isLost { return .ready(session) }
            let old = state.session
            state.session = nil
            if let opening = state.opening { return .wait(opening, old: old) }
            let opening = Task { [configuration, options] () async throws -> Session in
                do {
                    let session = try await Session.open(configuration: configuration, options: options, connectTimeout: nil) { [weak self] session in
                        self?.sessionLost(session)
                    }
                    let closed = self.state.withLock { state in
                        state.opening = nil
                        if state.closed { return true }
                        state.session = session
                        return false
                    }
                    if closed {
                        await session.close()
                        throw PostgresLockError.closed
                    }
                    return session
                } catch {
                    self.state.withLock { $0.opening = nil }
                    throw error
                }
            }
            state.opening = opening
            return .wait(opening, old: old)
        }
        switch step {
        case .ready(let session):
            return session
        case .wait(let opening, let old):
            if let old { old.closeSoon() }
            return try await Self.value(of: opening, deadline: deadline)
        }
    }

    /// Waits for `task` until `deadline`, or until the caller is cancelled; the task goes on.
    private static func value<T: Sendable>(of task: Task<T, any Error>, deadline: ContinuousClock.Instant?) async throws -> T {
        let outcome = Once<Result<T, any Error>>()
        let timer: Task<Void, Never>? = deadline.map { deadline in
            Task {
                try? await Task.sleep(until: deadline, clock: .continuous)
                if !Task.isCancelled { outcome.complete(.failure(PostgresLockError.timedOut)) }
            }
        }
        defer { timer?.cancel() }
        Task { outcome.complete(await task.result) }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                outcome.onResult { continuation.resume(with: $0) }
            }
        } onCancel: {
            outcome.complete(.failure(CancellationError()))
        }
    }

    /// Checks, once per session, that the fencing sequence exists, and creates it if not.
    private func ensureSequence(on session: Session) async throws {
        guard !session.sequenceReady.load(ordering: .acquiring) else { return }
        do {
            let rows = try await session.query(Statements.sequenceExists(sequence))
            if try rows.first?.decode(Bool.self) != true {
                _ = try await session.query(Statements.noLockTimeout)
                do {
                    _ = try await session.query(Statements.createSequence(quoted: sequence))
                } catch where ["42P07", "23505"].contains(Session.sqlState(error)) {
                    // Created by another session at the same instant: it exists.
                }
            }
        } catch {
            if Session.isConnectionLoss(error) {
                session.noteLoss(Session.describe(error))
                throw PostgresLockError.connectionLost(reason: Session.describe(error))
            }
            throw PostgresLockError.fencingSequenceUnavailable(sequence: sequence, reason: Session.describe(error))
        }
        session.sequenceReady.store(true, ordering: .releasing)
    }

    // MARK: Release

    /// Ends one hold. Returns nil when it ended cleanly, or why the session was lost while
    /// it was held.
    func release(_ record: HoldRecord) async -> String? {
        enum Step { case confirm(Session), unlock(Session), drop(String) }
        let step: Step = state.withLock { state in
            guard case .held(var held) = state.phase, held.generation == record.generation else {
                preconditionFailure("Interlock misuse: a PostgresSharedLock hold was released twice, or outside its phase")
            }
            held.holders -= 1
            if held.holders > 0 {
                state.phase = .held(held)
                return .confirm(held.session)
            }
            if held.session.isLost {
                state.phase = .idle
                return .drop(held.session.lossDescription)
            }
            state.phase = .releasing
            return .unlock(held.session)
        }
        var loss: String?
        switch step {
        case .confirm(let session):
            // Others of this process still hold: the session is not released, but whether it
            // lived through this body must be asked (a round trip shared by the readers
            // leaving at the same time).
            return await session.confirmAlive() ? nil : session.lossDescription
        case .drop(let reason):
            loss = reason
        case .unlock(let session):
            do {
                let rows = try await session.query(Statements.release(record.mode, key: key))
                if try rows.first?.decode(Bool.self) != true {
                    loss = "the server says this session did not hold the lock any more"
                    session.noteLoss(loss!)
                    session.closeSoon()
                }
            } catch {
                loss = Session.isConnectionLoss(error) || session.isLost ? session.lossDescriptionAfter(error) : Session.describe(error)
                session.noteLoss(Session.describe(error))
                session.closeSoon()
            }
        }
        let (resume, closeSession): (() -> Void, Session?) = state.withLock { state in
            state.phase = .idle
            let resume = dispatch(&state)
            if state.closed, case .idle = state.phase, let session = state.session {
                state.session = nil
                return (resume, session)
            }
            return (resume, nil)
        }
        resume()
        if let closeSession { await closeSession.close() }
        return loss
    }

    // MARK: Losses, writer checks, close

    /// The connection of `session` closed by itself: holds on it are lost, and a shared phase
    /// on it admits nobody more.
    private func sessionLost(_ session: Session) {
        state.withLock { state in
            if case .held(var held) = state.phase, held.session === session {
                held.closedToReaders = true
                state.phase = .held(held)
            }
        }
    }

    /// While readers keep joining a shared hold, asks the server now and then whether a
    /// writer elsewhere waits; if one does, closes the hold to new readers.
    private func maybeCheckForWriters() {
        let target: (Session, UInt64)? = state.withLock { state in
            guard !state.checkInFlight, case .held(let held) = state.phase, held.mode == .shared, !held.closedToReaders,
                  state.lastCheck.duration(to: .now) >= options.writerCheckInterval else { return nil }
            state.checkInFlight = true
            return (held.session, held.generation)
        }
        guard let (session, generation) = target else { return }
        Task { [weak self, key] in
            let waiting = (try? await session.query(Statements.waitingWriters(key: key)).first?.decode(Int64.self)) ?? 0
            guard let self else { return }
            let resume: () -> Void = self.state.withLock { state in
                state.checkInFlight = false
                state.lastCheck = .now
                if waiting > 0, case .held(var held) = state.phase, held.generation == generation {
                    held.closedToReaders = true
                    state.phase = .held(held)
                }
                return {}
            }
            resume()
        }
    }

    /// Fails every waiter, ends a wait at the server (by closing the session, which then
    /// holds nothing), and closes the session when nothing is held.
    func close() async {
        let (waiters, session, interrupt): ([Waiter], Session?, Session?) = state.withLock { state in
            state.closed = true
            let waiters = state.queue
            state.queue.removeAll()
            switch state.phase {
            case .idle:
                defer { state.session = nil }
                return (waiters, state.session, nil)
            case .acquiring:
                return (waiters, nil, state.session)
            default:
                return (waiters, nil, nil)
            }
        }
        for waiter in waiters { waiter.continuation.resume(throwing: PostgresLockError.closed) }
        if let interrupt {
            interrupt.noteLoss("closed by PostgresSharedLock.close()")
            interrupt.closeSoon()
        }
        if let session { await session.close() }
    }

    private var isClosed: Bool { state.withLock { $0.closed } }

    /// For `deinit` of the public lock: close without waiting.
    func closeSoon() {
        let session: Session? = state.withLock { state in
            state.closed = true
            if case .idle = state.phase {
                defer { state.session = nil }
                return state.session
            }
            return nil
        }
        session?.closeSoon()
    }

    /// How many tasks wait in the process's queue (for tests).
    var queuedInProcess: Int { state.withLock { $0.queue.count } }

    /// The server process id of the current session, if one is open.
    var serverProcessID: Int32? {
        state.withLock { state in state.session.flatMap { $0.isLost ? nil : $0.serverProcessID } }
    }
}

extension Session {
    /// The loss reason after a statement failed because the connection went away.
    func lossDescriptionAfter(_ error: any Error) -> String {
        noteLoss(Session.describe(error))
        return lossDescription
    }
}

/// A cancel of a server wait, started at most once from a cancellation handler and awaited
/// by the acquirer before it sends anything else on the session.
final class CancelRequest: Sendable {
    private let task = Mutex<Task<Void, Never>?>(nil)

    func start(_ operation: @escaping @Sendable () async -> Void) {
        task.withLock { task in
            if task == nil { task = Task { await operation() } }
        }
    }

    /// Waits for a started cancel to finish; returns whether one was started.
    func finish() async -> Bool {
        guard let task = task.withLock({ $0 }) else { return false }
        await task.value
        return true
    }
}
