#!/usr/bin/env bash
# Model-checks Tests/Model/interlock.pml with spin (Debian package `spin`; needs gcc).
#
#   Tests/Model/check.sh              the default checks below
#   Tests/Model/check.sh NAME...      only these (see `configs`); `deep` is not run by default
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
"safety|-DNPROC=2 -DMAXKILL=1|-DSAFETY -DCOLLAPSE|-m1000000 -w26|exhaustive safety: 2 processes doing every kind of acquire; either may die at any step"
"recovery|-DNPROC=2 -DPREDEAD -DMAXKILL=0|-DSAFETY -DCOLLAPSE|-m1000000 -w26|exhaustive safety: 2 live processes recover a third that died in any of 9 states"
"liveness|-DNPROC=3 -DLIVE -DMAXKILL=0|-DCOLLAPSE -DNFAIR=3|-a -f -m1000000 -w26|LTL + weak fairness: a waiting writer eventually holds the lock while 2 readers keep cycling"
"liveness-recovery|-DNPROC=2 -DLIVE -DPREDEAD -DMAXKILL=0|-DCOLLAPSE -DNFAIR=3|-a -f -m1000000 -w26|the same when a third process died in any of 9 states (recovery must run)"
"register|-DNPROC=2 -DREGISTER -DPDV=0 -DMAXKILL=0|-DSAFETY -DCOLLAPSE|-m1000000 -w26|Segment.register() reusing a dead idle entry while a recovery runs"
"register-kill|-DNPROC=2 -DREGISTER -DPDV=0 -DMAXKILL=1 -DKILLONLY=0 -DONESHOT -DNOPARK|-DSAFETY -DCOLLAPSE|-m1000000 -w26|register() racing a live process that acquires and dies (REGISTER_CHECK_FIRST fails here)"
"restart|-DNPROC=2 -DPREDEAD -DPDV=1 -DMAXKILL=1 -DMAXRESTART=1 -DNWRITERS=1 -DNOPARK -DONESHOT|-DSAFETY -DBITSTATE|-m1000000 -w32 -k3|a killed process (the recoverer, a holder, ...) is replaced by a new one that registers, possibly into its slot; recovery is taken over (bitstate: >160M states exhaustively)"
"settle-timeout|-DNPROC=3 -DPREDEAD -DPDV=0 -DMAXKILL=1 -DKILLONLY=0 -DSETTLE_TIMEOUT -DNWRITERS=2 -DNOPARK -DONESHOT|-DSAFETY -DBITSTATE|-m1000000 -w32 -k3|recover() giving up on a stuck in-flight process after taking over from a dead recoverer"
)
extra=(
"deep|-DNPROC=3 -DMAXKILL=1|-DSAFETY -DHC4|-m2000000 -w31|3 processes, one death (hash-compact; very long, ~20 GB)"
)
# Extra -D flags for every check, e.g. the recovery as it was before publish-first:
#   MODEL_FLAGS="-DOLD_RECOVERY" Tests/Model/check.sh settle-timeout   (failed on the pid-based model)
# or a deliberately broken protocol (each must fail):
#   MODEL_FLAGS="-DMUTANT_NO_EPOCH" Tests/Model/check.sh restart
#   MODEL_FLAGS="-DMUTANT_PID_LIVENESS" Tests/Model/check.sh restart
#   MODEL_FLAGS="-DREGISTER_CHECK_FIRST" Tests/Model/check.sh register-kill
extra_flags=${MODEL_FLAGS:-}
memlim=${MEMLIM:-7800}     # MB per pan run (pan stops and the check fails if it needs more)

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
    ( cd "$dir" && ./pan $pflags >pan.log 2>&1 )
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
    elif grep -q -E "max search depth too small|out of memory|ran out of memory" "$log"; then
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
