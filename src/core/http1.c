/*
 * http1.c: strict RFC 9112 head parsers (request and response) and the chunked
 * transfer-coding decoder. Pure: no allocation, no I/O, no copies; every pointer
 * handed back points into the caller's buffer. It does not serialize messages,
 * enforce size limits on heads, or decide what gets forwarded (headers.c does).
 */
#include <assert.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "meridian/common.h"
#include "meridian/http1.h"

/* ---- byte classes ---- */

#define C_TCHAR 0x01  /* token character (RFC 9110 5.6.2) */
#define C_VCHAR 0x02  /* visible ASCII 0x21-0x7E: request-target bytes */
#define C_FIELD 0x04  /* field-value / reason-phrase byte: HTAB, SP, VCHAR, obs-text */
#define C_QDTEXT 0x08 /* quoted-string text: field bytes minus '"' and '\\' */

/* LF is in no class: every scan below stops at it, which bounds the loops (see head_extent) */
static const unsigned char cls[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  12, 0,  0,  0,  0,  0,  0,  /* 00 */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 10 */
    12, 15, 6,  15, 15, 15, 15, 15, 14, 14, 15, 15, 14, 15, 15, 14, /* 20 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 14, 14, 14, 14, 14, /* 30 */
    14, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 40 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 6,  14, 15, 15, /* 50 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 60 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 15, 14, 15, 0,  /* 70 */
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, /* 80 */
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, /* 90 */
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, /* a0 */
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, /* b0 */
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, /* c0 */
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, /* d0 */
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, /* e0 */
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, /* f0 */
};

#define IS_WS(c) ((c) == ' ' || (c) == '\t')
#define MAX_LENGTH UINT64_C(0x7fffffffffffffff) /* Content-Length and chunk sizes stay below 2^63 */

static const char *const errstr[] = {
    "ok",
    "invalid method",
    "invalid request target",
    "invalid HTTP version",
    "invalid status code",
    "bare CR",
    "bare LF",
    "invalid header name",
    "invalid header value",
    "obsolete line folding",
    "too many headers",
    "both Content-Length and Transfer-Encoding",
    "invalid Content-Length",
    "unsupported Transfer-Encoding",
    "missing or repeated Host",
    "invalid chunked encoding",
    "malformed request or status line",
    "unsupported HTTP version",
};

const char *
mrd_h1_strerror(int err)
{
    if (err > 0 || (size_t)-err >= MRD_ARRAY_LEN(errstr))
        return "unknown error";
    return errstr[-err];
}

/* ---- head scanning ---- */

/*
 * How many bytes the head parser must look at: just past the first CRLFCRLF,
 * or just past the first LF that lacks its CR (the parse then fails at or
 * before it), or 0 when neither is there yet. Either way buf[result - 1] is LF,
 * which no scan class accepts, so the line parsers need no bounds checks.
 * Every LF before last_len was examined by an earlier call that returned 0.
 */
static size_t
head_extent(const char *buf, size_t len, size_t last_len)
{
    size_t i = last_len <= len ? last_len : 0;

    while (i < len) {
        const char *lf = memchr(buf + i, '\n', len - i);
        if (lf == NULL)
            return 0;
        size_t p = (size_t)(lf - buf);
        if (p == 0 || buf[p - 1] != '\r')
            return p + 1;
        if (p >= 3 && buf[p - 2] == '\n' && buf[p - 3] == '\r')
            return p + 1;
        i = p + 1;
    }
    return 0;
}

/* an unexpected byte at pos: report bare CR/LF as such, anything else as err */
static int
bad_byte(const unsigned char *b, size_t pos, int err, size_t *ep)
{
    if (b[pos] == '\n')
        err = MRD_H1_ERR_BARE_LF;
    else if (b[pos] == '\r' && b[pos + 1] != '\n')
        err = MRD_H1_ERR_BARE_CR;
    *ep = pos;
    return err;
}

