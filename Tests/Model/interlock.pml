/*
 * interlock.pml — Promela model of Interlock's cross-process protocol, with the
 * kernel-kept liveness oracle (issue 9): every registered process holds a byte lock on
 * its holder-table slot, and "alive" means "that byte is locked".
 *
 *   Sources/Interlock/Protocol/StateWord.swift    the state word
 *   Sources/Interlock/Protocol/Segment.swift      holder-table Entry (mode|inFlight, epoch;
 *                                                 owner/startTime are informational only)
 *   Sources/Interlock/Protocol/ProcessLevel.swift acquire/release, transition(), wait()
 *   Sources/Interlock/Protocol/Recovery.swift     recoverIfNeeded(), recover(), register(),
 *                                                 unregister()
 *
 * One Promela `Proc` = one process, reduced to one thread at the process level (the
 * per-process readers word of ProcessScope.swift only decides *which* thread does the
 * process-level step; the cross-process protocol sees one actor per entry).
 * Each Proc loops forever: acquire shared or exclusive (blocking, with a deadline, or
 * try), hold, release.  A `Killer` may kill any live process at any step (MAXKILL times)
 * and may start a NEW process in its place (MAXRESTART times; it starts unregistered and
 * runs Segment.register(); in reality it may even have the dead one's pid, in another
 * pid namespace).  Every shared-memory access is one Promela step; a CAS is one d_step.
 *
 * Liveness oracle.  lk[i] is the kernel's byte lock of slot i: the index+1 of the process
 * holding it, 0 if unlocked.  A process's byte locks vanish in the same atomic step as
 * its death (alive[p] = 0).  Every liveness decision reads only LIVE_SLOT(i) (F_OFD_GETLK:
 * "is the byte locked by anybody", the caller's own lock included) — never a pid, and
 * there are no "is it me" shortcuts, except the recoverer word check.  epoch[i] counts
 * the registrations of slot i; the recoverer word holds (epoch, slot+1) of the recovering
 * process's own slot (recE, recS; one 64-bit word in Swift, updated in one step here),
 * and the recoverer is alive iff its slot is locked and the slot's epoch is unchanged.
 *
 * Epochs are exact counters here, not wrapped: a slot is registered at most once at the
 * start plus once per restart (plus once more with REGISTER or UNREG), so epoch[i] <=
 * EPOCH_BOUND, asserted at every bump.  A small modulus would NOT be sound in the model:
 * an epoch that wraps back to a dead recoverer's value makes that recoverer look alive,
 * and a model that may wrongly judge a recoverer alive prunes the takeovers it should
 * explore (and invents hangs).  In Swift the epoch is 32 bits wide; aliasing needs 2^32
 * registrations of one slot while one recovery is frozen in the word.
 *
 * Ghost state: g[p] is what process p contributes to the state word (NONE, SHARED,
 * EXCLUSIVE or WAITING); it changes in the same atomic step as the CAS that adds or
 * removes that contribution, and recovery's publish wipes every contribution whose slot
 * it judged dead (unlocked).  g[p] == SHARED/EXCLUSIVE is "p holds the lock".
 *
 * Checked in every reachable state: (1) mutual exclusion among live holders; (2') the
 * word equals the ghost contributions, and every publish counts exactly the
 * contributions whose slots it saw locked; (3) a reclaimed dead exclusive holder sets
 * ownerDied, and the next take reports it exactly then; (4) no count underflow (the
 * Swift preconditions); (5) a dead contribution stays discoverable (its entry non-idle)
 * unless the word is frozen; (6) a registered live process's slot is locked, by it;
 * (7) nobody else claims that slot: no other live process is registered there and no
 * dead process's unreclaimed contribution lives there; the epoch never exceeds its
 * bound.  No deadlock (invalid end state).  LTL writer_progress (LIVE).
 *
 * Configuration (-D on the spin command line):
 *   NPROC=n          number of processes at the start (2 or 3)
 *   MAXKILL=k        how many processes may be killed
 *   MAXRESTART=r     how many new processes may start after a kill (unregistered; they
 *                    register, possibly into a dead process's slot, and take part)
 *   SPARE            one more holder-table slot, free at the start
 *   UNREG            a process may unregister (Segment.unregister: clear owner, unlock the
 *                    byte) while idle, then either end or register again (once)
 *   SETTLE_TIMEOUT   recover() may give up on a live in-flight entry (Recovery.swift:78,
 *                    the 2 s settle deadline: a stopped or descheduled process)
 *   LOOSE_RECOVER    recoverIfNeeded() may call recover() whenever anybody died
 *                    (over-approximates its non-atomic scan); default: exact atomic check
 *   PREDEAD          one more process died before the start, in one of 9 states (holding
 *                    shared/exclusive, waiting, or mid-transition): recovery from the start
 *   REGISTER         (implies PREDEAD) the last process starts unregistered and runs
 *                    Segment.register() against a table holding one dead idle entry and
 *                    one dead shared holder
 *   NWRITERS=w       processes 0…w-1 only take exclusive mode (blocking), the rest only
 *                    shared (blocking or with a deadline); default: every process does all
 *   LIVE             liveness configuration (NWRITERS defaults to 1); a waiter that needs
 *                    recovery runs it (no futile park loops)
 *   PDV=0|1          with PREDEAD: only "died holding shared" (0) or "... exclusive" (1)
 *   KILLONLY=p       only process p may be killed
 *   ONESHOT          each process does one acquire/release, then stays idle (small models)
 *   NOPARK           waiters do not set `parked` (fewer states; wake-ups are abstracted anyway)
 *   NO_OWNERSHIP     do not check invariants (6)/(7), to search on for their consequences
 *   SPEC_RECOUNT     recover()'s recount as first specified: it does not wait for in-flight
 *                    locked entries again (UNSAFE, see step 4 of Recovery below)
 *   REGISTER_CHECK_FIRST  register() as first specified: skip if mode != idle, skip if
 *                    locked, then try-lock — the checks precede the lock (UNSAFE, see
 *                    register() below).  Default: try-lock first, then read the mode
 *                    under the lock and unlock again if the slot is not idle.
 *   OLD_RECOVERY     recover() marks dead entries idle before publishing the word (the
 *                    order before commit 1e3c822)
 *   MUTANT_NO_SETTLE, MUTANT_NO_PREF  deliberately broken protocols (checks must fail)
 *   MUTANT_NO_EPOCH  deliberately broken: the recoverer word names only the slot, and the
 *                    recoverer is "alive" iff that slot is locked (a dead recoverer whose
 *                    slot is re-registered looks alive for ever)
 *   MUTANT_PID_LIVENESS  deliberately broken: every decision judges a slot by its
 *                    informational owner pid ("some live process has that pid"), and a
 *                    restarted process may reuse a dead process's pid
 */

