// The live progress line of a stress run.

/// The live progress line on a terminal (standard error); nothing otherwise.
struct ProgressLine {
    let enabled: Bool
    private final class State { var lastDraw: UInt64 = 0; var lastOps: UInt64 = 0 }
    // (A class so `update` can be called on a `let`; the line is drawn from one thread.)
    private let state = State()

    init(enabled: Bool) { self.enabled = enabled }

    func update(now: UInt64, start: UInt64, ops: UInt64, violations: UInt64, kills: Int?) {
        if state.lastDraw == 0 { state.lastDraw = start }
        guard enabled, now - state.lastDraw >= 250_000_000 else { return }
        let interval = now - state.lastDraw
        let rate = interval == 0 ? 0 : Double(ops - state.lastOps) * 1e9 / Double(interval)
        state.lastDraw = now
        state.lastOps = ops
        var line = "\r\u{1B}[K\(Format.seconds(now - start)) elapsed, \(Format.count(UInt64(rate))) ops/s, \(violations) violations"
        if let kills { line += ", \(kills) kills" }
        System.writeError(line)
    }

    func clear() {
        guard enabled else { return }
        System.writeError("\r\u{1B}[K")
    }
}
