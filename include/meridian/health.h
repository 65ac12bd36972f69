/*
 * health.h: upstream health. The rise/fall state machine is pure
 * (mrd_health_step); the active prober (health.c) runs on the main thread's
 * event base so that checks never block a worker, and only flips the shared
 * `healthy` flag of the upstream's registry entry. Passive health (SPEC 3.5,
 * 12): a worker reports every failed attempt (mrd_health_passive_fail) and
 * every good response (mrd_health_passive_ok); a connection that fails to
 * open or is reset takes the upstream out of rotation at once, the other
 * failures after `fall` of them in a row (counted in the registry entry, so
 * that all workers add up). It comes back after `rise` passing checks.
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

/* why an attempt on an upstream failed (passive health, metrics) */
enum mrd_upstream_failure {
    MRD_UPF_REFUSED = 0,     /* the connection could not be opened (refused, unreachable) */
    MRD_UPF_RESET,           /* reset, or a fresh connection closed, before any response byte */
    MRD_UPF_CONNECT_TIMEOUT, /* timeouts.connect */
    MRD_UPF_TIMEOUT,         /* no response head within upstream_response, or silent mid-response */
    MRD_UPF_MALFORMED,       /* unparsable or ambiguous response head or chunked framing, head too large */
    MRD_UPF_TRUNCATED,       /* closed or reset after part of the response */
    MRD_UPF_N
};

/* the kind as a metrics label */
static inline const char *
mrd_upstream_failure_name(enum mrd_upstream_failure k)
{
    static const char *const names[MRD_UPF_N] = {"refused", "reset", "connect_timeout", "timeout", "malformed",
                                                 "truncated"};
    return (unsigned)k < MRD_UPF_N ? names[k] : "other";
}

/* Passive health decision: after a failed attempt of `kind`, with
 * `consecutive` failures in a row now counted (this one included), does the
 * upstream leave rotation? Only upstreams with an active check (`checked`)
 * ever do, since only checks bring them back; a connection that could not be
 * opened or was reset leaves at once (SPEC 3.5), anything else after `fall`
 * in a row (SPEC 12). */
static inline int
mrd_health_passive_eject(enum mrd_upstream_failure kind, unsigned consecutive, unsigned fall, int checked)
{
    if (!checked)
        return 0;
    if (kind == MRD_UPF_REFUSED || kind == MRD_UPF_RESET)
        return 1;
    return consecutive >= (fall ? fall : 1);
}

/* Start (or restart after a reload) the probers for every upstream of g that
 * has a health_check; state lives in the registry and carries over. */
void mrd_health_start(struct event_base *base, struct mrd_gen *g);
void mrd_health_stop(void);

/* A worker saw an attempt on st fail: counted (and in the metrics), and out
 * of rotation when mrd_health_passive_eject says so (without a health_check
 * it stays in rotation and only the request is retried when it may be). */
void mrd_health_passive_fail(struct mrd_upstream_state *st, enum mrd_upstream_failure kind);
/* a complete response from st: the run of consecutive failures is over */
void mrd_health_passive_ok(struct mrd_upstream_state *st);

#endif
