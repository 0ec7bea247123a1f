#define _GNU_SOURCE 1
#include "CInterlock.h"

#include <stdio.h>  // defines __GLIBC__ on glibc
#if !defined(__linux__) || !defined(__GLIBC__)
#error "Interlock supports Linux with glibc only (futexes shared between processes, /dev/shm, POSIX record locks)."
#endif

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

_Atomic(uint64_t) cinterlock_fork_generation_storage = 0;

_Atomic(uintptr_t) cinterlock_forking_thread_storage = 0;

__thread uintptr_t cinterlock_thread_serial_storage __attribute__((tls_model("initial-exec")));
static _Atomic(uintptr_t) cinterlock_thread_serial_counter = 0;

// Lock-free and async-signal-safe (the fork child handler may be the first caller).
uintptr_t cinterlock_thread_serial_assign(void) {
    uintptr_t s = atomic_fetch_add_explicit(&cinterlock_thread_serial_counter, 1, memory_order_relaxed) + 1;
    cinterlock_thread_serial_storage = s;
    return s;
}

__thread struct cinterlock_held cinterlock_held_storage __attribute__((tls_model("initial-exec")));

static const void **cinterlock_held_at(struct cinterlock_held *h, long i) {
    return i < CINTERLOCK_HELD_CAPACITY ? &h->ids[i] : &h->more[i - CINTERLOCK_HELD_CAPACITY];
}

void cinterlock_held_push_slow(const void *id) {
    struct cinterlock_held *h = &cinterlock_held_storage;
    long n = h->count;
    long extra = n - CINTERLOCK_HELD_CAPACITY;  // >= 0 here
    if (extra >= h->more_capacity) {
        long capacity = h->more_capacity > 0 ? h->more_capacity * 2 : CINTERLOCK_HELD_CAPACITY;
        const void **grown = realloc(h->more, (size_t)capacity * sizeof(void *));
        if (grown == NULL) {
            static const char message[] =
                "Interlock: out of memory recording this thread's shared holds\n";
            (void)!write(2, message, sizeof message - 1);
            abort();
        }
        h->more = grown;
        h->more_capacity = capacity;
    }
    h->more[extra] = id;
    h->count = n + 1;
}

int cinterlock_held_find_slow(const void *id, int remove) {
    struct cinterlock_held *h = &cinterlock_held_storage;
    long n = h->count;
    for (long i = n - 1; i >= 0; i--) {
        const void **slot = cinterlock_held_at(h, i);
        if (*slot != id) continue;
        if (remove) {
            *slot = *cinterlock_held_at(h, n - 1);
            h->count = n - 1;
            // Give the array back as soon as every hold fits inline again: removals at
            // or below the inline capacity never come here, so a later point would never
            // be reached (a thread that hovers around the capacity pays a malloc per
            // crossing, which is rare).
            if (n - 1 <= CINTERLOCK_HELD_CAPACITY && h->more != NULL) {
                free(h->more);
                h->more = NULL;
                h->more_capacity = 0;
            }
        }
        return 1;
    }
    return 0;
}

__thread struct cinterlock_thread_slot cinterlock_thread_slots[CINTERLOCK_THREAD_SLOTS] __attribute__((tls_model("initial-exec")));

__thread void *cinterlock_thread_more __attribute__((tls_model("initial-exec")));

// Runs in the child right after fork(). Only async-signal-safe work is allowed
// there (the parent may have had other threads holding any lock), so this does a
// lock-free atomic increment and a store of the calling thread's identity
// (pthread_self() reads the thread pointer; it takes no lock).
//
// The forking thread's record of shared holds is kept: its entries name the parent's
// lock states, which no hold made in the child can match (see `cinterlock_held`), and
// they let the child release a hold taken before the fork as the no-op it is.
static void cinterlock_atfork_child(void) {
    atomic_store_explicit(&cinterlock_forking_thread_storage, cinterlock_thread_serial(), memory_order_relaxed);
    atomic_fetch_add_explicit(&cinterlock_fork_generation_storage, 1, memory_order_acq_rel);
}

static pthread_once_t cinterlock_atfork_once = PTHREAD_ONCE_INIT;
static int cinterlock_atfork_result = 0;

static pthread_mutex_t cinterlock_files_mutex = PTHREAD_MUTEX_INITIALIZER;

void cinterlock_files_lock(void) { pthread_mutex_lock(&cinterlock_files_mutex); }
void cinterlock_files_unlock(void) { pthread_mutex_unlock(&cinterlock_files_mutex); }

// fork() waits for the lock-file table to be consistent, and both sides get it back
// unlocked (the child's copy was locked by the thread that called fork, which is the
// child's only thread).
static void cinterlock_atfork_prepare(void) { pthread_mutex_lock(&cinterlock_files_mutex); }
static void cinterlock_atfork_parent(void) { pthread_mutex_unlock(&cinterlock_files_mutex); }

