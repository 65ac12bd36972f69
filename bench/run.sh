#!/usr/bin/env bash
# bench/run.sh: compare meridian with HAProxy and nginx on one machine, each
# proxying to the same fast backend (build/mrd-backend), configured alike.
# Method and how to read the output: bench/README.md. Run from the repo root
# (`make bench` does). Settings come from the environment:
#   ROUNDS=5 DURATION=10 REQS=100000 CONNS=50 IDLE_CONNS=10000
#   TARGETS="direct meridian haproxy nginx" (also: meridian-geo, meridian with
#   full routing: MaxMind lookup, five capped regions, a residency rule;
#   meridian-prev: MERIDIAN_PREV_BIN on meridian's config, to compare two
#   builds in the same run; meridian-cap: the region capped far above the load;
#   meridian-cluster: meridian-cap sharing its cap through a redis-server the
#   script starts, checked to be in shared mode around every run)
#   MERIDIAN_BIN=./meridian BACKEND_BIN=./build/mrd-backend KEEP_WORK=0
#   GEO_DB=build/geo/meridian-test-city.mmdb (the bundled test database, made
#   here when missing; data/geoip/GeoLite2-City.mmdb after `make geoip`)
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
REQS=${REQS:-100000}
CONNS=${CONNS:-50}
IDLE_CONNS=${IDLE_CONNS:-10000}
TARGETS=${TARGETS:-"direct meridian haproxy nginx"}
GEO_DB=${GEO_DB:-$(cd "$(dirname "$0")/.." && pwd)/build/geo/meridian-test-city.mmdb}
if [ ! -e "$GEO_DB" ] && [ "$GEO_DB" = "$(cd "$(dirname "$0")/.." && pwd)/build/geo/meridian-test-city.mmdb" ]; then
    make -C "$(dirname "$0")/.." --no-print-directory geodb >/dev/null
fi
MERIDIAN_BIN=${MERIDIAN_BIN:-./meridian}
MERIDIAN_PREV_BIN=${MERIDIAN_PREV_BIN:-}
BACKEND_BIN=${BACKEND_BIN:-./build/mrd-backend}
HAPROXY_BIN=${HAPROXY_BIN:-haproxy}
REDIS_BIN=${REDIS_BIN:-redis-server}
NGINX_BIN=${NGINX_BIN:-nginx}
KEEP_WORK=${KEEP_WORK:-0}
PY=/usr/bin/python3

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$BENCH_DIR/results/$STAMP
WORK=$(mktemp -d /tmp/meridian-bench.XXXXXX)
PIDS=()          # every process this script started; killed on exit

log() { printf '%s\n' "$*" >&2; }
die() { log "bench: $*"; exit 1; }

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ $KEEP_WORK == 1 ]] || (( rc != 0 && rc != 130 && rc != 143 )); then
        log "bench: work files (configs, logs) kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- preflight ------------------------------------------------------------------

for t in wrk h2load curl taskset; do
    command -v "$t" >/dev/null || die "$t not found (make deps-bench installs the tools)"
done
[[ -x $BACKEND_BIN ]] || die "backend $BACKEND_BIN missing (make build/mrd-backend)"
BACKEND_BIN=$(realpath "$BACKEND_BIN")

if (( $(nproc) >= 2 )); then
    PIN_LOAD=(taskset -c 0)
    PIN_SERVER=(taskset -c 1)
else
    log "bench: only one CPU: running without CPU pinning, results are noisy"
    PIN_LOAD=()
    PIN_SERVER=()
fi

# file descriptors: 65536 if allowed, else the hard limit. HAProxy needs two
# per connection (maxsock = 2 * maxconn), so that bounds the idle-connection test.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
MAXCONN=$(( (NOFILE - 200) / 2 ))
if (( IDLE_CONNS > MAXCONN - 100 )); then
    log "bench: open-file limit is $NOFILE: IDLE_CONNS lowered from $IDLE_CONNS to $(( MAXCONN - 100 ))"
    IDLE_CONNS=$(( MAXCONN - 100 ))
fi

