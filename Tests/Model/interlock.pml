/*
 * interlock.pml — Promela model of Interlock's cross-process protocol v3 (issue 10):
 * a control word `ctl`, per-process table entries with `readers`/`blocked`/`writing`
 * counts, a writer futex `writerSeq` with `writerSleepers`, `highWater`, and the
 * kernel-kept liveness oracle of issue 9 (a process is alive iff it holds the byte lock
 * of its entry; kill -9 drops its locks in the same atomic step as its death).
 *
 * Actors.  A `Thr(p, k)` is thread k of process p; a process has NTHR threads sharing
 * its entry (the threads scope is NPROC=1: one entry, no deaths).  Every thread loops
 * for ever over shared and exclusive acquires (blocking, with a deadline, or try), hold,
 * release.  A `Killer` may kill -9 a live process at any step (MAXKILL) and start a NEW
 * process (MAXRESTART) that registers — into a dead entry or a never-used one — and takes
 * part.  PREDEAD adds a process that died before the start in one of several states.
 *
 * Granularity.  Every shared-memory RMW and every load named by the protocol is one
 * Promela step (they are all sequentially consistent, so interleaving semantics is
 * exact).  A CAS loop whose only job is to set or clear a bit (set DRAIN_WAIT, CAS-clear
 * DRAIN_WAIT, end a write phase) is one atomic step: a failed CAS only re-reads.  One
 * simplification: a scan reads an entry's count and queries its byte lock in one step
 * (the order does not matter: a reader can only become counted in a re-registered entry
 * after its registration locked it, and before WRITER/READ_TURN...; see README).
 *
 * Futexes are modelled exactly as value-checked sleeps: futex_wait(addr, v) atomically
 * checks *addr == v and enqueues the thread (onCtl/onSeq); a wake clears the flag of one
 * (nondeterministically chosen: a superset of the kernel's order) or of every sleeper.
 * writerSeq is modelled by per-thread "seq unchanged since I read it" bits (seqOk): a
 * bump clears every bit, so no wrap-around can fake a wake-up or a lost one.  A sleeper
 * may leave only when woken, when its deadline passes (dl), or for the periodic poll,
 * which is enabled only while some entry needs reclaiming or after a kill (POLL); SPURIOUS
 * adds arbitrary spurious wake-ups (safety only: it hides lost wake-ups).
 *
 * Ghost state per thread: rc/bc (counted in its entry's readers/blocked), rin (inside
 * shared), win (holding exclusive: its entry's writing == 1), wown (owns the write phase:
 * from the WRITER CAS to the CAS that ends it; a dead owner's stays until reclaimed),
 * want (inside an acquire, for the LTL).  occ[i] = process+1 whose counts entry i holds.
 * odPending: a holding writer died and no writer has yet acquired with the report.
 *
 * Checked in every reachable state (monitor): mutual exclusion among live threads; a
 * live reader inside is counted and WRITER is clear or its owner still draining; the
 * control word matches the live contributions (WRITER <=> exactly one phase owner,
 * alive or dead-not-yet-reclaimed, and OWNER names its entry; DRAIN_WAIT,
 * READERS_BLOCKED only with WRITER; READ_TURN never with WRITER; every entry's counts
 * equal its process's ghost contributions; a live process's `writing` equals its
 * holding); reclaim never touches a live process's entry; OWNER_DIED is reported exactly
 * when a holding writer died since the last report.  No invalid end state (deadlock,
 * lost wake-up).  LTL writer_progress / reader_progress under weak fairness (LIVE).
 *
 * Configuration (-D on the spin command line):
 *   NPROC=n        processes at the start (1…3);  NTHR=t threads per process (1…3)
 *   MAXKILL=k      kills;  MAXRESTART=r  new processes after a death (NTHR=1 only)
 *   SPARE          one more entry, never used at the start (beyond highWater)
 *   PREDEAD        one more process died before the start (entry NPROC, lock free): holding
 *                  shared, blocked under READ_TURN, draining (asleep or not), holding
 *                  exclusive (with READERS_BLOCKED left by a reader that timed out)
 *   PDV=v          with PREDEAD: only variant v of those (see init)
 *   NWRITERS=w     processes < w only take exclusive mode, the others only shared
 *   LIVE           liveness configuration: blocking forms only
 *   FORMS=0|1      0: blocking only; 1 (default unless LIVE): blocking, deadline, try
 *   NOPS=n         each thread does n operations and ends (so that a lost wake-up is an
 *                  invalid end state; with endless loops another thread's next release
 *                  usually repairs it, and only the LTL checks would see it)
 *   SPURIOUS       spurious futex wake-ups (safety only)
 *   KILLONLY=p     only process p may be killed
 *
 * Fixes of the protocol as first specified (the default includes them; each SPEC_ switch
 * restores the specified behaviour, and the named check fails):
 *   SPEC_OD_AT_CAS      OWNER_DIED is cleared by the WRITER CAS (and restored by a timed-
 *                       out drain).  A writer that took the report and dies while
 *                       draining loses it.  Fix: keep OWNER_DIED in ctl until the drain
 *                       is done; clear it (fetch_and, reporting the old bit) after
 *                       setting `writing = 1`.
 *   SPEC_STALE_WRITING  reclaim does not zero the dead entry's `writing`; a later
 *                       owner of that entry that dies draining gets OWNER_DIED added.
 *                       Fix: reclaim zeroes `writing` too (or registration does).
 *   RECLAIM_NO_WAKE     reclaim zeroes readers/blocked without the drainer / writer
 *                       wake rules (the sleeper then waits for its own next poll: a
 *                       latency, not a hang, since the poll re-checks; not run)
 *   SPEC_RB_CAS         a blocked reader whose re-check sees WRITER loads ctl again, and
 *                       sets READERS_BLOCKED by a CAS on the value it loaded.  A writer
 *                       whose whole phase fits in the reader's gaps (between its load and
 *                       its CAS, or between its back-off and its next load) makes the
 *                       reader see WRITER clear, increment, and lose to the next WRITER
 *                       CAS, for ever: the reader is blocked, but READ_TURN is never set
 *                       (reader_progress fails).  Fix (default): a blocked reader that saw
 *                       WRITER at its re-check claims the turn at once with
 *                       fetch_or(READERS_BLOCKED), which cannot fail; if the returned old
 *                       value has WRITER clear, the bit acts as READ_TURN (a writer treats
 *                       READ_TURN|READERS_BLOCKED with WRITER clear alike and its CAS clears
 *                       both) and the reader retries instead of sleeping.
 *   DRAIN_WAKE_ONE      "wake the drainer" is futex_wake(ctl, 1): it can wake a blocked
 *                       reader sleeping on the same word instead (lost wake-up)
 *
 * Mutants (deliberately broken; each must fail):
 *   MUTANT_CHECK_FIRST    a reader loads ctl before incrementing its count
 *   MUTANT_SCAN_FIRST     a writer scans the readers before setting WRITER
 *   MUTANT_RECLAIM_NOLOCK reclaim checks the byte lock is free but does not take it
 *   MUTANT_NO_READ_TURN   the end of a write phase never sets READ_TURN
 *   MUTANT_NO_DRAIN_WAIT  the drainer sleeps on ctl without DRAIN_WAIT; a reader whose
 *                         count reaches 0 always wakes ctl (the word does not change)
 *   MUTANT_NO_RESCAN      the drainer sets DRAIN_WAIT but does not re-scan before sleeping
 *   MUTANT_NO_RECHECK     a writer does not re-check after writerSleepers += 1
 *   MUTANT_NO_PASS_ON     a woken writer that times out does not pass the wake on
 *   REGISTER_CHECK_FIRST  (old bug) registration reads the entry's counts before taking
 *                         its byte lock and skips the reclaim if they looked clean
 */