static int
is_crlf(const unsigned char *b, size_t pos)
{
    return b[pos] == '\r' && b[pos + 1] == '\n';
}

#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

/* The version token up to SP/CR/LF: the minor version of "HTTP/1.0" or
 * "HTTP/1.1"; -2 for any other well-formed HTTP-version (RFC 9112 2.3:
 * "HTTP/" DIGIT "." DIGIT, case-sensitive, as HTTP/2.0, HTTP/1.2, HTTP/0.9);
 * -1 for anything else (http/1.1, HTTP/1.10, HTTP/1, garbage). */
static int
parse_version(const unsigned char *b, size_t *pos)
{
    size_t s = *pos, p = s;

    while (b[p] != ' ' && b[p] != '\r' && b[p] != '\n')
        p++;
    *pos = p;
    if (p - s != 8 || memcmp(b + s, "HTTP/", 5) != 0 || !IS_DIGIT(b[s + 5]) || b[s + 6] != '.' ||
        !IS_DIGIT(b[s + 7]))
        return -1;
    if (b[s + 5] != '1' || (b[s + 7] != '0' && b[s + 7] != '1'))
        return -2;
    return b[s + 7] - '0';
}

static int
parse_request_line(const unsigned char *b, struct mrd_h1_msg *msg, size_t *ep)
{
    size_t pos = 0;

    while (cls[b[pos]] & C_TCHAR)
        pos++;
    if (pos == 0)
        return bad_byte(b, pos, MRD_H1_ERR_METHOD, ep);
    if (b[pos] != ' ')
        return is_crlf(b, pos) ? (*ep = pos, MRD_H1_ERR_REQUEST_LINE) : bad_byte(b, pos, MRD_H1_ERR_METHOD, ep);
    msg->method = (const char *)b;
    msg->method_len = pos;

    size_t ts = ++pos;
    while (cls[b[pos]] & C_VCHAR)
        pos++;
    if (pos == ts)
        return bad_byte(b, pos, MRD_H1_ERR_TARGET, ep);
    if (b[pos] != ' ')
        return is_crlf(b, pos) ? (*ep = pos, MRD_H1_ERR_REQUEST_LINE) : bad_byte(b, pos, MRD_H1_ERR_TARGET, ep);
    msg->target = (const char *)b + ts;
    msg->target_len = pos - ts;

    size_t vs = ++pos;
    int minor = parse_version(b, &pos);
    if (minor == -1) {
        *ep = vs;
        return MRD_H1_ERR_VERSION;
    }
    if (!is_crlf(b, pos))
        return bad_byte(b, pos, MRD_H1_ERR_REQUEST_LINE, ep);
    if (minor < 0) {
        /* a well-formed line in a version we do not serve (a 505, not a 400) */
        *ep = vs;
        return MRD_H1_ERR_VERSION_UNSUPPORTED;
    }
    msg->version_minor = minor;
    return (int)pos + 2;
}

static int
parse_status_line(const unsigned char *b, struct mrd_h1_msg *msg, size_t *ep)
{
    size_t pos = 0;
    int minor = parse_version(b, &pos);

    if (minor < 0) {
        *ep = 0;
        return MRD_H1_ERR_VERSION;
    }
    if (b[pos] != ' ')
        return bad_byte(b, pos, MRD_H1_ERR_STATUS, ep);
    pos++;
    if (!(b[pos] >= '1' && b[pos] <= '9' && b[pos + 1] >= '0' && b[pos + 1] <= '9' && b[pos + 2] >= '0' &&
          b[pos + 2] <= '9')) {
        *ep = pos;
        return MRD_H1_ERR_STATUS;
    }
    msg->status = (b[pos] - '0') * 100 + (b[pos + 1] - '0') * 10 + (b[pos + 2] - '0');
    pos += 3;
    if (b[pos] == ' ') {
        pos++;
    } else if (!is_crlf(b, pos)) {
        return bad_byte(b, pos, MRD_H1_ERR_STATUS, ep);
    }
    size_t rs = pos;
    while (cls[b[pos]] & C_FIELD)
        pos++;
    if (!is_crlf(b, pos))
        return bad_byte(b, pos, MRD_H1_ERR_REQUEST_LINE, ep);
    msg->reason = (const char *)b + rs;
    msg->reason_len = pos - rs;
    msg->version_minor = minor;
    return (int)pos + 2;
}

