/*
 * score.c: eligibility, the four factors of SPEC 3.3, the winner and the cap
 * walk of 3.4 (see score.h). Everything that depends only on the config
 * (region unit vectors, cost factors, residency bitsets) is computed once in
 * mrd_route_table_new, so a decision costs one sqrt and one asin per region.
 * Not here: geo lookup, geo-blocking, buckets and clocks (the caller's).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "meridian/common.h"
#include "meridian/score.h"

#define DEG_TO_RAD (3.14159265358979323846 / 180.0)

static const char WHY_RESIDENCY[] = "residency";
static const char WHY_UNHEALTHY[] = "unhealthy";

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */

static char
upper(char ch)
{
    return ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
}

/* a two-letter code as one integer; 0 for anything else ("" = unknown) */
static uint16_t
pack_code(const char *s)
{
    if (s[0] == '\0' || s[1] == '\0' || s[2] != '\0')
        return 0;
    return (uint16_t)((unsigned char)upper(s[0]) << 8 | (unsigned char)upper(s[1]));
}

static uint16_t *
pack_codes(char (*codes)[3], size_t n)
{
    uint16_t *out = mrd_xcalloc(n ? n : 1, sizeof(*out));

    for (size_t i = 0; i < n; i++)
        out[i] = pack_code(codes[i]);
    return out;
}

static int
has_code(const uint16_t *codes, size_t n, uint16_t code)
{
    if (code == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (codes[i] == code)
            return 1;
    return 0;
}

static void
unit_vector(double lat_deg, double lon_deg, double *x, double *y, double *z)
{
    double lat = lat_deg * DEG_TO_RAD, lon = lon_deg * DEG_TO_RAD;

    *x = cos(lat) * cos(lon);
    *y = cos(lat) * sin(lon);
    *z = sin(lat);
}

/* Great-circle distance between two unit vectors, km. Haversine through the
 * chord: sin(theta / 2) = |a - b| / 2, which keeps full precision for short
 * distances (no 1 - cos cancellation). */
static double
distance_km(double ax, double ay, double az, const struct mrd_route_region *r)
{
    double dx = ax - r->x, dy = ay - r->y, dz = az - r->z;
    double half_chord = sqrt(dx * dx + dy * dy + dz * dz) / 2.0;

    if (half_chord > 1.0)
        half_chord = 1.0;
    return 2.0 * MRD_EARTH_RADIUS_KM * asin(half_chord);
}

static int
rule_matches(const struct mrd_route_rule *rule, uint16_t continent, uint16_t country)
{
    return has_code(rule->continents, rule->n_continents, continent) ||
           has_code(rule->countries, rule->n_countries, country);
}

static int
rule_allows(const struct mrd_route_rule *rule, size_t region)
{
    return (rule->regions[region / 64] >> (region % 64)) & 1;
}

/* ------------------------------------------------------------------------ */
/* table                                                                    */

struct mrd_route_table *
mrd_route_table_new(const struct mrd_config *c)
{
    struct mrd_route_table *t = mrd_xcalloc(1, sizeof(*t));
    double min_cost = 0;

    t->n_regions = c->n_regions;
    t->regions = mrd_xcalloc(t->n_regions ? t->n_regions : 1, sizeof(*t->regions));
    t->n_words = (t->n_regions + 63) / 64;
    for (size_t i = 0; i < c->n_regions; i++) {
        double cost = c->regions[i].cost > 0 ? c->regions[i].cost : 1.0;

        if (i == 0 || cost < min_cost)
            min_cost = cost;
    }
    for (size_t i = 0; i < c->n_regions; i++) {
        const struct mrd_region_conf *rc = &c->regions[i];
        struct mrd_route_region *r = &t->regions[i];

        unit_vector(rc->latitude, rc->longitude, &r->x, &r->y, &r->z);
        r->cost = min_cost / (rc->cost > 0 ? rc->cost : 1.0);
        r->capacity_rps = rc->capacity_rps;
        r->fallback_idx = rc->fallback_idx >= 0 && (size_t)rc->fallback_idx < c->n_regions ? rc->fallback_idx : -1;
    }

    t->n_rules = c->policies.n_residency;
    t->rules = mrd_xcalloc(t->n_rules ? t->n_rules : 1, sizeof(*t->rules));
    for (size_t i = 0; i < t->n_rules; i++) {
        const struct mrd_residency_conf *rc = &c->policies.residency[i];
        struct mrd_route_rule *rule = &t->rules[i];

        rule->continents = pack_codes(rc->continents, rc->n_continents);
        rule->n_continents = rc->n_continents;
        rule->countries = pack_codes(rc->countries, rc->n_countries);
        rule->n_countries = rc->n_countries;
        rule->regions = mrd_xcalloc(t->n_words ? t->n_words : 1, sizeof(*rule->regions));
        for (size_t j = 0; j < rc->n_regions; j++) {
            int ri = rc->region_idx[j];

            if (ri >= 0 && (size_t)ri < t->n_regions)
                rule->regions[ri / 64] |= (uint64_t)1 << (ri % 64);
        }
    }

    t->w_geography = c->scoring.w_geography;
    t->w_health = c->scoring.w_health;
    t->w_latency = c->scoring.w_latency;
    t->w_cost = c->scoring.w_cost;
    t->latency_ceiling_ms = (double)c->scoring.latency_ceiling_ms;
    return t;
}

void
mrd_route_table_free(struct mrd_route_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n_rules; i++) {
        free(t->rules[i].continents);
        free(t->rules[i].countries);
        free(t->rules[i].regions);
    }
    free(t->rules);
    free(t->regions);
    free(t);
}

