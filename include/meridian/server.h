/*
 * server.h: the I/O layer's objects: worker threads, downstream HTTP/1
 * connections, requests and upstream connections. Everything here belongs to
 * one worker's event base and is touched only by that worker's thread, except
 * what gen.h marks as shared.
 *
 * A request (struct mrd_req) is protocol-neutral: a downstream (an HTTP/1
 * connection now, an HTTP/2 stream later) creates it, feeds it the request
 * body, and receives the response through struct mrd_req_ops. One connection
 * may own several requests over its life (keep-alive, pipelining, streams).
 */
#ifndef MERIDIAN_SERVER_H
#define MERIDIAN_SERVER_H

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>

#include "meridian/buf.h"
#include "meridian/gen.h"
#include "meridian/http1.h"
#include "meridian/route.h"
#include "meridian/stream.h"

struct mrd_worker {
    unsigned id;
    pthread_t thread;
    struct event_base *base;
    struct mrd_gen *gen; /* current generation (one ref) */
    struct mrd_wlistener **listeners; /* index = listener index in w->gen->conf */
    size_t n_listeners;
    struct mrd_stream_loop sloop; /* output flushing for this worker's streams */
    struct mrd_conn *deferred;    /* connections to post-process (conn.c) */
    struct event defer_ev;
    int wake_fd;        /* eventfd: main -> worker messages (shutdown, new generation) */
    struct event wake;
    atomic_int stopping;
    struct mrd_worker_msg *_msgs, **_msgs_tail; /* posted by main, protected by _lock */
    int _force_stop;           /* protected by _lock */
    pthread_mutex_t _lock;
    struct mrd_buf scratch;    /* reusable head builder */
    struct mrd_h1_msg msg;     /* reusable parse result (heads are parsed synchronously) */
    struct mrd_route_scratch route_scratch;
    uint64_t rnd_state;
    unsigned n_conns;          /* open downstream connections (mrd_worker_conn_opened/closed) */
    unsigned conns_peak;       /* most open at once since memory was last returned */
    struct event trim_ev;      /* returns a departed crowd's memory (worker.c) */
    struct mrd_conn *conns;    /* list, for graceful shutdown */
    struct mrd_h2_conn *h2_conns; /* HTTP/2 connections (h2.c) */
    struct evbuffer *h2_body;     /* a request body chunk on its way to the proxy (h2.c) */
    struct mrd_req *req_pool;     /* freed requests for reuse (proxy.c) */
    void *h2s_pool;               /* freed HTTP/2 streams for reuse (h2.c) */
    unsigned n_req_pool, n_h2s_pool;
    struct {
        void *p;
        size_t len;
    } h2_blocks[16]; /* mappings kept from closed HTTP/2 connections (h2.c) */
    unsigned n_h2_blocks;
    struct event *done_ev;     /* main's event, activated when the loop ends */
    atomic_uint *done_count;
    struct event *_stop_ev;    /* periodic check while draining */
    struct event *accept_ev;   /* retry accepting after a pause (worker.c) */
    unsigned accept_paused : 1; /* listeners disabled: out of fds/memory or at max_connections */
    int held_fd;                /* accepted while at max_connections, served when a place frees up */
    struct mrd_wlistener *held_wl;
    socklen_t held_salen;
    struct sockaddr_storage held_sa;
};

int mrd_listen_socket(const struct sockaddr *sa, socklen_t len, const char **err);
/* fds: one listening socket per listener of g for this worker (ownership
 * passes; -1 entries accept nothing) */
int mrd_worker_init(struct mrd_worker *w, unsigned id, struct mrd_gen *g, const int *fds, size_t n_fds);
int mrd_worker_start(struct mrd_worker *w);
/* from the main thread: hand over a generation reference with this worker's
 * listening sockets for it (one per listener of g, in order). A socket the
 * worker already listens on is kept (found by descriptor); one it listens on
 * that is not in fds is closed; the rest are new and become the worker's.
 * Posts are applied in order. */
void mrd_worker_post_gen(struct mrd_worker *w, struct mrd_gen *g, const int *fds, size_t n_fds);
/* a downstream connection opened / closed on this worker: counts n_conns and,
 * when a crowd of connections has left, returns their freed buffers to the
 * kernel a second later (worker.c) */
