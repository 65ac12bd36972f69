/*
 * route.c: the live side of a routing decision (see route.h): locate the
 * client, check geo_block, read each region's health, admitted rate and
 * latency, then score.c decides and walks the caps.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "meridian/common.h"
#include "meridian/route.h"

void
mrd_route_scratch_dispose(struct mrd_route_scratch *s)
{
    free(s->snap);
    free(s->factors);
    free(s->geo_cache);
    memset(s, 0, sizeof(*s));
}

/* a token of a capped region: the fleet's lease while Redis is up (SPEC 8),
 * else the local bucket (at the mode's share); the demand is counted in
 * every fleet mode so that the lease after a failure fits the load */
static int
cap_take(struct mrd_region_state *st, uint64_t now)
{
    switch (atomic_load_explicit(&st->fleet_mode, memory_order_relaxed)) {
    case MRD_FLEET_OFF:
        return mrd_bucket_take(&st->bucket, now);
    case MRD_FLEET_SHARED:
        return mrd_lease_take(&st->lease);
    default:
        atomic_fetch_add_explicit(&st->lease.demand, 1, memory_order_relaxed);
        return mrd_bucket_take(&st->bucket, now);
    }
}

static int
cap_peek(struct mrd_region_state *st, uint64_t now)
{
    if (atomic_load_explicit(&st->fleet_mode, memory_order_relaxed) == MRD_FLEET_SHARED)
        return mrd_lease_tokens(&st->lease) > 0;
    return mrd_bucket_peek(&st->bucket, now);
}

/* the admitted rate of the health factor: the fleet's (SPEC 8) when a sync
 * reported it, with this instance's part brought up to now */
static double
region_rate(struct mrd_region_state *st, uint64_t now)
{
    double mine = mrd_rate_per_s(&st->rate, now);

    if (atomic_load_explicit(&st->fleet_mode, memory_order_relaxed) != MRD_FLEET_SHARED)
        return mine;
    uint64_t fleet = atomic_load_explicit(&st->fleet_rate_milli, memory_order_relaxed);
    uint64_t self = atomic_load_explicit(&st->fleet_self_milli, memory_order_relaxed);
    return (double)(fleet > self ? fleet - self : 0) / 1000.0 + mine;
}

double
mrd_route_region_rate(struct mrd_region_state *st, uint64_t now_ms)
{
    return region_rate(st, now_ms);
}

struct take_ctx {
    struct mrd_gen *g;
    uint64_t now_ms;
    int take;
};

static int
take_cb(void *arg, size_t i)
{
    struct take_ctx *t = arg;
    struct mrd_region_state *st = t->g->regions[i].st;

    if (!t->take)
        return cap_peek(st, t->now_ms);
    return cap_take(st, t->now_ms);
}

int
mrd_route_take(struct mrd_gen *g, size_t i)
{
    struct mrd_region *r = &g->regions[i];
    uint64_t now = mrd_now_ms();

    if (r->conf->capacity_rps && !cap_take(r->st, now))
        return 0;
    mrd_rate_add(&r->st->rate, now);
    return 1;
}

static int
blocked(const struct mrd_config *c, const char *country)
{
    for (size_t i = 0; i < c->policies.n_block_countries; i++)
        if (country[0] && memcmp(c->policies.block_countries[i], country, 2) == 0)
            return 1;
    return 0;
}

/* live per-region data for the scoring (sc has room for every region) */
static void
snapshot(struct mrd_gen *g, struct mrd_route_scratch *sc, uint64_t now)
{
    for (size_t i = 0; i < g->n_regions; i++) {
        struct mrd_region *r = &g->regions[i];
        struct mrd_region_snap *s = &sc->snap[i];
        uint64_t ewma = atomic_load_explicit(&r->st->ttfb_ewma_us, memory_order_relaxed);
        unsigned healthy = 0;
        for (size_t j = 0; j < r->n_ups; j++)
            healthy += atomic_load_explicit(&r->ups[j]->healthy, memory_order_relaxed) != 0;
        s->healthy = healthy;
        s->total = (unsigned)r->n_ups;
        s->rate_per_s = region_rate(r->st, now);
        s->has_latency = ewma != 0;
        s->latency_ms = (double)ewma / 1000.0;
    }
}

static void
scratch_fit(struct mrd_route_scratch *sc, size_t n)
{
    if (sc->cap < n) {
        sc->snap = mrd_xrealloc(sc->snap, n * sizeof(*sc->snap));
        sc->factors = mrd_xrealloc(sc->factors, n * sizeof(*sc->factors));
        sc->cap = n;
    }
}

void
mrd_route_factors_unknown(struct mrd_gen *g, struct mrd_route_scratch *sc, struct mrd_route_out *out)
{
    struct mrd_route_in in = {.table = g->route};

    scratch_fit(sc, g->n_regions);
    snapshot(g, sc, mrd_now_ms());
    in.snap = sc->snap;
    out->regions = sc->factors;
    mrd_route_decide(&in, out);
}

void
mrd_route_client(struct mrd_gen *g, const struct mrd_ip *client, int take, struct mrd_route_scratch *sc,
                 struct mrd_route_result *res)
{
    size_t n = g->n_regions;
    uint64_t now = mrd_now_ms();
    struct mrd_route_in in;
    struct take_ctx tc = {g, now, take};
    uint64_t epoch;

    scratch_fit(sc, n);
    /* calloc: fresh zero pages, so RSS grows only with the slots used */
    if (sc->geo_cache == NULL)
        sc->geo_cache = mrd_xcalloc(1, sizeof(*sc->geo_cache));
    /* a new generation or a replaced database (SPEC 11): cached locations
     * are stale. The epoch is read before the lookup, so an answer from a
     * database swapped in meanwhile is only cached under the older epoch and
     * dropped at the next request. */
    epoch = mrd_geo_epoch(g->geo);
    if (sc->geo_cache_gen != g->id || sc->geo_cache_epoch != epoch) {
        if (sc->geo_cache->hits + sc->geo_cache->misses > 0)
            mrd_geo_cache_reset(sc->geo_cache);
        sc->geo_cache_gen = g->id;
        sc->geo_cache_epoch = epoch;
    }
    mrd_geo_locate_cached(g->geo, sc->geo_cache, client, &res->loc);
    res->region = -1;
    res->block_status = blocked(g->conf, res->loc.country) ? g->conf->policies.block_status : 0;
    snapshot(g, sc, now);
    in.table = g->route;
    in.snap = sc->snap;
    in.client.known = res->loc.known;
    in.client.latitude = res->loc.latitude;
    in.client.longitude = res->loc.longitude;
    memcpy(in.client.country, res->loc.country, 3);
    memcpy(in.client.continent, res->loc.continent, 3);
    res->out.regions = sc->factors;
    mrd_route_decide(&in, &res->out);
    res->reason = res->out.reason;
    if (res->block_status || res->out.winner < 0)
        return;
    res->region = mrd_route_admit(g->route, &res->out, take_cb, &tc, &res->reason);
    if (take && res->region >= 0)
        mrd_rate_add(&g->regions[res->region].st->rate, now);
}