#ifndef NPROC
#define NPROC 2
#endif
#ifndef NTHR
#define NTHR 1
#endif
#ifndef MAXKILL
#define MAXKILL 1
#endif
#ifndef MAXRESTART
#define MAXRESTART 0
#endif
#ifndef FORMS
#ifdef LIVE
#define FORMS 0
#else
#define FORMS 1
#endif
#endif
#ifdef PREDEAD
#define NPRE 1
#else
#define NPRE 0
#endif
#define NINIT (NPROC + NPRE)
#define NPID  (NINIT + MAXRESTART)
#define NT    (NPID * NTHR)
#ifdef SPARE
#define NENT (NINIT + 1)
#else
#define NENT NINIT
#endif
#if NENT > 4 || NT > 6
#error "the macros cover at most 4 entries and 6 threads"
#endif
#if MAXRESTART > 0 && NTHR > 1
#error "restarts only with one thread per process"
#endif

/* ---- ctl (compacted: same bits, OWNER in bits 5…7) ------------------------------ */
#define WB     1           /* WRITER            */
#define DW     2           /* DRAIN_WAIT        */
#define RB     4           /* READERS_BLOCKED   */
#define RT     8           /* READ_TURN         */
#define OD     16          /* OWNER_DIED        */
#define OWN1   32
#define OWNM   224
#define OWNER(c) ((c) / OWN1)          /* slot+1, 0 if none */
/* the bits that make a writer wait for the blocked readers (while WRITER is clear) */
#ifdef SPEC_RB_CAS
#define TURN   RT
#else
#define TURN   (RT | RB)
#endif
#define NOSLOT 255

