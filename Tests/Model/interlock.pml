/*
 * interlock.pml — Promela model of Interlock's cross-process protocol.
 *
 *   Sources/Interlock/Protocol/StateWord.swift    the state word
 *   Sources/Interlock/Protocol/Segment.swift      holder-table Entry (owner, mode|inFlight, startTime)
 *   Sources/Interlock/Protocol/ProcessLevel.swift acquire/release, transition(), wait()
 *   Sources/Interlock/Protocol/Recovery.swift     recoverIfNeeded(), recover(), register()
 *
 * One Promela `Proc` = one process, reduced to one thread at the process level (the
 * per-process readers word of ProcessScope.swift only decides *which* thread does the
 * process-level step; the cross-process protocol sees one actor per entry).
 * Each Proc loops forever: acquire shared or exclusive (blocking, with a deadline, or
 * try), hold, release.  A `Killer` may kill any process at any step (MAXKILL times):
 * its entry stays as it is and ProcessIdentity.isAlive(pid) becomes false.
 * Every shared-memory access is one Promela step; a CAS is one d_step.
 *
 * Ghost state: g[p] is what pid p+1 contributes to the state word (NONE, SHARED,
 * EXCLUSIVE or WAITING); it changes in the same atomic step as the CAS that adds or
 * removes that contribution, and recovery's publish wipes the contribution of every
 * process it did not count.  g[p] == SHARED/EXCLUSIVE is "p holds the lock" (a
 * superset of p being in its critical section).
 *
 * Checked: (1) mutual exclusion among live holders; (2) the word always equals the ghost
 * contributions, and every publish counts exactly the processes it saw alive; (3) a
 * reclaimed dead exclusive holder sets ownerDied, and the next take reports it exactly
 * then; (4) no count underflow (the Swift preconditions); (5) a dead contribution stays
 * discoverable (its entry non-idle) unless the word is frozen; (6) a registered live
 * process owns its entry; no deadlock (invalid end state); LTL writer_progress (LIVE).
 *
 * Configuration (-D on the spin command line):
 *   NPROC=n          number of live-capable processes (2 or 3)
 *   MAXKILL=k        how many processes may be killed
 *   SETTLE_TIMEOUT   recover() may give up on a live in-flight entry (Recovery.swift:78,
 *                    the 2 s settle deadline: a stopped or descheduled process)
 *   LOOSE_RECOVER    recoverIfNeeded() may call recover() whenever anybody died
 *                    (over-approximates its non-atomic scan); default: exact atomic check
 *   PREDEAD          one more process died before the start, in one of 9 states (holding
 *                    shared/exclusive, waiting, or mid-transition): recovery from the start
 *   REGISTER         (implies PREDEAD) the last process starts unregistered and runs Segment.register()
 *                    against a table holding one dead idle entry and one dead shared holder
 *   NWRITERS=w       processes 0…w-1 only take exclusive mode (blocking), the rest only
 *                    shared (blocking or with a deadline); default: every process does all
 *   LIVE             liveness configuration (NWRITERS defaults to 1); a waiter that needs
 *                    recovery runs it (no futile park loops)
 *   PDV=0|1          with PREDEAD: only "died holding shared" (0) or "... exclusive" (1)
 *   KILLONLY=p       only process p may be killed
 *   ONESHOT          each process does one acquire/release, then stays idle (small models)
 *   FIX_PUBLISH_FIRST  proposed fix: recover() frees dead entries after publishing the word
 *   FIX_KEEP_IDLE    proposed fix: recover() does not free dead entries that are idle
 *   MUTANT_NO_PREF, MUTANT_NO_SETTLE  deliberately broken protocols (the checks must fail)
 *   NOPARK           waiters do not set `parked` (fewer states; wake-ups are abstracted anyway)
 *   NO_OWNERSHIP     do not check invariant (6), to search on for its consequences
 */

/* The current Swift code has both fixes (Recovery.swift publishes before marking dead
 * entries idle, and never frees owner/start time); -DOLD_RECOVERY models the code before
 * them, where `register` and `settle-timeout` fail. */
#ifndef OLD_RECOVERY
#define FIX_KEEP_IDLE
#define FIX_PUBLISH_FIRST
#endif

#ifndef NPROC
#define NPROC 3
#endif
#ifndef MAXKILL
#define MAXKILL 1
#endif
#if defined(LIVE) && !defined(NWRITERS)
#define NWRITERS 1         /* liveness: process 0 is a blocking writer, the rest readers */
#endif

