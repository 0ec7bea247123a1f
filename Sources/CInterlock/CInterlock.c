#define _GNU_SOURCE 1
#include "CInterlock.h"

#include <errno.h>
#include <pthread.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

_Atomic(uint64_t) cinterlock_fork_generation_storage = 0;

__thread struct cinterlock_held cinterlock_held_storage __attribute__((tls_model("initial-exec")));

__thread void *cinterlock_thread_slots[CINTERLOCK_THREAD_SLOTS] __attribute__((tls_model("initial-exec")));

// Runs in the child right after fork(). Only async-signal-safe work is allowed
// there (the parent may have had other threads holding any lock), so this does a
// lock-free atomic increment and two plain stores to the thread's own TLS.
static void cinterlock_atfork_child(void) {
    atomic_fetch_add_explicit(&cinterlock_fork_generation_storage, 1, memory_order_acq_rel);
    // The forking thread's record of shared holds: the child holds nothing.
    cinterlock_held_storage.count = 0;
    cinterlock_held_storage.overflowed = 0;
}

static pthread_once_t cinterlock_atfork_once = PTHREAD_ONCE_INIT;
static int cinterlock_atfork_result = 0;

static void cinterlock_atfork_register_once(void) {
    cinterlock_atfork_result = pthread_atfork(NULL, NULL, cinterlock_atfork_child);
}

int cinterlock_register_atfork(void) {
    // pthread_once makes concurrent first calls safe; the handler is registered
    // once per process image and is inherited (as registered) by fork children.
    pthread_once(&cinterlock_atfork_once, cinterlock_atfork_register_once);
    return cinterlock_atfork_result;
}

#if defined(__linux__)
int cinterlock_futex_wait(uint32_t *word, uint32_t expected,
                          const struct timespec *timeout, int process_shared) {
    int op = process_shared ? FUTEX_WAIT : (FUTEX_WAIT | FUTEX_PRIVATE_FLAG);
    long r = syscall(SYS_futex, word, op, expected, timeout, NULL, 0);
    return r == 0 ? 0 : errno;
}

int cinterlock_futex_wake(uint32_t *word, int count, int process_shared) {
    int op = process_shared ? FUTEX_WAKE : (FUTEX_WAKE | FUTEX_PRIVATE_FLAG);
    long r = syscall(SYS_futex, word, op, count, NULL, NULL, 0);
    return r >= 0 ? (int)r : -errno;
}
#else
// Darwin port: to be written on __ulock_wait/__ulock_wake (or os_sync_wait_on_address).
int cinterlock_futex_wait(uint32_t *word, uint32_t expected,
                          const struct timespec *timeout, int process_shared) {
    (void)word; (void)expected; (void)timeout; (void)process_shared;
    return ENOSYS;
}
int cinterlock_futex_wake(uint32_t *word, int count, int process_shared) {
    (void)word; (void)count; (void)process_shared;
    return -ENOSYS;
}
#endif

int cinterlock_rwlock_rdlock_until(void *rwlock, const struct timespec *deadline) {
#if defined(__linux__)
    return pthread_rwlock_clockrdlock((pthread_rwlock_t *)rwlock, CLOCK_MONOTONIC, deadline);
#else
    return pthread_rwlock_timedrdlock((pthread_rwlock_t *)rwlock, deadline);
#endif
}

int cinterlock_rwlock_wrlock_until(void *rwlock, const struct timespec *deadline) {
#if defined(__linux__)
    return pthread_rwlock_clockwrlock((pthread_rwlock_t *)rwlock, CLOCK_MONOTONIC, deadline);
#else
    return pthread_rwlock_timedwrlock((pthread_rwlock_t *)rwlock, deadline);
#endif
}
