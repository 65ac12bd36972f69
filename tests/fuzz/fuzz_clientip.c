/*
 * fuzz_clientip.c: libFuzzer target for the client-address walk (clientip.c,
 * SPEC 3.1 and the README's "Client address" rule).
 *
 * Input: byte 0 picks the peer (trusted or not, IPv4 or IPv6), bytes 1-4 are
 * a mask saying which header entries (counted from the right) are trusted,
 * byte 5 how many bits those trusted prefixes are shortened by, byte 6 how
 * many field lines (1-4) the rest is cut into (cut points from bytes 7-9),
 * and the rest is the header text. Each line is an exact-size copy (an empty
 * one is sometimes passed as NULL).
 *
 * The harness parses the entries itself (its own splitter and entry-form
 * rules; mrd_ip_parse for the literal) and walks them by the rule as the
 * README states it, with a bit-by-bit CIDR match. Invariants: the answer
 * equals that reference; it is the peer or an address in the header; it is
 * a trusted proxy only when every address right of where the walk stopped
 * was trusted too; mrd_client_ip_trusted agrees with the reference match.
 */
#include "meridian/addr.h"
#include "meridian/clientip.h"
#include "meridian/config.h"

#include "fuzz_pure_common.h"

#define MAX_ENTRIES 512
#define MAX_TRUSTED 40

enum { E_EMPTY, E_ADDR, E_JUNK };

struct entry {
    int kind;
    struct mrd_ip ip;
};

static struct entry ents[MAX_ENTRIES];
static size_t n_ents;
static int overflow; /* more entries than the reference holds: skip the input */
static struct mrd_cidr trusted[MAX_TRUSTED];
static size_t n_trusted;

static int
ref_trusted(const struct mrd_ip *ip)
{
    for (size_t i = 0; i < n_trusted; i++)
        if (ref_match(&trusted[i], ip))
            return 1;
    return 0;
}

static int
port_ok(const char *s, size_t n)
{
    char buf[8];
    char *end;

    if (n == 0 || n > 5)
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (buf[i] < '0' || buf[i] > '9')
            return 0;
    return strtoul(buf, &end, 10) <= 65535;
}

/* one trimmed list element, by the forms clientip.h lists */
static int
ref_entry(const char *s, size_t n, struct mrd_ip *ip)
{
    size_t colons = 0, first = 0;

    if (s[0] == '[') {
        size_t close = 1;
        while (close < n && s[close] != ']')
            close++;
        if (close == n)
            return -1;
        if (memchr(s + 1, ':', close - 1) == NULL)
            return -1;
        if (close + 1 < n && (s[close + 1] != ':' || !port_ok(s + close + 2, n - close - 2)))
            return -1;
        return mrd_ip_parse(s + 1, close - 1, ip);
    }
    for (size_t i = 0; i < n; i++)
        if (s[i] == ':' && colons++ == 0)
            first = i;
    if (colons == 1) {
        if (!port_ok(s + first + 1, n - first - 1) || mrd_ip_parse(s, first, ip) != 0 || ip->family != AF_INET)
            return -1;
        return 0;
    }
    return mrd_ip_parse(s, n, ip);
}

static void
collect(const char *v, size_t len)
{
    size_t start = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && v[i] != ',')
            continue;
        size_t a = start, b = i;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
            b--;
        if (n_ents == MAX_ENTRIES)
            overflow = 1;
        else {
            struct entry *e = &ents[n_ents++];

            memset(e, 0, sizeof(*e));
            if (a == b)
                e->kind = E_EMPTY;
            else
                e->kind = ref_entry(v + a, b - a, &e->ip) == 0 ? E_ADDR : E_JUNK;
        }
        start = i + 1;
    }
}

