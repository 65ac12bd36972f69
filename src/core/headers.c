/*
 * headers.c: rewriting of forwarded heads (SPEC 3.6) and the proxy's own
 * error responses. Pure string work over header spans; see headers.h.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "meridian/common.h"
#include "meridian/headers.h"

#define HOP(s) {s, sizeof(s) - 1}
static const struct {
    const char *name;
    size_t len;
} hop_by_hop[] = {
    HOP("connection"), HOP("keep-alive"), HOP("proxy-connection"), HOP("te"), HOP("trailer"),
    HOP("transfer-encoding"), HOP("upgrade"),
};

static int
listed_in_connection(const struct mrd_h1_header *hdrs, size_t n, const char *name, size_t name_len)
{
    for (size_t i = 0; i < n; i++) {
        if (!mrd_strieq(hdrs[i].name, hdrs[i].name_len, "connection"))
            continue;
        const char *v = hdrs[i].value, *end = v + hdrs[i].value_len;
        while (v < end) {
            while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
                v++;
            const char *tok = v;
            while (v < end && *v != ',' && *v != ' ' && *v != '\t')
                v++;
            if ((size_t)(v - tok) == name_len && name_len && strncasecmp(tok, name, name_len) == 0)
                return 1;
        }
    }
    return 0;
}

int
mrd_hdr_is_hop_by_hop(const struct mrd_h1_header *hdrs, size_t n, const char *name, size_t name_len)
{
    for (size_t i = 0; i < MRD_ARRAY_LEN(hop_by_hop); i++)
        if (hop_by_hop[i].len == name_len && ((unsigned char)name[0] | 0x20) == (unsigned char)hop_by_hop[i].name[0] &&
            strncasecmp(name, hop_by_hop[i].name, name_len) == 0)
            return 1;
    return listed_in_connection(hdrs, n, name, name_len);
}

int
mrd_trailer_field_allowed(const char *name, size_t name_len)
{
    return !mrd_hdr_is_hop_by_hop(NULL, 0, name, name_len) && !mrd_strieq(name, name_len, "content-length") &&
           !mrd_strieq(name, name_len, "host");
}

size_t
mrd_trailer_section_each(const char *p, size_t len,
                         void (*fn)(void *arg, const char *name, size_t nl, const char *value, size_t vl), void *arg)
{
    const char *end = p + len;
    size_t n = 0;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p)), *colon, *v, *ve;
        if (eol == NULL)
            break;
        ve = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
        if (ve == p)
            break; /* the final empty line */
        colon = memchr(p, ':', (size_t)(ve - p));
        if (colon != NULL) {
            for (v = colon + 1; v < ve && (*v == ' ' || *v == '\t'); v++)
                ;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            fn(arg, p, (size_t)(colon - p), v, (size_t)(ve - v));
            n++;
        }
        p = eol + 1;
    }
    return n;
}

void
mrd_status_digits(char *out, int status)
{
    out[0] = (char)('0' + status / 100 % 10);
    out[1] = (char)('0' + status / 10 % 10);
    out[2] = (char)('0' + status % 10);
}

static void
add_header(struct mrd_buf *out, const struct mrd_h1_header *h)
{
    mrd_buf_reserve(out, h->name_len + h->value_len + 4);
    mrd_buf_add(out, h->name, h->name_len);
    mrd_buf_lit(out, ": ");
    mrd_buf_add(out, h->value, h->value_len);
    mrd_buf_lit(out, "\r\n");
}

static void
add_framing(struct mrd_buf *out, enum mrd_h1_body body, uint64_t content_length)
{
    if (body == MRD_H1_BODY_LENGTH) {
        char d[20];
        mrd_buf_lit(out, "Content-Length: ");
        mrd_buf_add(out, d, mrd_u64_dec(d, content_length));
        mrd_buf_lit(out, "\r\n");
    } else if (body == MRD_H1_BODY_CHUNKED)
        mrd_buf_lit(out, "Transfer-Encoding: chunked\r\n");
}

