/*
 * conn.c: downstream HTTP/1.1 connections. Reads request heads with the pure
 * parser, answers protocol errors itself (400/408/413/431, closing), hands
 * each request to proxy.c as a struct mrd_req and writes its response back,
 * re-framing the body for this hop. Requests on one connection are served in
 * order (pipelined requests wait in the input buffer); keep-alive and the
 * request_header / idle timeouts are enforced here.
 *
 * End of input (a FIN, or a TLS close_notify) means "no more requests", not
 * "gone": the requests already received, pipelined ones included, are
 * answered in order and then the connection closes (SPEC 12). Only an
 * incomplete request is cut: a partial head gets 400, a partial body an
 * abort without an answer.
 *
 * Reentrancy: callbacks from proxy.c never free the connection or the request
 * directly; completion is recorded and handled from a deferred event.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>

#include "meridian/addr.h"
#include "meridian/clientip.h"
#include "meridian/common.h"
#include "meridian/h2.h"
#include "meridian/headers.h"
#include "meridian/log.h"
#include "meridian/metrics.h"
#include "meridian/proxyproto.h"
#include "meridian/server.h"
#include "meridian/tls.h"


enum cstate {
    CS_HEAD = 0, /* waiting for / reading a request head */
    CS_REQ,      /* a request is in flight */
    CS_TUNNEL,   /* upgraded: raw bytes both ways */
    CS_CLOSING,  /* flushing the last bytes, then close */
};

struct mrd_conn {
    struct mrd_worker *w;
    struct mrd_gen *gen; /* one ref, taken at accept */
    struct mrd_stream *s;
    struct mrd_conn *next, *prev;   /* worker's list of connections */
    struct mrd_conn *dnext, *dprev; /* worker's deferred list */
    uint64_t head_deadline_us;      /* request_header limit for the head being read */
    /* addrs.src: the TCP peer (a PROXY header's source); text form made when
     * needed: it would cost 46 bytes per idle connection. addrs.dst: the
     * address it connected to, filled when first needed (send_proxy) */
    struct mrd_pp_addrs addrs;
    struct mrd_pp_wait *pp; /* listener proxy_protocol: the header is being read */
    size_t listener;        /* its index, while pp is set */
    enum cstate state;
    size_t last_len;  /* head bytes already scanned */
    unsigned deferred : 1, tls : 1, keepalive : 1, close_after : 1, req_in_done : 1, resp_done : 1, resp_started : 1,
        client_10 : 1, paused : 1, resp_chunked : 1, resp_none : 1, dead : 1, lingering : 1, served : 1,
        h2c : 1,    /* the listener accepts HTTP/2 prior knowledge */
        rd_eof : 1, /* the client sent its last byte (half-close): no more requests */
        dst_known : 1; /* addrs.dst is filled */
    /* current request */
    struct mrd_req *req;
    enum mrd_h1_body in_body;
    uint64_t in_left;  /* Content-Length bytes still to read */
    uint64_t in_total; /* decoded bytes read (for max_body_bytes) */
    struct mrd_h1_chunk in_chunk;
};

atomic_uint mrd_connections_active;

static void process(struct mrd_conn *c);

/* read on or off; never on again after the end of input (a read event on a
 * socket at EOF would fire at once, forever) */
static void
want_read(struct mrd_conn *c, int on)
{
    mrd_stream_read(c->s, on && !c->rd_eof);
}

static const struct mrd_config *
conf(struct mrd_conn *c)
{
    return c->gen->conf;
}

static uint16_t
port_of(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

/* both ends of the connection: the local one is looked up the first time */
static const struct mrd_pp_addrs *
conn_addrs(struct mrd_conn *c)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (!c->dst_known) {
        c->dst_known = 1;
        if (getsockname(c->s->fd, (struct sockaddr *)&ss, &len) == 0 &&
            mrd_ip_from_sockaddr((struct sockaddr *)&ss, &c->addrs.dst) == 0)
            c->addrs.dst_port = port_of((struct sockaddr *)&ss);
        else
            memset(&c->addrs.dst, 0, sizeof(c->addrs.dst)); /* unknown: the upstream gets UNKNOWN / LOCAL */
    }
    return &c->addrs;
}

