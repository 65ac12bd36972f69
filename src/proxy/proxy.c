/*
 * proxy.c: the request lifecycle on the upstream side, independent of the
 * downstream protocol: route -> pick upstream -> lease or connect -> send
 * head and body -> parse the response -> hand it downstream -> release the
 * connection with its outcome, retrying on another upstream (then down the
 * region's fallback chain) when a connection fails before any response byte.
 *
 * The region comes from route.c (geo scoring, caps, fallback chains); bodies are streamed both ways with backpressure; nothing is buffered whole.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "meridian/accesslog.h"
#include "meridian/clientip.h"
#include "meridian/common.h"
#include "meridian/headers.h"
#include "meridian/health.h"
#include "meridian/log.h"
#include "meridian/metrics.h"
#include "meridian/proxyproto.h"
#include "meridian/server.h"

#define HIGH_WATER MRD_OUT_HIGH /* pause the producer above this many queued bytes (server.h) */
#define LOW_WATER MRD_OUT_LOW
#define REPLAY_MAX (64 * 1024) /* body kept to repeat an idempotent request (Envoy keeps 64 KiB too) */

enum rstate {
    RS_IDLE = 0,   /* not started */
    RS_CONNECTING, /* waiting for connect() */
    RS_WAIT_HEAD,  /* request sent (or sending), waiting for the response head */
    RS_BODY,       /* streaming the response body */
    RS_TUNNEL,     /* after 101: raw bytes both ways */
    RS_DONE,       /* response complete or failed: upstream released */
};

struct mrd_req {
    const struct mrd_req_ops *ops;
    void *ctx;
    struct mrd_worker *w;
    struct mrd_req *pool_next; /* in w->req_pool while unused */
    struct mrd_gen *gen; /* one ref */
    struct mrd_buf head; /* upstream request head, kept for retries */
    unsigned is_head : 1, idempotent : 1, upgrade : 1, body_done : 1, body_sent : 1, head_sent : 1,
        paused_body : 1, paused_resp : 1, got_byte : 1, reused : 1;
    /* request body towards the upstream */
    enum mrd_h1_body up_body;
    struct evbuffer *pending; /* body received while no upstream is writable */
    struct evbuffer *replay;  /* idempotent request: body already forwarded, for a retry; NULL
                                 once over REPLAY_MAX */
    /* routing */
    struct mrd_region *region;
    int rule;                       /* residency rule of the client, -1 none */
    enum mrd_route_reason reason;
    struct mrd_upstream_state *ups; /* counted in ups->active while set */
    unsigned char tried[MRD_BALANCE_MAX_TARGETS];
    unsigned attempts;
    /* upstream */
    struct mrd_uconn *uc;
    enum rstate rs;
    size_t resp_last_len;
    enum mrd_h1_body resp_body;
    uint64_t resp_left;
    int resp_close; /* upstream said Connection: close */
    struct mrd_h1_chunk chunk;
    struct evbuffer *trailers; /* the response's trailer section ("Name: v\r\n"... "\r\n"), or NULL */
    struct evbuffer *req_trailers; /* the request's trailer fields ("Name: v\r\n"...), or NULL */
    struct evbuffer *req_trailer_raw; /* an HTTP/1 client's trailer section as it arrives */
    uint64_t t_sent_us;
    uint64_t t_start_us; /* for meridian_request_duration_seconds */
    uint64_t ttfb_us;    /* upstream time to first byte of the response head */
    int status;          /* of the response head sent downstream */
    char request_id[48];
    struct mrd_pp_addrs conn_addrs; /* the client connection's ends, for send_proxy */
    char last_ups[64]; /* the upstream that served (or last failed) */
    /* for the access log (only filled when it is on) */
    char *log_line;      /* "METHOD TARGET" */
    const char *version; /* static */
    struct mrd_ip client;
    char country[3];
    uint64_t bytes_in, bytes_out;
    unsigned logged : 1, id_generated : 1;
    /* timeouts.request_body: the client's longest silence inside the body;
     * the timer is kept across the pool like `pending` */
    struct event *body_timer;
    uint64_t body_last_ms; /* last body bytes (or resumption after our own pause) */
};

static void attempt(struct mrd_req *req);
static void body_timer_update(struct mrd_req *req);
static void up_read(struct mrd_stream *st, void *arg);
static void up_write(struct mrd_stream *st, void *arg);
static void up_event(struct mrd_stream *st, short what, void *arg);

static const struct mrd_timeouts_conf *
timeouts(struct mrd_req *req)
{
    return &req->gen->conf->timeouts;
}