#ifndef OLD_RECOVERY
#define FIX_PUBLISH_FIRST
#endif

#ifndef NPROC
#define NPROC 3
#endif
#ifndef MAXKILL
#define MAXKILL 1
#endif
#ifndef MAXRESTART
#define MAXRESTART 0
#endif
#if defined(LIVE) && !defined(NWRITERS)
#define NWRITERS 1         /* liveness: process 0 is a blocking writer, the rest readers */
#endif

#ifdef REGISTER
#define PREDEAD
#endif
/* Process indices: 0…NPROC-1 live at the start; then the processes dead before the
 * start (PREDEAD: index NPROC, dead in entry NPROC; REGISTER: index NPROC+1, dead idle in
 * entry NPROC-1); then the restarted processes NINIT…NPID-1. */
#ifdef REGISTER
#define NPRE 2
#elif defined(PREDEAD)
#define NPRE 1
#else
#define NPRE 0
#endif
#define NINIT (NPROC + NPRE)
#define NPID  (NINIT + MAXRESTART)
#ifdef PREDEAD
#define NENT0 (NPROC + 1)
#else
#define NENT0 NPROC
#endif
#ifdef SPARE
#define NENT (NENT0 + 1)
#else
#define NENT NENT0
#endif
/* registrations of one slot: the first, one per restart, REGISTER's, one more per
 * process with UNREG — a bound far below the byte's 255 */
#define EPOCH_BOUND (2 + 2 * MAXRESTART + NPROC + 1)
#if NPID > 7 || NENT > 5
#error "the invariant macros cover at most 7 processes and 5 entries"
#endif

/* ---- StateWord.swift, compacted: same fields, 3-bit counts ---------------------- */
#define ONE_SH    1
#define SH_MASK   7        /* sharedMask   (bits 0…15 in Swift)  */
#define ONE_WT    8
#define WT_MASK   56       /* waitingMask  (bits 16…27)          */
#define OD        64       /* ownerDied    (bit 28)              */
#define REC       128      /* recovering   (bit 29)              */
#define PARKED    256      /* parked       (bit 30)              */
#define EXCL      512      /* exclusive    (bit 31)              */
#define SHC(w)    ((w) & SH_MASK)
#define WTC(w)    (((w) & WT_MASK) / ONE_WT)

/* ---- Entry (Segment.swift) ------------------------------------------------------- */
#define IDLE      0
#define SHARED    1
#define EXCLUSIVE 2
#define WAITING   3
#define MODEMASK  3
#define INF       4        /* Entry.inFlight */
#define NOSLOT    255

