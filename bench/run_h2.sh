#!/usr/bin/env bash
# bench/run_h2.sh: compare meridian with HAProxy and nginx terminating TLS 1.3
# and HTTP/2, each proxying to the same fast HTTP/1.1 backend over pooled
# keep-alive connections. Same method as bench/run.sh (one backend, load
# generator on CPU 0, proxy + backend on CPU 1, interleaved rounds, CPU from
# schedstat, medians); what it measures and how to read it: bench/README.md,
# section "HTTP/2 over TLS". Run from the repo root. Settings (environment):
#   ROUNDS=5 REQS=100000 CONNS=50 STREAMS=10
#   HANDSHAKES=1500 HANDSHAKE_RATE=250 HS_MODES="tls-h1 tls-h2 plain-h1"
#   IDLE_CONNS=4000 TARGETS="meridian haproxy nginx" PHASES="throughput handshakes memory"
#   TLS13_CIPHERS=TLS_AES_128_GCM_SHA256 (what the clients offer, so that every
#   proxy runs the same cipher)
#   MERIDIAN_BIN=./meridian BACKEND_BIN=./build/mrd-backend KEEP_WORK=0
set -euo pipefail

ROUNDS=${ROUNDS:-5}
REQS=${REQS:-100000}
CONNS=${CONNS:-50}
STREAMS=${STREAMS:-10}
HANDSHAKES=${HANDSHAKES:-1500}
HANDSHAKE_RATE=${HANDSHAKE_RATE:-250}
HS_MODES=${HS_MODES:-"tls-h1 tls-h2 plain-h1"}
IDLE_CONNS=${IDLE_CONNS:-4000}
TARGETS=${TARGETS:-"meridian haproxy nginx"}
TLS13_CIPHERS=${TLS13_CIPHERS:-TLS_AES_128_GCM_SHA256}
MERIDIAN_BIN=${MERIDIAN_BIN:-./meridian}
BACKEND_BIN=${BACKEND_BIN:-./build/mrd-backend}
HAPROXY_BIN=${HAPROXY_BIN:-haproxy}
NGINX_BIN=${NGINX_BIN:-nginx}
KEEP_WORK=${KEEP_WORK:-0}
PHASES=${PHASES:-"throughput handshakes memory"}
LOAD_WARN=${LOAD_WARN:-1.5}
PY=/usr/bin/python3

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$BENCH_DIR/results/h2-$STAMP
WORK=$(mktemp -d /tmp/meridian-bench-h2.XXXXXX)
PIDS=()          # every process this script started; killed on exit

log() { printf '%s\n' "$*" >&2; }
die() { log "bench-h2: $*"; exit 1; }

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
        log "bench-h2: work files (configs, certificate, logs) kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- preflight ------------------------------------------------------------------

for t in h2load curl taskset openssl; do
    command -v "$t" >/dev/null || die "$t not found (make deps-bench installs the tools)"
done
"$PY" -c 'import h2' 2>/dev/null || die "python3-h2 missing (apt-get install python3-h2)"
[[ -x $BACKEND_BIN ]] || die "backend $BACKEND_BIN missing (make build/mrd-backend)"
BACKEND_BIN=$(realpath "$BACKEND_BIN")
[[ -x $MERIDIAN_BIN ]] && MERIDIAN_BIN=$(realpath "$MERIDIAN_BIN")
(( HANDSHAKE_RATE >= 10 )) || die "HANDSHAKE_RATE must be at least 10 (connections/s)"
(( HANDSHAKES >= HANDSHAKE_RATE / 10 )) || die "HANDSHAKES must be at least HANDSHAKE_RATE / 10"

if (( $(nproc) >= 2 )); then
    PIN_LOAD=(taskset -c 0)
    PIN_SERVER=(taskset -c 1)
else
    log "bench-h2: only one CPU: running without CPU pinning, results are noisy"
    PIN_LOAD=()
    PIN_SERVER=()
fi