static uint32_t
ms32(uint64_t ms)
{
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

/* an attempt on the current upstream failed (passive health, SPEC 3.5 and
 * 12); before drop_upstream, which forgets the upstream */
static void
upstream_fault(struct mrd_req *req, enum mrd_upstream_failure kind)
{
    if (req->ups != NULL)
        mrd_health_passive_fail(req->ups, kind);
}

/* ---- releasing the upstream side ---- */

static void
drop_upstream(struct mrd_req *req, int keep)
{
    if (req->uc != NULL) {
        if (keep) {
            req->uc->requests++;
            mrd_pool_release(req->uc, timeouts(req)->idle_ms);
        } else {
            mrd_uconn_free(req->uc);
        }
        req->uc = NULL;
    }
    if (req->ups != NULL) {
        atomic_fetch_sub(&req->ups->active, 1);
        req->ups = NULL;
    }
}

/* the response failed; nothing more will come from the upstream side */
static void
json_str(struct mrd_buf *b, const char *s, size_t n)
{
    mrd_buf_lit(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            mrd_buf_printf(b, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            mrd_buf_printf(b, "\\u%04x", ch);
        else
            mrd_buf_add(b, s + i, 1);
    }
    mrd_buf_lit(b, "\"");
}

/* one access log line, written by the logger thread (SPEC 2 access_log) */
static void
access_log(struct mrd_req *req, int status, uint64_t duration_us)
{
    struct mrd_buf *b = &req->w->scratch;
    char ts[40], ip[MRD_IP_STRLEN];
    struct timespec now;
    struct tm tm;
    const char *sp = req->log_line ? strchr(req->log_line, ' ') : NULL;
    const char *region = req->region != NULL ? req->region->conf->name : "";
    const char *reason = req->reason == MRD_ROUTE_FALLBACK ? "fallback"
                         : req->reason == MRD_ROUTE_SHED   ? "shed"
                         : req->region != NULL             ? "score"
                                                           : "";

    if (req->logged || req->log_line == NULL || sp == NULL)
        return;
    req->logged = 1;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    mrd_ip_format(&req->client, ip, sizeof(ip));
    b->len = 0;
    if (mrd_access_log_json()) {
        mrd_buf_printf(b, "{\"time\":\"%s.%03ldZ\",\"request_id\":", ts, now.tv_nsec / 1000000);
        json_str(b, req->request_id, strlen(req->request_id));
        mrd_buf_printf(b, ",\"client_ip\":\"%s\",\"country\":\"%s\",\"region\":\"%s\",\"upstream\":\"%s\","
                          "\"method\":",
                       ip, req->country, region, req->last_ups[0] ? req->last_ups : "");
        json_str(b, req->log_line, (size_t)(sp - req->log_line));
        mrd_buf_lit(b, ",\"path\":");
        json_str(b, sp + 1, strlen(sp + 1));
        mrd_buf_printf(b,
                       ",\"protocol\":\"HTTP/%s\",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,"
                       "\"duration_ms\":%.3f,\"upstream_ms\":%.3f,\"reason\":\"%s\"}\n",
                       req->version ? req->version : "1.1", status, (unsigned long long)req->bytes_in,
                       (unsigned long long)req->bytes_out, duration_us / 1000.0, req->ttfb_us / 1000.0, reason);
    } else {
        mrd_buf_printf(b, "%s - - [%s.%03ldZ] \"%s HTTP/%s\" %d %llu \"%s\" %s %s %.3f %s\n", ip, ts,
                       now.tv_nsec / 1000000, req->log_line, req->version ? req->version : "1.1", status,
                       (unsigned long long)req->bytes_out, req->request_id, region[0] ? region : "-",
                       req->last_ups[0] ? req->last_ups : "-", duration_us / 1000.0, reason[0] ? reason : "-");
    }
    mrd_access_log_write(b->p, b->len);
}

static void
count(struct mrd_req *req, int status)
{
    uint64_t d = mrd_now_us() - req->t_start_us;

    mrd_metrics_request(req->region != NULL ? req->region->st : NULL, status, d);
    if (req->log_line != NULL)
        access_log(req, status, d);
}

static void
fail(struct mrd_req *req, int status, const char *detail)
{
    drop_upstream(req, 0);
    req->rs = RS_DONE;
    body_timer_update(req);
    count(req, req->head_sent ? req->status : status);
    if (req->head_sent)
        status = 0;
    req->ops->on_error(req, status, detail, NULL);
}

static void
finish(struct mrd_req *req)
{
    int keep = req->resp_body != MRD_H1_BODY_CLOSE && !req->resp_close && !req->upgrade && req->body_done &&
               evbuffer_get_length(req->pending) == 0;

    if (req->ups != NULL)
        mrd_health_passive_ok(req->ups);
    drop_upstream(req, keep);
    req->rs = RS_DONE;
    body_timer_update(req);
    count(req, req->status);
    req->ops->on_end(req);
}

/* Can this request go to another upstream after a failure? Only while no
 * response byte came back, within the region's retries, and when repeating it
 * is safe: nothing was written to the failed connection, or its body was not
 * yet sent (SPEC 3.5). */
static int
retryable(struct mrd_req *req, int wrote)
{
    if (req->got_byte || req->head_sent || req->upgrade)
        return 0;
    if (req->attempts > req->region->conf->retries)
        return 0;
    /* repeatable while no body byte has left us, or when the request is
     * idempotent and the part of its body already sent was kept */
    return !wrote || !req->body_sent || req->replay != NULL;
}

static void
upstream_failed(struct mrd_req *req, int status, const char *detail, int wrote)
{
    drop_upstream(req, 0);
    if (retryable(req, wrote)) {
        mrd_log(MRD_LOG_DEBUG, "retrying after: %s", detail);
        mrd_metrics_retry();
        attempt(req);
        return;
    }
    fail(req, status, detail);
}

/* ---- sending the request ---- */

static void
send_body_bytes(struct mrd_req *req, struct evbuffer *src, size_t n)
{
    if (n == 0)
        return;
    if (req->replay != NULL) {
        char tmp[4096];
        size_t kept = evbuffer_get_length(req->replay);
        if (kept + n > REPLAY_MAX) {
            evbuffer_free(req->replay);
            req->replay = NULL;
        } else {
            for (size_t off = 0; off < n;) {
                struct evbuffer_ptr pos;
                evbuffer_ptr_set(src, &pos, off, EVBUFFER_PTR_SET);
                ev_ssize_t got = evbuffer_copyout_from(src, &pos, tmp, MRD_MIN(sizeof(tmp), n - off));
                if (got <= 0)
                    break;
                evbuffer_add(req->replay, tmp, (size_t)got);
                off += (size_t)got;
            }
        }
    }
    mrd_stream_move(req->uc->s, src, n, req->up_body == MRD_H1_BODY_CHUNKED);
    req->body_sent = 1;
}

static void
check_body_backpressure(struct mrd_req *req)
{
    size_t queued = evbuffer_get_length(req->pending);

    if (req->uc != NULL && req->rs != RS_CONNECTING)
        queued += evbuffer_get_length(req->uc->s->out);
    if (!req->paused_body && queued > HIGH_WATER) {
        req->paused_body = 1;
        body_timer_update(req); /* our pause: the client's silence is not its own */
        req->ops->pause_body(req, 1);
    } else if (req->paused_body && queued <= LOW_WATER) {
        req->paused_body = 0;
        req->body_last_ms = mrd_now_ms();
        body_timer_update(req);
        req->ops->pause_body(req, 0);
    }
}

static void
add_field_line(void *arg, const char *name, size_t nl, const char *value, size_t vl)
{
    struct evbuffer *out = arg;

    if (!mrd_trailer_field_allowed(name, nl))
        return;
    evbuffer_add(out, name, nl);
    evbuffer_add(out, ": ", 2);
    evbuffer_add(out, value, vl);
    evbuffer_add(out, "\r\n", 2);
}

/* the upstream's trailer section, as it came, becomes the fields that may
 * travel on (mrd_trailer_field_allowed) and the final CRLF: what both the
 * HTTP/1.1 and the HTTP/2 side send on */
static void
keep_allowed_trailers(struct mrd_req *req)
{
    struct evbuffer *kept = evbuffer_new();
    size_t len = evbuffer_get_length(req->trailers);

    mrd_trailer_section_each((const char *)evbuffer_pullup(req->trailers, -1), len, add_field_line, kept);
    evbuffer_add(kept, "\r\n", 2);
    evbuffer_free(req->trailers);
    req->trailers = kept;
}

/* the end of a chunked request body, with the client's trailer fields
 * (kept for a retry: the evbuffer is copied, not drained) */
static void
last_chunk(struct mrd_req *req, struct mrd_stream *st)
{
    mrd_stream_write(st, "0\r\n", 3);
    if (req->req_trailers != NULL) {
        size_t n = evbuffer_get_length(req->req_trailers);
        mrd_stream_write(st, evbuffer_pullup(req->req_trailers, -1), n);
    }
    mrd_stream_write(st, "\r\n", 2);
}

/* the upstream connection is writable: send the head and what body we hold */
static void
start_sending(struct mrd_req *req)
{
    struct mrd_stream *st = req->uc->s;

    req->rs = RS_WAIT_HEAD;
    req->resp_last_len = 0;
    mrd_stream_setcb(st, up_read, up_write, up_event, req);
    st->wlow = LOW_WATER;
    /* timeouts.upstream_response counts once the request is complete; while
     * the body streams, only inactivity (timeouts.idle) applies */
    mrd_stream_set_timeouts(st, req->body_done ? ms32(timeouts(req)->upstream_response_ms) : 0,
                            ms32(timeouts(req)->idle_ms));
    mrd_stream_read(st, 1);
    mrd_stream_write(st, req->head.p, req->head.len);
    req->t_sent_us = mrd_now_us();
    if (req->replay != NULL && evbuffer_get_length(req->replay) > 0) {
        /* a retry: first the body the failed attempt had already sent */
        size_t n = evbuffer_get_length(req->replay);
        const char *p = (const char *)evbuffer_pullup(req->replay, -1);
        if (req->up_body == MRD_H1_BODY_CHUNKED)
            evbuffer_add_printf(st->out, "%zx\r\n", n);
        mrd_stream_write(st, p, n);
        if (req->up_body == MRD_H1_BODY_CHUNKED)
            mrd_stream_write(st, "\r\n", 2);
    }
    send_body_bytes(req, req->pending, evbuffer_get_length(req->pending));
    if (req->body_done && req->up_body == MRD_H1_BODY_CHUNKED)
        last_chunk(req, st);
    check_body_backpressure(req);
}

static int
pick_upstream(struct mrd_req *req)
{
    struct mrd_region *r = req->region;
    struct mrd_balance_target t[MRD_BALANCE_MAX_TARGETS];
    size_t n = MRD_MIN(r->n_ups, MRD_BALANCE_MAX_TARGETS);

    for (size_t i = 0; i < n; i++) {
        t[i].weight = r->weights[i];
        t[i].healthy = atomic_load_explicit(&r->ups[i]->healthy, memory_order_relaxed);
        t[i].active = atomic_load_explicit(&r->ups[i]->active, memory_order_relaxed);
        t[i].ewma_us = atomic_load_explicit(&r->ups[i]->ewma_us, memory_order_relaxed);
    }
    return mrd_balance_pick(r->conf->balance, t, n, req->tried, &r->bal[req->w->id], mrd_worker_rand(req->w));
}

/* every upstream of the region failed for this request: move down its
 * fallback chain to the next region the client may use (residency) that
 * admits it (cap). Returns -1 when the chain is exhausted. */
static int
next_region(struct mrd_req *req)
{
    struct mrd_gen *g = req->gen;
    int i = req->region->conf->fallback_idx;

    for (size_t steps = 0; i >= 0 && steps < g->n_regions; steps++, i = g->regions[i].conf->fallback_idx) {
        if (!mrd_route_rule_allows(g->route, req->rule, (size_t)i))
            continue;
        if (!mrd_route_take(g, (size_t)i))
            continue;
        req->region = &g->regions[i];
        req->reason = MRD_ROUTE_FALLBACK;
        return i;
    }
    return -1;
}

/* one attempt: pick an upstream of the current region (or walk the fallback
 * chain when the region has none left), lease or connect */
static void
attempt(struct mrd_req *req)
{
    int i;

    for (;;) {
        i = pick_upstream(req);
        if (i >= 0)
            break;
        /* also before any attempt: the region's last healthy upstreams can
         * go down between the routing snapshot and this pick */
        if (next_region(req) == -1) {
            fail(req, req->attempts ? 502 : 503, req->attempts ? "upstream failed" : "no healthy upstream");
            return;
        }
        memset(req->tried, 0, sizeof(req->tried));
    }
    req->attempts++;
    req->tried[i] = 1;
    req->ups = req->region->ups[i];
    memcpy(req->last_ups, req->ups->name, sizeof(req->last_ups));
    atomic_fetch_add(&req->ups->active, 1);
    req->uc = mrd_pool_lease(req->w, req->ups);
    if (req->uc != NULL) {
        req->reused = 1;
        start_sending(req);
        return;
    }
    req->reused = 0;
    req->uc = mrd_uconn_connect(req->w, req->ups, timeouts(req)->connect_ms, &req->conn_addrs);
    if (req->uc == NULL) {
        upstream_failed(req, 502, "cannot create upstream socket", 0);
        return;
    }
    req->rs = RS_CONNECTING;
    mrd_stream_setcb(req->uc->s, up_read, up_write, up_event, req);
}

/* ---- receiving the response ---- */

/* response body bytes to the downstream */
static void
deliver(struct mrd_req *req, struct evbuffer *src, size_t n)
{
    req->bytes_out += n;
    req->ops->on_body(req, src, n);
}

static int
resp_backpressure(struct mrd_req *req)
{
    if (req->ops->out_pending(req) > HIGH_WATER) {
        req->paused_resp = 1;
        mrd_stream_read(req->uc->s, 0);
        return 1;
    }
    return 0;
}

static int
parse_head(struct mrd_req *req, struct evbuffer *in)
{
    struct mrd_h1_msg *msg = &req->w->msg;
    size_t len = evbuffer_get_length(in);
    size_t limit = req->gen->conf->limits.max_header_bytes * 2;
    size_t n = MRD_MIN(len, limit);
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    int r = mrd_h1_parse_response(p, n, req->resp_last_len, req->is_head ? "HEAD" : "GET", req->is_head ? 4 : 3,
                                  msg, NULL);

    if (r == 0) {
        if (n >= limit) {
            upstream_fault(req, MRD_UPF_MALFORMED);
            fail(req, 502, "upstream response head too large");
            return -1;
        }
        req->resp_last_len = n;
        return 0;
    }
    if (r < 0) {
        upstream_fault(req, MRD_UPF_MALFORMED);
        fail(req, 502, mrd_h1_strerror(r));
        return -1;
    }
    req->resp_last_len = 0;
    if (req->t_sent_us != 0) {
        /* time to first byte feeds the region's latency factor and p2c_ewma */
        uint64_t ttfb = mrd_now_us() - req->t_sent_us;
        req->ttfb_us = ttfb;
        mrd_ewma_add_atomic(&req->region->st->ttfb_ewma_us, ttfb);
        if (req->ups != NULL)
            mrd_ewma_add_atomic(&req->ups->ewma_us, ttfb);
        req->t_sent_us = 0;
    }
    if (msg->status >= 100 && msg->status < 200 && msg->status != 101) {
        /* interim response: the proxy answered 100-continue itself */
        evbuffer_drain(in, (size_t)r);
        return 1;
    }
    if (msg->status == 101 && !req->upgrade) {
        upstream_fault(req, MRD_UPF_MALFORMED);
        fail(req, 502, "unexpected 101 from upstream");
        return -1;
    }
    if (msg->status != 101)
        req->upgrade = 0;
    req->resp_body = msg->body;
    req->resp_left = msg->content_length;
    req->resp_close = (msg->flags & MRD_H1_F_CONN_CLOSE) != 0;
    mrd_h1_chunk_init(&req->chunk);
    req->rs = msg->status == 101 ? RS_TUNNEL : RS_BODY;
    mrd_stream_set_timeouts(req->uc->s, ms32(timeouts(req)->idle_ms), ms32(timeouts(req)->idle_ms));
    req->head_sent = 1;
    req->status = msg->status;
    req->ops->on_head(req, msg, msg->status);
    evbuffer_drain(in, (size_t)r);
    return 1;
}

/* move response body bytes downstream; returns 1 when the body is complete */
static int
pump_body(struct mrd_req *req, struct evbuffer *in)
{
    size_t avail;

    while ((avail = evbuffer_get_length(in)) > 0 || req->resp_body == MRD_H1_BODY_NONE ||
           (req->resp_body == MRD_H1_BODY_LENGTH && req->resp_left == 0)) {
        switch (req->resp_body) {
        case MRD_H1_BODY_NONE:
            return 1;
        case MRD_H1_BODY_LENGTH: {
            size_t n = (size_t)MRD_MIN((uint64_t)avail, req->resp_left);
            if (n)
                deliver(req, in, n);
            req->resp_left -= n;
            if (req->resp_left == 0)
                return 1;
            break;
        }
        case MRD_H1_BODY_CLOSE:
            deliver(req, in, avail);
            break;
        case MRD_H1_BODY_CHUNKED:
            if (req->chunk.state == MRD_H1_CHUNK_DATA && req->chunk.remaining > 0) {
                size_t n = (size_t)MRD_MIN((uint64_t)avail, req->chunk.remaining);
                deliver(req, in, n);
                req->chunk.remaining -= n;
            } else {
                size_t n = MRD_MIN(avail, 4096);
                const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
                int in_trailers = req->chunk.state == MRD_H1_CHUNK_TRAILER;
                int c = mrd_h1_chunk_parse(&req->chunk, p, n, req->gen->conf->limits.max_header_bytes);
                if (c < 0) {
                    upstream_fault(req, MRD_UPF_MALFORMED);
                    fail(req, 502, "malformed chunked response");
                    return -1;
                }
                if (in_trailers && c > 0) {
                    /* the parser stops on entering the section, so these
                     * bytes are all trailer fields (validated) */
                    if (req->trailers == NULL)
                        req->trailers = evbuffer_new();
                    evbuffer_add(req->trailers, p, (size_t)c);
                }
                evbuffer_drain(in, (size_t)c);
                if (req->chunk.state == MRD_H1_CHUNK_DONE) {
                    if (req->trailers != NULL)
                        keep_allowed_trailers(req);
                    return 1;
                }
                if (c == 0 && !(req->chunk.state == MRD_H1_CHUNK_DATA && req->chunk.remaining > 0))
                    return 0; /* need more framing bytes */
            }
            break;
        }
        if (resp_backpressure(req))
            return 0;
    }
    return 0;
}

static void
up_read(struct mrd_stream *st, void *arg)
{
    struct mrd_req *req = arg;
    struct evbuffer *in = st->in;

    if (evbuffer_get_length(in) > 0)
        req->got_byte = 1;
    for (;;) {
        switch (req->rs) {
        case RS_WAIT_HEAD: {
            if (evbuffer_get_length(in) == 0)
                return;
            int r = parse_head(req, in);
            if (r <= 0)
                return;
            continue;
        }
        case RS_BODY: {
            int r = pump_body(req, in);
            if (r == 1)
                finish(req);
            return;
        }
        case RS_TUNNEL:
            if (evbuffer_get_length(in) > 0)
                deliver(req, in, evbuffer_get_length(in));
            resp_backpressure(req);
            return;
        default:
            return;
        }
    }
}

static void
up_write(struct mrd_stream *st, void *arg)
{
    struct mrd_req *req = arg;

    /* output drained below LOW_WATER */
    if (req->paused_body)
        check_body_backpressure(req);
}

static void
up_event(struct mrd_stream *st, short what, void *arg)
{
    struct mrd_req *req = arg;

    if (req->rs == RS_CONNECTING) {
        if (what & MRD_STREAM_CONNECTED) {
            start_sending(req);
            return;
        }
        upstream_fault(req, (what & MRD_STREAM_TIMEOUT) ? MRD_UPF_CONNECT_TIMEOUT : MRD_UPF_REFUSED);
        mrd_metrics_connect_error();
        upstream_failed(req, (what & MRD_STREAM_TIMEOUT) ? 504 : 502,
                        (what & MRD_STREAM_TIMEOUT) ? "upstream connect timeout" : "upstream connect failed", 0);
        return;
    }
    if (what & MRD_STREAM_TIMEOUT) {
        /* an idle WebSocket tunnel is no fault of the upstream's */
        if (req->rs != RS_TUNNEL)
            upstream_fault(req, MRD_UPF_TIMEOUT);
        if (req->rs == RS_WAIT_HEAD && (what & MRD_STREAM_READING))
            fail(req, 504, "upstream response timeout");
        else
            fail(req, 504, "upstream idle timeout");
        return;
    }
    /* EOF or error */
    if (req->rs == RS_WAIT_HEAD) {
        if (req->got_byte || evbuffer_get_length(st->in) > 0) {
            upstream_fault(req, MRD_UPF_TRUNCATED);
            fail(req, 502, "upstream closed during response head");
            return;
        }
        /* closed before any response byte: a stale keep-alive connection or a
         * reset; safe to repeat under the rules of retryable(). A reset, or
         * a fresh connection closed, says the upstream is in trouble; a
         * pooled one closed is the ordinary keep-alive race. */
        if ((what & MRD_STREAM_ERROR) || !req->reused)
            upstream_fault(req, MRD_UPF_RESET);
        upstream_failed(req, 502, "upstream closed before responding", 1);
        return;
    }
    if (req->rs == RS_BODY && req->resp_body == MRD_H1_BODY_CLOSE && (what & MRD_STREAM_EOF)) {
        if (evbuffer_get_length(st->in) > 0)
            deliver(req, st->in, evbuffer_get_length(st->in));
        finish(req);
        return;
    }
    if (req->rs == RS_TUNNEL) {
        finish(req);
        return;
    }
    upstream_fault(req, MRD_UPF_TRUNCATED);
    fail(req, 502, "upstream connection lost");
}

/* ---- timeouts.request_body (SPEC 12) ---- */

/* the client left more than timeouts.request_body between two reads of the
 * body: 408 (or the stream cut when a response head went out), and the
 * upstream attempt aborted; not an upstream failure */
static void
on_body_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct mrd_req *req = arg;
    uint64_t limit = timeouts(req)->request_body_ms, idle = mrd_now_ms() - req->body_last_ms;

    if (req->body_done || req->paused_body || req->rs == RS_DONE || req->rs == RS_TUNNEL)
        return;
    if (idle < limit) {
        /* bytes came since the timer was set: wait for the rest of the gap */
        struct timeval tv = {(time_t)((limit - idle) / 1000), (suseconds_t)((limit - idle) % 1000) * 1000};
        evtimer_add(req->body_timer, &tv);
        return;
    }
    mrd_log(MRD_LOG_DEBUG, "request body timeout after %llu ms (%llu body bytes read)", (unsigned long long)idle,
            (unsigned long long)req->bytes_in);
    fail(req, 408, "request body timeout");
}

/* armed while a body is still expected from the client and meridian is
 * reading it; body chunks only move body_last_ms (the timer re-arms itself
 * for the rest of the gap when it fires early), so the common path costs no
 * timer operation */
static void
body_timer_update(struct mrd_req *req)
{
    int want = !req->body_done && !req->paused_body && req->rs != RS_DONE && req->rs != RS_TUNNEL &&
               req->gen != NULL && timeouts(req)->request_body_ms > 0;

    if (!want) {
        if (req->body_timer != NULL)
            evtimer_del(req->body_timer);
        return;
    }
    if (req->body_timer == NULL) {
        req->body_timer = evtimer_new(req->w->base, on_body_timeout, req);
        if (req->body_timer == NULL)
            return;
    }
    if (!evtimer_pending(req->body_timer, NULL)) {
        uint64_t ms = timeouts(req)->request_body_ms;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
        evtimer_add(req->body_timer, &tv);
    }
}

/* ---- public entry points ---- */

struct mrd_req *
mrd_req_new(struct mrd_worker *w, const struct mrd_req_ops *ops, void *ctx)
{
    struct mrd_req *req = w->req_pool;

    if (req != NULL) {
        /* kept from an earlier request: empty buffers, everything else zero */
        w->req_pool = req->pool_next;
        w->n_req_pool--;
        req->pool_next = NULL;
    } else {
        req = mrd_xcalloc(1, sizeof(*req));
        req->pending = evbuffer_new();
    }
    /* a request runs on the configuration current when it starts (SPEC 6),
     * even on a connection accepted before a reload */
    req->w = w;
    req->gen = w->gen;
    mrd_gen_acquire(req->gen);
    req->ops = ops;
    req->ctx = ctx;
    return req;
}

int
mrd_req_trailer_field(struct mrd_req *req, const char *name, size_t nlen, const char *value, size_t vlen)
{
    size_t have = req->req_trailers != NULL ? evbuffer_get_length(req->req_trailers) : 0;

    if (!mrd_trailer_field_allowed(name, nlen))
        return 0; /* dropped, as RFC 9110 6.5.1 allows */
    if (have + nlen + vlen + 4 > req->gen->conf->limits.max_header_bytes)
        return -1;
    if (req->req_trailers == NULL)
        req->req_trailers = evbuffer_new();
    evbuffer_add(req->req_trailers, name, nlen);
    evbuffer_add(req->req_trailers, ": ", 2);
    evbuffer_add(req->req_trailers, value, vlen);
    evbuffer_add(req->req_trailers, "\r\n", 2);
    return 0;
}

struct evbuffer *
mrd_req_trailers(struct mrd_req *req)
{
    /* only the final CRLF: no fields */
    if (req->trailers == NULL || evbuffer_get_length(req->trailers) <= 2)
        return NULL;
    return req->trailers;
}

void *
mrd_req_ctx(struct mrd_req *req)
{
    return req->ctx;
}

const char *
mrd_req_region(struct mrd_req *req)
{
    return req->region != NULL ? req->region->conf->name : NULL;
}

/* X-Request-Id: the client's when it is a sane token, else a new random one
 * (sent upstream; both appear in the access log) */
static void
request_id(struct mrd_req *req, const struct mrd_req_info *info)
{
    for (size_t i = 0; i < info->n_headers; i++) {
        const struct mrd_h1_header *h = &info->headers[i];
        if (!mrd_strieq(h->name, h->name_len, "x-request-id"))
            continue;
        if (h->value_len == 0 || h->value_len >= sizeof(req->request_id))
            break;
        memcpy(req->request_id, h->value, h->value_len);
        req->request_id[h->value_len] = '\0';
        return;
    }
    static const char hex[] = "0123456789abcdef";
    uint64_t r[2] = {mrd_worker_rand(req->w), mrd_worker_rand(req->w)};
    for (int i = 0; i < 32; i++)
        req->request_id[i] = hex[(r[i / 16] >> (60 - 4 * (i % 16))) & 15];
    req->request_id[32] = '\0';
    req->id_generated = 1;
}

/* the client's address: the peer, or from client_ip.header when the peer is
 * a trusted proxy (SPEC 3.1) */
static void
client_address(const struct mrd_config *c, const struct mrd_req_info *info, struct mrd_ip *out)
{
    const char *values[16];
    size_t lens[16], n = 0;
    size_t hlen = strlen(c->client_ip.header);

    if (c->client_ip.n_trusted_proxies == 0 || !mrd_client_ip_trusted(&c->client_ip, info->peer)) {
        *out = *info->peer;
        return;
    }
    for (size_t i = 0; i < info->n_headers && n < MRD_ARRAY_LEN(values); i++) {
        if (info->headers[i].name_len == hlen && mrd_strieq(info->headers[i].name, hlen, c->client_ip.header)) {
            values[n] = info->headers[i].value;
            lens[n++] = info->headers[i].value_len;
        }
    }
    mrd_client_ip(&c->client_ip, info->peer, values, lens, n, out);
}

/* policies and routing; 0 with res->region set, or the status to answer */
static int
route(struct mrd_req *req, const struct mrd_req_info *info, struct mrd_route_result *res, const char **detail,
      const char **extra)
{
    struct mrd_gen *g = req->gen;
    struct mrd_ip client;
    static _Thread_local char retry_after[40];

    client_address(g->conf, info, &client);
    req->client = client;
    if (g->climit != NULL) {
        uint64_t wait_ms = 0;
        const void *key = client.bytes;
        if (!mrd_client_limiter_take_wait(g->climit, key, client.family == AF_INET ? 4 : 16, mrd_now_ms(),
                                          &wait_ms)) {
            snprintf(retry_after, sizeof(retry_after), "Retry-After: %llu\r\n",
                     (unsigned long long)mrd_retry_after_s(wait_ms));
            *detail = "client rate limit";
            *extra = retry_after;
            return 429;
        }
    }
    mrd_route_client(g, &client, 1, &req->w->route_scratch, res);
    memcpy(req->country, res->loc.country, sizeof(req->country));
    if (res->block_status) {
        *detail = "geo-blocked";
        return res->block_status;
    }
    if (res->region < 0) {
        if (res->reason == MRD_ROUTE_SHED) {
            mrd_metrics_shed(g->regions[res->out.winner].st);
            *detail = "capacity";
            *extra = "Retry-After: 1\r\nX-Meridian-Shed: capacity\r\n";
        } else {
            *detail = "no eligible region";
            *extra = "Retry-After: 1\r\n";
        }
        return 503;
    }
    return 0;
}

int
mrd_req_start(struct mrd_req *req, const struct mrd_req_info *info, const char **detail, const char **extra)
{
    struct mrd_fwd_req f = {
        .client_ip = info->client_ip,
        .proto = info->proto,
        .body = info->body,
        .content_length = info->content_length,
        .upgrade = info->upgrade,
        .version = info->version,
    };

    struct mrd_route_result res;
    int status;

    *detail = NULL;
    *extra = NULL;
    req->t_start_us = mrd_now_us();
    req->version = info->version;
    if (info->conn_addrs != NULL)
        req->conn_addrs = *info->conn_addrs;
    request_id(req, info);
    f.request_id = req->id_generated ? req->request_id : NULL;
    if (mrd_access_log_enabled()) {
        req->log_line = mrd_xmalloc(info->method_len + info->target_len + 2);
        memcpy(req->log_line, info->method, info->method_len);
        req->log_line[info->method_len] = ' ';
        memcpy(req->log_line + info->method_len + 1, info->target, info->target_len);
        req->log_line[info->method_len + 1 + info->target_len] = '\0';
    }
    status = route(req, info, &res, detail, extra);
    if (status != 0) {
        count(req, status);
        return status;
    }
    req->region = &req->gen->regions[res.region];
    req->rule = res.out.rule;
    req->reason = res.reason;
    req->is_head = mrd_strieq(info->method, info->method_len, "HEAD");
    req->idempotent = mrd_h1_method_idempotent(info->method, info->method_len) != 0;
    req->upgrade = info->upgrade != 0;
    req->up_body = info->body;
    req->body_done = info->body == MRD_H1_BODY_NONE;
    if (req->idempotent && !req->body_done)
        req->replay = evbuffer_new();
    mrd_build_request_head(&req->head, info->method, info->method_len, info->target, info->target_len,
                           info->headers, info->n_headers, &f);
    req->body_last_ms = mrd_now_ms();
    attempt(req);
    body_timer_update(req);
    return 0;
}

void
mrd_req_body(struct mrd_req *req, struct evbuffer *src, size_t n)
{
    req->bytes_in += n;
    req->body_last_ms = mrd_now_ms();
    if (req->rs == RS_DONE) {
        evbuffer_drain(src, n);
        return;
    }
    if (req->rs == RS_TUNNEL) {
        mrd_stream_move(req->uc->s, src, n, 0);
        check_body_backpressure(req);
        return;
    }
    if (req->uc == NULL || req->rs == RS_CONNECTING)
        evbuffer_remove_buffer(src, req->pending, n);
    else
        send_body_bytes(req, src, n);
    check_body_backpressure(req);
}

void
mrd_req_trailer_section(struct mrd_req *req, const void *p, size_t n)
{
    if (req->req_trailer_raw == NULL)
        req->req_trailer_raw = evbuffer_new();
    evbuffer_add(req->req_trailer_raw, p, n);
}

static void
add_trailer_field(void *arg, const char *name, size_t nl, const char *value, size_t vl)
{
    /* the chunk parser already held the section to limits.max_header_bytes */
    (void)mrd_req_trailer_field(arg, name, nl, value, vl);
}

void
mrd_req_body_end(struct mrd_req *req)
{
    req->body_done = 1;
    body_timer_update(req);
    if (req->req_trailer_raw != NULL) {
        size_t len = evbuffer_get_length(req->req_trailer_raw);
        mrd_trailer_section_each((const char *)evbuffer_pullup(req->req_trailer_raw, -1), len, add_trailer_field,
                                 req);
        evbuffer_free(req->req_trailer_raw);
        req->req_trailer_raw = NULL;
    }
    if (req->uc == NULL || req->rs != RS_WAIT_HEAD)
        return;
    if (req->up_body == MRD_H1_BODY_CHUNKED)
        last_chunk(req, req->uc->s);
    mrd_stream_set_timeouts(req->uc->s, ms32(timeouts(req)->upstream_response_ms), ms32(timeouts(req)->idle_ms));
}

void
mrd_req_resume(struct mrd_req *req)
{
    if (!req->paused_resp || req->uc == NULL)
        return;
    req->paused_resp = 0;
    mrd_stream_read(req->uc->s, 1);
    /* bytes may already wait in the input buffer */
    up_read(req->uc->s, req);
}

void
mrd_req_free(struct mrd_req *req)
{
    if (req == NULL)
        return;
    drop_upstream(req, 0);
    if (req->body_timer != NULL)
        evtimer_del(req->body_timer);
    if (req->replay != NULL)
        evbuffer_free(req->replay);
    if (req->trailers != NULL)
        evbuffer_free(req->trailers);
    if (req->req_trailers != NULL)
        evbuffer_free(req->req_trailers);
    if (req->req_trailer_raw != NULL)
        evbuffer_free(req->req_trailer_raw);
    free(req->log_line);
    mrd_gen_release(req->gen);
    if ((int)req->w->n_req_pool < MRD_POOL_MAX && req->head.cap <= 16384) {
        struct mrd_worker *w = req->w;
        struct evbuffer *pending = req->pending;
        struct mrd_buf head = req->head;
        struct event *body_timer = req->body_timer;
        evbuffer_drain(pending, evbuffer_get_length(pending));
        head.len = 0;
        memset(req, 0, sizeof(*req));
        req->pending = pending;
        req->head = head;
        req->body_timer = body_timer;
        req->pool_next = w->req_pool;
        w->req_pool = req;
        w->n_req_pool++;
        return;
    }
    evbuffer_free(req->pending);
    mrd_buf_dispose(&req->head);
    if (req->body_timer != NULL)
        event_free(req->body_timer);
    free(req);
}

void
mrd_req_pool_dispose(struct mrd_worker *w)
{
    while (w->req_pool != NULL) {
        struct mrd_req *req = w->req_pool;
        w->req_pool = req->pool_next;
        evbuffer_free(req->pending);
        mrd_buf_dispose(&req->head);
        if (req->body_timer != NULL)
            event_free(req->body_timer);
        free(req);
    }
    w->n_req_pool = 0;
}
