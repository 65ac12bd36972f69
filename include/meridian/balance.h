/*
 * balance.h: choosing an upstream inside a region. Pure: the caller passes a
 * snapshot of the targets (weight, health, in-flight count, response-time
 * EWMA), which ones this request already tried, per-worker selector state and
 * a random number; nothing here reads clocks, atomics or sockets.
 */
#ifndef MERIDIAN_BALANCE_H
#define MERIDIAN_BALANCE_H

#include <stddef.h>
#include <stdint.h>

#include "meridian/config.h"

#define MRD_BALANCE_MAX_TARGETS 256

struct mrd_balance_target {
    unsigned weight;  /* >= 1 */
    int healthy;      /* 0 = out of rotation */
    unsigned active;  /* requests in flight on it, all workers */
    uint64_t ewma_us; /* response time EWMA, 0 = no sample yet */
};

/* Per-worker, per-region selector state (owned by the worker). */
struct mrd_balance_state {
    size_t n;
    int64_t *current; /* smooth weighted round robin: current weights */
    size_t next;      /* rotating start for least_connections ties */
};

void mrd_balance_state_init(struct mrd_balance_state *s, size_t n);
void mrd_balance_state_dispose(struct mrd_balance_state *s);

/*
 * Pick a target index among those healthy and not tried (tried may be NULL).
 *  - MRD_BALANCE_ROUND_ROBIN: smooth weighted round robin (as nginx): over a
 *    cycle of sum(weights) picks, each target gets exactly its weight.
 *  - MRD_BALANCE_LEAST_CONN: the lowest active/weight; ties rotate.
 *  - MRD_BALANCE_P2C_EWMA: two distinct candidates drawn from rnd, the one
 *    with the lower (ewma_us + 1) * (active + 1) / weight wins; a target with
 *    no sample counts as the cheapest so that it gets measured.
 * Returns the index, or -1 when no target is eligible.
 */
int mrd_balance_pick(enum mrd_balance mode, const struct mrd_balance_target *t, size_t n,
                     const unsigned char *tried, struct mrd_balance_state *s, uint64_t rnd);

/* Exponentially weighted moving average in integers: alpha = 1 / 2^shift.
 * A zero `old` (no sample) takes the sample as is. */
static inline uint64_t
mrd_ewma_update(uint64_t old, uint64_t sample, unsigned shift)
{
    if (old == 0)
        return sample ? sample : 1;
    int64_t d = (int64_t)sample - (int64_t)old;
    int64_t r = (int64_t)old + d / (1 << shift);
    return r > 0 ? (uint64_t)r : 1;
}

#endif
