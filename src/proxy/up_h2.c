/*
 * up_h2.c: HTTP/2 to upstreams (regions[].upstream_protocol: h2c). One
 * nghttp2 client session per upstream connection; each worker keeps its own
 * small pool of them per upstream. A request from any downstream protocol
 * becomes a stream on a connection that has one free under the peer's
 * SETTINGS_MAX_CONCURRENT_STREAMS (a new connection opens when all are
 * full); a connection with no request left closes after timeouts.idle.
 *
 * The session reads and writes through the connection's mrd_stream only, so
 * the same code serves HTTP/2 over TLS once the stream does client TLS.
 *
 * Flow control is the backpressure both ways: the request body is a deferred
 * data source fed from req->pending as the client delivers it (the client is
 * paused while pending grows, proxy.c), and response DATA is given back to
 * the upstream as stream window only once the downstream has taken it (the
 * connection window is returned at once, so one slow reader does not stall
 * the other streams; its own window bounds what it buffers).
 *
 * GOAWAY: the connection takes no new stream and closes when its last one
 * ends; the streams above last_stream_id, which nghttp2 closes as refused,
 * were not processed and go to another connection or upstream. A stream
 * reset before any response byte is retried under the rules of retryable()
 * (proxy.c), like a reset HTTP/1 connection.
 *
 * Re-entrancy: nghttp2 must not be driven from inside its own callbacks, and
 * the proxy's callbacks (downstream, retries) can come back here. Every entry
 * point brackets its work in h->depth; only the outermost one sends frames
 * and frees the connection.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "meridian/common.h"
#include "meridian/h2fields.h"
#include "meridian/headers.h"
#include "meridian/log.h"
#include "meridian/metrics.h"
#include "meridian/proxy-int.h"
#include "meridian/tls_upstream.h"

#define OUT_HIGH (256 * 1024)           /* stop producing frames above this much queued output */
#define STREAM_WINDOW MRD_OUT_HIGH      /* per-stream response window: what one slow reader buffers */
#define CONN_WINDOW (16 * 1024 * 1024)  /* returned at once: never the bound */
#define PRE_SETTINGS_STREAMS 100        /* requests a connection takes before the peer's SETTINGS */
#define MAX_STREAMS_PER_CONN 1024       /* our own bound when the peer's is higher */
#define GOAWAY_RETRIES 7                /* attempts a request may lose to GOAWAYs without counting them */

struct h2_field {
    size_t no, nl, vo, vl; /* offsets into hb */
};

struct mrd_h2up {
    struct mrd_uconn *uc; /* the socket and the upstream state reference */
    nghttp2_session *ng;
    struct mrd_h2up *next, *prev; /* this worker's connections */
    struct mrd_req *reqs;         /* attached: waiting for SETTINGS, or with a stream */
    unsigned n_reqs;
    unsigned n_streams; /* submitted and not yet closed (ours reset included) */
    int depth;          /* entry points and callbacks in progress */
    uint64_t idle_ms, busy_ms; /* read timeouts without requests, and with (streams time out on their own) */
    size_t max_header_bytes;
    unsigned connected : 1, settings : 1, goaway : 1, dead : 1, busy : 1;
    const char *dead_detail;
    /* the header block being received (nghttp2 delivers one at a time) */
    struct mrd_buf hb;
    struct h2_field hf[MRD_H1_MAX_HEADERS];
    size_t n_hf, hb_bytes;
    int status;
    unsigned hb_bad : 1;
    struct mrd_buf names;  /* lowercased request field names */
    struct evbuffer *data; /* response DATA on its way down */
};

static _Thread_local struct mrd_h2up *h2_ups; /* the calling worker's connections */

static void leave(struct mrd_h2up *h);

/* ---- connections ---- */

