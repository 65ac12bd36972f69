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

#endif
