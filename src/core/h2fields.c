/*
 * h2fields.c: HTTP/1.1 request head -> HTTP/2 request fields (h2fields.h).
 */
#include <stdint.h>
#include <string.h>

#include "meridian/common.h"
#include "meridian/h2fields.h"
#include "meridian/headers.h"

int
mrd_te_has_trailers(const char *value, size_t len)
{
    return mrd_h1_list_has(value, len, "trailers");
}

enum mrd_h1_body
mrd_h2_response_body(int status, int is_head, int end_stream, const char *content_length, size_t cl_len,
                     uint64_t *len)
{
    uint64_t v = 0;

    *len = 0;
    if (is_head || end_stream || status < 200 || status == 204 || status == 304)
        return MRD_H1_BODY_NONE;
    if (content_length == NULL || cl_len == 0 || cl_len > 19)
        return MRD_H1_BODY_CHUNKED;
    for (size_t i = 0; i < cl_len; i++) {
        if (content_length[i] < '0' || content_length[i] > '9')
            return MRD_H1_BODY_CHUNKED;
        v = v * 10 + (uint64_t)(content_length[i] - '0');
    }
    *len = v;
    return MRD_H1_BODY_LENGTH;
}

int
mrd_h2_scan_own_head(const char *head, size_t len, struct mrd_h1_msg *m)
{
    const char *p = head, *end = head + len, *sp, *eol;

    m->num_headers = 0;
    if ((eol = memchr(p, '\r', len)) == NULL || end - eol < 2 || eol[1] != '\n' ||
        (sp = memchr(p, ' ', (size_t)(eol - p))) == NULL)
        return 0;
    m->method = p;
    m->method_len = (size_t)(sp - p);
    m->target = sp + 1;
    if ((size_t)(eol - m->target) < 10 || memcmp(eol - 9, " HTTP/1.1", 9) != 0 || m->method_len == 0)
        return 0;
    m->target_len = (size_t)(eol - 9 - m->target);
    m->version_minor = 1;
    for (p = eol + 2; p < end; p = eol + 2) {
        const char *colon;
        if ((eol = memchr(p, '\r', (size_t)(end - p))) == NULL || end - eol < 2 || eol[1] != '\n')
            return 0;
        if (eol == p)
            return p + 2 == end; /* the empty line ends the head */
        if ((colon = memchr(p, ':', (size_t)(eol - p))) == NULL || colon == p || eol - colon < 2 ||
            colon[1] != ' ' || m->num_headers == MRD_H1_MAX_HEADERS)
            return 0;
        m->headers[m->num_headers++] =
            (struct mrd_h1_header){p, (size_t)(colon - p), colon + 2, (size_t)(eol - colon - 2)};
    }
    return 0;
}

static int
has_upper(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            return 1;
    return 0;
}

size_t
mrd_h2_request_fields(const struct mrd_h1_msg *m, const char *scheme, int te_trailers,
                      struct mrd_h1_header *out, struct mrd_buf *names)
{
    const char *auth = NULL, *path = m->target;
    size_t auth_len = 0, path_len = m->target_len, n = 0, first;
    size_t offs[MRD_H1_MAX_HEADERS];
    enum mrd_h1_target_form form =
        mrd_h1_target_form(m->method, m->method_len, m->target, m->target_len, &auth, &auth_len, &path, &path_len);

    if (form == MRD_H1_TARGET_INVALID || form == MRD_H1_TARGET_AUTHORITY)
        return 0;
    if (form != MRD_H1_TARGET_ABSOLUTE) {
        const struct mrd_h1_header *host = mrd_h1_find(m, "host");
        auth = host != NULL ? host->value : NULL;
        auth_len = host != NULL ? host->value_len : 0;
        path = m->target;
        path_len = m->target_len;
    }
    names->len = 0;
    if (form == MRD_H1_TARGET_ABSOLUTE && (path_len == 0 || path[0] != '/')) {
        /* "http://a" or "http://a?q": "/" goes in front (names[0]) */
        mrd_buf_reserve(names, path_len + 1);
        names->p[0] = '/';
        memcpy(names->p + 1, path, path_len);
        names->len = path_len + 1;
        path = NULL;
    }
    out[n++] = (struct mrd_h1_header){":method", 7, m->method, m->method_len};
    out[n++] = (struct mrd_h1_header){":scheme", 7, scheme, strlen(scheme)};
    if (auth != NULL && auth_len > 0)
        out[n++] = (struct mrd_h1_header){":authority", 10, auth, auth_len};
    size_t path_idx = n;
    out[n++] = (struct mrd_h1_header){":path", 5, path, path == NULL ? names->len : path_len};
    first = n;
    for (size_t i = 0; i < m->num_headers; i++) {
        const struct mrd_h1_header *h = &m->headers[i];
        if (mrd_strieq(h->name, h->name_len, "host") ||
            mrd_hdr_is_hop_by_hop(m->headers, m->num_headers, h->name, h->name_len))
            continue;
        if (!has_upper(h->name, h->name_len)) {
            /* already lowercase (every name from an HTTP/2 client): used in place */
            offs[n - first] = SIZE_MAX;
            out[n++] = *h;
            continue;
        }
        offs[n - first] = names->len;
        mrd_buf_reserve(names, h->name_len);
        for (size_t j = 0; j < h->name_len; j++)
            names->p[names->len + j] =
                (char)(h->name[j] >= 'A' && h->name[j] <= 'Z' ? h->name[j] + 32 : h->name[j]);
        names->len += h->name_len;
        out[n++] = (struct mrd_h1_header){NULL, h->name_len, h->value, h->value_len};
    }
    for (size_t i = first; i < n; i++)
        if (offs[i - first] != SIZE_MAX)
            out[i].name = names->p + offs[i - first];
    if (out[path_idx].value == NULL)
        out[path_idx].value = names->p;
    if (te_trailers)
        out[n++] = (struct mrd_h1_header){"te", 2, "trailers", 8};
    return n;
}