void mrd_worker_conn_opened(struct mrd_worker *w);
void mrd_worker_conn_closed(struct mrd_worker *w);
/* ask to stop (1: gracefully, 2: now) */
void mrd_worker_post_stop(struct mrd_worker *w, int how);
void mrd_worker_dispose(struct mrd_worker *w);

/* accept pausing, shared with the admin listener: the reason (metrics.h) for
 * an accept errno; count a pause and log the counts at most once a second
 * per process; flush returns 1 while counts wait for their line */
int mrd_accept_pause_reason(int err);
void mrd_accept_pause_note(int reason, int err, uint64_t max_connections);
int mrd_accept_pause_flush(void);

extern atomic_uint mrd_connections_active;

uint64_t mrd_worker_rand(struct mrd_worker *w);
/* at worker exit: free what the pools hold */
void mrd_req_pool_dispose(struct mrd_worker *w);
void mrd_h2_pool_dispose(struct mrd_worker *w);
void mrd_h2_blocks_dispose(struct mrd_worker *w);

/* ---- requests (proxy.c) ---- */

struct mrd_req;
struct mrd_h2_conn;
struct mrd_pp_addrs;

/* Backpressure between the proxy and a downstream, both directions: the
 * proxy stops reading the upstream while the downstream's out_pending is
 * above MRD_OUT_HIGH, and a downstream that reports out_pending from a
 * buffer of its own calls mrd_req_resume once that buffer is at or below
 * MRD_OUT_LOW (one pair of numbers, so that neither side waits for a
 * threshold the other never crosses). The request body pauses the client
 * on the same marks. nginx: 8 x 4-8 KiB proxy buffers. */
#define MRD_OUT_HIGH (64 * 1024)
#define MRD_OUT_LOW (16 * 1024)

struct mrd_req_ops {
    /* the final (or 101) response head from the upstream; fields valid during the call */
    void (*on_head)(struct mrd_req *req, const struct mrd_h1_msg *resp, int status);
    /* move n response body bytes out of src */
    void (*on_body)(struct mrd_req *req, struct evbuffer *src, size_t n);
    /* response complete; the upstream side is released */
    void (*on_end)(struct mrd_req *req);
    /* the proxy failed: status > 0 is a response to make (nothing was sent yet),
     * status 0 means the response was cut after its head: abort the stream */
    void (*on_error)(struct mrd_req *req, int status, const char *detail, const char *extra_headers);
    /* request body flow control: stop (1) or resume (0) reading from the client */
    void (*pause_body)(struct mrd_req *req, int pause);
    /* bytes waiting to be written downstream, for response flow control */
    size_t (*out_pending)(struct mrd_req *req);
};

struct mrd_req_info {
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    const struct mrd_h1_header *headers;
    size_t n_headers;
    const char *client_ip; /* the TCP peer, text (appended to X-Forwarded-For) */
    const struct mrd_ip *peer;
    const struct mrd_pp_addrs *conn_addrs; /* the client connection's ends (src = peer), for send_proxy */
    const char *proto;     /* "http" / "https" */
    enum mrd_h1_body body; /* framing of the body the downstream will deliver */
    uint64_t content_length;
    int upgrade;           /* WebSocket upgrade requested */
    const char *version;   /* client protocol version for Via: "1.0", "1.1" or "2" */
};

/* a request runs on the worker's current configuration generation */
struct mrd_req *mrd_req_new(struct mrd_worker *w, const struct mrd_req_ops *ops, void *ctx);
/* Start proxying. Returns 0, or an HTTP status the downstream must answer with
 * (nothing was sent upstream then; detail/extra describe it). */
int mrd_req_start(struct mrd_req *req, const struct mrd_req_info *info, const char **detail, const char **extra);
/* request body bytes (decoded; the proxy frames them for the upstream) */
void mrd_req_body(struct mrd_req *req, struct evbuffer *src, size_t n);
void mrd_req_body_end(struct mrd_req *req);
/* a trailer field of the request, to send after a chunked body (dropped
 * when the upstream request has a Content-Length); before mrd_req_body_end.
 * -1 when the trailers together exceed limits.max_header_bytes. */
int mrd_req_trailer_field(struct mrd_req *req, const char *name, size_t nlen, const char *value, size_t vlen);
/* bytes of an HTTP/1 trailer section as the chunk parser consumed (and
 * validated) them; split into fields at mrd_req_body_end */
