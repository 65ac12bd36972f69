/*
 * gen.h: configuration generations and the registry of state that outlives
 * them (STYLE 2.3 rules 6-7).
 *
 * A generation is an immutable config plus everything derived from it
 * (region table, per-worker balancer state). It is reference-counted: the
 * main thread holds one, each worker one, each connection and request one; the
 * last release frees it. Upstream state (health, in-flight count, EWMA, idle
 * keep-alive connections) lives in the registry keyed by address, so it
 * carries over across reloads for addresses that did not change.
 */
#ifndef MERIDIAN_GEN_H
#define MERIDIAN_GEN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "meridian/balance.h"
#include "meridian/config.h"
#include "meridian/fleet.h"
#include "meridian/health.h"
#include "meridian/metrics.h"
#include "meridian/ratelimit.h"

struct mrd_uconn;

/* per worker list of idle keep-alive connections to one upstream */
struct mrd_idle_list {
    struct mrd_uconn *head;
    unsigned count;
};

/* registry entry; owned by the registry, refcounted by generations and uconns */
struct mrd_upstream_state {
    atomic_int refcnt;
    atomic_int healthy;
    atomic_int checked;        /* an active health check covers it (health.c) */
    atomic_uint active;        /* requests in flight, all workers */
    atomic_uint_fast64_t ewma_us; /* response time EWMA; 0 = no sample */
    atomic_uint_fast64_t connects; /* new TCP connections opened */
    atomic_uint fails;         /* consecutive failed attempts, all workers (passive health) */
    atomic_uint fall;          /* health_check.fall of the check that covers it (health.c) */
    atomic_uint_fast64_t failures[MRD_UPF_N]; /* failed attempts by kind (metrics) */
    atomic_uint_fast64_t last_gen; /* id of the newest generation that has it (idle pool, upstream.c) */
    char name[64];             /* "ip:port" */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int send_proxy;             /* PROXY protocol version sent first (0 none); part of the registry key */
    struct mrd_idle_list *idle; /* [n_workers]; slot i only touched by worker i */
    /* upstream_tls (SPEC 7): tls and tls_name are part of the registry key,
     * so that a pool never mixes TLS and plaintext or names */
    int tls;
    int tls_name_ip;       /* tls_name is an IP literal: verified, no SNI */
    char tls_name[256];    /* server_name, else the host of the address */
    pthread_mutex_t tls_lock;       /* guards the cached session and tls_ctx_last */
    void *tls_session;              /* SSL_SESSION to resume (tls_upstream.c) */
    void *tls_ctx_last;             /* SSL_CTX (a reference) of the last connection, for retries
                                       after a reload dropped its region */
    uint64_t tls_session_ctx;       /* id of the struct mrd_uptls it came from */
    atomic_uint_fast64_t tls_log_ms; /* last handshake failure logged (once a minute) */
    struct mrd_upstream_state *next;
};

/* registry entry per region (name and capacity): the cap's token bucket,
 * the admitted-rate window and the TTFB EWMA, shared by all workers and
 * carried across reloads that keep the region's name and capacity */
struct mrd_region_state {
    struct mrd_bucket bucket __attribute__((aligned(64)));
    struct mrd_rate rate __attribute__((aligned(64)));
    /* a fleet (SPEC 8, cluster.c): fleet_mode is an enum mrd_fleet_mode
     * (OFF without a cluster block); in SHARED mode requests spend the
     * lease, otherwise the bucket (retuned to the mode's share) */
    struct mrd_lease lease __attribute__((aligned(64)));
    atomic_int fleet_mode;
    atomic_uint_fast64_t fleet_rate_milli; /* the fleet's admitted rate * 1000 at the last sync */
    atomic_uint_fast64_t fleet_self_milli; /* this instance's part of it (reported then) */
    /* cluster.c's own (main thread): the demand seen at the last sync and its rate */
    uint64_t fleet_demand_seen;
    double fleet_demand_rate;
    int64_t fleet_spare; /* the fleet bucket's tokens left at the last sync */
    atomic_uint_fast64_t ttfb_ewma_us; /* 0 = no sample */
    struct mrd_region_metrics metrics;
    atomic_int refcnt;
    char name[64];
    uint64_t capacity_rps, capacity_burst;
    struct mrd_region_state *next;
};

struct mrd_route_table;
struct mrd_tls;
struct mrd_geo;
struct mrd_client_limiter;

struct mrd_uptls;

struct mrd_region {
    const struct mrd_region_conf *conf;
    struct mrd_uptls *tls; /* upstream_tls client context; NULL for plaintext */
    struct mrd_region_state *st;
    size_t idx;
    struct mrd_upstream_state **ups;
    unsigned *weights;
    const struct mrd_upstream_conf **uconf; /* [n_ups]: the entry each comes from (a host name gives several) */
    size_t n_ups;
    struct mrd_balance_state *bal; /* [n_workers] */
};

struct mrd_gen {
    atomic_int refcnt;
    uint64_t id;
    time_t loaded_at;
    struct mrd_config *conf;
    struct mrd_region *regions;
    size_t n_regions;
    struct mrd_route_table *route;     /* scoring data derived from conf */
    struct mrd_geo *geo;               /* networks table + MaxMind DB */
    struct mrd_client_limiter *climit; /* policies.client_rate_limit, NULL when off */
    struct mrd_tls **tls;              /* per listener; NULL entries for plaintext ones */
};

/* bound on the per-client rate limit table (policies.client_rate_limit) */
#define MRD_CLIENT_LIMITER_ENTRIES 65536

/* EWMA (alpha 1/8) shared by threads; a lost race only drops one sample */
static inline void
mrd_ewma_add_atomic(atomic_uint_fast64_t *v, uint64_t sample_us)
{
    uint_fast64_t old = atomic_load_explicit(v, memory_order_relaxed);
    atomic_compare_exchange_weak(v, &old, mrd_ewma_update(old, sample_us, 3));
}

/* number of worker threads, fixed for the life of the process */
extern unsigned mrd_n_workers;

/* Build a generation from a validated config (takes ownership of conf).
 * Returns NULL and adds diagnostics on failure (conf is freed then). */
struct mrd_gen *mrd_gen_new(struct mrd_config *conf, struct mrd_diag *diag);

/* The same, with the addresses of upstream host names: lookup(host, arg)
 * gives the current set of a name (NULL: none yet), and every address
 * becomes an upstream of the region with its entry's options (dns.h). */
struct mrd_ipset;
typedef const struct mrd_ipset *(*mrd_dns_lookup_fn)(const char *host, void *arg);
struct mrd_gen *mrd_gen_new_resolved(struct mrd_config *conf, mrd_dns_lookup_fn lookup, void *arg,
                                     struct mrd_diag *diag);
void mrd_gen_acquire(struct mrd_gen *g);
void mrd_gen_release(struct mrd_gen *g);

void mrd_upstream_state_acquire(struct mrd_upstream_state *s);
void mrd_upstream_state_release(struct mrd_upstream_state *s);

#endif
