/*
 * health.h: upstream health. The rise/fall state machine is pure
 * (mrd_health_step); the active prober (health.c) runs on the main thread's
 * event base so that checks never block a worker, and only flips the shared
 * `healthy` flag of the upstream's registry entry. Passive health: a worker
 * that sees a connection to an upstream fail marks it down at once
 * (mrd_health_passive_fail); it comes back after `rise` passing checks.
 */
#ifndef MERIDIAN_HEALTH_H
#define MERIDIAN_HEALTH_H

#include <stdint.h>

struct event_base;
struct mrd_gen;
struct mrd_upstream_state;

enum mrd_health_transition {
    MRD_HEALTH_SAME = 0,
    MRD_HEALTH_UP,   /* became healthy */
    MRD_HEALTH_DOWN, /* became unhealthy */
};

/* Feed one check result. *healthy is the current state, *streak counts
 * consecutive results that disagree with it (successes while down, failures
 * while up). Returns the transition (and updates both). */
static inline enum mrd_health_transition
mrd_health_step(int *healthy, unsigned *streak, int ok, unsigned rise, unsigned fall)
{
    if ((ok != 0) == (*healthy != 0)) {
        *streak = 0;
        return MRD_HEALTH_SAME;
    }
    (*streak)++;
    if (*healthy && *streak >= fall) {
        *healthy = 0;
        *streak = 0;
        return MRD_HEALTH_DOWN;
    }
    if (!*healthy && *streak >= rise) {
        *healthy = 1;
        *streak = 0;
        return MRD_HEALTH_UP;
    }
    return MRD_HEALTH_SAME;
}

/* Start (or restart after a reload) the probers for every upstream of g that
 * has a health_check; state lives in the registry and carries over. */
void mrd_health_start(struct event_base *base, struct mrd_gen *g);
void mrd_health_stop(void);

/* A worker saw a connection failure: out of rotation now, when active checks
 * will bring it back (without a health_check it stays in rotation and only
 * the request is retried). */
void mrd_health_passive_fail(struct mrd_upstream_state *st);

#endif
