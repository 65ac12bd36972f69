/*
 * h2_resp.c: responses on meridian's HTTP/2 streams (h2.c): the struct
 * mrd_req_ops the proxy answers through (response head as HEADERS, body
 * from the stream's buffer as DATA frames, trailers as a trailing HEADERS,
 * errors as RST_STREAM or a local response), and local responses. These run
 * inside proxy callbacks: they only submit to the session and schedule the
 * connection's deferred event (see h2.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "meridian/common.h"
#include "meridian/h2-int.h"
#include "meridian/headers.h"
#include "meridian/log.h"

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
void
mrd_h2_reject(struct h2s *st, int status, const char *detail)
{
    if (st->req != NULL) {
        mrd_req_free(st->req);
        st->req = NULL;
    }
    st->discard = 1;
    local_response(st, status, detail, NULL);
}

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

void
mrd_h2_r_on_error(struct mrd_req *req, int status, const char *detail, const char *extra)
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

const struct mrd_req_ops mrd_h2_req_ops = {
    .on_head = r_on_head,
    .on_body = r_on_body,
    .on_end = r_on_end,
    .on_error = mrd_h2_r_on_error,
    .pause_body = r_pause_body,
    .out_pending = r_out_pending,
};
