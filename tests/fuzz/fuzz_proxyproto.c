/*
 * fuzz_proxyproto.c: libFuzzer target for the PROXY protocol parser and
 * builder (proxyproto.c, pure).
 *
 * Byte 0 picks what else is checked; the rest is what a peer sent. Checks:
 *  - every prefix: the answer is stable as bytes arrive (NEED_MORE may become
 *    anything, ERROR stays ERROR, DONE stays DONE with the same length and
 *    addresses); NEED_MORE only below MRD_PP_MAX bytes and, for v1, below
 *    107; an error always has a reason, a non-error none;
 *  - DONE: len within the input, >= 15 (v1) or 16 (v2), v1 <= 107 ending in
 *    CRLF, v2 = 16 + its length field; proxy = 1 only with AF_INET/AF_INET6
 *    addresses of a known family (v4-mapped folded);
 *  - the builder (both versions) on the parsed addresses, and on addresses
 *    taken from the input (byte 0 odd), writes a header that parses back
 *    DONE with the same length and the same addresses.
 */
#include <arpa/inet.h>
#include <sys/socket.h>

#include "meridian/proxyproto.h"

#include "fuzz_pure_common.h"

static int
same_ip(const struct mrd_ip *a, const struct mrd_ip *b)
{
    return a->family == b->family && memcmp(a->bytes, b->bytes, 16) == 0;
}

static int
same_hdr(const struct mrd_pp_header *a, const struct mrd_pp_header *b)
{
    return a->version == b->version && a->proxy == b->proxy && a->family == b->family && a->len == b->len &&
           same_ip(&a->addrs.src, &b->addrs.src) && same_ip(&a->addrs.dst, &b->addrs.dst) &&
           a->addrs.src_port == b->addrs.src_port && a->addrs.dst_port == b->addrs.dst_port;
}

static void
check_ip(const struct mrd_ip *ip)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    REQUIRE(ip->family == AF_INET || ip->family == AF_INET6);
    if (ip->family == AF_INET)
        for (int i = 4; i < 16; i++)
            REQUIRE(ip->bytes[i] == 0);
    else
        REQUIRE(memcmp(ip->bytes, mapped, 12) != 0);
}

static void
check_done(const uint8_t *p, size_t n, const struct mrd_pp_header *h)
{
    REQUIRE(h->len <= n);
    if (h->version == 1) {
        REQUIRE(h->len >= 15 && h->len <= MRD_PP_V1_MAX);
        REQUIRE(p[h->len - 2] == '\r' && p[h->len - 1] == '\n');
        REQUIRE(memchr(p, '\n', h->len - 1) == NULL);
    } else {
        REQUIRE(h->version == 2);
        REQUIRE(h->len >= 16 && h->len <= MRD_PP_MAX);
        REQUIRE(h->len == 16 + ((size_t)p[14] << 8 | p[15]));
    }
    if (h->proxy) {
        REQUIRE(h->family == AF_INET || h->family == AF_INET6);
        check_ip(&h->addrs.src);
        check_ip(&h->addrs.dst);
    } else {
        REQUIRE(h->family == AF_UNSPEC);
    }
}

/* build both versions from a, parse them back */
static void
roundtrip(const struct mrd_pp_addrs *a)
{
    uint8_t out[MRD_PP_BUILD_MAX];
    struct mrd_pp_header h;
    const char *err;

    for (int v = 1; v <= 2; v++) {
        size_t n = mrd_pp_build(v, a, out, sizeof(out));
        REQUIRE(n > 0 && n <= sizeof(out));
        REQUIRE(mrd_pp_parse(out, n, &h, &err) == MRD_PP_DONE && err == NULL);
        REQUIRE(h.len == n && h.version == v);
        if (a == NULL || a->src.family == 0 || a->dst.family == 0) {
            REQUIRE(!h.proxy);
            continue;
        }
        REQUIRE(h.proxy);
        REQUIRE(same_ip(&h.addrs.src, &a->src) && same_ip(&h.addrs.dst, &a->dst));
        REQUIRE(h.addrs.src_port == a->src_port && h.addrs.dst_port == a->dst_port);
        /* every proper prefix of a built header waits for more */
        for (size_t i = 0; i < n; i++)
            REQUIRE(mrd_pp_parse(out, i, &h, &err) == MRD_PP_NEED_MORE);
    }
}

/* an address from 18 input bytes: family bit, 16 bytes, folded like the parser */
static void
take_ip(struct reader *r, struct mrd_ip *ip)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    memset(ip, 0, sizeof(*ip));
    ip->family = take_byte(r) & 1 ? AF_INET6 : AF_INET;
    take_bytes(r, ip->bytes, ip->family == AF_INET ? 4 : 16);
    if (ip->family == AF_INET6 && memcmp(ip->bytes, mapped, 12) == 0) {
        memmove(ip->bytes, ip->bytes + 12, 4);
        memset(ip->bytes + 4, 0, 12);
        ip->family = AF_INET;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mrd_pp_header h, first;
    enum mrd_pp_result prev = MRD_PP_NEED_MORE;
    const char *err;
    uint8_t *p;
    size_t n;

    if (size == 0)
        return 0;
    unsigned mode = data[0];
    n = size - 1;
    p = malloc(n ? n : 1); /* exact size: reading past n is an ASan error */
    REQUIRE(p != NULL);
    memcpy(p, data + 1, n);
    memset(&first, 0, sizeof(first));
    for (size_t i = 0; i <= n; i++) {
        enum mrd_pp_result r = mrd_pp_parse(p, i, &h, &err);

        REQUIRE(r == MRD_PP_ERROR || r == MRD_PP_NEED_MORE || r == MRD_PP_DONE);
        REQUIRE((r == MRD_PP_ERROR) == (err != NULL));
        if (prev == MRD_PP_ERROR)
            REQUIRE(r == MRD_PP_ERROR);
        if (prev == MRD_PP_DONE) {
            REQUIRE(r == MRD_PP_DONE && same_hdr(&h, &first));
            continue;
        }
        if (r == MRD_PP_NEED_MORE) {
            REQUIRE(i < MRD_PP_MAX);
            if (i > 0 && p[0] == 'P')
                REQUIRE(i < MRD_PP_V1_MAX);
        }
        if (r == MRD_PP_DONE) {
            check_done(p, i, &h);
            REQUIRE(h.len == i); /* it was NEED_MORE one byte before */
            first = h;
            if (h.proxy)
                roundtrip(&h.addrs);
        }
        prev = r;
        /* long inputs: after the first answer only the end matters */
        if (r == MRD_PP_ERROR && i + 1 < n)
            i = n - 1;
    }
    if (mode & 1) {
        struct reader rd = {data + 1, size - 1};
        struct mrd_pp_addrs a;
        memset(&a, 0, sizeof(a));
        take_ip(&rd, &a.src);
        take_ip(&rd, &a.dst);
        a.src_port = (uint16_t)(take_byte(&rd) << 8 | take_byte(&rd));
        a.dst_port = (uint16_t)(take_byte(&rd) << 8 | take_byte(&rd));
        if (mode & 2)
            memset(&a.dst, 0, sizeof(a.dst)); /* unknown: UNKNOWN / LOCAL */
        roundtrip(&a);
        roundtrip(NULL);
    }
    free(p);
    return 0;
}
