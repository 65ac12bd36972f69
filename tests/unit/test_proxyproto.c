/*
 * test_proxyproto.c: the PROXY protocol parser and builder (proxyproto.c)
 * on hand-built byte vectors: v1 TCP4/TCP6/UNKNOWN, v2 IPv4/IPv6/LOCAL/
 * UNSPEC/UDP/unix with TLVs, every error path (signature, version, command,
 * truncation, 107-byte limit, addresses, ports, lengths), split input (every
 * prefix of a valid header is NEED_MORE) and the builder's exact bytes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "meridian/proxyproto.h"

#define SIG "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"
#define SIGLEN 12

static struct mrd_ip
ip_of(const char *s)
{
    struct mrd_ip ip;
    if (mrd_ip_parse(s, strlen(s), &ip) != 0)
        fail_msg("bad test address %s", s);
    return ip;
}

static int
ip_is(const struct mrd_ip *ip, const char *s)
{
    struct mrd_ip want = ip_of(s);
    return ip->family == want.family && memcmp(ip->bytes, want.bytes, 16) == 0;
}

/* every proper prefix needs more, the whole is DONE with len == n */
static void
check_prefixes(const uint8_t *p, size_t n)
{
    struct mrd_pp_header h;
    const char *err;

    for (size_t i = 0; i < n; i++) {
        enum mrd_pp_result r = mrd_pp_parse(p, i, &h, &err);
        if (r != MRD_PP_NEED_MORE)
            fail_msg("prefix %zu of %zu: %d (%s)", i, n, r, err ? err : "");
    }
}

static void
test_v1_tcp4(void **state)
{
    static const char line[] = "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\nGET / HTTP/1.1\r\n";
    struct mrd_pp_header h;
    const char *err;

    assert_int_equal(mrd_pp_parse((const uint8_t *)line, sizeof(line) - 1, &h, &err), MRD_PP_DONE);
    assert_int_equal(h.len, 45);
    assert_int_equal(h.version, 1);
    assert_int_equal(h.proxy, 1);
    assert_int_equal(h.family, AF_INET);
    assert_true(ip_is(&h.addrs.src, "192.0.2.1"));
    assert_true(ip_is(&h.addrs.dst, "198.51.100.7"));
    assert_int_equal(h.addrs.src_port, 56324);
    assert_int_equal(h.addrs.dst_port, 443);
    check_prefixes((const uint8_t *)line, 45);
    /* exactly the header: DONE too (the CRLF is in) */
    assert_int_equal(mrd_pp_parse((const uint8_t *)line, 45, &h, &err), MRD_PP_DONE);
}

static void
test_v1_tcp6_unknown(void **state)
{
    static const char l6[] = "PROXY TCP6 2001:db8::1 ::1 0 65535\r\n";
    static const char lmapped[] = "PROXY TCP6 ::ffff:203.0.113.9 ::1 1 2\r\n";
    static const char u1[] = "PROXY UNKNOWN\r\n";
    static const char u2[] = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    struct mrd_pp_header h;
    const char *err;

    assert_int_equal(mrd_pp_parse((const uint8_t *)l6, sizeof(l6) - 1, &h, &err), MRD_PP_DONE);
    assert_int_equal(h.family, AF_INET6);
    assert_true(ip_is(&h.addrs.src, "2001:db8::1"));
    assert_true(ip_is(&h.addrs.dst, "::1"));
    assert_int_equal(h.addrs.src_port, 0);
    assert_int_equal(h.addrs.dst_port, 65535);
    check_prefixes((const uint8_t *)l6, sizeof(l6) - 1);
    assert_int_equal(mrd_pp_parse((const uint8_t *)lmapped, sizeof(lmapped) - 1, &h, &err), MRD_PP_DONE);
    assert_int_equal(h.addrs.src.family, AF_INET); /* folded */
    assert_true(ip_is(&h.addrs.src, "203.0.113.9"));

    assert_int_equal(mrd_pp_parse((const uint8_t *)u1, 15, &h, &err), MRD_PP_DONE);
    assert_int_equal(h.len, 15);
    assert_int_equal(h.proxy, 0);
    assert_int_equal(h.family, AF_UNSPEC);
    check_prefixes((const uint8_t *)u1, 15);
    assert_int_equal(mrd_pp_parse((const uint8_t *)u2, sizeof(u2) - 1, &h, &err), MRD_PP_DONE);
    assert_int_equal(h.len, sizeof(u2) - 1);
    assert_int_equal(h.proxy, 0);
}

