#!/usr/bin/env bash
# bench/run_upstream.sh: the hop to a remote region. Compares meridian with
# HAProxy and nginx proxying to one nginx origin
#   tls: HTTP/1.1 clients -> proxy -> TLS 1.3 upstream (verified against a CA
#        made here, SNI, pooled keep-alive connections)
#   h2c: HTTP/2 clients (h2c, prior knowledge) -> proxy -> HTTP/2 upstream in
#        clear (streams multiplexed on pooled connections)
# Same method as bench/run.sh: load generator on CPU 0, proxy and origin on
# CPU 1, rounds interleaved between targets, CPU from schedstat over a fixed
# request count (h2load), norm = proxy CPU / origin CPU, medians. The origin
# is nginx answering by itself (origin-nginx.conf.in); how to read the
# results: bench/README.md, section "Upstreams across networks".
# Run from the repo root. Settings (environment):
#   MODES="tls h2c" ROUNDS=5 REQS=100000 CONNS=50 STREAMS=10
#   TARGETS="meridian haproxy nginx" MERIDIAN_BIN=./meridian KEEP_WORK=0
#   meridian-prev (a target): MERIDIAN_PREV_BIN on meridian's config, to
#   compare two builds in the same run
set -euo pipefail

MODES=${MODES:-"tls h2c"}
ROUNDS=${ROUNDS:-5}
REQS=${REQS:-100000}
CONNS=${CONNS:-50}
STREAMS=${STREAMS:-10}
TARGETS=${TARGETS:-"meridian haproxy nginx"}
MERIDIAN_BIN=${MERIDIAN_BIN:-./meridian}
MERIDIAN_PREV_BIN=${MERIDIAN_PREV_BIN:-}
HAPROXY_BIN=${HAPROXY_BIN:-haproxy}
NGINX_BIN=${NGINX_BIN:-nginx}
KEEP_WORK=${KEEP_WORK:-0}
PY=/usr/bin/python3

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$BENCH_DIR/results/upstream-$STAMP
WORK=$(mktemp -d /tmp/meridian-bench-up.XXXXXX)
PIDS=()

log() { printf '%s\n' "$*" >&2; }
die() { log "bench-upstream: $*"; exit 1; }

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $KEEP_WORK == 1 ]] || (( rc != 0 && rc != 130 && rc != 143 )); then
        log "bench-upstream: work files (configs, certificates, logs) kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for t in h2load curl taskset openssl "$NGINX_BIN"; do
    command -v "$t" >/dev/null || die "$t not found (make deps-bench installs the tools)"
done
[[ -x $MERIDIAN_BIN ]] && MERIDIAN_BIN=$(realpath "$MERIDIAN_BIN")
[[ -n $MERIDIAN_PREV_BIN && -x $MERIDIAN_PREV_BIN ]] && MERIDIAN_PREV_BIN=$(realpath "$MERIDIAN_PREV_BIN")
if (( $(nproc) >= 2 )); then
    PIN_LOAD=(taskset -c 0)
    PIN_SERVER=(taskset -c 1)
else
    PIN_LOAD=()
    PIN_SERVER=()
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
MAXCONN=$(( (NOFILE - 200) / 2 ))

# --- a CA and the origin's certificate for "localhost" ------------------------------

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=meridian bench CA" \
    -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$WORK/origin.key" -out "$WORK/origin.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$WORK/san.ext"
openssl x509 -req -in "$WORK/origin.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial \
    -days 2 -extfile "$WORK/san.ext" -out "$WORK/origin.crt" 2>/dev/null

# --- per mode: what differs --------------------------------------------------------