static void
attach(struct mrd_h2up *h, struct mrd_req *req)
{
    req->h2 = h;
    req->h2_sid = 0;
    req->h2_prev = NULL;
    req->h2_next = h->reqs;
    if (h->reqs != NULL)
        h->reqs->h2_prev = req;
    h->reqs = req;
    h->n_reqs++;
}

static void
unlink_req(struct mrd_h2up *h, struct mrd_req *req)
{
    if (req->h2_prev != NULL)
        req->h2_prev->h2_next = req->h2_next;
    else
        h->reqs = req->h2_next;
    if (req->h2_next != NULL)
        req->h2_next->h2_prev = req->h2_prev;
    req->h2_next = req->h2_prev = NULL;
    req->h2 = NULL;
    req->h2_sid = 0;
    h->n_reqs--;
    if (req->h2_timer_set) {
        event_del(&req->h2_timer);
        req->h2_timer_set = 0;
    }
}

/* timeouts.upstream_response: no response head since the request was
 * complete (as for HTTP/1, up_h1.c); only this stream fails */
static void
on_resp_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct mrd_req *req = arg;

    if (req->h2 == NULL || req->head_sent)
        return;
    upstream_fault(req, MRD_UPF_TIMEOUT);
    fail(req, 504, "upstream response timeout");
}

static void
arm_resp_timer(struct mrd_req *req)
{
    uint64_t ms = timeouts(req)->upstream_response_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    if (ms == 0 || req->head_sent || req->h2_sid <= 0 || !req->body_done)
        return;
    if (!req->h2_timer_set) {
        evtimer_assign(&req->h2_timer, req->w->base, on_resp_timeout, req);
        req->h2_timer_set = 1;
    }
    if (!evtimer_pending(&req->h2_timer, NULL))
        evtimer_add(&req->h2_timer, &tv);
}

static void
destroy(struct mrd_h2up *h)
{
    if (h->prev != NULL)
        h->prev->next = h->next;
    else
        h2_ups = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
    nghttp2_session_del(h->ng);
    mrd_uconn_free(h->uc);
    mrd_buf_dispose(&h->hb);
    mrd_buf_dispose(&h->names);
    evbuffer_free(h->data);
    free(h);
}

/* the connection is gone: every request on it fails, or is retried when no
 * response byte came (proxy.c decides); kind < 0 counts no fault */
static void
conn_fail(struct mrd_h2up *h, int kind, int status, const char *detail, int retry)
{
    struct mrd_req *req;

    h->dead = 1;
    h->depth++; /* the retries must not free h under us */
    while ((req = h->reqs) != NULL) {
        unlink_req(h, req);
        if (kind >= 0)
            upstream_fault(req, (enum mrd_upstream_failure)kind);
        if (retry)
            upstream_failed(req, status, detail, 1);
        else
            fail(req, status, detail);
    }
    h->depth--;
}

static uint32_t
peer_streams(struct mrd_h2up *h)
{
    if (!h->settings)
        return PRE_SETTINGS_STREAMS;
    /* a peer that sets no limit gets MAX_STREAMS_PER_CONN per connection */
    return MRD_MIN(nghttp2_session_get_remote_settings(h->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS),
                   (uint32_t)MAX_STREAMS_PER_CONN);
}

static int
has_room(struct mrd_h2up *h)
{
    return !h->goaway && !h->dead && MRD_MAX(h->n_reqs, h->n_streams) < peer_streams(h);
}

/* ---- the request stream ---- */

