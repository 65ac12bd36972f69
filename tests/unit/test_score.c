/* test_score.c: SPEC 3.2-3.4 over hand-built configs and snapshots: the four
 * factors against a worked example, eligibility, ties, and the cap walk. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "meridian/common.h"
#include "meridian/ratelimit.h"
#include "meridian/score.h"

#define MAX_REGIONS 128
#define EPS 1e-4

/* a config holding only what routing reads */
struct fixture {
    struct mrd_config c;
    struct mrd_region_conf r[MAX_REGIONS];
    struct mrd_residency_conf rules[4];
    char continents[4][4][3];
    char countries[4][4][3];
    int rule_regions[4][MAX_REGIONS];
    struct mrd_region_snap snap[MAX_REGIONS];
    struct mrd_route_factors f[MAX_REGIONS];
};

static struct fixture fx;

static void
fx_reset(void)
{
    memset(&fx, 0, sizeof(fx));
    fx.c.regions = fx.r;
    fx.c.policies.residency = fx.rules;
    fx.c.scoring.w_geography = 0.4;
    fx.c.scoring.w_health = 0.3;
    fx.c.scoring.w_latency = 0.2;
    fx.c.scoring.w_cost = 0.1;
    fx.c.scoring.latency_ceiling_ms = 500;
}

/* append a region, healthy (2/2), no latency sample, idle */
static size_t
fx_region(const char *name, double lat, double lon, double cost, uint64_t capacity_rps, int fallback_idx)
{
    size_t i = fx.c.n_regions++;

    fx.r[i].name = (char *)name;
    fx.r[i].latitude = lat;
    fx.r[i].longitude = lon;
    fx.r[i].cost = cost;
    fx.r[i].capacity_rps = capacity_rps;
    fx.r[i].capacity_burst = capacity_rps / 10;
    fx.r[i].fallback_idx = fallback_idx;
    fx.snap[i] = (struct mrd_region_snap){.healthy = 2, .total = 2};
    return i;
}

/* append a residency rule: continents and countries "" -terminated lists */
static void
fx_rule(const char *const *continents, const char *const *countries, const int *regions, size_t n_regions)
{
    size_t k = fx.c.policies.n_residency++;
    struct mrd_residency_conf *rule = &fx.rules[k];

    rule->continents = fx.continents[k];
    rule->countries = fx.countries[k];
    for (; continents && **continents; continents++)
        strcpy(fx.continents[k][rule->n_continents++], *continents);
    for (; countries && **countries; countries++)
        strcpy(fx.countries[k][rule->n_countries++], *countries);
    memcpy(fx.rule_regions[k], regions, n_regions * sizeof(*regions));
    rule->region_idx = fx.rule_regions[k];
    rule->n_regions = n_regions;
}

static struct mrd_route_client
client_at(double lat, double lon, const char *country, const char *continent)
{
    struct mrd_route_client c = {.known = 1, .latitude = lat, .longitude = lon};

    strcpy(c.country, country);
    strcpy(c.continent, continent);
    return c;
}

static const struct mrd_route_client LONDON = {1, 51.5142, -0.0931, "GB", "EU"};

/* decide for client over the fixture; returns the table (caller frees) */
static struct mrd_route_table *
decide(struct mrd_route_client client, struct mrd_route_out *out)
{
    struct mrd_route_table *t = mrd_route_table_new(&fx.c);
    struct mrd_route_in in = {t, client, fx.snap};

    out->regions = fx.f;
    mrd_route_decide(&in, out);
    return t;
}

/* the textbook haversine, independent of score.c's chord form */
static double
haversine_km(double lat1, double lon1, double lat2, double lon2)
{
    double r = 3.14159265358979323846 / 180.0;
    double dp = (lat2 - lat1) * r, dl = (lon2 - lon1) * r;
    double a = sin(dp / 2) * sin(dp / 2) + cos(lat1 * r) * cos(lat2 * r) * sin(dl / 2) * sin(dl / 2);

    return 2 * 6371.0088 * asin(sqrt(a));
}