# file descriptors: as bench/run.sh. HAProxy needs two per connection.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
MAXCONN=$(( (NOFILE - 200) / 2 ))
if (( IDLE_CONNS > MAXCONN - 100 )); then
    log "bench-h2: open-file limit is $NOFILE: IDLE_CONNS lowered from $IDLE_CONNS to $(( MAXCONN - 100 ))"
    IDLE_CONNS=$(( MAXCONN - 100 ))
fi

# the one certificate all three proxies serve: self-signed P-256 ECDSA
CERT=$WORK/bench.crt
KEY=$WORK/bench.key
PEM=$WORK/bench.pem    # HAProxy wants certificate and key in one file
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$KEY" -out "$CERT" 2> "$WORK/openssl.err" || die "openssl: $(cat "$WORK/openssl.err")"
cat "$CERT" "$KEY" > "$PEM"

render() {    # render TEMPLATE OUT PROXY_PORT PLAIN_PORT
    sed -e "s|@PROXY_PORT@|$3|g" -e "s|@PLAIN_PORT@|$4|g" -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" \
        -e "s|@MAXCONN@|$MAXCONN|g" -e "s|@NOFILE@|$NOFILE|g" -e "s|@WORK@|$WORK|g" \
        -e "s|@CERT@|$CERT|g" -e "s|@KEY@|$KEY|g" -e "s|@PEM@|$PEM|g" "$1" > "$2"
}

# busy ns of all CPUs together (/proc/stat: everything but idle and iowait)
CLK_TCK=$(getconf CLK_TCK)
busy_ns() {
    local _cpu user nice sys idle iowait irq softirq steal _rest
    read -r _cpu user nice sys idle iowait irq softirq steal _rest < /proc/stat
    echo $(( (user + nice + sys + irq + softirq + steal) * (1000000000 / CLK_TCK) ))
}

# ns of CPU used by this shell's waited-for children so far (bash `times`,
# second line "0m1.234s 0m0.567s"); sets CHILD_NS. Runs in this shell: `times`
# in a $(...) subshell would report the subshell's own children.
children_ns() {
    local line f total=0 re='^([0-9]+)m([0-9]+)\.([0-9]+)s$'
    times > "$WORK/times"
    line=$(sed -n 2p "$WORK/times")
    for f in $line; do
        [[ $f =~ $re ]] || continue
        local frac=${BASH_REMATCH[3]}000000000
        total=$(( total + BASH_REMATCH[1] * 60000000000 + BASH_REMATCH[2] * 1000000000 + 10#${frac:0:9} ))
    done
    CHILD_NS=$total
}

load1() { cut -d' ' -f1 /proc/loadavg; }

now_ns() { date +%s%N; }

# --- processes ------------------------------------------------------------------

declare -A PORT=() PLAIN=() TPIDS=()

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

# start_proxy TARGET TLS_PORT PLAIN_PORT TAG: starts a fresh proxy; sets
# STARTED_PIDS (the processes whose CPU and memory count) or returns 1 with a
# message.
start_proxy() {
    local target=$1 port=$2 plain=$3 tag=$4 pid
    STARTED_PIDS=""
    case $target in
    meridian)
        if [[ ! -x $MERIDIAN_BIN ]]; then
            log "bench-h2: skipping $target: $MERIDIAN_BIN not found (build it with make)"
            return 1
        fi
        render "$BENCH_DIR/meridian-h2.yaml.in" "$WORK/$target-$tag.yaml" "$port" "$plain"
        "${PIN_SERVER[@]}" "$MERIDIAN_BIN" -c "$WORK/$target-$tag.yaml" \
            > "$WORK/$target-$tag.log" 2>&1 &
        pid=$!
        ;;
    haproxy)
        render "$BENCH_DIR/haproxy-h2.cfg.in" "$WORK/haproxy-$tag.cfg" "$port" "$plain"
        "${PIN_SERVER[@]}" "$HAPROXY_BIN" -db -f "$WORK/haproxy-$tag.cfg" > "$WORK/haproxy-$tag.log" 2>&1 &
        pid=$!
        ;;
    nginx)
        mkdir -p "$WORK/nginx-$tag"
        local saved=$WORK
        WORK=$WORK/nginx-$tag render "$BENCH_DIR/nginx-h2.conf.in" "$saved/nginx-$tag/nginx.conf" \
            "$port" "$plain"
        "${PIN_SERVER[@]}" "$NGINX_BIN" -e "$WORK/nginx-$tag/stderr.log" -p "$WORK/nginx-$tag" \
            -c "$WORK/nginx-$tag/nginx.conf" > "$WORK/nginx-$tag.log" 2>&1 &
        pid=$!
        ;;
    *)
        die "unknown target $target"
        ;;
    esac
    PIDS+=("$pid")
    STARTED_PIDS=$pid
    if ! wait_port "$port" "$pid" || ! wait_port "$plain" "$pid"; then
        log "bench-h2: skipping $target: it did not start listening on 127.0.0.1:$port and :$plain; its output:"
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
    # one request over TLS + h2 and one over plaintext HTTP/1 must reach the backend
    local got
    got=$(curl -sk --http2 -o /dev/null -D - --max-time 5 -w 'proto=%{http_version}\n' \
        "https://127.0.0.1:$port/" | tr -d '\r' |
        awk -F': ' 'tolower($1) == "x-backend" { b = $2 } /^proto=/ { p = $0 } END { print b, p }')
    if [[ $got != "bench proto=2" ]]; then
        log "bench-h2: skipping $target: a TLS h2 request through it did not reach the backend over h2 ($got)"
        stop_pids $STARTED_PIDS
        return 1
    fi
    got=$(curl -s -o /dev/null -D - --max-time 5 "http://127.0.0.1:$plain/" | tr -d '\r' |
        awk -F': ' 'tolower($1) == "x-backend" { print $2 }')
    if [[ $got != bench ]]; then
        log "bench-h2: skipping $target: a plaintext HTTP/1 request through it did not reach the backend"
        stop_pids $STARTED_PIDS
        return 1
    fi
    return 0
}