static void
conn_free(struct mrd_conn *c)
{
    mrd_pp_wait_free(c->pp);
    if (c->req != NULL)
        mrd_req_free(c->req);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        c->w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    mrd_worker_conn_closed(c->w);
    if (c->deferred) {
        if (c->dprev != NULL)
            c->dprev->dnext = c->dnext;
        else
            c->w->deferred = c->dnext;
        if (c->dnext != NULL)
            c->dnext->dprev = c->dprev;
    }
    atomic_fetch_sub(&mrd_connections_active, 1);
    if (c->s != NULL) /* NULL: handed over to HTTP/2 */
        mrd_stream_free(c->s);
    mrd_gen_release(c->gen);
    free(c);
}

/* run on_defer(c) after the current callbacks, outside of them */
static void
schedule(struct mrd_conn *c)
{
    if (c->deferred)
        return;
    c->deferred = 1;
    c->dprev = NULL;
    c->dnext = c->w->deferred;
    if (c->dnext != NULL)
        c->dnext->dprev = c;
    c->w->deferred = c;
    event_active(&c->w->defer_ev, EV_TIMEOUT, 0);
}

/* close once the output is flushed */
static void
close_soon(struct mrd_conn *c)
{
    c->state = CS_CLOSING;
    mrd_stream_read(c->s, 0);
    if (evbuffer_get_length(c->s->out) == 0)
        schedule(c);
}

/*
 * The output is flushed: half-close and discard what the client still sends
 * for a moment before closing. Closing with unread input makes the kernel
 * send a RST, which can destroy the error response before the client reads
 * it (nginx's lingering_close).
 */
static void
linger(struct mrd_conn *c)
{
    if (c->lingering) {
        conn_free(c);
        return;
    }
    if (c->rd_eof) {
        /* the client sends nothing more: no RST to fear */
        mrd_stream_shutdown_write(c->s);
        conn_free(c);
        return;
    }
    c->lingering = 1;
    mrd_stream_shutdown_write(c->s);
    evbuffer_drain(c->s->in, evbuffer_get_length(c->s->in));
    c->s->rhigh = 0;
    mrd_stream_set_timeouts(c->s, 1000, 0);
    mrd_stream_read(c->s, 1);
}

/* a response the proxy makes itself */
static void
send_error(struct mrd_conn *c, int status, const char *detail, int close, const char *extra)
{
    struct mrd_buf *b = &c->w->scratch;

    b->len = 0;
    mrd_build_error_response(b, status, detail, close, extra);
    mrd_stream_write(c->s, b->p, b->len);
}

