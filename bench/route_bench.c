/*
 * route_bench.c: cost of one routing decision (SPEC 3.1-3.4) on the pure
 * core, in ns, for a small and a large region table.
 *
 * One decision is what the proxy does per request in route.c, minus the
 * process-wide parts that are not routing (client rate limit, geo_block):
 *   mrd_geo_locate        geo.networks trie, else the MaxMind DB (mmap)
 *   snapshot              per region: admitted rate (mrd_rate_per_s), health
 *   mrd_route_decide      eligibility, residency, four factors, winner
 *   mrd_route_admit       the cap walk, taking a real token (mrd_bucket_take)
 *   mrd_rate_add          count the admission in the winner's sliding window
 * "core" leaves out the snapshot's rate reads and the rate add (a static
 * snapshot) and locates every client afresh; "full" is what route.c runs:
 * it includes them, reads CLOCK_MONOTONIC once per decision, and locates
 * through the per-worker cache (mrd_geo_locate_cached), which these 24
 * recurring clients hit after their first decision.
 *
 * The configuration is generated as YAML and goes through mrd_config_parse,
 * mrd_geo_new and mrd_route_table_new like meridian's own start-up. Regions
 * are spread over the globe, every region is capped (high enough that the
 * winner almost always has a token, so the walk is usually one take) and
 * chained to the next one; one residency rule (EU) is present; clients cycle
 * through network, database, IPv6 and miss addresses.
 *
 *   route_bench [-d GeoIP2-City-Test.mmdb] [-n DECISIONS] [-r RUNS] [-R REGIONS,...]
 *
 * Prints one line per table size: median, min and max over RUNS runs of ns
 * per decision, for "core" and "full", and of mrd_geo_locate alone.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "meridian/addr.h"
#include "meridian/config.h"
#include "meridian/geo.h"
#include "meridian/ratelimit.h"
#include "meridian/score.h"

static const char *CLIENTS[] = {
    /* geo.networks */
    "10.1.2.3", "10.2.200.1", "10.3.0.77", "192.168.5.5", "fd00:1::42",
    /* the bundled test database (tests/geo/places.tsv); misses there fall to default_location */
    "81.2.69.142", "2.125.160.216", "89.160.20.128", "216.160.83.58", "175.16.199.5", "67.43.156.1",
    "202.196.224.1", "149.101.100.1", "214.78.120.1", "2.3.3.1", "2001:218::1", "2001:2e0::1",
    "2001:480:10::1", "2a02:cf40::1", "2a02:e700::1", "2a02:d500::1",
    /* misses: default_location */
    "1.1.1.1", "8.8.8.8", "2001:db8::1",
};
#define N_CLIENTS (sizeof(CLIENTS) / sizeof(CLIENTS[0]))

struct bench {
    size_t n;
    struct mrd_config *conf;
    struct mrd_geo *geo;
    struct mrd_route_table *table;
    struct mrd_bucket *buckets;
    struct mrd_rate *rates;
    struct mrd_region_snap *snap;
    struct mrd_route_factors *factors;
    struct mrd_ip ips[N_CLIENTS];
    uint64_t now_ms;
    struct mrd_geo_cache *cache;
};

static int
take_cb(void *ctx, size_t i)
{
    struct bench *b = ctx;
    return mrd_bucket_take(&b->buckets[i], b->now_ms);
}

