/*
 * score.h: the routing decision of SPEC 3.2-3.4. Eligibility (health,
 * residency), the four factors, the winner, and the walk down the winner's
 * fallback chain through the region caps. The proxy and the /v1/route
 * explainer call the same functions, so the explanation cannot drift from
 * the behaviour. Pure: no clock, no atomics, no I/O; bucket access goes
 * through a callback. Geo-blocking is the caller's check, before routing.
 */
#ifndef MERIDIAN_SCORE_H
#define MERIDIAN_SCORE_H

#include <stddef.h>
#include <stdint.h>

#include "meridian/config.h"

/* g = 1 - d / MRD_GEO_HALF_CIRCUMFERENCE_KM, d with MRD_EARTH_RADIUS_KM
 * (the same values as geo.h, which this header does not depend on) */
#ifndef MRD_EARTH_RADIUS_KM
#define MRD_EARTH_RADIUS_KM 6371.0088
#endif
#ifndef MRD_GEO_HALF_CIRCUMFERENCE_KM
#define MRD_GEO_HALF_CIRCUMFERENCE_KM 20015.1
#endif

/* per-region data that only depends on the configuration */
struct mrd_route_region {
    double x, y, z;        /* unit vector of the region's location */
    double cost;           /* the factor c = min over all regions of cost / this cost */
    uint64_t capacity_rps; /* 0 = uncapped (headroom 1, never takes a token) */
    int fallback_idx;      /* next region of the chain, -1 at its end */
};

/* a residency rule resolved against the table */
struct mrd_route_rule {
    uint16_t *continents; /* two-letter codes packed as c[0] << 8 | c[1], upper case */
    size_t n_continents;
    uint16_t *countries;
    size_t n_countries;
    uint64_t *regions; /* bitset over region indexes, n_words words */
};

/*
 * Everything static about routing, derived from one config: built once per
 * generation, read-only afterwards, so every worker may share it.
 * Owned by: the config generation (struct mrd_gen).
 */
struct mrd_route_table {
    size_t n_regions;
    struct mrd_route_region *regions;
    struct mrd_route_rule *rules; /* policies.residency, same order */
    size_t n_rules;
    size_t n_words; /* uint64_t words per region bitset */
    double w_geography, w_health, w_latency, w_cost; /* normalised */
    double latency_ceiling_ms;
};

/* Build from a validated config (fallback_idx and residency region_idx
 * resolved). Aborts on out-of-memory. Free with mrd_route_table_free. */
struct mrd_route_table *mrd_route_table_new(const struct mrd_config *c);

void mrd_route_table_free(struct mrd_route_table *t);

/* where the client is; codes "" when unknown (residency then cannot match) */
struct mrd_route_client {
    int known; /* 0: latitude/longitude unknown, g = 0.5 everywhere */
    double latitude, longitude;
    char country[3];   /* ISO 3166 alpha-2 */
    char continent[3]; /* two-letter continent code */
};

/* per-region state at the moment of the decision, filled by the caller */
struct mrd_region_snap {
    unsigned healthy, total; /* upstreams in rotation / configured */
    double rate_per_s;       /* admitted requests/s, sliding one-second window */
    int has_latency;         /* 0: no TTFB sample yet, l = 0.5 */
    double latency_ms;       /* EWMA of upstream time to first byte */
};

struct mrd_route_in {
    const struct mrd_route_table *table;
    struct mrd_route_client client;
    const struct mrd_region_snap *snap; /* table->n_regions entries, config order */
};

enum mrd_route_reason {
    MRD_ROUTE_SCORE = 0, /* admitted by the winner of the score */
    MRD_ROUTE_FALLBACK,  /* the winner had no token; admitted further down its chain */
    MRD_ROUTE_SHED,      /* the chain ran out of tokens: 503 + X-Meridian-Shed: capacity */
    MRD_ROUTE_NONE,      /* no eligible region at all: 503 */
};

/* "score", "fallback", "shed", "none" */
const char *mrd_route_reason_name(enum mrd_route_reason r);

/* one region's line of the explanation */
struct mrd_route_factors {
    double geography, health, latency, cost, score; /* computed for every region */
    int eligible;
    const char *why; /* static: "residency" (wins when both apply) | "unhealthy"; NULL when eligible */
};

/*
 * Scores closer than this to the best one are ties, and ties go to the region
 * listed first (SPEC 3.3, with a tolerance). 1e-3 of score is, at the default
 * weights, 2.5 ms of latency EWMA against a 500 ms ceiling (0.2 * 2.5 / 500),
 * 50 km of distance (0.4 * 50 / 20015.1) or 0.33% of a region's capacity
 * (0.3 * 0.0033): differences no operator routes by, and about the jitter of
 * latency EWMAs between requests, which would otherwise move clients of
 * unknown location (g = 0.5 everywhere) from one region to another.
 */
#define MRD_ROUTE_TIE_EPSILON 1e-3

struct mrd_route_out {
    int winner;                     /* first listed eligible region whose score is within
                                     * MRD_ROUTE_TIE_EPSILON of the best; -1 none */
    int tie;                        /* 1 when another eligible region was within the epsilon too */
    int rule;                       /* index of the residency rule that matched, -1 none */
    enum mrd_route_reason reason;   /* SCORE with a winner, NONE without; admit refines it */
    struct mrd_route_factors *regions; /* set by the caller: table->n_regions entries */
};

/*
 * Score every region for the client (SPEC 3.3) and pick the winner among the
 * eligible ones (3.2): the first listed whose score is at least the best
 * eligible score minus MRD_ROUTE_TIE_EPSILON (out->tie says whether another
 * one was too). A residency rule matches when the client's continent
 * is in its continents or its country in its countries; the first matching
 * rule applies. Region factors are filled for every region, eligible or not
 * (the cost factor takes its minimum over all regions).
 * out->regions must point to table->n_regions entries. Returns out->winner.
 */
int mrd_route_decide(const struct mrd_route_in *in, struct mrd_route_out *out);

/* 1 when region_idx admits one request (mrd_bucket_take for the proxy,
 * mrd_bucket_peek for the explainer, which must never take). Called only
 * for capped, eligible regions, at most once each on an acyclic chain. */
typedef int (*mrd_route_take_cb)(void *ctx, size_t region_idx);

/*
 * The cap walk (SPEC 3.4) after mrd_route_decide: the winner admits when it
 * is uncapped or take() succeeds (reason SCORE); otherwise the winner's
 * fallback chain is followed, regions that are not eligible (residency,
 * unhealthy) are skipped without calling take(), and the first one that
 * admits wins (FALLBACK). An exhausted chain (or more than n_regions steps,
 * a guard against cycles validation should have rejected) sheds: -1 and
 * SHED. No winner: -1 and NONE. Returns the admitting region's index.
 */
int mrd_route_admit(const struct mrd_route_table *t, const struct mrd_route_out *ro, mrd_route_take_cb take,
                    void *ctx, enum mrd_route_reason *reason);

/* May a client matched by residency rule `rule` (-1: none) be served by
 * `region`? Used by retries walking a fallback chain (SPEC 3.4: residency is
 * never crossed). */
int mrd_route_rule_allows(const struct mrd_route_table *t, int rule, size_t region);

#endif
