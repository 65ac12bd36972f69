/*
 * stream.c: non-blocking sockets with evbuffers for the workers' hot path
 * (see stream.h). The read event stays registered; output queued during a
 * batch of callbacks is written by one flush event at the end of the batch,
 * so a request/response exchange costs a read and a writev per side and no
 * epoll_ctl unless a socket fills up.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/err.h>

#include "meridian/common.h"
#include "meridian/stream.h"
#include "meridian/tls_upstream.h"

#define READ_CHUNK MRD_STREAM_READ_CHUNK

static struct timeval
tv_ms(uint32_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static void
dirty_unlink(struct mrd_stream *s)
{
    if (!s->dirty)
        return;
    if (s->dprev != NULL)
        s->dprev->dnext = s->dnext;
    else
        s->loop->dirty = s->dnext;
    if (s->dnext != NULL)
        s->dnext->dprev = s->dprev;
    s->dnext = s->dprev = NULL;
    s->dirty = 0;
}

static void
update_read(struct mrd_stream *s)
{
    /* a client handshake reads whether or not the owner does yet, bounded
     * by the connect timeout (the write timeout while connecting) */
    int hs = s->handshaking && s->tls_client;
    int want = (s->reading || hs) && !s->rblocked && !s->connecting && !s->closed;
    uint32_t ms = hs ? s->wr_timeout_ms : s->rd_timeout_ms;

    if (want && (!s->rd_added || ms)) {
        struct timeval tv = tv_ms(ms);
        event_add(&s->rev, ms ? &tv : NULL);
        s->rd_added = 1;
    } else if (!want && s->rd_added) {
        event_del(&s->rev);
        s->rd_added = 0;
    }
}

static void on_writable(evutil_socket_t fd, short what, void *arg);

static void
add_write_event(struct mrd_stream *s)
{
    struct timeval tv = tv_ms(s->wr_timeout_ms);

    if (s->wev == NULL) {
        s->wev = event_new(s->loop->base, s->fd, EV_WRITE, on_writable, s);
        if (s->wev == NULL)
            abort(); /* out of memory */
    }
    event_add(s->wev, s->wr_timeout_ms ? &tv : NULL);
    s->wr_added = 1;
}

static void
fail_stream(struct mrd_stream *s, short what)
{
    s->closed = 1;
    update_read(s);
    if (s->wr_added) {
        event_del(s->wev);
        s->wr_added = 0;
    }
    s->eventcb(s, what, s->arg);
}

/* TLS: write records until the output is empty or the socket is full.
 * Returns 1 when all was written, 0 to wait, -1 after a failure (callback ran). */
static int
tls_write(struct mrd_stream *s)
{
    while (evbuffer_get_length(s->out) > 0) {
        size_t n = MRD_MIN(evbuffer_get_length(s->out), 16384);
        const void *p = evbuffer_pullup(s->out, (ev_ssize_t)n);
        int r;

        ERR_clear_error();
        r = SSL_write(s->ssl, p, (int)n);
        if (r > 0) {
            evbuffer_drain(s->out, (size_t)r);
            continue;
        }
        switch (SSL_get_error(s->ssl, r)) {
        case SSL_ERROR_WANT_WRITE:
            if (!s->wr_added)
                add_write_event(s);
            return 0;
        case SSL_ERROR_WANT_READ:
            s->write_wants_read = 1; /* resumed from on_readable */
            return 0;
        default:
            fail_stream(s, MRD_STREAM_ERROR | MRD_STREAM_WRITING);
            return -1;
        }
    }
    return 1;
}