/* header lines from pos through the empty line; returns the head length */
static int
parse_fields(const unsigned char *b, size_t pos, struct mrd_h1_msg *msg, size_t *ep)
{
    size_t nh = 0;

    for (;;) {
        size_t ns = pos;
        while (cls[b[pos]] & C_TCHAR)
            pos++;
        if (mrd_unlikely(b[pos] != ':')) {
            if (pos == ns && is_crlf(b, pos)) {
                msg->num_headers = nh;
                return (int)pos + 2;
            }
            if (pos == ns && IS_WS(b[pos])) {
                *ep = pos;
                return MRD_H1_ERR_OBS_FOLD;
            }
            return bad_byte(b, pos, MRD_H1_ERR_HEADER_NAME, ep);
        }
        if (pos == ns) {
            *ep = pos;
            return MRD_H1_ERR_HEADER_NAME;
        }
        if (mrd_unlikely(nh == MRD_H1_MAX_HEADERS)) {
            *ep = ns;
            return MRD_H1_ERR_TOO_MANY_HEADERS;
        }
        struct mrd_h1_header *h = &msg->headers[nh++];
        h->name = (const char *)b + ns;
        h->name_len = pos - ns;
        pos++;
        while (IS_WS(b[pos]))
            pos++;
        size_t vs = pos;
        while (cls[b[pos]] & C_FIELD)
            pos++;
        if (mrd_unlikely(!is_crlf(b, pos)))
            return bad_byte(b, pos, MRD_H1_ERR_HEADER_VALUE, ep);
        size_t ve = pos;
        while (ve > vs && IS_WS(b[ve - 1]))
            ve--;
        h->value = (const char *)b + vs;
        h->value_len = ve - vs;
        pos += 2;
    }
}

/* ---- framing and connection semantics ---- */

/*
 * Case-insensitive match of a field name against a lowercase literal of the
 * same length made of letters and '-'. OR-ing 0x20 is exact here because names
 * are tchar-only, and among tchars only 'A'-'Z' map onto 'a'-'z' or '-'.
 */
static int
name_is(const char *s, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((s[i] | 0x20) != lower[i])
            return 0;
    return 1;
}

/* next comma-separated list element with OWS trimmed; 0 at the end of the list */
static int
list_next(const char *v, size_t len, size_t *pos, const char **el, size_t *el_len)
{
    size_t i = *pos;

    if (i > len)
        return 0;
    size_t s = i;
    while (i < len && v[i] != ',')
        i++;
    size_t e = i;
    while (s < e && IS_WS(v[s]))
        s++;
    while (e > s && IS_WS(v[e - 1]))
        e--;
    *el = v + s;
    *el_len = e - s;
    *pos = i + 1;
    return 1;
}

/* Content-Length value "1*DIGIT" or a list of them; all must equal *cl when *seen */
static int
parse_content_length(const char *v, size_t len, uint64_t *cl, int *seen)
{
    size_t pos = 0, n;
    const char *el;

    while (list_next(v, len, &pos, &el, &n)) {
        if (n == 0)
            return -1;
        uint64_t x = 0;
        for (size_t i = 0; i < n; i++) {
            unsigned d = (unsigned char)el[i] - '0';
            if (d > 9 || x > (MAX_LENGTH - d) / 10)
                return -1;
            x = x * 10 + d;
        }
        if (*seen && x != *cl)
            return -1;
        *cl = x;
        *seen = 1;
    }
    return 0;
}