int  state;                /* Segment.state                                        */
byte recE, recS;           /* Segment.recoverer: (epoch, slot+1), recS == 0 if none */
byte mode[NENT];           /* Entry.mode                                           */
byte epoch[NENT];          /* Entry.epoch: registrations of this slot              */
byte lk[NENT];             /* kernel: byte lock of slot i held by process lk[i]-1   */
byte slot[NPID];           /* LocalState.slot                                      */
bool alive[NPID];          /* process p is running                                 */
byte ndead, nrestart;
bool inRec[NPID];          /* the thread of p is inside recoverIfNeeded() -> recover() */
#ifdef MUTANT_PID_LIVENESS
byte owner[NENT];          /* Entry.owner: informational pid (read only by the mutant) */
byte pidof[NPID];            /* the pid of process p (a restarted process may reuse one) */
#endif

/* ghosts */
byte g[NPID];
bool odPending;            /* an exclusive holder died; the next take must report ownerDied */

/* The oracle: is slot i's byte locked (by anybody, the caller included)? */
#ifdef MUTANT_PID_LIVENESS
#define PIDALIVE(o) ((o) != 0 && ((NPID > 0 && alive[0] && pidof[0] == (o)) \
    || (NPID > 1 && alive[1 % NPID] && pidof[1 % NPID] == (o)) || (NPID > 2 && alive[2 % NPID] && pidof[2 % NPID] == (o)) \
    || (NPID > 3 && alive[3 % NPID] && pidof[3 % NPID] == (o)) || (NPID > 4 && alive[4 % NPID] && pidof[4 % NPID] == (o)) \
    || (NPID > 5 && alive[5 % NPID] && pidof[5 % NPID] == (o)) || (NPID > 6 && alive[6 % NPID] && pidof[6 % NPID] == (o))))
#define LIVE_SLOT(i) PIDALIVE(owner[i])
#else
#define LIVE_SLOT(i) (lk[i] != 0)
#endif

/* The recoverer word: "is it me" (another thread of my own process recovers) and "is
 * the recoverer alive" (its slot locked and not re-registered since; a slot outside the
 * table counts as dead). */
#ifdef MUTANT_NO_EPOCH
#define ISME      (recS == slot[me] + 1)
#define RALIVE    (recS >= 1 && recS <= NENT && lk[recS - 1] != 0)
#else
#define ISME      (recS == slot[me] + 1 && recE == epoch[slot[me]])
#define RALIVE    (recS >= 1 && recS <= NENT && lk[recS - 1] != 0 && epoch[recS - 1] == recE)
#endif

/* recoverIfNeeded: recovering with a gone recoverer, or a non-idle entry whose byte is
 * not locked (no owner filters: my own slot is locked by me). */
#define DEADBUSY(i) ((i) < NENT && mode[(i) % NENT] != IDLE && !LIVE_SLOT((i) % NENT))
#ifdef LOOSE_RECOVER
#define RECOVER_NEEDED (ndead > 0)
#else
#define RECOVER_NEEDED ((state & REC) != 0 -> (recS == 0 || (!ISME && !RALIVE)) \
    : (DEADBUSY(0) || DEADBUSY(1) || DEADBUSY(2) || DEADBUSY(3) || DEADBUSY(4)))
#endif

/* ---- invariants (checked in every reachable state by `monitor`) ----------------- */
#define GV(k, v)  (NPID > k && g[(k) % NPID] == v)
#define CNT(v) (GV(0,v) + GV(1,v) + GV(2,v) + GV(3,v) + GV(4,v) + GV(5,v) + GV(6,v))
#define LGV(k, v) (NPID > k && alive[(k) % NPID] && g[(k) % NPID] == v)
#define LCNT(v) (LGV(0,v) + LGV(1,v) + LGV(2,v) + LGV(3,v) + LGV(4,v) + LGV(5,v) + LGV(6,v))
/* (1) mutual exclusion among live processes */
#define MUTEX (LCNT(EXCLUSIVE) == 0 || (LCNT(EXCLUSIVE) == 1 && LCNT(SHARED) == 0))
/* (2') the word always equals the ghost contributions (recovery's publish keeps this) */
#define WORD_OK (SHC(state) == CNT(SHARED) && WTC(state) == CNT(WAITING) \
                 && ((state & EXCL) != 0) == (CNT(EXCLUSIVE) > 0) && CNT(EXCLUSIVE) <= 1)
/* (5) recoverability: a dead process's contribution stays discoverable by
 *     recoverIfNeeded() (its entry non-idle), unless a recovery has the word frozen. */
#define FOUND(p) (p >= NPID || alive[(p) % NPID] || g[(p) % NPID] == IDLE || (state & REC) != 0 \
                  || (slot[(p) % NPID] != NOSLOT && mode[slot[(p) % NPID]] != IDLE))