static void cinterlock_atfork_child_all(void) {
    pthread_mutex_unlock(&cinterlock_files_mutex);
    cinterlock_atfork_child();
}

static void cinterlock_atfork_register_once(void) {
    cinterlock_atfork_result = pthread_atfork(
        cinterlock_atfork_prepare, cinterlock_atfork_parent, cinterlock_atfork_child_all);
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

int cinterlock_futex_wait_bitset(uint32_t *word, uint32_t expected,
                                 const struct timespec *deadline, uint32_t bitset,
                                 int process_shared) {
    int op = process_shared ? FUTEX_WAIT_BITSET : (FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG);
    long r = syscall(SYS_futex, word, op, expected, deadline, NULL, bitset);
    return r == 0 ? 0 : errno;
}

int cinterlock_futex_wake_bitset(uint32_t *word, int count, uint32_t bitset, int process_shared) {
    int op = process_shared ? FUTEX_WAKE_BITSET : (FUTEX_WAKE_BITSET | FUTEX_PRIVATE_FLAG);
    long r = syscall(SYS_futex, word, op, count, NULL, NULL, bitset);
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
int cinterlock_futex_wait_bitset(uint32_t *word, uint32_t expected,
                                 const struct timespec *deadline, uint32_t bitset,
                                 int process_shared) {
    (void)word; (void)expected; (void)deadline; (void)bitset; (void)process_shared;
    return ENOSYS;
}
int cinterlock_futex_wake_bitset(uint32_t *word, int count, uint32_t bitset, int process_shared) {
    (void)word; (void)count; (void)bitset; (void)process_shared;
    return -ENOSYS;
}
#endif

#if defined(__linux__)
static int cinterlock_byte_lock(int fd, int cmd, short type, int64_t offset, struct flock *out) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)offset;
    fl.l_len = 1;  // one byte; l_pid must be 0 for the OFD commands
    while (fcntl(fd, cmd, &fl) != 0) {
        if (errno != EINTR) return errno;
    }
    if (out) *out = fl;
    return 0;
}

int cinterlock_lock_byte(int fd, int64_t offset) {
    return cinterlock_byte_lock(fd, F_SETLK, F_WRLCK, offset, NULL);
}

int cinterlock_unlock_byte(int fd, int64_t offset) {
    return cinterlock_byte_lock(fd, F_SETLK, F_UNLCK, offset, NULL);
}

int cinterlock_byte_lock_holder(int fd, int64_t offset, int32_t *holder) {
    struct flock fl;
    int e = cinterlock_byte_lock(fd, F_OFD_GETLK, F_WRLCK, offset, &fl);
    if (e != 0) return -e;
    if (fl.l_type == F_UNLCK) return 0;
    *holder = (int32_t)fl.l_pid;
    return fl.l_start == (off_t)offset && fl.l_len == 1 ? 1 : 2;
}

int cinterlock_range_locked(int fd, int64_t offset, int64_t length) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)offset;
    fl.l_len = (off_t)length;  // l_pid must be 0 for the OFD commands
    while (fcntl(fd, F_OFD_GETLK, &fl) != 0) {
        if (errno != EINTR) return -errno;
    }
    return fl.l_type == F_UNLCK ? 0 : 1;
}

int cinterlock_memfd_create(const char *name) {
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    return fd >= 0 ? fd : -errno;
}

int cinterlock_memfd_seal(int fd) {
    return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0 ? 0 : errno;
}

int64_t cinterlock_filesystem_type(int fd) {
    struct statfs s;
    return fstatfs(fd, &s) == 0 ? (int64_t)s.f_type : 0;
}
#else
int cinterlock_lock_byte(int fd, int64_t offset) { (void)fd; (void)offset; return ENOSYS; }
int cinterlock_unlock_byte(int fd, int64_t offset) { (void)fd; (void)offset; return ENOSYS; }
int cinterlock_byte_lock_holder(int fd, int64_t offset, int32_t *holder) {
    (void)fd; (void)offset; (void)holder; return -ENOSYS;
}
int cinterlock_range_locked(int fd, int64_t offset, int64_t length) {
    (void)fd; (void)offset; (void)length; return -ENOSYS;
}
int cinterlock_memfd_create(const char *name) { (void)name; return -ENOSYS; }
int cinterlock_memfd_seal(int fd) { (void)fd; return ENOSYS; }
int64_t cinterlock_filesystem_type(int fd) { (void)fd; return 0; }
#endif

void cinterlock_name_thread(const char *name) {
    char buffer[16];
    strncpy(buffer, name, sizeof buffer - 1);
    buffer[sizeof buffer - 1] = 0;
    (void)pthread_setname_np(pthread_self(), buffer);
}
