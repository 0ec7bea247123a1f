// CTestHelper: what InterlockTestHelper cannot do from Swift. Test support only.
#ifndef CTESTHELPER_H
#define CTESTHELPER_H

/// Ends the calling thread alone with the raw exit system call, without unwinding.
///
/// In C because `syscall` is variadic, and because `pthread_exit` on the main thread
/// unwinds through Swift's generated `main`, which crashes. The process lives on with
/// its leader shown as a zombie in /proc, which is the state under test.
_Noreturn void ctesthelper_exit_thread(void);

#endif
