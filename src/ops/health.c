/*
 * health.c: active HTTP health checks (SPEC 2 health_check) on the main
 * thread's event base, and the pure rise/fall state machine they feed.
 * One prober per distinct upstream address with a health_check: every
 * interval (with +-10% jitter so that upstreams are not probed in lockstep)
 * it connects, sends "GET path", and compares the status with expect_status;
 * a refused or reset connection, a timeout or another status is a failure.
 * Round trips seed a region's latency EWMA until real requests measure it.
 * A region with upstream_tls is checked over TLS with its settings (a
 * handshake or verification failure fails the check; tls_upstream.c logs why).
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "meridian/common.h"
#include "meridian/gen.h"
#include "meridian/health.h"
#include "meridian/health_h2.h"
#include "meridian/log.h"
#include "meridian/proxyproto.h"
#include "meridian/route.h"
#include "meridian/server.h"
#include "meridian/tls_upstream.h"

struct prober {
    struct mrd_upstream_state *st;
    struct mrd_region *region;        /* first region listing it (gen is held) */
    const struct mrd_health_conf *hc;
    struct event *timer;
    struct bufferevent *bev;          /* the check in progress */
    SSL *pending_ssl;                 /* TLS and send_proxy: started once the raw PROXY header is queued */
    struct mrd_health_h2 *h2;         /* its HTTP/2 session (upstream_protocol h2c) */
    uint64_t started_us;
    unsigned streak;
    int last;                         /* healthy as this prober last left it */
    uint64_t rnd;
};

static struct event_base *hbase;
static struct mrd_gen *hgen;
static struct prober *probers;
static size_t n_probers;

static void check_done(struct prober *p, int ok, const char *why);

static struct timeval
tv_ms(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static void
schedule(struct prober *p)
{
    uint64_t iv = p->hc->interval_ms, jitter = iv / 10;
    struct timeval tv;

    p->rnd = p->rnd * 6364136223846793005ULL + 1442695040888963407ULL;
    if (jitter)
        iv = iv - jitter + (p->rnd >> 33) % (2 * jitter + 1);
    tv = tv_ms(iv);
    evtimer_add(p->timer, &tv);
}

static void
on_check_read(struct bufferevent *bev, void *arg)
{
    struct prober *p = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    const char *line;
    int status;

    if (p->h2 != NULL) {
        int r = mrd_health_h2_io(p->h2, in, bufferevent_get_output(bev), &status);
        if (r < 0)
            check_done(p, 0, "HTTP/2 protocol error");
        else if (r > 0)
            check_done(p, status == p->hc->expect_status, status < 0 ? "HTTP/2 stream reset" : "unexpected status");
        return;
    }
    if (evbuffer_search(in, "\r\n", 2, NULL).pos == -1) {
        if (len > 1024)
            check_done(p, 0, "status line too long");
        return;
    }
    line = (const char *)evbuffer_pullup(in, -1);
    if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ') {
        check_done(p, 0, "not an HTTP response");
        return;
    }
    status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    check_done(p, status == p->hc->expect_status, "unexpected status");
}