/* ------------------------------------------------------------------------ */
/* factors                                                                  */

/*
 * Worked example. Client in London (51.5142, -0.0931), default weights
 * {0.4, 0.3, 0.2, 0.1}, latency ceiling 500 ms.
 *
 *   region          location         cost  state
 *   us-east-1       38.95, -77.45    1.0   1 of 2 upstreams healthy, uncapped
 *   eu-west-1       53.35,  -6.26    1.25  2/2 healthy, cap 1000 rps, rate 500/s
 *   ap-northeast-1  35.68, 139.69    1.5   1/1 healthy, uncapped, TTFB EWMA 100 ms
 *
 * Geography, haversine with R = 6371.0088 km, phi1 = 0.899092 rad:
 *   a = sin^2(dphi/2) + cos(phi1) cos(phi2) sin^2(dlambda/2), d = 2 R asin(sqrt(a))
 *   us-east-1:  dphi = -0.219287, dlambda = -1.350133
 *               a = 0.011974 + 0.189022 = 0.200996, sqrt = 0.448325, asin = 0.464891
 *               d = 5923.65 km, g = 1 - 5923.65 / 20015.1 = 0.704041
 *   eu-west-1:  dphi = 0.032041, dlambda = -0.107633
 *               a = 0.000257 + 0.001075 = 0.001331, sqrt = 0.036489, asin = 0.036497
 *               d = 465.05 km, g = 1 - 465.05 / 20015.1 = 0.976765
 *   ap-ne-1:    dphi = -0.276359, dlambda = 2.439675
 *               a = 0.018972 + 0.445754 = 0.464726, sqrt = 0.681708, asin = 0.750095
 *               d = 9557.73 km, g = 1 - 9557.73 / 20015.1 = 0.522474
 * Health h = healthy/total * (1 - min(1, rate/cap)):
 *   us-east-1 1/2 * 1 = 0.5;  eu-west-1 2/2 * (1 - 500/1000) = 0.5;  ap-ne-1 1/1 * 1 = 1.0
 * Latency l = 1 - min(1, L/500), no sample 0.5:
 *   us-east-1 0.5;  eu-west-1 0.5;  ap-ne-1 1 - 100/500 = 0.8
 * Cost c = min cost (1.0) / cost:  1.0,  0.8,  0.666667
 * Score = 0.4 g + 0.3 h + 0.2 l + 0.1 c:
 *   us-east-1  0.281616 + 0.15 + 0.10 + 0.10     = 0.631616
 *   eu-west-1  0.390706 + 0.15 + 0.10 + 0.08     = 0.720706
 *   ap-ne-1    0.208990 + 0.30 + 0.16 + 0.066667 = 0.735656  <- winner
 * (Tokyo wins: eu-west-1 loses 0.15 to being half full, and the known,
 * fast latency adds 0.06.)
 */
