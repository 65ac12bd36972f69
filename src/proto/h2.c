/*
 * h2.c: HTTP/2 downstream connections on an nghttp2 server session. Each
 * stream becomes one struct mrd_req (proxy.c); its response is sent back as
 * HEADERS + DATA from a per-stream buffer. nghttp2 does the framing, HPACK
 * and RFC 9113 checks (HTTP messaging checks stay on); this file does the
 * glue, flow control towards the proxy, limits and connection lifetime.
 * No server push, no Upgrade/CONNECT tunnels.
 *
 * Flow control: the connection and stream windows are reopened only as the
 * proxy takes request body bytes (automatic WINDOW_UPDATE is off), so a paused
 * upstream stops the client. Response bytes wait in the stream's buffer until
 * the client's window and the socket let them out; out_pending reports them
 * so that the proxy stops reading the upstream.
 *
 * Split by concern: responses and the request ops in h2_resp.c, nghttp2's
 * memory and the idle trim in h2_mem.c, frame scanning, stream id checks and
 * the flood bound in h2_guard.c; the shared state is in h2-int.h.
 *
 * Reentrancy: nghttp2 is driven (mem_recv / mem_send) only from this file's
 * stream and deferred-event callbacks. Callbacks from proxy.c only submit to
 * the session and schedule the deferred event; requests of closed streams
 * are freed from that event, never inside a proxy or nghttp2 callback.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <nghttp2/nghttp2.h>

#include "meridian/addr.h"
#include "meridian/clock.h"
#include "meridian/common.h"
#include "meridian/h2.h"
#include "meridian/h2-int.h"
#include "meridian/headers.h"
#include "meridian/log.h"
#include "meridian/metrics.h"
#include "meridian/server.h"

#define STREAM_WINDOW (256 * 1024) /* SETTINGS_INITIAL_WINDOW_SIZE we announce */
#define CONN_WINDOW (1024 * 1024)  /* connection receive window */
#define MAX_STREAMS 128
#define OUT_HIGH (256 * 1024) /* stop producing frames above this much unsent output */
#define BODY_CHUNK (64 * 1024)

static void flush(struct mrd_h2_conn *h);
static void conn_free(struct mrd_h2_conn *h);