static void
add_trailer_nv(void *arg, const char *name, size_t nl, const char *value, size_t vl)
{
    struct mrd_buf *b = arg;
    struct mrd_h1_header f = {NULL, nl, value, vl};
    size_t off = b->len;

    /* (name offset, length, value pointer, length) records, lowercased name
     * bytes after them: resolved once the buffer stops growing */
    mrd_buf_reserve(b, sizeof(f) + nl);
    f.name = (const char *)(uintptr_t)(off + sizeof(f));
    memcpy(b->p + off, &f, sizeof(f));
    for (size_t i = 0; i < nl; i++)
        b->p[off + sizeof(f) + i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    b->len = off + sizeof(f) + nl;
}

/* the request's trailer fields as the final HEADERS (from the data source) */
static void
submit_trailers(struct mrd_h2up *h, struct mrd_req *req, int32_t sid)
{
    nghttp2_nv nv[64];
    size_t n = 0, len = evbuffer_get_length(req->req_trailers);
    struct mrd_buf *b = &h->names;

    b->len = 0;
    mrd_trailer_section_each((const char *)evbuffer_pullup(req->req_trailers, -1), len, add_trailer_nv, b);
    for (size_t off = 0; off < b->len && n < MRD_ARRAY_LEN(nv);) {
        struct mrd_h1_header f;
        memcpy(&f, b->p + off, sizeof(f));
        nv[n++] = (nghttp2_nv){(uint8_t *)b->p + (uintptr_t)f.name, (uint8_t *)f.value, f.name_len, f.value_len,
                               NGHTTP2_NV_FLAG_NONE};
        off += sizeof(f) + f.name_len;
    }
    nghttp2_submit_trailer(h->ng, sid, nv, n);
}

/* the request body: what a retry must repeat first, then what the client
 * delivered; deferred while it has not delivered more */
static ssize_t
data_read(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t length, uint32_t *flags,
          nghttp2_data_source *src, void *ud)
{
    struct mrd_h2up *h = ud;
    struct mrd_req *req = nghttp2_session_get_stream_user_data(ng, sid);
    size_t n = 0;

    if (req == NULL || req->h2 != h)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (req->replay != NULL && req->h2_replay_off < evbuffer_get_length(req->replay)) {
        struct evbuffer_ptr pos;
        size_t avail = evbuffer_get_length(req->replay) - req->h2_replay_off;
        evbuffer_ptr_set(req->replay, &pos, req->h2_replay_off, EVBUFFER_PTR_SET);
        ev_ssize_t got = evbuffer_copyout_from(req->replay, &pos, buf, MRD_MIN(length, avail));
        n = got > 0 ? (size_t)got : 0;
        req->h2_replay_off += n;
    } else if (evbuffer_get_length(req->pending) > 0) {
        int got = evbuffer_remove(req->pending, buf, length);
        n = got > 0 ? (size_t)got : 0;
        if (req->replay != NULL) {
            if (evbuffer_get_length(req->replay) + n > REPLAY_MAX) {
                evbuffer_free(req->replay);
                req->replay = NULL;
            } else {
                evbuffer_add(req->replay, buf, n);
                req->h2_replay_off += n;
            }
        }
        if (req->paused_body)
            check_body_backpressure(req);
    }
    if (n > 0)
        req->body_sent = 1;
    if ((req->replay != NULL && req->h2_replay_off < evbuffer_get_length(req->replay)) ||
        evbuffer_get_length(req->pending) > 0)
        return (ssize_t)n;
    if (!req->body_done) {
        if (n > 0)
            return (ssize_t)n;
        req->h2_deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (req->req_trailers != NULL && evbuffer_get_length(req->req_trailers) > 0) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        submit_trailers(h, req, sid);
    }
    req->h2_local_done = 1;
    return (ssize_t)n;
}

/* fields whose value differs on every request: indexing them in the HPACK
 * dynamic table would only evict the fields that repeat (on both sides) */
static int
unique_value(const char *name, size_t len)
{
    return (len == 12 && memcmp(name, "x-request-id", 12) == 0) ||
           (len == 11 && memcmp(name, "traceparent", 11) == 0);
}

/* the request's HEADERS (and body source) on h */
static void
submit(struct mrd_h2up *h, struct mrd_req *req)
{
    struct mrd_h1_msg *m = &req->w->msg;
    struct mrd_h1_header f[MRD_H2_REQ_FIELDS_MAX];
    nghttp2_nv nv[MRD_H2_REQ_FIELDS_MAX];
    nghttp2_data_provider prd = {.source.ptr = NULL, .read_callback = data_read};
    int body = req->up_body != MRD_H1_BODY_NONE;
    size_t n = 0;
    int32_t sid;

    /* our own head (headers.c built it): split back into spans */
    if (mrd_h2_scan_own_head(req->head.p, req->head.len, m) || mrd_h1_parse_request(req->head.p, req->head.len, 0, m, NULL) > 0)
        n = mrd_h2_request_fields(m, req->region->conf->upstream_protocol == MRD_UP_H2 ? "https" : "http",
                                  req->te_trailers, f, &h->names);
    if (n == 0) {
        unlink_req(h, req);
        fail(req, 502, "request cannot be sent over HTTP/2");
        return;
    }
    for (size_t i = 0; i < n; i++)
        nv[i] = (nghttp2_nv){(uint8_t *)f[i].name, (uint8_t *)f[i].value, f[i].name_len, f[i].value_len,
                             unique_value(f[i].name, f[i].name_len) ? NGHTTP2_NV_FLAG_NO_INDEX
                                                                    : NGHTTP2_NV_FLAG_NONE};
    req->h2_replay_off = 0;
    req->h2_deferred = 0;
    req->h2_local_done = !body;
    req->h2_remote_done = 0;
    sid = nghttp2_submit_request(h->ng, NULL, nv, n, body ? &prd : NULL, req);
    if (sid < 0) {
        unlink_req(h, req);
        upstream_failed(req, 502, "cannot submit the HTTP/2 request", 0);
        return;
    }
    req->h2_sid = sid;
    h->n_streams++;
    req->rs = RS_WAIT_HEAD;
    req->t_sent_us = mrd_now_us();
    arm_resp_timer(req);
}

/* the peer's first SETTINGS: the waiting requests get streams up to its
 * limit, the others go to another connection */
static void
submit_waiting(struct mrd_h2up *h)
{
    struct mrd_req *list = NULL, *req;

    while ((req = h->reqs) != NULL && req->h2_sid == 0) {
        unlink_req(h, req);
        req->h2_next = list;
        list = req;
    }
    /* only waiting ones were at the head: submit() never runs before SETTINGS */
    while ((req = list) != NULL) {
        list = req->h2_next;
        req->h2_next = NULL;
        if (has_room(h)) {
            attach(h, req);
            submit(h, req);
        } else if (peer_streams(h) == 0) {
            /* a peer that takes no stream would have us open connections
             * forever: this attempt fails (another upstream may serve) */
            h->goaway = 1;
            upstream_failed(req, 502, "upstream allows no streams", 0);
        } else {
            mrd_up_h2_start(req);
        }
    }
}

/* ---- nghttp2 callbacks ---- */

static int
on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct mrd_h2up *h = ud;
    struct mrd_req *req = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);

    h->hb.len = 0;
    h->n_hf = 0;
    h->hb_bytes = 0;
    h->status = 0;
    h->hb_bad = 0;
    if (req != NULL)
        req->got_byte = 1;
    return 0;
}