# is the target still alive? (a crash mid-run must not go unnoticed)
alive() {
    local p
    for p in ${TPIDS[$1]}; do
        kill -0 "$p" 2>/dev/null || return 1
    done
}

# --- measurements ---------------------------------------------------------------

# h2load output -> "rps succeeded protocol cipher"
parse_h2load() {
    "$PY" -c '
import re, sys
t = sys.stdin.read()
rps = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", t)
ok = re.search(r"(\d+) succeeded", t)
proto = re.search(r"Application protocol: (\S+)", t)
cipher = re.search(r"Cipher: (\S+)", t)
print(rps.group(1) if rps else "nan", ok.group(1) if ok else 0,
      proto.group(1) if proto else "-", cipher.group(1) if cipher else "-")'
}

# measure OUT CMD...: runs the load generator CMD and sets the deltas M_PROXY,
# M_BACKEND (CPU ns), M_WALL (ns), M_OTHER (CPU ns on the machine used by
# neither the target, the backend nor the load generator: other load)
measure() {
    local out=$1 pids=$2 p0 p1 b0 b1 s0 s1 c0 c1 t0 t1
    shift 2
    p0=$(cpu_ns $pids); b0=$(cpu_ns "$BACKEND_PID"); s0=$(busy_ns); children_ns; c0=$CHILD_NS
    t0=$(now_ns)
    run_load "$out" "$@"
    t1=$(now_ns)
    children_ns; c1=$CHILD_NS; s1=$(busy_ns); p1=$(cpu_ns $pids); b1=$(cpu_ns "$BACKEND_PID")
    M_PROXY=$(( p1 - p0 )); M_BACKEND=$(( b1 - b0 )); M_WALL=$(( t1 - t0 ))
    M_OTHER=$(( (s1 - s0) - M_PROXY - M_BACKEND - (c1 - c0) ))
    (( M_OTHER > 0 )) || M_OTHER=0
}