#define RECOVERABLE (FOUND(0) && FOUND(1) && FOUND(2) && FOUND(3) && FOUND(4) && FOUND(5) && FOUND(6))
/* (6) a registered live process's slot is locked, by it */
#define LOCKS(p) (p >= NPID || !alive[(p) % NPID] || slot[(p) % NPID] == NOSLOT \
                  || lk[slot[(p) % NPID]] == (p) + 1)
/* (7) ... and nobody else claims it: no other live registered process, no dead process
 *     whose contribution is still in the word */
#define NOTHER(p, q) (q >= NPID || q == p || slot[(q) % NPID] != slot[(p) % NPID] \
                      || (!alive[(q) % NPID] && g[(q) % NPID] == IDLE))
#define SOLE(p) (p >= NPID || !alive[(p) % NPID] || slot[(p) % NPID] == NOSLOT \
                 || (NOTHER(p,0) && NOTHER(p,1) && NOTHER(p,2) && NOTHER(p,3) && NOTHER(p,4) \
                     && NOTHER(p,5) && NOTHER(p,6)))
#ifdef NO_OWNERSHIP
#define OWNERSHIP 1        /* let the search run on to the consequences */
#define SOLEOWNER 1
#else
#define OWNERSHIP (LOCKS(0) && LOCKS(1) && LOCKS(2) && LOCKS(3) && LOCKS(4) && LOCKS(5) && LOCKS(6))
#define SOLEOWNER (SOLE(0) && SOLE(1) && SOLE(2) && SOLE(3) && SOLE(4) && SOLE(5) && SOLE(6))
#endif

active proctype monitor() {
    d_step {
        assert(MUTEX);            /* (1) */
        assert(WORD_OK);          /* (2') and (4): no under/overflow */
        assert(RECOVERABLE);      /* (5) */
        assert(OWNERSHIP);        /* (6) */
        assert(SOLEOWNER)         /* (7) */
    }
}

/* ---- ProcessLevel.swift ---------------------------------------------------------- */

/* Segment.transition(_:_:entry:from:to:) — one CAS bracketed by the in-flight mark. */
inline transition(from, to, gto) {     /* CAS state: s -> n */
    mode[slot[me]] = from | INF;
    d_step { if :: state == s -> state = n; ok = 1; g[me] = gto :: else -> ok = 0 fi };
    d_step { mode[slot[me]] = (ok -> to : from); s = 0; n = 0 }
}

/* Segment.wait(observed:pid:waiter:) — the futex is abstracted as "sleep until the word
 * differs from the expected value, or until the sleep slice ends"; the slice ends at the
 * deadline (returns false) or at nextCheck, when recoverIfNeeded() runs. */
inline waitfor(s) {
    ok = 1;
    if
    :: dl -> ok = 0                                        /* now >= deadline       */
    :: atomic { RECOVER_NEEDED -> inRec[me] = 1 }; inRec[me] == 0   /* recoverIfNeeded */
#ifdef LIVE
    :: else ->
#else
    :: true ->
#endif
       w = s;
#ifndef NOPARK
       if
       :: (w & PARKED) == 0 ->                             /* set `parked`, or retry */
          d_step { if :: state == w -> state = w | PARKED; w = w | PARKED :: else -> w = 0 fi }
       :: else
       fi;
#endif
       if
       :: w == 0 -> skip                                   /* CAS failed: return true */
       :: else ->
          if                                               /* futexWait(expected: w) */
          :: state != w
          :: dl
          :: RECOVER_NEEDED
          fi
       fi;
       w = 0
    fi
}

/* Segment.acquireShared (ProcessLevel.swift:32); tryOnly ≡ a deadline already passed. */
inline acquireShared() {
    do
    :: s = state;
       if
#ifdef MUTANT_NO_PREF
       :: (s & (EXCL | REC)) == 0 ->                         /* mutant: no writer preference */
#else
       :: (s & (EXCL | WT_MASK | REC)) == 0 ->
#endif
          n = s + ONE_SH;
          transition(IDLE, SHARED, SHARED);
          if :: ok -> break :: else fi
       :: else ->
          waitfor(s);
          if :: !ok -> break :: else fi
       fi
    od
}

/* Segment.releaseShared (ProcessLevel.swift:46) */
inline releaseShared() {
    dl = 0;
    do
    :: s = state;
       if
       :: (s & REC) != 0 -> waitfor(s)
       :: else ->
          assert(SHC(s) != 0);                              /* precondition: underflow */
          n = s - ONE_SH;
          if :: SHC(n) == 0 && (n & PARKED) != 0 -> n = n & ~PARKED :: else fi;
          transition(SHARED, IDLE, IDLE);
          if :: ok -> break :: else fi
       fi
    od
}

