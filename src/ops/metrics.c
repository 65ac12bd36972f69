/*
 * metrics.c: the counters behind /metrics and their Prometheus text
 * exposition (version 0.0.4). Per-region counters live in the region's
 * registry entry, so they survive reloads that keep the region.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "meridian/clientip.h"
#include "meridian/cluster.h"
#include "meridian/common.h"
#include "meridian/config.h"
#include "meridian/gen.h"
#include "meridian/geo.h"
#include "meridian/log.h"
#include "meridian/metrics.h"
#include "meridian/ratelimit.h"
#include "meridian/resolver.h"
#include "meridian/route.h"
#include "meridian/server.h"

/* upper bounds of the duration histogram, microseconds */
static const uint64_t bucket_us[MRD_METRICS_BUCKETS] = {1000,   5000,    10000,   25000,   50000,   100000,
                                                        250000, 500000, 1000000, 2500000, 5000000, 10000000};

static struct {
    atomic_uint_fast64_t requests_none[MRD_METRICS_CODES];
    atomic_uint_fast64_t buckets[MRD_METRICS_BUCKETS + 1]; /* the last is +Inf */
    atomic_uint_fast64_t duration_sum_us, duration_count;
    atomic_uint_fast64_t reloads_ok, reloads_error;
    atomic_uint_fast64_t retries, connect_errors, tls_handshakes, h2_streams;
    atomic_uint_fast64_t geo_reloads_ok, geo_reloads_error;
    atomic_uint_fast64_t client_ip_invalid;
    atomic_uint_fast64_t client_ip_log_next_ms, client_ip_log_suppressed;
    atomic_uint_fast64_t accept_paused[MRD_ACCEPT_PAUSE_REASONS];
} m;

static const char *const pause_reason[MRD_ACCEPT_PAUSE_REASONS] = {"fds", "memory", "max_connections", "error"};

static time_t started_at;

#define ADD(x) atomic_fetch_add_explicit(&(x), 1, memory_order_relaxed)
#define GET(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

void
mrd_metrics_request(struct mrd_region_state *region, int status, uint64_t duration_us)
{
    size_t b = 0;

    if (status < 0 || status >= MRD_METRICS_CODES)
        status = 0;
    if (region != NULL)
        ADD(region->metrics.requests[status]);
    else
        ADD(m.requests_none[status]);
    while (b < MRD_METRICS_BUCKETS && duration_us > bucket_us[b])
        b++;
    ADD(m.buckets[b]);
    atomic_fetch_add_explicit(&m.duration_sum_us, duration_us, memory_order_relaxed);
    ADD(m.duration_count);
}

void
mrd_metrics_shed(struct mrd_region_state *region)
{
    ADD(region->metrics.shed_capacity);
}

void
mrd_metrics_reload(int ok)
{
    if (ok)
        ADD(m.reloads_ok);
    else
        ADD(m.reloads_error);
}

void
mrd_metrics_geo_reload(int ok)
{
    if (ok)
        ADD(m.geo_reloads_ok);
    else
        ADD(m.geo_reloads_error);
}

/* An unparsable client_ip.header entry from a trusted peer: counted, and
 * logged at debug level at most once a second (any client behind a trusted
 * proxy can send one, so the log could be flooded), with the number of
 * lines left out since the previous one. */