static uint32_t
ms32(uint64_t ms)
{
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

/* ---- streams ---- */

static void h2s_destroy(struct h2s *st);

static struct h2s *
stream_new(struct mrd_h2_conn *h, int32_t id)
{
    struct h2s *st = h->w->h2s_pool;

    if (st != NULL) {
        /* kept from an earlier stream: empty buffers, everything else zero */
        h->w->h2s_pool = st->rnext;
        h->w->n_h2s_pool--;
        st->rnext = NULL;
    } else {
        st = mrd_xcalloc(1, sizeof(*st));
        st->resp = evbuffer_new();
        st->body_in = evbuffer_new();
    }
    st->h = h;
    st->id = id;
    st->next = h->streams;
    if (h->streams != NULL)
        h->streams->prev = st;
    h->streams = st;
    h->n_streams++;
    return st;
}

static void
stream_free(struct h2s *st)
{
    struct mrd_h2_conn *h = st->h;

    if (st->req != NULL)
        mrd_req_free(st->req);
    if (st->prev != NULL)
        st->prev->next = st->next;
    else
        h->streams = st->next;
    if (st->next != NULL)
        st->next->prev = st->prev;
    h->n_streams--;
    mrd_buf_dispose(&st->trailer_buf);
    free(st->trailer_nv);
    if ((int)h->w->n_h2s_pool < MRD_POOL_MAX && st->hb.cap <= 16384 && st->cap_hf <= 64) {
        struct evbuffer *resp = st->resp, *body_in = st->body_in;
        struct mrd_buf hb = st->hb;
        struct hfield *hf = st->hf;
        size_t cap_hf = st->cap_hf;
        evbuffer_drain(resp, evbuffer_get_length(resp));
        evbuffer_drain(body_in, evbuffer_get_length(body_in));
        hb.len = 0;
        memset(st, 0, sizeof(*st));
        st->resp = resp;
        st->body_in = body_in;
        st->hb = hb;
        st->hf = hf;
        st->cap_hf = cap_hf;
        st->rnext = h->w->h2s_pool;
        h->w->h2s_pool = st;
        h->w->n_h2s_pool++;
        return;
    }
    h2s_destroy(st);
}

static void
h2s_destroy(struct h2s *st)
{
    evbuffer_free(st->resp);
    evbuffer_free(st->body_in);
    mrd_buf_dispose(&st->hb);
    free(st->hf);
    free(st);
}

void
mrd_h2_pool_dispose(struct mrd_worker *w)
{
    while (w->h2s_pool != NULL) {
        struct h2s *st = w->h2s_pool;
        w->h2s_pool = st->rnext;
        h2s_destroy(st);
    }
    w->n_h2s_pool = 0;
}

/* give request body bytes back to the client's windows */
static void
consume(struct mrd_h2_conn *h, struct h2s *st, size_t n)
{
    if (n == 0)
        return;
    if (st != NULL && !st->closed)
        nghttp2_session_consume(h->ng, st->id, n);
    else
        nghttp2_session_consume_connection(h->ng, n);
}

/* ---- requests ---- */

static void
body_end(struct h2s *st)
{
    if (st->in_done && !st->body_end_sent && evbuffer_get_length(st->body_in) == 0) {
        st->body_end_sent = 1;
        if (st->req != NULL && !st->discard)
            mrd_req_body_end(st->req);
    }
}

/* hand held request body to the proxy while it accepts it */
static void
pump_body(struct h2s *st)
{
    struct mrd_h2_conn *h = st->h;
    size_t len;

    while (!st->body_paused && st->req != NULL && (len = evbuffer_get_length(st->body_in)) > 0) {
        size_t n = MRD_MIN(len, BODY_CHUNK);
        mrd_req_body(st->req, st->body_in, n);
        st->unconsumed -= n;
        consume(h, st, n);
    }
    body_end(st);
}

/* headers complete: build the request and start it */
static void
start_request(struct h2s *st, int end_stream)
{
    struct mrd_h2_conn *h = st->h;
    struct mrd_h1_header *hdrs, stack_hdrs[64];
    const char *method = NULL, *path = NULL, *authority = NULL;
    size_t method_len = 0, path_len = 0, authority_len = 0, n = 0;
    int has_host = 0, has_cl = 0;
    uint64_t cl = 0;
    struct mrd_buf cookie = {0};
    struct mrd_req_info info;
    const char *detail, *extra;
    int status;

    st->in_done = end_stream != 0;
    if (st->hdr_too_big) {
        mrd_h2_reject(st, 431, "request header fields too large");
        return;
    }
    hdrs = st->n_hf + 2 <= MRD_ARRAY_LEN(stack_hdrs) ? stack_hdrs : mrd_xcalloc(st->n_hf + 2, sizeof(*hdrs));
    for (size_t i = 0; i < st->n_hf; i++) {
        const char *name = st->hb.p + st->hf[i].name_off, *value = st->hb.p + st->hf[i].value_off;
        size_t nl = st->hf[i].name_len, vl = st->hf[i].value_len;
        if (nl > 0 && name[0] == ':') {
            if (mrd_strieq(name, nl, ":method"))
                method = value, method_len = vl;
            else if (mrd_strieq(name, nl, ":path"))
                path = value, path_len = vl;
            else if (mrd_strieq(name, nl, ":authority"))
                authority = value, authority_len = vl;
            continue;
        }
        if (mrd_strieq(name, nl, "cookie")) {
            /* RFC 9113 8.2.3: one field again for HTTP/1.1 */
            if (cookie.len)
                mrd_buf_lit(&cookie, "; ");
            mrd_buf_add(&cookie, value, vl);
            continue;
        }
        if (mrd_strieq(name, nl, "host")) {
            if (has_host || !mrd_h1_host_valid(value, vl)) {
                if (hdrs != stack_hdrs)
                    free(hdrs);
                mrd_buf_dispose(&cookie);
                mrd_h2_reject(st, 400, "invalid Host");
                return;
            }
            has_host = 1;
        }
        if (mrd_strieq(name, nl, "content-length")) {
            /* nghttp2 checked the digits and that they agree with the DATA */
            has_cl = 1;
            cl = strtoull(value, NULL, 10);
        }
        hdrs[n++] = (struct mrd_h1_header){name, nl, value, vl};
    }
    if (!has_host && authority != NULL) {
        if (!mrd_h1_host_valid(authority, authority_len)) {
            if (hdrs != stack_hdrs)
                free(hdrs);
            mrd_buf_dispose(&cookie);
            mrd_h2_reject(st, 400, "invalid :authority");
            return;
        }
        hdrs[n++] = (struct mrd_h1_header){"host", 4, authority, authority_len};
    }
    if (cookie.len)
        hdrs[n++] = (struct mrd_h1_header){"cookie", 6, cookie.p, cookie.len};
    if (method == NULL || mrd_strieq(method, method_len, "CONNECT") || path == NULL) {
        if (hdrs != stack_hdrs)
            free(hdrs);
        mrd_buf_dispose(&cookie);
        mrd_h2_reject(st, 405, "CONNECT is not supported");
        return;
    }
    if (has_cl && cl > conf(h)->limits.max_body_bytes) {
        if (hdrs != stack_hdrs)
            free(hdrs);
        mrd_buf_dispose(&cookie);
        mrd_h2_reject(st, 413, "request body too large");
        return;
    }
    info = (struct mrd_req_info){
        .method = method,
        .method_len = method_len,
        .target = path,
        .target_len = path_len,
        .headers = hdrs,
        .n_headers = n,
        .client_ip = h->client_ip,
        .peer = &h->addrs.src,
        .conn_addrs = &h->addrs,
        .proto = h->tls ? "https" : "http",
        .version = "2",
        .body = end_stream ? MRD_H1_BODY_NONE : has_cl ? MRD_H1_BODY_LENGTH : MRD_H1_BODY_CHUNKED,
        .content_length = cl,
        .upgrade = 0,
    };
    if (info.body == MRD_H1_BODY_LENGTH && cl == 0)
        info.body = MRD_H1_BODY_NONE; /* an empty DATA with END_STREAM follows */
    st->req = mrd_req_new(h->w, &mrd_h2_req_ops, st);
    mrd_metrics_h2_stream();
    status = mrd_req_start(st->req, &info, &detail, &extra);
    if (hdrs != stack_hdrs)
        free(hdrs);
    mrd_buf_dispose(&cookie);
    /* the header bytes were copied into the upstream head; the storage
     * stays for the stream's next life (pool) unless it grew large */
    st->hb.len = 0;
    st->n_hf = 0;
    if (st->hb.cap > 16384)
        mrd_buf_dispose(&st->hb);
    if (st->cap_hf > 64) {
        free(st->hf);
        st->hf = NULL;
        st->cap_hf = 0;
    }
    if (status != 0) {
        mrd_h2_r_on_error(st->req, status, detail, extra);
        mrd_req_free(st->req);
        st->req = NULL;
        return;
    }
    if (info.body == MRD_H1_BODY_NONE) {
        st->in_done = 1; /* nothing more goes upstream, even an empty DATA */
        st->body_end_sent = 1;
    }
}

/* ---- nghttp2 callbacks ---- */

static int
on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *arg)
{
    struct mrd_h2_conn *h = arg;
    struct h2s *st;

    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    st = stream_new(h, frame->hd.stream_id);
    nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, st);
    return 0;
}