struct framing {
    uint64_t cl;
    int cl_seen;
    int cl_bad;
    size_t cl_pos;      /* first Content-Length, or the first bad one */
    int te_seen;
    unsigned te_count;  /* list elements over all Transfer-Encoding fields */
    int te_other;       /* an element that is not "chunked" */
    size_t te_pos;
    unsigned hosts;
    size_t host_pos;    /* second Host */
    unsigned flags;
};

static void
scan_fields(const char *buf, const struct mrd_h1_msg *msg, int is_request, struct framing *f)
{
    for (size_t i = 0; i < msg->num_headers; i++) {
        const struct mrd_h1_header *h = &msg->headers[i];
        size_t pos = 0, n;
        const char *el;

        switch (h->name_len) {
        case 4:
            if (name_is(h->name, "host", 4)) {
                if (++f->hosts == 2)
                    f->host_pos = (size_t)(h->name - buf);
                f->flags |= MRD_H1_F_HAS_HOST;
            }
            break;
        case 6:
            if (is_request && name_is(h->name, "expect", 6) && mrd_strieq(h->value, h->value_len, "100-continue"))
                f->flags |= MRD_H1_F_EXPECT_CONTINUE;
            break;
        case 7:
            if (name_is(h->name, "upgrade", 7))
                f->flags |= MRD_H1_F_UPGRADE;
            break;
        case 10:
            if (!name_is(h->name, "connection", 10))
                break;
            while (list_next(h->value, h->value_len, &pos, &el, &n)) {
                if (mrd_strieq(el, n, "close"))
                    f->flags |= MRD_H1_F_CONN_CLOSE;
                else if (mrd_strieq(el, n, "keep-alive"))
                    f->flags |= MRD_H1_F_CONN_KEEPALIVE;
                else if (mrd_strieq(el, n, "upgrade"))
                    f->flags |= MRD_H1_F_CONN_UPGRADE;
            }
            break;
        case 14:
            if (!name_is(h->name, "content-length", 14))
                break;
            if (!f->cl_seen && !f->cl_bad)
                f->cl_pos = (size_t)(h->name - buf);
            if (!f->cl_bad && parse_content_length(h->value, h->value_len, &f->cl, &f->cl_seen) < 0) {
                f->cl_bad = 1;
                f->cl_pos = (size_t)(h->name - buf);
            }
            f->cl_seen = 1;
            break;
        case 17:
            if (!name_is(h->name, "transfer-encoding", 17))
                break;
            if (!f->te_seen)
                f->te_pos = (size_t)(h->name - buf);
            f->te_seen = 1;
            while (list_next(h->value, h->value_len, &pos, &el, &n)) {
                f->te_count++;
                if (!mrd_strieq(el, n, "chunked"))
                    f->te_other = 1;
            }
            break;
        default:
            break;
        }
    }
}

/* framing errors shared by requests and responses; 0 when the framing is sound */
static int
check_framing(const struct framing *f, int version_minor, size_t *ep)
{
    if (f->cl_seen && f->te_seen) {
        *ep = f->cl_pos > f->te_pos ? f->cl_pos : f->te_pos;
        return MRD_H1_ERR_CL_TE;
    }
    if (f->cl_bad) {
        *ep = f->cl_pos;
        return MRD_H1_ERR_CONTENT_LENGTH;
    }
    /* exactly one coding, "chunked"; and none at all in HTTP/1.0 (RFC 9112 6.1) */
    if (f->te_seen && (f->te_count != 1 || f->te_other || version_minor == 0)) {
        *ep = f->te_pos;
        return MRD_H1_ERR_TRANSFER_ENCODING;
    }
    return 0;
}

static unsigned
conn_flags(unsigned flags, int version_minor)
{
    if (version_minor == 0 && !(flags & MRD_H1_F_CONN_KEEPALIVE))
        flags |= MRD_H1_F_CONN_CLOSE;
    return flags;
}

