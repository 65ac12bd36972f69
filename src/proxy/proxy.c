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
#include "meridian/h2fields.h"
#include "meridian/headers.h"
#include "meridian/health.h"
#include "meridian/log.h"
#include "meridian/metrics.h"
#include "meridian/proxyproto.h"
#include "meridian/server.h"
#include "meridian/proxy-int.h"

/* an attempt on the current upstream failed (passive health, SPEC 3.5 and
 * 12); before drop_upstream, which forgets the upstream */
void
upstream_fault(struct mrd_req *req, enum mrd_upstream_failure kind)
{
    if (req->ups != NULL)
        mrd_health_passive_fail(req->ups, kind);
}

void
add_field_line_to(struct evbuffer **b, const char *name, size_t nl, const char *value, size_t vl)
{
    if (*b == NULL)
        *b = evbuffer_new();
    evbuffer_add(*b, name, nl);
    evbuffer_add(*b, ": ", 2);
    evbuffer_add(*b, value, vl);
    evbuffer_add(*b, "\r\n", 2);
}

void
note_ttfb(struct mrd_req *req)
{
    uint64_t ttfb;

    if (req->t_sent_us == 0)
        return;
    ttfb = mrd_now_us() - req->t_sent_us;
    req->ttfb_us = ttfb;
    mrd_ewma_add_atomic(&req->region->st->ttfb_ewma_us, ttfb);
    if (req->ups != NULL)
        mrd_ewma_add_atomic(&req->ups->ewma_us, ttfb);
    req->t_sent_us = 0;
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
    if (req->h2 != NULL)
        mrd_up_h2_detach(req);
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

void
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

void
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

void
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
void
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
    if (req->region->conf->upstream_protocol != MRD_UP_HTTP1) {
        mrd_up_h2_start(req);
        return;
    }
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
void
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
    add_field_line_to(&req->req_trailers, name, nlen, value, vlen);
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
    for (size_t i = 0; i < info->n_headers; i++)
        if (mrd_strieq(info->headers[i].name, info->headers[i].name_len, "te") &&
            mrd_te_has_trailers(info->headers[i].value, info->headers[i].value_len))
            req->te_trailers = 1; /* forwarded to an HTTP/2 upstream (gRPC needs it) */
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
    if (req->h2 != NULL)
        mrd_up_h2_body(req);
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
    if (req->h2 != NULL) {
        mrd_up_h2_body(req);
        return;
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
    if (req->paused_resp && req->h2 != NULL) {
        mrd_up_h2_resume(req);
        return;
    }
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