pct() { awk "BEGIN { printf \"%.0f\", 100 * $1 / $2 }"; }

run_throughput() {   # run_throughput ROUND TARGET LOAD1
    local round=$1 t=$2 ld=$3 url="https://127.0.0.1:${PORT[$2]}/" c0 c1
    # unrecorded, as bench/run.sh's wrk run before its h2load: refills the
    # upstream pool (HAProxy purges idle server connections within seconds)
    run_load /dev/null "${PIN_LOAD[@]}" h2load --tls13-ciphers="$TLS13_CIPHERS" -n $(( REQS / 10 )) \
        -c "$CONNS" -m "$STREAMS" "$url"
    c0=$(backend_conns)
    measure "$WORK/h2load.out" "${TPIDS[$t]}" "${PIN_LOAD[@]}" h2load --tls13-ciphers="$TLS13_CIPHERS" \
        -n "$REQS" -c "$CONNS" -m "$STREAMS" "$url"
    c1=$(backend_conns)
    read -r rps ok proto cipher <<< "$(parse_h2load < "$WORK/h2load.out")"
    { echo "### round $round"; cat "$WORK/h2load.out"; } >> "$RESULTS/h2load-h2-$t.log"
    local newc=$(( c1 - c0 - 1 ))    # minus the /stats request's own connection
    local other
    other=$(pct "$M_OTHER" "$M_WALL")
    echo "$round,$t,$rps,$ok,$REQS,$M_PROXY,$M_BACKEND,$newc,$proto,$cipher,$M_WALL,$other,$ld" \
        >> "$RESULTS/h2.csv"
    printf '  round %d %-9s h2 %9s req/s ok %s/%s proxy %6.3f s backend %6.3f s, %d new backend conns, %s %s, other load %s%% of a CPU\n' \
        "$round" "$t" "$rps" "$ok" "$REQS" "$(awk "BEGIN { print $M_PROXY / 1e9 }")" \
        "$(awk "BEGIN { print $M_BACKEND / 1e9 }")" "$newc" "$proto" "$cipher" "$other" >&2
    if [[ $proto != h2 ]]; then log "bench-h2: $t: h2load did not negotiate h2 (got $proto)"; fi
    alive "$t" || log "bench-h2: $t is no longer running after round $round (see $WORK)"
}

# new connections at a fixed rate, one request each: HANDSHAKE_RATE per second
# as HANDSHAKE_RATE/10 every 100 ms
run_handshakes() {   # run_handshakes ROUND TARGET MODE LOAD1
    local round=$1 t=$2 mode=$3 ld=$4 url args=()
    case $mode in
    tls-h1) url="https://127.0.0.1:${PORT[$t]}/"; args=(--h1 --tls13-ciphers="$TLS13_CIPHERS") ;;
    tls-h2) url="https://127.0.0.1:${PORT[$t]}/"; args=(--tls13-ciphers="$TLS13_CIPHERS") ;;
    plain-h1) url="http://127.0.0.1:${PLAIN[$t]}/"; args=(--h1) ;;
    *) die "unknown handshake mode $mode" ;;
    esac
    measure "$WORK/hs.out" "${TPIDS[$t]}" "${PIN_LOAD[@]}" h2load "${args[@]}" \
        -n "$HANDSHAKES" -c "$HANDSHAKES" -r $(( HANDSHAKE_RATE / 10 )) --rate-period 100ms "$url"
    read -r rps ok proto cipher <<< "$(parse_h2load < "$WORK/hs.out")"
    { echo "### round $round"; cat "$WORK/hs.out"; } >> "$RESULTS/h2load-$mode-$t.log"
    local other us
    other=$(pct "$M_OTHER" "$M_WALL")
    us=$(awk "BEGIN { printf \"%.1f\", ($ok > 0) ? $M_PROXY / 1000 / $ok : \"nan\" }")
    echo "$round,$t,$mode,$HANDSHAKES,$ok,$M_PROXY,$M_BACKEND,$proto,$cipher,$M_WALL,$other,$ld" \
        >> "$RESULTS/handshakes.csv"
    printf '  round %d %-9s %-8s %d conns at %d/s ok %s: proxy %6.3f s = %s us/conn, %s %s, other load %s%% of a CPU\n' \
        "$round" "$t" "$mode" "$HANDSHAKES" "$HANDSHAKE_RATE" "$ok" "$(awk "BEGIN { print $M_PROXY / 1e9 }")" \
        "$us" "$proto" "$cipher" "$other" >&2
    alive "$t" || log "bench-h2: $t is no longer running after round $round (see $WORK)"
}