byte ctl;
bit  seqOk[NT];            /* writerSeq unchanged since thread t read it            */
byte ws;                   /* writerSleepers                                       */
byte highWater;
byte readers[NENT], blocked[NENT];
bit  writing[NENT];
byte lk[NENT];             /* kernel: byte lock of entry i held by process lk[i]-1  */
byte slot[NPID];
bit  alive[NPID];
byte ndead, nrestart;
bit  onCtl[NT], onSeq[NT]; /* futex queues                                         */

/* ghosts */
bit  rc[NT], bc[NT], rin[NT], win[NT], wown[NT];
#ifdef LIVE
bit  want[NT];
#define WANT(v) want[me] = v
#else
#define WANT(v) skip
#endif
byte occ[NENT];
bit  odPending;

#define PROC(t) ((t) / NTHR)

/* an entry a waiter would reclaim: byte lock free, and counts or the write phase */
#define DEADBUSY(i) ((i) < NENT && lk[(i) % NENT] == 0 && (readers[(i) % NENT] != 0 \
        || blocked[(i) % NENT] != 0 || ((ctl & WB) != 0 && OWNER(ctl) == (i) + 1)))
#define RECLAIM_NEEDED (DEADBUSY(0) || DEADBUSY(1) || DEADBUSY(2) || DEADBUSY(3))
/* the periodic poll of a sleeping waiter (reclaim, then re-check its own condition): in
 * reality always possible; modelled as possible only while an entry needs reclaiming or
 * after a kill during the run (a killed process may have owed a wake-up: a reader killed
 * between `readers -= 1` and its DRAIN_WAIT check, a writer killed between its release
 * CAS and its wakes).  Without deaths every wake-up must come from a wake. */
#define POLL (RECLAIM_NEEDED || ndead > NPRE)

/* ---- invariants: the monitor may run in any reachable state --------------------- */
active proctype monitor() {
    byte t, i, nw, nr, no, ot, sr, sb;
    d_step {
        /* mutual exclusion among live threads; a reader inside is counted and WRITER is
         * clear or its owner is still draining */
        t = 0; nw = 0; nr = 0; no = 0; ot = 0;
        do
        :: t == NT -> break
        :: else ->
           if
           :: alive[PROC(t)] && win[t] -> nw++
           :: else
           fi;
           if
           :: alive[PROC(t)] && rin[t] ->
              nr++;
              assert(rc[t]);
              assert((ctl & WB) == 0 || writing[(OWNER(ctl) + NENT - 1) % NENT] == 0)
           :: else
           fi;
           if :: wown[t] -> no++; ot = t :: else fi;
           t++
        od;
        assert(nw <= 1 && (nw == 0 || nr == 0));
        /* the control word */
        if
        :: (ctl & WB) == 0 ->
#ifdef SPEC_RB_CAS
           assert(OWNER(ctl) == 0 && (ctl & (DW | RB)) == 0 && no == 0)
#else
           assert(OWNER(ctl) == 0 && (ctl & DW) == 0 && no == 0)
#endif
        :: else ->
           assert(no == 1 && (ctl & RT) == 0 && OWNER(ctl) == slot[PROC(ot)] + 1)
        fi;
        /* every entry's counts are its process's contributions */
        i = 0;
        do
        :: i == NENT -> break
        :: else ->
           if
           :: occ[i] == 0 -> assert(readers[i] == 0 && blocked[i] == 0)
           :: else ->
              t = (occ[i] - 1) * NTHR; sr = 0; sb = 0; nw = 0;
              do
              :: t == occ[i] * NTHR -> break
              :: else -> sr = sr + rc[t]; sb = sb + bc[t]; nw = nw + win[t]; t++
              od;
              assert(readers[i] == sr && blocked[i] == sb);
              assert(!alive[occ[i] - 1] || writing[i] == nw)
           fi;
           i++
        od;
        t = 0; i = 0; nw = 0; nr = 0; no = 0; ot = 0; sr = 0; sb = 0
    }
}