/* write what is queued; returns -1 when the stream failed (callback ran) */
static int
do_write(struct mrd_stream *s)
{
    if (s->ssl != NULL) {
        int r = tls_write(s);
        if (r <= 0)
            return r;
        if (s->wr_added) {
            event_del(s->wev);
            s->wr_added = 0;
        }
        if (s->writecb != NULL)
            s->writecb(s, s->arg);
        return 0;
    }
    while (evbuffer_get_length(s->out) > 0) {
        int n = evbuffer_write(s->out, s->fd);
        if (n > 0)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!s->wr_added)
                add_write_event(s);
            return 0;
        }
        if (n == -1 && errno == EINTR)
            continue;
        fail_stream(s, MRD_STREAM_ERROR | MRD_STREAM_WRITING);
        return -1;
    }
    if (s->wr_added) {
        event_del(s->wev);
        s->wr_added = 0;
    }
    if (s->writecb != NULL)
        s->writecb(s, s->arg);
    return 0;
}

static void
on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct mrd_stream_loop *l = arg;
    struct mrd_stream *s;

    /* callbacks may free streams or dirty others: always take the head */
    while ((s = l->dirty) != NULL) {
        dirty_unlink(s);
        if (s->connecting || s->wr_added || s->closed || s->handshaking)
            continue;
        do_write(s);
    }
}

/* output was queued: write it at the end of this batch of callbacks */
static void
kick(struct mrd_stream *s)
{
    if (s->dirty)
        return;
    s->dirty = 1;
    s->dprev = NULL;
    s->dnext = s->loop->dirty;
    if (s->dnext != NULL)
        s->dnext->dprev = s;
    s->loop->dirty = s;
    event_active(&s->loop->flush_ev, EV_TIMEOUT, 0);
}

/* TLS handshake step; calls back CONNECTED when done */
static void
do_handshake(struct mrd_stream *s)
{
    int r;

    ERR_clear_error();
    r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        s->handshaking = 0;
        if (s->wr_added) {
            event_del(s->wev);
            s->wr_added = 0;
        }
        if (s->tls_client && s->rd_added) {
            /* drop the handshake's timeout; reading is the owner's again */
            event_del(&s->rev);
            s->rd_added = 0;
            update_read(s);
        }
        s->eventcb(s, MRD_STREAM_CONNECTED, s->arg);
        return;
    }
    switch (SSL_get_error(s->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        return;
    case SSL_ERROR_WANT_WRITE:
        if (!s->wr_added)
            add_write_event(s);
        return;
    default:
        if (s->tls_client)
            mrd_uptls_handshake_failed(s->ssl); /* the error log says why */
        fail_stream(s, MRD_STREAM_ERROR | MRD_STREAM_READING);
    }
}

/* TLS: decrypt what is available into `in`. Returns bytes read (> 0), 0 to
 * wait, -1 after a failure or EOF (callback ran). */
static int
tls_read(struct mrd_stream *s)
{
    size_t total = 0;

    do {
        int r;

        ERR_clear_error();
        r = SSL_read(s->ssl, s->loop->rbuf, READ_CHUNK);
        if (r > 0) {
            evbuffer_add(s->in, s->loop->rbuf, (size_t)r);
            total += (size_t)r;
            continue;
        }
        switch (SSL_get_error(s->ssl, r)) {
        case SSL_ERROR_WANT_READ:
            return (int)MRD_MIN(total, (size_t)INT32_MAX);
        case SSL_ERROR_WANT_WRITE:
            s->read_wants_write = 1;
            if (!s->wr_added)
                add_write_event(s);
            return (int)MRD_MIN(total, (size_t)INT32_MAX);
        case SSL_ERROR_ZERO_RETURN:
            if (total)
                return (int)MRD_MIN(total, (size_t)INT32_MAX); /* deliver first; EOF is seen next time */
            s->reading = 0;
            update_read(s);
            s->eventcb(s, MRD_STREAM_EOF | MRD_STREAM_READING, s->arg);
            return -1;
        default:
            if (total)
                return (int)MRD_MIN(total, (size_t)INT32_MAX);
            fail_stream(s, MRD_STREAM_ERROR | MRD_STREAM_READING);
            return -1;
        }
    } while (SSL_pending(s->ssl) > 0 && total < 4 * READ_CHUNK);
    return (int)MRD_MIN(total, (size_t)INT32_MAX);
}

