import InterlockPostgres
#if canImport(Glibc)
import Glibc
#endif

/// `interlock-pg stress-worker`: one worker process of a stress run (started by the parent,
/// not by hand). Its tasks share one `PostgresSharedLock`, so one session; each hold is
/// recorded in the run's witness region (see ``StressRegion``).
enum StressWorker {
    static func run(_ arguments: [String]) async -> Int32 {
        do {
            let options = try Options(arguments, switches: [], values: ["--region", "--process", "--name", "--read-percent", "--hold", "--seed"])
            guard let path = options.string("--region"), let name = options.string("--name") else { throw ToolError("stress-worker is started by stress") }
            let region = try StressRegion(opening: path)
            let process = try options.int("--process", default: 0, range: 0...(region.processes - 1))
            let readPercent = try options.int("--read-percent", default: 90, range: 0...100)
            let hold = try options.duration("--hold", default: .zero)
            let seed = UInt64(options.string("--seed") ?? "1") ?? 1
            var lockOptions = PostgresLockOptions()
            lockOptions.applicationName = "interlock-stress"
            let lock = try PostgresSharedLock(name: name, configuration: ConnectionSettings.configuration(), options: lockOptions)
            let worker = StressWorker.Tasks(region: region, lock: lock, process: process, readPercent: readPercent,
                                             holdNanoseconds: nanoseconds(hold))
            await withTaskGroup(of: Void.self) { group in
                for task in 0..<region.tasks {
                    group.addTask { await worker.run(slot: process * region.tasks + task, seed: seed &+ UInt64(task) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(getpid())) }
                }
            }
            await lock.close()
            return 0
        } catch {
            printError("stress-worker: \(error)")
            return 3
        }
    }

    static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        return UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
    }

    final class Tasks: Sendable {
        let region: StressRegion
        let lock: PostgresSharedLock
        let process: Int
        let readPercent: Int
        let holdNanoseconds: UInt64

        init(region: StressRegion, lock: PostgresSharedLock, process: Int, readPercent: Int, holdNanoseconds: UInt64) {
            self.region = region
            self.lock = lock
            self.process = process
            self.readPercent = readPercent
            self.holdNanoseconds = holdNanoseconds
        }

        func run(slot: Int, seed: UInt64) async {
            var random = SplitMix(seed: seed)
            while region.takeOperation() {
                let exclusive = Int(random.next() % 100) >= readPercent
                let start = nowNanoseconds()
                var serial: UInt64 = 0
                do {
                    if exclusive {
                        try await lock.withExclusive { hold in
                            serial = await self.inside(slot: slot, exclusive: true, token: hold.fencingToken, start: start)
                        }
                    } else {
                        try await lock.withShared { _ in
                            serial = await self.inside(slot: slot, exclusive: false, token: nil, start: start)
                        }
                    }
                    region.add(process, exclusive ? .exclusiveOps : .sharedOps)
                } catch PostgresLockError.sessionLost {
                    region.recordLost(slot, serial: serial)
                    region.add(process, exclusive ? .lostExclusive : .lostShared)
                } catch let error as PostgresLockError {
                    // The session was terminated while waiting, or the server is briefly
                    // unreachable: no hold, nothing to judge.
                    region.add(process, .failedAcquisitions)
                    if case .connectionLost = error {} else { printError("stress-worker \(getpid()): \(error)") }
                } catch {
                    region.add(process, .errors)
                    printError("stress-worker \(getpid()): \(error)")
                }
            }
        }

        /// One hold: publish it, look at every other slot, hold, write through the fence,
        /// look again, withdraw.
        private func inside(slot: Int, exclusive: Bool, token: Int64?, start: UInt64) async -> UInt64 {
            region.record(process, exclusive: exclusive, latency: nowNanoseconds() - start)
            let serial = region.nextSerial(slot)
            region.setState(slot, serial << 2 | (exclusive ? 2 : 1))
            scan(slot: slot, serial: serial, exclusive: exclusive)
            // A writer writes at the start and at the end of its hold: a holder whose session
            // was lost meanwhile, and whose successor already wrote, is refused at the end.
            if let token, !region.write(token: token) {
                region.add(process, .staleRejected)
            }
            if holdNanoseconds >= 1_000_000 {
                try? await Task.sleep(for: .nanoseconds(holdNanoseconds))
            } else if holdNanoseconds > 0 {
                let end = nowNanoseconds() + holdNanoseconds
                while nowNanoseconds() < end {}
            } else {
                await Task.yield()
            }
            if let token, !region.write(token: token) {
                region.add(process, .staleRejected)
            }
            scan(slot: slot, serial: serial, exclusive: exclusive)
            region.setState(slot, 0)
            return serial
        }

        private func scan(slot: Int, serial: UInt64, exclusive: Bool) {
            var readers: UInt64 = exclusive ? 0 : 1
            for other in 0..<region.slotCount where other != slot {
                let state = region.state(other)
                guard state != 0 else { continue }
                let otherExclusive = state & 3 == 2
                if !otherExclusive { readers += 1 }
                if exclusive || otherExclusive {
                    region.recordOverlap(slot, serial: serial, other: other, otherSerial: state >> 2)
                }
            }
            if !exclusive { region.raiseMax(process, .maxReaders, to: readers) }
        }
    }
}

/// A small, fast, seedable generator (SplitMix64).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