/* Segment.take(_:from:entry:) (ProcessLevel.swift:100).  The CAS also checks the
 * returned `died` against the ghost (assertion (3)). */
inline take(from) {
    n = (s | EXCL) & ~OD;
    if :: from == WAITING -> assert(WTC(s) > 0); n = n - ONE_WT :: else fi;
    mode[slot[me]] = from | INF;
    d_step {
        if
        :: state == s -> state = n; ok = 1; g[me] = EXCLUSIVE;
           assert(((s & OD) != 0) == odPending);            /* (3) ownerDied reported */
           odPending = 0
        :: else -> ok = 0
        fi
    };
    d_step { mode[slot[me]] = (ok -> EXCLUSIVE : from); s = 0; n = 0 }
}

/* Segment.withdrawWaiting (ProcessLevel.swift:108) */
inline withdraw() {
    dl = 0;
    do
    :: s = state;
       if
       :: (s & REC) != 0 -> waitfor(s)
       :: else ->
          assert(WTC(s) > 0);                                /* no underflow */
          n = s - ONE_WT;
          if :: WTC(n) == 0 && (n & PARKED) != 0 -> n = n & ~PARKED :: else fi;
          transition(WAITING, IDLE, IDLE);
          if :: ok -> break :: else fi
       fi
    od
}

/* Segment.acquireExclusive (ProcessLevel.swift:67) */
inline acquireExclusive() {
    if
    :: tryOnly ->
       do
       :: s = state;
          if
          :: (s & (EXCL | SH_MASK | REC)) != 0 -> ok = 0; break
          :: else -> take(IDLE); if :: ok -> break :: else fi
          fi
       od
    :: else ->
       do                                                   /* announce */
       :: s = state;
          if
          :: (s & REC) != 0 -> waitfor(s); if :: !ok -> goto xdone :: else fi
          :: else ->
             assert(WTC(s) < 7);
             n = s + ONE_WT;
             transition(IDLE, WAITING, WAITING);
             if :: ok -> break :: else fi
          fi
       od;
       do                                                   /* wait for the lock */
       :: s = state;
          if
          :: (s & (EXCL | SH_MASK | REC)) == 0 ->
             take(WAITING); if :: ok -> break :: else fi
          :: else ->
             waitfor(s);
             if :: !ok -> withdraw(); ok = 0; break :: else fi
          fi
       od;
xdone: skip
    fi
}

/* Segment.releaseExclusive (ProcessLevel.swift:125) */
inline releaseExclusive() {
    dl = 0;
    do
    :: s = state;
       if
       :: (s & REC) != 0 -> waitfor(s)
       :: else ->
          assert((s & EXCL) != 0);                           /* precondition */
          n = s & ~(EXCL | PARKED);
          transition(EXCLUSIVE, IDLE, IDLE);
          if :: ok -> break :: else fi
       fi
    od
}

/* Segment.register (new): try-lock the slot's byte, and only then read its mode.
 *
 * The default is the safe order: with the byte lock held nobody else can claim the slot,
 * and a dead slot's mode only goes from non-idle to idle (recovery), so the mode read
 * under the lock is final; a non-idle slot is unlocked again and skipped (while we hold
 * its lock, recovery counts the dead contribution as live: it stays in the word and in
 * the entry, and is reclaimed by a later recovery).
 *
 * REGISTER_CHECK_FIRST models the order first specified ("skip if mode != idle; skip if
 * locked; try-lock"): the two checks and the try-lock are three separate instants, and a
 * live owner that was idle at the first check can take the lock and die before the
 * try-lock; the new process then owns a slot that still carries the dead contribution
 * (and the recovery's late "mark idle" store may hit its own contribution). */
inline register() {
    i = 0;
    do
    :: i == NENT -> break
    :: i < NENT ->
#ifdef REGISTER_CHECK_FIRST
       if
       :: mode[i] != IDLE -> i++                        /* skip a busy entry        */
       :: else ->
          if
          :: LIVE_SLOT(i) -> i++                         /* skip a live one         */
          :: else ->
             d_step { if :: lk[i] == 0 -> lk[i] = me+1; ok = 1 :: else -> ok = 0 fi };
             if :: ok -> break :: else -> i++ fi
          fi
       fi
#else
       d_step { if :: lk[i] == 0 -> lk[i] = me+1; ok = 1 :: else -> ok = 0 fi };   /* F_OFD_SETLK */
       if
       :: !ok -> i++
       :: ok && mode[i] != IDLE -> lk[i] = 0; ok = 0; i++ /* dead, not reclaimed yet: unlock */
       :: ok && mode[i] == IDLE -> break
       fi
#endif
    od;
    if
    :: ok ->
       d_step { epoch[i]++; assert(epoch[i] <= EPOCH_BOUND); slot[me] = i };  /* the slot is ours */
#ifdef MUTANT_PID_LIVENESS
       owner[i] = pidof[me];                                 /* informational owner/startTime */
#endif
       skip
    :: else                                                /* table full: holderTableFull */
    fi;
    i = 0; ok = 0
}