static void
on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct mrd_stream *s = arg;
    ssize_t n;

    if (what & EV_TIMEOUT) {
        s->eventcb(s, MRD_STREAM_TIMEOUT | MRD_STREAM_READING, s->arg);
        return;
    }
    if (s->ssl != NULL) {
        if (s->handshaking) {
            do_handshake(s);
            return;
        }
        if (s->write_wants_read) {
            s->write_wants_read = 0;
            if (do_write(s) == -1)
                return;
        }
        int r = tls_read(s);
        if (r > 0) {
            if (s->rhigh && evbuffer_get_length(s->in) >= s->rhigh) {
                s->rblocked = 1;
                update_read(s);
            }
            s->readcb(s, s->arg);
        }
        return;
    }
    /* into the worker's read buffer, then copied: a small read costs a
     * small chain, where reserving READ_CHUNK in `in` malloc'ed 32 KiB
     * per read and freed it as soon as the bytes were consumed */
    n = recv(s->fd, s->loop->rbuf, READ_CHUNK, 0);
    if (n > 0) {
        evbuffer_add(s->in, s->loop->rbuf, (size_t)n);
        if (s->rhigh && evbuffer_get_length(s->in) >= s->rhigh) {
            s->rblocked = 1;
            update_read(s);
        }
        s->readcb(s, s->arg);
        return;
    }
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    s->closed = n == -1;
    s->reading = 0;
    update_read(s);
    s->eventcb(s, (n == 0 ? MRD_STREAM_EOF : MRD_STREAM_ERROR) | MRD_STREAM_READING, s->arg);
}

/* TLS client, connected: what was queued while connecting (send_proxy's
 * PROXY protocol header) is the connection's first bytes, written raw; the
 * handshake starts once they are all out (on the write event if the socket
 * took only part of them). */
static void
start_client_handshake(struct mrd_stream *s)
{
    while (s->raw_first && evbuffer_get_length(s->out) > 0) {
        int n = evbuffer_write(s->out, s->fd);
        if (n > 0 || (n == -1 && errno == EINTR))
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            add_write_event(s);
            return;
        }
        fail_stream(s, MRD_STREAM_ERROR | MRD_STREAM_WRITING);
        return;
    }
    s->raw_first = 0;
    update_read(s);
    do_handshake(s);
}

static void
on_writable(evutil_socket_t fd, short what, void *arg)
{
    struct mrd_stream *s = arg;

    s->wr_added = 0; /* not persistent */
    if (what & EV_TIMEOUT) {
        s->eventcb(s, MRD_STREAM_TIMEOUT | MRD_STREAM_WRITING, s->arg);
        return;
    }
    if (s->ssl != NULL && s->handshaking) {
        if (s->raw_first)
            start_client_handshake(s);
        else
            do_handshake(s);
        return;
    }
    if (s->ssl != NULL && s->read_wants_write) {
        s->read_wants_write = 0;
        on_readable(s->fd, EV_READ, s);
        return;
    }
    if (s->connecting) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
        if (err == EINPROGRESS || err == EALREADY) {
            add_write_event(s);
            return;
        }
        s->connecting = 0;
        if (err != 0) {
            errno = err;
            s->closed = 1;
            s->eventcb(s, MRD_STREAM_ERROR | MRD_STREAM_WRITING, s->arg);
            return;
        }
        if (s->ssl != NULL) {
            /* TLS to the upstream: CONNECTED once the handshake is done */
            s->handshaking = 1;
            s->raw_first = evbuffer_get_length(s->out) > 0;
            start_client_handshake(s);
            return;
        }
        update_read(s);
        s->eventcb(s, MRD_STREAM_CONNECTED, s->arg);
        return;
    }
    do_write(s);
}

void
mrd_stream_loop_init(struct mrd_stream_loop *l, struct event_base *base)
{
    l->base = base;
    l->dirty = NULL;
    l->fd_closed_ev = NULL;
    event_assign(&l->flush_ev, base, -1, 0, on_flush, l);
}

void
mrd_stream_loop_dispose(struct mrd_stream_loop *l)
{
    event_del(&l->flush_ev);
}

