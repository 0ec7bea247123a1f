// `interlock stress` and its internal worker command `interlock stress-worker`.

import Glibc
import Interlock

enum StressCommand {
    /// Runs a stress test and prints its report; the status says whether it passed.
    static func run(_ arguments: ParsedArguments) throws(UsageError) -> ExitStatus {
        let config = try StressConfig(arguments)
        let run: StressRun
        do {
            run = try StressRun(config: config)
        } catch {
            System.printError("interlock stress: \(error.message)")
            return error.isUsage ? .usage : .failure
        }
        let report = run.run()
        print(config.json ? report.json.rendered() : report.text)
        return report.exitStatus
    }

    /// One worker process of a named-scope run: attaches to the record (and its lock) and
    /// the data segment the parent created, then runs its slots' threads. Never returns on
    /// success.
    static func runWorker(_ arguments: ParsedArguments) throws(UsageError) -> ExitStatus {
        guard let name = arguments.text("--name"), let data = arguments.text("--data"),
              let processIndex = arguments.integer("--process") else {
            throw arguments.error("needs --name, --data and --process (it is started by 'interlock stress --scope named')")
        }
        System.ignoreInterrupts()
        do {
            var options = NamedLockOptions()
            options.creation = .openOnly
            let record = try LockTarget(name).openRecord(options)
            let (base, size) = try System.openSegment(data)
            guard let region = StressRegion.attach(at: base, size: size),
                  processIndex < region.slotCount / max(1, Int(region.get(.threadsPerProcess))) else {
                System.printError("interlock stress-worker: \(data) is not a stress data segment of this version")
                return .failure
            }
            let parentPID = pid_t(truncatingIfNeeded: region.get(.parentPID))
            guard getppid() == parentPID else {
                System.printError("interlock stress-worker: not started by the stress run that owns \(data)")
                return .failure
            }
            StressRun.runWorkerProcess(region: region, record: record, processIndex: processIndex, parentPID: parentPID)
        } catch {
            System.printError("interlock stress-worker: \(error)")
            return .failure
        }
    }
}