static int
on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
          const uint8_t *value, size_t valuelen, uint8_t flags, void *arg)
{
    struct mrd_h2_conn *h = arg;
    struct h2s *st;

    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        /* trailers (nghttp2 has checked them: END_STREAM, no pseudo fields):
         * to the upstream after the last chunk */
        if (st != NULL && st->req != NULL && !st->discard &&
            mrd_req_trailer_field(st->req, (const char *)name, namelen, (const char *)value, valuelen) == -1)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM: too large */
        return 0;
    }
    if (st == NULL || st->hdr_too_big)
        return 0;
    st->hdr_bytes += namelen + valuelen + 32;
    if (st->hdr_bytes > conf(h)->limits.max_header_bytes || st->n_hf >= MRD_H1_MAX_HEADERS) {
        st->hdr_too_big = 1;
        return 0;
    }
    if (st->n_hf == st->cap_hf) {
        st->cap_hf = st->cap_hf ? st->cap_hf * 2 : 16;
        st->hf = mrd_xrealloc(st->hf, st->cap_hf * sizeof(*st->hf));
    }
    st->hf[st->n_hf] = (struct hfield){st->hb.len, namelen, st->hb.len + namelen, valuelen};
    mrd_buf_add(&st->hb, name, namelen);
    mrd_buf_add(&st->hb, value, valuelen);
    st->n_hf++;
    return 0;
}