render() {    # render TEMPLATE OUT PROXY_PORT [ADMIN_PORT TAG]
    sed -e "s|@PROXY_PORT@|$3|g" -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" -e "s|@MAXCONN@|$MAXCONN|g" \
        -e "s|@NOFILE@|$NOFILE|g" -e "s|@WORK@|$WORK|g" -e "s|@GEO_DB@|$GEO_DB|g" \
        -e "s|@ADMIN_PORT@|${4:-}|g" -e "s|@TAG@|${5:-}|g" -e "s|@REDIS_PORT@|${REDIS_PORT:-}|g" "$1" > "$2"
}

# --- processes ------------------------------------------------------------------

declare -A PORT=() TPIDS=() ADMIN=()
REDIS_PORT="" REDIS_PID=""

# start_redis: the redis-server of meridian-cluster on a free loopback port,
# with a password (meridian reads it from cluster.redis.password_file), no
# persistence; on the servers' CPU
start_redis() {
    command -v "$REDIS_BIN" >/dev/null && command -v redis-cli >/dev/null ||
        die "$REDIS_BIN or redis-cli not found (apt-get install redis-server)"
    REDIS_PORT=$(free_ports 1)
    printf 'bench-%s' "$RANDOM$RANDOM" > "$WORK/redis.pw"
    "${PIN_SERVER[@]}" "$REDIS_BIN" --save "" --appendonly no --bind 127.0.0.1 --port "$REDIS_PORT" \
        --requirepass "$(cat "$WORK/redis.pw")" --dir "$WORK" > "$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    wait_port "$REDIS_PORT" "$REDIS_PID" || die "redis-server did not start: $(cat "$WORK/redis.log")"
}

rcli() { redis-cli -p "$REDIS_PORT" -a "$(cat "$WORK/redis.pw")" --no-auth-warning "$@"; }

# redis_cmds: "evalsha eval all" calls so far (INFO commandstats; "all" also
# counts the commands the sync script runs inside Redis)
redis_cmds() {
    rcli info commandstats | tr -d '\r' | awk -F'[:=,]' '
        /^cmdstat_/ { all += $3; if ($1 == "cmdstat_evalsha") es = $3; if ($1 == "cmdstat_eval") e = $3 }
        END { printf "%d %d %d\n", es, e, all }'
}