/* ------------------------------------------------------------------------ */
/* decision                                                                 */

const char *
mrd_route_reason_name(enum mrd_route_reason r)
{
    switch (r) {
    case MRD_ROUTE_SCORE:
        return "score";
    case MRD_ROUTE_FALLBACK:
        return "fallback";
    case MRD_ROUTE_SHED:
        return "shed";
    case MRD_ROUTE_NONE:
        return "none";
    }
    return "none";
}

int
mrd_route_decide(const struct mrd_route_in *in, struct mrd_route_out *out)
{
    const struct mrd_route_table *t = in->table;
    const struct mrd_route_rule *rule = NULL;
    double cx = 0, cy = 0, cz = 0, best = 0;
    int any = 0;
    uint16_t continent = pack_code(in->client.continent), country = pack_code(in->client.country);

    out->winner = -1;
    out->rule = -1;
    if (continent != 0 || country != 0) {
        for (size_t i = 0; i < t->n_rules; i++) {
            if (rule_matches(&t->rules[i], continent, country)) {
                rule = &t->rules[i];
                out->rule = (int)i;
                break;
            }
        }
    }
    if (in->client.known)
        unit_vector(in->client.latitude, in->client.longitude, &cx, &cy, &cz);

    for (size_t i = 0; i < t->n_regions; i++) {
        const struct mrd_route_region *r = &t->regions[i];
        const struct mrd_region_snap *s = &in->snap[i];
        struct mrd_route_factors *f = &out->regions[i];
        double headroom = 1.0;

        f->geography = in->client.known ? 1.0 - distance_km(cx, cy, cz, r) / MRD_GEO_HALF_CIRCUMFERENCE_KM : 0.5;

        if (r->capacity_rps > 0) {
            double u = s->rate_per_s / (double)r->capacity_rps;

            headroom = 1.0 - (u > 1.0 ? 1.0 : u < 0.0 ? 0.0 : u);
        }
        f->health = s->total > 0 ? (double)MRD_MIN(s->healthy, s->total) / (double)s->total * headroom : 0.0;

        if (!s->has_latency) {
            f->latency = 0.5;
        } else if (t->latency_ceiling_ms > 0) {
            double q = (s->latency_ms > 0 ? s->latency_ms : 0.0) / t->latency_ceiling_ms;

            f->latency = 1.0 - (q > 1.0 ? 1.0 : q);
        } else {
            f->latency = 0.0; /* a zero ceiling: every sample is over it */
        }

        f->cost = r->cost;
        f->score = t->w_geography * f->geography + t->w_health * f->health + t->w_latency * f->latency +
                   t->w_cost * f->cost;

        if (rule != NULL && !rule_allows(rule, i)) {
            f->eligible = 0;
            f->why = WHY_RESIDENCY;
        } else if (s->healthy == 0 || s->total == 0) {
            f->eligible = 0;
            f->why = WHY_UNHEALTHY;
        } else {
            f->eligible = 1;
            f->why = NULL;
            if (!any || f->score > best)
                best = f->score;
            any = 1;
        }
    }
    /* the winner: the first listed eligible region within the tie epsilon of
     * the best score, so that noise (microseconds of latency EWMA) does not
     * move traffic between regions whose scores are practically equal */
    out->tie = 0;
    for (size_t i = 0; any && i < t->n_regions; i++) {
        const struct mrd_route_factors *f = &out->regions[i];

        if (!f->eligible || !(f->score >= best - MRD_ROUTE_TIE_EPSILON))
            continue;
        if (out->winner < 0)
            out->winner = (int)i;
        else
            out->tie = 1;
    }
    out->reason = out->winner >= 0 ? MRD_ROUTE_SCORE : MRD_ROUTE_NONE;
    return out->winner;
}

int
mrd_route_admit(const struct mrd_route_table *t, const struct mrd_route_out *ro, mrd_route_take_cb take,
                void *ctx, enum mrd_route_reason *reason)
{
    int i = ro->winner;

    if (i < 0 || (size_t)i >= t->n_regions) {
        *reason = MRD_ROUTE_NONE;
        return -1;
    }
    /* n_regions steps visit every region of an acyclic chain at most once */
    for (size_t steps = 0; i >= 0 && (size_t)i < t->n_regions && steps < t->n_regions; steps++) {
        if (ro->regions[i].eligible && (t->regions[i].capacity_rps == 0 || take(ctx, (size_t)i))) {
            *reason = i == ro->winner ? MRD_ROUTE_SCORE : MRD_ROUTE_FALLBACK;
            return i;
        }
        i = t->regions[i].fallback_idx;
    }
    *reason = MRD_ROUTE_SHED;
    return -1;
}

int
mrd_route_rule_allows(const struct mrd_route_table *t, int rule, size_t region)
{
    if (rule < 0 || (size_t)rule >= t->n_rules || region >= t->n_regions)
        return 1;
    return rule_allows(&t->rules[rule], region) != 0;
}
