/*
 * proxy-int.h: internal to the proxy, shared by src/proxy/proxy.c (the
 * protocol-independent request lifecycle: routing, picking an upstream,
 * retries, failing and finishing, access log and metrics, the request body
 * timeout) and src/proxy/up_h1.c (the HTTP/1 exchange with an upstream
 * connection). Nothing else includes it; the public interface is server.h.
 */
#ifndef MERIDIAN_PROXY_INT_H
#define MERIDIAN_PROXY_INT_H

#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "meridian/clientip.h"
#include "meridian/health.h"
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
    /* an HTTP/2 upstream (up_h2.c): the connection carrying the request
     * while attached (waiting for it, or with a stream on it) */
    struct mrd_h2up *h2;
    struct mrd_req *h2_next, *h2_prev; /* on h2->reqs */
    int32_t h2_sid;                    /* 0 while not submitted */
    size_t h2_replay_off;              /* bytes of `replay` already sent on this attempt */
    size_t h2_unacked;                 /* response DATA handed down, not yet given back as window */
    unsigned te_trailers : 1, h2_deferred : 1, h2_local_done : 1, h2_remote_done : 1;
    unsigned h2_goaways : 3; /* attempts cut off by a GOAWAY, not counted as retries */
    unsigned h2_timer_set : 1;
    struct event h2_timer; /* timeouts.upstream_response of the stream (assigned when
                            * h2_timer_set); deleted when it detaches */
};

static inline const struct mrd_timeouts_conf *
timeouts(struct mrd_req *req)
{
    return &req->gen->conf->timeouts;
}

static inline uint32_t
ms32(uint64_t ms)
{
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

/* proxy.c */
void attempt(struct mrd_req *req);
void body_timer_update(struct mrd_req *req);
void upstream_fault(struct mrd_req *req, enum mrd_upstream_failure kind);
/* the response head arrived: its time to first byte feeds the region's
 * latency factor and the upstream's p2c_ewma (once per attempt) */
void note_ttfb(struct mrd_req *req);
/* append "Name: value\r\n" to *b (created when NULL): a trailer field */
void add_field_line_to(struct evbuffer **b, const char *name, size_t nl, const char *value, size_t vl);
void fail(struct mrd_req *req, int status, const char *detail);
void finish(struct mrd_req *req);
void upstream_failed(struct mrd_req *req, int status, const char *detail, int wrote);

/* up_h1.c */
void start_sending(struct mrd_req *req);
void send_body_bytes(struct mrd_req *req, struct evbuffer *src, size_t n);
void check_body_backpressure(struct mrd_req *req);
void last_chunk(struct mrd_req *req, struct mrd_stream *st);
void up_read(struct mrd_stream *st, void *arg);
void up_write(struct mrd_stream *st, void *arg);
void up_event(struct mrd_stream *st, short what, void *arg);
void deliver(struct mrd_req *req, struct evbuffer *src, size_t n);

/* up_h2.c: HTTP/2 (h2c) upstreams */
struct mrd_h2up;
/* req->ups is set (and counted): attach to a pooled connection with a free
 * stream, or to a new one */
void mrd_up_h2_start(struct mrd_req *req);
/* body bytes were added to req->pending, or the body ended */
void mrd_up_h2_body(struct mrd_req *req);
/* the downstream drained: give the response window back */
void mrd_up_h2_resume(struct mrd_req *req);
/* the request leaves its connection (done, failed or aborted) */
void mrd_up_h2_detach(struct mrd_req *req);

#endif