# cluster_state ADMIN_PORT: "mode redis_up syncs sync_failures spent_tokens"
# from /v1/status and /metrics
cluster_state() {
    local mode metrics
    mode=$(curl -s --max-time 5 "http://127.0.0.1:$1/v1/status" |
        "$PY" -c 'import json, sys; c = json.load(sys.stdin).get("cluster"); print(c["mode"] if c else "none")' \
        2>/dev/null) || mode=none
    metrics=$(curl -s --max-time 5 "http://127.0.0.1:$1/metrics")
    awk -v mode="${mode:-none}" '
        $1 == "meridian_cluster_redis_up" { up = $2 }
        $1 == "meridian_cluster_sync_seconds_count" { n = $2 }
        $1 == "meridian_cluster_sync_failures_total" { f = $2 }
        $1 ~ /^meridian_cluster_tokens_total\{.*kind="spent"/ { s += $2 }
        END { printf "%s %d %d %d %d\n", mode, up, n, f, s }' <<< "$metrics"
}

# wait_shared ADMIN_PORT: until the cluster mode is "shared" (1 after 5 s)
wait_shared() {
    local i st
    for (( i = 0; i < 50; i++ )); do
        read -r st _ <<< "$(cluster_state "$1")"
        [[ $st == shared ]] && return 0
        sleep 0.1
    done
    return 1
}

start_backend() {
    local out=$WORK/backend.out
    "${PIN_SERVER[@]}" "$BACKEND_BIN" -q -n bench -l 127.0.0.1:0 > "$out" 2> "$WORK/backend.err" &
    PIDS+=($!)
    BACKEND_PID=$!
    local i
    for (( i = 0; i < 100; i++ )); do
        grep -q '^listening ' "$out" 2>/dev/null && break
        kill -0 "$BACKEND_PID" 2>/dev/null || die "backend failed to start: $(cat "$WORK/backend.err")"
        sleep 0.05
    done
    BACKEND_PORT=$(awk '/^listening /{ n = split($3, a, ":"); print a[n]; exit }' "$out")
    [[ -n $BACKEND_PORT ]] || die "backend did not report its port"
}

# start_proxy TARGET PORT TAG: starts a fresh proxy; sets STARTED_PIDS (the
# processes whose CPU and memory count) or returns 1 with a message.
start_proxy() {
    local target=$1 port=$2 tag=$3 pid admin=""
    STARTED_PIDS="" STARTED_ADMIN=""
    case $target in
    meridian | meridian-geo | meridian-prev | meridian-cap | meridian-cluster)
        local bin=$MERIDIAN_BIN tmpl=$target
        if [[ $target == meridian-prev ]]; then bin=$MERIDIAN_PREV_BIN; tmpl=meridian; fi
        if [[ ! -x $bin ]]; then
            log "bench: skipping $target: ${bin:-MERIDIAN_PREV_BIN} not found (build it with make)"
            return 1
        fi
        if [[ $target == meridian-cap || $target == meridian-cluster ]]; then
            admin=$(free_ports 1)
            STARTED_ADMIN=$admin
        fi
        render "$BENCH_DIR/$tmpl.yaml.in" "$WORK/$target-$tag.yaml" "$port" "$admin" "$tag"
        "${PIN_SERVER[@]}" "$bin" -c "$WORK/$target-$tag.yaml" \
            > "$WORK/$target-$tag.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        STARTED_PIDS=$pid
        ;;
    haproxy)
        render "$BENCH_DIR/haproxy.cfg.in" "$WORK/haproxy-$tag.cfg" "$port"
        "${PIN_SERVER[@]}" "$HAPROXY_BIN" -db -f "$WORK/haproxy-$tag.cfg" > "$WORK/haproxy-$tag.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        STARTED_PIDS=$pid
        ;;
    nginx)
        mkdir -p "$WORK/nginx-$tag"
        local saved=$WORK
        WORK=$WORK/nginx-$tag render "$BENCH_DIR/nginx.conf.in" "$saved/nginx-$tag/nginx.conf" "$port"
        "${PIN_SERVER[@]}" "$NGINX_BIN" -e "$WORK/nginx-$tag/stderr.log" -p "$WORK/nginx-$tag" \
            -c "$WORK/nginx-$tag/nginx.conf" > "$WORK/nginx-$tag.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        STARTED_PIDS=$pid
        ;;
    *)
        die "unknown target $target"
        ;;
    esac
    if ! wait_port "$port" "$pid"; then
        log "bench: skipping $target: it did not start listening on 127.0.0.1:$port; its output:"
        sed 's/^/    /' "$WORK/$target-$tag.log" >&2 || true
        stop_pids "$pid"
        return 1
    fi
    if [[ $target == nginx ]]; then    # count the worker too (the master only supervises)
        local w
        for w in $(pgrep -P "$pid" || true); do
            PIDS+=("$w")
            STARTED_PIDS="$STARTED_PIDS $w"
        done
    fi
    local hdr tries=1 i
    if [[ $target == meridian-cluster ]]; then
        if ! wait_shared "$admin"; then
            log "bench: skipping $target: its cluster mode is not \"shared\" after 5 s ($(cluster_state "$admin")); its output:"
            sed 's/^/    /' "$WORK/$target-$tag.log" >&2 || true
            stop_pids $STARTED_PIDS
            return 1
        fi
        # an idle instance holds one token per sync_interval (the lease follows
        # the demand) and a new fleet bucket starts empty: a first request may
        # be shed (503) until a sync has sized the lease
        tries=10
    fi
    for (( i = 0; i < tries; i++ )); do
        hdr=$(curl -s -o /dev/null -D - --max-time 5 "http://127.0.0.1:$port/" | tr -d '\r' |
            awk -F': ' 'tolower($1) == "x-backend" { print $2 }')
        [[ $hdr == bench ]] && break
        sleep 0.15
    done
    if [[ $hdr != bench ]]; then
        log "bench: skipping $target: a request through it did not reach the backend"
        stop_pids $STARTED_PIDS
        return 1
    fi
    return 0
}

# --- measurements ---------------------------------------------------------------

# wrk output -> "rps p50_ms p99_ms errors"
parse_wrk() {
    "$PY" -c '
import re, sys
t = sys.stdin.read()
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    f = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]
    return float(m.group(1)) * f
