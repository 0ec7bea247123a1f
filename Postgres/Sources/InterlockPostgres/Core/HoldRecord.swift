import Synchronization

/// One hold of a ``PostgresSharedLock``, as the lock keeps it: what the public hold types
/// (``PostgresSharedLock/SharedHold``, ``PostgresSharedLock/ExclusiveHold``) wrap.
final class HoldRecord: Sendable {
    let core: LockCore
    let mode: LockMode
    let session: Session
    /// The phase this hold belongs to (a new server-side hold starts a new generation).
    let generation: UInt64
    let fencingToken: Int64?
    private let released = Atomic<Bool>(false)

    init(core: LockCore, mode: LockMode, session: Session, generation: UInt64, fencingToken: Int64?) {
        self.core = core
        self.mode = mode
        self.session = session
        self.generation = generation
        self.fencingToken = fencingToken
    }

    var isLost: Bool { session.isLost }

    func loss(reason: String, bodyError: (any Error)? = nil) -> SessionLoss {
        SessionLoss(key: core.key, mode: mode, fencingToken: fencingToken, serverProcessID: session.serverProcessID,
                    reason: reason, bodyError: bodyError.map { "\($0)" })
    }

    /// Asks the server whether this session still holds the lock in this mode.
    func verify() async throws(PostgresLockError) {
        if released.load(ordering: .acquiring) {
            preconditionFailure("Interlock misuse: verify() called on a PostgresSharedLock hold after its scope ended")
        }
        if session.isLost { throw .sessionLost(loss(reason: session.lossDescription)) }
        let count: Int64?
        do {
            count = try await session.query(Statements.holds(mode, key: core.key)).first?.decode(Int64.self)
        } catch {
            session.noteLoss(Session.describe(error))
            if !Session.isConnectionLoss(error) { session.closeSoon() }
            throw .sessionLost(loss(reason: session.lossDescription))
        }
        guard let count, count > 0 else {
            let reason = "the server's lock table (pg_locks) does not list this session as a holder"
            session.noteLoss(reason)
            session.closeSoon()
            throw .sessionLost(loss(reason: reason))
        }
    }

    /// Ends the hold; returns why the session was lost while held, if it was.
    func release() async -> String? {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else {
            preconditionFailure("Interlock misuse: a PostgresSharedLock hold was released twice")
        }
        return await core.release(self)
    }
}