static uint64_t
mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* append to a growing string */
static void add(char **s, size_t *len, size_t *cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
add(char **s, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(*s + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (k < 0)
            abort();
        if ((size_t)k < *cap - *len) {
            *len += (size_t)k;
            return;
        }
        *cap = *cap * 2 + (size_t)k + 1;
        *s = realloc(*s, *cap);
        if (*s == NULL)
            abort();
    }
}

static char *
gen_yaml(size_t n, const char *db)
{
    size_t len = 0, cap = 4096;
    char *s = malloc(cap);

    if (s == NULL)
        abort();
    s[0] = '\0';
    add(&s, &len, &cap, "workers: 1\nlisteners: [{address: \"127.0.0.1:8080\"}]\ngeo:\n");
    if (db != NULL)
        add(&s, &len, &cap, "  database: \"%s\"\n", db);
    add(&s, &len, &cap,
        "  networks:\n"
        "    - {cidr: \"10.1.0.0/16\", country: DE, continent: EU, latitude: 50.11, longitude: 8.68}\n"
        "    - {cidr: \"10.2.0.0/16\", country: US, continent: NA, latitude: 40.71, longitude: -74.0}\n"
        "    - {cidr: \"10.3.0.0/16\", country: JP, continent: AS, latitude: 35.68, longitude: 139.69}\n"
        "    - {cidr: \"10.0.0.0/8\", country: BR, continent: SA, latitude: -23.55, longitude: -46.63}\n"
        "    - {cidr: \"192.168.0.0/16\", country: AU, continent: OC, latitude: -33.87, longitude: 151.21}\n"
        "    - {cidr: \"fd00::/8\", country: ZA, continent: AF, latitude: -26.2, longitude: 28.04}\n"
        "  default_location: {latitude: 38.9, longitude: -77.0}\n"
        "policies:\n  residency:\n    - {name: eu, match: {continents: [EU]}, regions: [");
    /* regions 0, 3, 6, ... serve EU clients */
    for (size_t i = 0; i < n; i += 3)
        add(&s, &len, &cap, "%sr%zu", i ? ", " : "", i);
    add(&s, &len, &cap, "]}\nregions:\n");
    for (size_t i = 0; i < n; i++) {
        /* a deterministic spread: latitudes -60..70, longitudes around the globe */
        double lat = -60.0 + fmod((double)i * 37.0, 130.0);
        double lon = -180.0 + fmod((double)i * 97.0 + 13.0, 360.0);
        add(&s, &len, &cap,
            "  - name: r%zu\n    location: {latitude: %.2f, longitude: %.2f}\n    cost: %.2f\n"
            "    capacity_rps: 100000000\n    capacity_burst: 1000000\n",
            i, lat, lon, 1.0 + (double)(i % 7) / 10.0);
        if (i + 1 < n)
            add(&s, &len, &cap, "    fallback: r%zu\n", i + 1);
        add(&s, &len, &cap, "    upstreams:\n      - {address: \"127.0.0.1:%zu\"}\n", 10000 + i);
    }
    return s;
}

static void
bench_init(struct bench *b, size_t n, const char *db)
{
    struct mrd_diag diag;
    const char *err = NULL;
    char *yaml = gen_yaml(n, db);

    memset(b, 0, sizeof(*b));
    b->n = n;
    mrd_diag_init(&diag);
    if (mrd_config_parse(yaml, strlen(yaml), "route_bench.yaml", &b->conf, &diag) != 0) {
        for (size_t i = 0; i < diag.n; i++)
            fprintf(stderr, "%s\n", diag.msgs[i]);
        exit(1);
    }
    mrd_diag_dispose(&diag);
    free(yaml);
    b->geo = mrd_geo_new(&b->conf->geo, &err);
    if (b->geo == NULL) {
        fprintf(stderr, "route_bench: %s\n", err);
        exit(1);
    }
    b->table = mrd_route_table_new(b->conf);
    b->buckets = calloc(n, sizeof(*b->buckets));
    b->rates = calloc(n, sizeof(*b->rates));
    b->snap = calloc(n, sizeof(*b->snap));
    b->factors = calloc(n, sizeof(*b->factors));
    b->cache = calloc(1, sizeof(*b->cache));
    if (!b->buckets || !b->rates || !b->snap || !b->factors)
        abort();
    b->now_ms = 1000000;
    for (size_t i = 0; i < n; i++) {
        const struct mrd_region_conf *rc = &b->conf->regions[i];
        mrd_bucket_init(&b->buckets[i], rc->capacity_rps * 1000, rc->capacity_burst, b->now_ms);
        mrd_rate_init(&b->rates[i]);
        b->snap[i].healthy = b->snap[i].total = (unsigned)rc->n_upstreams;
        b->snap[i].rate_per_s = 0;
        b->snap[i].has_latency = (i % 2) == 0; /* half the regions have a TTFB sample */
        b->snap[i].latency_ms = 20.0 + (double)(i % 13) * 10.0;
    }
    for (size_t i = 0; i < N_CLIENTS; i++) {
        if (mrd_ip_parse(CLIENTS[i], strlen(CLIENTS[i]), &b->ips[i]) != 0) {
            fprintf(stderr, "route_bench: bad client address %s\n", CLIENTS[i]);
            exit(1);
        }
    }
}

static void
bench_free(struct bench *b)
{
    mrd_route_table_free(b->table);
    mrd_geo_free(b->geo);
    mrd_config_free(b->conf);
    free(b->buckets);
    free(b->rates);
    free(b->snap);
    free(b->factors);
    free(b->cache);
}

static volatile long sink;

/* one decision; returns the admitted region (or -1) */
static inline int
decide(struct bench *b, size_t k, int full)
{
    struct mrd_location loc;
    struct mrd_route_in in;
    struct mrd_route_out out;
    enum mrd_route_reason reason;
    int region;

    if (full) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        (void)ts;
    }
    if (full)
        mrd_geo_locate_cached(b->geo, b->cache, &b->ips[k % N_CLIENTS], &loc);
    else
        mrd_geo_locate(b->geo, &b->ips[k % N_CLIENTS], &loc);
    if (full)
        for (size_t i = 0; i < b->n; i++)
            b->snap[i].rate_per_s = mrd_rate_per_s(&b->rates[i], b->now_ms);
    in.table = b->table;
    in.snap = b->snap;
    in.client.known = loc.known;
    in.client.latitude = loc.latitude;
    in.client.longitude = loc.longitude;
    memcpy(in.client.country, loc.country, 3);
    memcpy(in.client.continent, loc.continent, 3);
    out.regions = b->factors;
    mrd_route_decide(&in, &out);
    region = mrd_route_admit(b->table, &out, take_cb, b, &reason);
    if (full && region >= 0)
        mrd_rate_add(&b->rates[region], b->now_ms);
    return region;
}