set_mode() {
    MODE=$1
    case $MODE in
    tls)
        LISTEN_OPTS="ssl"
        DOWN_PROTO="http1"
        REGION_OPTS="    upstream_tls: {ca: \"$WORK/ca.crt\", server_name: localhost, min_version: \"1.3\"}"
        HAPROXY_BIND_OPTS=""
        HAPROXY_SERVER_OPTS="ssl ca-file $WORK/ca.crt sni str(localhost) verifyhost localhost alpn http/1.1 ssl-min-ver TLSv1.3"
        NGINX_LISTEN_OPTS=""
        NGINX_LOCATION="            proxy_pass https://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $WORK/ca.crt;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
            proxy_ssl_protocols TLSv1.3;"
        LOAD=(h2load --h1 -n "$REQS" -c "$CONNS")
        ;;
    h2c)
        LISTEN_OPTS="http2"
        DOWN_PROTO="h2c"
        REGION_OPTS="    upstream_protocol: h2c"
        HAPROXY_BIND_OPTS="proto h2"
        HAPROXY_SERVER_OPTS="proto h2"
        NGINX_LISTEN_OPTS="http2"
        NGINX_LOCATION="            grpc_pass grpc://origin;"
        LOAD=(h2load -n "$REQS" -c "$CONNS" -m "$STREAMS")
        ;;
    *) die "unknown mode $MODE (tls or h2c)" ;;
    esac
}

