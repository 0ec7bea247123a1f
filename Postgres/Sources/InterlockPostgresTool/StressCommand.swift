enum StressCommand {
    static func run(_ arguments: [String]) async -> Int32 { 2 }
}
enum StressWorker {
    static func run(_ arguments: [String]) async -> Int32 { 2 }
}
