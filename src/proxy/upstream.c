/*
 * upstream.c: connections to upstream servers and the per-worker pool of idle
 * keep-alive ones. A pooled connection watches its socket: any byte or EOF
 * while idle means the server closed or broke it, so it is dropped, and it is
 * closed after timeouts.idle. The proxy leases from here and returns a
 * connection only when the exchange left it clean (see proxy.c).
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "meridian/common.h"
#include "meridian/proxyproto.h"
#include "meridian/server.h"
#include "meridian/tls_upstream.h"

#define POOL_MAX_IDLE_PER_UPSTREAM 512

static void
idle_unlink(struct mrd_uconn *uc)
{
    struct mrd_idle_list *l = &uc->st->idle[uc->w->id];

    if (!uc->idle)
        return;
    if (uc->prev != NULL)
        uc->prev->next = uc->next;
    else
        l->head = uc->next;
    if (uc->next != NULL)
        uc->next->prev = uc->prev;
    uc->next = uc->prev = NULL;
    uc->idle = 0;
    l->count--;
}

void
mrd_uconn_free(struct mrd_uconn *uc)
{
    idle_unlink(uc);
    mrd_stream_free(uc->s);
    mrd_upstream_state_release(uc->st);
    free(uc);
}

static void
on_idle_read(struct mrd_stream *s, void *arg)
{
    /* an idle HTTP/1 connection must stay silent: anything here is garbage.
     * (With TLS this runs for application data only: a NewSessionTicket
     * record is consumed by the stream, close_notify is an EOF event.) */
    mrd_uconn_free(arg);
}

static void
on_idle_event(struct mrd_stream *s, short what, void *arg)
{
    mrd_uconn_free(arg);
}

struct mrd_uconn *
mrd_pool_lease(struct mrd_worker *w, struct mrd_upstream_state *st)
{
    struct mrd_idle_list *l = &st->idle[w->id];
    struct mrd_uconn *uc = l->head;

    if (uc == NULL || st->send_proxy) /* a send_proxy connection carried one client's address */
        return NULL;
    idle_unlink(uc);
    return uc;
}

void
mrd_pool_release(struct mrd_uconn *uc, uint64_t idle_ms)
{
    struct mrd_idle_list *l = &uc->st->idle[uc->w->id];

    /* send_proxy connections carry one client's address; an upstream that no
     * generation from this worker's on has (a vanished DNS address, a removed
     * entry) keeps no idle connection */
    if (l->count >= POOL_MAX_IDLE_PER_UPSTREAM || atomic_load(&uc->w->stopping) || uc->st->send_proxy ||
        atomic_load_explicit(&uc->st->last_gen, memory_order_relaxed) < uc->w->gen->id) {
        mrd_uconn_free(uc);
        return;
    }
    uc->idle = 1;
    uc->prev = NULL;
    uc->next = l->head;
    if (l->head != NULL)
        l->head->prev = uc;
    l->head = uc;
    l->count++;
    mrd_stream_setcb(uc->s, on_idle_read, NULL, on_idle_event, uc);
    mrd_stream_set_timeouts(uc->s, idle_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)idle_ms, 0);
    mrd_stream_read(uc->s, 1);
}

/* the client TLS context for st in the worker's current generation (new
 * connections use the newest CA and certificate files) */
static struct mrd_uptls *
uconn_tls(struct mrd_worker *w, struct mrd_upstream_state *st)
{
    for (size_t i = 0; w->gen != NULL && i < w->gen->n_regions; i++) {
        const struct mrd_region *r = &w->gen->regions[i];
        for (size_t j = 0; r->tls != NULL && j < r->n_ups; j++)
            if (r->ups[j] == st)
                return r->tls;
    }
    return NULL;
}

/*
 * send_proxy: the PROXY header is the connection's first bytes. Queued
 * while connecting (the stream writes nothing before the connect
 * completes), so whatever the caller writes after CONNECTED follows it.
 * A TLS upstream must write it raw before its handshake starts.
 */
static void
send_proxy_header(struct mrd_uconn *uc, const struct mrd_pp_addrs *addrs)
{
    uint8_t hdr[MRD_PP_BUILD_MAX];
    size_t n = mrd_pp_build(uc->st->send_proxy, addrs, hdr, sizeof(hdr));

    mrd_stream_write(uc->s, hdr, n);
}

struct mrd_uconn *
mrd_uconn_connect(struct mrd_worker *w, struct mrd_upstream_state *st, uint64_t timeout_ms,
                  const struct mrd_pp_addrs *addrs)
{
    struct mrd_uconn *uc;
    SSL *ssl = NULL;
    evutil_socket_t fd;
    int one = 1;

    /* (an upstream the worker's generation dropped gets the context its
     * last connection used: never plaintext to a TLS port) */
    if (st->tls && (ssl = mrd_uptls_ssl_upstream(uconn_tls(w, st), st)) == NULL)
        return NULL;
    fd = socket(st->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        SSL_free(ssl);
        return NULL;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uc = mrd_xcalloc(1, sizeof(*uc));
    uc->w = w;
    uc->st = st;
    mrd_upstream_state_acquire(st);
    uc->s = mrd_stream_new(&w->sloop, fd);
    /* connect() completes on the write event: its timeout bounds it */
    mrd_stream_set_timeouts(uc->s, 0, timeout_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)timeout_ms);
    if (ssl != NULL)
        mrd_stream_tls_connect(uc->s, ssl); /* the stream owns ssl from here */
    if (mrd_stream_connect(uc->s, (struct sockaddr *)&st->addr, st->addrlen) == -1) {
        mrd_uconn_free(uc);
        return NULL;
    }
    atomic_fetch_add(&st->connects, 1);
    if (st->send_proxy)
        send_proxy_header(uc, addrs);
    return uc;
}

void
mrd_pool_drain(struct mrd_worker *w, struct mrd_gen *g)
{
    for (size_t i = 0; g != NULL && i < g->n_regions; i++)
        for (size_t j = 0; j < g->regions[i].n_ups; j++) {
            struct mrd_idle_list *l = &g->regions[i].ups[j]->idle[w->id];
            while (l->head != NULL)
                mrd_uconn_free(l->head);
        }
    mrd_up_h2_drain(w);
}

static int
gen_has(const struct mrd_gen *g, const struct mrd_upstream_state *st)
{
    for (size_t i = 0; i < g->n_regions; i++)
        for (size_t j = 0; j < g->regions[i].n_ups; j++)
            if (g->regions[i].ups[j] == st)
                return 1;
    return 0;
}

void
mrd_pool_drain_gone(struct mrd_worker *w, const struct mrd_gen *prev, const struct mrd_gen *next)
{
    for (size_t i = 0; prev != NULL && next != NULL && i < prev->n_regions; i++)
        for (size_t j = 0; j < prev->regions[i].n_ups; j++) {
            struct mrd_upstream_state *st = prev->regions[i].ups[j];
            struct mrd_idle_list *l = &st->idle[w->id];
            if (l->head == NULL || gen_has(next, st))
                continue;
            while (l->head != NULL)
                mrd_uconn_free(l->head);
        }
}
