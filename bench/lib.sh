# bench/lib.sh: helpers shared by bench/run.sh and bench/run_h2.sh (sourced).
# Expects PY (Debian's python3), PIDS (array of started pids) and, for
# backend_conns, BACKEND_PORT.

# free_ports N: N distinct free ports on 127.0.0.1
free_ports() {
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# wait_port PORT PID: until PORT accepts connections (1 when PID died or 5 s passed)
wait_port() {
    local port=$1 pid=$2 i
    for (( i = 0; i < 100; i++ )); do
        kill -0 "$pid" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# cpu_ns PID...: ns of CPU used by all threads of the processes (schedstat field 1)
cpu_ns() {
    local pid total=0 f v
    for pid in "$@"; do
        for f in /proc/"$pid"/task/*/schedstat; do
            read -r v _ < "$f" 2>/dev/null || continue
            total=$(( total + v ))
        done
    done
    echo "$total"
}

# backend_conns: TCP connections the bench backend has accepted so far
backend_conns() {
    curl -s --max-time 5 "http://127.0.0.1:$BACKEND_PORT/stats" |
        "$PY" -c 'import json, sys; print(json.load(sys.stdin)["connections"])'
}

# forget_pids PID...: drop them from PIDS (they were stopped)
forget_pids() {
    local pid keep=()
    for pid in "${PIDS[@]}"; do
        [[ " $* " == *" $pid "* ]] || keep+=("$pid")
    done
    PIDS=("${keep[@]}")
}

# stop_pids PID...: TERM, wait up to 5 s, then KILL; forgets the pids
stop_pids() {
    local pid i
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for (( i = 0; i < 100; i++ )); do
            kill -0 "$pid" 2>/dev/null || break
            # a child of ours stays a zombie until waited for
            [[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
            sleep 0.05
        done
        if (( i == 100 )); then kill -KILL "$pid" 2>/dev/null || true; fi
        wait "$pid" 2>/dev/null || true
    done
    forget_pids "$@"
}

# run_load OUT CMD...: runs a load generator in the background and waits for
# it, so that INT/TERM reach the trap at once and the generator is killed too
run_load() {
    local out=$1 pid
    shift
    "$@" > "$out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || true
    forget_pids "$pid"
}