#ifdef REGISTER
#define PREDEAD
#endif
#ifdef PREDEAD
/* pid NPROC+1 died before the model starts, leaving entry NPROC and a contribution to
 * the word (chosen by init); with REGISTER, pid NPROC+2 died idle in entry NPROC-1 and
 * process NPROC-1 starts unregistered. */
#define NPID (NPROC + 2)
#define NENT (NPROC + 1)
#else
#define NPID NPROC
#define NENT NPROC
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

int  state;                /* Segment.state                         */
byte recoverer;            /* Segment.recoverer: pid, 0 if none     */
byte owner[NENT];          /* Entry.owner: pid, 0 if free           */
byte mode[NENT];           /* Entry.mode                            */
byte stime[NENT];          /* Entry.startTime: pid whose start time it is, 0 unknown */
byte slot[NPID];           /* LocalState.slot                       */
bool alive[NPID];          /* /proc: is pid p+1 running             */
byte ndead;
bool inRec[NPID];          /* the thread of p is inside recoverIfNeeded() -> recover() */

/* ghosts */
byte g[NPID];
bool odPending;            /* an exclusive holder died; the next take must report ownerDied */

/* ProcessIdentity.isAlive(pid:startTime:) — a recycled start time means "dead". */
#define ISALIVE(o, st) ((o) >= 1 && (o) <= NPID && alive[(o)-1] && ((st) == 0 || (st) == (o)))
#define ALIVE0(o)      ((o) >= 1 && (o) <= NPID && alive[(o)-1])

/* recoverIfNeeded (Recovery.swift:29): recovering with a gone recoverer, or a non-idle
 * entry of somebody else that is dead. */
#define DEADBUSY(i) ((i) < NENT && owner[i] != 0 && owner[i] != me+1 && mode[i] != IDLE \
                     && !ISALIVE(owner[i], stime[i]))
#ifdef LOOSE_RECOVER
#define RECOVER_NEEDED (ndead > 0)
#else
#define RECOVER_NEEDED (((state & REC) != 0 && (recoverer == 0 || (recoverer != me+1 && !ALIVE0(recoverer)))) \
    || DEADBUSY(0) || DEADBUSY(1) || DEADBUSY(2) || DEADBUSY(3))
#endif

/* ---- invariants (checked in every reachable state by `monitor`) ----------------- */
#define CNT(v) ((g[0]==v) + (NPID>1 && g[1%NPID]==v) + (NPID>2 && g[2%NPID]==v) \
              + (NPID>3 && g[3%NPID]==v) + (NPID>4 && g[4%NPID]==v))
/* (1) mutual exclusion among live processes */
#define XPAIR(p,q) (p != q && p < NPID && q < NPID && alive[p] && alive[q] && g[p] == EXCLUSIVE \
                    && (g[q] == SHARED || g[q] == EXCLUSIVE))
#define MUTEX (!(XPAIR(0,1) || XPAIR(1,0) || XPAIR(0,2) || XPAIR(2,0) || XPAIR(1,2) || XPAIR(2,1)))
/* (2') the word always equals the ghost contributions (recovery's publish keeps this) */
#define WORD_OK (SHC(state) == CNT(SHARED) && WTC(state) == CNT(WAITING) \
                 && ((state & EXCL) != 0) == (CNT(EXCLUSIVE) > 0) && CNT(EXCLUSIVE) <= 1)
/* (5) recoverability: a dead process's contribution stays discoverable by
 *     recoverIfNeeded() (its entry non-idle), unless a recovery has the word frozen. */
#define FOUND(p) (p >= NPID || alive[p] || g[p] == IDLE || (state & REC) != 0 \
                  || (slot[p] != NOSLOT && owner[slot[p]] == p+1 && mode[slot[p]] != IDLE))
#define RECOVERABLE (FOUND(0) && FOUND(1) && FOUND(2) && FOUND(3) && FOUND(4))
/* (6) a registered live process still owns its entry */
#define OWNS(p) (p >= NPROC || !alive[p] || slot[p] == NOSLOT || owner[slot[p]] == p+1)
#ifdef NO_OWNERSHIP
#define OWNERSHIP 1        /* let the search run on to the consequences */
#else
#define OWNERSHIP (OWNS(0) && OWNS(1) && OWNS(2))
#endif