static int
on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *arg)
{
    struct mrd_h2_conn *h = arg;
    struct h2s *st = nghttp2_session_get_stream_user_data(ng, id);

    if (st == NULL || st->req == NULL || st->discard) {
        if (st != NULL)
            consume(h, st, len);
        else
            h->conn_unconsumed += len;
        return 0;
    }
    st->body_total += len;
    if (st->body_total > conf(h)->limits.max_body_bytes) {
        consume(h, st, len + st->unconsumed);
        evbuffer_drain(st->body_in, st->unconsumed);
        st->unconsumed = 0;
        if (!st->resp_submitted) {
            mrd_h2_reject(st, 413, "request body too large");
        } else {
            mrd_req_free(st->req);
            st->req = NULL;
            st->discard = 1;
            nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        }
        return 0;
    }
    if (st->body_paused || evbuffer_get_length(st->body_in) > 0) {
        evbuffer_add(st->body_in, data, len);
        st->unconsumed += len;
        return 0;
    }
    if (h->w->h2_body == NULL)
        h->w->h2_body = evbuffer_new();
    evbuffer_add(h->w->h2_body, data, len);
    mrd_req_body(st->req, h->w->h2_body, len);
    evbuffer_drain(h->w->h2_body, evbuffer_get_length(h->w->h2_body));
    consume(h, st, len);
    return 0;
}

static int
on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *arg)
{
    struct mrd_h2_conn *h = arg;
    struct h2s *st = frame->hd.stream_id ? nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id) : NULL;
    int es = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    (void)h;
    if (st == NULL)
        return 0;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            start_request(st, es);
        } else if (es) {
            /* trailers end the body (their fields went to the request) */
            st->in_done = 1;
            body_end(st);
        }
        break;
    case NGHTTP2_DATA:
        if (es) {
            st->in_done = 1;
            body_end(st);
        }
        break;
    default:
        break;
    }
    return 0;
}

static int
on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *arg)
{
    struct h2s *st;

    if (frame->hd.type == NGHTTP2_RST_STREAM)
        mrd_h2_rst_mark(arg, frame->hd.stream_id);
    /* RFC 9113 8.1: a complete response before the whole request: ask the
     * client to stop sending without an error */
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        (st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id)) != NULL && !st->in_done)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

static int
on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *arg)
{
    struct mrd_h2_conn *h = arg;
    struct h2s *st = nghttp2_session_get_stream_user_data(ng, id);

    if (st == NULL || st->closed)
        return 0;
    st->closed = 1;
    h->conn_unconsumed += st->unconsumed;
    st->unconsumed = 0;
    evbuffer_drain(st->body_in, evbuffer_get_length(st->body_in));
    st->rnext = h->reap;
    h->reap = st;
    schedule(h);
    return 0;
}

static nghttp2_session_callbacks *cbs; /* shared, read-only once made */
static pthread_once_t cbs_once = PTHREAD_ONCE_INIT;

static void
make_callbacks(void)
{
    {
        if (nghttp2_session_callbacks_new(&cbs) != 0)
            abort();
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
        nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
        nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, mrd_h2_on_begin_frame);
    }
}

static nghttp2_session_callbacks *
callbacks(void)
{
    pthread_once(&cbs_once, make_callbacks);
    return cbs;
}

/* ---- connection ---- */

static void
arm_timeouts(struct mrd_h2_conn *h)
{
    uint32_t idle = ms32(conf(h)->timeouts.idle_ms);

    if (h->lingering)
        return;
    /* idle: no stream open; with streams open the upstream's timeouts bound
     * the wait, the write timeout a client that stopped reading */
    mrd_stream_set_timeouts(h->s, h->n_streams == 0 ? idle : 0, idle);
}