rps = re.search(r"Requests/sec:\s+([\d.]+)", t)
p50 = re.search(r"^\s+50%\s+(\S+)", t, re.M)
p99 = re.search(r"^\s+99%\s+(\S+)", t, re.M)
err = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", t))
err += sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", t))
if not (rps and p50 and p99):
    print("nan nan nan nan"); sys.exit()
print(rps.group(1), "%.3f" % ms(p50.group(1)), "%.3f" % ms(p99.group(1)), err)'
}

# h2load output -> "rps succeeded"
parse_h2load() {
    "$PY" -c '
import re, sys
t = sys.stdin.read()
rps = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", t)
ok = re.search(r"(\d+) succeeded", t)
print(rps.group(1) if rps else "nan", ok.group(1) if ok else 0)'
}

run_target() {   # run_target ROUND TARGET
    local round=$1 t=$2 url="http://127.0.0.1:${PORT[$2]}/" pids=${TPIDS[$2]}
    local c0 c1 p0 p1 b0 b1 cs0 cs1 rc0 rc1 t0 t1
    # meridian-cluster: the fleet's state around wrk and h2load together (read
    # before wrk, so that no pause before h2load lets the lease shrink)
    if [[ $t == meridian-cluster ]]; then
        cs0=$(cluster_state "${ADMIN[$t]}"); rc0=$(redis_cmds); t0=$(date +%s%N)
    fi
    run_load "$WORK/wrk.out" "${PIN_LOAD[@]}" wrk -t1 -c "$CONNS" -d "${DURATION}s" --latency "$url"
    read -r w_rps w_p50 w_p99 w_err <<< "$(parse_wrk < "$WORK/wrk.out")"
    cat "$WORK/wrk.out" >> "$RESULTS/wrk-$t.log"

    c0=$(backend_conns)
    p0=$(cpu_ns $pids); b0=$(cpu_ns "$BACKEND_PID")
    run_load "$WORK/h2load.out" "${PIN_LOAD[@]}" h2load --h1 -n "$REQS" -c "$CONNS" "$url"
    p1=$(cpu_ns $pids); b1=$(cpu_ns "$BACKEND_PID")
    c1=$(backend_conns)
    if [[ $t == meridian-cluster ]]; then
        t1=$(date +%s%N); cs1=$(cluster_state "${ADMIN[$t]}"); rc1=$(redis_cmds)
        cluster_row "$round" "$cs0" "$cs1" "$rc0" "$rc1" "$(( t1 - t0 ))"
    fi
    read -r h_rps h_ok <<< "$(parse_h2load < "$WORK/h2load.out")"
    cat "$WORK/h2load.out" >> "$RESULTS/h2load-$t.log"
    if [[ $t == direct ]]; then p0=$b0; p1=$b1; fi
    # the /stats request after the run opened one connection of its own
    local newc=$(( c1 - c0 - 1 ))
    echo "$round,$t,$w_rps,$w_p50,$w_p99,$w_err,$h_rps,$h_ok,$REQS,$(( p1 - p0 )),$(( b1 - b0 )),$newc" \
        >> "$RESULTS/runs.csv"
    printf '  round %d %-9s wrk %9s req/s p50 %7s ms p99 %7s ms err %s | h2load %9s req/s ok %s/%s proxy %6.3f s backend %6.3f s, %d new backend conns\n' \
        "$round" "$t" "$w_rps" "$w_p50" "$w_p99" "$w_err" "$h_rps" "$h_ok" "$REQS" \
        "$(awk "BEGIN { print ($p1 - $p0) / 1e9 }")" "$(awk "BEGIN { print ($b1 - $b0) / 1e9 }")" "$newc" >&2
}

