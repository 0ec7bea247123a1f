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

/// `futex(FUTEX_WAIT_BITSET)`: like `cinterlock_futex_wait`, but the sleeper is tagged
/// with `bitset` (non-zero), so that `cinterlock_futex_wake_bitset` can wake one class of
/// waiters on a word and leave the others asleep. `deadline` is *absolute*
/// (CLOCK_MONOTONIC), or NULL. Returns 0 when woken, or an errno (EAGAIN, ETIMEDOUT, EINTR).
int cinterlock_futex_wait_bitset(uint32_t *word, uint32_t expected,
                                 const struct timespec *_Nullable deadline, uint32_t bitset,
                                 int process_shared);

/// `futex(FUTEX_WAKE_BITSET)`: wakes up to `count` waiters on `word` whose bitset
/// shares a bit with `bitset`. Returns the number woken, or -errno.
int cinterlock_futex_wake_bitset(uint32_t *word, int count, uint32_t bitset, int process_shared);

/// Number of per-thread fast slots for `ThreadLocal` (instances beyond this many alive at
/// once use a per-thread dictionary instead). 32 slots of 16 bytes: the same 512 bytes of
/// static TLS as 64 bare pointers, so a library that `dlopen`s Interlock does not need more.
#define CINTERLOCK_THREAD_SLOTS 32

/// One fast slot: the cell a `ThreadLocal` made for this thread, tagged with the
/// instance's serial number. Serial numbers are never reused, so a slot index that passed
/// to a new instance never hands it the cell of a dead one: the cell is only dereferenced
/// after the serial matched (see `cinterlock_thread_cell`).
struct cinterlock_thread_slot {
    void *_Nullable cell;
    uint64_t serial;
};

/// Per-thread fast slots, indexed by the `ThreadLocal` instance's fast index (reused when
/// an instance is destroyed). In C because Swift has no `thread_local` storage;
/// `initial-exec` so a read is a %fs-relative load, not a call to `__tls_get_addr`. Never
/// touched directly from Swift (Swift cannot import thread-local variables): use the
/// accessors.
extern __thread struct cinterlock_thread_slot cinterlock_thread_slots[CINTERLOCK_THREAD_SLOTS]
    __attribute__((tls_model("initial-exec")));

/// The calling thread's cell in fast slot `index` (0 ≤ index < CINTERLOCK_THREAD_SLOTS) if
/// it was made for the instance with this `serial`, else NULL.
static inline void *_Nullable cinterlock_thread_cell(long index, uint64_t serial) {
    struct cinterlock_thread_slot *slot = &cinterlock_thread_slots[index];
    return slot->serial == serial ? slot->cell : NULL;
}

/// The raw contents of the calling thread's fast slot `index` (for the thread-exit handler,
/// which hands the cell to the registry without dereferencing it).
static inline void *_Nullable cinterlock_thread_slot_cell(long index) { return cinterlock_thread_slots[index].cell; }
static inline uint64_t cinterlock_thread_slot_serial(long index) { return cinterlock_thread_slots[index].serial; }

/// Sets the calling thread's fast slot `index`.
static inline void cinterlock_set_thread_cell(long index, uint64_t serial, void *_Nullable cell) {
    cinterlock_thread_slots[index].cell = cell;
    cinterlock_thread_slots[index].serial = serial;
}

/// The calling thread's overflow table (an opaque Swift object, or NULL): cells of
/// `ThreadLocal` instances that have no fast slot, keyed by serial.
extern __thread void *_Nullable cinterlock_thread_more __attribute__((tls_model("initial-exec")));

static inline void *_Nullable cinterlock_thread_overflow(void) { return cinterlock_thread_more; }
static inline void cinterlock_set_thread_overflow(void *_Nullable table) { cinterlock_thread_more = table; }

/// The thread that called `fork()`, as `pthread_self()`, recorded by the child handler
/// in every child (0 in a process that was not forked). In a child it is the only thread
/// that existed before the fork, so only it can release a hold taken before the fork.
extern _Atomic(uintptr_t) cinterlock_forking_thread_storage;

/// The calling thread's serial: a number no other thread of this process has had or
/// will have (unlike `pthread_self()`, which glibc gives to the next thread once a
/// thread exits — a thread that exited holding a lock must not let its successor
/// release it). Assigned on first use from a process-wide counter; a fork child's
/// thread keeps the serial of the parent thread that forked.
extern __thread uintptr_t cinterlock_thread_serial_storage __attribute__((tls_model("initial-exec")));
uintptr_t cinterlock_thread_serial_assign(void);

/// The calling thread's serial (see `cinterlock_thread_serial_storage`), never 0.
static inline uintptr_t cinterlock_thread_serial(void) {
    uintptr_t s = cinterlock_thread_serial_storage;
    if (__builtin_expect(s == 0, 0)) s = cinterlock_thread_serial_assign();
    return s;
}

/// Loads the forking thread (see `cinterlock_forking_thread_storage`).
static inline uintptr_t cinterlock_forking_thread(void) {
    return atomic_load_explicit(&cinterlock_forking_thread_storage, memory_order_relaxed);
}