static void
worked_example(void **state)
{
    static const double want[3][5] = {
        /* g, h, l, c, score */
        {0.704041, 0.5, 0.5, 1.0, 0.631616},
        {0.976765, 0.5, 0.5, 0.8, 0.720706},
        {0.522474, 1.0, 0.8, 0.666667, 0.735656},
    };
    struct mrd_route_out out;
    struct mrd_route_table *t;

    fx_reset();
    fx_region("us-east-1", 38.95, -77.45, 1.0, 0, -1);
    fx_region("eu-west-1", 53.35, -6.26, 1.25, 1000, -1);
    fx_region("ap-northeast-1", 35.68, 139.69, 1.5, 0, -1);
    fx.snap[0].healthy = 1;
    fx.snap[1].rate_per_s = 500;
    fx.snap[2] = (struct mrd_region_snap){.healthy = 1, .total = 1, .has_latency = 1, .latency_ms = 100};

    t = decide(LONDON, &out);
    for (int i = 0; i < 3; i++) {
        assert_true(fabs(fx.f[i].geography - want[i][0]) < EPS);
        assert_true(fabs(fx.f[i].health - want[i][1]) < EPS);
        assert_true(fabs(fx.f[i].latency - want[i][2]) < EPS);
        assert_true(fabs(fx.f[i].cost - want[i][3]) < EPS);
        assert_true(fabs(fx.f[i].score - want[i][4]) < EPS);
        assert_int_equal(fx.f[i].eligible, 1);
        assert_null(fx.f[i].why);
    }
    assert_int_equal(out.winner, 2);
    assert_int_equal(out.reason, MRD_ROUTE_SCORE);
    assert_int_equal(out.rule, -1);

    /* the same client with everything idle and healthy: the SPEC 4 example's
     * eu-west-1 line (g 0.97677 here; SPEC rounds it as 0.9769), winner eu */
    mrd_route_table_free(t);
    fx.snap[0].healthy = 2;
    fx.snap[1].rate_per_s = 0;
    fx.snap[2].has_latency = 0;
    t = decide(LONDON, &out);
    assert_int_equal(out.winner, 1);
    assert_true(fabs(fx.f[1].health - 1.0) < EPS);
    assert_true(fabs(fx.f[1].score - (0.4 * 0.976765 + 0.3 + 0.1 + 0.08)) < EPS);
    mrd_route_table_free(t);
}

static void
geography_matches_haversine(void **state)
{
    static const double pts[][2] = {
        {0, 0}, {51.5142, -0.0931}, {-33.87, 151.21}, {89.9, 10}, {-90, 0}, {0, 180}, {0, -179.999}, {40.0, -74.0},
    };
    struct mrd_route_out out;
    struct mrd_route_table *t;

    fx_reset();
    for (size_t i = 0; i < MRD_ARRAY_LEN(pts); i++)
        fx_region("r", pts[i][0], pts[i][1], 1.0, 0, -1);
    for (size_t k = 0; k < MRD_ARRAY_LEN(pts); k++) {
        t = decide(client_at(pts[k][0], pts[k][1], "", ""), &out);
        for (size_t i = 0; i < MRD_ARRAY_LEN(pts); i++) {
            double g = 1 - haversine_km(pts[k][0], pts[k][1], pts[i][0], pts[i][1]) / 20015.1;

            assert_true(fabs(fx.f[i].geography - g) < 1e-9);
        }
        assert_true(fabs(fx.f[k].geography - 1.0) < 1e-12); /* the client's own spot */
        mrd_route_table_free(t);
    }
    /* a few metres: no cancellation (the chord form keeps its precision) */
    fx_reset();
    fx_region("r", 48.8566, 2.3522, 1.0, 0, -1);
    t = decide(client_at(48.8567, 2.3522, "", ""), &out);
    assert_true(fabs((1 - fx.f[0].geography) * 20015.1 - 0.0111195) < 1e-6); /* 11.12 m */
    mrd_route_table_free(t);
    /* antipodes: d = pi R = 20015.114 km, g just below 0 as the formula says */
    fx_reset();
    fx_region("r", 0, 180, 1.0, 0, -1);
    t = decide(client_at(0, 0, "", ""), &out);
    assert_true(fabs(fx.f[0].geography - (1 - 3.14159265358979323846 * 6371.0088 / 20015.1)) < 1e-12);
    mrd_route_table_free(t);
}