/* Segment.unregister: only while idle (it is, between operations): clear owner, unlock. */
inline unregister() {
#ifdef MUTANT_PID_LIVENESS
    owner[slot[me]] = 0;
#endif
    d_step { lk[slot[me]] = 0; slot[me] = NOSLOT }
}

proctype Proc(byte me) {
    int s, n, w;
    byte i;
    bool ok, dl, tryOnly;
#ifdef UNREG
    bool again;
#endif
    {
        if
        :: slot[me] == NOSLOT ->                             /* a new process */
           register(); if :: slot[me] == NOSLOT -> goto gone :: else fi
        :: else
        fi;
end:    do
#ifdef NWRITERS
        :: me < NWRITERS ->                                  /* blocking writers */
           dl = 0; tryOnly = 0;
           acquireExclusive();
           if :: ok -> progress_x: releaseExclusive() :: else fi;
           atomic { s = 0; n = 0; ok = 0 }
        :: me >= NWRITERS ->                                 /* readers */
           if :: dl = 0 :: dl = 1 fi;
           acquireShared();
           if :: ok -> releaseShared() :: else fi;
           atomic { s = 0; n = 0; ok = 0; dl = 0 }
#else
        :: if :: dl = 0 :: dl = 1 fi;                      /* shared: blocking or deadline */
           acquireShared();
           if :: ok -> progress_s: releaseShared() :: else fi;
           atomic { s = 0; n = 0; ok = 0; dl = 0 }
        :: if                                                /* exclusive: try, blocking, deadline */
           :: tryOnly = 1; dl = 0
           :: tryOnly = 0; dl = 0
           :: tryOnly = 0; dl = 1
           fi;
           acquireExclusive();
           if :: ok -> progress_x: releaseExclusive() :: else fi;
           atomic { s = 0; n = 0; ok = 0; dl = 0; tryOnly = 0 }
#endif
#ifdef UNREG
        :: !again ->                                         /* close the last handle */
           unregister();
           if
           :: again = 1; register(); if :: slot[me] == NOSLOT -> goto gone :: else fi
           :: goto gone
           fi
#endif
#ifdef ONESHOT
        ; break                                              /* one operation per process */
#endif
        od
    } unless { !alive[me] };                                 /* kill -9 */
gone: skip
}

/* ---- Recovery.swift: recover() run on the thread of `me` that called
 * recoverIfNeeded() from wait(); Proc(me) blocks on inRec[me] meanwhile. ---------- */