static void
msg_reset(struct mrd_h1_msg *msg)
{
    msg->method = msg->target = msg->reason = NULL;
    msg->method_len = msg->target_len = msg->reason_len = 0;
    msg->status = 0;
    msg->version_minor = 0;
    msg->num_headers = 0;
    msg->body = MRD_H1_BODY_NONE;
    msg->content_length = 0;
    msg->flags = 0;
}

/* ---- public: head parsers ---- */

/* what requests and responses share after their first line: the fields,
 * then the framing headers checked; returns the head length or an error */
static int
parse_rest(const unsigned char *b, size_t n, int start_line, int is_request, struct mrd_h1_msg *msg,
           struct framing *f, size_t *ep)
{
    int r;

    if (start_line < 0)
        return start_line;
    if ((r = parse_fields(b, (size_t)start_line, msg, ep)) < 0)
        return r;
    assert((size_t)r == n);
    scan_fields((const char *)b, msg, is_request, f);
    int e = check_framing(f, msg->version_minor, ep);
    return e < 0 ? e : r;
}

static int
parse_request(const unsigned char *b, size_t n, struct mrd_h1_msg *msg, size_t *ep)
{
    struct framing f = {0};
    int r;

    msg_reset(msg);
    if ((r = parse_rest(b, n, parse_request_line(b, msg, ep), 1, msg, &f, ep)) < 0)
        return r;
    if (f.hosts > 1 || (f.hosts == 0 && msg->version_minor == 1)) {
        *ep = f.hosts > 1 ? f.host_pos : 0;
        return MRD_H1_ERR_HOST;
    }
    if (f.te_seen) {
        msg->body = MRD_H1_BODY_CHUNKED;
    } else if (f.cl_seen) {
        msg->body = MRD_H1_BODY_LENGTH;
        msg->content_length = f.cl;
    }
    msg->flags = conn_flags(f.flags, msg->version_minor);
    return r;
}

int
mrd_h1_parse_request(const char *buf, size_t len, size_t last_len, struct mrd_h1_msg *msg, size_t *err_pos)
{
    size_t ep = 0;

    if (len > INT_MAX)
        len = INT_MAX;
    size_t n = head_extent(buf, len, last_len);
    if (n == 0)
        return 0;
    int r = parse_request((const unsigned char *)buf, n, msg, &ep);
    if (r < 0 && err_pos != NULL)
        *err_pos = ep;
    return r;
}

static int
parse_response(const unsigned char *b, size_t n, const char *req_method, size_t req_method_len,
               struct mrd_h1_msg *msg, size_t *ep)
{
    struct framing f = {0};
    int r;

    msg_reset(msg);
    if ((r = parse_rest(b, n, parse_status_line(b, msg, ep), 0, msg, &f, ep)) < 0)
        return r;
    f.flags &= ~(unsigned)MRD_H1_F_HAS_HOST;
    msg->flags = conn_flags(f.flags, msg->version_minor);
    if (f.cl_seen)
        msg->content_length = f.cl;

    /* RFC 9112 6.3, in order */
    int st = msg->status;
    if ((req_method_len == 4 && memcmp(req_method, "HEAD", 4) == 0) || st < 200 || st == 204 || st == 304 ||
        (st < 300 && req_method_len == 7 && memcmp(req_method, "CONNECT", 7) == 0))
        msg->body = MRD_H1_BODY_NONE;
    else if (f.te_seen)
        msg->body = MRD_H1_BODY_CHUNKED;
    else if (f.cl_seen)
        msg->body = MRD_H1_BODY_LENGTH;
    else
        msg->body = MRD_H1_BODY_CLOSE;
    return r;
}

int
mrd_h1_parse_response(const char *buf, size_t len, size_t last_len, const char *req_method,
                      size_t req_method_len, struct mrd_h1_msg *msg, size_t *err_pos)
{
    size_t ep = 0;

    if (len > INT_MAX)
        len = INT_MAX;
    size_t n = head_extent(buf, len, last_len);
    if (n == 0)
        return 0;
    if (req_method == NULL)
        req_method_len = 0;
    int r = parse_response((const unsigned char *)buf, n, req_method, req_method_len, msg, &ep);
    if (r < 0 && err_pos != NULL)
        *err_pos = ep;
    return r;
}

