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
 * Reentrancy: nghttp2 is driven (mem_recv / mem_send) only from this file's
 * stream and deferred-event callbacks. Callbacks from proxy.c only submit to
 * the session and schedule the deferred event; requests of closed streams
 * are freed from that event, never inside a proxy or nghttp2 callback.
 */
#include <malloc.h>
#include <pthread.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <nghttp2/nghttp2.h>

#include "meridian/addr.h"
#include "meridian/clock.h"
#include "meridian/common.h"
#include "meridian/h2.h"
#include "meridian/headers.h"
#include "meridian/log.h"
#include "meridian/metrics.h"
#include "meridian/server.h"

#define STREAM_WINDOW (256 * 1024) /* SETTINGS_INITIAL_WINDOW_SIZE we announce */
#define CONN_WINDOW (1024 * 1024)  /* connection receive window */
#define MAX_STREAMS 128
#define OUT_HIGH (256 * 1024) /* stop producing frames above this much unsent output */
#define RESP_LOW (64 * 1024)  /* resume the upstream below this much buffered response */
#define RESP_HIGH (256 * 1024)
#define BODY_CHUNK (64 * 1024)
#define CHEAP_FRAMES_PER_S 1000 /* PING/SETTINGS/PRIORITY/empty DATA/unknown: flood bound */

/* ---- state ---- */

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
    struct mrd_ip peer;
    char client_ip[MRD_IP_STRLEN];
    uint8_t n_gaps;
    uint16_t cheap_frames;
    unsigned n_streams;
    int32_t last_sid;   /* highest client stream id seen in a HEADERS frame */
    int32_t gaps[3][2]; /* odd ids skipped below it (RFC 9113 5.1.1), oldest dropped */
    /* frame boundaries in the input, to check a frame's stream against
     * nghttp2's state as of the frames before it (nghttp2 says nothing of
     * frames it ignores on streams it forgot), and to hand nghttp2 frame
     * headers only whole (see scan_input) */
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

/* ---- memory for nghttp2: large blocks apart, returned to the kernel when idle ---- */

#define BIG_ALLOC 4096 /* nghttp2's stream map table is exactly one page */
#define TRIM_AFTER_MS 1000

static int
big_find(struct mrd_h2_conn *h, void *p)
{
    for (int i = 0; i < (int)MRD_ARRAY_LEN(h->big_p); i++)
        if (h->big_p[i] == p && p != NULL)
            return i;
    return -1;
}

/* a mapping of len bytes: one the worker kept from a closed connection
 * (cleared when zero is asked), else a fresh one (zero already) */
static void *
block_get(struct mrd_worker *w, size_t len, int zero)
{
    for (unsigned i = 0; i < w->n_h2_blocks; i++) {
        if (w->h2_blocks[i].len != len)
            continue;
        void *p = w->h2_blocks[i].p;
        w->h2_blocks[i] = w->h2_blocks[--w->n_h2_blocks];
        if (zero)
            memset(p, 0, len);
        return p;
    }
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* keep a closed connection's mapping for the next one (no munmap, no page
 * faults on the next connection), up to a few per worker */
static void
block_put(struct mrd_worker *w, void *p, size_t len)
{
    if ((int)w->n_h2_blocks < (MRD_POOL_MAX ? (int)MRD_ARRAY_LEN(w->h2_blocks) : 0)) {
        w->h2_blocks[w->n_h2_blocks].p = p;
        w->h2_blocks[w->n_h2_blocks].len = len;
        w->n_h2_blocks++;
        return;
    }
    munmap(p, len);
}

void
mrd_h2_blocks_dispose(struct mrd_worker *w)
{
    while (w->n_h2_blocks > 0) {
        w->n_h2_blocks--;
        munmap(w->h2_blocks[w->n_h2_blocks].p, w->h2_blocks[w->n_h2_blocks].len);
    }
}

static void *
big_alloc(struct mrd_h2_conn *h, size_t size, int zero)
{
    for (size_t i = 0; i < MRD_ARRAY_LEN(h->big_p); i++) {
        if (h->big_p[i] != NULL)
            continue;
        size_t len = (size + 4095) & ~(size_t)4095;
        void *p = block_get(h->w, len, zero);
        if (p == NULL)
            return NULL;
        h->big_p[i] = p;
        h->big_len[i] = (uint32_t)len;
        return p;
    }
    return NULL;
}