# cluster_row ROUND STATE0 STATE1 REDIS0 REDIS1 NS: meridian-cluster around
# one h2load run: shared before and after, no failed sync, the leased tokens
# spent, Redis commands per second
cluster_row() {
    local m0 u0 n0 f0 s0 m1 u1 n1 f1 s1 es0 e0 a0 es1 e1 a1 ok=1
    read -r m0 u0 n0 f0 s0 <<< "$2"; read -r m1 u1 n1 f1 s1 <<< "$3"
    read -r es0 e0 a0 <<< "$4"; read -r es1 e1 a1 <<< "$5"
    [[ $m0 == shared && $m1 == shared && $u1 == 1 ]] && (( f1 == f0 )) || ok=0
    echo "$1,$m0,$m1,$u1,$(( n1 - n0 )),$(( f1 - f0 )),$(( s1 - s0 )),$(( es1 - es0 )),$(( e1 - e0 )),$(( a1 - a0 )),$6,$ok" \
        >> "$RESULTS/cluster.csv"
    printf '  round %d %-9s cluster mode %s -> %s, %d syncs (%d failed), %d leased tokens spent, redis: %d evalsha %d eval %d commands in %.2f s (wrk + h2load)\n' \
        "$1" "" "$m0" "$m1" "$(( n1 - n0 ))" "$(( f1 - f0 ))" "$(( s1 - s0 ))" "$(( es1 - es0 ))" "$(( e1 - e0 ))" \
        "$(( a1 - a0 ))" "$(awk "BEGIN { print $6 / 1e9 }")" >&2
    (( ok )) || log "bench: meridian-cluster was NOT in shared mode throughout round $1: its figures are not valid"
}

memory_target() {   # memory_target ROUND TARGET: fresh process, IDLE_CONNS idle connections
    local round=$1 t=$2 port out pid_args=() p
    port=$(free_ports 1)
    if ! start_proxy "$t" "$port" "mem$round"; then
        return 0
    fi
    for p in $STARTED_PIDS; do pid_args+=(--pid "$p"); done
    if out=$("${PIN_LOAD[@]}" "$PY" "$BENCH_DIR/idle_conns.py" --port "$port" --count "$IDLE_CONNS" \
            "${pid_args[@]}" 2> "$WORK/idle-$t-$round.err"); then
        :
    else
        # error responses or dropped connections: the figure would not be
        # comparable (a shed request allocates no upstream state), so it is
        # not recorded
        log "bench: $t: idle connection test had problems, not recorded: $(cat "$WORK/idle-$t-$round.err")"
        out=""
    fi
    stop_pids $STARTED_PIDS
    if [[ -z $out ]]; then return 0; fi
    # rss_before_kb=N rss_after_kb=N conns=N bytes_per_conn=N
    local kv before="" after="" conns="" bpc=""
    for kv in $out; do
        case ${kv%%=*} in
        rss_before_kb) before=${kv#*=} ;;
        rss_after_kb) after=${kv#*=} ;;
        conns) conns=${kv#*=} ;;
        bytes_per_conn) bpc=${kv#*=} ;;
        esac
    done
    echo "$round,$t,$before,$after,$conns,$bpc" >> "$RESULTS/memory.csv"
    printf '  round %d %-9s RSS %7s -> %7s KB over %s idle connections: %s bytes/conn\n' \
        "$round" "$t" "$before" "$after" "$conns" "$bpc" >&2
}

# --- main -----------------------------------------------------------------------

mkdir -p "$RESULTS"
echo "round,target,wrk_rps,wrk_p50_ms,wrk_p99_ms,wrk_errors,h2load_rps,h2load_ok,h2load_reqs,proxy_cpu_ns,backend_cpu_ns,new_backend_conns" \
    > "$RESULTS/runs.csv"
echo "round,target,rss_before_kb,rss_after_kb,idle_conns,bytes_per_conn" > "$RESULTS/memory.csv"
echo "round,mode_before,mode_after,redis_up,syncs,sync_failures,spent_tokens,evalsha,eval,redis_commands,ns,valid" \
    > "$RESULTS/cluster.csv"

start_backend
if [[ " $TARGETS " == *" meridian-cluster "* ]]; then
    start_redis
    log "bench: redis-server pid $REDIS_PID on 127.0.0.1:$REDIS_PORT (for meridian-cluster)"
fi
log "bench: backend pid $BACKEND_PID on 127.0.0.1:$BACKEND_PORT; load on CPU 0, servers on CPU 1"
log "bench: ROUNDS=$ROUNDS DURATION=${DURATION}s REQS=$REQS CONNS=$CONNS IDLE_CONNS=$IDLE_CONNS nofile=$NOFILE"