/* ---- public: chunked decoder ---- */

/* sub-states of MRD_H1_CHUNK_EXT */
enum {
    X_NAME0,  /* after ';': first tchar of the name */
    X_NAME,   /* in the name */
    X_VAL0,   /* after '=' */
    X_TOKEN,  /* in a token value */
    X_QUOTED, /* in a quoted-string value */
    X_QESC,   /* after a backslash in it */
    X_QEND,   /* after the closing quote */
};

/* sub-states of MRD_H1_CHUNK_TRAILER */
enum {
    T_LINE0,  /* start of a field line, or the final CRLF */
    T_NAME,   /* in a field name */
    T_VALUE,  /* in a field value */
    T_LF,     /* after the CR of a field line */
    T_END_LF, /* after the CR of the final empty line */
};

static int
hexval(unsigned ch)
{
    if (ch - '0' <= 9)
        return (int)(ch - '0');
    ch |= 0x20;
    if (ch - 'a' <= 5)
        return (int)(ch - 'a' + 10);
    return -1;
}

void
mrd_h1_chunk_init(struct mrd_h1_chunk *c)
{
    memset(c, 0, sizeof(*c));
    c->state = MRD_H1_CHUNK_SIZE;
}

/* one chunk-ext byte; 0 or -1 */
static int
chunk_ext_byte(struct mrd_h1_chunk *c, unsigned ch)
{
    if (++c->trailer_bytes > MRD_H1_MAX_CHUNK_EXT)
        return -1;
    switch (c->sub) {
    case X_NAME0:
        if (!(cls[ch] & C_TCHAR))
            return -1;
        c->sub = X_NAME;
        return 0;
    case X_NAME:
    case X_TOKEN:
        if (cls[ch] & C_TCHAR)
            return 0;
        if (ch == '=' && c->sub == X_NAME) {
            c->sub = X_VAL0;
            return 0;
        }
        break;
    case X_VAL0:
        if (cls[ch] & C_TCHAR)
            c->sub = X_TOKEN;
        else if (ch == '"')
            c->sub = X_QUOTED;
        else
            return -1;
        return 0;
    case X_QUOTED:
        if (ch == '"')
            c->sub = X_QEND;
        else if (ch == '\\')
            c->sub = X_QESC;
        else if (!(cls[ch] & C_QDTEXT))
            return -1;
        return 0;
    case X_QESC:
        if (!(cls[ch] & C_FIELD))
            return -1;
        c->sub = X_QUOTED;
        return 0;
    case X_QEND:
        break;
    default:
        return -1;
    }
    /* end of a name, token or quoted value: another extension or the CR */
    if (ch == ';') {
        c->sub = X_NAME0;
        return 0;
    }
    if (ch == '\r') {
        c->state = MRD_H1_CHUNK_SIZE_LF;
        return 0;
    }
    return -1;
}

/* one trailer-section byte; 0 or -1 */
static int
chunk_trailer_byte(struct mrd_h1_chunk *c, unsigned ch, size_t max_trailer_bytes)
{
    if (c->sub == T_LINE0 && ch == '\r') {
        c->sub = T_END_LF;
        return 0;
    }
    if (c->sub == T_END_LF) {
        if (ch != '\n')
            return -1;
        c->state = MRD_H1_CHUNK_DONE;
        return 0;
    }
    if (++c->trailer_bytes > max_trailer_bytes)
        return -1;
    switch (c->sub) {
    case T_LINE0:
        if (!(cls[ch] & C_TCHAR))
            return -1; /* empty name, obs-fold, bare LF */
        c->sub = T_NAME;
        return 0;
    case T_NAME:
        if (ch == ':')
            c->sub = T_VALUE;
        else if (!(cls[ch] & C_TCHAR))
            return -1;
        return 0;
    case T_VALUE:
        if (ch == '\r')
            c->sub = T_LF;
        else if (!(cls[ch] & C_FIELD))
            return -1;
        return 0;
    case T_LF:
        if (ch != '\n')
            return -1;
        c->sub = T_LINE0;
        return 0;
    default:
        return -1;
    }
}

