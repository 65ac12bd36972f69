#!/bin/sh
# bench/route.sh: microbenchmark of one routing decision (geo lookup, scoring,
# cap walk with real token takes) on the pure core, for 5 and 100 regions.
# Builds bench/route_bench.c against build/libmrdcore.a (make builds it) and
# prints ns per decision (median of RUNS runs of DECISIONS decisions each).
#
#   ./bench/route.sh                       # defaults: 7 runs x 200000 decisions, 5 and 100 regions
#   RUNS=11 DECISIONS=500000 REGIONS=5,20,100,500 ./bench/route.sh
#   GEO_DB=data/geoip/GeoLite2-City.mmdb ./bench/route.sh   # the real one (make geoip)
# Default database: the bundled test database (make geodb, tests/geo/places.tsv).
set -eu

cd "$(dirname "$0")/.."
RUNS=${RUNS:-7}
DECISIONS=${DECISIONS:-200000}
REGIONS=${REGIONS:-5,100}
GEO_DB=${GEO_DB:-build/geo/meridian-test-city.mmdb}
CC=${CC:-gcc}
OUT=build/route_bench

make --no-print-directory build/libmrdcore.a >/dev/null
[ "$GEO_DB" != build/geo/meridian-test-city.mmdb ] || make --no-print-directory geodb >/dev/null
# shellcheck disable=SC2046
$CC -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Wno-unused-parameter -Iinclude \
    $(pkg-config --cflags yaml-0.1 libmaxminddb 2>/dev/null) \
    -o "$OUT" bench/route_bench.c build/libmrdcore.a \
    $(pkg-config --libs yaml-0.1 libmaxminddb 2>/dev/null || echo -lyaml -lmaxminddb) -lm

DB_ARG=""
if [ -r "$GEO_DB" ]; then
    DB_ARG="-d $(cd "$(dirname "$GEO_DB")" && pwd)/$(basename "$GEO_DB")"
else
    echo "route.sh: $GEO_DB not readable: running without a MaxMind database" >&2
fi
PIN=""
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -gt 1 ]; then
    PIN="taskset -c 1"
fi
echo "host: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)${PIN:+, pinned to CPU 1}"
# shellcheck disable=SC2086
exec $PIN "$OUT" $DB_ARG -n "$DECISIONS" -r "$RUNS" -R "$REGIONS"
