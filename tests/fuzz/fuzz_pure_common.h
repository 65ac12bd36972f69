/*
 * fuzz_pure_common.h: what the pure parser targets (fuzz_addr, fuzz_clientip,
 * fuzz_config, fuzz_admin) share: REQUIRE, exact-size copies, a byte reader
 * over the input, and an independent bit-by-bit CIDR reference.
 */
#ifndef MERIDIAN_FUZZ_PURE_COMMON_H
#define MERIDIAN_FUZZ_PURE_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "meridian/addr.h"

#include "fuzz_require.h"


/* a NUL-terminated exact-size copy (so reading past n is an ASan error) */
static inline char *
dup_cstr(const void *in, size_t n)
{
    char *p = malloc(n + 1);
    REQUIRE(p != NULL);
    memcpy(p, in, n);
    p[n] = '\0';
    return p;
}

struct reader {
    const uint8_t *p;
    size_t n;
};

static inline unsigned
take_byte(struct reader *r)
{
    if (r->n == 0)
        return 0;
    r->n--;
    return *r->p++;
}

static inline void
take_bytes(struct reader *r, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)take_byte(r);
}

static inline unsigned
ip_bits(const struct mrd_ip *ip)
{
    return ip->family == AF_INET ? 32 : 128;
}

static inline int
bit_of(const uint8_t *b, unsigned i)
{
    return (b[i / 8] >> (7 - i % 8)) & 1;
}

static inline void
set_bit(uint8_t *b, unsigned i, int v)
{
    if (v)
        b[i / 8] |= (uint8_t)(0x80u >> (i % 8));
    else
        b[i / 8] &= (uint8_t)~(0x80u >> (i % 8));
}

/* reference match: same family, first prefix bits equal, one bit at a time */
static inline int
ref_match(const struct mrd_cidr *c, const struct mrd_ip *ip)
{
    if (c->ip.family != ip->family)
        return 0;
    for (unsigned i = 0; i < c->prefix; i++)
        if (bit_of(c->ip.bytes, i) != bit_of(ip->bytes, i))
            return 0;
    return 1;
}

/* fold ::ffff:a.b.c.d to a.b.c.d, as the parsers do */
static inline void
ref_fold(struct mrd_ip *ip)
{
    static const uint8_t pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (ip->family == AF_INET6 && memcmp(ip->bytes, pre, 12) == 0) {
        memmove(ip->bytes, ip->bytes + 12, 4);
        memset(ip->bytes + 4, 0, 12);
        ip->family = AF_INET;
    }
}

static inline int
ip_equal(const struct mrd_ip *a, const struct mrd_ip *b)
{
    return a->family == b->family && memcmp(a->bytes, b->bytes, 16) == 0;
}

/* a parsed address is normalised: a known family, unused bytes zero, no v4-mapped IPv6 */
static inline void
check_ip_shape(const struct mrd_ip *ip)
{
    static const uint8_t zero[16];
    struct mrd_ip f = *ip;

    REQUIRE(ip->family == AF_INET || ip->family == AF_INET6);
    if (ip->family == AF_INET)
        REQUIRE(memcmp(ip->bytes + 4, zero, 12) == 0);
    ref_fold(&f);
    REQUIRE(ip_equal(&f, ip));
}

#endif