struct mrd_stream *
mrd_stream_new(struct mrd_stream_loop *l, evutil_socket_t fd)
{
    struct mrd_stream *s = mrd_xcalloc(1, sizeof(*s));

    s->fd = fd;
    s->loop = l;
    s->in = evbuffer_new();
    s->out = evbuffer_new();
    event_assign(&s->rev, l->base, fd, EV_READ | EV_PERSIST, on_readable, s);
    return s;
}

void
mrd_stream_free(struct mrd_stream *s)
{
    if (s == NULL)
        return;
    dirty_unlink(s);
    if (s->rd_added)
        event_del(&s->rev);
    if (s->wev != NULL)
        event_free(s->wev);
    if (s->ssl != NULL)
        SSL_free(s->ssl);
    evbuffer_free(s->in);
    evbuffer_free(s->out);
    if (s->fd != -1) {
        close(s->fd);
        if (s->loop->fd_closed_ev != NULL) /* the worker waits for a descriptor */
            event_active(s->loop->fd_closed_ev, EV_TIMEOUT, 0);
    }
    free(s);
}

void
mrd_stream_setcb(struct mrd_stream *s, mrd_stream_cb readcb, mrd_stream_cb writecb, mrd_stream_event_cb eventcb,
                 void *arg)
{
    s->readcb = readcb;
    s->writecb = writecb;
    s->eventcb = eventcb;
    s->arg = arg;
}

int
mrd_stream_connect(struct mrd_stream *s, const struct sockaddr *sa, socklen_t len)
{
    if (connect(s->fd, sa, len) == -1 && errno != EINPROGRESS)
        return -1;
    s->connecting = 1;
    add_write_event(s);
    return 0;
}

void
mrd_stream_read(struct mrd_stream *s, int on)
{
    s->reading = on != 0;
    if (on && s->rblocked && (s->rhigh == 0 || evbuffer_get_length(s->in) < s->rhigh))
        s->rblocked = 0;
    update_read(s);
}

void
mrd_stream_set_timeouts(struct mrd_stream *s, uint32_t rd_ms, uint32_t wr_ms)
{
    int rd_changed = rd_ms != s->rd_timeout_ms;

    s->rd_timeout_ms = rd_ms;
    s->wr_timeout_ms = wr_ms;
    if (rd_changed && s->rd_added) {
        /* re-add to apply the new timeout (no epoll_ctl for an added event) */
        if (rd_ms) {
            struct timeval tv = tv_ms(rd_ms);
            event_add(&s->rev, &tv);
        } else {
            event_del(&s->rev);
            s->rd_added = 0;
            update_read(s);
        }
    }
    if (s->wr_added)
        add_write_event(s);
}

void
mrd_stream_write(struct mrd_stream *s, const void *p, size_t n)
{
    evbuffer_add(s->out, p, n);
    kick(s);
}

void
mrd_stream_move(struct mrd_stream *s, struct evbuffer *src, size_t n, int chunked)
{
    if (n == 0)
        return;
    if (chunked)
        evbuffer_add_printf(s->out, "%zx\r\n", n);
    evbuffer_remove_buffer(src, s->out, n);
    if (chunked)
        evbuffer_add(s->out, "\r\n", 2);
    kick(s);
}

void
mrd_stream_shutdown_write(struct mrd_stream *s)
{
    if (s->ssl != NULL && !s->handshaking) {
        ERR_clear_error();
        SSL_shutdown(s->ssl); /* best effort close_notify; never waits */
    }
    shutdown(s->fd, SHUT_WR);
}

void
mrd_stream_tls_accept(struct mrd_stream *s, SSL *ssl)
{
    s->ssl = ssl;
    s->handshaking = 1;
    SSL_set_fd(ssl, s->fd);
}

void
mrd_stream_tls_connect(struct mrd_stream *s, SSL *ssl)
{
    s->ssl = ssl;
    s->tls_client = 1;
    SSL_set_fd(ssl, s->fd);
}