render() {    # render TEMPLATE OUT PROXY_PORT
    local f
    f=$(cat "$1")
    f=${f//@PROXY_PORT@/$3}
    f=${f//@BACKEND_PORT@/$ORIGIN_PORT}
    f=${f//@STATUS_PORT@/$STATUS_PORT}
    f=${f//@MAXCONN@/$MAXCONN}
    f=${f//@NOFILE@/$NOFILE}
    f=${f//@WORK@/$WORK}
    f=${f//@MODE@/$MODE}
    f=${f//@LISTEN_OPTS@/$LISTEN_OPTS}
    f=${f//@DOWN_PROTO@/$DOWN_PROTO}
    f=${f//@REGION_OPTS@/$REGION_OPTS}
    f=${f//@HAPROXY_BIND_OPTS@/$HAPROXY_BIND_OPTS}
    f=${f//@HAPROXY_SERVER_OPTS@/$HAPROXY_SERVER_OPTS}
    f=${f//@NGINX_LISTEN_OPTS@/$NGINX_LISTEN_OPTS}
    f=${f//@NGINX_LOCATION@/$NGINX_LOCATION}
    printf '%s\n' "$f" > "$2"
}

start_origin() {
    mkdir -p "$WORK/origin"
    read -r ORIGIN_PORT STATUS_PORT <<< "$(free_ports 2)"
    render "$BENCH_DIR/origin-nginx.conf.in" "$WORK/origin/nginx.conf" 0
    "${PIN_SERVER[@]}" "$NGINX_BIN" -e "$WORK/origin/stderr.log" -p "$WORK/origin" -c "$WORK/origin/nginx.conf" \
        > "$WORK/origin.log" 2>&1 &
    ORIGIN_MASTER=$!
    PIDS+=("$ORIGIN_MASTER")
    wait_port "$STATUS_PORT" "$ORIGIN_MASTER" || die "origin nginx did not start: $(cat "$WORK/origin.log" "$WORK/origin-error.log" 2>/dev/null)"
    ORIGIN_PID=$(pgrep -P "$ORIGIN_MASTER" | head -1)
    [[ -n $ORIGIN_PID ]] || die "origin nginx has no worker"
    PIDS+=("$ORIGIN_PID")
}

origin_accepts() {    # connections the origin has accepted so far
    curl -s --max-time 5 "http://127.0.0.1:$STATUS_PORT/" | awk 'NR == 3 { print $1 }'
}

check_reaches_origin() {    # check_reaches_origin PORT
    local opt=(--http1.1)
    [[ $MODE == h2c ]] && opt=(--http2-prior-knowledge)
    curl -s -o /dev/null -D - --max-time 5 "${opt[@]}" "http://127.0.0.1:$1/" | tr -d '\r' |
        awk -F': ' 'tolower($1) == "x-backend" { print $2 }' | grep -qx bench
}

# start_proxy TARGET PORT: sets STARTED_PIDS, or returns 1 with a message
start_proxy() {
    local target=$1 port=$2 pid
    STARTED_PIDS=""
    case $target in
    meridian | meridian-prev)
        local bin=$MERIDIAN_BIN
        [[ $target == meridian-prev ]] && bin=$MERIDIAN_PREV_BIN
        [[ -n $bin && -x $bin ]] || { log "bench-upstream: skipping $target: ${bin:-MERIDIAN_PREV_BIN} not found"; return 1; }
        render "$BENCH_DIR/meridian-upstream.yaml.in" "$WORK/$target-$MODE.yaml" "$port"
        "${PIN_SERVER[@]}" "$bin" -c "$WORK/$target-$MODE.yaml" > "$WORK/$target-$MODE.log" 2>&1 &
        pid=$!
        ;;
    haproxy)
        render "$BENCH_DIR/haproxy-upstream.cfg.in" "$WORK/haproxy-$MODE.cfg" "$port"
        "${PIN_SERVER[@]}" "$HAPROXY_BIN" -db -f "$WORK/haproxy-$MODE.cfg" > "$WORK/haproxy-$MODE.log" 2>&1 &
        pid=$!
        ;;
    nginx)
        mkdir -p "$WORK/nginx-$MODE"
        local saved=$WORK
        WORK=$WORK/nginx-$MODE render "$BENCH_DIR/nginx-upstream.conf.in" "$saved/nginx-$MODE/nginx.conf" "$port"
        "${PIN_SERVER[@]}" "$NGINX_BIN" -e "$WORK/nginx-$MODE/stderr.log" -p "$WORK/nginx-$MODE" \
            -c "$WORK/nginx-$MODE/nginx.conf" > "$WORK/nginx-$MODE.log" 2>&1 &
        pid=$!
        ;;
    *) die "unknown target $target" ;;
    esac
    PIDS+=("$pid")
    STARTED_PIDS=$pid
    if ! wait_port "$port" "$pid"; then
        log "bench-upstream: skipping $target ($MODE): it did not start; its output:"
        sed 's/^/    /' "$WORK/$target-$MODE.log" >&2 || true
        stop_pids "$pid"
        return 1
    fi
    if [[ $target == nginx ]]; then
        local w
        for w in $(pgrep -P "$pid" || true); do
            PIDS+=("$w")
            STARTED_PIDS="$STARTED_PIDS $w"
        done
    fi
    if ! check_reaches_origin "$port"; then
        log "bench-upstream: skipping $target ($MODE): a request through it did not reach the origin"
        stop_pids $STARTED_PIDS
        return 1
    fi
}

parse_h2load() {
    "$PY" -c '
import re, sys
t = sys.stdin.read()
rps = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", t)
ok = re.search(r"(\d+) succeeded", t)
st = re.search(r"status codes: (\d+) 2xx", t)
print(rps.group(1) if rps else "nan", ok.group(1) if ok else 0, st.group(1) if st else 0)'
}

run_target() {   # run_target ROUND TARGET
    local round=$1 t=$2 url="http://127.0.0.1:${PORT[$2]}/" pids=${TPIDS[$2]} c0 c1 p0 p1 b0 b1
    c0=$(origin_accepts)
    p0=$(cpu_ns $pids); b0=$(cpu_ns "$ORIGIN_PID")
    run_load "$WORK/h2load.out" "${PIN_LOAD[@]}" "${LOAD[@]}" "$url"
    p1=$(cpu_ns $pids); b1=$(cpu_ns "$ORIGIN_PID")
    c1=$(origin_accepts)
    read -r rps ok ok2xx <<< "$(parse_h2load < "$WORK/h2load.out")"
    cat "$WORK/h2load.out" >> "$RESULTS/h2load-$MODE-$t.log"
    # the stub_status request itself is one accepted connection
    local newc=$(( c1 - c0 - 1 ))
    echo "$MODE,$round,$t,$rps,$ok,$ok2xx,$REQS,$(( p1 - p0 )),$(( b1 - b0 )),$newc" >> "$RESULTS/runs.csv"
    printf '  %s round %d %-9s %9s req/s ok %s (2xx %s)/%s proxy %6.3f s origin %6.3f s norm %.3f, %d new origin conns\n' \
        "$MODE" "$round" "$t" "$rps" "$ok" "$ok2xx" "$REQS" "$(awk "BEGIN { print ($p1 - $p0) / 1e9 }")" \
        "$(awk "BEGIN { print ($b1 - $b0) / 1e9 }")" "$(awk "BEGIN { print ($b1 > $b0) ? ($p1 - $p0) / ($b1 - $b0) : 0 }")" \
        "$newc" >&2
}

# --- main ------------------------------------------------------------------------

mkdir -p "$RESULTS"
echo "mode,round,target,rps,ok,ok_2xx,reqs,proxy_cpu_ns,origin_cpu_ns,new_origin_conns" > "$RESULTS/runs.csv"
declare -A PORT=() TPIDS=()
for mode in $MODES; do
    set_mode "$mode"
    start_origin
    log "bench-upstream: $MODE: origin nginx worker pid $ORIGIN_PID on 127.0.0.1:$ORIGIN_PORT; load on CPU 0, servers on CPU 1"
    ACTIVE=()
    read -r -a ports <<< "$(free_ports 4)"
    i=0
    for t in $TARGETS; do
        PORT[$t]=${ports[$i]}
        i=$(( i + 1 ))
        if start_proxy "$t" "${PORT[$t]}"; then
            TPIDS[$t]=$STARTED_PIDS
            ACTIVE+=("$t")
        fi
    done
    (( ${#ACTIVE[@]} > 0 )) || die "$MODE: no target started"
    log "bench-upstream: $MODE: warm-up (10,000 requests per target, not recorded)"
    for t in "${ACTIVE[@]}"; do
        if [[ $MODE == h2c ]]; then
            run_load /dev/null "${PIN_LOAD[@]}" h2load -n 10000 -c "$CONNS" -m "$STREAMS" "http://127.0.0.1:${PORT[$t]}/"
        else
            run_load /dev/null "${PIN_LOAD[@]}" h2load --h1 -n 10000 -c "$CONNS" "http://127.0.0.1:${PORT[$t]}/"
        fi
    done
    for (( r = 1; r <= ROUNDS; r++ )); do
        for t in "${ACTIVE[@]}"; do
            run_target "$r" "$t"
        done
    done
    for t in "${ACTIVE[@]}"; do stop_pids ${TPIDS[$t]}; done
    stop_pids "$ORIGIN_MASTER" "$ORIGIN_PID"
done

"$PY" - "$RESULTS" <<'EOF' | tee "$RESULTS/summary.txt"
import csv, statistics, sys
res = sys.argv[1]
rows = list(csv.DictReader(open(f"{res}/runs.csv")))
modes = list(dict.fromkeys(r["mode"] for r in rows))
print(f"meridian upstream bench, medians over {max(int(r['round']) for r in rows)} rounds (raw data: {res})")
for mode in modes:
    rr = [r for r in rows if r["mode"] == mode]
    targets = list(dict.fromkeys(r["target"] for r in rr))
    title = {"tls": "HTTP/1.1 clients -> TLS 1.3 upstream (keep-alive)",
             "h2c": "HTTP/2 clients (h2c) -> HTTP/2 upstream in clear (h2c)"}.get(mode, mode)
    print(f"\n{title}")
    print(f"  {'target':<10}{'req/s':>10}{'proxy CPU s/100k':>18}{'origin CPU s/100k':>19}{'norm':>8}"
          f"{'failed':>8}{'new origin conns/100k':>23}")
    m = {}
    for t in targets:
        x = [r for r in rr if r["target"] == t]
        per = lambda k: statistics.median(float(r[k]) / 1e9 * 100000 / int(r["reqs"]) for r in x)
        norm = statistics.median(float(r["proxy_cpu_ns"]) / float(r["origin_cpu_ns"]) for r in x
                                 if float(r["origin_cpu_ns"]) > 0)
        failed = sum(int(r["reqs"]) - int(r["ok_2xx"]) for r in x)
        newc = statistics.median(int(r["new_origin_conns"]) * 100000 / int(r["reqs"]) for r in x)
        m[t] = norm
        print(f"  {t:<10}{statistics.median(float(r['rps']) for r in x):>10.0f}{per('proxy_cpu_ns'):>18.3f}"
              f"{per('origin_cpu_ns'):>19.3f}{norm:>8.3f}{failed:>8d}{newc:>23.1f}")
    if "meridian" in m:
        for o in ("haproxy", "nginx", "meridian-prev"):
            if o in m:
                print(f"  meridian / {o}: norm {m['meridian'] / m[o]:.2f} (< 1: meridian uses less CPU per origin CPU)")
EOF
log "bench-upstream: results in $RESULTS"
