/*
 * h2-int.h: internal to the HTTP/2 downstream, shared by src/proto/h2.c
 * (session glue, connection lifetime, streams, requests, nghttp2 callbacks),
 * h2_resp.c (responses and the struct mrd_req_ops the proxy answers through),
 * h2_mem.c (nghttp2's allocator, the block pool, the idle trim) and
 * h2_guard.c (frame-boundary scanning, closed and skipped stream ids, the
 * control frame flood bound). Nothing else includes it; the public interface
 * is h2.h.
 */
#ifndef MERIDIAN_H2_INT_H
#define MERIDIAN_H2_INT_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <nghttp2/nghttp2.h>

#include "meridian/addr.h"
#include "meridian/buf.h"
#include "meridian/gen.h"
#include "meridian/proxyproto.h"
#include "meridian/server.h"

#define RESP_LOW MRD_OUT_LOW   /* resume the upstream at this much buffered response */
#define RESP_HIGH MRD_OUT_HIGH /* the proxy pauses itself above this (server.h) */
#define TRIM_AFTER_MS 1000 /* an idle connection's blocks are trimmed after this */

/* one request stream; owned by its connection (h->streams list) */
struct h2s {
    struct mrd_h2_conn *h;
    struct h2s *next, *prev; /* h->streams */
    struct h2s *rnext;       /* h->reap: closed, to free */
    int32_t id;
    struct mrd_req *req;       /* NULL once answered locally or freed */
    struct mrd_buf hb;         /* header names and values, back to back */
    struct hfield {
        size_t name_off, name_len, value_off, value_len;
    } *hf;
    size_t n_hf, cap_hf, hdr_bytes;
    struct evbuffer *resp;    /* response body waiting for DATA frames */
    struct mrd_buf trailer_buf; /* response trailer fields, lowercase names, back to back */
    nghttp2_nv *trailer_nv;
    size_t n_trailers;
    struct evbuffer *body_in; /* request body held while the proxy is paused */
    uint64_t body_total;
    size_t unconsumed; /* bytes in body_in, not yet given back to the windows */
    unsigned closed : 1, in_done : 1, body_end_sent : 1, body_paused : 1, resp_submitted : 1, resp_eof : 1,
        deferred : 1, upstream_paused : 1, hdr_too_big : 1, discard : 1, req_done : 1;
};

struct mrd_h2_conn { /* packed by hand: one per idle TLS h2 connection */
    struct mrd_worker *w;
    struct mrd_gen *gen; /* one ref */
    struct mrd_stream *s;
    nghttp2_session *ng;
    struct mrd_h2_conn *next, *prev; /* per-worker list (shutdown) */
    struct h2s *streams;
    struct h2s *reap;
    /* nghttp2 forgets closed streams (no_closed_streams: an idle connection
     * then holds no stream state). One bit per recent client stream id,
     * (id >> 1) & 127, for ids in (last_sid - 256, last_sid]: set when we
     * sent RST_STREAM on it, whose late frames must be ignored (RFC 9113
     * 5.4.2); a frame on any other closed stream there is STREAM_CLOSED. */
    uint64_t rst_sent[2];
    /* one event for two jobs: activated with EV_READ for deferred work,
     * added with a timeout to trim an idle connection's buffers */
    struct event defer_ev;
    /* nghttp2's page-sized and larger blocks, mapped on their own so that
     * an idle connection can hand their all-zero pages back (see trim) */
    void *big_p[3];
    uint32_t big_len[3];
    struct mrd_pp_addrs addrs; /* addrs.src: the client's TCP peer (send_proxy uses both) */
    char client_ip[MRD_IP_STRLEN];
    uint8_t n_gaps;
    uint16_t cheap_frames;
    unsigned n_streams;
    int32_t last_sid;   /* highest client stream id seen in a HEADERS frame */
    int32_t gaps[3][2]; /* odd ids skipped below it (RFC 9113 5.1.1), oldest dropped */
    /* frame boundaries in the input, to check a frame's stream against
     * nghttp2's state as of the frames before it (nghttp2 says nothing of
     * frames it ignores on streams it forgot), and to hand nghttp2 frame
     * headers only whole (see mrd_h2_scan_input) */
    uint32_t scan_skip;   /* bytes before the next frame header */
    int32_t scan_max_sid; /* highest HEADERS stream id the scan has passed */
    uint32_t cheap_window_ms; /* low 32 bits of the clock, compared wrap-safe */
    uint32_t conn_unconsumed; /* connection-level bytes to give back (closed streams) */
    uint8_t cb_error;         /* GOAWAY code of a callback that failed the session */
    /* broken: nghttp2 returned a fatal error, the session must not be used
     * again (only nghttp2_session_del, in conn_free); see session_fatal */
    unsigned tls : 1, in_flush : 1, goaway : 1, closing : 1, lingering : 1, broken : 1, need_resume : 1,
        need_body : 1, big_dirty : 1, sent_any : 1;
};

static inline const struct mrd_config *
conf(struct mrd_h2_conn *h)
{
    return h->gen->conf;
}

static inline void
schedule(struct mrd_h2_conn *h)
{
    event_active(&h->defer_ev, EV_READ, 0);
}

/* ---- h2_mem.c ---- */

/* the allocator nghttp2 gets for h's session */
void mrd_h2_mem_init(nghttp2_mem *mem, struct mrd_h2_conn *h);
/* hand an idle connection's all-zero pages back (the timeout of defer_ev) */
void mrd_h2_trim(struct mrd_h2_conn *h);

/* ---- h2_guard.c ---- */

/* nghttp2's on_begin_frame_callback: skipped stream ids, control frame flood */
int mrd_h2_on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *arg);
/* we sent RST_STREAM on id: its late frames are ignored */
void mrd_h2_rst_mark(struct mrd_h2_conn *h, int32_t id);
/* how many of the n input bytes at p nghttp2 may have now (see h2_guard.c) */
size_t mrd_h2_scan_input(struct mrd_h2_conn *h, const uint8_t *p, size_t n, int *bad);

/* ---- h2_resp.c ---- */

extern const struct mrd_req_ops mrd_h2_req_ops;
/* answer locally and drop the request (not from inside a proxy callback) */
void mrd_h2_reject(struct h2s *st, int status, const char *detail);
/* mrd_req_ops.on_error: RST_STREAM, or a local response if none began */
void mrd_h2_r_on_error(struct mrd_req *req, int status, const char *detail, const char *extra);

#endif