static int
on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl, const uint8_t *value,
          size_t vl, uint8_t flags, void *ud)
{
    struct mrd_h2up *h = ud;
    struct mrd_req *req = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    const char *n = (const char *)name, *v = (const char *)value;

    if (req == NULL || req->h2 != h || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    h->hb_bytes += nl + vl + 4;
    if (h->hb_bytes > h->max_header_bytes) {
        h->hb_bad = 1;
        return 0;
    }
    if (req->head_sent) {
        /* trailers (nghttp2 checked: END_STREAM, no pseudo fields) */
        if (!mrd_trailer_field_allowed(n, nl))
            return 0;
        add_field_line_to(&req->trailers, n, nl, v, vl);
        return 0;
    }
    if (nl == 7 && memcmp(n, ":status", 7) == 0) {
        /* nghttp2 checked it is 3 digits */
        h->status = vl == 3 ? (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0') : 0;
        return 0;
    }
    if (nl > 0 && n[0] == ':')
        return 0;
    if (h->n_hf == MRD_H1_MAX_HEADERS) {
        h->hb_bad = 1;
        return 0;
    }
    h->hf[h->n_hf] = (struct h2_field){h->hb.len, nl, h->hb.len + nl, vl};
    mrd_buf_add(&h->hb, n, nl);
    mrd_buf_add(&h->hb, v, vl);
    h->n_hf++;
    return 0;
}

/* a final response head: handed down like the HTTP/1 one (up_h1.c) */
static int
response_head(struct mrd_h2up *h, struct mrd_req *req, int end_stream)
{
    struct mrd_h1_msg *msg = &req->w->msg;
    const struct mrd_h1_header *cl;

    if (h->status >= 100 && h->status < 200)
        return 0; /* interim: the proxy answered 100-continue itself */
    if (h->hb_bad || h->status < 200) {
        upstream_fault(req, MRD_UPF_MALFORMED);
        nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, req->h2_sid, NGHTTP2_PROTOCOL_ERROR);
        fail(req, 502, h->hb_bad ? "upstream response head too large" : "invalid upstream response status");
        return -1;
    }
    /* all but the header array (3.2 KB), which is filled below */
    memset(msg, 0, offsetof(struct mrd_h1_msg, headers));
    memset(&msg->num_headers, 0, sizeof(*msg) - offsetof(struct mrd_h1_msg, num_headers));
    msg->status = h->status;
    msg->version_minor = 1;
    for (size_t i = 0; i < h->n_hf; i++)
        msg->headers[i] = (struct mrd_h1_header){h->hb.p + h->hf[i].no, h->hf[i].nl, h->hb.p + h->hf[i].vo,
                                                 h->hf[i].vl};
    msg->num_headers = h->n_hf;
    cl = mrd_h1_find(msg, "content-length");
    msg->body = mrd_h2_response_body(h->status, req->is_head, end_stream, cl ? cl->value : NULL,
                                     cl ? cl->value_len : 0, &msg->content_length);
    note_ttfb(req);
    if (req->h2_timer_set)
        evtimer_del(&req->h2_timer);
    req->upgrade = 0;
    req->resp_body = msg->body;
    req->rs = RS_BODY;
    req->head_sent = 1;
    req->status = h->status;
    req->ops->on_head(req, msg, h->status);
    return 0;
}

static int
on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct mrd_h2up *h = ud;
    struct mrd_req *req;
    int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    switch (f->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK) && !h->settings) {
            h->settings = 1;
            submit_waiting(h);
        }
        return 0;
    case NGHTTP2_GOAWAY:
        /* nghttp2 closes the streams above last_stream_id as refused */
        mrd_log(MRD_LOG_DEBUG, "upstream %s: GOAWAY, last stream %d, error %u", h->uc->st->name,
                (int)f->goaway.last_stream_id, f->goaway.error_code);
        h->goaway = 1;
        return 0;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        break;
    default:
        return 0;
    }
    req = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (req == NULL || req->h2 != h)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS) {
        if (!req->head_sent) {
            if (response_head(h, req, end) < 0 || req->h2 != h)
                return 0;
        } else if (h->hb_bad) {
            upstream_fault(req, MRD_UPF_MALFORMED);
            nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, req->h2_sid, NGHTTP2_PROTOCOL_ERROR);
            fail(req, 502, "upstream trailers too large");
            return 0;
        } else if (req->trailers != NULL) {
            evbuffer_add(req->trailers, "\r\n", 2);
        }
    }
    if (end && req->head_sent && req->rs == RS_BODY) {
        req->h2_remote_done = 1;
        finish(req);
    }
    return 0;
}

