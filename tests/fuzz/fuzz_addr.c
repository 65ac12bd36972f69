/*
 * fuzz_addr.c: libFuzzer target for the address and CIDR parsers (addr.c)
 * and the geo.networks longest-prefix table (geo.c).
 *
 * The first byte picks the mode:
 *  - even: text. Every line is tried as an IP literal, a CIDR and a socket
 *    address. What parses must format and parse back to the same value
 *    (format twice gives the same text); a CIDR has its prefix in range and
 *    no host bits, contains its network and broadcast addresses and not the
 *    addresses just outside them.
 *  - odd: binary. 18-byte records (family, prefix, 16 address bytes) become
 *    CIDRs with host bits cleared; their text form must parse back to them.
 * Either way the CIDRs (up to 32) become a geo.networks table, and every
 * address seen (lines, network/broadcast/outside addresses, 17-byte probes
 * from the rest of the input) is located in it: the answer must be the
 * brute-force longest match, the first listed winning ties, and
 * mrd_cidr_match must agree with a bit-by-bit reference for every pair.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "meridian/addr.h"
#include "meridian/config.h"
#include "meridian/geo.h"

#include "fuzz_pure_common.h"

#define MAX_NETS 32
#define MAX_PROBES 256

static struct mrd_geo_network_conf nets[MAX_NETS];
static size_t n_nets;
static struct mrd_ip probes[MAX_PROBES];
static size_t n_probes;

static void
add_probe(const struct mrd_ip *ip)
{
    if (n_probes < MAX_PROBES) {
        probes[n_probes] = *ip;
        ref_fold(&probes[n_probes]);
        n_probes++;
    }
}

static void
check_ip_roundtrip(const struct mrd_ip *ip)
{
    char t1[MRD_IP_STRLEN], t2[MRD_IP_STRLEN];
    struct mrd_ip back;
    size_t n1, n2;

    check_ip_shape(ip);
    n1 = mrd_ip_format(ip, t1, sizeof(t1));
    REQUIRE(n1 > 0 && n1 < sizeof(t1) && strlen(t1) == n1);
    REQUIRE(mrd_ip_parse(t1, n1, &back) == 0);
    REQUIRE(ip_equal(&back, ip));
    n2 = mrd_ip_format(&back, t2, sizeof(t2));
    REQUIRE(n2 == n1 && memcmp(t1, t2, n1) == 0);
}

/* the address at the far end of c: every host bit set */
static struct mrd_ip
broadcast(const struct mrd_cidr *c)
{
    struct mrd_ip b = c->ip;

    for (unsigned i = c->prefix; i < ip_bits(&b); i++)
        set_bit(b.bytes, i, 1);
    return b;
}

/* ip + delta (+1 or -1) within its family; 0 when it wraps */
static int
step(struct mrd_ip *ip, int delta)
{
    unsigned nbytes = ip->family == AF_INET ? 4 : 16;

    for (unsigned i = nbytes; i-- > 0;) {
        unsigned v = ip->bytes[i];
        if (delta > 0) {
            ip->bytes[i] = (uint8_t)(v + 1);
            if (v != 0xff)
                return 1;
        } else {
            ip->bytes[i] = (uint8_t)(v - 1);
            if (v != 0)
                return 1;
        }
    }
    return 0;
}

static void
check_cidr(const struct mrd_cidr *c)
{
    unsigned max = ip_bits(&c->ip);
    char t[MRD_IP_STRLEN + 8];
    struct mrd_cidr back;
    const char *err = NULL;
    struct mrd_ip bc, out;

    check_ip_shape(&c->ip);
    REQUIRE(c->prefix <= max);
    for (unsigned i = c->prefix; i < max; i++)
        REQUIRE(bit_of(c->ip.bytes, i) == 0);
    /* format -> parse round trip */
    size_t n = mrd_ip_format(&c->ip, t, sizeof(t));
    REQUIRE(n > 0);
    snprintf(t + n, sizeof(t) - n, "/%u", c->prefix);
    REQUIRE(mrd_cidr_parse(t, &back, &err) == 0);
    REQUIRE(ip_equal(&back.ip, &c->ip) && back.prefix == c->prefix);
    /* inside: network and broadcast; outside: one step beyond each */
    bc = broadcast(c);
    REQUIRE(mrd_cidr_match(c, &c->ip) && ref_match(c, &c->ip));
    REQUIRE(mrd_cidr_match(c, &bc) && ref_match(c, &bc));
    add_probe(&c->ip);
    add_probe(&bc);
    if (c->prefix > 0) {
        out = c->ip;
        if (step(&out, -1)) {
            REQUIRE(!mrd_cidr_match(c, &out));
            add_probe(&out);
        }
        out = bc;
        if (step(&out, +1)) {
            REQUIRE(!mrd_cidr_match(c, &out));
            add_probe(&out);
        }
    } else {
        /* /0 matches everything of its family and nothing of the other */
        out = c->ip;
        out.bytes[0] ^= 0x5a;
        REQUIRE(mrd_cidr_match(c, &out));
    }
    out = c->ip;
    out.family = c->ip.family == AF_INET ? AF_INET6 : AF_INET;
    REQUIRE(!mrd_cidr_match(c, &out));
}

static void
add_net(const struct mrd_cidr *c)
{
    if (n_nets < MAX_NETS) {
        struct mrd_geo_network_conf *nw = &nets[n_nets];
        memset(nw, 0, sizeof(*nw));
        nw->cidr = *c;
        nw->country[0] = (char)('A' + n_nets / 26);
        nw->country[1] = (char)('A' + n_nets % 26);
        nw->has_location = 1;
        nw->latitude = (double)n_nets;
        n_nets++;
    }
}