/* the GOAWAY code for a fatal result of nghttp2_session_mem_recv/mem_send */
static uint32_t
fatal_code(const struct mrd_h2_conn *h, int rv)
{
    switch (rv) {
    case NGHTTP2_ERR_BAD_CLIENT_MAGIC:
    case NGHTTP2_ERR_PROTO:
        return NGHTTP2_PROTOCOL_ERROR;
    case NGHTTP2_ERR_HEADER_COMP:
        return NGHTTP2_COMPRESSION_ERROR;
    case NGHTTP2_ERR_FLOW_CONTROL:
        return NGHTTP2_FLOW_CONTROL_ERROR;
    case NGHTTP2_ERR_FLOODED:
    case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
        return NGHTTP2_ENHANCE_YOUR_CALM;
    case NGHTTP2_ERR_CALLBACK_FAILURE:
        return h->cb_error ? h->cb_error : NGHTTP2_INTERNAL_ERROR;
    default:
        return NGHTTP2_INTERNAL_ERROR;
    }
}

/*
 * nghttp2 returned a fatal error (every negative result of mem_recv and
 * mem_send is one: NGHTTP2_ERR_FATAL and below), after which its API allows
 * nothing but nghttp2_session_del. So: our own GOAWAY (9-byte frame header,
 * last stream id, error code) after what is already queued (mem_send hands
 * out whole frames, so the output ends on a frame boundary), preceded by an
 * empty SETTINGS if nghttp2 sent nothing yet (the server preface); the
 * requests are freed (no proxy callback can reach the session again), and
 * from here only the socket is used: input is dropped, the output drains,
 * then linger and close. Top level only (not inside nghttp2 or proxy
 * callbacks).
 */
static void
session_fatal(struct mrd_h2_conn *h, int rv)
{
    uint32_t code = fatal_code(h, rv), last = h->last_sid > 0 ? (uint32_t)h->last_sid : 0;
    uint8_t f[9 + 9 + 8] = {0, 0, 0, NGHTTP2_SETTINGS, 0, 0, 0, 0, 0, 0, 0, 8, NGHTTP2_GOAWAY, 0, 0, 0, 0, 0};

    if (h->broken)
        return;
    mrd_log(MRD_LOG_DEBUG, "%s: h2: %s: GOAWAY %u", h->client_ip, nghttp2_strerror(rv), (unsigned)code);
    h->broken = 1;
    h->goaway = 1;
    h->closing = 1;
    while (h->streams != NULL)
        stream_free(h->streams); /* mrd_req_free never calls back */
    h->reap = NULL;
    for (int i = 0; i < 4; i++) {
        f[18 + i] = (uint8_t)(last >> (24 - 8 * i));
        f[22 + i] = (uint8_t)(code >> (24 - 8 * i));
    }
    if (h->sent_any)
        mrd_stream_write(h->s, f + 9, sizeof(f) - 9);
    else
        mrd_stream_write(h->s, f, sizeof(f));
    evbuffer_drain(h->s->in, evbuffer_get_length(h->s->in));
    /* a client that does not read gets the same second as in linger */
    mrd_stream_set_timeouts(h->s, 1000, 1000);
}

/* feed received bytes to the session */
static void
recv_input(struct mrd_h2_conn *h)
{
    struct evbuffer *in = h->s->in;
    size_t len;

    if (h->broken) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    if (h->lingering)
        return;
    while ((len = evbuffer_get_length(in)) > 0 && evbuffer_get_length(h->s->out) < OUT_HIGH) {
        size_t n = MRD_MIN(len, 16384);
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)n);
        int bad;
        n = mrd_h2_scan_input(h, p, n, &bad);
        if (n == 0 && !bad)
            break; /* only part of a frame header is here */
        if (bad) {
            mrd_log(MRD_LOG_DEBUG, "%s: h2: frame on a closed stream", h->client_ip);
            evbuffer_drain(in, len);
            nghttp2_session_terminate_session(h->ng, NGHTTP2_STREAM_CLOSED);
            h->closing = 1;
            break;
        }
        ssize_t r = nghttp2_session_mem_recv(h->ng, p, n);
        if (r < 0) {
            session_fatal(h, (int)r);
            return;
        }
        evbuffer_drain(in, (size_t)r);
        h->big_dirty = 1; /* HPACK buffers may have been written */
    }
    /* output backed up: stop reading until it drains (on_write); a partial
     * frame header left in the input waits for more */
    mrd_stream_read(h->s, evbuffer_get_length(in) == 0 || evbuffer_get_length(h->s->out) < OUT_HIGH);
}

/*
 * The flush point: window updates for consumed body, pending request body
 * for unpaused streams, upstreams to resume, then frames into the socket's
 * output (up to OUT_HIGH). Frees reaped streams and decides on closing.
 */