static void
on_check_event(struct bufferevent *bev, short what, void *arg)
{
    struct prober *p = arg;
    struct evbuffer *out;

    if ((what & BEV_EVENT_CONNECTED) && p->pending_ssl != NULL) {
        /* TLS with send_proxy: the PROXY header is the connection's first
         * bytes, raw; the handshake then runs over the same connection */
        struct timeval tv = tv_ms(p->hc->timeout_ms);
        struct bufferevent *tls;
        uint8_t hdr[MRD_PP_BUILD_MAX];
        evbuffer_add(bufferevent_get_output(bev), hdr, mrd_pp_build(p->st->send_proxy, NULL, hdr, sizeof(hdr)));
        tls = bufferevent_openssl_filter_new(hbase, bev, p->pending_ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE);
        p->pending_ssl = NULL; /* the filter owns it (also on failure) */
        if (tls == NULL) {
            check_done(p, 0, "TLS setup failed");
            return;
        }
        bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
        p->bev = tls; /* frees the plain one with it */
        bufferevent_setcb(tls, on_check_read, NULL, on_check_event, p);
        bufferevent_set_timeouts(tls, &tv, &tv);
        bufferevent_enable(tls, EV_READ | EV_WRITE);
        return;
    }
    if (what & BEV_EVENT_CONNECTED) {
        out = bufferevent_get_output(bev);
        if (p->st->send_proxy && p->region->tls == NULL) {
            /* check-send-proxy: no client, so PROXY UNKNOWN (v1) or LOCAL (v2) */
            uint8_t hdr[MRD_PP_BUILD_MAX];
            evbuffer_add(out, hdr, mrd_pp_build(p->st->send_proxy, NULL, hdr, sizeof(hdr)));
        }
        if (p->region->conf->upstream_protocol != MRD_UP_HTTP1) {
            int status;
            p->h2 = mrd_health_h2_new(p->hc->path, p->st->name);
            mrd_health_h2_io(p->h2, NULL, out, &status);
            bufferevent_enable(bev, EV_READ);
            return;
        }
        evbuffer_add_printf(out,
                            "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: meridian-health/" MRD_VERSION
                            "\r\nConnection: close\r\n\r\n",
                            p->hc->path, p->st->name);
        bufferevent_enable(bev, EV_READ);
        return;
    }
    check_done(p, 0, (what & BEV_EVENT_TIMEOUT)                         ? "timeout"
                     : p->region->tls != NULL && !(what & BEV_EVENT_EOF) ? "TLS handshake or connection failed"
                                                                         : "connection failed");
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct prober *p = arg;
    struct timeval tv = tv_ms(p->hc->timeout_ms);

    if (p->region->tls != NULL && p->st->send_proxy) {
        p->pending_ssl = mrd_uptls_ssl_new(p->region->tls, p->st);
        p->bev = p->pending_ssl == NULL ? NULL : bufferevent_socket_new(hbase, -1, BEV_OPT_CLOSE_ON_FREE);
    } else if (p->region->tls != NULL) {
        SSL *ssl = mrd_uptls_ssl_new(p->region->tls, p->st);
        /* the bufferevent owns ssl from here (freed with it, also on failure) */
        p->bev = ssl == NULL ? NULL
                             : bufferevent_openssl_socket_new(hbase, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                              BEV_OPT_CLOSE_ON_FREE);
        if (p->bev != NULL)
            bufferevent_openssl_set_allow_dirty_shutdown(p->bev, 1);
    } else {
        p->bev = bufferevent_socket_new(hbase, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (p->bev == NULL) {
        SSL_free(p->pending_ssl);
        p->pending_ssl = NULL;
        schedule(p);
        return;
    }
    bufferevent_setcb(p->bev, on_check_read, NULL, on_check_event, p);
    bufferevent_set_timeouts(p->bev, &tv, &tv);
    p->started_us = mrd_now_us();
    if (bufferevent_socket_connect(p->bev, (struct sockaddr *)&p->st->addr, (int)p->st->addrlen) == -1)
        check_done(p, 0, "connect failed");
}

static void
check_done(struct prober *p, int ok, const char *why)
{
    uint64_t rtt = mrd_now_us() - p->started_us;
    int healthy = atomic_load(&p->st->healthy);

    bufferevent_free(p->bev);
    p->bev = NULL;
    if (p->pending_ssl != NULL) { /* the TCP connect failed */
        SSL_free(p->pending_ssl);
        p->pending_ssl = NULL;
    }
    mrd_health_h2_free(p->h2);
    p->h2 = NULL;
    if (healthy != p->last)
        p->streak = 0; /* a worker marked it down (passive): count afresh */
    /* a check's round trip is a time-to-first-byte sample too: it seeds the
     * region's latency before traffic, and keeps measuring a region that
     * lost its traffic to a faster one, so that it can win it back */
    if (ok)
        mrd_ewma_add_atomic(&p->region->st->ttfb_ewma_us, rtt);
    switch (mrd_health_step(&healthy, &p->streak, ok, p->hc->rise, p->hc->fall)) {
    case MRD_HEALTH_UP:
        /* failures counted by requests still in flight when it went down
         * belong to the old run */
        atomic_store(&p->st->fails, 0);
        mrd_log(MRD_LOG_INFO, "upstream %s (%s) is up", p->st->name, p->region->conf->name);
        break;
    case MRD_HEALTH_DOWN:
        mrd_log(MRD_LOG_WARN, "upstream %s (%s) is down: %s", p->st->name, p->region->conf->name, why);
        break;
    default:
        break;
    }
    atomic_store(&p->st->healthy, healthy);
    p->last = healthy;
    schedule(p);
}

void
mrd_health_passive_fail(struct mrd_upstream_state *st, enum mrd_upstream_failure kind)
{
    unsigned n = atomic_fetch_add_explicit(&st->fails, 1, memory_order_relaxed) + 1;

    if ((unsigned)kind < MRD_UPF_N)
        atomic_fetch_add_explicit(&st->failures[kind], 1, memory_order_relaxed);
    if (!mrd_health_passive_eject(kind, n, atomic_load_explicit(&st->fall, memory_order_relaxed),
                                  atomic_load_explicit(&st->checked, memory_order_relaxed)))
        return;
    atomic_store_explicit(&st->fails, 0, memory_order_relaxed);
    if (atomic_exchange(&st->healthy, 0) == 1)
        mrd_log(MRD_LOG_WARN, "upstream %s is down: %s (passive, %u failed attempt%s in a row)", st->name,
                mrd_upstream_failure_name(kind), n, n == 1 ? "" : "s");
}

void
mrd_health_passive_ok(struct mrd_upstream_state *st)
{
    /* a load first: no write to the shared line on the common path */
    if (atomic_load_explicit(&st->fails, memory_order_relaxed) != 0)
        atomic_store_explicit(&st->fails, 0, memory_order_relaxed);
}

void
mrd_health_stop(void)
{
    for (size_t i = 0; i < n_probers; i++) {
        struct prober *p = &probers[i];
        if (p->bev != NULL)
            bufferevent_free(p->bev);
        mrd_health_h2_free(p->h2);
        event_free(p->timer);
        atomic_store(&p->st->checked, 0);
    }
    free(probers);
    probers = NULL;
    n_probers = 0;
    mrd_gen_release(hgen);
    hgen = NULL;
}

void
mrd_health_start(struct event_base *base, struct mrd_gen *g)
{
    size_t cap = 0;

    mrd_health_stop();
    hbase = base;
    hgen = g;
    mrd_gen_acquire(g);
    for (size_t i = 0; i < g->n_regions; i++)
        cap += g->regions[i].n_ups;
    probers = mrd_xcalloc(cap ? cap : 1, sizeof(*probers));
    for (size_t i = 0; i < g->n_regions; i++) {
        struct mrd_region *r = &g->regions[i];
        for (size_t j = 0; j < r->n_ups; j++) {
            struct mrd_upstream_state *st = r->ups[j];
            size_t k;
            for (k = 0; k < n_probers && probers[k].st != st; k++)
                ;
            if (k < n_probers)
                continue; /* the first region that checks an address owns its prober */
            if (!r->conf->health.enabled) {
                /* unchecked upstreams stay in rotation (passive marks would
                 * have nothing to bring them back) */
                if (!atomic_load(&st->checked))
                    atomic_store(&st->healthy, 1);
                continue;
            }
            struct prober *p = &probers[n_probers++];
            p->st = st;
            p->region = r;
            p->hc = &r->conf->health;
            p->last = atomic_load(&st->healthy);
            p->rnd = (uint64_t)(uintptr_t)st ^ mrd_now_us();
            p->timer = evtimer_new(base, on_timer, p);
            atomic_store(&st->fall, p->hc->fall);
            atomic_store(&st->checked, 1);
            /* first check soon, spread over the first interval */
            struct timeval tv = tv_ms((p->rnd >> 17) % (p->hc->interval_ms / 4 + 1));
            evtimer_add(p->timer, &tv);
        }
    }
}