active proctype monitor() {
    d_step {
        assert(MUTEX);            /* (1) */
        assert(WORD_OK);          /* (2') and (4): no under/overflow */
        assert(RECOVERABLE);      /* (5) */
        assert(OWNERSHIP)         /* (6) */
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

/* Segment.register(pid:startTime:) (Recovery.swift:125) */
inline register() {
    i = 0;
    do                                   /* 1. a free entry */
    :: i == NENT -> break
    :: i < NENT ->
       d_step { if :: owner[i] == 0 -> owner[i] = me+1; ok = 1 :: else -> ok = 0 fi };
       if
       :: ok -> mode[i] = IDLE; stime[i] = me+1; slot[me] = i; break
       :: else -> i++
       fi
    od;
    if
    :: slot[me] == NOSLOT ->
       i = 0;
       do                                /* 2. an idle entry of a dead process */
       :: i == NENT -> break
       :: i < NENT ->
          d_step { o = owner[i];
                   ok = (o != 0 && mode[i] == IDLE && !ISALIVE(o, stime[i])) };
          if
          :: ok -> d_step { if :: owner[i] == o -> owner[i] = me+1 :: else -> ok = 0 fi }
          :: else
          fi;
          if
          :: ok -> stime[i] = me+1; slot[me] = i; break
          :: else -> i++
          fi
       od
    :: else
    fi;
    i = 0; o = 0; ok = 0
}

proctype Proc(byte me) {
    int s, n, w;
    byte i, o;
    bool ok, dl, tryOnly;
    {
#ifdef REGISTER
        if :: me == NPROC-1 -> register();
                                 if :: slot[me] == NOSLOT -> goto gone :: else fi  /* table full */
           :: else fi;
#endif
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
#ifdef ONESHOT
        ; break                                              /* one operation per process */
#endif
        od
    } unless { !alive[me] };                                 /* kill -9 */
gone: skip
}

/* ---- Recovery.swift: recover(pid:) (line 52), run on the thread of `me` that called
 * recoverIfNeeded() from wait(); Proc(me) blocks on inRec[me] meanwhile. ---------- */
proctype Recovery(byte me) {
    int s, n;
    byte i, o, sh, wt, counted, deadents;
    byte dow[NENT];            /* owner read for each dead entry */
    bool ex;
    {
end:    do
        :: inRec[me] ->
           /* 1. claim the recoverer word (load + CAS loop, Recovery.swift:55-61; a failed
            *    CAS only re-reads, so the loop is one step) */
           d_step {
               if
               :: recoverer == me+1 || (recoverer != 0 && ALIVE0(recoverer)) -> ex = 0
               :: else -> recoverer = me+1; ex = 1
               fi
           };
           if :: !ex -> goto done :: else -> ex = 0 fi;
           /* 2. freeze (a CAS loop that sets `recovering`: a fetch-or) */
           d_step { state = state | REC; s = state };
           /* 3. settle: per entry, wait while a live owner is in flight (Recovery.swift:72) */
           i = 0;
           do
           :: i == NENT -> break
           :: i < NENT ->
              if
              :: (owner[i] == 0 || (mode[i] & INF) == 0
                  || (owner[i] != me+1 && !ISALIVE(owner[i], stime[i]))) -> i++
#ifdef MUTANT_NO_SETTLE
              :: else -> i++                                  /* mutant: does not wait */
#endif
#ifdef SETTLE_TIMEOUT
              :: (owner[i] != 0 && (mode[i] & INF) != 0
                  && (owner[i] == me+1 || ISALIVE(owner[i], stime[i]))) ->  /* settleDeadline */
                 state = state & ~REC;                         /* bitwiseAnd */
                 recoverer = 0;
                 goto done
#endif
              fi
           od;
           /* 4. recount from the live entries (reads only: one step; Recovery.swift:90-110) */
           skip;
           d_step {
               i = 0;
               do
               :: i == NENT -> break
               :: i < NENT ->
                  o = owner[i];
                  if
                  :: o == 0 -> skip
                  :: o != 0 && o != me+1 && !ISALIVE(o, stime[i]) ->
#ifdef FIX_KEEP_IDLE
                     /* proposed fix: a dead idle entry holds nothing; leave it to register() */
                     if :: mode[i] == IDLE -> skip :: else -> deadents = deadents | (1 << i); dow[i] = o fi
#else
                     deadents = deadents | (1 << i); dow[i] = o
#endif
                  :: else ->
                     counted = counted | (1 << (o-1));
                     if
                     :: (mode[i] & MODEMASK) == SHARED -> sh++
                     :: (mode[i] & MODEMASK) == WAITING -> wt++
                     :: (mode[i] & MODEMASK) == EXCLUSIVE -> ex = 1
                     :: else
                     fi
                  fi;
                  i++
               od;
               i = 0; o = 0
           };
#ifndef FIX_PUBLISH_FIRST
           /* ... and free the dead entries, one store at a time (lines 99-101) */
           do
           :: i == NENT -> break
           :: i < NENT && (deadents & (1 << i)) == 0 -> i++
           :: i < NENT && (deadents & (1 << i)) != 0 ->
              mode[i] = IDLE;
              stime[i] = 0;
              d_step { if :: owner[i] == dow[i] -> owner[i] = 0 :: else fi; dow[i] = 0; i++ }
           od;
#endif
           /* publish (line 114) */
           skip;
           d_step {
               n = sh * ONE_SH + wt * ONE_WT;
               if :: ex -> n = n | EXCL :: else fi;
               if :: ((s & EXCL) != 0 && !ex) || (s & OD) != 0 -> n = n | OD :: else fi;
               /* (2) the new word counts exactly the counted (live) processes */
               i = 0; sh = 0; wt = 0; ex = 0;
               do
               :: i == NPID -> break
               :: i < NPID ->
                  if
                  :: (counted & (1 << i)) != 0 ->
                     sh = sh + (g[i] == SHARED); wt = wt + (g[i] == WAITING);
                     ex = ex || (g[i] == EXCLUSIVE)
                  :: else ->
                     /* (3) a dead exclusive holder's share reclaimed => ownerDied */
                     assert(g[i] != EXCLUSIVE || (n & OD) != 0);
                     g[i] = IDLE                                  /* wiped from the word */
                  fi;
                  i++
               od;
               assert(SHC(n) == sh && WTC(n) == wt && ((n & EXCL) != 0) == ex);
               state = n
           };
#ifdef FIX_PUBLISH_FIRST
           i = 0;
           /* proposed fix: free the dead entries only after publishing */
           do
           :: i == NENT -> break
           :: i < NENT && (deadents & (1 << i)) == 0 -> i++
           :: i < NENT && (deadents & (1 << i)) != 0 ->
              mode[i] = IDLE;
              stime[i] = 0;
              d_step { if :: owner[i] == dow[i] -> owner[i] = 0 :: else fi; dow[i] = 0; i++ }
           od;
#endif
           recoverer = 0;                                         /* line 116 */
done:      skip;
           d_step { inRec[me] = 0; s = 0; n = 0; i = 0; o = 0;
                    sh = 0; wt = 0; counted = 0; deadents = 0; ex = 0 }
        od
    } unless { !alive[me] }
}

/* kill -9 at any step of any process */
active proctype Killer() {
    byte p;
end: do
    :: ndead < MAXKILL ->
#ifdef KILLONLY
       p = KILLONLY;                                         /* only this process may die */
#else
       if :: p = 0 :: p = 1 :: NPROC > 2 -> p = 2 fi;
#endif
       d_step {
           if
           :: alive[p] -> alive[p] = 0; ndead++;
              if :: g[p] == EXCLUSIVE -> odPending = 1 :: else fi
           :: else
           fi;
           p = 0
       }
    :: ndead >= MAXKILL -> break
    od
}

init {
    byte p;
    atomic {
        for (p : 0 .. NPROC-1) { alive[p] = 1; owner[p] = p+1; stime[p] = p+1; slot[p] = p };
#ifdef PREDEAD
        /* pid NPROC+1 died at any point of holding, or mid-transition */
        owner[NPROC] = NPROC+1; stime[NPROC] = NPROC+1; slot[NPROC] = NPROC;
        slot[NPROC+1] = NOSLOT;
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
        owner[NPROC-1] = NPROC+2; stime[NPROC-1] = NPROC+2; mode[NPROC-1] = IDLE;
        slot[NPROC-1] = NOSLOT; slot[NPROC+1] = NPROC-1;
#endif
#endif
        for (p : 0 .. NPROC-1) { run Proc(p); run Recovery(p) }
    }
}

#ifdef LIVE
/* A waiting writer that stays alive eventually holds the lock. */
ltl writer_progress { [] ((g[0] == WAITING) -> <> (g[0] == EXCLUSIVE || !alive[0])) }
#endif
