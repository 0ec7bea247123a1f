import Testing
import Interlock
#if canImport(Glibc)
import Glibc
#endif

@Test func smokeThreads() throws {
    let lock = SharedLock()
    #expect(lock.withShared { 1 } == 1)
    lock.withExclusive { }
    #expect(lock.tryLockExclusive())
    #expect(onOtherThread { !lock.tryLockShared() })
    #expect(onOtherThread { (try? lock.lockShared(timeout: .milliseconds(10))) == nil })
    lock.unlockExclusive()
    try lock.lockShared(timeout: .milliseconds(10))
    #expect(onOtherThread { !lock.tryLockExclusive() })
    #expect(onOtherThread { (try? lock.lockExclusive(timeout: .milliseconds(10))) == nil })
    lock.unlockShared()
    #expect(lock.tryLockExclusive())
    lock.unlockExclusive()
}

@Test func smokeFork() throws {
    let lock = try SharedLock.forkShared()
    #expect(lock.withShared { 1 } == 1)
    lock.withExclusive { }
    #expect(lock.tryLockExclusive())
    #expect(onOtherThread { (try? lock.lockShared(timeout: .milliseconds(10))) == nil })
    lock.unlockExclusive()
    try lock.lockShared(timeout: .milliseconds(10))
    #expect(onOtherThread { (try? lock.lockExclusive(timeout: .milliseconds(10))) == nil })
    let snap = lock.snapshot()!
    #expect(snap.sharedProcessCount == 1)
    #expect(snap.waitingWriters == 0)
    lock.unlockShared()
    #expect(lock.snapshot()!.stateWord == 0)
}

@Test func smokeNamed() throws {
    let name = "smoke-\(getpid())"
    let lock = try SharedLock(named: name)
    defer { try? SharedLock.remove(named: name, force: true) }
    lock.withExclusive { }
    let other = try SharedLock(named: name)
    #expect(other.withExclusiveIfAvailable { 1 } == 1)
    lock.lockShared()
    #expect(other.withExclusiveIfAvailable { 1 } == nil)
    #expect(other.withSharedIfAvailable { 1 } == 1)
    lock.unlockShared()
    let snap = try SharedLock.inspect(named: name)
    #expect(snap.holders.count == 2)
    #expect(throws: InterlockError.liveHolders(name: name, count: 2)) { try SharedLock.remove(named: name) }
}
