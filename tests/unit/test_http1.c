/*
 * test_http1.c: table-driven tests of the HTTP/1 head parsers and the chunked
 * decoder. Every input is also fed split at every byte boundary (each piece in
 * an exact-size heap copy, so ASan sees reads past the bytes given) and must
 * give the one-shot result. No sockets; the parser is pure.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meridian/http1.h"

#define S(lit) lit, sizeof(lit) - 1
#define NOPOS ((long)-1)

#define CHECK(cond, name)                                                                                      \
    do {                                                                                                       \
        if (!(cond))                                                                                           \
            fail_msg("case \"%s\": check failed: %s (line %d)", (name), #cond, __LINE__);                    \
    } while (0)

/* ---- harness: parse one message in one shot, split in two, and byte by byte ---- */

struct parse_env {
    int response;
    const char *req_method; /* responses */
};

static int
parse(const struct parse_env *env, const char *buf, size_t len, size_t last_len, struct mrd_h1_msg *m, size_t *ep)
{
    if (env->response)
        return mrd_h1_parse_response(buf, len, last_len, env->req_method,
                                     env->req_method ? strlen(env->req_method) : 0, m, ep);
    return mrd_h1_parse_request(buf, len, last_len, m, ep);
}

static char *
dup_exact(const char *in, size_t len)
{
    char *p = malloc(len ? len : 1);
    assert_non_null(p);
    memcpy(p, in, len);
    return p;
}

static long
off(const char *p, const char *base)
{
    return p == NULL ? -1 : (long)(p - base);
}

/* every pointer the parser returned lies in buf[0..head) */
static void
check_bounds(const struct mrd_h1_msg *m, const char *buf, int head, const char *name)
{
    const char *end = buf + head;
    if (m->method)
        CHECK(m->method >= buf && m->method + m->method_len <= end, name);
    if (m->target)
        CHECK(m->target >= buf && m->target + m->target_len <= end, name);
    if (m->reason)
        CHECK(m->reason >= buf && m->reason + m->reason_len <= end, name);
    for (size_t i = 0; i < m->num_headers; i++) {
        const struct mrd_h1_header *h = &m->headers[i];
        CHECK(h->name >= buf && h->name + h->name_len <= end, name);
        CHECK(h->value >= buf && h->value + h->value_len <= end, name);
    }
}

/* same message, compared by offsets into their own buffers */
static void
check_same(const struct mrd_h1_msg *a, const char *abuf, const struct mrd_h1_msg *b, const char *bbuf,
           const char *name)
{
    CHECK(off(a->method, abuf) == off(b->method, bbuf) && a->method_len == b->method_len, name);
    CHECK(off(a->target, abuf) == off(b->target, bbuf) && a->target_len == b->target_len, name);
    CHECK(off(a->reason, abuf) == off(b->reason, bbuf) && a->reason_len == b->reason_len, name);
    CHECK(a->status == b->status && a->version_minor == b->version_minor, name);
    CHECK(a->body == b->body && a->content_length == b->content_length && a->flags == b->flags, name);
    CHECK(a->num_headers == b->num_headers, name);
    for (size_t i = 0; i < a->num_headers; i++) {
        CHECK(off(a->headers[i].name, abuf) == off(b->headers[i].name, bbuf), name);
        CHECK(a->headers[i].name_len == b->headers[i].name_len, name);
        CHECK(off(a->headers[i].value, abuf) == off(b->headers[i].value, bbuf), name);
        CHECK(a->headers[i].value_len == b->headers[i].value_len, name);
    }
}

/*
 * Parse in one shot, then split at every k (prefix alone, then all with
 * last_len = k), then byte by byte with last_len the previous length. A prefix
 * returns 0 unless the one-shot result is already decided by it; the final
 * result, error position and message equal the one-shot ones.
 */
static int
parse_all_ways(const struct parse_env *env, const char *in, size_t len, struct mrd_h1_msg *m0, size_t *ep0,
               const char *name)
{
    static struct mrd_h1_msg m1;
    char *full = dup_exact(in, len);
    size_t ep = 0;

    *ep0 = 0;
    int r0 = parse(env, full, len, 0, m0, ep0);
    if (r0 > 0) {
        CHECK((size_t)r0 <= len, name);
        check_bounds(m0, full, r0, name);
    }

    for (size_t k = 0; k < len; k++) {
        char *pre = dup_exact(in, k);
        int r = parse(env, pre, k, 0, &m1, &ep);
        if (r > 0)
            CHECK(r == r0 && (size_t)r <= k, name);
        else if (r < 0)
            CHECK(r == r0 && ep == *ep0, name);
        free(pre);
        if (r != 0)
            continue;
        r = parse(env, full, len, k, &m1, &ep);
        CHECK(r == r0, name);
        if (r < 0)
            CHECK(ep == *ep0, name);
        if (r > 0)
            check_same(m0, full, &m1, full, name);
    }

    /* byte by byte: stops at the first non-zero answer */
    size_t last = 0;
    int r = 0;
    for (size_t k = 1; k <= len && r == 0; k++) {
        char *pre = dup_exact(in, k);
        r = parse(env, pre, k, last, &m1, &ep);
        if (r > 0) {
            CHECK((size_t)r == k, name); /* reported as soon as the empty line is in */
            check_bounds(&m1, pre, r, name);
            check_same(m0, full, &m1, pre, name);
        }
        free(pre);
        last = k;
    }
    CHECK(r == r0, name);
    if (r < 0)
        CHECK(ep == *ep0, name);
    free(full);

    /* leave m0 pointing into the caller's bytes */
    CHECK(parse(env, in, len, 0, m0, &ep) == r0, name);
    return r0;
}

/* ---- requests ---- */

struct req_ok {
    const char *in;
    size_t len;
    size_t head_len; /* 0: all of in */
    const char *method;
    const char *target;
    int minor;
    enum mrd_h1_body body;
    uint64_t cl;
    unsigned flags;
    size_t nh;
    const char *h0_value; /* expected value of the first header, or NULL */
};

#define HH MRD_H1_F_HAS_HOST

