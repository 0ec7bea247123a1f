// CInterlock: the few calls Interlock cannot make from Swift.
//
// This target is internal to the package (not API). Every function is prefixed
// `cinterlock_` and says why it has to be written in C.
#ifndef CINTERLOCK_H
#define CINTERLOCK_H

#include <stdint.h>
#include <time.h>
#include <stdatomic.h>

#ifdef __cplusplus
extern "C" {
#endif

#pragma clang assume_nonnull begin

/// The fork generation: bumped by a `pthread_atfork` child handler in every child.
///
/// In C because the child handler must be a plain C function that does one
/// async-signal-safe thing (an atomic increment), and because a C `_Atomic`
/// global is statically initialised: reading it never runs a lazy initialiser.
extern _Atomic(uint64_t) cinterlock_fork_generation_storage;

/// Loads the fork generation (acquire). `static inline` so Swift inlines it.
static inline uint64_t cinterlock_fork_generation(void) {
    return atomic_load_explicit(&cinterlock_fork_generation_storage, memory_order_acquire);
}

/// Registers the `pthread_atfork` child handler, once per process image
/// (idempotent and thread-safe through `pthread_once`). Returns 0 or an errno.
int cinterlock_register_atfork(void);

/// `futex(FUTEX_WAIT)` on a 32-bit word, the *shared* (non-private) operation when
/// `process_shared` is non-zero so waiters in other processes are woken too.
///
/// In C because `syscall(2)` is variadic and Swift cannot call variadic C functions.
/// `timeout` is relative (CLOCK_MONOTONIC), or NULL to wait indefinitely.
/// Returns 0 when woken, or an errno: EAGAIN (the word was not `expected`),
/// ETIMEDOUT, EINTR.
int cinterlock_futex_wait(uint32_t *word, uint32_t expected,
                          const struct timespec *_Nullable timeout, int process_shared);

/// `futex(FUTEX_WAKE)`: wakes up to `count` waiters on `word`. Returns the number
/// woken, or -errno.
int cinterlock_futex_wake(uint32_t *word, int count, int process_shared);

/// Number of per-thread fast slots for `ThreadLocal` (instances beyond this use
/// `pthread_getspecific` alone).
#define CINTERLOCK_THREAD_SLOTS 64

/// Per-thread fast slots: one pointer per `ThreadLocal` instance index, in the thread's
/// static TLS block. In C because Swift has no `thread_local` storage; `initial-exec` so a
/// read is one %fs-relative load, not a call to `__tls_get_addr`. Never touched directly
/// from Swift (Swift cannot import thread-local variables): use the accessors.
extern __thread void *_Nullable cinterlock_thread_slots[CINTERLOCK_THREAD_SLOTS]
    __attribute__((tls_model("initial-exec")));

/// The calling thread's fast slot `index` (0 ≤ index < CINTERLOCK_THREAD_SLOTS), or NULL.
static inline void *_Nullable cinterlock_thread_slot(long index) {
    return cinterlock_thread_slots[index];
}

/// Sets the calling thread's fast slot `index`.
static inline void cinterlock_set_thread_slot(long index, void *_Nullable value) {
    cinterlock_thread_slots[index] = value;
}

/// How many shared holds (on any `SharedLock`) the calling thread has. Used only to catch
/// `unlockShared()` on a thread that holds no shared mode at all. In C for `__thread`.
extern __thread long cinterlock_shared_holds __attribute__((tls_model("initial-exec")));

static inline long cinterlock_thread_shared_holds(void) { return cinterlock_shared_holds; }
static inline void cinterlock_thread_shared_holds_add(long delta) { cinterlock_shared_holds += delta; }

/// A CPU hint for busy-wait loops (PAUSE on x86, YIELD on arm64). In C because
/// Swift has no portable spelling for it.
static inline int cinterlock_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
    return 0;
}

/// `pthread_rwlock_clockrdlock`/`clockwrlock` with CLOCK_MONOTONIC and an absolute
/// deadline. In C because glibc declares them only under `_GNU_SOURCE`, which the
/// Swift Glibc module does not define. Return 0 or an errno (ETIMEDOUT, EDEADLK, …).
int cinterlock_rwlock_rdlock_until(void *rwlock, const struct timespec *deadline);
int cinterlock_rwlock_wrlock_until(void *rwlock, const struct timespec *deadline);

#pragma clang assume_nonnull end

#ifdef __cplusplus
}
#endif

#endif
