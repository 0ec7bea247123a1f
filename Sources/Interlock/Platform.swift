// Interlock supports Linux with glibc only: futexes shared between processes, /dev/shm and
// /proc, POSIX record locks and pthread_atfork are what it is built on. Elsewhere the
// build stops here, with one message, rather than with errors from deep inside.
#if !os(Linux) || !canImport(Glibc)
#error("Interlock supports Linux (glibc) only; see the README's Platforms section")
#endif