static uint32_t
ms32(uint64_t ms)
{
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

/* waiting for a head: idle timeout while nothing came, then request_header
 * from its first byte (absolute, so trickling bytes do not extend it) */
static void
arm_head_timeout(struct mrd_conn *c)
{
    if (evbuffer_get_length(c->s->in) == 0) {
        c->head_deadline_us = 0;
        mrd_stream_set_timeouts(c->s, ms32(conf(c)->timeouts.idle_ms), ms32(conf(c)->timeouts.idle_ms));
        return;
    }
    uint64_t now = mrd_now_us();
    if (c->head_deadline_us == 0)
        c->head_deadline_us = now + conf(c)->timeouts.request_header_ms * 1000;
    uint64_t left = c->head_deadline_us > now ? (c->head_deadline_us - now + 999) / 1000 : 1;
    mrd_stream_set_timeouts(c->s, ms32(left), ms32(conf(c)->timeouts.idle_ms));
}

static void
request_done(struct mrd_conn *c)
{
    mrd_req_free(c->req);
    c->req = NULL;
    if (c->close_after || !c->keepalive || atomic_load(&c->w->stopping)) {
        close_soon(c);
        return;
    }
    c->state = CS_HEAD;
    c->last_len = 0;
    c->head_deadline_us = 0;
    want_read(c, 1);
    arm_head_timeout(c);
    /* a pipelined request may already be buffered; after the client's
     * half-close, process() closes once none is left */
    if (evbuffer_get_length(c->s->in) > 0 || c->rd_eof)
        process(c);
}

static void
on_defer(struct mrd_conn *c)
{
    if (c->dead) {
        conn_free(c);
        return;
    }
    if (c->state == CS_CLOSING) {
        if (evbuffer_get_length(c->s->out) == 0 && !c->lingering)
            linger(c);
        return;
    }
    /* done, or answered while the client still sends a body we will not read */
    if (c->state == CS_REQ && c->resp_done && (c->req_in_done || c->close_after))
        request_done(c);
    else if ((c->state == CS_REQ || c->state == CS_TUNNEL) && !c->paused)
        process(c);
}

/* ---- mrd_req_ops: the response coming back ---- */

static void
r_on_head(struct mrd_req *req, const struct mrd_h1_msg *resp, int status)
{
    struct mrd_conn *c = mrd_req_ctx(req);
    struct mrd_buf *b = &c->w->scratch;
    struct mrd_fwd_resp f = {
        .status = status,
        .reason = resp->reason_len ? resp->reason : NULL,
        .reason_len = resp->reason_len,
        .region = conf(c)->response_header_region ? mrd_req_region(req) : NULL,
    };

    c->resp_started = 1;
    c->resp_chunked = 0;
    c->resp_none = 0;
    if (status == 101) {
        f.upgrade = 1;
        f.body = MRD_H1_BODY_NONE;
        c->state = CS_TUNNEL;
    } else if (resp->body == MRD_H1_BODY_NONE) {
        f.body = MRD_H1_BODY_NONE;
        c->resp_none = 1;
        /* keep the length a HEAD or 304 response announces */
        const struct mrd_h1_header *cl = mrd_h1_find(resp, "content-length");
        if (cl != NULL && status != 204 && (status < 100 || status >= 200)) {
            f.body = MRD_H1_BODY_LENGTH;
            f.content_length = strtoull(cl->value, NULL, 10);
            c->resp_none = 1;
        }
    } else if (resp->body == MRD_H1_BODY_LENGTH) {
        f.body = MRD_H1_BODY_LENGTH;
        f.content_length = resp->content_length;
    } else if (!c->client_10) {
        f.body = MRD_H1_BODY_CHUNKED;
        c->resp_chunked = 1;
    } else {
        /* HTTP/1.0 client and no length: delimit by closing */
        f.body = MRD_H1_BODY_CLOSE;
        c->close_after = 1;
    }
    if (!c->req_in_done && status != 101)
        c->close_after = 1; /* the rest of the request body would be read as a new request */
    if (atomic_load(&c->w->stopping))
        c->close_after = 1;
    f.conn_close = c->close_after || !c->keepalive;
    f.keep_alive = c->client_10 && !f.conn_close;
    b->len = 0;
    mrd_build_response_head(b, resp->headers, resp->num_headers, &f);
    mrd_stream_write(c->s, b->p, b->len);
}

static void
r_on_body(struct mrd_req *req, struct evbuffer *src, size_t n)
{
    struct mrd_conn *c = mrd_req_ctx(req);

    if (c->resp_none)
        evbuffer_drain(src, n);
    else
        mrd_stream_move(c->s, src, n, c->resp_chunked);
}

static void
r_on_end(struct mrd_req *req)
{
    struct mrd_conn *c = mrd_req_ctx(req);

    if (c->resp_chunked) {
        struct evbuffer *t = mrd_req_trailers(req);
        if (t != NULL) {
            mrd_stream_write(c->s, "0\r\n", 3);
            mrd_stream_move(c->s, t, evbuffer_get_length(t), 0);
        } else {
            mrd_stream_write(c->s, "0\r\n\r\n", 5);
        }
    }
    c->resp_done = 1;
    if (c->state == CS_TUNNEL) {
        c->close_after = 1;
        c->req_in_done = 1;
        c->state = CS_REQ;
    }
    schedule(c);
}

static void
r_on_error(struct mrd_req *req, int status, const char *detail, const char *extra)
{
    struct mrd_conn *c = mrd_req_ctx(req);

    if (status == 0 || c->resp_started) {
        /* the response was cut after its head: the client must see a broken
         * message, never a truncated one that looks complete */
        char ip[MRD_IP_STRLEN];
        mrd_ip_format(&c->addrs.src, ip, sizeof(ip));
        mrd_log(MRD_LOG_INFO, "%s: response aborted: %s", ip, detail);
        c->dead = 1;
        mrd_stream_read(c->s, 0);
        schedule(c);
        return;
    }
    if (!c->req_in_done)
        c->close_after = 1;
    if (status == 503 && extra == NULL)
        extra = "Retry-After: 1\r\n";
    send_error(c, status, detail, c->close_after || !c->keepalive, extra);
    c->resp_done = 1;
    schedule(c);
}

static void
r_pause_body(struct mrd_req *req, int pause)
{
    struct mrd_conn *c = mrd_req_ctx(req);

    c->paused = pause != 0;
    want_read(c, !pause);
    if (!pause && (evbuffer_get_length(c->s->in) > 0 || c->rd_eof))
        schedule(c); /* not from inside the proxy's callback; after EOF, body_cut() decides */
}

static size_t
r_out_pending(struct mrd_req *req)
{
    struct mrd_conn *c = mrd_req_ctx(req);

    return evbuffer_get_length(c->s->out);
}

static const struct mrd_req_ops h1_ops = {
    .on_head = r_on_head,
    .on_body = r_on_body,
    .on_end = r_on_end,
    .on_error = r_on_error,
    .pause_body = r_pause_body,
    .out_pending = r_out_pending,
};

/* ---- request side ---- */

/* a protocol error from the client: answer and close */
static void
client_error(struct mrd_conn *c, int status, const char *detail)
{
    mrd_metrics_request(NULL, status, 0);
    if (c->req != NULL && c->resp_started) {
        c->dead = 1;
        schedule(c);
        return;
    }
    if (c->req != NULL) {
        mrd_req_free(c->req);
        c->req = NULL;
    }
    send_error(c, status, detail, 1, NULL);
    close_soon(c);
}

/* forward request body bytes already in the input buffer */
static void
pump_request_body(struct mrd_conn *c)
{
    struct evbuffer *in = c->s->in;
    uint64_t max_body = conf(c)->limits.max_body_bytes;

    mrd_stream_set_timeouts(c->s, ms32(conf(c)->timeouts.idle_ms), ms32(conf(c)->timeouts.idle_ms));
    while (!c->req_in_done && !c->paused && c->req != NULL) {
        size_t avail = evbuffer_get_length(in);
        if (c->in_body == MRD_H1_BODY_LENGTH) {
            size_t n = (size_t)MRD_MIN((uint64_t)avail, c->in_left);
            if (n == 0)
                return;
            mrd_req_body(c->req, in, n);
            c->in_left -= n;
            if (c->in_left == 0) {
                c->req_in_done = 1;
                mrd_req_body_end(c->req);
            }
        } else if (c->in_chunk.state == MRD_H1_CHUNK_DATA && c->in_chunk.remaining > 0) {
            size_t n = (size_t)MRD_MIN((uint64_t)avail, c->in_chunk.remaining);
            if (n == 0)
                return;
            c->in_total += n;
            if (c->in_total > max_body) {
                client_error(c, 413, "request body too large");
                return;
            }
            mrd_req_body(c->req, in, n);
            c->in_chunk.remaining -= n;
        } else {
            if (avail == 0)
                return;
            size_t n = MRD_MIN(avail, 4096);
            const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
            int in_trailers = c->in_chunk.state == MRD_H1_CHUNK_TRAILER;
            int r = mrd_h1_chunk_parse(&c->in_chunk, p, n, conf(c)->limits.max_header_bytes);
            if (r < 0) {
                client_error(c, 400, "malformed chunked body");
                return;
            }
            if (in_trailers && r > 0)
                mrd_req_trailer_section(c->req, p, (size_t)r);
            evbuffer_drain(in, (size_t)r);
            if (c->in_chunk.state == MRD_H1_CHUNK_DONE) {
                c->req_in_done = 1;
                mrd_req_body_end(c->req);
            } else if (r == 0 && !(c->in_chunk.state == MRD_H1_CHUNK_DATA && c->in_chunk.remaining > 0)) {
                return;
            }
        }
    }
    /* once the body is in, the read timeout is ignored (see on_event): only
     * timeouts.upstream_response bounds the wait for the response */
    if (c->req_in_done && c->resp_done)
        schedule(c);
}

/* a head that is well-formed but not acceptable: drop it, answer, close */
static void
reject_head(struct mrd_conn *c, size_t head_len, int status, const char *detail)
{
    evbuffer_drain(c->s->in, head_len);
    client_error(c, status, detail);
}

static int
is_websocket_upgrade(const struct mrd_h1_msg *m)
{
    const struct mrd_h1_header *u;

    if (!(m->flags & MRD_H1_F_UPGRADE) || !(m->flags & MRD_H1_F_CONN_UPGRADE))
        return 0;
    if (!mrd_strieq(m->method, m->method_len, "GET") || m->version_minor != 1)
        return 0;
    u = mrd_h1_find(m, "upgrade");
    return u != NULL && mrd_h1_list_has(u->value, u->value_len, "websocket");
}

static void
start_request(struct mrd_conn *c, struct mrd_h1_msg *m, size_t head_len)
{
    struct evbuffer *in = c->s->in;
    struct mrd_req_info info;
    char client_ip[MRD_IP_STRLEN];
    const char *detail, *extra;
    int status;

    c->served = 1;
    if (c->gen != c->w->gen) {
        /* reloaded since the last request: limits and timeouts follow */
        mrd_gen_release(c->gen);
        c->gen = c->w->gen;
        mrd_gen_acquire(c->gen);
    }
    c->client_10 = m->version_minor == 0;
    c->keepalive = !(m->flags & MRD_H1_F_CONN_CLOSE);
    c->close_after = 0;
    c->resp_done = c->resp_started = 0;
    c->in_body = m->body;
    c->in_left = m->content_length;
    c->in_total = 0;
    mrd_h1_chunk_init(&c->in_chunk);
    if (mrd_strieq(m->method, m->method_len, "CONNECT")) {
        reject_head(c, head_len, 405, "CONNECT is not supported");
        return;
    }
    {
        const char *auth, *path;
        size_t auth_len, path_len;
        enum mrd_h1_target_form form = mrd_h1_target_form(m->method, m->method_len, m->target, m->target_len,
                                                          &auth, &auth_len, &path, &path_len);
        const struct mrd_h1_header *host = mrd_h1_find(m, "host");

        if (form == MRD_H1_TARGET_INVALID) {
            reject_head(c, head_len, 400, "invalid request target");
            return;
        }
        if (host != NULL && !mrd_h1_host_valid(host->value, host->value_len)) {
            reject_head(c, head_len, 400, "invalid Host");
            return;
        }
        if (form == MRD_H1_TARGET_ABSOLUTE) {
            /* RFC 9112 3.2.2: the target's authority replaces Host, and the
             * upstream gets the origin form */
            struct mrd_buf *b = &c->w->scratch;
            b->len = 0;
            if (path_len == 0 || path[0] != '/')
                mrd_buf_lit(b, "/");
            mrd_buf_add(b, path, path_len);
            m->target = b->p;
            m->target_len = b->len;
            for (size_t i = 0; i < m->num_headers; i++)
                if (mrd_strieq(m->headers[i].name, m->headers[i].name_len, "host")) {
                    m->headers[i].value = auth;
                    m->headers[i].value_len = auth_len;
                }
        }
    }
    if (m->body == MRD_H1_BODY_LENGTH && m->content_length > conf(c)->limits.max_body_bytes) {
        reject_head(c, head_len, 413, "request body too large");
        return;
    }
    mrd_ip_format(&c->addrs.src, client_ip, sizeof(client_ip));
    info = (struct mrd_req_info){
        .method = m->method,
        .method_len = m->method_len,
        .target = m->target,
        .target_len = m->target_len,
        .headers = m->headers,
        .n_headers = m->num_headers,
        .client_ip = client_ip,
        .peer = &c->addrs.src,
        .conn_addrs = conn_addrs(c),
        .proto = c->tls ? "https" : "http",
        .body = (m->body == MRD_H1_BODY_LENGTH && m->content_length == 0) ? MRD_H1_BODY_NONE : m->body,
        .content_length = m->content_length,
        .upgrade = is_websocket_upgrade(m),
        .version = m->version_minor == 0 ? "1.0" : "1.1",
    };
    c->req_in_done = info.body == MRD_H1_BODY_NONE;
    c->state = CS_REQ;
    c->req = mrd_req_new(c->w, &h1_ops, c);
    status = mrd_req_start(c->req, &info, &detail, &extra);
    /* the head's bytes were used to build the upstream request: drop them */
    evbuffer_drain(in, head_len);
    if (status != 0) {
        r_on_error(c->req, status, detail, extra);
        if (!c->req_in_done) {
            /* the body would be read as a new request: close instead */
            c->close_after = 1;
        }
        return;
    }
    if (c->resp_done)
        return; /* failed at once (r_on_error ran): nothing more to read */
    if ((m->flags & MRD_H1_F_EXPECT_CONTINUE) && !c->client_10 && !c->req_in_done)
        mrd_stream_write(c->s, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    pump_request_body(c);
}

/* "PRI * HTTP/2.0": the HTTP/2 client preface's first line (RFC 9113 3.4),
 * not an HTTP/1 request in an unsupported version: 400 on an http1 listener */
static int
is_h2_preface_line(const char *p, size_t n)
{
    return n >= 16 && memcmp(p, "PRI * HTTP/2.0\r\n", 16) == 0;
}

/*
 * A head the parser rejected (err at pos) that is no HTTP/1 request line at
 * all, as an h2c listener sees it (the preface's first line, even with a
 * broken rest, went to h2.c already): a line whose version field is there
 * but is not an HTTP-version, with no "HTTP/" anywhere on the line (h2spec
 * http2/3.5/2 sends "INVALID CONNECTION PREFACE"). Every other
 * malformed line, as "GET /a b HTTP/1.1", "GET / http/1.1" or "GET / ",
 * comes from an HTTP/1 client and gets its 400 (or 505) like on any
 * listener (SPEC 12).
 */
static int
not_http1(const char *p, size_t n, int err, size_t pos)
{
    if (err != MRD_H1_ERR_VERSION || pos >= n || p[pos] == '\r' || p[pos] == '\n')
        return 0;
    for (size_t i = 0; i + 5 <= n && p[i] != '\r' && p[i] != '\n'; i++)
        if (mrd_strieq(p + i, 5, "HTTP/"))
            return 0;
    return 1;
}

/*
 * After the client's half-close, a request body that is still incomplete once
 * every buffered byte was used can never complete: abort the request and
 * drop the connection without an answer (as nginx and HAProxy do), unless
 * the response was already made (it is flushed, then the connection closes).
 */
static void
body_cut(struct mrd_conn *c)
{
    if (!c->rd_eof || c->state != CS_REQ || c->req_in_done || c->resp_done || c->paused || c->dead)
        return;
    c->dead = 1;
    mrd_stream_read(c->s, 0);
    schedule(c);
}

/* parse a head from the input, or keep waiting */
static void
process(struct mrd_conn *c)
{
    struct evbuffer *in = c->s->in;
    struct mrd_h1_msg *m = &c->w->msg;
    size_t max = conf(c)->limits.max_header_bytes;
    size_t len, n, pos = 0;
    const char *p;
    int r;

    if (c->state == CS_REQ) {
        if (!c->req_in_done)
            pump_request_body(c);
        body_cut(c);
        return;
    }
    if (c->state == CS_TUNNEL) {
        size_t avail = evbuffer_get_length(in);
        if (avail && !c->paused)
            mrd_req_body(c->req, in, avail);
        return;
    }
    if (c->state != CS_HEAD)
        return;
    /* RFC 9112 2.2: ignore empty lines before a request line */
    while (c->last_len == 0 && (len = evbuffer_get_length(in)) > 0) {
        p = (const char *)evbuffer_pullup(in, MRD_MIN(len, 2));
        if (p[0] == '\r' && len >= 2 && p[1] == '\n')
            evbuffer_drain(in, 2);
        else if (p[0] == '\r' && len < 2 && !c->rd_eof)
            return;
        else if (p[0] == '\r' && len < 2)
            evbuffer_drain(in, 1); /* a lone CR before the half-close */
        else
            break;
    }
    len = evbuffer_get_length(in);
    arm_head_timeout(c);
    if (len == 0) {
        if (c->rd_eof)
            close_soon(c); /* every request received was answered */
        return;
    }
    /* h2c prior knowledge: the client preface as the connection's first bytes */
    if (c->h2c && !c->served && (r = mrd_h2_preface(in)) >= 0) {
        struct mrd_stream *s = c->s;
        if (r == 0) {
            if (c->rd_eof) /* a cut preface: no HTTP/1 answer (see below) */
                close_soon(c);
            return; /* a prefix of it: wait for the rest */
        }
        conn_addrs(c); /* while c->s is set */
        c->s = NULL;   /* the stream and its bytes go to h2.c */
        mrd_h2_start(c->w, s, c->gen, &c->addrs, 0);
        conn_free(c);
        return;
    }
    n = MRD_MIN(len, max);
    p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    r = mrd_h1_parse_request(p, n, c->last_len, m, &pos);
    if (r == 0) {
        if (n >= max) {
            client_error(c, 431, "request header fields too large");
            return;
        }
        if (c->rd_eof) {
            /* half-closed in the middle of a head: it can never complete
             * (HAProxy answers 400 too; nginx closes without a word) */
            client_error(c, 400, "incomplete request head");
            return;
        }
        c->last_len = n;
        return;
    }
    if (r < 0) {
        /* An h2c listener whose first bytes cannot be an HTTP/1 request
         * line: the client may be speaking HTTP/2 with an invalid preface, a
         * connection error (RFC 9113 3.4). An HTTP/1 response would be read
         * as garbage frames by such a client (h2spec http2/3.5/2 expects the
         * connection closed), so close without one. */
        if (c->h2c && !c->served && not_http1(p, n, r, pos)) {
            mrd_metrics_request(NULL, 400, 0);
            close_soon(c);
            return;
        }
        if (r == MRD_H1_ERR_VERSION_UNSUPPORTED && !is_h2_preface_line(p, n))
            client_error(c, 505, mrd_h1_strerror(r));
        else
            client_error(c, r == MRD_H1_ERR_TOO_MANY_HEADERS ? 431 : 400, mrd_h1_strerror(r));
        return;
    }
    c->last_len = 0;
    start_request(c, m, (size_t)r);
    body_cut(c);
}

/* ---- stream callbacks ---- */

static void
on_read(struct mrd_stream *st, void *arg)
{
    struct mrd_conn *c = arg;

    if (c->lingering) {
        evbuffer_drain(st->in, evbuffer_get_length(st->in));
        return;
    }
    process(c);
}

static void
on_write(struct mrd_stream *st, void *arg)
{
    struct mrd_conn *c = arg;

    if (c->state == CS_CLOSING) {
        if (!c->lingering)
            linger(c);
        return;
    }
    if (c->req != NULL)
        mrd_req_resume(c->req);
}

static void
on_event(struct mrd_stream *st, short what, void *arg)
{
    struct mrd_conn *c = arg;

    if (what & MRD_STREAM_CONNECTED) {
        /* TLS handshake done: ALPN decides the protocol */
        mrd_metrics_tls_handshake();
        if (mrd_tls_alpn(st->ssl) == MRD_PROTO_H2) {
            conn_addrs(c); /* while c->s is set */
            c->s = NULL;   /* the HTTP/2 connection takes the stream over */
            mrd_h2_start(c->w, st, c->gen, &c->addrs, 1);
            conn_free(c);
            return;
        }
        arm_head_timeout(c);
        return;
    }

    if ((what & MRD_STREAM_EOF) && !c->lingering && c->state != CS_TUNNEL) {
        /* no more requests: answer those received (process() goes on with
         * the pipelined ones and closes when none is left) */
        c->rd_eof = 1;
        if (c->state != CS_CLOSING && !c->paused)
            process(c);
        return;
    }

    if (what & MRD_STREAM_TIMEOUT) {
        if (c->lingering || (what & MRD_STREAM_WRITING)) {
            conn_free(c);
            return;
        }
        if (c->state == CS_HEAD) {
            if (evbuffer_get_length(st->in) > 0)
                client_error(c, 408, "request header timeout");
            else
                conn_free(c); /* keep-alive idle */
            return;
        }
        if (c->state == CS_REQ && !c->resp_started && !c->req_in_done) {
            client_error(c, 408, "request body timeout");
            return;
        }
        if (c->state == CS_REQ && c->req_in_done)
            return; /* waiting for the upstream: its own timeout applies */
    }
    conn_free(c);
}

/* the worker's deferred event: post-processing of every scheduled connection */
void
mrd_conn_run_deferred(struct mrd_worker *w)
{
    struct mrd_conn *c;

    while ((c = w->deferred) != NULL) {
        w->deferred = c->dnext;
        if (w->deferred != NULL)
            w->deferred->dprev = NULL;
        c->dnext = c->dprev = NULL;
        c->deferred = 0;
        on_defer(c);
    }
}

/* TLS or not, the connection starts: the handshake or the first head */
static void
conn_begin(struct mrd_conn *c, size_t listener)
{
    struct mrd_tls *tls = listener < conf(c)->n_listeners ? c->gen->tls[listener] : NULL;

    if (tls != NULL) {
        /* the handshake gets the request_header budget */
        uint32_t ms = ms32(conf(c)->timeouts.request_header_ms);
        SSL *ssl = mrd_tls_ssl_new(tls);
        if (ssl == NULL) {
            conn_free(c);
            return;
        }
        c->tls = 1;
        mrd_stream_tls_accept(c->s, ssl);
        mrd_stream_set_timeouts(c->s, ms, ms);
    } else {
        arm_head_timeout(c);
    }
    mrd_stream_read(c->s, 1);
}

/* the PROXY header arrived (h), or not (err): start, or close without a word */
static void
pp_done(void *arg, const struct mrd_pp_header *h, const char *err)
{
    struct mrd_conn *c = arg;

    mrd_pp_wait_free(c->pp);
    c->pp = NULL;
    if (h == NULL) {
        char ip[MRD_IP_STRLEN];
        mrd_ip_format(&c->addrs.src, ip, sizeof(ip));
        mrd_log(MRD_LOG_DEBUG, "%s: closed: %s", ip, err);
        conn_free(c);
        return;
    }
    if (h->proxy) {
        c->addrs = h->addrs;
        c->dst_known = 1;
    }
    conn_begin(c, c->listener);
}

void
mrd_conn_accept(struct mrd_worker *w, evutil_socket_t fd, const struct sockaddr *sa, int socklen, size_t listener)
{
    const struct mrd_config *cf = w->gen->conf;
    const struct mrd_listener_conf *lc = listener < cf->n_listeners ? &cf->listeners[listener] : NULL;
    struct mrd_conn *c;
    struct mrd_ip peer;
    int one = 1;

    if (atomic_load(&mrd_connections_active) >= cf->limits.max_connections) {
        evutil_closesocket(fd);
        return;
    }
    if (mrd_ip_from_sockaddr(sa, &peer) == -1)
        memset(&peer, 0, sizeof(peer)); /* accept() gives IPv4 or IPv6: not reached */
    if (lc != NULL && lc->proxy_protocol && !mrd_client_ip_trusted(&cf->client_ip, &peer)) {
        char ip[MRD_IP_STRLEN];
        mrd_ip_format(&peer, ip, sizeof(ip));
        mrd_log(MRD_LOG_DEBUG, "%s: closed: not in client_ip.trusted_proxies (proxy_protocol listener)", ip);
        evutil_closesocket(fd);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    evutil_make_socket_nonblocking(fd);
    c = mrd_xcalloc(1, sizeof(*c));
    c->w = w;
    c->gen = w->gen;
    mrd_gen_acquire(c->gen);
    c->h2c = lc != NULL && (lc->protocols & MRD_PROTO_H2C);
    c->addrs.src = peer;
    c->addrs.src_port = port_of(sa);
    c->s = mrd_stream_new(&w->sloop, fd);
    c->s->rhigh = cf->limits.max_header_bytes + 65536;
    mrd_stream_setcb(c->s, on_read, on_write, on_event, c);
    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    mrd_worker_conn_opened(w);
    atomic_fetch_add(&mrd_connections_active, 1);
    if (lc != NULL && lc->proxy_protocol) {
        c->listener = listener;
        c->pp = mrd_pp_wait_start(w->base, fd, mrd_now_us() + cf->timeouts.request_header_ms * 1000, pp_done, c);
        return;
    }
    conn_begin(c, listener);
}

void
mrd_conn_shutdown_all(struct mrd_worker *w, int force)
{
    struct mrd_conn *c, *next;

    for (c = w->conns; c != NULL; c = next) {
        next = c->next;
        if (force || (c->state == CS_HEAD && evbuffer_get_length(c->s->in) == 0))
            conn_free(c);
    }
    mrd_h2_shutdown_all(w, force);
}