static void
on_client_ip_invalid(const struct mrd_client_ip_conf *conf, const struct mrd_ip *peer, const char *entry,
                     size_t len, const struct mrd_ip *used)
{
    char shown[100], peer_s[MRD_IP_STRLEN], used_s[MRD_IP_STRLEN];
    uint_fast64_t next, now;
    size_t n = 0;

    ADD(m.client_ip_invalid);
    if (mrd_log_verbosity < MRD_LOG_DEBUG)
        return;
    now = mrd_now_ms();
    next = atomic_load_explicit(&m.client_ip_log_next_ms, memory_order_relaxed);
    if (now < next || !atomic_compare_exchange_strong(&m.client_ip_log_next_ms, &next, now + 1000)) {
        ADD(m.client_ip_log_suppressed);
        return;
    }
    /* the entry as received, non-printable bytes escaped, cut at 64 bytes */
    for (size_t i = 0; i < len && i < 64 && n + 5 < sizeof(shown); i++) {
        unsigned char ch = (unsigned char)entry[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
            shown[n++] = (char)ch;
        else
            n += (size_t)snprintf(shown + n, sizeof(shown) - n, "\\x%02x", ch);
    }
    shown[n] = '\0';
    mrd_ip_format(peer, peer_s, sizeof(peer_s));
    mrd_ip_format(used, used_s, sizeof(used_s));
    mrd_log(MRD_LOG_DEBUG, "client_ip: %s from trusted peer %s has an entry that is not an address (\"%s%s\"); "
            "the client is %s (%llu such lines left out before this one)", conf->header, peer_s, shown,
            len > 64 ? "..." : "", used_s,
            (unsigned long long)atomic_exchange(&m.client_ip_log_suppressed, 0));
}

void
mrd_metrics_retry(void)
{
    ADD(m.retries);
}

void
mrd_metrics_connect_error(void)
{
    ADD(m.connect_errors);
}

void
mrd_metrics_tls_handshake(void)
{
    ADD(m.tls_handshakes);
}

void
mrd_metrics_h2_stream(void)
{
    ADD(m.h2_streams);
}

void
mrd_metrics_accept_paused(int reason)
{
    if (reason >= 0 && reason < MRD_ACCEPT_PAUSE_REASONS)
        ADD(m.accept_paused[reason]);
}

static void
family(struct mrd_buf *b, const char *name, const char *type, const char *help)
{
    mrd_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
codes(struct mrd_buf *b, const char *region, atomic_uint_fast64_t *counts)
{
    for (int c = 0; c < MRD_METRICS_CODES; c++) {
        unsigned long long v = GET(counts[c]);
        if (v)
            mrd_buf_printf(b, "meridian_requests_total{region=\"%s\",code=\"%d\"} %llu\n", region, c, v);
    }
}

void
mrd_metrics_render(struct mrd_buf *b, struct mrd_gen *g, struct mrd_route_scratch *scratch)
{
    static const char *const factor[] = {"geography", "health", "latency", "cost", "score"};
    unsigned long long cum = 0;
    struct mrd_route_out out;
    uint64_t now = mrd_now_ms();

    family(b, "meridian_requests_total", "counter", "Requests answered, by region and status code.");
    for (size_t i = 0; i < g->n_regions; i++)
        codes(b, g->regions[i].conf->name, g->regions[i].st->metrics.requests);
    codes(b, "", m.requests_none);

    family(b, "meridian_request_duration_seconds", "histogram", "Time from request head to the end of the response.");
    for (size_t i = 0; i <= MRD_METRICS_BUCKETS; i++) {
        cum += GET(m.buckets[i]);
        if (i < MRD_METRICS_BUCKETS)
            mrd_buf_printf(b, "meridian_request_duration_seconds_bucket{le=\"%g\"} %llu\n", bucket_us[i] / 1e6, cum);
        else
            mrd_buf_printf(b, "meridian_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    }
    mrd_buf_printf(b, "meridian_request_duration_seconds_sum %.6f\nmeridian_request_duration_seconds_count %llu\n",
                   (double)GET(m.duration_sum_us) / 1e6, GET(m.duration_count));

    family(b, "meridian_region_score", "gauge",
           "Scoring factors and score of each region for a client of unknown location (geography 0.5).");
    mrd_route_factors_unknown(g, scratch, &out);
    for (size_t i = 0; i < g->n_regions; i++) {
        const struct mrd_route_factors *f = &out.regions[i];
        double v[] = {f->geography, f->health, f->latency, f->cost, f->score};
        for (size_t k = 0; k < MRD_ARRAY_LEN(factor); k++)
            mrd_buf_printf(b, "meridian_region_score{region=\"%s\",factor=\"%s\"} %.6f\n", g->regions[i].conf->name,
                           factor[k], v[k]);
    }

    family(b, "meridian_region_rate", "gauge", "Admitted requests per second over a sliding one-second window.");
    for (size_t i = 0; i < g->n_regions; i++)
        mrd_buf_printf(b, "meridian_region_rate{region=\"%s\"} %.3f\n", g->regions[i].conf->name,
                       mrd_rate_per_s(&g->regions[i].st->rate, now));

    family(b, "meridian_region_tokens", "gauge", "Tokens left in the region's cap bucket (capped regions).");
    for (size_t i = 0; i < g->n_regions; i++)
        if (g->regions[i].conf->capacity_rps)
            mrd_buf_printf(b, "meridian_region_tokens{region=\"%s\"} %.3f\n", g->regions[i].conf->name,
                           (double)mrd_bucket_tokens_milli(&g->regions[i].st->bucket, now) / 1000.0);

    family(b, "meridian_shed_total", "counter", "Requests shed with 503, by the region that had no token.");
    for (size_t i = 0; i < g->n_regions; i++)
        mrd_buf_printf(b, "meridian_shed_total{region=\"%s\",reason=\"capacity\"} %llu\n", g->regions[i].conf->name,
                       GET(g->regions[i].st->metrics.shed_capacity));

    family(b, "meridian_upstream_healthy", "gauge", "1 when the upstream is in rotation.");
    for (size_t i = 0; i < g->n_regions; i++)
        for (size_t j = 0; j < g->regions[i].n_ups; j++)
            mrd_buf_printf(b, "meridian_upstream_healthy{region=\"%s\",upstream=\"%s\"} %d\n",
                           g->regions[i].conf->name, g->regions[i].ups[j]->name,
                           atomic_load(&g->regions[i].ups[j]->healthy) ? 1 : 0);

    family(b, "meridian_upstream_failures_total", "counter",
           "Failed attempts on the upstream, by kind (passive health counts them).");
    for (size_t i = 0; i < g->n_regions; i++)
        for (size_t j = 0; j < g->regions[i].n_ups; j++)
            for (int k = 0; k < MRD_UPF_N; k++)
                mrd_buf_printf(b, "meridian_upstream_failures_total{region=\"%s\",upstream=\"%s\",kind=\"%s\"} %llu\n",
                               g->regions[i].conf->name, g->regions[i].ups[j]->name,
                               mrd_upstream_failure_name((enum mrd_upstream_failure)k),
                               GET(g->regions[i].ups[j]->failures[k]));

    family(b, "meridian_upstream_active", "gauge", "Requests in flight to the upstream.");
    for (size_t i = 0; i < g->n_regions; i++)
        for (size_t j = 0; j < g->regions[i].n_ups; j++)
            mrd_buf_printf(b, "meridian_upstream_active{region=\"%s\",upstream=\"%s\"} %u\n", g->regions[i].conf->name,
                           g->regions[i].ups[j]->name, atomic_load(&g->regions[i].ups[j]->active));

    family(b, "meridian_connections_active", "gauge", "Open client connections.");
    mrd_buf_printf(b, "meridian_connections_active %u\n", atomic_load(&mrd_connections_active));

    family(b, "meridian_config_reloads_total", "counter", "Configuration reloads (SIGHUP), by result.");
    mrd_buf_printf(b, "meridian_config_reloads_total{result=\"success\"} %llu\n", GET(m.reloads_ok));
    mrd_buf_printf(b, "meridian_config_reloads_total{result=\"error\"} %llu\n", GET(m.reloads_error));

    family(b, "meridian_geo_database_reloads_total", "counter",
           "Replacements of the geo.database file seen without a configuration reload (SPEC 11), by result.");
    mrd_buf_printf(b, "meridian_geo_database_reloads_total{result=\"success\"} %llu\n", GET(m.geo_reloads_ok));
    mrd_buf_printf(b, "meridian_geo_database_reloads_total{result=\"error\"} %llu\n", GET(m.geo_reloads_error));
    {
        struct mrd_geo_db_info gi;
        mrd_geo_db_info(g->geo, &gi);
        if (gi.open) {
            family(b, "meridian_geo_database_build_epoch", "gauge",
                   "Build time (MMDB metadata build_epoch, Unix seconds) of the geo database in use.");
            mrd_buf_printf(b, "meridian_geo_database_build_epoch %llu\n", (unsigned long long)gi.build_epoch);
        }
    }
    {
        unsigned long long ok, failed;
        mrd_resolver_counts(&ok, &failed);
        family(b, "meridian_dns_resolutions_total", "counter",
               "Resolutions of upstream host names (hosts file or DNS) by result.");
        mrd_buf_printf(b, "meridian_dns_resolutions_total{result=\"success\"} %llu\n", ok);
        mrd_buf_printf(b, "meridian_dns_resolutions_total{result=\"error\"} %llu\n", failed);
    }
    family(b, "meridian_client_ip_invalid_total", "counter",
           "Requests from a trusted proxy whose client_ip.header had an entry that is not an address.");
    mrd_buf_printf(b, "meridian_client_ip_invalid_total %llu\n", GET(m.client_ip_invalid));

    family(b, "meridian_retries_total", "counter", "Requests repeated on another upstream after a failure.");
    mrd_buf_printf(b, "meridian_retries_total %llu\n", GET(m.retries));
    family(b, "meridian_upstream_connect_errors_total", "counter", "Upstream connections that failed to open.");
    mrd_buf_printf(b, "meridian_upstream_connect_errors_total %llu\n", GET(m.connect_errors));
    family(b, "meridian_tls_handshakes_total", "counter", "Completed TLS handshakes.");
    mrd_buf_printf(b, "meridian_tls_handshakes_total %llu\n", GET(m.tls_handshakes));
    family(b, "meridian_http2_streams_total", "counter", "HTTP/2 request streams.");
    mrd_buf_printf(b, "meridian_http2_streams_total %llu\n", GET(m.h2_streams));
    family(b, "meridian_accept_paused_total", "counter",
           "Times a worker paused accepting (out of descriptors or memory, at limits.max_connections).");
    for (int r = 0; r < MRD_ACCEPT_PAUSE_REASONS; r++)
        mrd_buf_printf(b, "meridian_accept_paused_total{reason=\"%s\"} %llu\n", pause_reason[r],
                       GET(m.accept_paused[r]));

    mrd_cluster_metrics(b);

    family(b, "meridian_config_generation", "gauge", "Generation number of the configuration in use.");
    mrd_buf_printf(b, "meridian_config_generation %llu\n", (unsigned long long)g->id);
    family(b, "meridian_uptime_seconds", "gauge", "Seconds since the process started serving.");
    mrd_buf_printf(b, "meridian_uptime_seconds %lld\n", mrd_metrics_uptime_s());
}

void
mrd_metrics_started(void)
{
    started_at = time(NULL);
    atomic_store(&mrd_client_ip_on_invalid, on_client_ip_invalid);
}

long long
mrd_metrics_uptime_s(void)
{
    return (long long)(time(NULL) - started_at);
}