memory_target() {   # memory_target ROUND TARGET: fresh process, IDLE_CONNS idle TLS h2 connections
    local round=$1 t=$2 port plain out pid_args=() p
    read -r port plain <<< "$(free_ports 2)"
    if ! start_proxy "$t" "$port" "$plain" "mem$round"; then
        return 0
    fi
    for p in $STARTED_PIDS; do pid_args+=(--pid "$p"); done
    if out=$("${PIN_LOAD[@]}" "$PY" "$BENCH_DIR/idle_tls_h2.py" --port "$port" --count "$IDLE_CONNS" \
            "${pid_args[@]}" 2> "$WORK/idle-$t-$round.err"); then
        :
    else
        log "bench-h2: $t: idle TLS h2 connection test had problems: $(tail -5 "$WORK/idle-$t-$round.err")"
    fi
    stop_pids $STARTED_PIDS
    if [[ -z $out ]]; then return 0; fi
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
    printf '  round %d %-9s RSS %7s -> %7s KB over %s idle TLS h2 connections: %s bytes/conn\n' \
        "$round" "$t" "$before" "$after" "$conns" "$bpc" >&2
}

check_load() {   # prints the 1-minute load average, warns above LOAD_WARN
    local l
    l=$(load1)
    if awk "BEGIN { exit !($l > $LOAD_WARN) }"; then
        log "bench-h2: note: load average $l > $LOAD_WARN before $1 (after round 1 this bench's own load counts too: see 'other load' for load from other processes)"
    fi
    echo "$l"
}

# --- main -----------------------------------------------------------------------

mkdir -p "$RESULTS"
echo "round,target,h2load_rps,h2load_ok,h2load_reqs,proxy_cpu_ns,backend_cpu_ns,new_backend_conns,protocol,cipher,wall_ns,other_load_pct,load1" \
    > "$RESULTS/h2.csv"
echo "round,target,mode,conns,ok,proxy_cpu_ns,backend_cpu_ns,protocol,cipher,wall_ns,other_load_pct,load1" \
    > "$RESULTS/handshakes.csv"
echo "round,target,rss_before_kb,rss_after_kb,idle_conns,bytes_per_conn" > "$RESULTS/memory.csv"

log "bench-h2: load average before start: $(cat /proc/loadavg)"
start_backend
log "bench-h2: backend pid $BACKEND_PID on 127.0.0.1:$BACKEND_PORT; load on CPU 0, servers on CPU 1"
log "bench-h2: ROUNDS=$ROUNDS REQS=$REQS CONNS=$CONNS STREAMS=$STREAMS HANDSHAKES=$HANDSHAKES HANDSHAKE_RATE=$HANDSHAKE_RATE/s HS_MODES=\"$HS_MODES\" IDLE_CONNS=$IDLE_CONNS TLS13_CIPHERS=$TLS13_CIPHERS nofile=$NOFILE"

ACTIVE=()
read -r -a ports <<< "$(free_ports 6)"
i=0
for t in $TARGETS; do
    PORT[$t]=${ports[$i]}
    PLAIN[$t]=${ports[$(( i + 1 ))]}
    i=$(( i + 2 ))
    if start_proxy "$t" "${PORT[$t]}" "${PLAIN[$t]}" main; then
        TPIDS[$t]=$STARTED_PIDS
        ACTIVE+=("$t")
        log "bench-h2: $t pid(s) ${TPIDS[$t]} on 127.0.0.1:${PORT[$t]} (TLS) and :${PLAIN[$t]} (plaintext)"
    fi
