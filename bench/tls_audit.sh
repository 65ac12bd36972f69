#!/usr/bin/env bash
# bench/tls_audit.sh: run testssl.sh (Debian package testssl.sh) against a
# meridian TLS listener, once with the default TLS 1.3 and once with
# min_version "1.2", and fail when a weak protocol or cipher is offered.
# Not part of `make test` (a full scan takes ~30 s per listener).
#   ./bench/tls_audit.sh            # needs ./meridian and build/mrd-backend (make)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v testssl >/dev/null || { echo "tls_audit: install testssl.sh (apt-get install testssl.sh)"; exit 2; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/k.pem" -out "$work/c.pem" \
    -days 2 -subj /CN=audit.test -addext subjectAltName=DNS:audit.test 2>/dev/null
bport=$(port)
./build/mrd-backend -q -n audit -l "127.0.0.1:$bport" >/dev/null & pids+=($!)
fail=0
for min in 1.3 1.2; do
    p=$(port)
    cat > "$work/m.yaml" <<YAML
workers: 1
listeners:
  - address: "127.0.0.1:$p"
    tls: {certificates: [{cert: $work/c.pem, key: $work/k.pem}], min_version: "$min"}
    protocols: [h2, http1]
regions:
  - {name: r, location: {latitude: 0, longitude: 0}, upstreams: [{address: "127.0.0.1:$bport"}]}
YAML
    ./meridian -c "$work/m.yaml" 2>"$work/m.log" & mp=$!; pids+=($mp)
    sleep 0.5
    testssl --quiet --color 0 --warnings off -p -s -f -U --ip 127.0.0.1 "127.0.0.1:$p" > "$work/out.txt" 2>&1 || true
    echo "== min_version $min"
    grep -E "SSLv|TLS 1|NULL|Anonymous|Export|LOW:|Triple DES|Obsolete CBC|Strong encryption|VULNERABLE" "$work/out.txt" || true
    # weak: any old protocol or weak cipher class offered, or a vulnerability
    if grep -E "(SSLv2|SSLv3|TLS 1 |TLS 1\.1) +offered|(NULL|Anonymous|Export|LOW|Triple DES|Obsolete CBC).* offered|VULNERABLE" \
        "$work/out.txt" | grep -v "not offered" >/dev/null; then
        echo "tls_audit: weak protocol or cipher offered with min_version $min"; fail=1
    fi
    kill "$mp"; wait "$mp" 2>/dev/null || true
done
[ $fail = 0 ] && echo "tls_audit: no weak protocol or cipher offered"
exit $fail