static void
unknown_location_is_half(void **state)
{
    struct mrd_route_client nowhere = {0};
    struct mrd_route_out out;
    struct mrd_route_table *t;

    fx_reset();
    fx_region("us-east-1", 38.95, -77.45, 1.0, 0, -1);
    fx_region("eu-west-1", 53.35, -6.26, 1.0, 0, -1);
    fx_region("ap-northeast-1", 35.68, 139.69, 1.0, 0, -1);
    nowhere.latitude = 53.35; /* ignored without known */
    nowhere.longitude = -6.26;
    t = decide(nowhere, &out);
    for (int i = 0; i < 3; i++) {
        assert_true(fx.f[i].geography == 0.5);
        assert_true(fabs(fx.f[i].score - (0.2 + 0.3 + 0.1 + 0.1)) < 1e-12);
    }
    assert_int_equal(out.winner, 0); /* all equal: the first listed */
    mrd_route_table_free(t);
}

static void
ties_go_to_first_listed(void **state)
{
    struct mrd_route_out out;
    struct mrd_route_table *t;

    fx_reset();
    fx_region("far", 35.68, 139.69, 1.0, 0, -1);
    fx_region("a", 53.35, -6.26, 2.0, 0, -1);
    fx_region("b", 53.35, -6.26, 2.0, 0, -1);
    fx.snap[0].healthy = 0;
    t = decide(LONDON, &out);
    assert_int_equal(out.winner, 1);
    assert_true(fx.f[1].score == fx.f[2].score);
    /* the unhealthy cheapest region still sets the cost minimum (SPEC: all regions) */
    assert_true(fabs(fx.f[1].cost - 0.5) < 1e-12);
    mrd_route_table_free(t);
}

/* Scores within MRD_ROUTE_TIE_EPSILON (1e-3) of the best are ties: the first
 * listed of them wins. Three regions at one place, cost 1, a client of
 * unknown location: score = 0.4 * 0.5 + 0.3 * 1 + 0.1 * 1 + 0.2 * l
 * = 0.6 + 0.2 * (1 - L / 500), so 1 ms of EWMA is 4e-4 of score. */
static void
near_ties_within_epsilon(void **state)
{
    struct mrd_route_client nowhere = {0};
    struct mrd_route_out out;
    struct mrd_route_table *t;

    fx_reset();
    fx_region("a", 50, 8, 1.0, 0, -1);
    fx_region("b", 50, 8, 1.0, 0, -1);
    fx_region("c", 50, 8, 1.0, 0, -1);
    /* L 10, 9, 8 ms: scores 0.796, 0.7964, 0.7968; a is 8e-4 below
     * the best: a tie, and a is listed first */
    fx.snap[0] = (struct mrd_region_snap){2, 2, 0, 1, 10.0};
    fx.snap[1] = (struct mrd_region_snap){2, 2, 0, 1, 9.0};
    fx.snap[2] = (struct mrd_region_snap){2, 2, 0, 1, 8.0};
    t = decide(nowhere, &out);
    assert_true(fabs(fx.f[0].score - 0.796) < 1e-12);
    assert_true(fabs(fx.f[1].score - 0.7964) < 1e-12);
    assert_true(fabs(fx.f[2].score - 0.7968) < 1e-12);
    assert_int_equal(out.winner, 0);
    assert_int_equal(out.tie, 1);
    mrd_route_table_free(t);

    /* c at 6 ms: 0.7976; a is 1.6e-3 and b 1.2e-3 below it: c wins alone */
    fx.snap[2].latency_ms = 6.0;
    t = decide(nowhere, &out);
    assert_true(fabs(fx.f[2].score - 0.7976) < 1e-12);
    assert_int_equal(out.winner, 2);
    assert_int_equal(out.tie, 0);
    mrd_route_table_free(t);

    /* c at 7 ms: 0.7972; b (8e-4 below) ties, a (1.2e-3 below) does not:
     * the first listed of the tied regions is b */
    fx.snap[2].latency_ms = 7.0;
    t = decide(nowhere, &out);
    assert_int_equal(out.winner, 1);
    assert_int_equal(out.tie, 1);
    mrd_route_table_free(t);

    /* a region that is not eligible neither sets the best score nor ties:
     * c unhealthy, so b (0.7964) is the best and a (0.796) is 4e-4 below */
    fx.snap[2].healthy = 0;
    fx.snap[2].latency_ms = 0.0;
    t = decide(nowhere, &out);
    assert_int_equal(fx.f[2].eligible, 0);
    assert_int_equal(out.winner, 0);
    assert_int_equal(out.tie, 1);
    mrd_route_table_free(t);

    /* exactly equal scores (the SPEC's ties) */
    fx.snap[0].latency_ms = fx.snap[1].latency_ms = 2.0;
    t = decide(nowhere, &out);
    assert_true(fx.f[0].score == fx.f[1].score);
    assert_int_equal(out.winner, 0);
    assert_int_equal(out.tie, 1);
    mrd_route_table_free(t);

    /* one eligible region: no tie */
    fx.snap[1].healthy = 0;
    t = decide(nowhere, &out);
    assert_int_equal(out.winner, 0);
    assert_int_equal(out.tie, 0);
    mrd_route_table_free(t);
}