static void
test_v1_errors(void **state)
{
    static const struct {
        const char *in;
        const char *why;
    } cases[] = {
        {"GET / HTTP/1.1\r\n", "not a PROXY protocol header"},
        {"PROXZ", "not a PROXY protocol header"},
        {"PROXY\r\n", "not a PROXY protocol header"},
        {"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", "PROXY v1: unknown protocol (expected TCP4, TCP6 or UNKNOWN)"},
        {"PROXY UNKNOWNX\r\n", "PROXY v1: unknown protocol (expected TCP4, TCP6 or UNKNOWN)"},
        {"PROXY tcp4 ", "PROXY v1: unknown protocol (expected TCP4, TCP6 or UNKNOWN)"},
        {"PROXY TCP\r\n", "PROXY v1: truncated line"},
        {"PROXY UNKN\r\n", "PROXY v1: truncated line"},
        {"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "PROXY v1: empty field (double space)"},
        {"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "PROXY v1: empty field (double space)"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "PROXY v1: too many fields"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "PROXY v1: too many fields"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "PROXY v1: expected source and destination addresses and ports"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "PROXY v1: expected source and destination addresses and ports"},
        {"PROXY TCP4 1.2.3.4\r\n", "PROXY v1: expected source and destination addresses and ports"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "PROXY v1: line feed without carriage return"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "PROXY v1: carriage return without line feed"},
        {"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", "PROXY v1: invalid character"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "PROXY v1: invalid character"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "PROXY v1: invalid character"},
        {"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "PROXY v1: bad source IPv4 address"},
        {"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "PROXY v1: bad source IPv4 address"},
        {"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "PROXY v1: bad source IPv4 address"},
        {"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "PROXY v1: bad source IPv4 address"},
        {"PROXY TCP4 1.2.3.4 5.6.7 1 2\r\n", "PROXY v1: bad destination IPv4 address"},
        {"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "PROXY v1: bad source IPv6 address"},
        {"PROXY TCP6 ::1 ::g 1 2\r\n", "PROXY v1: invalid character"},
        {"PROXY TCP6 ::1 1:2:3:4:5:6:7:8:9 1 2\r\n", "PROXY v1: bad destination IPv6 address"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "PROXY v1: bad source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "PROXY v1: bad source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n", "PROXY v1: bad source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1.5 2\r\n", "PROXY v1: bad source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "PROXY v1: bad destination port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", "PROXY v1: bad destination port"},
    };
    struct mrd_pp_header h;
    const char *err;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = strlen(cases[i].in);
        if (mrd_pp_parse((const uint8_t *)cases[i].in, n, &h, &err) != MRD_PP_ERROR)
            fail_msg("case %zu (%s) parsed", i, cases[i].in);
        if (err == NULL || strcmp(err, cases[i].why) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, err ? err : "(null)", cases[i].why);
    }
}

static void
test_v1_length_limit(void **state)
{
    /* the longest possible: TCP6 with two 39-character addresses and 5-digit ports = 104 bytes */
    char line[256];
    struct mrd_pp_header h;
    const char *err;
    int n = snprintf(line, sizeof(line), "PROXY TCP6 %s %s 65535 65535\r\n", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");

    assert_int_equal(n, 104);
    assert_int_equal(mrd_pp_parse((uint8_t *)line, (size_t)n, &h, &err), MRD_PP_DONE);
    /* UNKNOWN lines fill up to 107 bytes: 105 bytes then CRLF is fine */
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + 105, "\r\n", 2);
    assert_int_equal(mrd_pp_parse((uint8_t *)line, 107, &h, &err), MRD_PP_DONE);
    assert_int_equal(h.len, 107);
    /* one byte more: the CRLF would end at 108 */
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + 106, "\r\n", 2);
    assert_int_equal(mrd_pp_parse((uint8_t *)line, 108, &h, &err), MRD_PP_ERROR);
    assert_string_equal(err, "PROXY v1: no CRLF within 107 bytes");
    /* 106 bytes without a CR can no longer end in time: rejected without waiting */
    assert_int_equal(mrd_pp_parse((uint8_t *)line, 106, &h, &err), MRD_PP_ERROR);
    assert_string_equal(err, "PROXY v1: no CRLF within 107 bytes");
    assert_int_equal(mrd_pp_parse((uint8_t *)line, 105, &h, &err), MRD_PP_NEED_MORE);
    /* a long stream of garbage: same answer, only 107 bytes looked at */
    assert_int_equal(mrd_pp_parse((uint8_t *)line, sizeof(line), &h, &err), MRD_PP_ERROR);
    assert_string_equal(err, "PROXY v1: no CRLF within 107 bytes");
}

/* a v2 header: cmd/ver byte, family, then body bytes */
static size_t
v2(uint8_t *out, uint8_t vc, uint8_t fam, const void *body, size_t blen)
{
    memcpy(out, SIG, SIGLEN);
    out[12] = vc;
    out[13] = fam;
    out[14] = (uint8_t)(blen >> 8);
    out[15] = (uint8_t)blen;
    if (blen > 0)
        memcpy(out + 16, body, blen);
    return 16 + blen;
}

static void
test_v2_inet(void **state)
{
    static const uint8_t b4[] = {192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb};
    /* IPv4 plus two TLVs (ALPN "h2", NOOP of 0 bytes) */
    static const uint8_t b4tlv[] = {10, 0, 0, 1, 10, 0, 0, 2, 0, 80, 0, 81, 0x01, 0, 2, 'h', '2', 0x04, 0, 0};
    uint8_t b6[36], buf[256];
    struct mrd_pp_header h;
    const char *err;
    size_t n = v2(buf, 0x21, 0x11, b4, sizeof(b4));

    memcpy(buf + n, "GET", 3);
    assert_int_equal(mrd_pp_parse(buf, n + 3, &h, &err), MRD_PP_DONE);
    assert_int_equal(h.len, 28);
    assert_int_equal(h.version, 2);
    assert_int_equal(h.proxy, 1);
    assert_int_equal(h.family, AF_INET);
    assert_true(ip_is(&h.addrs.src, "192.0.2.1"));
    assert_true(ip_is(&h.addrs.dst, "198.51.100.7"));
    assert_int_equal(h.addrs.src_port, 56324);
    assert_int_equal(h.addrs.dst_port, 443);
    check_prefixes(buf, n);

    n = v2(buf, 0x21, 0x11, b4tlv, sizeof(b4tlv));
    assert_int_equal(mrd_pp_parse(buf, n, &h, &err), MRD_PP_DONE);
    assert_int_equal(h.len, 36);
    assert_int_equal(h.addrs.src_port, 80);
    assert_int_equal(h.addrs.dst_port, 81);

    memset(b6, 0, sizeof(b6));
    inet_pton(AF_INET6, "2001:db8::5", b6);
    inet_pton(AF_INET6, "::ffff:192.0.2.9", b6 + 16);
    b6[32] = 0x12, b6[33] = 0x34, b6[34] = 0xff, b6[35] = 0xff;
    n = v2(buf, 0x21, 0x21, b6, sizeof(b6));
    assert_int_equal(mrd_pp_parse(buf, n, &h, &err), MRD_PP_DONE);
    assert_int_equal(h.len, 52);
    assert_int_equal(h.family, AF_INET6);
    assert_true(ip_is(&h.addrs.src, "2001:db8::5"));
    assert_int_equal(h.addrs.dst.family, AF_INET); /* v4-mapped folded */
    assert_true(ip_is(&h.addrs.dst, "192.0.2.9"));
    assert_int_equal(h.addrs.src_port, 0x1234);
    assert_int_equal(h.addrs.dst_port, 65535);
    check_prefixes(buf, n);
}

static void
test_v2_local_and_other_families(void **state)
{
    static const uint8_t b4[] = {192, 0, 2, 1, 198, 51, 100, 7, 0, 1, 0, 2};
    static const uint8_t junk[216] = {1, 2, 3};
    static const uint8_t fams[] = {0x00, 0x12, 0x22, 0x31, 0x32, 0x11};
    uint8_t buf[512];
    struct mrd_pp_header h;
    const char *err;
    size_t n;

    /* LOCAL with nothing, and LOCAL carrying addresses: the peer stays */
    n = v2(buf, 0x20, 0x00, NULL, 0);
    assert_int_equal(mrd_pp_parse(buf, n, &h, &err), MRD_PP_DONE);
    assert_int_equal(h.len, 16);
    assert_int_equal(h.proxy, 0);
    assert_int_equal(h.family, AF_UNSPEC);
    n = v2(buf, 0x20, 0x11, b4, sizeof(b4));
    assert_int_equal(mrd_pp_parse(buf, n, &h, &err), MRD_PP_DONE);
    assert_int_equal(h.len, 28);
    assert_int_equal(h.proxy, 0);
    /* PROXY over UNSPEC, UDP, unix sockets (HAProxy keeps the real addresses); LOCAL for 0x11 */
    for (size_t i = 0; i < sizeof(fams); i++) {
        n = v2(buf, i + 1 < sizeof(fams) ? 0x21 : 0x20, fams[i], junk, sizeof(junk));
        assert_int_equal(mrd_pp_parse(buf, n, &h, &err), MRD_PP_DONE);
        assert_int_equal(h.len, 16 + sizeof(junk));
        assert_int_equal(h.proxy, 0);
        assert_int_equal(h.family, AF_UNSPEC);
    }
}

static void
test_v2_errors(void **state)
{
    static const uint8_t b4[] = {192, 0, 2, 1, 198, 51, 100, 7, 0, 1, 0, 2};
    uint8_t buf[512];
    struct mrd_pp_header h;
    const char *err;
    size_t n;

    /* signature: one wrong byte anywhere in the 12 */
    for (size_t i = 0; i < SIGLEN; i++) {
        n = v2(buf, 0x21, 0x11, b4, sizeof(b4));
        buf[i] ^= 0x40;
        assert_int_equal(mrd_pp_parse(buf, i + 1, &h, &err), MRD_PP_ERROR);
        assert_string_equal(err, "not a PROXY protocol header");
    }
    /* version 1 and 3 in the binary form */
    n = v2(buf, 0x11, 0x11, b4, sizeof(b4));
    assert_int_equal(mrd_pp_parse(buf, 13, &h, &err), MRD_PP_ERROR);
    assert_string_equal(err, "PROXY v2: unsupported version");
    n = v2(buf, 0x31, 0x11, b4, sizeof(b4));
    assert_int_equal(mrd_pp_parse(buf, n, &h, &err), MRD_PP_ERROR);
    assert_string_equal(err, "PROXY v2: unsupported version");
    n = v2(buf, 0x22, 0x11, b4, sizeof(b4));
    assert_int_equal(mrd_pp_parse(buf, 13, &h, &err), MRD_PP_ERROR);
    assert_string_equal(err, "PROXY v2: unknown command");
    n = v2(buf, 0x2f, 0x11, b4, sizeof(b4));
    assert_int_equal(mrd_pp_parse(buf, n, &h, &err), MRD_PP_ERROR);
    assert_string_equal(err, "PROXY v2: unknown command");
    /* length below the address block */
    n = v2(buf, 0x21, 0x11, b4, 11);
    assert_int_equal(mrd_pp_parse(buf, 16, &h, &err), MRD_PP_ERROR);
    assert_string_equal(err, "PROXY v2: length shorter than the address block");
    n = v2(buf, 0x21, 0x21, b4, 12); /* IPv6 needs 36 */
    assert_int_equal(mrd_pp_parse(buf, n, &h, &err), MRD_PP_ERROR);
    assert_string_equal(err, "PROXY v2: length shorter than the address block");
    /* length overflow: 16 + 4081 > 4096, known as soon as the length is in */
    memcpy(buf, SIG, SIGLEN);
    buf[12] = 0x21, buf[13] = 0x11, buf[14] = 0x0f, buf[15] = 0xf1;
    assert_int_equal(mrd_pp_parse(buf, 16, &h, &err), MRD_PP_ERROR);
    assert_string_equal(err, "PROXY v2: header longer than 4096 bytes");
    buf[14] = 0xff, buf[15] = 0xff;
    assert_int_equal(mrd_pp_parse(buf, 16, &h, &err), MRD_PP_ERROR);
    buf[14] = 0x0f, buf[15] = 0xf0; /* 4096 exactly: waits for the bytes */
    assert_int_equal(mrd_pp_parse(buf, 16, &h, &err), MRD_PP_NEED_MORE);
    /* truncated: every prefix waits (checked in test_v2_inet); TLVs must fit */
    {
        uint8_t body[32];
        memcpy(body, b4, 12);
        body[12] = 0x01, body[13] = 0, body[14] = 3, body[15] = 'h', body[16] = '2'; /* says 3, has 2 */
        n = v2(buf, 0x21, 0x11, body, 17);
        assert_int_equal(mrd_pp_parse(buf, n, &h, &err), MRD_PP_ERROR);
        assert_string_equal(err, "PROXY v2: TLV longer than the header");
        body[14] = 2;
        n = v2(buf, 0x21, 0x11, body, 19); /* a TLV, then 2 stray bytes */
        body[17] = 0x04, body[18] = 0;
        n = v2(buf, 0x21, 0x11, body, 19);
        assert_int_equal(mrd_pp_parse(buf, n, &h, &err), MRD_PP_ERROR);
        assert_string_equal(err, "PROXY v2: truncated TLV");
        n = v2(buf, 0x21, 0x11, body, 17);
        assert_int_equal(mrd_pp_parse(buf, n, &h, &err), MRD_PP_DONE);
    }
    /* neither signature's first byte */
    buf[0] = 0x16; /* a TLS ClientHello */
    assert_int_equal(mrd_pp_parse(buf, 1, &h, &err), MRD_PP_ERROR);
    assert_string_equal(err, "not a PROXY protocol header");
    assert_int_equal(mrd_pp_parse(buf, 0, &h, &err), MRD_PP_NEED_MORE);
}

static void
test_build(void **state)
{
    static const uint8_t want_v2_4[] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
                                        0x21, 0x11, 0x00, 0x0C, 192, 0, 2, 1, 127, 0, 0, 1, 0xdc, 0x04, 0x1f, 0x90};
    static const uint8_t want_local[] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                                         0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00};
    struct mrd_pp_addrs a = {ip_of("192.0.2.1"), ip_of("127.0.0.1"), 56324, 8080};
    struct mrd_pp_header h;
    uint8_t out[MRD_PP_BUILD_MAX];
    const char *err;
    size_t n;

    n = mrd_pp_build(1, &a, out, sizeof(out));
    assert_int_equal(n, strlen("PROXY TCP4 192.0.2.1 127.0.0.1 56324 8080\r\n"));
    assert_memory_equal(out, "PROXY TCP4 192.0.2.1 127.0.0.1 56324 8080\r\n", n);
    n = mrd_pp_build(2, &a, out, sizeof(out));
    assert_int_equal(n, sizeof(want_v2_4));
    assert_memory_equal(out, want_v2_4, n);
    /* IPv6, and mixed families written as IPv6 */
    a.src = ip_of("2001:db8::1");
    a.dst = ip_of("::1");
    n = mrd_pp_build(1, &a, out, sizeof(out));
    assert_memory_equal(out, "PROXY TCP6 2001:db8::1 ::1 56324 8080\r\n", n);
    n = mrd_pp_build(2, &a, out, sizeof(out));
    assert_int_equal(n, 52);
    assert_int_equal(out[13], 0x21);
    assert_int_equal(out[15], 36);
    assert_int_equal(out[16], 0x20);
    assert_int_equal(out[17], 0x01);
    assert_int_equal(out[47], 1);
    assert_int_equal(out[48], 0xdc);
    assert_int_equal(out[51], 0x90);
    a.dst = ip_of("127.0.0.1");
    n = mrd_pp_build(1, &a, out, sizeof(out));
    assert_memory_equal(out, "PROXY TCP6 2001:db8::1 ::ffff:127.0.0.1 56324 8080\r\n", n);
    /* whatever is built parses back to the same addresses */
    for (int v = 1; v <= 2; v++) {
        n = mrd_pp_build(v, &a, out, sizeof(out));
        assert_int_equal(mrd_pp_parse(out, n, &h, &err), MRD_PP_DONE);
        assert_int_equal(h.len, n);
        assert_true(ip_is(&h.addrs.src, "2001:db8::1"));
        assert_true(ip_is(&h.addrs.dst, "127.0.0.1"));
        assert_int_equal(h.addrs.src_port, 56324);
        assert_int_equal(h.addrs.dst_port, 8080);
    }
    /* health checks: no addresses */
    n = mrd_pp_build(1, NULL, out, sizeof(out));
    assert_int_equal(n, 15);
    assert_memory_equal(out, "PROXY UNKNOWN\r\n", 15);
    n = mrd_pp_build(2, NULL, out, sizeof(out));
    assert_int_equal(n, sizeof(want_local));
    assert_memory_equal(out, want_local, n);
    memset(&a.src, 0, sizeof(a.src));
    assert_int_equal(mrd_pp_build(2, &a, out, sizeof(out)), 16);
    /* bad version or buffer */
    assert_int_equal(mrd_pp_build(3, NULL, out, sizeof(out)), 0);
    assert_int_equal(mrd_pp_build(1, NULL, out, 20), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp6_unknown),
        cmocka_unit_test(test_v1_errors),
        cmocka_unit_test(test_v1_length_limit),
        cmocka_unit_test(test_v2_inet),
        cmocka_unit_test(test_v2_local_and_other_families),
        cmocka_unit_test(test_v2_errors),
        cmocka_unit_test(test_build),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
