/*
 * dns.c: host name syntax, hosts-file lookup, address sets and the
 * expansion of upstream entries into per-address targets (see dns.h).
 */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "meridian/common.h"
#include "meridian/config.h"
#include "meridian/dns.h"

static int
is_ldh(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

int
mrd_hostname_valid(const char *s, size_t len, const char **why)
{
    size_t label = 0, start = 0;
    int digits_only = 1;

    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0) {
        *why = "empty host name";
        return 0;
    }
    if (len > MRD_HOSTNAME_MAX) {
        *why = "host name longer than 253 characters";
        return 0;
    }
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (label == 0) {
                *why = "empty label in host name";
                return 0;
            }
            if (s[start] == '-' || s[i - 1] == '-') {
                *why = "a host name label cannot start or end with '-'";
                return 0;
            }
            if (label > 63) {
                *why = "host name label longer than 63 characters";
                return 0;
            }
            if (i == len && digits_only) {
                *why = "not an IP address, and a host name cannot end in a numeric label";
                return 0;
            }
            label = 0;
            start = i + 1;
            digits_only = 1;
            continue;
        }
        if (!is_ldh(s[i])) {
            *why = "invalid character in host name (letters, digits, '-' and '.' only)";
            return 0;
        }
        if (s[i] < '0' || s[i] > '9')
            digits_only = 0;
        label++;
    }
    return 1;
}