static int
on_data_chunk_recv(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data, size_t len, void *ud)
{
    struct mrd_h2up *h = ud;
    struct mrd_req *req = nghttp2_session_get_stream_user_data(ng, sid);

    nghttp2_session_consume_connection(ng, len);
    if (req == NULL || req->h2 != h || req->rs != RS_BODY) {
        nghttp2_session_consume_stream(ng, sid, len);
        return 0;
    }
    evbuffer_add(h->data, data, len);
    deliver(req, h->data, len);
    evbuffer_drain(h->data, evbuffer_get_length(h->data));
    if (req->h2 != h)
        return 0; /* the downstream went away meanwhile */
    req->h2_unacked += len;
    if (req->ops->out_pending(req) > HIGH_WATER) {
        req->paused_resp = 1; /* the window comes back in mrd_up_h2_resume */
    } else {
        nghttp2_session_consume_stream(ng, sid, req->h2_unacked);
        req->h2_unacked = 0;
    }
    return 0;
}

static int
on_stream_close(nghttp2_session *ng, int32_t sid, uint32_t error_code, void *ud)
{
    struct mrd_h2up *h = ud;
    struct mrd_req *req = nghttp2_session_get_stream_user_data(ng, sid);

    h->n_streams--;
    if (req == NULL || req->h2 != h)
        return 0;
    unlink_req(h, req);
    if (req->rs == RS_DONE)
        return 0;
    if (req->head_sent) {
        upstream_fault(req, MRD_UPF_TRUNCATED);
        fail(req, 502, "upstream reset the stream");
        return 0;
    }
    if (error_code == NGHTTP2_REFUSED_STREAM) {
        /* not processed (RFC 9113 8.7): the upstream is not at fault. Cut
         * off by a GOAWAY, the same upstream may take it on a new
         * connection; refused on a live one, another upstream should. */
        if (h->goaway) {
            for (size_t i = 0; i < req->region->n_ups && i < MRD_BALANCE_MAX_TARGETS; i++)
                if (req->region->ups[i] == req->ups)
                    req->tried[i] = 0;
            /* nor does it use up the region's retries (a few times over:
             * a peer that keeps going away is still bounded) */
            if (req->h2_goaways < GOAWAY_RETRIES && req->attempts > 0) {
                req->h2_goaways++;
                req->attempts--;
            }
        }
        upstream_failed(req, 502, "upstream refused the stream", 1);
        return 0;
    }
    upstream_fault(req, MRD_UPF_RESET);
    upstream_failed(req, 502, "upstream reset the stream", 1);
    return 0;
}