static void
check_sockaddr(const char *line)
{
    struct sockaddr_storage ss, back;
    socklen_t sl, bl;
    const char *err = NULL;
    char t[MRD_IP_STRLEN + 16], t2[sizeof(t)];
    struct mrd_ip ip;

    if (mrd_sockaddr_parse(line, &ss, &sl, &err) != 0) {
        REQUIRE(err != NULL);
        return;
    }
    REQUIRE(ss.ss_family == AF_INET ? sl == sizeof(struct sockaddr_in) : sl == sizeof(struct sockaddr_in6));
    REQUIRE(mrd_ip_from_sockaddr((struct sockaddr *)&ss, &ip) == 0);
    check_ip_shape(&ip);
    size_t n = mrd_sockaddr_format((struct sockaddr *)&ss, t, sizeof(t));
    REQUIRE(n > 0 && strlen(t) == n);
    REQUIRE(mrd_sockaddr_parse(t, &back, &bl, &err) == 0);
    REQUIRE(bl == sl && memcmp(&back, &ss, sl) == 0);
    REQUIRE(mrd_sockaddr_format((struct sockaddr *)&back, t2, sizeof(t2)) == n && memcmp(t, t2, n) == 0);
    add_probe(&ip);
}

static void
text_mode(const uint8_t *data, size_t size)
{
    size_t pos = 0;

    while (pos < size) {
        const uint8_t *nl = memchr(data + pos, '\n', size - pos);
        size_t len = nl != NULL ? (size_t)(nl - (data + pos)) : size - pos;
        char *line = dup_cstr(data + pos, len);
        struct mrd_ip ip;
        struct mrd_cidr c;
        const char *err = NULL;

        pos += len + 1;
        if (mrd_ip_parse(line, len, &ip) == 0) {
            check_ip_roundtrip(&ip);
            add_probe(&ip);
        }
        if (memchr(line, '\0', len) == NULL) {
            if (mrd_cidr_parse(line, &c, &err) == 0) {
                check_cidr(&c);
                add_net(&c);
            } else {
                REQUIRE(err != NULL);
            }
            check_sockaddr(line);
        }
        free(line);
    }
}

static void
binary_mode(struct reader *r)
{
    while (r->n >= 18 && n_nets < MAX_NETS) {
        struct mrd_cidr want, got;
        char t[MRD_IP_STRLEN + 8];
        const char *err = NULL;
        unsigned fam = take_byte(r), pfx = take_byte(r), max;

        memset(&want, 0, sizeof(want));
        want.ip.family = fam & 1 ? AF_INET6 : AF_INET;
        max = ip_bits(&want.ip);
        want.prefix = pfx % (max + 1);
        take_bytes(r, want.ip.bytes, 16);
        for (unsigned i = want.prefix; i < 128; i++)
            set_bit(want.ip.bytes, i, 0);
        REQUIRE(inet_ntop(want.ip.family, want.ip.bytes, t, sizeof(t)) != NULL);
        snprintf(t + strlen(t), sizeof(t) - strlen(t), "/%u", want.prefix);
        /* a v4-mapped prefix reads back as IPv4, 96 bits shorter */
        struct mrd_cidr folded = want;
        ref_fold(&folded.ip);
        if (folded.ip.family != want.ip.family) {
            REQUIRE(want.prefix >= 96);
            folded.prefix -= 96;
        }
        REQUIRE(mrd_cidr_parse(t, &got, &err) == 0);
        REQUIRE(ip_equal(&got.ip, &folded.ip) && got.prefix == folded.prefix);
        check_cidr(&got);
        add_net(&got);
    }
    while (r->n >= 17) {
        struct mrd_ip ip;
        memset(&ip, 0, sizeof(ip));
        ip.family = take_byte(r) & 1 ? AF_INET6 : AF_INET;
        take_bytes(r, ip.bytes, 16);
        if (ip.family == AF_INET)
            memset(ip.bytes + 4, 0, 12);
        add_probe(&ip);
    }
}

static void
check_table(void)
{
    struct mrd_geo_conf conf;
    struct mrd_geo *g;
    const char *err = NULL;

    memset(&conf, 0, sizeof(conf));
    conf.networks = nets;
    conf.n_networks = n_nets;
    g = mrd_geo_new(&conf, &err);
    REQUIRE(g != NULL);
    for (size_t p = 0; p < n_probes; p++) {
        const struct mrd_ip *ip = &probes[p];
        struct mrd_location loc;
        long best = -1;

        for (size_t i = 0; i < n_nets; i++) {
            int m = ref_match(&nets[i].cidr, ip);
            REQUIRE(mrd_cidr_match(&nets[i].cidr, ip) == m);
            if (m && (best < 0 || nets[i].cidr.prefix > nets[best].cidr.prefix))
                best = (long)i;
        }
        mrd_geo_locate(g, ip, &loc);
        if (best < 0) {
            REQUIRE(loc.country[0] == '\0' && loc.source == MRD_GEO_UNKNOWN && !loc.known);
        } else {
            REQUIRE(memcmp(loc.country, nets[best].country, 3) == 0);
            REQUIRE(loc.source == MRD_GEO_NETWORK && loc.known && loc.latitude == (double)best);
        }
    }
    mrd_geo_free(g);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reader r = {data, size};

    n_nets = n_probes = 0;
    if (size == 0)
        return 0;
    if ((take_byte(&r) & 1) == 0)
        text_mode(r.p, r.n);
    else
        binary_mode(&r);
    check_table();
    return 0;
}