static void
health_and_latency_terms(void **state)
{
    struct mrd_route_out out;
    struct mrd_route_table *t;

    fx_reset();
    fx_region("a", 0, 0, 1.0, 1000, -1);
    fx_region("b", 0, 0, 1.0, 1000, -1);
    fx_region("c", 0, 0, 1.0, 0, -1);
    fx.snap[0] = (struct mrd_region_snap){3, 4, 250, 1, 1000}; /* 3/4 * (1 - 0.25); L over ceiling */
    fx.snap[1] = (struct mrd_region_snap){2, 2, 5000, 1, 0};   /* over capacity: no headroom; L 0 */
    fx.snap[2] = (struct mrd_region_snap){1, 4, 1e9, 1, 250};  /* uncapped: rate does not matter */
    t = decide(client_at(0, 0, "", ""), &out);
    assert_true(fabs(fx.f[0].health - 0.5625) < 1e-12);
    assert_true(fx.f[0].latency == 0.0);
    assert_true(fx.f[1].health == 0.0);
    assert_true(fx.f[1].latency == 1.0);
    assert_int_equal(fx.f[1].eligible, 1); /* full is not unhealthy: the cap walk decides */
    assert_true(fx.f[2].health == 0.25);
    assert_true(fabs(fx.f[2].latency - 0.5) < 1e-12);
    mrd_route_table_free(t);
}

static void
custom_weights_geography_only(void **state)
{
    struct mrd_route_out out;
    struct mrd_route_table *t;

    fx_reset();
    fx.c.scoring = (struct mrd_scoring_conf){.w_geography = 1, .latency_ceiling_ms = 500};
    fx_region("us-east-1", 38.95, -77.45, 0.1, 0, -1);
    fx_region("eu-west-1", 53.35, -6.26, 10, 100, -1);
    fx_region("ap-northeast-1", 35.68, 139.69, 0.1, 0, -1);
    fx.snap[1] = (struct mrd_region_snap){1, 3, 100, 1, 499}; /* nearly full, slow, dear */
    t = decide(LONDON, &out);
    for (int i = 0; i < 3; i++)
        assert_true(fx.f[i].score == fx.f[i].geography);
    assert_int_equal(out.winner, 1);
    mrd_route_table_free(t);
}

/* ------------------------------------------------------------------------ */
/* eligibility                                                              */

