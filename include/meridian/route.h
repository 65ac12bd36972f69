/*
 * route.h: one routing decision for a client address, shared by the proxy
 * (which takes tokens) and the admin explainer /v1/route (which only peeks),
 * so that the explanation cannot drift from the behaviour. It gathers the
 * live snapshot (health, admitted rate, TTFB EWMA) and calls the pure
 * scoring and cap walk of score.c.
 */
#ifndef MERIDIAN_ROUTE_H
#define MERIDIAN_ROUTE_H

#include "meridian/addr.h"
#include "meridian/clock.h"
#include "meridian/gen.h"
#include "meridian/geo.h"
#include "meridian/score.h"

struct mrd_route_result {
    struct mrd_location loc;
    int block_status;            /* geo_block matched: the status to answer; else 0 */
    int region;                  /* admitted region, -1 when none */
    enum mrd_route_reason reason;
    struct mrd_route_out out;    /* winner, residency rule, per-region factors */
};

/* per-caller scratch, grown to the generation's region count */
struct mrd_route_scratch {
    struct mrd_region_snap *snap;
    struct mrd_route_factors *factors;
    size_t cap;
    struct mrd_geo_cache *geo_cache; /* per caller; reset when the generation or its database changes */
    uint64_t geo_cache_gen;
    uint64_t geo_cache_epoch; /* mrd_geo_epoch() the cache was filled under */
};

void mrd_route_scratch_dispose(struct mrd_route_scratch *s);

/* Route `client` on generation g. take: 1 admits (takes a token, counts the
 * rate), 0 explains only. res->out.regions points into scratch. */
void mrd_route_client(struct mrd_gen *g, const struct mrd_ip *client, int take, struct mrd_route_scratch *scratch,
                      struct mrd_route_result *res);

/* Factors of every region for a client of unknown location (g = 0.5), for
 * the meridian_region_score metric. */
void mrd_route_factors_unknown(struct mrd_gen *g, struct mrd_route_scratch *scratch, struct mrd_route_out *out);

/* Take a token from region i for a retry walking its fallback chain. */
int mrd_route_take(struct mrd_gen *g, size_t i);

/* The admitted rate of region state st that the health factor uses: the
 * fleet's when a cluster sync reported it (SPEC 8), else this instance's. */
double mrd_route_region_rate(struct mrd_region_state *st, uint64_t now_ms);

#endif