/* ---- futexes --------------------------------------------------------------------- */
#define WOKEN      0
#define TIMEDOUT   1       /* deadline passed while asleep          */
#define POLLED     2       /* periodic check: reclaim, then retry   */
#define WOKEN_LATE 3       /* woken, but the deadline has passed     */

inline futexWaitCtl(expect) {
    d_step { if :: ctl == expect -> onCtl[me] = 1 :: else fi };
    if
    :: atomic { !onCtl[me] -> wr = WOKEN; expect = 0 }
    :: atomic { dl && onCtl[me] -> onCtl[me] = 0; wr = TIMEDOUT; expect = 0 }
    :: atomic { onCtl[me] && POLL -> onCtl[me] = 0; wr = POLLED; expect = 0 }
#ifdef SPURIOUS
    :: atomic { onCtl[me] -> onCtl[me] = 0; wr = WOKEN; expect = 0 }
#endif
    fi
}

inline futexWaitSeq() {
    d_step { if :: seqOk[me] -> onSeq[me] = 1 :: else fi };
    if
    :: atomic { !onSeq[me] -> wr = WOKEN }
    :: atomic { dl && onSeq[me] -> onSeq[me] = 0; wr = TIMEDOUT }
    :: atomic { onSeq[me] && POLL -> onSeq[me] = 0; wr = POLLED }
#ifdef SPURIOUS
    :: atomic { onSeq[me] -> onSeq[me] = 0; wr = WOKEN }
#endif
    fi;
    if :: wr == WOKEN && dl -> if :: wr = WOKEN_LATE :: skip fi :: else fi
}

inline wakeAllCtl() {
    d_step { j2 = 0; do :: j2 == NT -> break :: else -> onCtl[j2] = 0; j2++ od; j2 = 0 }
}
#define W1(a, k) :: NT > k && a[(k) % NT] -> a[(k) % NT] = 0
inline wakeOneCtl() {
    atomic { if W1(onCtl,0) W1(onCtl,1) W1(onCtl,2) W1(onCtl,3) W1(onCtl,4) W1(onCtl,5)
             :: else fi }
}
inline wakeOneSeq() {
    atomic { if W1(onSeq,0) W1(onSeq,1) W1(onSeq,2) W1(onSeq,3) W1(onSeq,4) W1(onSeq,5)
             :: else fi }
}
inline bumpSeq() {         /* writerSeq += 1 */
    d_step { j2 = 0; do :: j2 == NT -> break :: else -> seqOk[j2] = 0; j2++ od; j2 = 0 }
}
inline wakeDrainer() {
#ifdef DRAIN_WAKE_ONE
    wakeOneCtl()
#else
    wakeAllCtl()           /* or a bitset wake that only the drainer's wait matches */
#endif
}

/* ---- wake rules ------------------------------------------------------------------ */
/* after this entry's readers count reached 0: if DRAIN_WAIT, CAS-clear it, wake */
inline drainWakeRule() {
#ifdef MUTANT_NO_DRAIN_WAIT
    wakeAllCtl()
#else
    d_step { if :: (ctl & DW) != 0 -> ctl = ctl & ~DW; cl = 1 :: else -> cl = 0 fi };
    if :: cl -> cl = 0; wakeDrainer() :: else fi
#endif
}
/* after blocked -= 1: if ctl has READ_TURN and writerSleepers > 0, bump + wake one */
inline writerWakeRule() {
    c = ctl;
    if
    :: (c & WB) == 0 && (c & TURN) != 0 && ws > 0 -> c = 0; bumpSeq(); wakeOneSeq()
    :: else -> c = 0
    fi
}
/* end of a write phase (release, withdrawal, reclaim), after the CAS returned old c */
inline phaseEndWakes() {
    if :: (c & RB) != 0 -> c = 0; wakeAllCtl() :: else -> c = 0 fi;
    if :: ws > 0 -> bumpSeq(); wakeOneSeq() :: else fi
}
#ifdef MUTANT_NO_READ_TURN
#define ENDPHASE(c) (((c) & ~(WB | OWNM | DW | RB)))
#else
#define ENDPHASE(c) (((c) & RB) != 0 -> (((c) & ~(WB | OWNM | DW | RB)) | RT) \
                                      : ((c) & ~(WB | OWNM | DW)))
