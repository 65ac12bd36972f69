/*
 * gen.c: building, sharing and freeing configuration generations, and the
 * registry of per-upstream state that survives reloads (see gen.h).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meridian/addr.h"
#include "meridian/clock.h"
#include "meridian/common.h"
#include "meridian/dns.h"
#include "meridian/gen.h"
#include "meridian/geo.h"
#include "meridian/score.h"
#include "meridian/tls.h"
#include "meridian/tls_upstream.h"
#include "meridian/tlsname.h"

unsigned mrd_n_workers = 1;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mrd_upstream_state *registry;
static struct mrd_region_state *region_registry;
static atomic_uint_fast64_t next_gen_id = 1;

static struct mrd_region_state *
region_state_lookup(const struct mrd_region_conf *rc)
{
    struct mrd_region_state *s;

    pthread_mutex_lock(&registry_lock);
    for (s = region_registry; s != NULL; s = s->next) {
        if (strcmp(s->name, rc->name) == 0 && s->capacity_rps == rc->capacity_rps &&
            s->capacity_burst == rc->capacity_burst) {
            atomic_fetch_add(&s->refcnt, 1);
            pthread_mutex_unlock(&registry_lock);
            return s;
        }
    }
    if (posix_memalign((void **)&s, 64, sizeof(*s)) != 0)
        abort();
    memset(s, 0, sizeof(*s));
    atomic_init(&s->refcnt, 1);
    snprintf(s->name, sizeof(s->name), "%s", rc->name);
    s->capacity_rps = rc->capacity_rps;
    s->capacity_burst = rc->capacity_burst;
    if (rc->capacity_rps)
        mrd_bucket_init(&s->bucket, rc->capacity_rps * 1000, rc->capacity_burst, mrd_now_ms());
    mrd_rate_init(&s->rate);
    atomic_init(&s->ttfb_ewma_us, 0);
    s->next = region_registry;
    region_registry = s;
    pthread_mutex_unlock(&registry_lock);
    return s;
}

static void
region_state_release(struct mrd_region_state *s)
{
    struct mrd_region_state **pp;

    if (atomic_fetch_sub(&s->refcnt, 1) != 1)
        return;
    pthread_mutex_lock(&registry_lock);
    if (atomic_load(&s->refcnt) != 0) {
        pthread_mutex_unlock(&registry_lock);
        return;
    }
    for (pp = &region_registry; *pp != NULL; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    pthread_mutex_unlock(&registry_lock);
    free(s);
}

/* keyed by address (an IP literal's or a resolved one), send_proxy and, for
 * upstream_tls, the name verified */
static struct mrd_upstream_state *
registry_lookup(const struct mrd_up_target *t, const struct mrd_upstream_conf *uc,
                const struct mrd_upstream_tls_conf *tc)
{
    struct mrd_upstream_state *s;
    char tls_name[256] = "";
    int name_ip = 0;

    if (tc->enabled) {
        name_ip = mrd_tls_peer_name(uc->address, tc->server_name, tls_name, sizeof(tls_name));
        if (name_ip < 0) { /* (a validated address always has a host) */
            name_ip = 0;
            snprintf(tls_name, sizeof(tls_name), "%s", uc->address);
        }
    }
    pthread_mutex_lock(&registry_lock);
    for (s = registry; s != NULL; s = s->next) {
        if (s->addrlen == t->addrlen && memcmp(&s->addr, &t->addr, t->addrlen) == 0 && s->tls == tc->enabled &&
            strcmp(s->tls_name, tls_name) == 0 && s->send_proxy == uc->send_proxy) {
            atomic_fetch_add(&s->refcnt, 1);
            pthread_mutex_unlock(&registry_lock);
            return s;
        }
    }
    s = mrd_xcalloc(1, sizeof(*s));
    atomic_init(&s->refcnt, 1);
    atomic_init(&s->healthy, 1); /* SPEC 3.2: upstreams start healthy */
    atomic_init(&s->active, 0);
    atomic_init(&s->ewma_us, 0);
    atomic_init(&s->connects, 0);
    memcpy(&s->addr, &t->addr, t->addrlen);
    s->addrlen = t->addrlen;
    s->send_proxy = uc->send_proxy;
    mrd_sockaddr_format((const struct sockaddr *)&s->addr, s->name, sizeof(s->name));
    s->idle = mrd_xcalloc(mrd_n_workers, sizeof(*s->idle));
    s->tls = tc->enabled;
    s->tls_name_ip = name_ip;
    memcpy(s->tls_name, tls_name, sizeof(s->tls_name));
    pthread_mutex_init(&s->tls_lock, NULL);
    atomic_init(&s->tls_log_ms, 0);
    s->next = registry;
    registry = s;
    pthread_mutex_unlock(&registry_lock);
    return s;
}

