/*
 * cluster-int.h: between cluster.c (the Redis side) and cluster_status.c
 * (its status and metrics). Nothing else includes it.
 */
#ifndef MERIDIAN_CLUSTER_INT_H
#define MERIDIAN_CLUSTER_INT_H

#include <stddef.h>
#include <stdint.h>

#include "meridian/config.h"
#include "meridian/fleet.h"
#include "meridian/gen.h"

#define MRD_CLUSTER_KEY_MAX 200

/* one capped region of the committed generation */
struct mrd_cluster_region {
    struct mrd_region_state *st;
    const struct mrd_region_conf *rc;
    char cap_key[MRD_CLUSTER_KEY_MAX], rate_key[MRD_CLUSTER_KEY_MAX];
};

/* cluster.c's state as of now; valid until the next call into cluster.c */
struct mrd_cluster_view {
    const struct mrd_cluster_conf *conf; /* NULL: no cluster block (nothing else is set) */
    const char *instance;
    enum mrd_fleet_mode mode;
    const char *redis_state; /* "up", "down" or "connecting" */
    int up;
    const char *last_error; /* NULL: none yet */
    uint64_t last_sync_ms;  /* monotonic, 0 = never */
    unsigned n_live;
    const struct mrd_cluster_region *regions;
    size_t n_regions;
    const double *sync_bucket_s;               /* [n_sync_buckets] upper bounds */
    const unsigned long long *sync_buckets;    /* [n_sync_buckets + 1], the last one +Inf */
    size_t n_sync_buckets;
    unsigned long long sync_count, syncs_failed;
    double sync_sum_s;
};

void mrd_cluster_view(struct mrd_cluster_view *v);

/* The replies a Redis sends, checked (what a malicious or broken Redis
 * controls; tests/fuzz/fuzz_resp.c drives them through hiredis's reader).
 * -1 with why (a message for the log) when the reply is not what the
 * script returns. */
struct redisReply;

/* hiredis's reply functions with arrays bounded (a count read from the
 * wire is allocated at once by hiredis 0.14): cluster.c's connection
 * reads with them, and so does the fuzz target */
struct redisReplyObjectFunctions;
const struct redisReplyObjectFunctions *mrd_cluster_reader_functions(void);

/* the caps script's: see mrd_fleet_parse_reply, plus every element an integer */
int mrd_cluster_caps_reply(const struct redisReply *r, size_t n_regions, const int64_t *want, uint64_t *now_ms,
                           unsigned *n_live, struct mrd_fleet_grant *out, char *why, size_t why_len);

/* the client script's: pairs of a client (hex of 4 or 16 bytes) and a debt
 * (an integer >= 0, microseconds); all checked before fn sees any */
int mrd_cluster_clients_reply(const struct redisReply *r,
                              void (*fn)(void *arg, const uint8_t *key, size_t len, uint64_t debt_us), void *arg,
                              char *why, size_t why_len);

#endif
