#!/usr/bin/env bash
# Start three demo upstreams and meridian on conf/demo.yaml (used by `make run`).
# Ctrl-C stops everything this script started.
set -euo pipefail
MERIDIAN=${1:-./meridian}
BACKEND=${2:-./build/mrd-backend}
cd "$(dirname "$0")/.."
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
"$BACKEND" -q -n us-east-1-a -l 127.0.0.1:9001 & pids+=($!)
"$BACKEND" -q -n eu-west-1-a -l 127.0.0.1:9002 & pids+=($!)
"$BACKEND" -q -n ap-northeast-1-a -l 127.0.0.1:9003 & pids+=($!)
sleep 0.3
cat <<MSG
meridian demo: proxy on http://127.0.0.1:8080, admin on http://127.0.0.1:9901
  curl -si http://127.0.0.1:8080/hello
  curl -s  http://127.0.0.1:8080/echo
  curl -s  http://127.0.0.1:9901/healthz
Ctrl-C to stop.
MSG
"$MERIDIAN" -c conf/demo.yaml & pids+=($!)
wait "${pids[-1]}"