/* ns per mrd_geo_locate alone, for reading the table */
static double
run_locate(struct bench *b, size_t iters)
{
    struct mrd_location loc;
    uint64_t t0 = mono_ns();
    long acc = 0;

    for (size_t k = 0; k < iters; k++) {
        mrd_geo_locate(b->geo, &b->ips[k % N_CLIENTS], &loc);
        acc += loc.source;
    }
    uint64_t t1 = mono_ns();
    sink = acc;
    return (double)(t1 - t0) / (double)iters;
}

/* ns per decision over `iters` decisions; the simulated clock advances 1 ms
 * every 1000 decisions (1e6 decisions/s, far below the 1e8/s caps) */
static double
run(struct bench *b, size_t iters, int full, size_t *admitted)
{
    uint64_t t0 = mono_ns();
    long acc = 0;
    size_t ok = 0;

    for (size_t k = 0; k < iters; k++) {
        if (k % 1000 == 0)
            b->now_ms++;
        int r = decide(b, k, full);
        acc += r;
        ok += r >= 0;
    }
    uint64_t t1 = mono_ns();
    sink = acc;
    *admitted = ok;
    return (double)(t1 - t0) / (double)iters;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
    const char *db = NULL;
    size_t iters = 200000, runs = 7;
    size_t sizes[16] = {5, 100}, n_sizes = 2;
    int opt;

    while ((opt = getopt(argc, argv, "d:n:r:R:h")) != -1) {
        switch (opt) {
        case 'd':
            db = optarg;
            break;
        case 'n':
            iters = strtoull(optarg, NULL, 10);
            break;
        case 'r':
            runs = strtoull(optarg, NULL, 10);
            break;
        case 'R': {
            char *p = optarg;
            n_sizes = 0;
            while (*p && n_sizes < 16) {
                sizes[n_sizes++] = strtoull(p, &p, 10);
                if (*p == ',')
                    p++;
            }
            break;
        }
        default:
            fprintf(stderr, "usage: %s [-d MMDB] [-n DECISIONS] [-r RUNS] [-R REGIONS,...]\n", argv[0]);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (iters == 0 || runs == 0 || runs > 101)
        return 2;

    printf("route decision cost: median (min..max) of %zu runs x %zu decisions, %zu client addresses%s\n", runs,
           iters, N_CLIENTS, db ? "" : " (no MaxMind DB: database addresses fall to default_location)");
    printf("%8s  %20s  %20s  %20s  %9s\n", "regions", "locate ns", "core ns/decision", "full ns/decision",
           "admitted");
    for (size_t s = 0; s < n_sizes; s++) {
        struct bench b;
        double core[101], full[101], loc[101];
        size_t adm = 0, adm_full = 0;

        bench_init(&b, sizes[s], db);
        run(&b, iters / 10 + 1, 0, &adm); /* warm-up */
        run(&b, iters / 10 + 1, 1, &adm);
        for (size_t r = 0; r < runs; r++) {
            loc[r] = run_locate(&b, iters);
            core[r] = run(&b, iters, 0, &adm);
            full[r] = run(&b, iters, 1, &adm_full);
        }
        qsort(core, runs, sizeof(double), cmp_double);
        qsort(full, runs, sizeof(double), cmp_double);
        qsort(loc, runs, sizeof(double), cmp_double);
        char c0[64], c1[64], c2[64];
        snprintf(c0, sizeof(c0), "%.0f (%.0f..%.0f)", loc[runs / 2], loc[0], loc[runs - 1]);
        snprintf(c1, sizeof(c1), "%.0f (%.0f..%.0f)", core[runs / 2], core[0], core[runs - 1]);
        snprintf(c2, sizeof(c2), "%.0f (%.0f..%.0f)", full[runs / 2], full[0], full[runs - 1]);
        printf("%8zu  %20s  %20s  %20s  %8.1f%%\n", sizes[s], c0, c1, c2, 100.0 * (double)adm_full / (double)iters);
        bench_free(&b);
    }
    return 0;
}