static void
add_trusted(const struct mrd_ip *ip, unsigned shorten)
{
    struct mrd_cidr c;
    unsigned max = ip_bits(ip);

    if (n_trusted == MAX_TRUSTED)
        return;
    c.ip = *ip;
    shorten = ip->family == AF_INET ? shorten : shorten * 4;
    c.prefix = max - (shorten <= max ? shorten : max);
    for (unsigned i = c.prefix; i < max; i++)
        set_bit(c.ip.bytes, i, 0);
    trusted[n_trusted++] = c;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reader r = {data, size};
    static const char *const peers[4] = {"192.0.2.1", "10.255.255.1", "2001:db8:ff::1", "fd00::1"};
    unsigned pb = take_byte(&r), mask = 0, shorten, nv;
    size_t cuts[5], lens[4];
    char *vals[4];
    struct mrd_ip peer, out, want;
    struct mrd_client_ip_conf conf;

    for (int i = 0; i < 4; i++)
        mask |= take_byte(&r) << (8 * i);
    shorten = take_byte(&r) % 9;
    nv = take_byte(&r) % 4 + 1;
    unsigned cb[3];
    for (unsigned i = 0; i < 3; i++)
        cb[i] = take_byte(&r);
    cuts[0] = 0;
    for (unsigned i = 1; i < nv; i++)
        cuts[i] = cb[i - 1] % (r.n + 1);
    cuts[nv] = r.n;
    for (unsigned i = 1; i < nv; i++) /* sort the cut points */
        for (unsigned j = i; j > 1 && cuts[j] < cuts[j - 1]; j--) {
            size_t t = cuts[j];
            cuts[j] = cuts[j - 1];
            cuts[j - 1] = t;
        }

    n_ents = n_trusted = 0;
    overflow = 0;
    REQUIRE(mrd_ip_parse(peers[pb & 3], strlen(peers[pb & 3]), &peer) == 0);
    if (pb & 1)
        add_trusted(&peer, 0);
    for (unsigned i = 0; i < nv; i++) {
        lens[i] = cuts[i + 1] - cuts[i];
        vals[i] = lens[i] == 0 && (pb & 4) ? NULL : dup_cstr(r.p + cuts[i], lens[i]);
        if (vals[i] != NULL)
            collect(vals[i], lens[i]);
    }
    /* trusted entries by the mask, counted from the right */
    for (size_t k = 0, a = 0; k < n_ents; k++) {
        const struct entry *e = &ents[n_ents - 1 - k];
        if (e->kind != E_ADDR)
            continue;
        if (a < 32 && (mask >> a) & 1)
            add_trusted(&e->ip, shorten);
        a++;
    }
    if (overflow)
        goto done;
    memset(&conf, 0, sizeof(conf));
    conf.trusted_proxies = trusted;
    conf.n_trusted_proxies = n_trusted;
    conf.header = "X-Forwarded-For";

    REQUIRE(mrd_client_ip(&conf, &peer, (const char *const *)vals, lens, nv, &out) == 0);
    check_ip_shape(&out);

    /* the reference walk */
    want = peer;
    if (ref_trusted(&peer)) {
        for (size_t k = n_ents; k-- > 0;) {
            if (ents[k].kind == E_EMPTY)
                continue;
            if (ents[k].kind == E_JUNK)
                break;
            want = ents[k].ip;
            if (!ref_trusted(&want))
                break;
        }
    }
    REQUIRE(ip_equal(&out, &want));

    /* the answer is the peer or an address in the header */
    int found = ip_equal(&out, &peer);
    for (size_t k = 0; k < n_ents && !found; k++)
        found = ents[k].kind == E_ADDR && ip_equal(&ents[k].ip, &out);
    REQUIRE(found);

    /* a trusted answer: nothing untrusted right of where the walk stopped */
    REQUIRE(mrd_client_ip_trusted(&conf, &out) == ref_trusted(&out));
    if (ref_trusted(&out)) {
        for (size_t k = n_ents; k-- > 0 && ents[k].kind != E_JUNK;)
            if (ents[k].kind == E_ADDR)
                REQUIRE(ref_trusted(&ents[k].ip));
    }
    for (size_t k = 0; k < n_ents; k++)
        if (ents[k].kind == E_ADDR)
            REQUIRE(mrd_client_ip_trusted(&conf, &ents[k].ip) == ref_trusted(&ents[k].ip));

done:
    for (unsigned i = 0; i < nv; i++)
        free(vals[i]);
    return 0;
}