static void *
ng_malloc(size_t size, void *ud)
{
    void *p = size >= BIG_ALLOC ? big_alloc(ud, size, 0) : NULL;
    return p != NULL ? p : malloc(size);
}

static void
ng_free(void *p, void *ud)
{
    struct mrd_h2_conn *h = ud;
    int i = big_find(h, p);

    if (i < 0) {
        free(p);
        return;
    }
    block_put(h->w, h->big_p[i], h->big_len[i]);
    h->big_p[i] = NULL;
}

static void *
ng_calloc(size_t n, size_t size, void *ud)
{
    void *p = (n && size <= SIZE_MAX / n && n * size >= BIG_ALLOC) ? big_alloc(ud, n * size, 1) : NULL;
    return p != NULL ? p : calloc(n, size);
}

static void *
ng_realloc(void *p, size_t size, void *ud)
{
    struct mrd_h2_conn *h = ud;
    int i = big_find(h, p);
    void *q;
    size_t old;

    if (i < 0 && size < BIG_ALLOC)
        return realloc(p, size);
    old = i >= 0 ? h->big_len[i] : (p != NULL ? malloc_usable_size(p) : 0);
    q = ng_malloc(size, ud);
    if (q == NULL)
        return NULL;
    if (p != NULL) {
        memcpy(q, p, MRD_MIN(old, size));
        ng_free(p, ud);
    }
    return q;
}

/*
 * Hand an idle connection's unused pages back to the kernel, safely whatever
 * nghttp2 keeps in its blocks. The rule: a page goes only if every byte of it
 * is zero. Why no byte of any block can change:
 *  - every block in big_p is a private anonymous mapping (block_get: a fresh
 *    mmap(MAP_PRIVATE | MAP_ANONYMOUS), or such a mapping kept by block_put
 *    from a closed connection, never a file or shared mapping);
 *  - after MADV_DONTNEED, a page of a private anonymous mapping reads back as
 *    zero-fill-on-demand (madvise(2)), so a page that was all zeros reads back
 *    with the same bytes, and the next write faults a fresh zero page in;
 *  - the block belongs to this connection and only this worker's thread
 *    touches it, and trim runs from the event loop, never inside nghttp2, so
 *    nothing writes between the scan and the madvise.
 * So nghttp2 sees the same contents whatever the block holds (frame buffers,
 * HPACK buffers of a header value in progress or in the dynamic table, the
 * stream map), and nothing here depends on knowing which. The same holds for
 * a block that later goes back to the worker's pool (block_put keeps the
 * mapping as it is; block_get with zero=0 hands it out uninitialised, as
 * malloc would; with zero=1 it is cleared) and for ng_realloc, which copies
 * the old block's bytes, zero pages included, before freeing it. The
 * conditions below (no stream, nothing to send) only avoid scanning a busy
 * connection; safety does not rest on them.
 */
static void
trim(struct mrd_h2_conn *h)
{
    if (h->n_streams != 0 || !h->big_dirty || h->broken || nghttp2_session_want_write(h->ng))
        return;
    for (size_t i = 0; i < MRD_ARRAY_LEN(h->big_p); i++) {
        const unsigned char *p = h->big_p[i];
        if (p == NULL)
            continue;
        for (size_t off = 0; off + 4096 <= h->big_len[i]; off += 4096) {
            const uint64_t *q = (const uint64_t *)(const void *)(p + off); /* page-aligned */
            uint64_t any = 0;
            for (size_t k = 0; k < 4096 / sizeof(*q); k++)
                any |= q[k];
            if (any == 0)
                madvise((void *)(uintptr_t)(p + off), 4096, MADV_DONTNEED);
        }
    }
    h->big_dirty = 0;
}

static const struct mrd_config *
conf(struct mrd_h2_conn *h)
{
    return h->gen->conf;
}