void
mrd_build_request_head(struct mrd_buf *out, const char *method, size_t method_len, const char *target,
                       size_t target_len, const struct mrd_h1_header *hdrs, size_t n,
                       const struct mrd_fwd_req *f)
{
    int had_xff = 0;

    mrd_buf_add(out, method, method_len);
    mrd_buf_lit(out, " ");
    mrd_buf_add(out, target, target_len);
    mrd_buf_lit(out, " HTTP/1.1\r\n");
    for (size_t i = 0; i < n; i++) {
        const struct mrd_h1_header *h = &hdrs[i];
        if (mrd_strieq(h->name, h->name_len, "x-forwarded-for")) {
            /* merged into one field, below */
            had_xff = 1;
            continue;
        }
        if (mrd_strieq(h->name, h->name_len, "content-length") ||
            mrd_strieq(h->name, h->name_len, "expect") ||
            mrd_strieq(h->name, h->name_len, "x-forwarded-proto"))
            continue;
        if (f->upgrade && mrd_strieq(h->name, h->name_len, "upgrade")) {
            add_header(out, h);
            continue;
        }
        if (mrd_hdr_is_hop_by_hop(hdrs, n, h->name, h->name_len))
            continue;
        add_header(out, h);
    }
    add_framing(out, f->body, f->content_length);
    if (f->upgrade)
        mrd_buf_lit(out, "Connection: upgrade\r\n");
    mrd_buf_lit(out, "X-Forwarded-For: ");
    if (had_xff) {
        for (size_t i = 0; i < n; i++) {
            if (!mrd_strieq(hdrs[i].name, hdrs[i].name_len, "x-forwarded-for") || hdrs[i].value_len == 0)
                continue;
            mrd_buf_add(out, hdrs[i].value, hdrs[i].value_len);
            mrd_buf_lit(out, ", ");
        }
    }
    mrd_buf_str(out, f->client_ip);
    mrd_buf_lit(out, "\r\nX-Forwarded-Proto: ");
    mrd_buf_str(out, f->proto);
    if (f->request_id != NULL) {
        mrd_buf_lit(out, "\r\nX-Request-Id: ");
        mrd_buf_str(out, f->request_id);
    }
    /* Via names the protocol the request was received with (RFC 9110 7.6.3) */
    mrd_buf_lit(out, "\r\nVia: ");
    mrd_buf_str(out, f->version != NULL ? f->version : "1.1");
    mrd_buf_lit(out, " meridian\r\n\r\n");
}

void
mrd_build_response_head(struct mrd_buf *out, const struct mrd_h1_header *hdrs, size_t n,
                        const struct mrd_fwd_resp *f)
{
    char code[4];

    mrd_status_digits(code, f->status);
    code[3] = ' ';
    mrd_buf_lit(out, "HTTP/1.1 ");
    mrd_buf_add(out, code, 4);
    if (f->reason != NULL)
        mrd_buf_add(out, f->reason, f->reason_len);
    else
        mrd_buf_str(out, mrd_status_reason(f->status));
    mrd_buf_lit(out, "\r\n");
    for (size_t i = 0; i < n; i++) {
        const struct mrd_h1_header *h = &hdrs[i];
        if (mrd_strieq(h->name, h->name_len, "content-length"))
            continue;
        if (f->region != NULL && mrd_strieq(h->name, h->name_len, "x-meridian-region"))
            continue;
        if (f->upgrade && mrd_strieq(h->name, h->name_len, "upgrade")) {
            add_header(out, h);
            continue;
        }
        if (mrd_hdr_is_hop_by_hop(hdrs, n, h->name, h->name_len))
            continue;
        add_header(out, h);
    }
    add_framing(out, f->body, f->content_length);
    if (f->upgrade)
        mrd_buf_lit(out, "Connection: upgrade\r\n");
    else if (f->conn_close)
        mrd_buf_lit(out, "Connection: close\r\n");
    else if (f->keep_alive)
        mrd_buf_lit(out, "Connection: keep-alive\r\n");
    if (f->region != NULL) {
        mrd_buf_lit(out, "X-Meridian-Region: ");
        mrd_buf_str(out, f->region);
        mrd_buf_lit(out, "\r\n");
    }
    mrd_buf_lit(out, "Via: " MRD_VIA_TOKEN "\r\n\r\n");
}

const char *
mrd_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

void
mrd_build_error_response(struct mrd_buf *out, int status, const char *detail, int close,
                         const char *extra_headers)
{
    char body[256];
    const char *reason = mrd_status_reason(status);
    int blen;

    if (detail != NULL && *detail)
        blen = snprintf(body, sizeof(body), "%d %s: %s\n", status, reason, detail);
    else
        blen = snprintf(body, sizeof(body), "%d %s\n", status, reason);
    if (blen < 0)
        blen = 0;
    if ((size_t)blen >= sizeof(body))
        blen = sizeof(body) - 1;
    mrd_buf_printf(out,
                   "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s%s"
                   "Via: " MRD_VIA_TOKEN "\r\n\r\n",
                   status, reason, blen, close ? "Connection: close\r\n" : "",
                   extra_headers ? extra_headers : "");
    mrd_buf_add(out, body, (size_t)blen);
}
