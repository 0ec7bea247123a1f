#!/usr/bin/env bash
# Model-checks Tests/Model/interlock.pml (protocol v3, issue 10) with spin (Debian package `spin`; needs gcc).
#
#   Tests/Model/check.sh              the default checks below
#   Tests/Model/check.sh NAME...      only these (see `configs`; `extra` ones run only by name)
#
# Each check: spin -a, gcc pan.c, run pan; prints states, depth, errors and time.
# Exits non-zero if any check reports an error (assertion, invalid end state, never-claim
# or acceptance cycle) or does not run to completion.  A failing check leaves its trail
# in $KEEP (default /tmp/interlock-model) — replay it with the printed `spin -t` command.
set -u
here=$(cd "$(dirname "$0")" && pwd)
model=$here/interlock.pml
keep=${KEEP:-/tmp/interlock-model}
command -v spin >/dev/null || { echo "spin not found (apt-get install spin)"; exit 2; }

# name | spin -D flags | gcc flags | pan flags | what it shows
configs=(
"safety|-DNPROC=2 -DMAXKILL=0|-DSAFETY -DCOLLAPSE|-m1000000 -w26|2 processes looping for ever over every acquire form (blocking, deadline, try) of both modes"
"finite|-DNPROC=2 -DNOPS=2 -DMAXKILL=0|-DSAFETY -DCOLLAPSE|-m1000000 -w26|the same, 2 operations each, then the threads end: a lost wake-up is an invalid end state"
"three|-DNPROC=3 -DNOPS=1 -DFORMS=0 -DMAXKILL=0 -DATOMIC_SCAN|-DSAFETY -DCOLLAPSE|-m1000000 -w26|3 processes, one blocking operation each"
"threads|-DNPROC=1 -DNTHR=3 -DNOPS=1 -DFORMS=0 -DMAXKILL=0|-DSAFETY -DCOLLAPSE|-m1000000 -w26|the threads scope: one entry, 3 threads, one blocking operation each"
"kill|-DNPROC=2 -DNOPS=2 -DMAXKILL=1|-DSAFETY -DCOLLAPSE|-m1000000 -w26|2 processes, 2 operations each (any form); either may be killed at any step, the survivor reclaims"
"recovery|-DNPROC=2 -DNOPS=1 -DPREDEAD -DMAXKILL=0 -DATOMIC_SCAN|-DSAFETY -DCOLLAPSE|-m1000000 -w26|2 live processes, one operation each (any form), and a third that died in any of 6 states"
"restart1|-DNPROC=1 -DNOPS=1 -DPREDEAD -DMAXKILL=0 -DMAXRESTART=1 -DSPARE -DATOMIC_SCAN|-DSAFETY -DCOLLAPSE|-m1000000 -w26|exhaustive: a live process and a new one registering (any free entry) while a third died in any of 6 states"
"owner-died|-DNPROC=1 -DNOPS=1 -DPREDEAD -DPDV=1 -DMAXKILL=1 -DMAXRESTART=1 -DATOMIC_SCAN|-DSAFETY -DCOLLAPSE|-m1000000 -w26|exhaustive: a process died holding exclusive; the live one (reclaiming it) may be killed at any step; a new process registers and acquires: OWNER_DIED reported exactly once (SPEC_OD_AT_CAS fails here)"
"live-writer|-DNPROC=3 -DATOMIC_SCAN -DNWRITERS=1 -DLIVE -DMAXKILL=0|-DCOLLAPSE -DNFAIR=3|-a -f -m1000000 -w26 -N writer_progress|LTL, weak fairness: a waiting writer enters while 2 readers keep cycling"
"live-reader2|-DNPROC=2 -DATOMIC_SCAN -DNWRITERS=1 -DLIVE -DMAXKILL=0|-DCOLLAPSE -DNFAIR=3|-a -f -m1000000 -w26 -N reader_progress|exhaustive: a waiting reader enters while 1 writer keeps cycling (SPEC_RB_CAS fails here too)"
"live-recovery-w|-DNPROC=2 -DATOMIC_SCAN -DNWRITERS=1 -DLIVE -DPREDEAD -DMAXKILL=0|-DCOLLAPSE -DNFAIR=3|-a -f -m1000000 -w26 -N writer_progress|writer_progress (1 writer, 1 reader) with a third process dead in any of 6 states"
"live-recovery-r|-DNPROC=2 -DATOMIC_SCAN -DNWRITERS=1 -DLIVE -DPREDEAD -DMAXKILL=0|-DCOLLAPSE -DNFAIR=3|-a -f -m1000000 -w26 -N reader_progress|reader_progress (1 writer, 1 reader) with a third process dead in any of 6 states"
)
extra=(
"live-reader|-DNPROC=3 -DATOMIC_SCAN -DNWRITERS=2 -DLIVE -DMAXKILL=0|-DBITSTATE -DNFAIR=3|-a -f -m2000000 -w32 -k3 -N reader_progress|(bitstate, not exhaustive) LTL, weak fairness: a waiting reader enters while 2 writers keep cycling"
"restart|-DNPROC=1 -DNOPS=2 -DPREDEAD -DMAXKILL=1 -DMAXRESTART=1 -DSPARE -DATOMIC_SCAN|-DSAFETY -DBITSTATE|-m1000000 -w32 -k3|(bitstate, not exhaustive: >93M states) a process died in any of 6 states; the live one may be killed too; a new process registers into a dead entry or the spare one beyond highWater"
"finite3|-DNPROC=3 -DNOPS=1 -DMAXKILL=0 -DATOMIC_SCAN|-DSAFETY -DBITSTATE|-m1000000 -w32 -k3|(bitstate; >79M states exhaustively) 3 processes, one operation each (any form): lost wake-ups with 2 sleepers on one futex"
"spurious|-DNPROC=2 -DMAXKILL=0 -DSPURIOUS|-DSAFETY -DCOLLAPSE|-m1000000 -w26|safety with spurious futex wake-ups (they hide lost wake-ups: safety only)"
)
# Extra -D flags for every check: a protocol as first specified or a mutant (each must
# fail; README.md lists which check shows each), e.g.
#   MODEL_FLAGS="-DSPEC_OD_AT_CAS" Tests/Model/check.sh restart
#   MODEL_FLAGS="-DMUTANT_NO_READ_TURN" Tests/Model/check.sh live-reader
extra_flags=${MODEL_FLAGS:-}
memlim=${MEMLIM:-6000}     # MB per pan run (pan stops and the check fails if it needs more)
tlimit=${TLIMIT:-0}        # seconds per pan run (0: none); an interrupted run fails as incomplete