static uint32_t
ms32(uint64_t ms)
{
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

static void flush(struct mrd_h2_conn *h);
static void conn_free(struct mrd_h2_conn *h);

static void
schedule(struct mrd_h2_conn *h)
{
    event_active(&h->defer_ev, EV_READ, 0);
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

/* ---- responses ---- */

static ssize_t
data_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
          nghttp2_data_source *src, void *arg)
{
    struct h2s *st = src->ptr;
    size_t avail = evbuffer_get_length(st->resp);
    int n;

    if (avail == 0) {
        if (st->resp_eof) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            /* trailers end the stream instead of this DATA frame */
            if (st->n_trailers && nghttp2_submit_trailer(ng, id, st->trailer_nv, st->n_trailers) == 0)
                *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            return 0;
        }
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    n = evbuffer_remove(st->resp, buf, MRD_MIN(avail, length));
    if (n < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if ((size_t)n == avail && st->resp_eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->n_trailers && nghttp2_submit_trailer(ng, id, st->trailer_nv, st->n_trailers) == 0)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
    if (st->upstream_paused && avail - (size_t)n <= RESP_LOW)
        st->h->need_resume = 1;
    return n;
}

static void
resume_data(struct h2s *st)
{
    if (st->deferred && !st->closed) {
        st->deferred = 0;
        nghttp2_session_resume_data(st->h->ng, st->id);
    }
    schedule(st->h);
}

static void
nv_add(nghttp2_nv *nv, size_t *n, const char *name, size_t name_len, const char *value, size_t value_len)
{
    nv[*n] = (nghttp2_nv){(uint8_t *)(uintptr_t)name, (uint8_t *)(uintptr_t)value, name_len, value_len,
                          NGHTTP2_NV_FLAG_NONE};
    (*n)++;
}

/* a response the proxy makes itself: status, extra "Name: value\r\n" lines,
 * a short text body */
static void
local_response(struct h2s *st, int status, const char *detail, const char *extra)
{
    struct mrd_h2_conn *h = st->h;
    nghttp2_nv nv[16];
    size_t n = 0;
    char code[8], len[24], lower[16][64];
    char body[256];
    int blen;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = data_read};

    if (st->resp_submitted || st->closed)
        return;
    blen = snprintf(body, sizeof(body), "%d %s%s%s\n", status, mrd_status_reason(status), detail ? ": " : "",
                    detail ? detail : "");
    if (blen < 0 || (size_t)blen >= sizeof(body))
        blen = (int)strlen(body);
    mrd_status_digits(code, status);
    snprintf(len, sizeof(len), "%d", blen);
    nv_add(nv, &n, ":status", 7, code, 3);
    nv_add(nv, &n, "content-type", 12, "text/plain", 10);
    nv_add(nv, &n, "content-length", 14, len, strlen(len));
    for (const char *p = extra; p != NULL && *p != '\0' && n < MRD_ARRAY_LEN(nv);) {
        const char *eol = strstr(p, "\r\n"), *colon = strchr(p, ':');
        if (eol == NULL || colon == NULL || colon > eol)
            break;
        size_t nl = (size_t)(colon - p);
        const char *v = colon + 1;
        while (v < eol && *v == ' ')
            v++;
        if (nl < sizeof(lower[0])) {
            for (size_t i = 0; i < nl; i++)
                lower[n][i] = (char)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] + 32 : p[i]);
            nv_add(nv, &n, lower[n], nl, v, (size_t)(eol - v));
        }
        p = eol + 2;
    }
    evbuffer_add(st->resp, body, (size_t)blen);
    st->resp_eof = 1;
    st->resp_submitted = 1;
    if (nghttp2_submit_response(h->ng, st->id, nv, n, &prd) != 0)
        nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    schedule(h);
}

/* answer locally and drop the request (not from inside a proxy callback) */
static void
reject(struct h2s *st, int status, const char *detail)
{
    if (st->req != NULL) {
        mrd_req_free(st->req);
        st->req = NULL;
    }
    st->discard = 1;
    local_response(st, status, detail, NULL);
}

/* ---- mrd_req_ops ---- */

