/*
 * clientip.c: the client address behind trusted proxies (SPEC 3.1). Walks
 * the X-Forwarded-For style list from the right and stops at the first
 * address no trusted proxy vouches for. Pure: no allocation, no I/O; the
 * header values come from the caller. An entry that is not an address is
 * reported through a hook the server installs (counted and logged there).
 */
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>

#include "meridian/clientip.h"
#include "meridian/common.h"
#include "meridian/config.h"

_Atomic(mrd_client_ip_invalid_fn) mrd_client_ip_on_invalid; /* static: starts NULL */

static int
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* 1..5 decimal digits, at most 65535. */
static int
valid_port(const char *s, size_t len)
{
    unsigned long v = 0;

    if (len == 0 || len > 5)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    return v <= 65535;
}

/* One list element, already trimmed: "v4", "v4:port", "v6", "[v6]",
 * "[v6]:port". Returns 0 or -1 when it is not an address. */
static int
parse_entry(const char *s, size_t len, struct mrd_ip *ip)
{
    const char *colon;

    if (len == 0)
        return -1;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        size_t hostlen, rest;

        if (close == NULL)
            return -1;
        hostlen = (size_t)(close - (s + 1));
        rest = len - (size_t)(close + 1 - s);
        if (memchr(s + 1, ':', hostlen) == NULL) /* brackets are for IPv6 only */
            return -1;
        if (rest != 0 && (close[1] != ':' || !valid_port(close + 2, rest - 1)))
            return -1;
        return mrd_ip_parse(s + 1, hostlen, ip);
    }
    colon = memchr(s, ':', len);
    if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)) == NULL) {
        /* exactly one ':': IPv4 with a port (no IPv6 literal has just one) */
        size_t hostlen = (size_t)(colon - s);

        if (!valid_port(colon + 1, len - hostlen - 1) || mrd_ip_parse(s, hostlen, ip) == -1 ||
            ip->family != AF_INET)
            return -1;
        return 0;
    }
    return mrd_ip_parse(s, len, ip);
}

int
mrd_client_ip_trusted(const struct mrd_client_ip_conf *conf, const struct mrd_ip *ip)
{
    for (size_t i = 0; i < conf->n_trusted_proxies; i++)
        if (mrd_cidr_match(&conf->trusted_proxies[i], ip))
            return 1;
    return 0;
}

int
mrd_client_ip(const struct mrd_client_ip_conf *conf, const struct mrd_ip *peer, const char *const *values,
              const size_t *lens, size_t n_values, struct mrd_ip *out)
{
    *out = *peer;
    if (conf == NULL || n_values == 0 || !mrd_client_ip_trusted(conf, peer))
        return 0;

    /* *out always holds the last trusted address seen, starting with the peer */
    for (size_t v = n_values; v-- > 0;) {
        const char *val = values[v];
        size_t end = lens[v];

        if (val == NULL)
            continue;
        while (end > 0) {
            size_t start = end, elen;
            const char *e;
            struct mrd_ip ip;

            while (start > 0 && val[start - 1] != ',')
                start--;
            e = val + start;
            elen = end - start;
            end = start > 0 ? start - 1 : 0; /* skip the comma for the next round */
            while (elen > 0 && is_ows(e[0])) {
                e++;
                elen--;
            }
            while (elen > 0 && is_ows(e[elen - 1]))
                elen--;
            if (elen == 0) /* empty list element: RFC 9110 5.6.1 says ignore it */
                continue;
            if (parse_entry(e, elen, &ip) == -1) {
                /* as nginx does: the last trusted address is the client */
                mrd_client_ip_invalid_fn fn = atomic_load_explicit(&mrd_client_ip_on_invalid, memory_order_relaxed);
                if (fn != NULL)
                    fn(conf, peer, e, elen, out);
                return 0;
            }
            *out = ip;
            if (!mrd_client_ip_trusted(conf, &ip))
                return 0;
        }
    }
    return 0;
}
