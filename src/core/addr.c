/*
 * addr.c: IP literals, "host:port" socket addresses and CIDR prefixes.
 * Pure: inet_pton/inet_ntop only; never resolves names or touches sockets.
 * IPv4-mapped IPv6 addresses are folded to IPv4 everywhere, so one CIDR list
 * matches a client whichever family its socket reports.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "meridian/addr.h"
#include "meridian/common.h"

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Fold ::ffff:a.b.c.d into a.b.c.d. Returns 1 when it did. */
static int
unmap(struct mrd_ip *ip)
{
    if (ip->family != AF_INET6 || memcmp(ip->bytes, v4mapped_prefix, sizeof(v4mapped_prefix)) != 0)
        return 0;
    memmove(ip->bytes, ip->bytes + 12, 4);
    memset(ip->bytes + 4, 0, 12);
    ip->family = AF_INET;
    return 1;
}

/* mrd_ip_parse() that also reports whether a v4-mapped literal was folded
 * (CIDR prefixes must then be shifted by 96 bits). */
static int
parse_ip(const char *s, size_t len, struct mrd_ip *ip, int *mapped)
{
    char buf[MRD_IP_STRLEN];

    *mapped = 0;
    if (len == 0 || len >= sizeof(buf) || memchr(s, '\0', len) != NULL)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(ip, 0, sizeof(*ip));
    if (memchr(buf, ':', len) != NULL) {
        if (inet_pton(AF_INET6, buf, ip->bytes) != 1)
            return -1;
        ip->family = AF_INET6;
        *mapped = unmap(ip);
        return 0;
    }
    /* glibc's inet_pton accepts only four decimal parts, no leading zeros */
    if (inet_pton(AF_INET, buf, ip->bytes) != 1)
        return -1;
    ip->family = AF_INET;
    return 0;
}

int
mrd_ip_parse(const char *s, size_t len, struct mrd_ip *ip)
{
    int mapped;

    return parse_ip(s, len, ip, &mapped);
}

/* Decimal digits only, no sign, at most max_digits; -1 otherwise. */
static long
parse_small_uint(const char *s, size_t len, size_t max_digits)
{
    long v = 0;

    if (len == 0 || len > max_digits)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int
mrd_sockaddr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *sslen, const char **err)
{
    const char *host, *colon;
    size_t hostlen;
    struct mrd_ip ip;
    int mapped;
    long port;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL) {
            *err = "missing ']' after IPv6 address";
            return -1;
        }
        if (close[1] != ':') {
            *err = "expected ':port' after ']'";
            return -1;
        }
        host = s + 1;
        hostlen = (size_t)(close - host);
        colon = close + 1;
        if (memchr(host, ':', hostlen) == NULL) {
            *err = "brackets are only for IPv6 addresses";
            return -1;
        }
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            *err = "expected IP:port";
            return -1;
        }
        host = s;
        hostlen = (size_t)(colon - s);
        if (memchr(host, ':', hostlen) != NULL) {
            *err = "IPv6 addresses must be in brackets, as in [::1]:8080";
            return -1;
        }
    }
    if (hostlen == 0) {
        *err = "missing IP address before the port";
        return -1;
    }
    if (parse_ip(host, hostlen, &ip, &mapped) == -1) {
        *err = "not an IP address (host names are not accepted)";
        return -1;
    }
    port = parse_small_uint(colon + 1, strlen(colon + 1), 5);
    if (port < 1 || port > 65535) {
        *err = "port must be a number from 1 to 65535";
        return -1;
    }

    memset(ss, 0, sizeof(*ss));
    if (ip.family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        memcpy(&sin->sin_addr, ip.bytes, 4);
        *sslen = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        memcpy(&sin6->sin6_addr, ip.bytes, 16);
        *sslen = sizeof(*sin6);
    }
    return 0;
}

int
mrd_cidr_parse(const char *s, struct mrd_cidr *c, const char **err)
{
    const char *slash = strchr(s, '/');
    size_t iplen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    unsigned max;
    long prefix;
    int mapped;

    if (parse_ip(s, iplen, &c->ip, &mapped) == -1) {
        *err = "not an IP address";
        return -1;
    }
    max = c->ip.family == AF_INET ? 32 : 128;
    if (slash == NULL) {
        c->prefix = max;
        return 0;
    }
    prefix = parse_small_uint(slash + 1, strlen(slash + 1), 3);
    if (prefix < 0 || prefix > (mapped ? 128 : (long)max)) {
        *err = c->ip.family == AF_INET ? "prefix length must be 0..32" : "prefix length must be 0..128";
        return -1;
    }
    if (mapped) {
        if (prefix < 96) {
            *err = "an IPv4-mapped prefix must be at least /96";
            return -1;
        }
        prefix -= 96;
    }
    c->prefix = (unsigned)prefix;
    for (unsigned bit = c->prefix; bit < max; bit++) {
        if (c->ip.bytes[bit / 8] & (0x80u >> (bit % 8))) {
            *err = "host bits are set beyond the prefix length";
            return -1;
        }
    }
    return 0;
}

int
mrd_cidr_match(const struct mrd_cidr *c, const struct mrd_ip *ip)
{
    unsigned full = c->prefix / 8, rest = c->prefix % 8;

    if (c->ip.family != ip->family)
        return 0;
    if (memcmp(c->ip.bytes, ip->bytes, full) != 0)
        return 0;
    if (rest != 0) {
        uint8_t mask = (uint8_t)(0xffu << (8 - rest));
        if ((c->ip.bytes[full] & mask) != (ip->bytes[full] & mask))
            return 0;
    }
    return 1;
}

int
mrd_ip_from_sockaddr(const struct sockaddr *sa, struct mrd_ip *ip)
{
    memset(ip, 0, sizeof(*ip));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        ip->family = AF_INET;
        memcpy(ip->bytes, &sin->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        ip->family = AF_INET6;
        memcpy(ip->bytes, &sin6->sin6_addr, 16);
        unmap(ip);
        return 0;
    }
    return -1;
}

size_t
mrd_ip_format(const struct mrd_ip *ip, char *buf, size_t len)
{
    if (len == 0)
        return 0;
    if (inet_ntop(ip->family, ip->bytes, buf, (socklen_t)len) == NULL) {
        buf[0] = '\0';
        return 0;
    }
    return strlen(buf);
}

/* The IP part is shown after v4-mapped folding, like mrd_ip_format(). */
size_t
mrd_sockaddr_format(const struct sockaddr *sa, char *buf, size_t len)
{
    char ipbuf[MRD_IP_STRLEN];
    struct mrd_ip ip;
    unsigned port;
    int n;

    if (len == 0)
        return 0;
    if (mrd_ip_from_sockaddr(sa, &ip) == -1 || mrd_ip_format(&ip, ipbuf, sizeof(ipbuf)) == 0) {
        buf[0] = '\0';
        return 0;
    }
    if (sa->sa_family == AF_INET)
        port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    else
        port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    n = snprintf(buf, len, ip.family == AF_INET6 ? "[%s]:%u" : "%s:%u", ipbuf, port);
    if (n < 0) {
        buf[0] = '\0';
        return 0;
    }
    return (size_t)n < len ? (size_t)n : len - 1;
}
