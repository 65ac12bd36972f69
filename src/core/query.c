/*
 * query.c: request-target, query-string and Authorization string work for
 * the admin API. Pure: no allocation, no I/O.
 */
#include <string.h>

#include "meridian/query.h"

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void
mrd_target_split(const char *t, size_t len, struct mrd_target *out)
{
    const char *hash = len ? memchr(t, '#', len) : NULL;
    size_t end = hash != NULL ? (size_t)(hash - t) : len;
    const char *q = end ? memchr(t, '?', end) : NULL;

    out->path = t;
    if (q == NULL) {
        out->path_len = end;
        out->query = NULL;
        out->query_len = 0;
        return;
    }
    out->path_len = (size_t)(q - t);
    out->query = q + 1;
    out->query_len = end - out->path_len - 1;
}

/* decode into dst, or only count when dst is NULL */
static size_t
decode(const char *src, size_t len, char *dst, int plus)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++, o++) {
        char c = src[i];
        int hi, lo;

        if (c == '%' && len - i > 2 && (hi = hexval(src[i + 1])) >= 0 && (lo = hexval(src[i + 2])) >= 0) {
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if (plus && c == '+') {
            c = ' ';
        }
        if (dst != NULL)
            dst[o] = c;
    }
    return o;
}

size_t
mrd_pct_decode(const char *src, size_t len, char *dst, int plus)
{
    return decode(src, len, dst, plus);
}

static int
unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

size_t
mrd_pct_encode(const char *src, size_t len, char *dst, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        size_t need = unreserved(c) ? 1 : 3;

        if (cap == 0 || need > cap - 1 - o) {
            if (cap > 0)
                dst[o] = '\0';
            return (size_t)-1;
        }
        if (need == 1) {
            dst[o++] = (char)c;
        } else {
            dst[o++] = '%';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    if (cap > 0)
        dst[o] = '\0';
    return cap > 0 ? o : (size_t)-1;
}

/* 1 when raw (rlen bytes, %-decoded with '+' as space) equals key */
static int
key_equals(const char *raw, size_t rlen, const char *key)
{
    size_t klen = strlen(key), o = 0;

    for (size_t i = 0; i < rlen; i++, o++) {
        char c = raw[i];
        int hi, lo;

        if (c == '%' && rlen - i > 2 && (hi = hexval(raw[i + 1])) >= 0 && (lo = hexval(raw[i + 2])) >= 0) {
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (o >= klen || key[o] != c)
            return 0;
    }
    return o == klen;
}

long
mrd_query_get(const char *query, size_t qlen, const char *key, char *buf, size_t cap)
{
    size_t pos = 0;

    if (cap > 0)
        buf[0] = '\0';
    while (query != NULL && pos < qlen) {
        const char *pair = query + pos, *amp = memchr(pair, '&', qlen - pos), *eq;
        size_t plen = amp != NULL ? (size_t)(amp - pair) : qlen - pos;

        pos += plen + 1;
        eq = plen ? memchr(pair, '=', plen) : NULL;
        if (eq == NULL || !key_equals(pair, (size_t)(eq - pair), key))
            continue;
        const char *val = eq + 1;
        size_t vlen = plen - (size_t)(val - pair), n;

        if (vlen >= cap && (cap == 0 || decode(val, vlen, NULL, 1) >= cap))
            return MRD_QUERY_TOOLONG;
        n = mrd_pct_decode(val, vlen, buf, 1);
        buf[n] = '\0';
        return (long)n;
    }
    return MRD_QUERY_ABSENT;
}

int
mrd_bearer_ok(const char *hdr, size_t hlen, const char *token)
{
    static const char scheme[] = "bearer";
    size_t tlen = strlen(token), i, vlen;
    unsigned char diff = 0;

    if (hdr == NULL || hlen < sizeof(scheme) - 1)
        return 0;
    for (i = 0; i < sizeof(scheme) - 1; i++) {
        char c = hdr[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != scheme[i])
            return 0;
    }
    if (i == hlen || hdr[i] != ' ')
        return 0;
    while (i < hlen && hdr[i] == ' ')
        i++;
    vlen = hlen - i;
    while (vlen > 0 && (hdr[i + vlen - 1] == ' ' || hdr[i + vlen - 1] == '\t'))
        vlen--;
    if (vlen != tlen || tlen == 0)
        return 0;
    for (size_t j = 0; j < tlen; j++)
        diff |= (unsigned char)(hdr[i + j] ^ token[j]);
    return diff == 0;
}
