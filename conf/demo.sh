#!/usr/bin/env bash
# Start three demo upstreams and meridian on conf/demo.yaml (used by `make run`).
#   conf/demo.sh [MERIDIAN [BACKEND [GEO_DB]]]
# GEO_DB replaces the database line of conf/demo.yaml (`make run` passes the
# real GeoLite2-City when `make geoip` fetched it, else the bundled test
# database). DEMO_PORTS="PROXY ADMIN UP1 UP2 UP3" moves the five ports
# (default "8080 9901 9001 9002 9003"), e.g. for a test run beside another demo.
# Ctrl-C (or SIGTERM to this script's pid) stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
MERIDIAN=${1:-./meridian}
BACKEND=${2:-./build/mrd-backend}
GEO_DB=${3:-}
read -r P_PROXY P_ADMIN P_UP1 P_UP2 P_UP3 <<<"${DEMO_PORTS:-8080 9901 9001 9002 9003}"

if [ -z "$GEO_DB" ]; then
    GEO_DB=$(sed -n 's/^  database: *//p' conf/demo.yaml)
fi
case "$GEO_DB" in
    */GeoLite2-City.mmdb) which="the real GeoLite2-City ($GEO_DB; GeoLite2 data created by MaxMind, https://www.maxmind.com)" ;;
    *) which="the bundled test database ($GEO_DB, from tests/geo/places.tsv)" ;;
esac
if [ ! -r "$GEO_DB" ]; then
    echo "demo.sh: $GEO_DB is missing: run \`make geodb\` (or \`make run\`)" >&2
    exit 1
fi

pids=()
conf=$(mktemp "${TMPDIR:-/tmp}/meridian-demo.XXXXXX.yaml")
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -f "$conf"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
sed -e "s|^  database: .*|  database: \"$GEO_DB\"|" \
    -e "s|127\.0\.0\.1:8080|127.0.0.1:$P_PROXY|; s|127\.0\.0\.1:9901|127.0.0.1:$P_ADMIN|" \
    -e "s|127\.0\.0\.1:9001|127.0.0.1:$P_UP1|; s|127\.0\.0\.1:9002|127.0.0.1:$P_UP2|; s|127\.0\.0\.1:9003|127.0.0.1:$P_UP3|" \
    conf/demo.yaml >"$conf"

"$BACKEND" -q -n us-east-1-a -l "127.0.0.1:$P_UP1" & pids+=($!)
"$BACKEND" -q -n eu-west-1-a -l "127.0.0.1:$P_UP2" & pids+=($!)
"$BACKEND" -q -n ap-northeast-1-a -l "127.0.0.1:$P_UP3" & pids+=($!)
sleep 0.3
cat <<MSG
meridian demo: proxy on http://127.0.0.1:$P_PROXY, admin on http://127.0.0.1:$P_ADMIN
geo database: $which
  curl -si http://127.0.0.1:$P_PROXY/hello
  curl -s -H 'X-Forwarded-For: 81.2.69.142' http://127.0.0.1:$P_PROXY/ -D - -o /dev/null | grep X-Meridian-Region
  curl -s 'http://127.0.0.1:$P_ADMIN/v1/route?ip=202.12.27.33'
Ctrl-C to stop.
MSG
"$MERIDIAN" -c "$conf" & pids+=($!)
wait "${pids[-1]}"