static void
flush(struct mrd_h2_conn *h)
{
    if (h->in_flush || h->broken)
        return;
    h->in_flush = 1;
    for (int rounds = 0; rounds < 64; rounds++) {
        if (h->conn_unconsumed) {
            nghttp2_session_consume_connection(h->ng, h->conn_unconsumed);
            h->conn_unconsumed = 0;
        }
        if (h->need_body) {
            h->need_body = 0;
            for (struct h2s *st = h->streams; st != NULL; st = st->next)
                if (!st->closed && !st->body_paused && evbuffer_get_length(st->body_in) > 0)
                    pump_body(st);
        }
        while (evbuffer_get_length(h->s->out) < OUT_HIGH) {
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(h->ng, &p);
            if (n < 0) {
                session_fatal(h, (int)n);
                break;
            }
            if (n == 0)
                break;
            h->big_dirty = 1;
            h->sent_any = 1;
            mrd_stream_write(h->s, p, (size_t)n);
        }
        if (h->broken || !h->need_resume)
            break;
        /* upstreams paused on a full stream buffer that has drained */
        h->need_resume = 0;
        for (struct h2s *st = h->streams; st != NULL; st = st->next)
            if (st->upstream_paused && evbuffer_get_length(st->resp) <= RESP_LOW) {
                st->upstream_paused = 0;
                if (st->req != NULL && !st->closed)
                    mrd_req_resume(st->req); /* may add data: send again */
            }
    }
    while (h->reap != NULL) {
        struct h2s *st = h->reap;
        h->reap = st->rnext;
        stream_free(st);
    }
    if (h->broken) {
        h->in_flush = 0;
        return;
    }
    if (h->n_streams == 0 && h->big_dirty) {
        static const struct timeval trim_tv = {TRIM_AFTER_MS / 1000, (TRIM_AFTER_MS % 1000) * 1000};
        event_add(&h->defer_ev, &trim_tv);
    }
    h->in_flush = 0;
    if (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng))
        h->closing = 1;
    arm_timeouts(h);
}

/* after the output went out: half-close, drop what the client still sends
 * for a moment, then close (a RST could destroy our GOAWAY) */
static void
linger(struct mrd_h2_conn *h)
{
    h->lingering = 1;
    mrd_stream_shutdown_write(h->s);
    evbuffer_drain(h->s->in, evbuffer_get_length(h->s->in));
    h->s->rhigh = 0;
    mrd_stream_set_timeouts(h->s, 1000, 1000);
    mrd_stream_read(h->s, 1);
}

/* top level only (not inside nghttp2 or proxy callbacks) */
static void
after(struct mrd_h2_conn *h)
{
    if (h->closing && !h->lingering && evbuffer_get_length(h->s->out) == 0)
        linger(h);
}

static void
on_defer(evutil_socket_t fd, short what, void *arg)
{
    struct mrd_h2_conn *h = arg;

    if (what & EV_TIMEOUT)
        mrd_h2_trim(h);
    if (!(what & EV_READ))
        return;
    if (!h->lingering && !h->closing && evbuffer_get_length(h->s->in) > 0)
        recv_input(h);
    flush(h);
    after(h);
}

static void
on_read(struct mrd_stream *s, void *arg)
{
    struct mrd_h2_conn *h = arg;

    if (h->lingering) {
        evbuffer_drain(s->in, evbuffer_get_length(s->in));
        return;
    }
    recv_input(h);
    flush(h);
    after(h);
}

static void
on_write(struct mrd_stream *s, void *arg)
{
    struct mrd_h2_conn *h = arg;

    if (h->lingering)
        return;
    if (evbuffer_get_length(s->in) > 0 && !h->closing)
        recv_input(h);
    mrd_stream_read(s, 1);
    flush(h);
    after(h);
}

static void
on_event(struct mrd_stream *s, short what, void *arg)
{
    struct mrd_h2_conn *h = arg;

    if ((what & MRD_STREAM_TIMEOUT) && (what & MRD_STREAM_READING) && !h->lingering && !h->closing &&
        h->n_streams == 0) {
        /* idle: say goodbye properly */
        nghttp2_session_terminate_session(h->ng, NGHTTP2_NO_ERROR);
        h->closing = 1;
        flush(h);
        after(h);
        return;
    }
    conn_free(h);
}