ACTIVE=()
read -r -a ports <<< "$(free_ports 6)"
i=0
for t in $TARGETS; do
    if [[ $t == direct ]]; then
        PORT[direct]=$BACKEND_PORT
        TPIDS[direct]=$BACKEND_PID
        ACTIVE+=(direct)
        continue
    fi
    PORT[$t]=${ports[$i]}
    i=$(( i + 1 ))
    if start_proxy "$t" "${PORT[$t]}" main; then
        TPIDS[$t]=$STARTED_PIDS
        ADMIN[$t]=$STARTED_ADMIN
        ACTIVE+=("$t")
        log "bench: $t pid(s) ${TPIDS[$t]} on 127.0.0.1:${PORT[$t]}"
    fi
done
(( ${#ACTIVE[@]} > 0 )) || die "no target started"

log "bench: warm-up (1 s per target, not recorded)"
for t in "${ACTIVE[@]}"; do
    run_load /dev/null "${PIN_LOAD[@]}" wrk -t1 -c "$CONNS" -d 1s "http://127.0.0.1:${PORT[$t]}/"
done

for (( r = 1; r <= ROUNDS; r++ )); do
    log "bench: throughput round $r/$ROUNDS"
    for t in "${ACTIVE[@]}"; do
        run_target "$r" "$t"
    done
done

# the long-running proxies are no longer needed; the memory test starts fresh ones
for t in "${ACTIVE[@]}"; do
    [[ $t == direct ]] || stop_pids ${TPIDS[$t]}
done
for (( r = 1; r <= ROUNDS; r++ )); do
    log "bench: idle-connection memory round $r/$ROUNDS ($IDLE_CONNS connections)"
    for t in "${ACTIVE[@]}"; do
        [[ $t == direct ]] || memory_target "$r" "$t"
    done
done

# --- report ---------------------------------------------------------------------

"$PY" - "$RESULTS" "${ACTIVE[*]}" "$DURATION" <<'EOF' | tee "$RESULTS/summary.txt"
import csv, math, statistics, sys
res, targets = sys.argv[1], sys.argv[2].split()

def rows(name):
    with open(f"{res}/{name}") as f:
        return list(csv.DictReader(f))

def med(vals):
    vals = [v for v in vals if not math.isnan(v)]
    return statistics.median(vals) if vals else float("nan")

runs, mem = rows("runs.csv"), rows("memory.csv")
m = {t: {} for t in targets}
for t in targets:
    rr = [r for r in runs if r["target"] == t]
    f = lambda k: [float(r[k]) for r in rr]
    per100k = lambda ns, n: ns / 1e9 * 100000 / n if n else float("nan")
    m[t]["rps"] = med(f("wrk_rps"))
    m[t]["p50"] = med(f("wrk_p50_ms"))
    m[t]["p99"] = med(f("wrk_p99_ms"))
    m[t]["errors"] = sum(int(float(x)) for x in f("wrk_errors")) if rr else 0
    m[t]["h2rps"] = med(f("h2load_rps"))
    m[t]["failed"] = sum(int(r["h2load_reqs"]) - int(r["h2load_ok"]) for r in rr)
    m[t]["cpu"] = med([per100k(float(r["proxy_cpu_ns"]), int(r["h2load_reqs"])) for r in rr])
    m[t]["bcpu"] = med([per100k(float(r["backend_cpu_ns"]), int(r["h2load_reqs"])) for r in rr])
    m[t]["norm"] = med([float(r["proxy_cpu_ns"]) / float(r["backend_cpu_ns"])
                        if float(r["backend_cpu_ns"]) > 0 else float("nan") for r in rr])
    m[t]["newc"] = med([int(r["new_backend_conns"]) * 100000 / int(r["h2load_reqs"]) for r in rr])
    mm = [float(r["bytes_per_conn"]) for r in mem if r["target"] == t]
    m[t]["mem"] = med(mm) if mm else float("nan")

def fmt(v, spec):
    return "-" if isinstance(v, float) and math.isnan(v) else format(v, spec)

def table(title, cols):
    print(f"\n{title}")
    print(f"  {'target':<17}" + "".join(f"{h:>{w}}" for h, _, _, w in cols))
    for t in targets:
        print(f"  {t:<17}" + "".join(f"{fmt(m[t][k], spec):>{w}}" for _, k, spec, w in cols))

print(f"meridian bench, medians over {max([int(r['round']) for r in runs] or [0])} rounds "
      f"(raw data: {res})")
table("Throughput and latency (wrk, fixed duration)",
      [("req/s", "rps", ".0f", 12), ("p50 ms", "p50", ".3f", 10), ("p99 ms", "p99", ".3f", 10),
       ("errors", "errors", "d", 8)])
table("CPU for a fixed request count (h2load --h1); direct: the backend serving alone",
      [("req/s", "h2rps", ".0f", 12), ("proxy CPU s/100k", "cpu", ".3f", 18),
       ("backend CPU s/100k", "bcpu", ".3f", 20), ("norm", "norm", ".3f", 8),
       ("failed", "failed", "d", 8)])
table("Upstream keep-alive: new backend connections per 100k requests (h2load run)",
      [("new conns/100k", "newc", ".1f", 16)])
table("Memory per idle keep-alive connection (fresh process each round)",
      [("bytes/conn", "mem", ".0f", 12)])

if "meridian" in targets:
    others = [t for t in ("haproxy", "nginx", "meridian-prev") if t in targets]
    if others:
        print("\nmeridian relative to the others (< 1 means meridian uses less)")
        for o in others:
            ratio = lambda k: m["meridian"][k] / m[o][k] if m[o][k] else float("nan")
            print(f"  vs {o:<8} norm {fmt(ratio('norm'), '.2f')}   CPU/100k {fmt(ratio('cpu'), '.2f')}"
                  f"   memory/conn {fmt(ratio('mem'), '.2f')}   req/s {fmt(ratio('rps'), '.2f')} (> 1 faster)")
else:
    print("\n(meridian was not measured: no ratios)")

# the request-path cost of a capped region and of the fleet (SPEC 8)
pairs = [(a, b) for a, b in (("meridian-cap", "meridian"), ("meridian-cluster", "meridian-cap"),
                             ("meridian-cluster", "meridian")) if a in targets and b in targets]
if pairs:
    print("\ncaps and the fleet: ratios of medians (1.03 = 3% more); paired: the median of the"
          " rounds' own norm ratios")
    def norms(t):
        return {r["round"]: float(r["proxy_cpu_ns"]) / float(r["backend_cpu_ns"])
                for r in runs if r["target"] == t and float(r["backend_cpu_ns"]) > 0}
    for a, b in pairs:
        ratio = lambda k: m[a][k] / m[b][k] if m[b][k] else float("nan")
        na, nb = norms(a), norms(b)
        paired = med([na[k] / nb[k] for k in na if k in nb and nb[k] > 0])
        print(f"  {a:<16} / {b:<12} norm {fmt(ratio('norm'), '.3f')} (paired {fmt(paired, '.3f')})"
              f"   CPU/100k {fmt(ratio('cpu'), '.3f')}   memory/conn {fmt(ratio('mem'), '.3f')}"
              f"   req/s {fmt(ratio('rps'), '.3f')}")
if "meridian-cluster" in targets:
    cr = rows("cluster.csv")
    valid = sum(int(r["valid"]) for r in cr)
    rate = lambda k: med([int(r[k]) / (int(r["ns"]) / 1e9) for r in cr])
    spent = sum(int(r["spent_tokens"]) for r in cr)
    reqs = sum(int(r["h2load_ok"]) for r in runs if r["target"] == "meridian-cluster")
    print(f"\nmeridian-cluster during wrk + h2load: shared mode in {valid}/{len(cr)} runs"
          f"{'' if valid == len(cr) else ' (NOT VALID)'}, syncs/s {fmt(rate('syncs'), '.1f')}, "
          f"failed syncs {sum(int(r['sync_failures']) for r in cr)}, leased tokens spent {spent} "
          f"(h2load alone: {reqs} requests), redis evalsha/s {fmt(rate('evalsha'), '.1f')} "
          f"(eval/s {fmt(rate('eval'), '.1f')}, all commands/s {fmt(rate('redis_commands'), '.1f')})")
EOF
log "bench: results in $RESULTS"