static void
r_on_head(struct mrd_req *req, const struct mrd_h1_msg *resp, int status)
{
    struct h2s *st = mrd_req_ctx(req);
    struct mrd_h2_conn *h = st->h;
    const char *region = conf(h)->response_header_region ? mrd_req_region(req) : NULL;
    nghttp2_nv *nv, nv_stack[64];
    struct mrd_buf *b = &h->w->scratch;
    size_t n = 0, *offs, offs_stack[64];
    char code[4], clen[24];
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = data_read};
    int body;

    if (st->closed)
        return;
    st->resp_submitted = 1;
    if (resp->num_headers + 6 <= MRD_ARRAY_LEN(nv_stack)) {
        nv = nv_stack;
        offs = offs_stack;
    } else {
        nv = mrd_xcalloc(resp->num_headers + 6, sizeof(*nv));
        offs = mrd_xcalloc(resp->num_headers + 1, sizeof(*offs));
    }
    mrd_status_digits(code, status);
    nv_add(nv, &n, ":status", 7, code, 3);
    /* lowercase names go to the scratch buffer; pointers are set once it
     * stops growing */
    b->len = 0;
    size_t first = n;
    for (size_t i = 0; i < resp->num_headers; i++) {
        const struct mrd_h1_header *f = &resp->headers[i];
        if (mrd_strieq(f->name, f->name_len, "content-length") || mrd_strieq(f->name, f->name_len, "via") ||
            (region != NULL && mrd_strieq(f->name, f->name_len, "x-meridian-region")) ||
            mrd_hdr_is_hop_by_hop(resp->headers, resp->num_headers, f->name, f->name_len))
            continue;
        offs[n - first] = b->len;
        mrd_buf_reserve(b, f->name_len);
        for (size_t j = 0; j < f->name_len; j++)
            b->p[b->len + j] = (char)((f->name[j] >= 'A' && f->name[j] <= 'Z') ? f->name[j] + 32 : f->name[j]);
        b->len += f->name_len;
        nv_add(nv, &n, NULL, f->name_len, f->value, f->value_len);
    }
    for (size_t i = first; i < n; i++)
        nv[i].name = (uint8_t *)b->p + offs[i - first];
    /* a known length is kept (also for HEAD and 304, which announce it) */
    if (resp->body == MRD_H1_BODY_LENGTH) {
        size_t k = mrd_u64_dec(clen, resp->content_length);
        nv_add(nv, &n, "content-length", 14, clen, k);
    } else if (resp->body == MRD_H1_BODY_NONE && status != 204 && status != 304) {
        const struct mrd_h1_header *cl = mrd_h1_find(resp, "content-length");
        if (cl != NULL)
            nv_add(nv, &n, "content-length", 14, cl->value, cl->value_len);
    }
    if (region != NULL)
        nv_add(nv, &n, "x-meridian-region", 17, region, strlen(region));
    /* Via names the protocol the response was received with: HTTP/1.1 from
     * the upstream, as on the HTTP/1 side */
    nv_add(nv, &n, "via", 3, MRD_VIA_TOKEN, sizeof(MRD_VIA_TOKEN) - 1);
    body = resp->body != MRD_H1_BODY_NONE;
    if (!body)
        st->resp_eof = 1;
    if (nghttp2_submit_response(h->ng, st->id, nv, n, body ? &prd : NULL) != 0)
        nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    if (nv != nv_stack) {
        free(nv);
        free(offs);
    }
    schedule(h);
}

static void
r_on_body(struct mrd_req *req, struct evbuffer *src, size_t n)
{
    struct h2s *st = mrd_req_ctx(req);

    if (st->closed || st->resp_eof) {
        evbuffer_drain(src, n);
        return;
    }
    evbuffer_remove_buffer(src, st->resp, n);
    if (evbuffer_get_length(st->resp) > RESP_HIGH)
        st->upstream_paused = 1; /* the proxy pauses itself on out_pending */
    resume_data(st);
}

struct keep_ctx {
    struct h2s *st;
    size_t *offs; /* per field: name offset, name length, value offset, value length in trailer_buf */
    size_t n;
};