proctype Recovery(byte me) {
    int s, n;
    byte i, sh, wt, seen, deadents;
    bool ex;
    {
end:    do
        :: inRec[me] ->
           /* 1. claim the recoverer word (load + CAS loop; a failed CAS only re-reads, so
            *    the loop is one step).  The liveness reads are in the same step: split,
            *    they can only err towards "alive" for a moment (a live recoverer keeps
            *    its lock and epoch; a re-registration locks before bumping), which makes
            *    this call return false and the waiter retry at its next check. */
           d_step {
               if
               :: recS != 0 && ISME -> ex = 0                 /* another thread of mine */
               :: recS != 0 && !ISME && RALIVE -> ex = 0      /* a live recoverer       */
               :: else -> recS = slot[me] + 1; recE = epoch[slot[me]]; ex = 1
               fi
           };
           if :: !ex -> goto done :: else -> ex = 0 fi;
           /* 2. freeze (a CAS loop that sets `recovering`: a fetch-or) */
           d_step { state = state | REC; s = state };
           /* 3. settle: per entry, wait while it is in flight and its byte is locked */
           i = 0;
           do
           :: i == NENT -> break
           :: i < NENT ->
              if
              :: ((mode[i] & INF) == 0 || !LIVE_SLOT(i)) -> i++
#ifdef MUTANT_NO_SETTLE
              :: else -> i++                                  /* mutant: does not wait */
#endif
#ifdef SETTLE_TIMEOUT
              :: ((mode[i] & INF) != 0 && LIVE_SLOT(i)) ->   /* settleDeadline */
                 state = state & ~REC;                         /* bitwiseAnd */
                 d_step { recS = 0; recE = 0 };
                 goto done
#endif
              fi
           od;
           /* 4. recount from the entries whose byte is locked, one entry per step (a
            *    lock query and a mode load: while frozen, a live entry's mode & MODEMASK
            *    and a dead entry's whole mode cannot change, so their order does not
            *    matter); `seen` remembers which slots were judged live, for the ghost
            *    check at publish.
            *    Unless SPEC_RECOUNT, the recount waits (again) while the entry is in
            *    flight and locked: after the settle step passed a dead in-flight entry
            *    (unlocked), a registrant may try-lock it before the recount reads it
            *    (and unlock it again: not idle); its in-flight mode is not what the dead
            *    process contributes, so counting it as live corrupts the word. */
           i = 0;
           do
           :: i == NENT -> break
           :: i < NENT ->
              if
              :: d_step {
#ifndef SPEC_RECOUNT
                  ((mode[i] & INF) == 0 || !LIVE_SLOT(i));
#endif
                  if
                  :: LIVE_SLOT(i) ->
                     seen = seen | (1 << i);
                     if
                     :: (mode[i] & MODEMASK) == SHARED -> sh++
                     :: (mode[i] & MODEMASK) == WAITING -> wt++
                     :: (mode[i] & MODEMASK) == EXCLUSIVE -> ex = 1
                     :: else
                     fi
                  :: else ->
                     if :: mode[i] != IDLE -> deadents = deadents | (1 << i) :: else fi
                  fi;
                  i++
                 }
#if defined(SETTLE_TIMEOUT) && !defined(SPEC_RECOUNT)
              :: ((mode[i] & INF) != 0 && LIVE_SLOT(i)) ->   /* settleDeadline */
                 state = state & ~REC;
                 d_step { recS = 0; recE = 0 };
                 goto done
#endif
              fi
           od;
           i = 0;
#ifndef FIX_PUBLISH_FIRST
           /* OLD_RECOVERY: mark the dead entries idle before publishing */
           do
           :: i == NENT -> break
           :: i < NENT && (deadents & (1 << i)) == 0 -> i++
           :: i < NENT && (deadents & (1 << i)) != 0 -> mode[i] = IDLE; i++
           od;
           i = 0;
#endif
           /* publish */
           d_step {
               n = sh * ONE_SH + wt * ONE_WT;
               if :: ex -> n = n | EXCL :: else fi;
               if :: ((s & EXCL) != 0 && !ex) || (s & OD) != 0 -> n = n | OD :: else fi;
               /* (2) the new word counts exactly the contributions in the slots it saw
                *     locked; the others are wiped */
               i = 0; sh = 0; wt = 0; ex = 0;
               do
               :: i == NPID -> break
               :: i < NPID ->
                  if
                  :: g[i] == IDLE -> skip
                  :: g[i] != IDLE && slot[i] != NOSLOT && (seen & (1 << slot[i])) != 0 ->
                     sh = sh + (g[i] == SHARED); wt = wt + (g[i] == WAITING);
                     ex = ex || (g[i] == EXCLUSIVE)
                  :: else ->
                     assert(!alive[i]);                          /* a live share wiped */
                     /* (3) a dead exclusive holder's share reclaimed => ownerDied */
                     assert(g[i] != EXCLUSIVE || (n & OD) != 0);
                     g[i] = IDLE
                  fi;
                  i++
               od;
               assert(SHC(n) == sh && WTC(n) == wt && ((n & EXCL) != 0) == ex);
               state = n
           };
           i = 0;
#ifdef FIX_PUBLISH_FIRST
           /* then mark every entry counted as dead idle, one store each */
           do
           :: i == NENT -> break
           :: i < NENT && (deadents & (1 << i)) == 0 -> i++
           :: i < NENT && (deadents & (1 << i)) != 0 -> mode[i] = IDLE; i++
           od;
#endif
           atomic { recS = 0; recE = 0 };                         /* clear the recoverer word */
done:      skip;
           d_step { inRec[me] = 0; s = 0; n = 0; i = 0;
                    sh = 0; wt = 0; seen = 0; deadents = 0; ex = 0 }
        od
    } unless { !alive[me] }
}