int
mrd_h1_chunk_parse(struct mrd_h1_chunk *c, const char *buf, size_t len, size_t max_trailer_bytes)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t i = 0;

    if (len > INT_MAX)
        len = INT_MAX;
    while (c->state != MRD_H1_CHUNK_DONE) {
        if (c->state == MRD_H1_CHUNK_DATA) {
            if (c->remaining > 0)
                break;
            c->state = MRD_H1_CHUNK_DATA_CR;
        }
        if (i == len)
            break;
        unsigned ch = b[i++];
        int d;
        switch (c->state) {
        case MRD_H1_CHUNK_SIZE:
            if ((d = hexval(ch)) >= 0) {
                if (c->digits == 16 || c->size > (MAX_LENGTH - (unsigned)d) >> 4)
                    return MRD_H1_ERR_CHUNK;
                c->size = (c->size << 4) | (unsigned)d;
                c->digits++;
            } else if (c->digits == 0) {
                return MRD_H1_ERR_CHUNK;
            } else if (ch == ';') {
                c->state = MRD_H1_CHUNK_EXT;
                c->sub = X_NAME0;
                c->trailer_bytes = 1;
            } else if (ch == '\r') {
                c->state = MRD_H1_CHUNK_SIZE_LF;
            } else {
                return MRD_H1_ERR_CHUNK;
            }
            break;
        case MRD_H1_CHUNK_EXT:
            if (chunk_ext_byte(c, ch) < 0)
                return MRD_H1_ERR_CHUNK;
            break;
        case MRD_H1_CHUNK_SIZE_LF:
            if (ch != '\n')
                return MRD_H1_ERR_CHUNK;
            c->trailer_bytes = 0;
            c->sub = 0;
            if (c->size == 0) {
                c->state = MRD_H1_CHUNK_TRAILER;
                c->sub = T_LINE0;
                /* stop here: what the next calls consume is exactly the
                 * trailer section, for a caller that forwards it */
                return (int)i;
            } else {
                c->state = MRD_H1_CHUNK_DATA;
                c->remaining = c->size;
            }
            break;
        case MRD_H1_CHUNK_DATA_CR:
            if (ch != '\r')
                return MRD_H1_ERR_CHUNK;
            c->state = MRD_H1_CHUNK_DATA_LF;
            break;
        case MRD_H1_CHUNK_DATA_LF:
            if (ch != '\n')
                return MRD_H1_ERR_CHUNK;
            c->state = MRD_H1_CHUNK_SIZE;
            c->size = 0;
            c->digits = 0;
            break;
        case MRD_H1_CHUNK_TRAILER:
            if (chunk_trailer_byte(c, ch, max_trailer_bytes) < 0)
                return MRD_H1_ERR_CHUNK;
            break;
        default:
            return MRD_H1_ERR_CHUNK;
        }
    }
    return (int)i;
}

/* ---- public: lookup helpers ---- */

const struct mrd_h1_header *
mrd_h1_find(const struct mrd_h1_msg *msg, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < msg->num_headers; i++) {
        const struct mrd_h1_header *h = &msg->headers[i];
        if (h->name_len == n && strncasecmp(h->name, name, n) == 0)
            return h;
    }
    return NULL;
}

int
mrd_h1_list_has(const char *value, size_t len, const char *token)
{
    size_t pos = 0, n;
    const char *el;

    while (list_next(value, len, &pos, &el, &n))
        if (mrd_strieq(el, n, token))
            return 1;
    return 0;
}