static void
residency_excludes(void **state)
{
    static const char *const eu[] = {"EU", ""};
    static const char *const fr[] = {"FR", ""};
    const int only_eu[] = {1}, only_us[] = {0};
    struct mrd_route_out out;
    struct mrd_route_table *t;

    fx_reset();
    fx_region("us-east-1", 38.95, -77.45, 1.0, 0, -1);
    fx_region("eu-west-1", 53.35, -6.26, 1.0, 0, -1);
    fx_rule(NULL, fr, only_us, 1); /* rule 0: FR only in the US (artificial) */
    fx_rule(eu, NULL, only_eu, 1); /* rule 1: EU stays in the EU */

    /* a German traveller in Washington: the closer region is off limits */
    t = decide(client_at(38.9, -77.0, "DE", "EU"), &out);
    assert_int_equal(out.rule, 1);
    assert_int_equal(out.winner, 1);
    assert_int_equal(fx.f[0].eligible, 0);
    assert_string_equal(fx.f[0].why, "residency");
    assert_true(fx.f[0].score > fx.f[1].score); /* scored anyway, for the explanation */
    mrd_route_table_free(t);

    /* the first matching rule applies: FR matches rule 0 by country */
    t = decide(client_at(48.85, 2.35, "fr", "eu"), &out);
    assert_int_equal(out.rule, 0);
    assert_int_equal(out.winner, 0);
    assert_string_equal(fx.f[1].why, "residency");
    mrd_route_table_free(t);

    /* no rule: plain score */
    t = decide(client_at(38.9, -77.0, "US", "NA"), &out);
    assert_int_equal(out.rule, -1);
    assert_int_equal(out.winner, 0);
    assert_int_equal(fx.f[1].eligible, 1);
    mrd_route_table_free(t);

    /* codes only, no coordinates: the rule still applies */
    t = decide((struct mrd_route_client){0, 0, 0, "DE", "EU"}, &out);
    assert_int_equal(out.rule, 1);
    assert_int_equal(out.winner, 1);
    mrd_route_table_free(t);

    /* the only allowed region is down: nothing, never a crossing */
    fx.snap[1].healthy = 0;
    t = decide(client_at(38.9, -77.0, "DE", "EU"), &out);
    assert_int_equal(out.winner, -1);
    assert_int_equal(out.reason, MRD_ROUTE_NONE);
    assert_string_equal(fx.f[1].why, "unhealthy");
    mrd_route_table_free(t);
}

static void
unhealthy_excludes(void **state)
{
    struct mrd_route_out out;
    struct mrd_route_table *t;
    enum mrd_route_reason reason;

    fx_reset();
    fx_region("eu-west-1", 53.35, -6.26, 1.0, 0, -1);
    fx_region("us-east-1", 38.95, -77.45, 1.0, 0, -1);
    fx_region("none", 0, 0, 1.0, 0, -1);
    fx.snap[0].healthy = 0;
    fx.snap[2] = (struct mrd_region_snap){0, 0, 0, 0, 0}; /* no upstreams at all */
    t = decide(LONDON, &out);
    assert_int_equal(out.winner, 1);
    assert_int_equal(fx.f[0].eligible, 0);
    assert_string_equal(fx.f[0].why, "unhealthy");
    assert_true(fx.f[0].health == 0.0);
    assert_string_equal(fx.f[2].why, "unhealthy");
    assert_null(fx.f[1].why);
    mrd_route_table_free(t);

    fx.snap[1].healthy = 0;
    t = decide(LONDON, &out);
    assert_int_equal(out.winner, -1);
    assert_int_equal(out.reason, MRD_ROUTE_NONE);
    assert_int_equal(mrd_route_admit(t, &out, NULL, NULL, &reason), -1);
    assert_int_equal(reason, MRD_ROUTE_NONE);
    mrd_route_table_free(t);
}

static void
residency_bitset_beyond_64_regions(void **state)
{
    const int allowed[] = {70, 99};
    static const char *const de[] = {"DE", ""};
    struct mrd_route_out out;
    struct mrd_route_table *t;

    fx_reset();
    for (int i = 0; i < 100; i++)
        fx_region("r", -60 + i, -170 + 3 * i, 1.0 + i % 7, 0, -1);
    fx_rule(NULL, de, allowed, 2);
    t = decide(client_at(-60 + 99, -170 + 297, "DE", "EU"), &out);
    assert_int_equal(out.winner, 99);
    for (int i = 0; i < 100; i++)
        assert_int_equal(fx.f[i].eligible, i == 70 || i == 99);
    mrd_route_table_free(t);
}