static void
keep_field(void *arg, const char *name, size_t nl, const char *value, size_t vl)
{
    struct keep_ctx *k = arg;
    struct mrd_buf *b = &k->st->trailer_buf;

    k->offs[k->n * 4] = b->len;
    k->offs[k->n * 4 + 1] = nl;
    mrd_buf_reserve(b, nl);
    for (size_t i = 0; i < nl; i++) /* HTTP/2 field names are lowercase */
        b->p[b->len + i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    b->len += nl;
    k->offs[k->n * 4 + 2] = b->len;
    k->offs[k->n * 4 + 3] = vl;
    mrd_buf_add(b, value, vl);
    k->n++;
}

/* keep the upstream's trailer fields (HTTP/1 lines) as HTTP/2 name/value
 * pairs with lowercase names (proxy.c kept only the fields that may travel) */
static void
keep_trailers(struct h2s *st, struct evbuffer *t)
{
    size_t len = evbuffer_get_length(t), max = 0;
    const char *p = (const char *)evbuffer_pullup(t, -1);
    struct keep_ctx k = {st, NULL, 0};

    for (size_t i = 0; i < len; i++)
        max += p[i] == '\n';
    k.offs = mrd_xcalloc(max * 4 + 1, sizeof(*k.offs));
    mrd_trailer_section_each(p, len, keep_field, &k);
    /* pointers only now: trailer_buf has stopped growing */
    st->trailer_nv = mrd_xcalloc(k.n ? k.n : 1, sizeof(*st->trailer_nv));
    for (size_t i = 0; i < k.n; i++) {
        st->trailer_nv[i].name = (uint8_t *)st->trailer_buf.p + k.offs[i * 4];
        st->trailer_nv[i].namelen = k.offs[i * 4 + 1];
        st->trailer_nv[i].value = (uint8_t *)st->trailer_buf.p + k.offs[i * 4 + 2];
        st->trailer_nv[i].valuelen = k.offs[i * 4 + 3];
        st->trailer_nv[i].flags = NGHTTP2_NV_FLAG_NONE;
    }
    st->n_trailers = k.n;
    free(k.offs);
}

static void
r_on_end(struct mrd_req *req)
{
    struct h2s *st = mrd_req_ctx(req);
    struct evbuffer *t = mrd_req_trailers(req);

    if (t != NULL && st->trailer_nv == NULL)
        keep_trailers(st, t);
    st->resp_eof = 1;
    st->req_done = 1;
    resume_data(st);
}

static void
r_on_error(struct mrd_req *req, int status, const char *detail, const char *extra)
{
    struct h2s *st = mrd_req_ctx(req);
    struct mrd_h2_conn *h = st->h;

    st->req_done = 1;
    if (st->closed)
        return;
    if (status == 0 || st->resp_submitted) {
        mrd_log(MRD_LOG_INFO, "%s: h2 stream %d: response aborted: %s", h->client_ip, (int)st->id,
                detail ? detail : "");
        nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        schedule(h);
        return;
    }
    if (status == 503 && extra == NULL)
        extra = "Retry-After: 1\r\n";
    st->discard = 1; /* the rest of the request body has nowhere to go */
    local_response(st, status, detail, extra);
}

static void
r_pause_body(struct mrd_req *req, int pause)
{
    struct h2s *st = mrd_req_ctx(req);

    st->body_paused = pause != 0;
    if (!pause && evbuffer_get_length(st->body_in) > 0) {
        st->h->need_body = 1;
        schedule(st->h);
    }
}

static size_t
r_out_pending(struct mrd_req *req)
{
    struct h2s *st = mrd_req_ctx(req);

    return evbuffer_get_length(st->resp);
}

static const struct mrd_req_ops h2_ops = {
    .on_head = r_on_head,
    .on_body = r_on_body,
    .on_end = r_on_end,
    .on_error = r_on_error,
    .pause_body = r_pause_body,
    .out_pending = r_out_pending,
};

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
        reject(st, 431, "request header fields too large");
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
                reject(st, 400, "invalid Host");
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
            reject(st, 400, "invalid :authority");
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
        reject(st, 405, "CONNECT is not supported");
        return;
    }
    if (has_cl && cl > conf(h)->limits.max_body_bytes) {
        if (hdrs != stack_hdrs)
            free(hdrs);
        mrd_buf_dispose(&cookie);
        reject(st, 413, "request body too large");
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
        .peer = &h->peer,
        .proto = h->tls ? "https" : "http",
        .version = "2",
        .body = end_stream ? MRD_H1_BODY_NONE : has_cl ? MRD_H1_BODY_LENGTH : MRD_H1_BODY_CHUNKED,
        .content_length = cl,
        .upgrade = 0,
    };
    if (info.body == MRD_H1_BODY_LENGTH && cl == 0)
        info.body = MRD_H1_BODY_NONE; /* an empty DATA with END_STREAM follows */
    st->req = mrd_req_new(h->w, &h2_ops, st);
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
        r_on_error(st->req, status, detail, extra);
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
            reject(st, 413, "request body too large");
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