#endif

/* ---- reclaim: entry i is locked by us (its previous owner is dead) ---------------- */
#define G_RC 0
#define G_BC 1
#define G_WOWN 2
inline clearGhosts(i, which) {   /* the dead owner's contributions stop counting */
    if
    :: occ[i] != 0 ->
       assert(!alive[occ[i] - 1]);                  /* never reclaim a live entry */
       j2 = (occ[i] - 1) * NTHR;
       do
       :: j2 == occ[i] * NTHR -> break
       :: else ->
          if
          :: which == G_RC -> rc[j2] = 0
          :: which == G_BC -> bc[j2] = 0
          :: which == G_WOWN -> wown[j2] = 0
          fi;
          j2++
       od;
       j2 = 0
    :: else
    fi
}
inline reclaimEntry(i) {
    d_step { cl = (readers[i] != 0); clearGhosts(i, G_RC); readers[i] = 0 };
#ifndef RECLAIM_NO_WAKE
    if :: cl -> drainWakeRule() :: else fi;
#endif
    d_step { cl = (blocked[i] != 0); clearGhosts(i, G_BC); blocked[i] = 0 };
#ifndef RECLAIM_NO_WAKE
    if :: cl -> cl = 0; writerWakeRule() :: else fi;
#endif
    /* if OWNER names the entry: end the write phase like a release (+ OWNER_DIED) */
    d_step {
        c = ctl;
        if
        :: (c & WB) != 0 && OWNER(c) == i + 1 ->
           ctl = ENDPHASE(c);
           if :: writing[i] -> ctl = ctl | OD :: else fi;
           clearGhosts(i, G_WOWN); cl = 1
        :: else -> cl = 0
        fi
    };
    if :: cl -> cl = 0; phaseEndWakes() :: else fi;
#ifndef SPEC_STALE_WRITING
    writing[i] = 0;
#endif
    c = 0
}
/* the waiters' periodic check */
inline reclaimScan() {
    j = 0;
    do
    :: j == NENT -> break
    :: else ->
#ifdef MUTANT_RECLAIM_NOLOCK
       if
       :: DEADBUSY(j) -> reclaimEntry(j)            /* F_OFD_GETLK only */
       :: else
       fi;
#else
       d_step { if :: DEADBUSY(j) -> lk[j] = p + 1; got = 1 :: else -> got = 0 fi };
       if :: got -> reclaimEntry(j); d_step { lk[j] = 0; got = 0 } :: else fi;
#endif
       j++
    od;
    j = 0
}

/* ---- registration: take a free byte lock, reclaim, claim, raise highWater -------- */
inline register() {
    j = 0;
    do
    :: j == NENT -> break
    :: else ->
#ifdef REGISTER_CHECK_FIRST
       d_step { cl = (readers[j] == 0 && blocked[j] == 0 && OWNER(ctl) != j + 1) };
#endif
       if                                             /* any free entry, in any order */
       :: d_step { lk[j] == 0 -> lk[j] = p + 1; got = 1 }; break
       :: j++
       fi
    od;
    if
    :: got ->
#ifdef REGISTER_CHECK_FIRST
       if :: !cl -> reclaimEntry(j) :: else fi;
#else
       reclaimEntry(j);
#endif
       d_step { slot[p] = j; occ[j] = p + 1; e = j; cl = 0 };
       d_step { if :: highWater < j + 1 -> highWater = j + 1 :: else fi; j = 0 }
    :: else
    fi
}

/* ---- scans (entries 0..<highWater; entries whose byte lock is free are dead) ------ */
/* ATOMIC_SCAN: a scan is one step (fewer states; equivalent for the drain: while WRITER
 * is set, the count of a reader that is inside cannot reach 0 before its release, and a
 * reader that increments later backs off).  Default: one step per entry. */