/// The shared holds of the calling thread, so that `unlockShared()` can tell whether
/// this thread holds *this* lock in shared mode (misuse is a trap, not a silent release
/// of another thread's share). In C for `__thread`.
///
/// Invariants: `count` is the number of shared holds this thread has recorded (on any
/// lock), and positions `0 ..< count` hold exactly their lock identities (a lock held
/// twice appears twice). Position `i` is `ids[i]` below `CINTERLOCK_HELD_CAPACITY` and
/// `more[i - CINTERLOCK_HELD_CAPACITY]` from there on: `more` is a heap array of
/// `more_capacity` entries, grown on demand (so there is no limit but memory) and freed
/// as soon as the count is back within the inline capacity. A thread that exits still
/// holding more than that leaks the array — and, worse, leaves those locks held. The usual case
/// (up to 16 holds) never touches it.
///
/// A lock identity is the address of a lock's per-process state (`LocalState`). A fork
/// child keeps the forking thread's record: its entries name the parent's states, which
/// the child never frees and never uses for new holds, so they cannot match a hold made
/// in the child; they let the child recognise (and quietly forget) a hold taken before
/// the fork.
#define CINTERLOCK_HELD_CAPACITY 16
struct cinterlock_held {
    long count;
    long more_capacity;
    const void *_Nullable *_Nullable more;
    const void *_Nullable ids[CINTERLOCK_HELD_CAPACITY];
};
extern __thread struct cinterlock_held cinterlock_held_storage __attribute__((tls_model("initial-exec")));

/// Records a hold past the inline capacity (grows `more`; aborts with a message if
/// memory is exhausted). Out of line: only threads with more than 16 holds call it.
void cinterlock_held_push_slow(const void *id);

/// `cinterlock_held_find` for a thread with more holds than the inline capacity.
int cinterlock_held_find_slow(const void *id, int remove);

/// Records a shared hold of lock `id` by the calling thread.
static inline void cinterlock_held_push(const void *id) {
    struct cinterlock_held *h = &cinterlock_held_storage;
    long n = h->count;
    if (__builtin_expect(n < CINTERLOCK_HELD_CAPACITY, 1)) {
        h->ids[n] = id;
        h->count = n + 1;
        return;
    }
    cinterlock_held_push_slow(id);
}

/// Whether the calling thread holds lock `id` in shared mode: 1 yes, 0 no. With
/// `remove`, a found hold is forgotten (one of them, if the lock is held twice).
static inline int cinterlock_held_find(const void *id, int remove) {
    struct cinterlock_held *h = &cinterlock_held_storage;
    long n = h->count;
    if (n <= 0) return 0;
    if (__builtin_expect(n > CINTERLOCK_HELD_CAPACITY, 0)) return cinterlock_held_find_slow(id, remove);
    if (h->ids[n - 1] == id) {  // the usual, last-in-first-out case
        if (remove) h->count = n - 1;
        return 1;
    }
    for (long i = n - 2; i >= 0; i--) {
        if (h->ids[i] == id) {
            if (remove) { h->ids[i] = h->ids[n - 1]; h->count = n - 1; }
            return 1;
        }
    }
    return 0;
}

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


/// Names the calling thread (`pthread_setname_np`, at most 15 bytes; longer names are cut).
/// In C because glibc declares it only under `_GNU_SOURCE`. Used for the async waiter thread,
/// so that it shows as `interlock-wait` in `top -H` and `/proc/PID/task/TID/comm`.
void cinterlock_name_thread(const char *name);


// MARK: Liveness byte locks and lock files

/// Takes a POSIX record lock (F_SETLK, write) on the one byte at `offset` of `fd`.
///
/// In C because `fcntl` is variadic. POSIX record locks belong to the *process*: they
/// are not inherited by `fork()` children, they vanish when the process dies (the kernel
/// drops them while tearing the process down, whatever its pid or namespace), and —
/// the classic trap — closing *any* descriptor of the same file drops all of them
/// (see `LockFile`). Returns 0, or an errno: EAGAIN or EACCES when another process
/// holds the byte.
int cinterlock_lock_byte(int fd, int64_t offset);

/// Releases this process's record lock on the byte at `offset`. Returns 0 or an errno.
int cinterlock_unlock_byte(int fd, int64_t offset);

/// Asks the kernel whether any process holds a record lock on the byte at `offset`.
///
/// Uses F_OFD_GETLK, whose lock owner is the open file description: the caller's own
/// POSIX locks count as another owner, so they are reported too (plain F_GETLK would
/// hide them). Returns 1 when the byte is locked by a lock of exactly that one byte
/// (Interlock's own kind), 2 when it is covered by some other lock (a foreign program
/// locking the file), 0 when it is free, or -errno. When locked, `*holder` is the
/// holder's pid as seen in the caller's pid namespace (0 when it is not visible there,
/// -1 for an OFD lock).
int cinterlock_byte_lock_holder(int fd, int64_t offset, int32_t *holder);

/// Whether any record lock (any process's, the caller's own included: F_OFD_GETLK)
/// covers some byte of `[offset, offset + length)`. Returns 1 or 0, or -errno.
int cinterlock_range_locked(int fd, int64_t offset, int64_t length);

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`. In C because glibc declares it
/// only under `_GNU_SOURCE`. Returns the descriptor, or -errno.
int cinterlock_memfd_create(const char *name);

/// Seals a memfd against growing, shrinking and further sealing, so that no process
/// can truncate it under another's mapping. Returns 0 or an errno.
int cinterlock_memfd_seal(int fd);

/// The file-system magic number of `fd` (`fstatfs` f_type), or 0 on failure.
int64_t cinterlock_filesystem_type(int fd);

/// The process-wide mutex that guards Interlock's table of open lock files.
///
/// In C so that `pthread_atfork` can hold it across `fork()` (prepare takes it, parent
/// and child release it): a fork child never inherits it locked by a thread that does
/// not exist there.
void cinterlock_files_lock(void);
void cinterlock_files_unlock(void);

#pragma clang assume_nonnull end

#ifdef __cplusplus
}
#endif

#endif
