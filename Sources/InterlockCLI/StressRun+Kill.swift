// `--kill`: the parent catches a worker process holding the lock, kills it with
// `kill -9`, cleans up what it left in the data region, and starts a replacement.
//
// The cleanup is bracketed by the region's kill epoch (odd while a window is open), so
// the workers' checks can tell a dead holder's leftovers from a live holder's (see
// `StressWorkload`).

import Glibc

extension StressRun {
    /// `kill -9`s a random worker process caught holding the lock (every other kill
    /// prefers a writer in the middle of its record update), cleans up after it, and
    /// starts a replacement.
    func killOne() {
        guard let index = catchHolder(preferMidUpdate: crash.kills % 2 == 0), let pid = workerPIDs[index] else { return }
        // The victim is stopped: what its slots say cannot change before the kill.
        let victims = slots(ofProcess: index)
        if victims.contains(where: { [.waitingExclusive, .holdingExclusive].contains(region.state($0)) }) {
            // Counted before the kill, so before any writer can be told about it.
            region.header(.exclusiveKillCandidates).add(1, ordering: .sequentiallyConsistent)
        }
        if victims.contains(where: { region.slotValue($0, .updateProgress) > 0 }) { crash.killedMidUpdate += 1 }
        region.header(.killEpoch).add(1, ordering: .sequentiallyConsistent)   // odd: window open
        kill(pid, SIGKILL)
        _ = System.reap(pid)
        workerPIDs[index] = nil
        crash.kills += 1
        let held = slots(ofProcess: index).map { region.flag($0).load(ordering: .sequentiallyConsistent) }
        if held.contains(InSection.exclusive.rawValue) {
            crash.killedWhileExclusive += 1
        } else if held.contains(InSection.shared.rawValue) {
            crash.killedWhileShared += 1
            pendingReclaims.append(region.totalOps().exclusive)
        }
        let now = System.now()
        for slot in slots(ofProcess: index) {
            region.slot(slot, .incarnation).add(1, ordering: .sequentiallyConsistent)
            region.flag(slot).store(InSection.none.rawValue, ordering: .sequentiallyConsistent)
            region.slot(slot, .updateProgress).store(0, ordering: .relaxed)
            region.slot(slot, .stateSince).store(now, ordering: .relaxed)
            region.slot(slot, .state).store(SlotState.unused.rawValue, ordering: .relaxed)
        }
        region.header(.killEpoch).add(1, ordering: .sequentiallyConsistent)   // even: closed
        do {
            try startWorker(index)
        } catch {
            failures.append("cannot start a replacement worker: \(error)")
            region.setPhase(.stopping)
        }
    }

    /// Picks the victim: stops random workers (`SIGSTOP`, then waits until stopped) until
    /// one has a thread inside a hold, and returns it still stopped. Looking at a running
    /// process would not do: with short holds it has left the section before the kill
    /// lands. A kill that prefers a writer mid-update takes any writer after 30 ms; after
    /// 100 ms any holder will do, after 200 ms any (stopped) worker.
    func catchHolder(preferMidUpdate: Bool) -> Int? {
        let searchStart = System.now()
        while true {
            let live = workerPIDs.indices.filter { workerPIDs[$0] != nil }
            guard !live.isEmpty else { return nil }
            let index = live[Int(random.next() % UInt64(live.count))]
            let pid = workerPIDs[index]!
            let waited = System.now() - searchStart
            kill(pid, SIGSTOP)
            if let ended = System.waitUntilStopped(pid) {
                workerEnded(index: index, pid: pid, termination: ended)
                continue
            }
            if waited > 200_000_000 { return index }
            let victims = slots(ofProcess: index)
            let holding = if preferMidUpdate && waited < 30_000_000 {
                victims.contains { region.slotValue($0, .updateProgress) > 0 }
            } else if preferMidUpdate && waited < 100_000_000 {
                victims.contains { region.flag($0).load(ordering: .sequentiallyConsistent) == InSection.exclusive.rawValue }
            } else {
                victims.contains { region.flag($0).load(ordering: .sequentiallyConsistent) != InSection.none.rawValue }
            }
            if holding { return index }
            kill(pid, SIGCONT)
        }
    }

    /// A writer that completed a hold after a shared holder was killed proves the dead
    /// share was reclaimed (exclusive ops are counted inside the hold).
    func settleReclaims(exclusiveOps: UInt64) {
        guard !pendingReclaims.isEmpty else { return }
        let before = pendingReclaims.count
        pendingReclaims.removeAll { $0 < exclusiveOps }
        crash.sharedReclaimed += before - pendingReclaims.count
    }
}
