/*
 * metrics.h: process-wide counters for the admin API's /metrics (Prometheus
 * text format) and /v1/status. Counters are relaxed atomics: a request adds
 * to two or three of them; a scrape reads them all.
 */
#ifndef MERIDIAN_METRICS_H
#define MERIDIAN_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "meridian/buf.h"

#define MRD_METRICS_CODES 600 /* status codes 0..599 */
#define MRD_METRICS_BUCKETS 12

/* per region, inside its registry entry (gen.h) */
struct mrd_region_metrics {
    atomic_uint_fast64_t requests[MRD_METRICS_CODES];
    atomic_uint_fast64_t shed_capacity;
};

struct mrd_region_state;
struct mrd_gen;
struct mrd_route_scratch;

/* one answered request: region NULL when none was chosen (rejected before
 * routing, geo-blocked, shed...) */
void mrd_metrics_request(struct mrd_region_state *region, int status, uint64_t duration_us);
void mrd_metrics_shed(struct mrd_region_state *region);
void mrd_metrics_reload(int ok);
/* a replaced geo database file was loaded (ok) or failed to open (SPEC 11) */
void mrd_metrics_geo_reload(int ok);
void mrd_metrics_retry(void);
void mrd_metrics_connect_error(void);
void mrd_metrics_tls_handshake(void);
void mrd_metrics_h2_stream(void);
/* why a worker stopped accepting for a moment (worker.c); the reason label
 * of meridian_accept_paused_total: fds, memory, max_connections, error */
enum { MRD_ACCEPT_PAUSE_FDS, MRD_ACCEPT_PAUSE_MEMORY, MRD_ACCEPT_PAUSE_MAXCONN, MRD_ACCEPT_PAUSE_ERROR,
       MRD_ACCEPT_PAUSE_REASONS };
void mrd_metrics_accept_paused(int reason);

/* Process start: the uptime origin; also installs the client_ip hook that
 * counts (and logs at debug level) client address headers that do not parse. */
void mrd_metrics_started(void);
long long mrd_metrics_uptime_s(void);

/* the whole exposition for generation g */
void mrd_metrics_render(struct mrd_buf *out, struct mrd_gen *g, struct mrd_route_scratch *scratch);

#endif
