/*
 * cluster_status.c: what the fleet looks like (SPEC 8) for /v1/status and
 * /metrics, from the view cluster.c gives (main thread only).
 */
#include <stdatomic.h>
#include <string.h>

#include <event2/buffer.h>

#include "meridian/clock.h"
#include "meridian/cluster-int.h"
#include "meridian/cluster.h"
#include "meridian/common.h"
#include "meridian/fleet.h"
#include "meridian/ratelimit.h"
#include "meridian/route.h"
#include "meridian/server.h"

static const char *
mode_name(enum mrd_fleet_mode m)
{
    switch (m) {
    case MRD_FLEET_SHARED: return "shared";
    case MRD_FLEET_LOCAL: return "local";
    case MRD_FLEET_OPEN: return "open";
    case MRD_FLEET_OFF: break;
    }
    return "off";
}

void
mrd_cluster_status_json(struct evbuffer *b)
{
    uint64_t now = mrd_now_ms();
    struct mrd_cluster_view cl;
    enum mrd_fleet_mode mode;

    mrd_cluster_view(&cl);
    mode = cl.mode;
    if (cl.conf == NULL) {
        evbuffer_add_printf(b, "null");
        return;
    }
    evbuffer_add_printf(b, "{\"name\": ");
    mrd_admin_json_string(b, cl.conf->name);
    evbuffer_add_printf(b, ", \"instance\": ");
    mrd_admin_json_string(b, cl.instance);
    evbuffer_add_printf(b, ", \"mode\": \"%s\", \"sync_interval_ms\": %llu,\n  \"redis\": {\"address\": ",
                        mode_name(mode), (unsigned long long)cl.conf->sync_interval_ms);
    mrd_admin_json_string(b, cl.conf->address);
    evbuffer_add_printf(b, ", \"state\": \"%s\", \"last_error\": ", cl.redis_state);
    if (cl.last_error != NULL)
        mrd_admin_json_string(b, cl.last_error);
    else
        evbuffer_add_printf(b, "null");
    evbuffer_add_printf(b, "},\n  \"last_sync_ms_ago\": ");
    if (cl.last_sync_ms)
        evbuffer_add_printf(b, "%llu", (unsigned long long)(now - cl.last_sync_ms));
    else
        evbuffer_add_printf(b, "null");
    evbuffer_add_printf(b, ", \"instances\": %u, \"regions\": [", cl.n_live);
    for (size_t i = 0; i < cl.n_regions; i++) {
        struct mrd_region_state *st = cl.regions[i].st;
        uint64_t rate, burst;
        mrd_fleet_share(mode, st->capacity_rps, st->capacity_burst, cl.n_live, &rate, &burst);
        evbuffer_add_printf(b, "%s{\"name\": ", i ? ",\n   " : "");
        mrd_admin_json_string(b, cl.regions[i].rc->name);
        evbuffer_add_printf(b,
                            ", \"capacity_rps\": %llu, \"share_rps\": %.3f, \"fleet_rate\": %.3f, \"rate\": %.3f, "
                            "\"lease_tokens\": %lld, \"leased\": %llu, \"spent\": %llu, \"returned\": %llu, "
                            "\"expired\": %llu}",
                            (unsigned long long)st->capacity_rps, (double)rate / 1000.0,
                            mrd_route_region_rate(st, now), mrd_rate_per_s(&st->rate, now),
                            (long long)mrd_lease_tokens(&st->lease), (unsigned long long)atomic_load(&st->lease.leased),
                            (unsigned long long)atomic_load(&st->lease.spent),
                            (unsigned long long)atomic_load(&st->lease.returned),
                            (unsigned long long)atomic_load(&st->lease.expired));
    }
    evbuffer_add_printf(b, "]}");
}

void
mrd_cluster_metrics(struct mrd_buf *b)
{
    static const char *const kinds[] = {"leased", "spent", "returned", "expired"};
    unsigned long long cum = 0;
    struct mrd_cluster_view cl;

    mrd_cluster_view(&cl);
    if (cl.conf == NULL)
        return;
    mrd_buf_printf(b, "# HELP meridian_cluster_redis_up 1 when the last exchange with Redis succeeded.\n"
                      "# TYPE meridian_cluster_redis_up gauge\nmeridian_cluster_redis_up %d\n",
                   cl.up);
    mrd_buf_printf(b, "# HELP meridian_cluster_instances Live instances of the fleet at the last sync.\n"
                      "# TYPE meridian_cluster_instances gauge\nmeridian_cluster_instances %u\n",
                   cl.n_live);
    mrd_buf_printf(b, "# HELP meridian_cluster_sync_seconds Time of the successful syncs with Redis.\n"
                      "# TYPE meridian_cluster_sync_seconds histogram\n");
    for (size_t i = 0; i <= cl.n_sync_buckets; i++) {
        cum += cl.sync_buckets[i];
        if (i < cl.n_sync_buckets)
            mrd_buf_printf(b, "meridian_cluster_sync_seconds_bucket{le=\"%g\"} %llu\n", cl.sync_bucket_s[i], cum);
        else
            mrd_buf_printf(b, "meridian_cluster_sync_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    }
    mrd_buf_printf(b, "meridian_cluster_sync_seconds_sum %.6f\nmeridian_cluster_sync_seconds_count %llu\n",
                   cl.sync_sum_s, cl.sync_count);
    mrd_buf_printf(b, "# HELP meridian_cluster_sync_failures_total Exchanges with Redis that failed.\n"
                      "# TYPE meridian_cluster_sync_failures_total counter\nmeridian_cluster_sync_failures_total %llu\n",
                   cl.syncs_failed);
    mrd_buf_printf(b, "# HELP meridian_cluster_tokens_total Fleet tokens of each capped region, by what became of "
                      "them.\n# TYPE meridian_cluster_tokens_total counter\n");
    for (size_t i = 0; i < cl.n_regions; i++) {
        struct mrd_lease *l = &cl.regions[i].st->lease;
        unsigned long long v[] = {atomic_load(&l->leased), atomic_load(&l->spent), atomic_load(&l->returned),
                                  atomic_load(&l->expired)};
        for (size_t k = 0; k < MRD_ARRAY_LEN(kinds); k++)
            mrd_buf_printf(b, "meridian_cluster_tokens_total{region=\"%s\",kind=\"%s\"} %llu\n",
                           cl.regions[i].rc->name, kinds[k], v[k]);
    }
}