void mrd_req_trailer_section(struct mrd_req *req, const void *p, size_t n);
/* the downstream drained its output: resume reading the response */
void mrd_req_resume(struct mrd_req *req);
/* free; closes an upstream connection still attached (aborted request) */
void mrd_req_free(struct mrd_req *req);
void *mrd_req_ctx(struct mrd_req *req);
/* in on_end: the response's trailer section as HTTP/1.1 lines ending with an
 * empty line ("Name: value\r\n"... "\r\n", validated), or NULL when none */
struct evbuffer *mrd_req_trailers(struct mrd_req *req);
const char *mrd_req_region(struct mrd_req *req);

/* ---- upstream connections (upstream.c) ---- */

struct mrd_uconn {
    struct mrd_stream *s;
    struct mrd_upstream_state *st; /* one ref */
    struct mrd_worker *w;
    struct mrd_uconn *next, *prev; /* idle list */
    unsigned requests;             /* served on this connection */
    int idle;
};

/* an idle connection to st for this worker, or NULL */
struct mrd_uconn *mrd_pool_lease(struct mrd_worker *w, struct mrd_upstream_state *st);
/* start a new connection (callbacks are the caller's to set); to a send_proxy
 * upstream, the PROXY header for addrs (NULL: UNKNOWN / LOCAL) is queued as
 * its first bytes */
struct mrd_uconn *mrd_uconn_connect(struct mrd_worker *w, struct mrd_upstream_state *st, uint64_t timeout_ms,
                                    const struct mrd_pp_addrs *addrs);
/* return a healthy keep-alive connection to the pool (or close it when full) */
void mrd_pool_release(struct mrd_uconn *uc, uint64_t idle_ms);
void mrd_uconn_free(struct mrd_uconn *uc);
/* close every idle connection of this worker (shutdown) */
void mrd_pool_drain(struct mrd_worker *w, struct mrd_gen *g);
/* at a generation switch: close this worker's idle connections to the
 * upstreams of prev that next no longer has (a vanished DNS address) */
void mrd_pool_drain_gone(struct mrd_worker *w, const struct mrd_gen *prev, const struct mrd_gen *next);

/* ---- PROXY protocol header of an accepted connection (ppwait.c) ---- */

struct mrd_pp_header;
struct mrd_pp_wait;
/* h: the header (err NULL), or NULL and err says why (static or strerror) */
typedef void (*mrd_pp_wait_cb)(void *arg, const struct mrd_pp_header *h, const char *err);
/* read the header on fd (and nothing after it) by deadline_us (mrd_now_us
 * clock), then call done once; done may free the wait */
struct mrd_pp_wait *mrd_pp_wait_start(struct event_base *base, evutil_socket_t fd, uint64_t deadline_us,
                                      mrd_pp_wait_cb done, void *arg);
void mrd_pp_wait_free(struct mrd_pp_wait *pw);

/* the same for this worker's HTTP/2 upstream connections (up_h2.c): idle
 * ones close, busy ones once their last stream ends */
void mrd_up_h2_drain(struct mrd_worker *w);

/* ---- downstream HTTP/1 (conn.c) ---- */

struct mrd_conn;
/* listener: index into the generation's listeners (TLS when it has a tls block) */
void mrd_conn_accept(struct mrd_worker *w, evutil_socket_t fd, const struct sockaddr *sa, int socklen,
                     size_t listener);
void mrd_conn_run_deferred(struct mrd_worker *w);
/* graceful shutdown: close idle connections now, the others after their
 * request; force closes them all (shutdown timeout) */
void mrd_conn_shutdown_all(struct mrd_worker *w, int force);

/* ---- admin (admin.c) ---- */
/* bind the admin listener (before the proxy's, so that it is ready when they
 * are); -2 when none is configured, -1 on error (reported on stderr) */
int mrd_admin_listen(const struct mrd_gen *g);
int mrd_admin_start(struct event_base *base, struct mrd_gen *g, int fd);
/* a JSON string literal of s (quotes, backslashes and control bytes escaped) */
void mrd_admin_json_string(struct evbuffer *b, const char *s);
/* reload: bind a moved admin address first (-1 and err when it cannot be),
 * then switch to the new generation once nothing else can fail */
int mrd_admin_prepare(const struct mrd_config *old, const struct mrd_gen *g, char *err, size_t errlen);
void mrd_admin_commit(struct event_base *base, struct mrd_gen *g);
void mrd_admin_stop(void);

#endif
