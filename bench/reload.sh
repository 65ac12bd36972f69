#!/usr/bin/env bash
# bench/reload.sh: reload under load (issue "operations"). wrk runs for
# DURATION seconds against meridian while the configuration is reloaded
# RELOADS times, alternating between two valid files that route to different
# regions (region-a -> backend A, region-b -> backend B), and, every other
# time, adding and removing a second listener. After each SIGHUP the script
# waits until /v1/route names the new file's region and a request answers
# from the new backend. It reports wrk's requests, socket errors and non-2xx
# responses, how many reloads the routing followed, and
# meridian_config_reloads_total. Run from the repo root after `make`.
#   DURATION=20 RELOADS=20 CONNS=20 THREADS=2 WORKERS=2
#   MERIDIAN_BIN=./meridian BACKEND_BIN=./build/mrd-backend
set -euo pipefail

DURATION=${DURATION:-20}
RELOADS=${RELOADS:-20}
CONNS=${CONNS:-20}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-2}
MERIDIAN_BIN=${MERIDIAN_BIN:-./meridian}
BACKEND_BIN=${BACKEND_BIN:-./build/mrd-backend}
PY=/usr/bin/python3

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
WORK=$(mktemp -d /tmp/meridian-reload.XXXXXX)
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

command -v wrk >/dev/null || { echo "reload: wrk is missing (make deps-bench)" >&2; exit 1; }
read -r PORT EXTRA ADMIN PA PB <<< "$(free_ports 5)"

"$BACKEND_BIN" -q -n A -l "127.0.0.1:$PA" > /dev/null & PIDS+=($!)
"$BACKEND_BIN" -q -n B -l "127.0.0.1:$PB" > /dev/null & PIDS+=($!)
wait_port "$PA" "${PIDS[0]}" && wait_port "$PB" "${PIDS[1]}" || { echo "reload: backends did not start" >&2; exit 1; }

config() {   # config REGION BACKEND_PORT WITH_EXTRA_LISTENER
    echo "workers: $WORKERS"
    echo "listeners:"
    echo "  - address: \"127.0.0.1:$PORT\""
    if [[ $3 == 1 ]]; then echo "  - address: \"127.0.0.1:$EXTRA\""; fi
    echo "admin: {address: \"127.0.0.1:$ADMIN\"}"
    echo "regions:"
    echo "  - name: $1"
    echo "    location: {latitude: 50.1, longitude: 8.7}"
    echo "    upstreams: [{address: \"127.0.0.1:$2\"}]"
}
config region-a "$PA" 0 > "$WORK/a.yaml"
config region-b "$PB" 1 > "$WORK/b.yaml"
cp "$WORK/a.yaml" "$WORK/meridian.yaml"
"$MERIDIAN_BIN" -c "$WORK/meridian.yaml" 2> "$WORK/meridian.log" & MPID=$!; PIDS+=("$MPID")
wait_port "$PORT" "$MPID" || { echo "reload: meridian did not start:" >&2; cat "$WORK/meridian.log" >&2; exit 1; }

wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$PORT/" > "$WORK/wrk.txt" 2>&1 & WRK=$!
sleep 0.5
interval=$(awk "BEGIN { print ($DURATION - 2) / $RELOADS }")
followed=0
for (( i = 1; i <= RELOADS; i++ )); do
    if (( i % 2 == 1 )); then f=b; want=region-b; be=B; else f=a; want=region-a; be=A; fi
    cp "$WORK/$f.yaml" "$WORK/meridian.yaml"
    kill -HUP "$MPID"
    ok=0
    for (( t = 0; t < 200; t++ )); do
        region=$(curl -s "http://127.0.0.1:$ADMIN/v1/route?ip=127.0.0.1" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["decision"]["region"])' 2>/dev/null || true)
        got=$(curl -s -o /dev/null -D - "http://127.0.0.1:$PORT/" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-backend" {print $2}')
        if [[ $region == "$want" && $got == "$be" ]]; then ok=1; break; fi
        sleep 0.01
    done
    followed=$(( followed + ok ))
    printf '  reload %2d -> %s: routing %s\n' "$i" "$f.yaml" "$([[ $ok == 1 ]] && echo followed || echo 'DID NOT FOLLOW')" >&2
    sleep "$interval"
done
wait "$WRK" || true

reqs=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
sockerr=$(awk -F'[ ,]+' '/Socket errors/ {print $4+$6+$8+$10}' "$WORK/wrk.txt")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.txt")
rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
metrics=$(curl -s "http://127.0.0.1:$ADMIN/metrics")
succ=$(awk '/^meridian_config_reloads_total\{result="success"\}/ {print $2}' <<< "$metrics")
err=$(awk '/^meridian_config_reloads_total\{result="error"\}/ {print $2}' <<< "$metrics")
alive=$(kill -0 "$MPID" 2>/dev/null && echo yes || echo no)
echo "reload under load: wrk -t$THREADS -c$CONNS ${DURATION}s, $RELOADS reloads (every other one adds a listener): $reqs requests ($rps req/s), socket errors ${sockerr:-0}, non-2xx ${non2xx:-0}, routing followed $followed/$RELOADS, reloads_total success ${succ:-?} error ${err:-?}, meridian alive: $alive"
[[ ${sockerr:-0} == 0 && ${non2xx:-0} == 0 && $followed == "$RELOADS" && $alive == yes ]]
