/*
 * up_h1.c: the HTTP/1 exchange with an upstream connection: send the head
 * and the body (framed for the hop, kept for a retry while small), parse the
 * response head, pump the body downstream with backpressure both ways, and
 * turn the connection's events into the outcomes proxy.c decides on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meridian/common.h"
#include "meridian/headers.h"
#include "meridian/log.h"
#include "meridian/metrics.h"
#include "meridian/proxy-int.h"

/* ---- sending the request ---- */

void
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

void
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
void
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
void
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

/* ---- receiving the response ---- */

/* response body bytes to the downstream */
void
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
    note_ttfb(req);
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

void
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

void
up_write(struct mrd_stream *st, void *arg)
{
    struct mrd_req *req = arg;

    /* output drained below LOW_WATER */
    if (req->paused_body)
        check_body_backpressure(req);
}

void
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