int
mrd_h1_method_idempotent(const char *m, size_t len)
{
    switch (len) {
    case 3:
        return memcmp(m, "GET", 3) == 0 || memcmp(m, "PUT", 3) == 0;
    case 4:
        return memcmp(m, "HEAD", 4) == 0;
    case 5:
        return memcmp(m, "TRACE", 5) == 0;
    case 6:
        return memcmp(m, "DELETE", 6) == 0;
    case 7:
        return memcmp(m, "OPTIONS", 7) == 0;
    default:
        return 0;
    }
}

/* ---- request-target and Host (RFC 9112 3.2, RFC 3986) ---- */

static int
is_host_char(unsigned char ch)
{
    /* unreserved / pct-encoded (checked loosely) / sub-delims */
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr("-._~%!$&'()*+,;=", ch) != NULL;
}

int
mrd_h1_host_valid(const char *v, size_t len)
{
    size_t i = 0;

    if (len == 0)
        return 1;
    if (v[0] == '[') {
        /* IP-literal: hex digits, ':' and '.' (an IPv4 tail), then ']' */
        for (i = 1; i < len && v[i] != ']'; i++)
            if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f') || (v[i] >= 'A' && v[i] <= 'F') ||
                  v[i] == ':' || v[i] == '.'))
                return 0;
        if (i >= len || i == 1)
            return 0;
        i++;
    } else {
        for (; i < len && v[i] != ':'; i++)
            if (v[i] == 0 || !is_host_char((unsigned char)v[i]))
                return 0;
        if (i == 0)
            return 0;
    }
    if (i == len)
        return 1;
    if (v[i] != ':')
        return 0;
    for (i++; i < len; i++)
        if (v[i] < '0' || v[i] > '9')
            return 0;
    return 1;
}

enum mrd_h1_target_form
mrd_h1_target_form(const char *m, size_t mlen, const char *t, size_t tlen, const char **authority,
                   size_t *authority_len, const char **path, size_t *path_len)
{
    size_t i, a;

    if (tlen == 0)
        return MRD_H1_TARGET_INVALID;
    if (mrd_strieq(m, mlen, "CONNECT"))
        return mrd_h1_host_valid(t, tlen) && memchr(t, ':', tlen) != NULL ? MRD_H1_TARGET_AUTHORITY
                                                                          : MRD_H1_TARGET_INVALID;
    if (t[0] == '/')
        return MRD_H1_TARGET_ORIGIN;
    if (tlen == 1 && t[0] == '*')
        return mrd_strieq(m, mlen, "OPTIONS") ? MRD_H1_TARGET_ASTERISK : MRD_H1_TARGET_INVALID;
    /* absolute-form: scheme "://" authority path-abempty [ "?" query ] */
    for (i = 0; i < tlen && t[i] != ':'; i++) {
        unsigned char ch = (unsigned char)t[i];
        int alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        if (!(alpha || (i > 0 && ((ch >= '0' && ch <= '9') || ch == '+' || ch == '-' || ch == '.'))))
            return MRD_H1_TARGET_INVALID;
    }
    if (i == 0 || i + 3 > tlen || t[i + 1] != '/' || t[i + 2] != '/')
        return MRD_H1_TARGET_INVALID;
    a = i + 3;
    for (i = a; i < tlen && t[i] != '/' && t[i] != '?' && t[i] != '#'; i++)
        ;
    if (i == a || t[a] == '@' || memchr(t + a, '@', i - a) != NULL || !mrd_h1_host_valid(t + a, i - a))
        return MRD_H1_TARGET_INVALID; /* no userinfo: RFC 9110 4.2.4 */
    if (i < tlen && t[i] == '#')
        return MRD_H1_TARGET_INVALID;
    if (authority != NULL) {
        *authority = t + a;
        *authority_len = i - a;
    }
    if (path != NULL) {
        *path = t + i;
        *path_len = tlen - i;
    }
    return MRD_H1_TARGET_ABSOLUTE;
}
