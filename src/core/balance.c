/*
 * balance.c: the three in-region balancing modes over a plain snapshot of
 * upstream targets (see balance.h). No I/O, no clock: the caller supplies a
 * random number so tests are deterministic.
 */
#include <stdlib.h>
#include <string.h>

#include "meridian/balance.h"
#include "meridian/common.h"

void
mrd_balance_state_init(struct mrd_balance_state *s, size_t n)
{
    s->n = n;
    s->current = mrd_xcalloc(n ? n : 1, sizeof(*s->current));
    s->next = 0;
}

void
mrd_balance_state_dispose(struct mrd_balance_state *s)
{
    free(s->current);
    s->current = NULL;
    s->n = 0;
}

static int
eligible(const struct mrd_balance_target *t, const unsigned char *tried, size_t i)
{
    return t[i].healthy && (tried == NULL || !tried[i]);
}

static int
pick_round_robin(const struct mrd_balance_target *t, size_t n, const unsigned char *tried,
                 struct mrd_balance_state *s)
{
    int64_t total = 0;
    int best = -1;

    for (size_t i = 0; i < n; i++) {
        if (!eligible(t, tried, i))
            continue;
        s->current[i] += t[i].weight;
        total += t[i].weight;
        if (best == -1 || s->current[i] > s->current[best])
            best = (int)i;
    }
    if (best != -1)
        s->current[best] -= total;
    return best;
}

static int
pick_least_conn(const struct mrd_balance_target *t, size_t n, const unsigned char *tried,
                struct mrd_balance_state *s)
{
    int best = -1;

    /* compare active_i / weight_i as active_i * weight_b < active_b * weight_i */
    for (size_t k = 0; k < n; k++) {
        size_t i = (s->next + k) % n;
        if (!eligible(t, tried, i))
            continue;
        if (best == -1 ||
            (uint64_t)t[i].active * t[best].weight < (uint64_t)t[best].active * t[i].weight)
            best = (int)i;
    }
    if (best != -1)
        s->next = ((size_t)best + 1) % n;
    return best;
}

static uint64_t
p2c_cost(const struct mrd_balance_target *t)
{
    if (t->ewma_us == 0)
        return 0;
    return (t->ewma_us + 1) * (t->active + 1) * 1000 / t->weight;
}

static int
pick_p2c(const struct mrd_balance_target *t, size_t n, const unsigned char *tried, uint64_t rnd)
{
    size_t idx[MRD_BALANCE_MAX_TARGETS];
    size_t m = 0;

    for (size_t i = 0; i < n && m < MRD_BALANCE_MAX_TARGETS; i++)
        if (eligible(t, tried, i))
            idx[m++] = i;
    if (m == 0)
        return -1;
    if (m == 1)
        return (int)idx[0];
    size_t a = (size_t)(rnd % m);
    size_t b = (size_t)((rnd >> 32) % (m - 1));
    if (b >= a)
        b++;
    uint64_t ca = p2c_cost(&t[idx[a]]), cb = p2c_cost(&t[idx[b]]);
    if (ca == cb)
        return (int)idx[MRD_MIN(a, b)];
    return (int)(ca < cb ? idx[a] : idx[b]);
}

int
mrd_balance_pick(enum mrd_balance mode, const struct mrd_balance_target *t, size_t n,
                 const unsigned char *tried, struct mrd_balance_state *s, uint64_t rnd)
{
    if (n == 0)
        return -1;
    switch (mode) {
    case MRD_BALANCE_ROUND_ROBIN:
        return pick_round_robin(t, n, tried, s);
    case MRD_BALANCE_P2C_EWMA:
        return pick_p2c(t, n, tried, rnd);
    case MRD_BALANCE_LEAST_CONN:
    default:
        return pick_least_conn(t, n, tried, s);
    }
}
