/*
 * proxyproto.c: PROXY protocol v1/v2 parser and builder (see proxyproto.h).
 *
 * The parser is called again with every byte received so far (the header is
 * at most MRD_PP_MAX bytes), so it keeps no state. It rejects as early as it
 * can: a byte that cannot start or continue a header is an error at once,
 * not at the header_timeout, so a client speaking HTTP straight to a
 * proxy_protocol listener is closed on its first bytes.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "meridian/proxyproto.h"

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[] = "PROXY ";
#define V1_SIG_LEN 6

static enum mrd_pp_result
fail(const char **err, const char *why)
{
    *err = why;
    return MRD_PP_ERROR;
}

static size_t
min_sz(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* v4-mapped IPv6 to IPv4, like addr.c does for sockets and literals */
static void
fold(struct mrd_ip *ip)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (ip->family == AF_INET6 && memcmp(ip->bytes, mapped, 12) == 0) {
        memmove(ip->bytes, ip->bytes + 12, 4);
        memset(ip->bytes + 4, 0, 12);
        ip->family = AF_INET;
    }
}

/* ---- version 1 ---- */

static int
v1_addr_char(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.' || c == ':';
}

/* a decimal port: 1-5 digits, no leading zero (but "0"), at most 65535 */
static int
v1_port(const uint8_t *s, size_t len, uint16_t *out)
{
    unsigned long v = 0;

    if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static int
v1_ip(const uint8_t *s, size_t len, int family, struct mrd_ip *ip)
{
    char buf[MRD_IP_STRLEN];
    int colon = memchr(s, ':', len) != NULL;

    if (len == 0 || len >= sizeof(buf) || colon != (family == AF_INET6))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(ip, 0, sizeof(*ip));
    if (inet_pton(family, buf, ip->bytes) != 1)
        return -1;
    ip->family = family;
    fold(ip);
    return 0;
}

/*
 * The part after "PROXY " of a line so far (len bytes, no CR/LF); complete
 * when the CRLF followed. Partial input is only checked for bytes that
 * cannot appear.
 */
static enum mrd_pp_result
v1_body(const uint8_t *s, size_t len, int complete, struct mrd_pp_header *h, const char **err)
{
    static const char *const words[] = {"TCP4 ", "TCP6 ", "UNKNOWN"};
    const uint8_t *f[4];
    size_t fl[4], nf = 0, spaces = 0;
    int family;

    if (len >= 7 && memcmp(s, "UNKNOWN", 7) == 0) {
        if (len > 7 && s[7] != ' ')
            return fail(err, "PROXY v1: unknown protocol (expected TCP4, TCP6 or UNKNOWN)");
        if (complete) {
            h->proxy = 0;
            h->family = AF_UNSPEC;
        }
        return complete ? MRD_PP_DONE : MRD_PP_NEED_MORE;
    }
    if (len < 5) {
        for (size_t i = 0; i < 3; i++)
            if (memcmp(s, words[i], min_sz(len, strlen(words[i]))) == 0)
                return complete ? fail(err, "PROXY v1: truncated line") : MRD_PP_NEED_MORE;
        return fail(err, "PROXY v1: unknown protocol (expected TCP4, TCP6 or UNKNOWN)");
    }
    if (memcmp(s, "TCP4 ", 5) == 0)
        family = AF_INET;
    else if (memcmp(s, "TCP6 ", 5) == 0)
        family = AF_INET6;
    else if (memcmp(s, "UNKNOWN", len < 7 ? len : 7) == 0)
        return complete ? fail(err, "PROXY v1: truncated line") : MRD_PP_NEED_MORE;
    else
        return fail(err, "PROXY v1: unknown protocol (expected TCP4, TCP6 or UNKNOWN)");
    /* four fields separated by single spaces */
    f[0] = s + 5;
    fl[0] = 0;
    nf = 1;
    for (size_t i = 5; i < len; i++) {
        if (s[i] == ' ') {
            if (fl[nf - 1] == 0)
                return fail(err, "PROXY v1: empty field (double space)");
            if (++spaces > 3)
                return fail(err, "PROXY v1: too many fields");
            f[nf] = s + i + 1;
            fl[nf++] = 0;
        } else if (v1_addr_char(s[i])) {
            fl[nf - 1]++;
        } else {
            return fail(err, "PROXY v1: invalid character");
        }
    }
    if (!complete)
        return MRD_PP_NEED_MORE;
    if (nf != 4 || fl[3] == 0)
        return fail(err, "PROXY v1: expected source and destination addresses and ports");
    if (v1_ip(f[0], fl[0], family, &h->addrs.src) != 0)
        return fail(err, family == AF_INET ? "PROXY v1: bad source IPv4 address" : "PROXY v1: bad source IPv6 address");
    if (v1_ip(f[1], fl[1], family, &h->addrs.dst) != 0)
        return fail(err, family == AF_INET ? "PROXY v1: bad destination IPv4 address"
                                           : "PROXY v1: bad destination IPv6 address");
    if (v1_port(f[2], fl[2], &h->addrs.src_port) != 0)
        return fail(err, "PROXY v1: bad source port");
    if (v1_port(f[3], fl[3], &h->addrs.dst_port) != 0)
        return fail(err, "PROXY v1: bad destination port");
    h->proxy = 1;
    h->family = family;
    return MRD_PP_DONE;
}

static enum mrd_pp_result
parse_v1(const uint8_t *p, size_t n, struct mrd_pp_header *h, const char **err)
{
    size_t lim = min_sz(n, MRD_PP_V1_MAX), end;
    enum mrd_pp_result r;

    if (memcmp(p, v1_sig, min_sz(n, V1_SIG_LEN)) != 0)
        return fail(err, "not a PROXY protocol header");
    for (end = 0; end < lim; end++) {
        if (p[end] == '\n')
            return fail(err, "PROXY v1: line feed without carriage return");
        if (p[end] == '\r') {
            if (end + 1 < n && p[end + 1] != '\n')
                return fail(err, "PROXY v1: carriage return without line feed");
            break;
        }
    }
    if (end >= MRD_PP_V1_MAX - 1) /* the CRLF does not fit in 107 bytes */
        return fail(err, "PROXY v1: no CRLF within 107 bytes");
    if (end < V1_SIG_LEN)
        return end < n ? fail(err, "not a PROXY protocol header") : MRD_PP_NEED_MORE;
    r = v1_body(p + V1_SIG_LEN, end - V1_SIG_LEN, end + 1 < n, h, err);
    if (r == MRD_PP_DONE) {
        h->version = 1;
        h->len = end + 2;
    }
    return r;
}

/* ---- version 2 ---- */

static uint16_t
be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static enum mrd_pp_result
parse_v2(const uint8_t *p, size_t n, struct mrd_pp_header *h, const char **err)
{
    size_t total, off, alen = 0;
    unsigned cmd, fam;

    if (memcmp(p, v2_sig, min_sz(n, sizeof(v2_sig))) != 0)
        return fail(err, "not a PROXY protocol header");
    if (n < 13)
        return MRD_PP_NEED_MORE;
    if ((p[12] >> 4) != 2)
        return fail(err, "PROXY v2: unsupported version");
    cmd = p[12] & 0x0f;
    if (cmd > 1)
        return fail(err, "PROXY v2: unknown command");
    if (n < 16)
        return MRD_PP_NEED_MORE;
    fam = p[13];
    total = 16 + (size_t)be16(p + 14);
    if (total > MRD_PP_MAX)
        return fail(err, "PROXY v2: header longer than 4096 bytes");
    if (cmd == 1 && fam == 0x11)
        alen = 12;
    else if (cmd == 1 && fam == 0x21)
        alen = 36;
    if (total - 16 < alen)
        return fail(err, "PROXY v2: length shorter than the address block");
    if (n < total)
        return MRD_PP_NEED_MORE;
    memset(&h->addrs, 0, sizeof(h->addrs));
    h->version = 2;
    h->len = total;
    h->proxy = alen > 0;
    h->family = alen == 12 ? AF_INET : alen == 36 ? AF_INET6 : AF_UNSPEC;
    if (alen == 0)
        return MRD_PP_DONE; /* LOCAL or a family without TCP addresses: the rest is skipped */
    if (alen == 12) {
        h->addrs.src.family = h->addrs.dst.family = AF_INET;
        memcpy(h->addrs.src.bytes, p + 16, 4);
        memcpy(h->addrs.dst.bytes, p + 20, 4);
        h->addrs.src_port = be16(p + 24);
        h->addrs.dst_port = be16(p + 26);
    } else {
        h->addrs.src.family = h->addrs.dst.family = AF_INET6;
        memcpy(h->addrs.src.bytes, p + 16, 16);
        memcpy(h->addrs.dst.bytes, p + 32, 16);
        h->addrs.src_port = be16(p + 48);
        h->addrs.dst_port = be16(p + 50);
        fold(&h->addrs.src);
        fold(&h->addrs.dst);
    }
    /* TLVs: skipped, but each must fit */
    for (off = 16 + alen; off < total;) {
        if (total - off < 3)
            return fail(err, "PROXY v2: truncated TLV");
        if ((size_t)be16(p + off + 1) > total - off - 3)
            return fail(err, "PROXY v2: TLV longer than the header");
        off += 3 + (size_t)be16(p + off + 1);
    }
    return MRD_PP_DONE;
}

enum mrd_pp_result
mrd_pp_parse(const uint8_t *p, size_t n, struct mrd_pp_header *h, const char **err)
{
    *err = NULL;
    memset(h, 0, sizeof(*h));
    if (n == 0)
        return MRD_PP_NEED_MORE;
    if (p[0] == 'P')
        return parse_v1(p, n, h, err);
    if (p[0] == 0x0D)
        return parse_v2(p, n, h, err);
    return fail(err, "not a PROXY protocol header");
}

/* ---- builder ---- */

static void
to_v6(struct mrd_ip *ip)
{
    if (ip->family == AF_INET) {
        memmove(ip->bytes + 12, ip->bytes, 4);
        memset(ip->bytes, 0, 10);
        ip->bytes[10] = ip->bytes[11] = 0xff;
        ip->family = AF_INET6;
    }
}

static int
known(const struct mrd_ip *ip)
{
    return ip->family == AF_INET || ip->family == AF_INET6;
}

size_t
mrd_pp_build(int version, const struct mrd_pp_addrs *a, uint8_t *out, size_t cap)
{
    struct mrd_ip src, dst;
    int have = a != NULL && known(&a->src) && known(&a->dst);

    if ((version != 1 && version != 2) || cap < MRD_PP_BUILD_MAX)
        return 0;
    if (have) {
        src = a->src;
        dst = a->dst;
        if (src.family != dst.family) {
            to_v6(&src);
            to_v6(&dst);
        }
    }
    if (version == 1) {
        char s[MRD_IP_STRLEN], d[MRD_IP_STRLEN];
        int r;

        if (!have) {
            memcpy(out, "PROXY UNKNOWN\r\n", 15);
            return 15;
        }
        mrd_ip_format(&src, s, sizeof(s));
        mrd_ip_format(&dst, d, sizeof(d));
        r = snprintf((char *)out, cap, "PROXY %s %s %s %u %u\r\n", src.family == AF_INET ? "TCP4" : "TCP6", s, d,
                     (unsigned)a->src_port, (unsigned)a->dst_port);
        return r > 0 && (size_t)r < cap ? (size_t)r : 0;
    }
    memcpy(out, v2_sig, sizeof(v2_sig));
    if (!have) {
        out[12] = 0x20; /* v2 LOCAL */
        out[13] = 0x00; /* UNSPEC */
        out[14] = out[15] = 0;
        return 16;
    }
    size_t alen = src.family == AF_INET ? 4 : 16;
    out[12] = 0x21;
    out[13] = src.family == AF_INET ? 0x11 : 0x21;
    out[14] = 0;
    out[15] = (uint8_t)(2 * alen + 4);
    memcpy(out + 16, src.bytes, alen);
    memcpy(out + 16 + alen, dst.bytes, alen);
    out[16 + 2 * alen] = (uint8_t)(a->src_port >> 8);
    out[17 + 2 * alen] = (uint8_t)a->src_port;
    out[18 + 2 * alen] = (uint8_t)(a->dst_port >> 8);
    out[19 + 2 * alen] = (uint8_t)a->dst_port;
    return 16 + 2 * alen + 4;
}