static const struct req_ok req_ok_cases[] = {
    {S("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0, "GET", "/", 1, MRD_H1_BODY_NONE, 0, HH, 1, "a"},
    {S("GET /x?y=1 HTTP/1.0\r\n\r\n"), 0, "GET", "/x?y=1", 0, MRD_H1_BODY_NONE, 0, MRD_H1_F_CONN_CLOSE, 0, NULL},
    {S("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), 0, "GET", "/", 0, MRD_H1_BODY_NONE, 0,
     MRD_H1_F_CONN_KEEPALIVE, 1, "Keep-Alive"},
    {S("GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n"), 0, "GET", "/", 0, MRD_H1_BODY_NONE,
     0, HH | MRD_H1_F_CONN_KEEPALIVE | MRD_H1_F_CONN_CLOSE, 2, "a"},
    {S("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"), 48, "POST", "/p", 1, MRD_H1_BODY_LENGTH,
     5, HH, 2, "h"},
    {S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"), 0, "POST", "/", 1, MRD_H1_BODY_LENGTH, 0, HH,
     2, "h"},
    {S("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length:5\r\n\r\n"), 0, "PUT", "/", 1,
     MRD_H1_BODY_LENGTH, 5, HH, 3, "h"},
    {S("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n"), 0, "PUT", "/", 1, MRD_H1_BODY_LENGTH, 5, HH,
     2, "h"},
    {S("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 0005\r\n\r\n"), 0, "PUT", "/", 1, MRD_H1_BODY_LENGTH, 5, HH,
     2, "h"},
    {S("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775807\r\n\r\n"), 0, "PUT", "/", 1,
     MRD_H1_BODY_LENGTH, UINT64_C(9223372036854775807), HH, 2, "h"},
    {S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"), 0, "POST", "/", 1,
     MRD_H1_BODY_CHUNKED, 0, HH, 2, "h"},
    {S("POST / HTTP/1.1\r\nTransfer-Encoding:  Chunked \r\nHost: h\r\n\r\n"), 0, "POST", "/", 1,
     MRD_H1_BODY_CHUNKED, 0, HH, 2, "Chunked"},
    {S("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"), 0, "GET", "/", 1, MRD_H1_BODY_NONE, 0,
     HH | MRD_H1_F_CONN_CLOSE, 2, "h"},
    {S("GET /chat HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n"), 0, "GET",
     "/chat", 1, MRD_H1_BODY_NONE, 0, HH | MRD_H1_F_CONN_KEEPALIVE | MRD_H1_F_CONN_UPGRADE | MRD_H1_F_UPGRADE, 3,
     "h"},
    {S("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo\r\nConnection: ,CLOSE,\r\n\r\n"), 0, "GET", "/", 1,
     MRD_H1_BODY_NONE, 0, HH | MRD_H1_F_CONN_CLOSE, 3, "h"},
    {S("PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n"), 0, "PUT", "/u", 1,
     MRD_H1_BODY_LENGTH, 1, HH | MRD_H1_F_EXPECT_CONTINUE, 3, "h"},
    {S("PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue-x\r\n\r\n"), 0, "PUT", "/u", 1, MRD_H1_BODY_NONE, 0, HH,
     2, "h"},
    {S("GET / HTTP/1.1\r\nHost: \t a b \t \r\n\r\n"), 0, "GET", "/", 1, MRD_H1_BODY_NONE, 0, HH, 1, "a b"},
    {S("GET / HTTP/1.1\r\nX-Empty:\r\nHost: h\r\n\r\n"), 0, "GET", "/", 1, MRD_H1_BODY_NONE, 0, HH, 2, ""},
    {S("GET / HTTP/1.1\r\nX-Ws:   \r\nHost: h\r\n\r\n"), 0, "GET", "/", 1, MRD_H1_BODY_NONE, 0, HH, 2, ""},
    {S("GET / HTTP/1.1\r\nX: \x80\xff caf\xc3\xa9\r\nHost: h\r\n\r\n"), 0, "GET", "/", 1, MRD_H1_BODY_NONE, 0, HH,
     2, "\x80\xff caf\xc3\xa9"},
    {S("GET / HTTP/1.1\r\nX: a\tb\"c\r\nHost: h\r\n\r\n"), 0, "GET", "/", 1, MRD_H1_BODY_NONE, 0, HH, 2,
     "a\tb\"c"},
    {S("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n\r\n"), 0, "M-SEARCH", "*", 1, MRD_H1_BODY_NONE, 0,
     HH, 1, "239.255.255.250:1900"},
    {S("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"), 0, "CONNECT", "example.com:443", 1,
     MRD_H1_BODY_NONE, 0, HH, 1, "example.com:443"},
    {S("GET /a%20b~!$&'()*+,;=:@[]{}|^`\\ HTTP/1.1\r\nHost: h\r\n\r\n"), 0, "GET", "/a%20b~!$&'()*+,;=:@[]{}|^`\\",
     1, MRD_H1_BODY_NONE, 0, HH, 1, "h"},
    {S("GET / HTTP/1.1\r\n!#$%&'*+-.^_`|~09azAZ: v\r\nHost: h\r\n\r\n"), 0, "GET", "/", 1, MRD_H1_BODY_NONE, 0, HH,
     2, "v"},
    {S("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"), 27, "GET", "/", 1,
     MRD_H1_BODY_NONE, 0, HH, 1, "a"},
    {S("!#$%&'*+-.^_`|~ / HTTP/1.1\r\nHost: a\r\n\r\n"), 0, "!#$%&'*+-.^_`|~", "/", 1, MRD_H1_BODY_NONE, 0, HH, 1,
     "a"},
    {S("GET http://a/b HTTP/1.1\r\nHost: a\r\nHost-X: b\r\nXHost: c\r\n\r\n"), 0, "GET", "http://a/b", 1,
     MRD_H1_BODY_NONE, 0, HH, 3, "a"},
    {S("DELETE /r HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n"), 0, "DELETE", "/r", 1, MRD_H1_BODY_NONE, 0,
     HH | MRD_H1_F_UPGRADE, 2, "a"},
};

static void
test_request_valid(void **state)
{
    static struct mrd_h1_msg m;
    const struct parse_env env = {0, NULL};

    for (size_t i = 0; i < sizeof(req_ok_cases) / sizeof(req_ok_cases[0]); i++) {
        const struct req_ok *c = &req_ok_cases[i];
        size_t ep;
        int r = parse_all_ways(&env, c->in, c->len, &m, &ep, c->in);
        const char *name = c->in;
        CHECK(r == (int)(c->head_len ? c->head_len : c->len), name);
        CHECK(m.method_len == strlen(c->method) && memcmp(m.method, c->method, m.method_len) == 0, name);
        CHECK(m.target_len == strlen(c->target) && memcmp(m.target, c->target, m.target_len) == 0, name);
        CHECK(m.version_minor == c->minor, name);
        CHECK(m.body == c->body, name);
        if (c->body == MRD_H1_BODY_LENGTH)
            CHECK(m.content_length == c->cl, name);
        CHECK(m.flags == c->flags, name);
        CHECK(m.num_headers == c->nh, name);
        if (c->h0_value)
            CHECK(m.headers[0].value_len == strlen(c->h0_value) &&
                      memcmp(m.headers[0].value, c->h0_value, m.headers[0].value_len) == 0,
                  name);
    }
}

struct bad {
    const char *in;
    size_t len;
    int err;
    long pos; /* NOPOS: not checked */
};

static const struct bad req_bad_cases[] = {
    /* request line */
    {S("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_METHOD, 0},
    {S("\r\n\r\n"), MRD_H1_ERR_METHOD, 0},
    {S(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_METHOD, 0},
    {S("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_METHOD, 1},
    {S("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_METHOD, 3},
    {S("G\xc3\x89T / HTTP/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_METHOD, 1},
    {S("GET\r\n\r\n"), MRD_H1_ERR_REQUEST_LINE, 3},
    {S("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_TARGET, 4},
    {S("GET \r\n\r\n"), MRD_H1_ERR_TARGET, 4},
    {S("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_TARGET, 6},
    {S("GET /a\x80 HTTP/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_TARGET, 6},
    {S("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_TARGET, 6},
    {S("GET /\tb HTTP/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_TARGET, 5},
    {S("GET /a\x00 HTTP/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_TARGET, 6},
    {S("GET /\r\n\r\n"), MRD_H1_ERR_REQUEST_LINE, 5},
    /* a well-formed HTTP-version we do not serve: 505 (SPEC 12), not 400 */
    {S("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION_UNSUPPORTED, 6},
    {S("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION_UNSUPPORTED, 6},
    {S("GET / HTTP/9.9\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION_UNSUPPORTED, 6},
    {S("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION_UNSUPPORTED, 6},
    {S("GET / HTTP/3.0\r\n\r\n"), MRD_H1_ERR_VERSION_UNSUPPORTED, 6},
    {S("GET / HTTP/1.9\r\n\r\n"), MRD_H1_ERR_VERSION_UNSUPPORTED, 6},
    {S("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), MRD_H1_ERR_VERSION_UNSUPPORTED, 6},
    {S("OPTIONS * HTTP/2.0\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION_UNSUPPORTED, 10},
    /* the version line must still be well-formed after it, else 400 */
    {S("GET / HTTP/2.0 \r\nHost: a\r\n\r\n"), MRD_H1_ERR_REQUEST_LINE, 14},
    {S("GET / HTTP/2.0 x\r\nHost: a\r\n\r\n"), MRD_H1_ERR_REQUEST_LINE, 14},
    {S("GET / HTTP/2.0\nHost: a\n\n"), MRD_H1_ERR_BARE_LF, 14},
    {S("GET / HTTP/2.0\rX\r\n\r\n"), MRD_H1_ERR_BARE_CR, 14},
    /* not an HTTP-version at all: 400 */
    {S("GET / HTTP/2\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 6},
    {S("GET / HTTP/20\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 6},
    {S("GET / HTTP/10.0\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 6},
    {S("GET / HTTP/1.1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 6},
    {S("GET / HTTP/a.b\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 6},
    {S("GET / HTTP/1,1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 6},
    {S("GET / HTTP/.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 6},
    {S("GET / HTTPS/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 6},
    {S("GET / Http/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 6},
    {S("GET / HTTP/2.0x\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 6},
    {S("GET / http/2.0\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 6},
    {S("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 7},
    {S("INVALID CONNECTION PREFACE\r\n\r\n"), MRD_H1_ERR_VERSION, 19},
    {S("GET / http/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 6},
    {S("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 6},
    {S("GET / HTTP/1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 6},
    {S("GET / \r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 6},
    {S("GET / HTTP/1.1x\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 6},
    {S("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), MRD_H1_ERR_REQUEST_LINE, 14},
    {S("GET / HTTP/1.1 x\r\nHost: a\r\n\r\n"), MRD_H1_ERR_REQUEST_LINE, 14},
    {S("GET / / HTTP/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_VERSION, 6},
    /* line endings */
    {S("GET / HTTP/1.1\nHost: a\n\n"), MRD_H1_ERR_BARE_LF, 14},
    {S("GET / HTTP/1.1\nHost: a"), MRD_H1_ERR_BARE_LF, 14},
    {S("\n"), MRD_H1_ERR_BARE_LF, 0},
    {S("GET / HTTP/1.1\r\nHost: a\n\r\n"), MRD_H1_ERR_BARE_LF, 23},
    {S("GET / HTTP/1.1\r\nHost: a\r\n\n"), MRD_H1_ERR_BARE_LF, 25},
    {S("GET / HTTP/1.1\r\nHost: a\r\nX: 1\nY: 2\r\n\r\n"), MRD_H1_ERR_BARE_LF, 29},
    {S("GET / HTTP/1.1\r\nHost\n: a\r\n\r\n"), MRD_H1_ERR_BARE_LF, 20},
    {S("GE\nT / HTTP/1.1\r\n\r\n"), MRD_H1_ERR_BARE_LF, 2},
    {S("GET /\n HTTP/1.1\r\n\r\n"), MRD_H1_ERR_BARE_LF, 5},
    {S("G(T / HTTP/1.1\nHost: a\n\n"), MRD_H1_ERR_METHOD, 1}, /* earlier error wins over the bare LF */
    {S("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), MRD_H1_ERR_BARE_CR, 23},
    {S("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n"), MRD_H1_ERR_BARE_CR, 23},
    {S("GET / HTTP/1.1\r\nHo\rst: a\r\n\r\n"), MRD_H1_ERR_BARE_CR, 18},
    {S("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_BARE_CR, 5},
    {S("GET / HTTP/1.1\rHost: a\r\n\r\n"), MRD_H1_ERR_BARE_CR, 14},
    {S("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n\r\n"), MRD_H1_ERR_BARE_CR, 25},
    {S("GET\r / HTTP/1.1\r\nHost: a\r\n\r\n"), MRD_H1_ERR_BARE_CR, 3},
    /* field names */
    {S("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), MRD_H1_ERR_HEADER_NAME, 20},
    {S("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), MRD_H1_ERR_HEADER_NAME, 20},
    {S("GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n"), MRD_H1_ERR_HEADER_NAME, 16},
    {S("GET / HTTP/1.1\r\nHo(st: a\r\n\r\n"), MRD_H1_ERR_HEADER_NAME, 18},
    {S("GET / HTTP/1.1\r\nHost\r\n\r\n"), MRD_H1_ERR_HEADER_NAME, 20},
    {S("GET / HTTP/1.1\r\nHost: a\r\nX\x00Y: b\r\n\r\n"), MRD_H1_ERR_HEADER_NAME, 26},
    {S("GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: b\r\n\r\n"), MRD_H1_ERR_HEADER_NAME, 26},
    /* field values */
    {S("GET / HTTP/1.1\r\nHost: a\r\nX: a\x00" "b\r\n\r\n"), MRD_H1_ERR_HEADER_VALUE, 29},
    {S("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f" "b\r\n\r\n"), MRD_H1_ERR_HEADER_VALUE, 29},
    {S("GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n"), MRD_H1_ERR_HEADER_VALUE, 28},
    {S("GET / HTTP/1.1\r\nHost: a\r\nX: a\x0b" "b\r\n\r\n"), MRD_H1_ERR_HEADER_VALUE, 29},
    {S("GET / HTTP/1.1\r\nHost: a\r\nX: a\x1b" "b\r\n\r\n"), MRD_H1_ERR_HEADER_VALUE, 29},
    /* obs-fold */
    {S("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"), MRD_H1_ERR_OBS_FOLD, 31},
    {S("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n"), MRD_H1_ERR_OBS_FOLD, 31},
    {S("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), MRD_H1_ERR_OBS_FOLD, 16},
    {S("GET / HTTP/1.1\r\nHost: a\r\n \r\n\r\n"), MRD_H1_ERR_OBS_FOLD, 25},
    /* framing */
    {S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), MRD_H1_ERR_CL_TE,
     45},
    {S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), MRD_H1_ERR_CL_TE,
     54},
    {S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: x\r\n\r\n"), MRD_H1_ERR_CL_TE,
     NOPOS},
    {S("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), MRD_H1_ERR_CL_TE, NOPOS},
    {S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n"), MRD_H1_ERR_CONTENT_LENGTH, 26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"), MRD_H1_ERR_CONTENT_LENGTH, 26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"), MRD_H1_ERR_CONTENT_LENGTH, 26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n"), MRD_H1_ERR_CONTENT_LENGTH, 26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n"), MRD_H1_ERR_CONTENT_LENGTH, 26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n"), MRD_H1_ERR_CONTENT_LENGTH, 26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n"), MRD_H1_ERR_CONTENT_LENGTH, 26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n"), MRD_H1_ERR_CONTENT_LENGTH, 26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
     MRD_H1_ERR_CONTENT_LENGTH, 45},
    {S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n"), MRD_H1_ERR_CONTENT_LENGTH,
     26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
     MRD_H1_ERR_CONTENT_LENGTH, 26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), MRD_H1_ERR_TRANSFER_ENCODING,
     26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"), MRD_H1_ERR_TRANSFER_ENCODING, 26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), MRD_H1_ERR_TRANSFER_ENCODING,
     26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), MRD_H1_ERR_TRANSFER_ENCODING,
     26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"),
     MRD_H1_ERR_TRANSFER_ENCODING, 26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
     MRD_H1_ERR_TRANSFER_ENCODING, 26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n"), MRD_H1_ERR_TRANSFER_ENCODING, 26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n"), MRD_H1_ERR_TRANSFER_ENCODING, 26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n"), MRD_H1_ERR_TRANSFER_ENCODING, 26},
    {S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"), MRD_H1_ERR_TRANSFER_ENCODING, 26},
    {S("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), MRD_H1_ERR_TRANSFER_ENCODING, 17},
    /* Host */
    {S("GET / HTTP/1.1\r\n\r\n"), MRD_H1_ERR_HOST, 0},
    {S("GET / HTTP/1.1\r\nX-Host: a\r\n\r\n"), MRD_H1_ERR_HOST, 0},
    {S("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), MRD_H1_ERR_HOST, 25},
    {S("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), MRD_H1_ERR_HOST, 25},
};

static void
run_bad(const struct parse_env *env, const struct bad *cases, size_t n)
{
    static struct mrd_h1_msg m;
    int failed = 0;

    for (size_t i = 0; i < n; i++) {
        const struct bad *c = &cases[i];
        size_t ep;
        char name[64];
        snprintf(name, sizeof(name), "#%zu %.40s", i, c->in);
        int r = parse_all_ways(env, c->in, c->len, &m, &ep, name);
        if (r != c->err || (c->pos != NOPOS && (long)ep != c->pos)) {
            print_error("case %s: got %d (%s) at %zu, want %d at %ld\n", name, r, mrd_h1_strerror(r), ep, c->err,
                        c->pos);
            failed++;
        }
    }
    assert_int_equal(failed, 0);
}

static void
test_request_invalid(void **state)
{
    const struct parse_env env = {0, NULL};
    run_bad(&env, req_bad_cases, sizeof(req_bad_cases) / sizeof(req_bad_cases[0]));
}

static size_t
build_many_headers(char *buf, size_t cap, unsigned n)
{
    size_t len = (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (unsigned i = 1; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "X-%u: %u\r\n", i, i);
    len += (size_t)snprintf(buf + len, cap - len, "\r\n");
    return len;
}

static void
test_request_header_limit(void **state)
{
    static char buf[8192];
    static struct mrd_h1_msg m;
    const struct parse_env env = {0, NULL};
    size_t ep;

    size_t len = build_many_headers(buf, sizeof(buf), MRD_H1_MAX_HEADERS);
    assert_int_equal(parse_all_ways(&env, buf, len, &m, &ep, "100 headers"), (int)len);
    assert_int_equal(m.num_headers, MRD_H1_MAX_HEADERS);
    assert_int_equal(m.headers[99].value_len, 2);
    assert_memory_equal(m.headers[99].value, "99", 2);

    len = build_many_headers(buf, sizeof(buf), MRD_H1_MAX_HEADERS + 1);
    assert_int_equal(parse_all_ways(&env, buf, len, &m, &ep, "101 headers"), MRD_H1_ERR_TOO_MANY_HEADERS);
    assert_int_equal(ep, len - 2 - strlen("X-100: 100\r\n"));
}

static void
test_request_incomplete(void **state)
{
    static struct mrd_h1_msg m;
    static const char *const partial[] = {
        "", "G", "GET / HTTP/1.1", "GET / HTTP/1.1\r", "GET / HTTP/1.1\r\n", "GET / HTTP/1.1\r\nHost: a\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\r", "GET / HTTP/1.1\r\nHost: a\r\nX: \x01", "G(T / HTTP/1.1\r\n",
    };
    for (size_t i = 0; i < sizeof(partial) / sizeof(partial[0]); i++)
        assert_int_equal(mrd_h1_parse_request(partial[i], strlen(partial[i]), 0, &m, NULL), 0);
    /* err_pos may be NULL on errors too */
    assert_int_equal(mrd_h1_parse_request(S("GET / HTTP/9.9\r\n\r\n"), 0, &m, NULL), MRD_H1_ERR_VERSION_UNSUPPORTED);
    assert_int_equal(mrd_h1_parse_request(S("GET / HTTP/9\r\n\r\n"), 0, &m, NULL), MRD_H1_ERR_VERSION);
    /* an unsupported version is only known once the head is complete, like
     * every other error: a prefix of it needs more bytes */
    assert_int_equal(mrd_h1_parse_request(S("GET / HTTP/2.0\r\nHost: a\r\n"), 0, &m, NULL), 0);
    /* a last_len beyond len (caller bug) is ignored rather than trusted */
    assert_int_equal(mrd_h1_parse_request(S("GET / HTTP/1.0\r\n\r\n"), 999, &m, NULL), 18);
}

/* ---- responses ---- */

struct resp_ok {
    const char *in;
    size_t len;
    size_t head_len; /* 0: all of in */
    const char *req_method;
    int status;
    const char *reason;
    int minor;
    enum mrd_h1_body body;
    uint64_t cl;
    unsigned flags;
    size_t nh;
};

static const struct resp_ok resp_ok_cases[] = {
    {S("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"), 38, "GET", 200, "OK", 1, MRD_H1_BODY_LENGTH, 3, 0, 1},
    {S("HTTP/1.1 200\r\n\r\n"), 0, "GET", 200, "", 1, MRD_H1_BODY_CLOSE, 0, 0, 0},
    {S("HTTP/1.1 200 \r\n\r\n"), 0, "GET", 200, "", 1, MRD_H1_BODY_CLOSE, 0, 0, 0},
    {S("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"), 0, "GET", 404, "Not Found", 1, MRD_H1_BODY_LENGTH, 0,
     0, 1},
    {S("HTTP/1.1 200 caf\xc3\xa9\tok \r\nContent-Length: 0\r\n\r\n"), 0, "GET", 200, "caf\xc3\xa9\tok ", 1,
     MRD_H1_BODY_LENGTH, 0, 0, 1},
    {S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 0, "POST", 200, "OK", 1, MRD_H1_BODY_CHUNKED, 0, 0,
     1},
    /* RFC 9112 6.3: no body whatever the framing headers say */
    {S("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"), 0, "HEAD", 200, "OK", 1, MRD_H1_BODY_NONE, 0, 0, 1},
    {S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 0, "HEAD", 200, "OK", 1, MRD_H1_BODY_NONE, 0, 0,
     1},
    {S("HTTP/1.1 404 Not Found\r\n\r\n"), 0, "HEAD", 404, "Not Found", 1, MRD_H1_BODY_NONE, 0, 0, 0},
    {S("HTTP/1.1 204 No Content\r\n\r\n"), 0, "GET", 204, "No Content", 1, MRD_H1_BODY_NONE, 0, 0, 0},
    {S("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"), 0, "GET", 204, "No Content", 1, MRD_H1_BODY_NONE,
     0, 0, 1},
    {S("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"), 0, "GET", 304, "Not Modified", 1,
     MRD_H1_BODY_NONE, 0, 0, 1},
    {S("HTTP/1.1 100 Continue\r\n\r\n"), 0, "POST", 100, "Continue", 1, MRD_H1_BODY_NONE, 0, 0, 0},
    {S("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"), 0, "GET", 101,
     "Switching Protocols", 1, MRD_H1_BODY_NONE, 0, MRD_H1_F_CONN_UPGRADE | MRD_H1_F_UPGRADE, 2},
    {S("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"), 0, "GET", 103, "Early Hints", 1,
     MRD_H1_BODY_NONE, 0, 0, 1},
    {S("HTTP/1.1 200 Connection established\r\n\r\n"), 0, "CONNECT", 200, "Connection established", 1,
     MRD_H1_BODY_NONE, 0, 0, 0},
    {S("HTTP/1.1 299 x\r\nContent-Length: 5\r\n\r\n"), 0, "CONNECT", 299, "x", 1, MRD_H1_BODY_NONE, 0, 0, 1},
    {S("HTTP/1.1 407 Proxy Auth\r\nContent-Length: 5\r\n\r\n"), 0, "CONNECT", 407, "Proxy Auth", 1,
     MRD_H1_BODY_LENGTH, 5, 0, 1},
    {S("HTTP/1.1 200 OK\r\n\r\n"), 0, "HEADX", 200, "OK", 1, MRD_H1_BODY_CLOSE, 0, 0, 0},
    {S("HTTP/1.1 200 OK\r\n\r\n"), 0, NULL, 200, "OK", 1, MRD_H1_BODY_CLOSE, 0, 0, 0},
    {S("HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody..."), 30, "GET", 200, "OK", 0, MRD_H1_BODY_CLOSE, 0,
     MRD_H1_F_CONN_CLOSE, 1},
    {S("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n"), 0, "GET", 200, "OK", 0,
     MRD_H1_BODY_LENGTH, 2, MRD_H1_F_CONN_KEEPALIVE, 2},
    {S("HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 2, 2\r\nHost: ignored\r\n\r\n"), 0, "GET", 500,
     "Oops", 1, MRD_H1_BODY_LENGTH, 2, MRD_H1_F_CONN_CLOSE, 3},
    {S("HTTP/1.1 999 Whatever\r\n\r\n"), 0, "GET", 999, "Whatever", 1, MRD_H1_BODY_CLOSE, 0, 0, 0},
    {S("HTTP/1.1 200 OK\r\nExpect: 100-continue\r\n\r\n"), 0, "GET", 200, "OK", 1, MRD_H1_BODY_CLOSE, 0, 0, 1},
};

static void
test_response_valid(void **state)
{
    static struct mrd_h1_msg m;

    for (size_t i = 0; i < sizeof(resp_ok_cases) / sizeof(resp_ok_cases[0]); i++) {
        const struct resp_ok *c = &resp_ok_cases[i];
        const struct parse_env env = {1, c->req_method};
        const char *name = c->in;
        size_t ep;
        int r = parse_all_ways(&env, c->in, c->len, &m, &ep, name);
        CHECK(r == (int)(c->head_len ? c->head_len : c->len), name);
        CHECK(m.status == c->status, name);
        CHECK(m.reason_len == strlen(c->reason) && memcmp(m.reason, c->reason, m.reason_len) == 0, name);
        CHECK(m.version_minor == c->minor, name);
        CHECK(m.body == c->body, name);
        if (c->body == MRD_H1_BODY_LENGTH)
            CHECK(m.content_length == c->cl, name);
        CHECK(m.flags == c->flags, name);
        CHECK(m.num_headers == c->nh, name);
        CHECK(m.method == NULL && m.target == NULL, name);
    }
}

static const struct bad resp_bad_cases[] = {
    {S("HTTP/1.1 20 OK\r\n\r\n"), MRD_H1_ERR_STATUS, 9},
    {S("HTTP/1.1 2000 OK\r\n\r\n"), MRD_H1_ERR_STATUS, 12},
    {S("HTTP/1.1 099 Low\r\n\r\n"), MRD_H1_ERR_STATUS, 9},
    {S("HTTP/1.1 abc OK\r\n\r\n"), MRD_H1_ERR_STATUS, 9},
    {S("HTTP/1.1 20x OK\r\n\r\n"), MRD_H1_ERR_STATUS, 9},
    {S("HTTP/1.1 200x OK\r\n\r\n"), MRD_H1_ERR_STATUS, 12},
    {S("HTTP/1.1\r\n\r\n"), MRD_H1_ERR_STATUS, 8},
    {S("HTTP/1.1  200 OK\r\n\r\n"), MRD_H1_ERR_STATUS, 9},
    {S("HTTP/1.1 \r\n\r\n"), MRD_H1_ERR_STATUS, 9},
    {S("HTTP/1.1 200\tOK\r\n\r\n"), MRD_H1_ERR_STATUS, 12},
    {S("HTTP/2 200\r\n\r\n"), MRD_H1_ERR_VERSION, 0},
    {S("HTTP/2.0 200 OK\r\n\r\n"), MRD_H1_ERR_VERSION, 0},
    {S("HTTP/1.2 200 OK\r\n\r\n"), MRD_H1_ERR_VERSION, 0},
    {S("http/1.1 200 OK\r\n\r\n"), MRD_H1_ERR_VERSION, 0},
    {S("ICY 200 OK\r\n\r\n"), MRD_H1_ERR_VERSION, 0},
    {S("\r\nHTTP/1.1 200 OK\r\n\r\n"), MRD_H1_ERR_VERSION, 0},
    {S("HTTP/1.1 200 O\x01K\r\n\r\n"), MRD_H1_ERR_REQUEST_LINE, 14},
    {S("HTTP/1.1 200 O\x7fK\r\n\r\n"), MRD_H1_ERR_REQUEST_LINE, 14},
    {S("HTTP/1.1 200 O\rK\r\n\r\n"), MRD_H1_ERR_BARE_CR, 14},
    {S("HTTP/1.1 200 OK\n\n"), MRD_H1_ERR_BARE_LF, 15},
    {S("HTTP/1.1 200 OK\r\nServer: x\n\r\n"), MRD_H1_ERR_BARE_LF, 26},
    {S("HTTP/1.1 200 OK\r\nServer : x\r\n\r\n"), MRD_H1_ERR_HEADER_NAME, 23},
    {S("HTTP/1.1 200 OK\r\nServer: \x00\r\n\r\n"), MRD_H1_ERR_HEADER_VALUE, 25},
    {S("HTTP/1.1 200 OK\r\nServer: x\r\n y\r\n\r\n"), MRD_H1_ERR_OBS_FOLD, 28},
    {S("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), MRD_H1_ERR_CL_TE, 36},
    {S("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"), MRD_H1_ERR_CONTENT_LENGTH, 36},
    {S("HTTP/1.1 200 OK\r\nContent-Length: 3 \t, 4\r\n\r\n"), MRD_H1_ERR_CONTENT_LENGTH, 17},
    {S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), MRD_H1_ERR_TRANSFER_ENCODING, 17},
    {S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), MRD_H1_ERR_TRANSFER_ENCODING, 17},
    {S("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), MRD_H1_ERR_TRANSFER_ENCODING, 17},
    /* framing is checked even when the body is NONE, so a bad upstream is never trusted */
    {S("HTTP/1.1 204 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), MRD_H1_ERR_CL_TE, 36},
};

static void
test_response_invalid(void **state)
{
    const struct parse_env env = {1, "GET"};
    run_bad(&env, resp_bad_cases, sizeof(resp_bad_cases) / sizeof(resp_bad_cases[0]));
}

/* ---- chunked decoder ---- */

/*
 * Decode like a caller would: pieces are the input cut at the given points,
 * each in an exact-size heap copy; data bytes are appended to out. Returns the
 * total consumed when DONE, 0 if input ran out first, or the error.
 */
static long
chunk_decode(const char *in, size_t len, const size_t *cuts, size_t ncuts, size_t max_trailer, char *out,
             size_t *out_len)
{
    struct mrd_h1_chunk c;
    size_t start = 0, total = 0;

    mrd_h1_chunk_init(&c);
    *out_len = 0;
    for (size_t pi = 0; pi <= ncuts; pi++) {
        size_t end = pi < ncuts ? cuts[pi] : len;
        char *piece = dup_exact(in + start, end - start);
        size_t n = end - start, pos = 0;
        for (;;) {
            if (c.state == MRD_H1_CHUNK_DATA && c.remaining > 0) {
                size_t m = n - pos < c.remaining ? n - pos : (size_t)c.remaining;
                memcpy(out + *out_len, piece + pos, m);
                *out_len += m;
                pos += m;
                c.remaining -= m;
                if (pos == n)
                    break;
                continue;
            }
            int r = mrd_h1_chunk_parse(&c, piece + pos, n - pos, max_trailer);
            if (r < 0) {
                free(piece);
                return r;
            }
            assert_true((size_t)r <= n - pos);
            pos += (size_t)r;
            if (c.state == MRD_H1_CHUNK_DONE) {
                free(piece);
                return (long)(total + pos);
            }
            if (c.state == MRD_H1_CHUNK_DATA && c.remaining > 0)
                continue;
            if (c.state == MRD_H1_CHUNK_TRAILER && r > 0 && pos < n)
                continue; /* stopped on entering the trailer section */
            assert_int_equal(pos, n); /* stopped for lack of input only */
            break;
        }
        free(piece);
        total += n;
        start = end;
    }
    return 0;
}

struct chunk_ok {
    const char *in;
    size_t len;
    const char *data;
    size_t consumed; /* 0: all of in */
    size_t max_trailer;
};

static const struct chunk_ok chunk_ok_cases[] = {
    {S("0\r\n\r\n"), "", 0, 0},
    {S("5\r\nhello\r\n0\r\n\r\n"), "hello", 0, 0},
    {S("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "hello world", 0, 0},
    {S("a\r\n0123456789\r\nA\r\nabcdefghij\r\n0\r\n\r\n"), "0123456789abcdefghij", 0, 0},
    {S("0005\r\nhe\r\nl\r\n000\r\n\r\n"), "he\r\nl", 0, 0},
    {S("1\r\n\n\r\n1\r\n\r\r\n0\r\n\r\n"), "\n\r", 0, 0},
    {S("5;foo=bar;baz\r\nhello\r\n0;x=\"q \\\"y\\\" ;\\\\\"\r\n\r\n"), "hello", 0, 0},
    {S("3;a=\"\";b=\"\t\x80\"\r\nabc\r\n0\r\n\r\n"), "abc", 0, 0},
    {S("5\r\nhello\r\n0\r\nX-Sum: abc\r\nY:\r\nZ: \x80\t1\r\n\r\n"), "hello", 0, 1024},
    {S("0\r\nX: y\r\n\r\n"), "", 0, 6},
    {S("0\r\n\r\nGET / HTTP/1.1\r\n"), "", 5, 0},
    {S("2\r\nab\r\n0\r\n\r\n\r\n"), "ab", 12, 0},
    {S("F\r\n0123456789abcde\r\n0\r\n\r\n"), "0123456789abcde", 0, 0},
};

static void
check_chunk_all_ways(const char *in, size_t len, size_t max_trailer, long want, const char *data, size_t data_len,
                     const char *name)
{
    char *out = malloc(len + 1);
    size_t out_len, *cuts = malloc((len + 1) * sizeof(*cuts));
    long r;

    assert_non_null(out);
    assert_non_null(cuts);
    r = chunk_decode(in, len, NULL, 0, max_trailer, out, &out_len);
    if (r != want)
        fail_msg("case %s: one shot got %ld want %ld", name, r, want);
    if (data)
        CHECK(out_len == data_len && memcmp(out, data, data_len) == 0, name);
    for (size_t k = 1; k < len; k++) {
        cuts[0] = k;
        r = chunk_decode(in, len, cuts, 1, max_trailer, out, &out_len);
        if (r != want)
            fail_msg("case %s: split at %zu got %ld want %ld", name, k, r, want);
        if (data)
            CHECK(out_len == data_len && memcmp(out, data, data_len) == 0, name);
    }
    for (size_t k = 1; k < len; k++)
        cuts[k - 1] = k;
    r = chunk_decode(in, len, cuts, len ? len - 1 : 0, max_trailer, out, &out_len);
    if (r != want)
        fail_msg("case %s: byte by byte got %ld want %ld", name, r, want);
    if (data)
        CHECK(out_len == data_len && memcmp(out, data, data_len) == 0, name);
    free(cuts);
    free(out);
}

static void
test_chunk_valid(void **state)
{
    for (size_t i = 0; i < sizeof(chunk_ok_cases) / sizeof(chunk_ok_cases[0]); i++) {
        const struct chunk_ok *c = &chunk_ok_cases[i];
        check_chunk_all_ways(c->in, c->len, c->max_trailer, (long)(c->consumed ? c->consumed : c->len), c->data,
                             strlen(c->data), c->in);
    }
}

struct chunk_bad {
    const char *in;
    size_t len;
    size_t max_trailer;
};

static const struct chunk_bad chunk_bad_cases[] = {
    {S("g\r\n"), 0},
    {S("\r\n"), 0},
    {S(";a\r\n"), 0},
    {S("-1\r\n"), 0},
    {S("0x5\r\nhello\r\n"), 0},
    {S(" 5\r\nhello\r\n"), 0},
    {S("5 \r\nhello\r\n"), 0},
    {S("5\t\r\nhello\r\n"), 0},
    {S("00000000000000001\r\na\r\n"), 0},      /* 17 digits */
    {S("10000000000000000\r\n"), 0},           /* 2^64 */
    {S("8000000000000000\r\n"), 0},            /* 2^63 */
    {S("ffffffffffffffff\r\n"), 0},
    {S("5\nhello\r\n0\r\n\r\n"), 0},           /* bare LF after size */
    {S("5\rhello\r\n0\r\n\r\n"), 0},           /* bare CR after size */
    {S("5\r\nhelloX\r\n0\r\n\r\n"), 0},        /* data longer than the size */
    {S("5\r\nhello\n0\r\n\r\n"), 0},           /* bare LF after data */
    {S("5\r\nhello\rX0\r\n\r\n"), 0},
    {S("5\r\nhello0\r\n\r\n"), 0},             /* missing CRLF after data */
    {S("0\n\n"), 0},
    {S("0\r\n\n"), 0},
    {S("0\r\n\r\r"), 0},
    {S("5;\r\nhello\r\n0\r\n\r\n"), 0},        /* empty extension */
    {S("5;=x\r\nhello\r\n0\r\n\r\n"), 0},
    {S("5;a=\r\nhello\r\n0\r\n\r\n"), 0},
    {S("5;a=b c\r\nhello\r\n0\r\n\r\n"), 0},
    {S("5 ;a\r\nhello\r\n0\r\n\r\n"), 0},
    {S("5;a =b\r\nhello\r\n0\r\n\r\n"), 0},
    {S("5;a=\"x\r\nhello\r\n0\r\n\r\n"), 0},   /* unterminated quoted string */
    {S("5;a=\"x\"y\r\nhello\r\n0\r\n\r\n"), 0},
    {S("5;a=\"x\x01\"\r\nhello\r\n0\r\n\r\n"), 0},
    {S("5;a=b=c\r\nhello\r\n0\r\n\r\n"), 0},
    {S("5;a;\r\nhello\r\n0\r\n\r\n"), 0},
    {S("5;a\nhello\r\n0\r\n\r\n"), 0},
    {S("5;a(\r\nhello\r\n0\r\n\r\n"), 0},
    {S("0\r\nX-Long: 0123456789\r\n\r\n"), 16},  /* oversized trailers */
    {S("0\r\nX: y\r\n\r\n"), 5},
    {S("0\r\nA: b\r\n c\r\n\r\n"), 1024},        /* obs-fold in trailers */
    {S("0\r\nA : b\r\n\r\n"), 1024},
    {S("0\r\n: b\r\n\r\n"), 1024},
    {S("0\r\nA: b\n\r\n"), 1024},
    {S("0\r\nA: b\rc\r\n\r\n"), 1024},
    {S("0\r\nA: \x00\r\n\r\n"), 1024},
    {S("0\r\nA\r\n\r\n"), 1024},
};

static void
test_chunk_invalid(void **state)
{
    char name[64];

    for (size_t i = 0; i < sizeof(chunk_bad_cases) / sizeof(chunk_bad_cases[0]); i++) {
        const struct chunk_bad *c = &chunk_bad_cases[i];
        snprintf(name, sizeof(name), "#%zu %.40s", i, c->in);
        check_chunk_all_ways(c->in, c->len, c->max_trailer, MRD_H1_ERR_CHUNK, NULL, 0, name);
    }
}

static void
test_chunk_limits(void **state)
{
    static char buf[MRD_H1_MAX_CHUNK_EXT + 64];
    struct mrd_h1_chunk c;

    /* 16 digits, the largest size below 2^63 */
    mrd_h1_chunk_init(&c);
    assert_int_equal(mrd_h1_chunk_parse(&c, S("7fffffffffffffff\r\nxyz"), 0), 18);
    assert_int_equal(c.state, MRD_H1_CHUNK_DATA);
    assert_true(c.remaining == UINT64_C(0x7fffffffffffffff));
    mrd_h1_chunk_init(&c);
    assert_int_equal(mrd_h1_chunk_parse(&c, S("000000000000000F\r\n"), 0), 18);
    assert_true(c.remaining == 15);

    /* in DATA with remaining > 0 nothing is consumed; at remaining == 0 the CRLF follows */
    assert_int_equal(mrd_h1_chunk_parse(&c, S("\r\n0\r\n\r\n"), 0), 0);
    c.remaining = 0;
    /* it stops on entering the trailer section: what follows is exactly it */
    assert_int_equal(mrd_h1_chunk_parse(&c, S("\r\n0\r\n\r\nrest"), 0), 5);
    assert_int_equal(c.state, MRD_H1_CHUNK_TRAILER);
    assert_int_equal(mrd_h1_chunk_parse(&c, S("\r\nrest"), 0), 2);
    assert_int_equal(c.state, MRD_H1_CHUNK_DONE);
    mrd_h1_chunk_init(&c);
    assert_int_equal(mrd_h1_chunk_parse(&c, S("0\r\nX-Sum: 1\r\nB: 2\r\n\r\nrest"), 64), 3);
    assert_int_equal(mrd_h1_chunk_parse(&c, S("X-Sum: 1\r\nB: 2\r\n\r\nrest"), 64), 18);
    assert_int_equal(c.state, MRD_H1_CHUNK_DONE);
    assert_int_equal(mrd_h1_chunk_parse(&c, S("more"), 0), 0);

    /* empty input */
    mrd_h1_chunk_init(&c);
    assert_int_equal(mrd_h1_chunk_parse(&c, "", 0, 0), 0);
    assert_int_equal(c.state, MRD_H1_CHUNK_SIZE);

    /* extensions: ';' through CR at most MRD_H1_MAX_CHUNK_EXT bytes */
    size_t n = 0;
    buf[n++] = '1';
    buf[n++] = ';';
    while (n < MRD_H1_MAX_CHUNK_EXT)
        buf[n++] = 'a';
    memcpy(buf + n, "\r\nx\r\n0\r\n\r\n", 10);
    check_chunk_all_ways(buf, n + 10, 0, (long)(n + 10), "x", 1, "ext at the limit");
    memmove(buf + n + 1, buf + n, 10);
    buf[n] = 'a';
    check_chunk_all_ways(buf, n + 11, 0, MRD_H1_ERR_CHUNK, NULL, 0, "ext over the limit");

    /* the trailer limit counts field lines only: 0 still allows the final CRLF */
    check_chunk_all_ways(S("0\r\n\r\n"), 0, 5, "", 0, "no trailers, limit 0");
}

/* ---- helpers ---- */

static void
test_helpers(void **state)
{
    static struct mrd_h1_msg m;
    static const char req[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nconnection: Keep-Alive, "
                              "TE\r\n\r\n";

    assert_int_equal(mrd_h1_parse_request(req, sizeof(req) - 1, 0, &m, NULL), (int)sizeof(req) - 1);
    const struct mrd_h1_header *h = mrd_h1_find(&m, "x-forwarded-for");
    assert_non_null(h);
    assert_int_equal(h->value_len, 7);
    assert_memory_equal(h->value, "1.2.3.4", 7);
    assert_ptr_equal(mrd_h1_find(&m, "HOST"), &m.headers[0]);
    assert_null(mrd_h1_find(&m, "Hos"));
    assert_null(mrd_h1_find(&m, "Hostt"));
    h = mrd_h1_find(&m, "Connection");
    assert_non_null(h);
    assert_true(mrd_h1_list_has(h->value, h->value_len, "te"));
    assert_true(mrd_h1_list_has(h->value, h->value_len, "keep-alive"));
    assert_false(mrd_h1_list_has(h->value, h->value_len, "keep"));
    assert_false(mrd_h1_list_has(h->value, h->value_len, "close"));

    assert_true(mrd_h1_list_has(S(" a ,\tb\t, c"), "B"));
    assert_true(mrd_h1_list_has(S("a,,c"), "c"));
    assert_true(mrd_h1_list_has(S("a,"), "a"));
    assert_false(mrd_h1_list_has(S(""), "a"));
    assert_false(mrd_h1_list_has(S("ab"), "a"));
    assert_false(mrd_h1_list_has(S("a b"), "a"));

    static const char *const idem[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    static const char *const nonidem[] = {"POST", "PATCH", "CONNECT", "get", "GETX", "", "DELET"};
    for (size_t i = 0; i < sizeof(idem) / sizeof(idem[0]); i++)
        assert_true(mrd_h1_method_idempotent(idem[i], strlen(idem[i])));
    for (size_t i = 0; i < sizeof(nonidem) / sizeof(nonidem[0]); i++)
        assert_false(mrd_h1_method_idempotent(nonidem[i], strlen(nonidem[i])));

    assert_string_equal(mrd_h1_strerror(MRD_H1_ERR_NONE), "ok");
    for (int e = MRD_H1_ERR_METHOD; e >= MRD_H1_ERR_VERSION_UNSUPPORTED; e--) {
        const char *s = mrd_h1_strerror(e);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown error");
        for (int f = e + 1; f < 0; f++)
            assert_string_not_equal(s, mrd_h1_strerror(f));
    }
    assert_string_equal(mrd_h1_strerror(MRD_H1_ERR_VERSION_UNSUPPORTED), "unsupported HTTP version");
    assert_string_equal(mrd_h1_strerror(MRD_H1_ERR_VERSION), "invalid HTTP version");
    assert_string_equal(mrd_h1_strerror(-18), "unknown error");
    assert_string_equal(mrd_h1_strerror(1), "unknown error");
    assert_string_equal(mrd_h1_strerror(-1000), "unknown error");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_valid),     cmocka_unit_test(test_request_invalid),
        cmocka_unit_test(test_request_header_limit), cmocka_unit_test(test_request_incomplete),
        cmocka_unit_test(test_response_valid),    cmocka_unit_test(test_response_invalid),
        cmocka_unit_test(test_chunk_valid),       cmocka_unit_test(test_chunk_invalid),
        cmocka_unit_test(test_chunk_limits),      cmocka_unit_test(test_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