#define KILLABLE(k) (NPID > k && alive[(k) % NPID])
/* kill -9 at any step of any process; a new process may start in a dead one's place */
active proctype Killer() {
    byte p, i;
end: do
    :: ndead < MAXKILL ->
       atomic {
#ifdef KILLONLY
           p = KILLONLY;                                     /* only this process may die */
#else
           if
           :: KILLABLE(0) -> p = 0
           :: KILLABLE(1) -> p = 1
           :: KILLABLE(2) -> p = 2
           :: KILLABLE(3) -> p = 3
           :: KILLABLE(4) -> p = 4
           :: KILLABLE(5) -> p = 5
           :: KILLABLE(6) -> p = 6
           :: else -> p = NOSLOT                             /* nobody left to kill */
           fi;
#endif
           if
           :: p != NOSLOT && alive[p] ->
              d_step {
                  alive[p] = 0; ndead++;                       /* and its locks vanish */
                  i = 0;
                  do
                  :: i == NENT -> break
                  :: i < NENT -> if :: lk[i] == p+1 -> lk[i] = 0 :: else fi; i++
                  od;
                  if :: g[p] == EXCLUSIVE -> odPending = 1 :: else fi;
                  i = 0
              }
           :: else
           fi;
           p = 0
       }
    :: nrestart < MAXRESTART && ndead > nrestart ->
       atomic {                                              /* a new process starts */
           p = NINIT + nrestart; nrestart++;
           alive[p] = 1; slot[p] = NOSLOT;
#ifdef MUTANT_PID_LIVENESS
           /* it gets the pid of some dead process (another pid namespace) */
           if
           :: NINIT > 0 && !alive[0] -> pidof[p] = pidof[0]
           :: NINIT > 1 && !alive[1 % NPID] -> pidof[p] = pidof[1 % NPID]
           :: NINIT > 2 && !alive[2 % NPID] -> pidof[p] = pidof[2 % NPID]
           :: NINIT > 3 && !alive[3 % NPID] -> pidof[p] = pidof[3 % NPID]
           :: NINIT > 4 && !alive[4 % NPID] -> pidof[p] = pidof[4 % NPID]
           fi;
#endif
           run Proc(p); run Recovery(p);
           p = 0
       }
    :: ndead >= MAXKILL && (nrestart >= MAXRESTART || nrestart >= ndead) -> break
    od
}

init {
    byte p;
    atomic {
        for (p : 0 .. NPROC-1) { alive[p] = 1; slot[p] = p; lk[p] = p+1; epoch[p] = 1 };
        for (p : NINIT .. NPID-1) { slot[p] = NOSLOT };
#ifdef MUTANT_PID_LIVENESS
        for (p : 0 .. NPID-1) { pidof[p] = p+1 };
        for (p : 0 .. NPROC-1) { owner[p] = p+1 };
#endif
#ifdef PREDEAD
        /* process NPROC died at any point of holding, or mid-transition */
        slot[NPROC] = NPROC; epoch[NPROC] = 1;
#ifdef MUTANT_PID_LIVENESS
        owner[NPROC] = NPROC+1;
#endif
#ifdef PDV      /* PDV=0: only "died holding shared", PDV=1: only "died holding exclusive" */
        if
        :: PDV == 0 -> mode[NPROC] = SHARED;    g[NPROC] = SHARED;    state = ONE_SH
        :: PDV == 1 -> mode[NPROC] = EXCLUSIVE; g[NPROC] = EXCLUSIVE; state = EXCL; odPending = 1
        fi;
#else
        if
        :: mode[NPROC] = SHARED;          g[NPROC] = SHARED;    state = ONE_SH
        :: mode[NPROC] = IDLE | INF;      g[NPROC] = SHARED;    state = ONE_SH   /* CAS landed */
        :: mode[NPROC] = SHARED | INF;    g[NPROC] = SHARED;    state = ONE_SH   /* release CAS not yet */
        :: mode[NPROC] = EXCLUSIVE;       g[NPROC] = EXCLUSIVE; state = EXCL; odPending = 1
        :: mode[NPROC] = WAITING | INF;   g[NPROC] = EXCLUSIVE; state = EXCL; odPending = 1
        :: mode[NPROC] = WAITING;         g[NPROC] = WAITING;   state = ONE_WT
        :: mode[NPROC] = IDLE | INF;      g[NPROC] = WAITING;   state = ONE_WT
        :: mode[NPROC] = IDLE | INF;      g[NPROC] = IDLE;      state = 0        /* CAS not landed */
        :: mode[NPROC] = SHARED | INF;    g[NPROC] = IDLE;      state = 0        /* release landed */
        fi;
#endif
#ifdef REGISTER
        /* process NPROC+1 died idle in entry NPROC-1; process NPROC-1 starts unregistered */
        slot[NPROC+1] = NPROC-1; slot[NPROC-1] = NOSLOT; lk[NPROC-1] = 0;
#ifdef MUTANT_PID_LIVENESS
        owner[NPROC-1] = NPROC+2;
#endif
#endif
#endif
        for (p : 0 .. NPROC-1) { run Proc(p); run Recovery(p) }
    }
}

#ifdef LIVE
/* A waiting writer that stays alive eventually holds the lock. */
ltl writer_progress { [] ((g[0] == WAITING) -> <> (g[0] == EXCLUSIVE || !alive[0])) }
#endif