/* an odd id below last_sid that no HEADERS opened (RFC 9113 5.1.1) */
static int
in_gap(const struct mrd_h2_conn *h, int32_t id)
{
    for (unsigned i = 0; i < h->n_gaps; i++)
        if (id >= h->gaps[i][0] && id <= h->gaps[i][1])
            return 1;
    return 0;
}

static unsigned
rst_slot(int32_t id)
{
    return ((uint32_t)id >> 1) & 127;
}

/* the slots of the ids entering the window (above last_sid, up to id) start clear */
static void
rst_window_advance(struct mrd_h2_conn *h, int32_t id)
{
    if ((int64_t)id - h->last_sid >= 2 * 128) {
        h->rst_sent[0] = h->rst_sent[1] = 0;
        return;
    }
    for (int32_t k = h->last_sid + 2; k <= id; k += 2)
        h->rst_sent[rst_slot(k) >> 6] &= ~(1ULL << (rst_slot(k) & 63));
}

static void
rst_mark(struct mrd_h2_conn *h, int32_t id)
{
    if ((id & 1) && id <= h->last_sid && h->last_sid - id < 2 * 128)
        h->rst_sent[rst_slot(id) >> 6] |= 1ULL << (rst_slot(id) & 63);
}

/* a client stream that was open and is closed now, not by our RST_STREAM:
 * frames other than PRIORITY, WINDOW_UPDATE and RST_STREAM on it are a
 * STREAM_CLOSED error (RFC 9113 5.1). Beyond the window we cannot tell,
 * and let nghttp2 ignore the frame. */
static int
closed_not_by_us(struct mrd_h2_conn *h, int32_t id)
{
    if (!(id & 1) || id > h->last_sid || h->last_sid - id >= 2 * 128 ||
        nghttp2_session_find_stream(h->ng, id) != NULL)
        return 0;
    if (in_gap(h, id))
        return 0; /* never opened: skipped_id's case */
    return !(h->rst_sent[rst_slot(id) >> 6] & (1ULL << (rst_slot(id) & 63)));
}