#ifdef ATOMIC_SCAN
#define SCAN_BEGIN d_step {
#define SCAN_END   }
#define SCAN_ENTRY(cond) if :: cond -> busy = 1 :: else fi; j++
#else
#define SCAN_BEGIN
#define SCAN_END
#define SCAN_ENTRY(cond) d_step { if :: cond -> busy = 1 :: else fi; j++ }
#endif
inline scanReaders() {
    SCAN_BEGIN
    busy = 0; j = 0;
    do
    :: j >= highWater -> break
    :: else -> SCAN_ENTRY(readers[j] != 0 && lk[j] != 0)
    od;
    j = 0
    SCAN_END
}
inline scanBlocked() {
    SCAN_BEGIN
    busy = 0; j = 0;
    do
    :: j >= highWater -> break
    :: else -> SCAN_ENTRY(blocked[j] != 0 && lk[j] != 0)
    od;
    j = 0
    SCAN_END
}
/* may this writer set WRITER?  c = the loaded ctl; result in ok */
inline writerMay() {
    c = ctl;
    if
    :: (c & WB) != 0 -> ok = 0
    :: (c & WB) == 0 && (c & TURN) == 0 -> ok = 1
    :: (c & WB) == 0 && (c & TURN) != 0 -> scanBlocked(); ok = !busy; busy = 0
    fi
}

/* ---- shared ---------------------------------------------------------------------- */
/* one attempt: readers += 1; load ctl; inside iff WRITER clear (else back off) */
inline tryEnter() {
#ifdef MUTANT_CHECK_FIRST
    c = ctl;
    if
    :: (c & WB) == 0 -> d_step { readers[e]++; rc[me] = 1; rin[me] = 1; ok = 1 }
    :: else -> ok = 0
    fi
#else
    d_step { readers[e]++; rc[me] = 1 };
    d_step { ok = ((ctl & WB) == 0); if :: ok -> rin[me] = 1 :: else fi };
    if
    :: !ok ->                                         /* back off */
       d_step { readers[e]--; rc[me] = 0; cl = (readers[e] == 0) };
       if :: cl -> cl = 0; drainWakeRule() :: else fi
    :: else
    fi
#endif
}

inline acquireShared() {
    WANT(1);
    tryEnter();
    if
    :: ok || tryf -> skip
    :: else ->
       d_step { blocked[e]++; bc[me] = 1 };
       do
       :: c = ctl;
          if
          :: (c & WB) == 0 ->
             tryEnter();
             if
             :: ok -> d_step { blocked[e]--; bc[me] = 0 }; writerWakeRule(); break
#ifdef SPEC_RB_CAS
             :: else -> goto rnext                    /* load ctl again */
#else
             :: else -> c = WB                        /* saw WRITER: claim the turn */
#endif
             fi
          :: else
          fi;
          /* WRITER was set: make sure READERS_BLOCKED is, then sleep */
          if
          :: (c & RB) == 0 ->
#ifdef SPEC_RB_CAS
             d_step { if :: ctl == c -> ctl = c | RB; c = c | RB; cl = 1 :: else -> cl = 0 fi }
#else
             /* fetch_or: cannot fail.  If the phase has ended meanwhile (old WRITER
              * clear), READERS_BLOCKED now acts as READ_TURN: retry, do not sleep. */
             d_step { c = ctl; ctl = ctl | RB; cl = ((c & WB) != 0); c = c | RB }
#endif
          :: else -> cl = 1
          fi;
          if
          :: cl ->
             cl = 0;
             futexWaitCtl(c);
             if
             :: wr == TIMEDOUT ->                 /* timed out: withdraw */
                d_step { blocked[e]--; bc[me] = 0; wr = 0 }; writerWakeRule(); break
             :: wr == POLLED -> wr = 0; reclaimScan()
             :: else
             fi
          :: else -> c = 0
          fi;
rnext:    skip
       od
    fi;
    WANT(0)
}

inline releaseShared() {
    d_step { rin[me] = 0; readers[e]--; rc[me] = 0; cl = (readers[e] == 0) };
    if :: cl -> cl = 0; drainWakeRule() :: else fi
}

