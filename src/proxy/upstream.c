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
#include "meridian/server.h"

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
    /* an idle HTTP/1 connection must stay silent: anything here is garbage */
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

    if (uc == NULL)
        return NULL;
    idle_unlink(uc);
    return uc;
}

void
mrd_pool_release(struct mrd_uconn *uc, uint64_t idle_ms)
{
    struct mrd_idle_list *l = &uc->st->idle[uc->w->id];

    if (l->count >= POOL_MAX_IDLE_PER_UPSTREAM || atomic_load(&uc->w->stopping)) {
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

struct mrd_uconn *
mrd_uconn_connect(struct mrd_worker *w, struct mrd_upstream_state *st, uint64_t timeout_ms)
{
    struct mrd_uconn *uc;
    evutil_socket_t fd;
    int one = 1;

    fd = socket(st->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return NULL;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uc = mrd_xcalloc(1, sizeof(*uc));
    uc->w = w;
    uc->st = st;
    mrd_upstream_state_acquire(st);
    uc->s = mrd_stream_new(&w->sloop, fd);
    /* connect() completes on the write event: its timeout bounds it */
    mrd_stream_set_timeouts(uc->s, 0, timeout_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)timeout_ms);
    if (mrd_stream_connect(uc->s, (struct sockaddr *)&st->addr, st->addrlen) == -1) {
        mrd_uconn_free(uc);
        return NULL;
    }
    atomic_fetch_add(&st->connects, 1);
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