void
mrd_upstream_state_acquire(struct mrd_upstream_state *s)
{
    atomic_fetch_add(&s->refcnt, 1);
}

void
mrd_upstream_state_release(struct mrd_upstream_state *s)
{
    struct mrd_upstream_state **pp;

    if (atomic_fetch_sub(&s->refcnt, 1) != 1)
        return;
    pthread_mutex_lock(&registry_lock);
    /* a lookup may have revived it between the decrement and the lock */
    if (atomic_load(&s->refcnt) != 0) {
        pthread_mutex_unlock(&registry_lock);
        return;
    }
    for (pp = &registry; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    mrd_uptls_state_dispose(s);
    pthread_mutex_destroy(&s->tls_lock);
    free(s->idle);
    free(s);
}

/* the region's upstreams: one per IP literal and per resolved address */
static void
region_upstreams(struct mrd_region *r, const struct mrd_region_conf *rc, uint64_t gen_id, mrd_dns_lookup_fn lookup,
                 void *arg)
{
    const struct mrd_ipset **res = mrd_xcalloc(rc->n_upstreams ? rc->n_upstreams : 1, sizeof(*res));
    struct mrd_up_target *t;
    size_t cap;

    for (size_t j = 0; j < rc->n_upstreams; j++)
        if (rc->upstreams[j].host != NULL && lookup != NULL)
            res[j] = lookup(rc->upstreams[j].host, arg);
    cap = mrd_upstreams_count(rc->upstreams, rc->n_upstreams, res);
    t = mrd_xcalloc(cap ? cap : 1, sizeof(*t));
    r->n_ups = mrd_upstreams_expand(rc->upstreams, rc->n_upstreams, res, t);
    r->ups = mrd_xcalloc(r->n_ups ? r->n_ups : 1, sizeof(*r->ups));
    r->weights = mrd_xcalloc(r->n_ups ? r->n_ups : 1, sizeof(*r->weights));
    r->uconf = mrd_xcalloc(r->n_ups ? r->n_ups : 1, sizeof(*r->uconf));
    for (size_t j = 0; j < r->n_ups; j++) {
        r->uconf[j] = &rc->upstreams[t[j].entry];
        r->ups[j] = registry_lookup(&t[j], r->uconf[j], &rc->tls);
        atomic_store(&r->ups[j]->last_gen, gen_id);
        r->weights[j] = r->uconf[j]->weight;
    }
    free(t);
    free(res);
}

struct mrd_gen *
mrd_gen_new(struct mrd_config *conf, struct mrd_diag *diag)
{
    return mrd_gen_new_resolved(conf, NULL, NULL, diag);
}

struct mrd_gen *
mrd_gen_new_resolved(struct mrd_config *conf, mrd_dns_lookup_fn lookup, void *arg, struct mrd_diag *diag)
{
    struct mrd_gen *g;
    struct mrd_geo *geo;
    struct mrd_uptls **uptls;
    const char *err;
    int uptls_ok = 1;

    geo = mrd_geo_new(&conf->geo, &err);
    if (geo == NULL) {
        mrd_diag_add(diag, conf->file, conf->geo.database_pos.line, conf->geo.database_pos.col, "%s", err);
        mrd_config_free(conf);
        return NULL;
    }
    g = mrd_xcalloc(1, sizeof(*g));
    g->geo = geo;
    g->tls = mrd_xcalloc(conf->n_listeners ? conf->n_listeners : 1, sizeof(*g->tls));
    for (size_t i = 0; i < conf->n_listeners; i++) {
        if (!conf->listeners[i].tls)
            continue;
        g->tls[i] = mrd_tls_new(conf, &conf->listeners[i], diag);
        if (g->tls[i] == NULL) {
            for (size_t j = 0; j < i; j++)
                mrd_tls_free(g->tls[j]);
            free(g->tls);
            mrd_geo_free(geo);
            free(g);
            mrd_config_free(conf);
            return NULL;
        }
    }
    /* upstream_tls: every region's files are checked, so that -t reports all */
    uptls = mrd_xcalloc(conf->n_regions ? conf->n_regions : 1, sizeof(*uptls));
    for (size_t i = 0; i < conf->n_regions; i++)
        if (conf->regions[i].tls.enabled && (uptls[i] = mrd_uptls_new(conf, i, diag)) == NULL)
            uptls_ok = 0;
        else if (uptls[i] != NULL && conf->regions[i].upstream_protocol == MRD_UP_H2) {
            static const char *const h2[] = {"h2"};
            if (mrd_uptls_set_alpn(uptls[i], h2, 1) == -1)
                abort(); /* only fails without memory */
        }
    if (!uptls_ok) {
        for (size_t i = 0; i < conf->n_regions; i++)
            mrd_uptls_free(uptls[i]);
        free(uptls);
        for (size_t i = 0; i < conf->n_listeners; i++)
            mrd_tls_free(g->tls[i]);
        free(g->tls);
        mrd_geo_free(geo);
        free(g);
        mrd_config_free(conf);
        return NULL;
    }
    g->route = mrd_route_table_new(conf);
    if (conf->policies.client_rate_enabled) {
        uint64_t seed[2] = {(uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)g, mrd_now_ms() * 0x9E3779B97F4A7C15ULL};
        g->climit = mrd_client_limiter_new(conf->policies.client_rate_milli_per_s, conf->policies.client_burst,
                                           MRD_CLIENT_LIMITER_ENTRIES);
        mrd_client_limiter_set_seed(g->climit, seed[0], seed[1]);
        if (conf->policies.client_rate_cluster && conf->cluster.enabled)
            mrd_client_limiter_track(g->climit); /* reported to the fleet (cluster.c) */
    }
    atomic_init(&g->refcnt, 1);
    g->id = atomic_fetch_add(&next_gen_id, 1);
    g->loaded_at = time(NULL);
    g->conf = conf;
    g->n_regions = conf->n_regions;
    g->regions = mrd_xcalloc(conf->n_regions, sizeof(*g->regions));
    for (size_t i = 0; i < conf->n_regions; i++) {
        struct mrd_region *r = &g->regions[i];
        const struct mrd_region_conf *rc = &conf->regions[i];
        r->conf = rc;
        r->idx = i;
        r->st = region_state_lookup(rc);
        r->tls = uptls[i];
        region_upstreams(r, rc, g->id, lookup, arg);
        r->bal = mrd_xcalloc(mrd_n_workers, sizeof(*r->bal));
        for (unsigned w = 0; w < mrd_n_workers; w++)
            mrd_balance_state_init(&r->bal[w], r->n_ups);
    }
    free(uptls);
    return g;
}

void
mrd_gen_acquire(struct mrd_gen *g)
{
    atomic_fetch_add(&g->refcnt, 1);
}

void
mrd_gen_release(struct mrd_gen *g)
{
    if (g == NULL || atomic_fetch_sub(&g->refcnt, 1) != 1)
        return;
    for (size_t i = 0; i < g->n_regions; i++) {
        struct mrd_region *r = &g->regions[i];
        for (size_t j = 0; j < r->n_ups; j++)
            mrd_upstream_state_release(r->ups[j]);
        for (unsigned w = 0; w < mrd_n_workers; w++)
            mrd_balance_state_dispose(&r->bal[w]);
        free(r->bal);
        free(r->ups);
        free(r->weights);
        free(r->uconf);
        region_state_release(r->st);
        mrd_uptls_free(r->tls);
    }
    free(g->regions);
    mrd_route_table_free(g->route);
    for (size_t i = 0; i < g->conf->n_listeners; i++)
        mrd_tls_free(g->tls[i]);
    free(g->tls);
    mrd_geo_free(g->geo);
    if (g->climit != NULL)
        mrd_client_limiter_free(g->climit);
    mrd_config_free(g->conf);
    free(g);
}