done
(( ${#ACTIVE[@]} > 0 )) || die "no target started"

has_phase() { [[ " $PHASES " == *" $1 "* ]]; }

has_phase throughput || has_phase handshakes && log "bench-h2: warm-up (not recorded)"
for t in "${ACTIVE[@]}"; do
    has_phase throughput || has_phase handshakes || break
    run_load /dev/null "${PIN_LOAD[@]}" h2load --tls13-ciphers="$TLS13_CIPHERS" -n $(( REQS / 5 )) \
        -c "$CONNS" -m "$STREAMS" "https://127.0.0.1:${PORT[$t]}/"
    run_load /dev/null "${PIN_LOAD[@]}" h2load --h1 -n 100 -c 100 "https://127.0.0.1:${PORT[$t]}/"
done

for (( r = 1; r <= ROUNDS; r++ )); do
    has_phase throughput || has_phase handshakes || break
    ld=$(check_load "round $r")
    log "bench-h2: round $r/$ROUNDS (load average $ld)"
    for t in "${ACTIVE[@]}"; do
        if has_phase throughput; then
            run_throughput "$r" "$t" "$ld"
        fi
        for mode in $HS_MODES; do
            has_phase handshakes || break
            run_handshakes "$r" "$t" "$mode" "$ld"
        done
    done
done

for t in "${ACTIVE[@]}"; do
    stop_pids ${TPIDS[$t]}
done
for (( r = 1; r <= ROUNDS; r++ )); do
    has_phase memory || break
    ld=$(check_load "memory round $r")
    log "bench-h2: idle TLS h2 connection memory round $r/$ROUNDS ($IDLE_CONNS connections, load average $ld)"
    for t in "${ACTIVE[@]}"; do
        memory_target "$r" "$t"
    done
done

# --- report ---------------------------------------------------------------------

"$PY" - "$RESULTS" "${ACTIVE[*]}" "$HS_MODES" "$HANDSHAKE_RATE" <<'EOF' | tee "$RESULTS/summary.txt"
import csv, math, statistics, sys
res, targets, modes, rate = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4]

def rows(name):
    with open(f"{res}/{name}") as f:
        return list(csv.DictReader(f))

def med(vals):
    vals = [v for v in vals if not math.isnan(v)]
    return statistics.median(vals) if vals else float("nan")

h2, hs, mem = rows("h2.csv"), rows("handshakes.csv"), rows("memory.csv")
m = {t: {} for t in targets}
for t in targets:
    rr = [r for r in h2 if r["target"] == t]
    f = lambda k: [float(r[k]) for r in rr]
    per100k = lambda ns, n: ns / 1e9 * 100000 / n if n else float("nan")
    m[t]["rps"] = med(f("h2load_rps"))
    m[t]["failed"] = sum(int(r["h2load_reqs"]) - int(r["h2load_ok"]) for r in rr)
    m[t]["cpu"] = med([per100k(float(r["proxy_cpu_ns"]), int(r["h2load_reqs"])) for r in rr])
    m[t]["bcpu"] = med([per100k(float(r["backend_cpu_ns"]), int(r["h2load_reqs"])) for r in rr])
    m[t]["norm"] = med([float(r["proxy_cpu_ns"]) / float(r["backend_cpu_ns"])
                        if float(r["backend_cpu_ns"]) > 0 else float("nan") for r in rr])
    m[t]["newc"] = med([int(r["new_backend_conns"]) * 100000 / int(r["h2load_reqs"]) for r in rr])
    m[t]["other"] = max([float(r["other_load_pct"]) for r in rr] or [float("nan")])
    m[t]["proto"] = "/".join(sorted({r["protocol"] for r in rr}))
    for mode in modes:
        hr = [r for r in hs if r["target"] == t and r["mode"] == mode]
        m[t][f"us-{mode}"] = med([float(r["proxy_cpu_ns"]) / 1000 / int(r["ok"])
                                  if int(r["ok"]) else float("nan") for r in hr])
        m[t][f"bus-{mode}"] = med([float(r["backend_cpu_ns"]) / 1000 / int(r["ok"])
                                   if int(r["ok"]) else float("nan") for r in hr])
        m[t][f"fail-{mode}"] = sum(int(r["conns"]) - int(r["ok"]) for r in hr)
        m[t][f"other-{mode}"] = max([float(r["other_load_pct"]) for r in hr] or [float("nan")])
    if "tls-h1" in modes and "plain-h1" in modes:
        m[t]["tlscost"] = m[t]["us-tls-h1"] - m[t]["us-plain-h1"]
    mm = [float(r["bytes_per_conn"]) for r in mem if r["target"] == t]
    m[t]["mem"] = med(mm) if mm else float("nan")

def fmt(v, spec):
    if isinstance(v, str):
        return v
    return "-" if isinstance(v, float) and math.isnan(v) else format(v, spec)

def table(title, cols):
    print(f"\n{title}")
    print(f"  {'target':<10}" + "".join(f"{h:>{w}}" for h, _, _, w in cols))
    for t in targets:
        print(f"  {t:<10}" + "".join(f"{fmt(m[t].get(k, float('nan')), spec):>{w}}" for _, k, spec, w in cols))

ciphers = sorted({r["cipher"] for r in h2 + hs if r["cipher"] != "-"})
print(f"meridian HTTP/2 + TLS bench, medians over {max([int(r['round']) for r in h2] or [0])} rounds "
      f"(raw data: {res}); TLS cipher(s): {', '.join(ciphers) or '-'}")
table("HTTP/2 over TLS 1.3, fixed request count (h2load -c CONNS -m STREAMS)",
      [("req/s", "rps", ".0f", 10), ("proxy CPU s/100k", "cpu", ".3f", 18),
       ("backend CPU s/100k", "bcpu", ".3f", 20), ("norm", "norm", ".3f", 8),
       ("failed", "failed", "d", 8), ("new be conns/100k", "newc", ".1f", 19), ("ALPN", "proto", "s", 6),
       ("max other%", "other", ".0f", 12)])
cols = []
for mode in modes:
    cols.append((f"{mode} us", f"us-{mode}", ".1f", 14))
if "tls-h1" in modes and "plain-h1" in modes:
    cols.append(("TLS extra us", "tlscost", ".1f", 14))
for mode in modes:
    cols.append((f"fail {mode}", f"fail-{mode}", "d", 15))
table(f"Proxy CPU us per new connection with one request, {rate} connections/s "
      "(full TLS 1.3 handshake, no resumption)", cols)
table("Backend CPU us per connection in the same runs (one pooled request each; for reference)",
      [(f"{mode} us", f"bus-{mode}", ".1f", 14) for mode in modes])
table("Memory per idle TLS 1.3 h2 connection after one request (fresh process each round)",
      [("bytes/conn", "mem", ".0f", 12)])

if "meridian" in targets:
    others = [t for t in ("haproxy", "nginx") if t in targets]
    if others:
        print("\nmeridian relative to the others (< 1 means meridian uses less)")
        for o in others:
            ratio = lambda k: m["meridian"].get(k, float("nan")) / m[o][k] if m[o].get(k) else float("nan")
            hsr = "   ".join(f"CPU/conn {mode} {fmt(ratio('us-' + mode), '.2f')}" for mode in modes)
            print(f"  vs {o:<8} h2 norm {fmt(ratio('norm'), '.2f')}   h2 CPU/100k {fmt(ratio('cpu'), '.2f')}"
                  f"   {hsr}   memory/conn {fmt(ratio('mem'), '.2f')}"
                  f"   h2 req/s {fmt(ratio('rps'), '.2f')} (> 1 faster)")
else:
    print("\n(meridian was not measured: no ratios)")
EOF
log "bench-h2: results in $RESULTS"
