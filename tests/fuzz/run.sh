#!/usr/bin/env bash
# tests/fuzz/run.sh SECONDS TARGET...: run each libFuzzer target for SECONDS
# (build-fuzz/TARGET, seeds from tests/fuzz/corpus/TARGET, the working corpus
# in build-fuzz/corpus-TARGET, the dictionary tests/fuzz/KIND.dict where
# TARGET is fuzz_KIND[_...] and that file exists), log to
# build-fuzz/log-TARGET.txt and print one summary line per target:
#   TARGET: execs N, edges (cov) N, features N, corpus N, findings N
# FUZZ_JOBS=N runs N targets at once. Exit 1 when any target found a crash.
set -u
secs=$1; shift
jobs=${FUZZ_JOBS:-1}
cd "$(dirname "$0")/../.."

one() {
    local t=$1 kind dict=() log=build-fuzz/log-$1.txt
    kind=${t#fuzz_}; kind=${kind%%_*}
    [ -f tests/fuzz/$kind.dict ] && dict=(-dict=tests/fuzz/$kind.dict)
    mkdir -p build-fuzz/corpus-$t build-fuzz/artifacts-$t tests/fuzz/corpus/$t
    build-fuzz/$t -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 \
        -artifact_prefix=build-fuzz/artifacts-$t/ "${dict[@]}" \
        build-fuzz/corpus-$t tests/fuzz/corpus/$t >"$log" 2>&1
    local rc=$?
    local execs cov ft corp finds
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    corp=$(grep -oE 'corp: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    finds=$(find build-fuzz/artifacts-$t -type f | wc -l)
    echo "$t: execs ${execs:-?}, edges (cov) ${cov:-?}, features ${ft:-?}, corpus ${corp:-?}, findings $finds (exit $rc, log $log)"
    [ "$rc" = 0 ] && [ "$finds" = 0 ]
}

fail=0 running=0
for t in "$@"; do
    one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then wait -n || fail=1; running=$((running - 1)); fi
done
while [ "$running" -gt 0 ]; do wait -n || fail=1; running=$((running - 1)); done
exit $fail