/* ------------------------------------------------------------------------ */
/* cap walk                                                                 */

struct tokens {
    int have[MAX_REGIONS];
    int calls[MAX_REGIONS];
};

static int
take_token(void *ctx, size_t i)
{
    struct tokens *tk = ctx;

    tk->calls[i]++;
    if (tk->have[i] <= 0)
        return 0;
    tk->have[i]--;
    return 1;
}

static void
admit_walk(void **state)
{
    static const char *const eu[] = {"EU", ""};
    const int eu_regions[] = {0, 2, 3};
    struct mrd_route_out out;
    struct mrd_route_table *t;
    struct tokens tk;
    enum mrd_route_reason reason;

    memset(&tk, 0, sizeof(tk));

    /* chain: eu-west-1 -> us-east-1 -> eu-central-1 -> eu-north-1 (uncapped) */
    fx_reset();
    fx_region("eu-west-1", 53.35, -6.26, 1.0, 100, 1);
    fx_region("us-east-1", 38.95, -77.45, 1.0, 100, 2);
    fx_region("eu-central-1", 50.11, 8.68, 1.0, 100, 3);
    fx_region("eu-north-1", 59.33, 18.06, 1.0, 0, -1);
    fx_rule(eu, NULL, eu_regions, 3);
    t = decide(LONDON, &out);
    assert_int_equal(out.winner, 0);

    /* the winner has a token */
    tk.have[0] = 1;
    assert_int_equal(mrd_route_admit(t, &out, take_token, &tk, &reason), 0);
    assert_int_equal(reason, MRD_ROUTE_SCORE);
    assert_int_equal(tk.calls[0], 1);
    assert_int_equal(tk.have[0], 0);

    /* winner empty: us-east-1 is outside the EU set and skipped without a
     * take, even though it has tokens; eu-central-1 admits */
    memset(&tk, 0, sizeof(tk));
    tk.have[1] = 5;
    tk.have[2] = 1;
    assert_int_equal(mrd_route_admit(t, &out, take_token, &tk, &reason), 2);
    assert_int_equal(reason, MRD_ROUTE_FALLBACK);
    assert_int_equal(tk.calls[1], 0);
    assert_int_equal(tk.have[1], 5);

    /* eu-central-1 empty too: the uncapped end of the chain admits, no take */
    assert_int_equal(mrd_route_admit(t, &out, take_token, &tk, &reason), 3);
    assert_int_equal(reason, MRD_ROUTE_FALLBACK);
    assert_int_equal(tk.calls[3], 0);

    /* ... unless it is down: the chain is exhausted, shed */
    mrd_route_table_free(t);
    fx.snap[3].healthy = 0;
    t = decide(LONDON, &out);
    assert_int_equal(mrd_route_admit(t, &out, take_token, &tk, &reason), -1);
    assert_int_equal(reason, MRD_ROUTE_SHED);
    assert_int_equal(tk.calls[3], 0);

    /* a client outside the rule may fall back to us-east-1 */
    mrd_route_table_free(t);
    memset(&tk, 0, sizeof(tk));
    tk.have[1] = 1;
    t = decide(client_at(53.0, -6.0, "US", "NA"), &out);
    assert_int_equal(out.winner, 0);
    assert_int_equal(mrd_route_admit(t, &out, take_token, &tk, &reason), 1);
    assert_int_equal(reason, MRD_ROUTE_FALLBACK);
    mrd_route_table_free(t);
}