/* a new set per session (nghttp2 copies it): nothing is left at exit */
static nghttp2_session_callbacks *
callbacks(void)
{
    nghttp2_session_callbacks *cbs;

    if (nghttp2_session_callbacks_new(&cbs) != 0)
        abort();
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    return cbs;
}

/* ---- I/O ---- */

/* the end of every entry point: frames out, and the connection freed when
 * it is finished (outermost level only) */
static void
leave(struct mrd_h2up *h)
{
    if (--h->depth > 0)
        return;
    h->depth++;
    while (!h->dead && h->connected && evbuffer_get_length(h->uc->s->out) < OUT_HIGH) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(h->ng, &p);
        if (n < 0) {
            h->dead = 1;
            h->dead_detail = nghttp2_strerror((int)n);
            break;
        }
        if (n == 0)
            break;
        mrd_stream_write(h->uc->s, p, (size_t)n);
    }
    if (!h->dead && h->connected && !nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng)) {
        h->dead = 1;
        h->dead_detail = "upstream HTTP/2 session ended";
    }
    if (h->dead && h->reqs != NULL)
        conn_fail(h, MRD_UPF_MALFORMED, 502, h->dead_detail ? h->dead_detail : "upstream HTTP/2 error", 1);
    if (!h->dead && h->connected && h->busy != (h->n_reqs > 0)) {
        /* idle: timeouts.idle closes it; busy: a silence as long as a
         * response may take fails what is on it */
        h->busy = h->n_reqs > 0;
        mrd_stream_set_timeouts(h->uc->s, ms32(h->busy ? h->busy_ms : h->idle_ms), ms32(h->idle_ms));
    }
    h->depth--;
    if (h->dead || (h->goaway && h->n_reqs == 0 && h->n_streams == 0))
        destroy(h);
}