static void
conn_free(struct mrd_h2_conn *h)
{
    /* requests first: mrd_req_free never calls back */
    while (h->streams != NULL)
        stream_free(h->streams);
    h->reap = NULL;
    nghttp2_session_del(h->ng);
    event_del(&h->defer_ev);
    if (h->prev != NULL)
        h->prev->next = h->next;
    else
        h->w->h2_conns = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
    mrd_worker_conn_closed(h->w);
    atomic_fetch_sub(&mrd_connections_active, 1);
    mrd_stream_free(h->s);
    mrd_gen_release(h->gen);
    free(h);
}

/* ---- public entry points ---- */

struct mrd_h2_conn *
mrd_h2_start(struct mrd_worker *w, struct mrd_stream *s, struct mrd_gen *gen, const struct mrd_pp_addrs *addrs,
             int tls)
{
    struct mrd_h2_conn *h = mrd_xcalloc(1, sizeof(*h));
    nghttp2_option *opt;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)MRD_MIN(gen->conf->limits.max_header_bytes, UINT32_MAX)},
    };

    h->w = w;
    h->gen = gen;
    mrd_gen_acquire(gen);
    h->s = s;
    h->tls = tls != 0;
    h->addrs = *addrs;
    mrd_ip_format(&h->addrs.src, h->client_ip, sizeof(h->client_ip));
    h->last_sid = -1;
    h->scan_skip = NGHTTP2_CLIENT_MAGIC_LEN; /* the client's preface */
    h->scan_max_sid = -1;
    if (nghttp2_option_new(&opt) != 0)
        abort();
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
    nghttp2_option_set_max_continuations(opt, 8);
    /* responses are not indexed (as HAProxy and nginx do): no header
     * copies kept per connection */
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 0);
    nghttp2_option_set_no_closed_streams(opt, 1);
    /* nghttp2 keeps its own copy of the allocator */
    nghttp2_mem mem;
    mrd_h2_mem_init(&mem, h);
    if (nghttp2_session_server_new3(&h->ng, callbacks(), h, opt, &mem) != 0)
        abort();
    nghttp2_option_del(opt);
    nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, MRD_ARRAY_LEN(iv));
    nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    event_assign(&h->defer_ev, w->base, -1, 0, on_defer, h);
    h->next = w->h2_conns;
    if (w->h2_conns != NULL)
        w->h2_conns->prev = h;
    w->h2_conns = h;
    mrd_worker_conn_opened(w);
    atomic_fetch_add(&mrd_connections_active, 1);
    s->rhigh = 256 * 1024;
    mrd_stream_setcb(s, on_read, on_write, on_event, h);
    mrd_stream_read(s, 1);
    arm_timeouts(h);
    if (atomic_load(&w->stopping)) {
        nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
        h->goaway = 1;
    }
    /* Our SETTINGS wait for the client's preface (which a client sends
     * without waiting for ours, RFC 9113 3.4), so that they leave in one
     * write with the SETTINGS ACK: one TLS record and syscall less per
     * connection. h2c brings the preface along. */
    if (evbuffer_get_length(s->in) > 0 || h->goaway)
        schedule(h);
    return h;
}

int
mrd_h2_preface(struct evbuffer *in)
{
    size_t len = MRD_MIN(evbuffer_get_length(in), (size_t)MRD_H2_PREFACE_LINE);
    const char *p;

    if (len == 0)
        return -1;
    p = (const char *)evbuffer_pullup(in, (ev_ssize_t)len);
    if (memcmp(p, MRD_H2_PREFACE, len) != 0)
        return -1;
    return len == MRD_H2_PREFACE_LINE ? 1 : 0;
}

void
mrd_h2_shutdown_all(struct mrd_worker *w, int force)
{
    struct mrd_h2_conn *h, *next;

    for (h = w->h2_conns; h != NULL; h = next) {
        next = h->next;
        if (force) {
            conn_free(h);
            continue;
        }
        if (!h->goaway) {
            /* finish the streams the client opened, accept no new ones */
            h->goaway = 1;
            nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->ng),
                                  NGHTTP2_NO_ERROR, NULL, 0);
            if (h->n_streams == 0)
                h->closing = 1;
            schedule(h);
        }
    }
}