/* ---- exclusive ------------------------------------------------------------------- */
inline acquireExclusive() {
    WANT(1);
    do                                                   /* set WRITER */
    :: seqOk[me] = 1;                                    /* seq = writerSeq */
#ifdef MUTANT_SCAN_FIRST
       scanReaders(); if :: busy -> busy = 0; goto xnext :: else fi;   /* spin */
#endif
       writerMay();
       if
       :: ok ->
          d_step {
              if
              :: ctl == c ->
#ifdef SPEC_OD_AT_CAS
                 ctl = (c & ~(OD | TURN)) | WB | (e + 1) * OWN1;
                 rep = c & OD;
                 assert((rep != 0) == odPending);       /* OWNER_DIED reported exactly */
#else
                 ctl = (c & ~TURN) | WB | (e + 1) * OWN1;
#endif
                 wown[me] = 1; c = 0
              :: else -> ok = 0; c = 0
              fi
          };
          if :: ok -> break :: else fi
       :: else ->
          if :: tryf -> goto xdone :: else fi;
          ws++;
#ifndef MUTANT_NO_RECHECK
          writerMay();
          if :: ok -> ws--; ok = 0; goto xnext :: else fi;
#endif
          futexWaitSeq();
          ws--;
          if
          :: wr == TIMEDOUT -> wr = 0; goto xdone
          :: wr == WOKEN_LATE ->                        /* pass the wake on */
             wr = 0;
#ifndef MUTANT_NO_PASS_ON
             if :: ws > 0 -> bumpSeq(); wakeOneSeq() :: else fi;
#endif
             goto xdone
          :: wr == POLLED -> wr = 0; reclaimScan()
          :: else
          fi
       fi;
xnext: skip
    od;
#ifdef MUTANT_SCAN_FIRST
    goto xhold;
#endif
    do                                                   /* drain */
    :: scanReaders();
       if
       :: !busy -> break
       :: else ->
#ifdef MUTANT_NO_DRAIN_WAIT
          c = ctl;
#else
          d_step { ctl = ctl | DW; c = ctl };
#ifndef MUTANT_NO_RESCAN
          scanReaders();
          if :: !busy -> break :: else fi;
#endif
#endif
          futexWaitCtl(c);
          if
          :: wr == TIMEDOUT ->                          /* withdraw like a release */
             d_step {
                 c = ctl; ctl = ENDPHASE(c);
#ifdef SPEC_OD_AT_CAS
                 ctl = ctl | rep;                        /* restore OWNER_DIED */
#endif
                 wown[me] = 0; wr = 0
             };
             phaseEndWakes();
             ok = 0; goto xdone
          :: wr == POLLED -> wr = 0; reclaimScan()
          :: else
          fi
       fi
    od;
#ifdef MUTANT_SCAN_FIRST
xhold:
#endif
    busy = 0;
    d_step { writing[e] = 1; win[me] = 1 };             /* holding */
#ifdef SPEC_OD_AT_CAS
    odPending = 0;                                       /* reported with the acquire */
#else
    d_step {                                             /* fetch_and(~OWNER_DIED) */
        assert(((ctl & OD) != 0) == odPending);          /* OWNER_DIED reported exactly */
        ctl = ctl & ~OD;
        odPending = 0
    };
#endif
    ok = 1;
xdone:
    WANT(0)
}

inline releaseExclusive() {
    d_step { writing[e] = 0; win[me] = 0 };
    d_step { c = ctl; ctl = ENDPHASE(c); wown[me] = 0 };
    phaseEndWakes()
}

proctype Thr(byte p; byte k) {
    byte me, c, e, j, j2, wr, rep;
#ifdef NOPS
    byte nops;
#endif
    bit ok, dl, tryf, busy, cl, got;
    {
        d_step { me = p * NTHR + k; e = slot[p] };
        if
        :: e == NOSLOT -> register(); if :: !got -> goto gone :: else -> got = 0 fi
        :: else
        fi;
end:    do
        ::
#ifdef NOPS
           if :: nops == NOPS -> break :: else -> nops++ fi;
#endif
           if
#ifdef NWRITERS
           :: p < NWRITERS ->
#else
           :: true ->
#endif
#if FORMS
              if :: skip :: dl = 1 :: dl = 1; tryf = 1 fi;
#endif
              acquireExclusive();
              if :: ok -> releaseExclusive() :: else fi;
              d_step { c = 0; ok = 0; dl = 0; tryf = 0; wr = 0; rep = 0 }
#ifdef NWRITERS
           :: p >= NWRITERS ->
#else
           :: true ->
#endif
#if FORMS
              if :: skip :: dl = 1 :: dl = 1; tryf = 1 fi;
#endif
              acquireShared();
              if :: ok -> releaseShared() :: else fi;
              d_step { c = 0; ok = 0; dl = 0; tryf = 0; wr = 0 }
           fi
        od
    } unless { !alive[p] };                               /* kill -9 */
gone: skip
}