static void
h_read(struct mrd_stream *s, void *arg)
{
    struct mrd_h2up *h = arg;
    struct evbuffer *in = s->in;
    size_t len;

    h->depth++;
    while (!h->dead && (len = evbuffer_get_length(in)) > 0) {
        size_t n = MRD_MIN(len, (size_t)65536);
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)n);
        ssize_t r = nghttp2_session_mem_recv(h->ng, p, n);
        if (r < 0) {
            mrd_log(MRD_LOG_INFO, "upstream %s: HTTP/2 error: %s", h->uc->st->name, nghttp2_strerror((int)r));
            h->dead = 1;
            h->dead_detail = "upstream HTTP/2 protocol error";
            break;
        }
        evbuffer_drain(in, (size_t)r);
    }
    leave(h);
}

static void
h_write(struct mrd_stream *s, void *arg)
{
    struct mrd_h2up *h = arg;

    h->depth++;
    leave(h);
}

static void
h_event(struct mrd_stream *s, short what, void *arg)
{
    struct mrd_h2up *h = arg;

    h->depth++;
    if (!h->connected) {
        if ((what & MRD_STREAM_CONNECTED) && s->ssl != NULL && mrd_uptls_check_alpn(s->ssl, h->uc->st, "h2") == -1) {
            /* upstream_protocol h2 over TLS: HTTP/2 only when it chose h2 */
            for (struct mrd_req *req = h->reqs; req != NULL; req = req->h2_next)
                mrd_metrics_connect_error();
            conn_fail(h, MRD_UPF_REFUSED, 502, "upstream did not negotiate h2", 1);
            h->dead = 1;
            leave(h);
            return;
        }
        if (what & MRD_STREAM_CONNECTED) {
            h->connected = 1;
            s->wlow = MRD_OUT_LOW;
            h->busy = h->n_reqs > 0;
            mrd_stream_set_timeouts(s, ms32(h->busy ? h->busy_ms : h->idle_ms), ms32(h->idle_ms));
            mrd_stream_read(s, 1);
            leave(h); /* the preface and our SETTINGS */
            return;
        }
        for (struct mrd_req *req = h->reqs; req != NULL; req = req->h2_next)
            mrd_metrics_connect_error();
        if (what & MRD_STREAM_TIMEOUT)
            conn_fail(h, MRD_UPF_CONNECT_TIMEOUT, 504, "upstream connect timeout", 1);
        else
            conn_fail(h, MRD_UPF_REFUSED, 502, "upstream connect failed", 1);
    } else if (what & MRD_STREAM_TIMEOUT) {
        /* timeouts.idle without a byte: an idle pooled connection just closes */
        conn_fail(h, MRD_UPF_TIMEOUT, 504, "upstream idle timeout", 0);
    } else {
        /* closed or broken: a stream without a response byte may go elsewhere */
        h->depth++;
        for (struct mrd_req *req; (req = h->reqs) != NULL;) {
            unlink_req(h, req);
            if (req->got_byte) {
                upstream_fault(req, MRD_UPF_TRUNCATED);
                fail(req, 502, "upstream connection lost");
            } else {
                /* a reset, or a new connection closed, is the upstream's
                 * trouble; a pooled one closed is the keep-alive race */
                if ((what & MRD_STREAM_ERROR) || !req->reused)
                    upstream_fault(req, MRD_UPF_RESET);
                upstream_failed(req, 502, "upstream closed before responding", 1);
            }
        }
        h->depth--;
    }
    h->dead = 1;
    leave(h);
}