static int
on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *arg)
{
    struct h2s *st;

    if (frame->hd.type == NGHTTP2_RST_STREAM)
        rst_mark(arg, frame->hd.stream_id);
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

/* RFC 9113 5.1.1: a new stream's id is above every earlier one. nghttp2
 * ignores HEADERS on a lower id it never saw; that is a PROTOCOL_ERROR.
 * Returns 1 for such an id (an id skipped earlier). */
static int
skipped_id(struct mrd_h2_conn *h, int32_t id)
{
    if (!(id & 1))
        return 0; /* nghttp2 rejects even ids itself */
    if (id > h->last_sid) {
        rst_window_advance(h, id);
        if (id > h->last_sid + 2) {
            if (h->n_gaps == MRD_ARRAY_LEN(h->gaps)) {
                memmove(h->gaps[0], h->gaps[1], sizeof(h->gaps) - sizeof(h->gaps[0]));
                h->n_gaps--;
            }
            h->gaps[h->n_gaps][0] = h->last_sid + 2;
            h->gaps[h->n_gaps][1] = id - 2;
            h->n_gaps++;
        }
        h->last_sid = id;
        return 0;
    }
    return in_gap(h, id) && nghttp2_session_find_stream(h->ng, id) == NULL;
}

/* frames that cost us work but make no progress: bounded per second */
static int
on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *arg)
{
    struct mrd_h2_conn *h = arg;
    int cheap;

    switch (hd->type) {
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PRIORITY:
        cheap = 1;
        break;
    case NGHTTP2_DATA:
        cheap = hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM);
        break;
    case NGHTTP2_HEADERS:
        if (skipped_id(h, hd->stream_id)) {
            h->cb_error = NGHTTP2_PROTOCOL_ERROR;
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        cheap = 0;
        break;
    case NGHTTP2_CONTINUATION:
    case NGHTTP2_RST_STREAM:
    case NGHTTP2_WINDOW_UPDATE:
    case NGHTTP2_GOAWAY:
    case NGHTTP2_PUSH_PROMISE:
        cheap = 0;
        break;
    default:
        cheap = 1; /* unknown types are ignored, but still read */
        break;
    }
    if (!cheap)
        return 0;
    uint32_t now = (uint32_t)mrd_now_ms();
    if ((uint32_t)(now - h->cheap_window_ms) >= 1000) {
        h->cheap_window_ms = now;
        h->cheap_frames = 0;
    }
    if (++h->cheap_frames > CHEAP_FRAMES_PER_S) {
        mrd_log(MRD_LOG_INFO, "%s: h2 control frame flood", h->client_ip);
        h->cb_error = NGHTTP2_ENHANCE_YOUR_CALM;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
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
        nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, on_begin_frame);
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

static int32_t
hd_stream_id(const uint8_t *hd)
{
    return (int32_t)(((uint32_t)(hd[5] & 0x7f) << 24) | ((uint32_t)hd[6] << 16) | ((uint32_t)hd[7] << 8) | hd[8]);
}

/* does the frame with this header need closed_not_by_us()? (a DATA or
 * HEADERS on a stream that was opened before, perhaps earlier in this
 * very input, which nghttp2 has not read yet) */
static int
scan_wants_check(const struct mrd_h2_conn *h, const uint8_t *hd)
{
    int32_t id = hd_stream_id(hd);

    return (hd[3] == NGHTTP2_DATA || hd[3] == NGHTTP2_HEADERS) && (id & 1) &&
           (id <= h->last_sid || id <= h->scan_max_sid);
}

/*
 * How many of the n bytes at p to give nghttp2 now: up to the next frame
 * whose stream must be checked, so that the check sees the state the frames
 * before it left; and never part of a frame header: an incomplete one at the
 * end stays in the input until the rest arrives (0: nothing to give yet).
 * nghttp2 1.52.0-1+deb12u3 (fixed upstream in 1.70.0) counts a CONTINUATION
 * against max_continuations once per mem_recv call that reads part of its
 * frame header, so a header split across reads would count two to nine
 * times and a legitimate client could be cut off; whole headers count once.
 * *bad: that frame is on a stream closed not by us (a connection error
 * STREAM_CLOSED, RFC 9113 5.1).
 */
static size_t
scan_input(struct mrd_h2_conn *h, const uint8_t *p, size_t n, int *bad)
{
    size_t i = 0;

    *bad = 0;
    while (i < n) {
        if (h->scan_skip > 0) {
            size_t k = MRD_MIN(h->scan_skip, n - i);
            h->scan_skip -= (uint32_t)k;
            i += k;
            continue;
        }
        if (n - i < 9)
            break; /* a partial frame header: with the rest, later */
        const uint8_t *hd = p + i;
        if (scan_wants_check(h, hd)) {
            if (i > 0)
                return i; /* let nghttp2 take what comes before first */
            if (closed_not_by_us(h, hd_stream_id(hd))) {
                *bad = 1;
                return 0;
            }
        }
        if (hd[3] == NGHTTP2_HEADERS && hd_stream_id(hd) > h->scan_max_sid)
            h->scan_max_sid = hd_stream_id(hd);
        h->scan_skip = ((uint32_t)hd[0] << 16) | ((uint32_t)hd[1] << 8) | hd[2];
        i += 9;
    }
    return i;
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
        n = scan_input(h, p, n, &bad);
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
        trim(h);
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
    h->w->n_conns--;
    atomic_fetch_sub(&mrd_connections_active, 1);
    mrd_stream_free(h->s);
    mrd_gen_release(h->gen);
    free(h);
}

/* ---- public entry points ---- */

struct mrd_h2_conn *
mrd_h2_start(struct mrd_worker *w, struct mrd_stream *s, struct mrd_gen *gen, const struct mrd_ip *peer,
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
    h->peer = *peer;
    mrd_ip_format(&h->peer, h->client_ip, sizeof(h->client_ip));
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
    nghttp2_mem mem = {h, ng_malloc, ng_free, ng_calloc, ng_realloc};
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
    w->n_conns++;
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