int
mrd_hostport_parse(const char *s, char host[MRD_HOSTNAME_MAX + 2], uint16_t *port, const char **why)
{
    const char *colon = strrchr(s, ':');
    size_t hlen;
    unsigned long p = 0;

    if (colon == NULL) {
        *why = "expected HOST:PORT or IP:PORT";
        return -1;
    }
    hlen = (size_t)(colon - s);
    if (memchr(s, ':', hlen) != NULL) {
        *why = "IPv6 addresses must be in brackets, as in [::1]:8080";
        return -1;
    }
    if (!mrd_hostname_valid(s, hlen, why))
        return -1;
    if (colon[1] == '\0' || strlen(colon + 1) > 5) {
        *why = "port must be a number from 1 to 65535";
        return -1;
    }
    for (const char *c = colon + 1; *c; c++) {
        if (*c < '0' || *c > '9') {
            *why = "port must be a number from 1 to 65535";
            return -1;
        }
        p = p * 10 + (unsigned long)(*c - '0');
    }
    if (p < 1 || p > 65535) {
        *why = "port must be a number from 1 to 65535";
        return -1;
    }
    if (s[hlen - 1] == '.')
        hlen--;
    for (size_t i = 0; i < hlen; i++)
        host[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
    host[hlen] = '\0';
    *port = (uint16_t)p;
    return 0;
}

static int
word_eq(const char *a, size_t alen, const char *b)
{
    if (alen > 0 && a[alen - 1] == '.')
        alen--;
    return mrd_strieq(a, alen, b);
}

size_t
mrd_hosts_lookup(const char *text, size_t len, const char *name, struct mrd_ipset *out)
{
    size_t found = 0, i = 0;

    while (i < len) {
        size_t eol = i, end;
        while (eol < len && text[eol] != '\n')
            eol++;
        end = eol;
        for (size_t k = i; k < eol; k++)
            if (text[k] == '#') {
                end = k;
                break;
            }
        /* fields: the address, then names */
        struct mrd_ip ip;
        int have_ip = 0, first = 1;
        size_t k = i;
        while (k < end) {
            size_t w;
            while (k < end && (text[k] == ' ' || text[k] == '\t' || text[k] == '\r'))
                k++;
            w = k;
            while (k < end && text[k] != ' ' && text[k] != '\t' && text[k] != '\r')
                k++;
            if (k == w)
                break;
            if (first) {
                first = 0;
                have_ip = mrd_ip_parse(text + w, k - w, &ip) == 0;
                if (!have_ip)
                    break;
            } else if (word_eq(text + w, k - w, name)) {
                mrd_ipset_add(out, &ip);
                found++;
                break;
            }
        }
        i = eol + 1;
    }
    return found;
}

void
mrd_ipset_add(struct mrd_ipset *s, const struct mrd_ip *ip)
{
    s->v = mrd_xrealloc(s->v, (s->n + 1) * sizeof(*s->v));
    memset(&s->v[s->n], 0, sizeof(s->v[s->n]));
    s->v[s->n].family = ip->family;
    memcpy(s->v[s->n].bytes, ip->bytes, ip->family == AF_INET ? 4 : 16);
    s->n++;
}

static int
ip_cmp(const void *pa, const void *pb)
{
    const struct mrd_ip *a = pa, *b = pb;

    if (a->family != b->family)
        return a->family == AF_INET ? -1 : 1;
    return memcmp(a->bytes, b->bytes, a->family == AF_INET ? 4 : 16);
}

void
mrd_ipset_normalize(struct mrd_ipset *s)
{
    size_t o = 0;

    if (s->n < 2)
        return;
    qsort(s->v, s->n, sizeof(*s->v), ip_cmp);
    for (size_t i = 0; i < s->n; i++)
        if (o == 0 || ip_cmp(&s->v[o - 1], &s->v[i]) != 0)
            s->v[o++] = s->v[i];
    s->n = o;
}

int
mrd_ipset_equal(const struct mrd_ipset *a, const struct mrd_ipset *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (ip_cmp(&a->v[i], &b->v[i]) != 0)
            return 0;
    return 1;
}

void
mrd_ipset_diff(const struct mrd_ipset *prev, const struct mrd_ipset *next, size_t *joined, size_t *left)
{
    size_t i = 0, j = 0;

    *joined = *left = 0;
    while (i < prev->n || j < next->n) {
        int c = i == prev->n ? 1 : j == next->n ? -1 : ip_cmp(&prev->v[i], &next->v[j]);
        if (c < 0) {
            (*left)++;
            i++;
        } else if (c > 0) {
            (*joined)++;
            j++;
        } else {
            i++;
            j++;
        }
    }
}

void
mrd_ipset_copy(struct mrd_ipset *dst, const struct mrd_ipset *src)
{
    dst->n = src->n;
    dst->v = src->n ? mrd_xmalloc(src->n * sizeof(*src->v)) : NULL;
    if (src->n)
        memcpy(dst->v, src->v, src->n * sizeof(*src->v));
}

void
mrd_ipset_dispose(struct mrd_ipset *s)
{
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

void
mrd_ip_to_sockaddr(const struct mrd_ip *ip, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (ip->family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        memcpy(&sin->sin_addr, ip->bytes, 4);
        *len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        memcpy(&sin6->sin6_addr, ip->bytes, 16);
        *len = sizeof(*sin6);
    }
}

uint64_t
mrd_dns_refresh_delay_ms(long ttl, uint64_t refresh_ms)
{
    uint64_t d = refresh_ms;

    if (ttl >= 0 && (uint64_t)ttl * 1000 < d)
        d = (uint64_t)ttl * 1000;
    return d < 1000 ? 1000 : d;
}

size_t
mrd_upstreams_count(const struct mrd_upstream_conf *ups, size_t n, const struct mrd_ipset *const *resolved)
{
    size_t c = 0;

    for (size_t i = 0; i < n; i++)
        c += ups[i].host == NULL ? 1 : resolved != NULL && resolved[i] != NULL ? resolved[i]->n : 0;
    return c;
}

static int
seen(const struct mrd_up_target *t, size_t n, const struct sockaddr_storage *ss, socklen_t len)
{
    for (size_t i = 0; i < n; i++)
        if (t[i].addrlen == len && memcmp(&t[i].addr, ss, len) == 0)
            return 1;
    return 0;
}

size_t
mrd_upstreams_expand(const struct mrd_upstream_conf *ups, size_t n, const struct mrd_ipset *const *resolved,
                     struct mrd_up_target *out)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (ups[i].host == NULL) {
            if (ups[i].addrlen == 0 || seen(out, o, &ups[i].addr, ups[i].addrlen))
                continue;
            out[o].entry = i;
            memcpy(&out[o].addr, &ups[i].addr, ups[i].addrlen);
            out[o].addrlen = ups[i].addrlen;
            o++;
            continue;
        }
        if (resolved == NULL || resolved[i] == NULL)
            continue;
        for (size_t k = 0; k < resolved[i]->n; k++) {
            struct sockaddr_storage ss;
            socklen_t len;
            mrd_ip_to_sockaddr(&resolved[i]->v[k], ups[i].port, &ss, &len);
            if (seen(out, o, &ss, len))
                continue;
            out[o].entry = i;
            memcpy(&out[o].addr, &ss, len);
            out[o].addrlen = len;
            o++;
        }
    }
    return o;
}
