#if canImport(Glibc)
import Glibc
#endif

/// A real pthread running a closure (not a Swift concurrency task: lock tests need
/// threads that may block).
struct TestThread {
    private final class Start: @unchecked Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let handle: pthread_t

    /// Starts `body` on a new thread.
    init(_ body: @escaping @Sendable () -> Void) {
        var t = pthread_t()
        let start = Unmanaged.passRetained(Start(body)).toOpaque()
        let rc = pthread_create(&t, nil, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            start.body()
            return nil
        }, start)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        handle = t
    }

    /// Waits for the thread to finish.
    func join() { pthread_join(handle, nil) }
}

/// Runs `body` on a new thread and returns its answer.
func onOtherThread(_ body: @escaping @Sendable () -> Bool) -> Bool {
    final class Answer: @unchecked Sendable { var value = false }
    let answer = Answer()
    TestThread { answer.value = body() }.join()
    return answer.value
}