want=("$@")
selected() {
    [ ${#want[@]} -eq 0 ] && [ "$2" = default ] && return 0
    local w; for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1
}

status=0
run() {
    local name=$1 sdefs="$2 $extra_flags" cflags=$3 pflags=$4 what=$5
    local dir=$keep/$name
    rm -rf "$dir"; mkdir -p "$dir"; cp "$model" "$dir/"
    echo "== $name: $what"
    echo "   spin $sdefs -a interlock.pml; gcc -O2 $cflags pan.c; ./pan $pflags"
    ( cd "$dir" && spin $sdefs -a interlock.pml >spin.log 2>&1 ) || { cat "$dir/spin.log"; status=1; return; }
    ( cd "$dir" && gcc -O2 -w -DMEMLIM=$memlim $cflags -o pan pan.c >gcc.log 2>&1 ) || { cat "$dir/gcc.log"; status=1; return; }
    local t0=$(date +%s.%N)
    if [ "$tlimit" -gt 0 ]; then
        ( cd "$dir" && timeout -s INT "$tlimit" ./pan $pflags >pan.log 2>&1 )
    else
        ( cd "$dir" && ./pan $pflags >pan.log 2>&1 )
    fi
    local t1=$(date +%s.%N)
    local log=$dir/pan.log
    local errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$log" | tail -1)
    local states=$(awk '/states, stored/ {print $1}' "$log" | tail -1)
    local depth=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$log" | tail -1)
    printf '   states %s, depth %s, errors %s, %.1f s\n' "${states:-?}" "${depth:-?}" "${errors:-?}" \
        "$(echo "$t1 - $t0" | bc)"
    grep -E "^pan:|^pan[0-9]*:" "$log" | grep -v -E "resizing|elapsed|rate|wrote" | sed 's/^/   /' | cut -c1-200
    if [ "${errors:-x}" != 0 ]; then
        status=1
        echo "   FAILED — trail: (cd $dir && spin $sdefs -t -p -g interlock.pml)"
    elif grep -q -E "max search depth too small|out of memory|ran out of memory|reached -DMEMLIM|Interrupted" "$log"; then
        status=1; echo "   FAILED — search incomplete (depth or memory)"
    fi
}

for c in "${configs[@]}"; do
    IFS='|' read -r name sdefs cflags pflags what <<<"$c"
    selected "$name" default && run "$name" "$sdefs" "$cflags" "$pflags" "$what"
done
for c in "${extra[@]}"; do
    IFS='|' read -r name sdefs cflags pflags what <<<"$c"
    selected "$name" extra && run "$name" "$sdefs" "$cflags" "$pflags" "$what"
done
[ $status = 0 ] && echo "all checks passed" || echo "some checks FAILED"
exit $status