static struct mrd_h2up *
conn_new(struct mrd_req *req)
{
    struct mrd_uconn *uc = mrd_uconn_connect(req->w, req->ups, timeouts(req)->connect_ms, NULL);
    struct mrd_h2up *h;
    nghttp2_option *opt;
    nghttp2_session_callbacks *cbs;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
         (uint32_t)MRD_MIN(req->gen->conf->limits.max_header_bytes, UINT32_MAX)},
    };

    if (uc == NULL)
        return NULL;
    h = mrd_xcalloc(1, sizeof(*h));
    h->uc = uc;
    h->idle_ms = timeouts(req)->idle_ms;
    h->busy_ms = MRD_MAX(h->idle_ms, timeouts(req)->upstream_response_ms);
    h->max_header_bytes = req->gen->conf->limits.max_header_bytes;
    h->data = evbuffer_new();
    if (nghttp2_option_new(&opt) != 0)
        abort();
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_send_header_block_length(opt, 65536);
    cbs = callbacks();
    if (nghttp2_session_client_new2(&h->ng, cbs, h, opt) != 0)
        abort();
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, MRD_ARRAY_LEN(iv));
    nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    h->next = h2_ups;
    if (h2_ups != NULL)
        h2_ups->prev = h;
    h2_ups = h;
    mrd_stream_setcb(uc->s, h_read, h_write, h_event, h);
    return h;
}

/* ---- entry points (proxy.c) ---- */

void
mrd_up_h2_start(struct mrd_req *req)
{
    struct mrd_h2up *h;

    if (req->upgrade) {
        fail(req, 502, "an upgrade cannot go to an HTTP/2 upstream");
        return;
    }
    for (h = h2_ups; h != NULL; h = h->next)
        if (h->uc->st == req->ups && has_room(h))
            break;
    req->reused = h != NULL;
    if (h == NULL && (h = conn_new(req)) == NULL) {
        upstream_failed(req, 502, "cannot create upstream socket", 0);
        return;
    }
    req->rs = RS_CONNECTING;
    attach(h, req);
    h->depth++;
    if (h->settings)
        submit(h, req);
    leave(h);
}

void
mrd_up_h2_body(struct mrd_req *req)
{
    struct mrd_h2up *h = req->h2;

    if (h == NULL || req->h2_sid <= 0)
        return;
    if (req->body_done)
        arm_resp_timer(req);
    if (!req->h2_deferred)
        return;
    req->h2_deferred = 0;
    h->depth++;
    nghttp2_session_resume_data(h->ng, req->h2_sid);
    leave(h);
}

void
mrd_up_h2_resume(struct mrd_req *req)
{
    struct mrd_h2up *h = req->h2;

    req->paused_resp = 0;
    if (h == NULL || req->h2_sid <= 0 || req->h2_unacked == 0)
        return;
    h->depth++;
    nghttp2_session_consume_stream(h->ng, req->h2_sid, req->h2_unacked);
    req->h2_unacked = 0;
    leave(h);
}

void
mrd_up_h2_detach(struct mrd_req *req)
{
    struct mrd_h2up *h = req->h2;
    int32_t sid = req->h2_sid;

    if (h == NULL)
        return;
    unlink_req(h, req);
    h->depth++;
    if (sid > 0) {
        nghttp2_session_set_stream_user_data(h->ng, sid, NULL);
        if (!(req->h2_remote_done && req->h2_local_done))
            nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, sid,
                                      req->h2_remote_done ? NGHTTP2_NO_ERROR : NGHTTP2_CANCEL);
    }
    leave(h);
}

void
mrd_up_h2_drain(struct mrd_worker *w)
{
    /* shutdown: idle connections close, busy ones after their last stream */
    for (struct mrd_h2up *h = h2_ups, *next; h != NULL; h = next) {
        next = h->next;
        h->goaway = 1;
        if (h->n_reqs == 0 && h->depth == 0)
            destroy(h);
    }
}