#define KILLABLE(q) (NPID > q && alive[(q) % NPID])
active proctype Killer() {
    byte q, i, t;
end: do
    :: ndead < MAXKILL + NPRE ->
       atomic {
#ifdef KILLONLY
           q = KILLONLY;
#else
           if
           :: KILLABLE(0) -> q = 0
           :: KILLABLE(1) -> q = 1
           :: KILLABLE(2) -> q = 2
           :: KILLABLE(3) -> q = 3
           :: KILLABLE(4) -> q = 4
           :: else -> q = NOSLOT
           fi;
#endif
           if
           :: q != NOSLOT && alive[q] ->
              d_step {
                  alive[q] = 0; ndead++;                 /* its locks vanish with it */
                  i = 0;
                  do
                  :: i == NENT -> break
                  :: else -> if :: lk[i] == q + 1 -> lk[i] = 0 :: else fi; i++
                  od;
                  t = q * NTHR;
                  do
                  :: t == (q + 1) * NTHR -> break
                  :: else ->
                     onCtl[t] = 0; onSeq[t] = 0;          /* its threads leave the queues */
                     if :: win[t] -> odPending = 1 :: else fi;
                     t++
                  od;
                  i = 0; t = 0
              }
           :: else
           fi;
           q = 0
       }
    :: nrestart < MAXRESTART && ndead > nrestart ->
       atomic {                                          /* a new process starts */
           q = NINIT + nrestart; nrestart++;
           alive[q] = 1; slot[q] = NOSLOT;
           run Thr(q, 0);
           q = 0
       }
    :: ndead >= MAXKILL + NPRE && (nrestart >= MAXRESTART || nrestart >= ndead) -> break
    od
}

init {
    byte q, k;
    atomic {
        for (q : 0 .. NPROC - 1) { alive[q] = 1; slot[q] = q; lk[q] = q + 1; occ[q] = q + 1 };
        for (q : NINIT .. NPID - 1) { slot[q] = NOSLOT };
        highWater = NINIT;
#ifdef PREDEAD
        /* process NPROC died before the start (its entry's byte lock is free) */
        q = NPROC; slot[q] = q; occ[q] = q + 1; ndead = 1; k = q * NTHR;
#ifndef PDV
        if
        :: readers[q] = 1; rc[k] = 1                              /* holding shared     */
        :: blocked[q] = 1; bc[k] = 1; ctl = RT                    /* blocked, READ_TURN */
        :: ctl = WB | (q + 1) * OWN1; wown[k] = 1                 /* draining           */
        :: ctl = WB | (q + 1) * OWN1 | DW; wown[k] = 1            /* draining, asleep   */
        :: ctl = WB | (q + 1) * OWN1; wown[k] = 1; writing[q] = 1; win[k] = 1;
           odPending = 1                                          /* holding exclusive  */
        :: ctl = WB | (q + 1) * OWN1 | RB; wown[k] = 1; writing[q] = 1; win[k] = 1;
           odPending = 1                           /* holding, a reader timed out blocked */
        fi;
#else
        if
        :: PDV == 0 -> readers[q] = 1; rc[k] = 1
        :: PDV == 1 -> ctl = WB | (q + 1) * OWN1; wown[k] = 1; writing[q] = 1; win[k] = 1;
                       odPending = 1
        :: PDV == 2 -> ctl = WB | (q + 1) * OWN1; wown[k] = 1
        :: PDV == 3 -> blocked[q] = 1; bc[k] = 1; ctl = RT
        fi;
#endif
#endif
        for (q : 0 .. NPROC - 1) {
            for (k : 0 .. NTHR - 1) { run Thr(q, k) }
        }
    }
}

#ifdef LIVE
/* thread 0 (a writer) and the first thread of the last initial process (a reader) */
#define TW 0
#define TR ((NPROC - 1) * NTHR)
ltl writer_progress { [] (want[TW] -> <> (!want[TW] || !alive[PROC(TW)])) }
ltl reader_progress { [] (want[TR] -> <> (!want[TR] || !alive[PROC(TR)])) }
#endif