static void
admit_cycle_guard(void **state)
{
    struct mrd_route_out out;
    struct mrd_route_table *t;
    struct tokens tk;
    enum mrd_route_reason reason;

    memset(&tk, 0, sizeof(tk));

    /* 0 -> 1 -> 2 -> 1: validation rejects it, the walk must still end */
    fx_reset();
    fx_region("a", 53.35, -6.26, 1.0, 10, 1);
    fx_region("b", 38.95, -77.45, 1.0, 10, 2);
    fx_region("c", 35.68, 139.69, 1.0, 10, 1);
    t = decide(LONDON, &out);
    assert_int_equal(mrd_route_admit(t, &out, take_token, &tk, &reason), -1);
    assert_int_equal(reason, MRD_ROUTE_SHED);
    assert_true(tk.calls[0] + tk.calls[1] + tk.calls[2] <= 3);
    assert_int_equal(tk.calls[0], 1);
    mrd_route_table_free(t);
}

/* the explainer walks with a peek: same answer, and no token is spent */
struct buckets {
    struct mrd_bucket b[4];
    uint64_t now_ms;
};

static int
peek_cb(void *ctx, size_t i)
{
    struct buckets *bk = ctx;

    return mrd_bucket_peek(&bk->b[i], bk->now_ms);
}

static int
take_cb(void *ctx, size_t i)
{
    struct buckets *bk = ctx;

    return mrd_bucket_take(&bk->b[i], bk->now_ms);
}

static void
admit_peek_takes_nothing(void **state)
{
    struct mrd_route_out out;
    struct mrd_route_table *t;
    struct buckets bk;
    enum mrd_route_reason reason;

    fx_reset();
    fx_region("eu-west-1", 53.35, -6.26, 1.0, 10, 1);
    fx_region("us-east-1", 38.95, -77.45, 1.0, 10, -1);
    for (int i = 0; i < 2; i++)
        mrd_bucket_init(&bk.b[i], 10 * 1000, 1, 0);
    bk.now_ms = 0;
    t = decide(LONDON, &out);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(mrd_route_admit(t, &out, peek_cb, &bk, &reason), 0);
        assert_int_equal(reason, MRD_ROUTE_SCORE);
    }
    assert_int_equal(mrd_route_admit(t, &out, take_cb, &bk, &reason), 0);
    assert_int_equal(mrd_route_admit(t, &out, peek_cb, &bk, &reason), 1);
    assert_int_equal(reason, MRD_ROUTE_FALLBACK);
    assert_int_equal(mrd_route_admit(t, &out, take_cb, &bk, &reason), 1);
    assert_int_equal(mrd_route_admit(t, &out, peek_cb, &bk, &reason), -1);
    assert_int_equal(reason, MRD_ROUTE_SHED);
    assert_int_equal(mrd_route_admit(t, &out, take_cb, &bk, &reason), -1);
    mrd_route_table_free(t);
}

static void
reason_names(void **state)
{
    assert_string_equal(mrd_route_reason_name(MRD_ROUTE_SCORE), "score");
    assert_string_equal(mrd_route_reason_name(MRD_ROUTE_FALLBACK), "fallback");
    assert_string_equal(mrd_route_reason_name(MRD_ROUTE_SHED), "shed");
    assert_string_equal(mrd_route_reason_name(MRD_ROUTE_NONE), "none");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(worked_example),
        cmocka_unit_test(geography_matches_haversine),
        cmocka_unit_test(unknown_location_is_half),
        cmocka_unit_test(ties_go_to_first_listed),
        cmocka_unit_test(near_ties_within_epsilon),
        cmocka_unit_test(health_and_latency_terms),
        cmocka_unit_test(custom_weights_geography_only),
        cmocka_unit_test(residency_excludes),
        cmocka_unit_test(unhealthy_excludes),
        cmocka_unit_test(residency_bitset_beyond_64_regions),
        cmocka_unit_test(admit_walk),
        cmocka_unit_test(admit_cycle_guard),
        cmocka_unit_test(admit_peek_takes_nothing),
        cmocka_unit_test(reason_names),
    };
    return cmocka_run_group_tests_name("score", tests, NULL, NULL);
}
