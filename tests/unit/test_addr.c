/*
 * test_addr.c: table-driven tests of IP, "ip:port" and CIDR parsing, CIDR
 * matching at the /0, /32, /128 and mid-byte edges, IPv4-mapped folding and
 * the text forms. Pure: no sockets are opened.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "meridian/addr.h"

#define CHECK(cond, name)                                                                                      \
    do {                                                                                                       \
        if (!(cond))                                                                                           \
            fail_msg("case \"%s\": check failed: %s (line %d)", (name), #cond, __LINE__);                    \
    } while (0)

/* ---- mrd_ip_parse ---- */

static void
test_ip_parse(void **state)
{
    static const struct {
        const char *in;
        int family; /* 0 = must be rejected */
        const char *text;
    } cases[] = {
        {"1.2.3.4", AF_INET, "1.2.3.4"},
        {"0.0.0.0", AF_INET, "0.0.0.0"},
        {"255.255.255.255", AF_INET, "255.255.255.255"},
        {"::1", AF_INET6, "::1"},
        {"::", AF_INET6, "::"},
        {"2001:DB8::a", AF_INET6, "2001:db8::a"},
        {"::ffff:10.0.0.1", AF_INET, "10.0.0.1"}, /* v4-mapped folds to IPv4 */
        {"::ffff:a00:1", AF_INET, "10.0.0.1"},
        {"::10.0.0.1", AF_INET6, "::10.0.0.1"}, /* v4-compatible is not mapped */
        {"", 0, NULL},
        {"1.2.3", 0, NULL},
        {"1.2.3.256", 0, NULL},
        {"01.2.3.4", 0, NULL},
        {"1.2.3.4 ", 0, NULL},
        {" 1.2.3.4", 0, NULL},
        {"[::1]", 0, NULL},
        {"fe80::1%eth0", 0, NULL},
        {"::g", 0, NULL},
        {"1:2:3:4:5:6:7:8:9", 0, NULL},
        {"localhost", 0, NULL},
        {"1.2.3.4/32", 0, NULL},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mrd_ip ip;
        char buf[MRD_IP_STRLEN];
        int rc = mrd_ip_parse(cases[i].in, strlen(cases[i].in), &ip);

        if (cases[i].family == 0) {
            CHECK(rc == -1, cases[i].in);
            continue;
        }
        CHECK(rc == 0, cases[i].in);
        CHECK(ip.family == cases[i].family, cases[i].in);
        CHECK(mrd_ip_format(&ip, buf, sizeof(buf)) == strlen(cases[i].text), cases[i].in);
        CHECK(strcmp(buf, cases[i].text) == 0, cases[i].in);
    }
}

static void
test_ip_parse_length_and_bytes(void **state)
{
    struct mrd_ip ip;
    const char embedded[] = "1.2.3.4\0junk";

    /* only len bytes are read */
    assert_int_equal(mrd_ip_parse("10.0.0.1:80", 8, &ip), 0);
    assert_int_equal(ip.family, AF_INET);
    assert_memory_equal(ip.bytes, ((uint8_t[]){10, 0, 0, 1}), 4);
    /* IPv4 leaves the other 12 bytes zero, so structs compare with memcmp */
    for (int i = 4; i < 16; i++)
        assert_int_equal(ip.bytes[i], 0);
    assert_int_equal(mrd_ip_parse(embedded, sizeof(embedded) - 1, &ip), -1);
    assert_int_equal(mrd_ip_parse("::1", 0, &ip), -1);
    /* longer than any literal */
    assert_int_equal(mrd_ip_parse("1111:2222:3333:4444:5555:6666:7777:8888:9999:0000", 49, &ip), -1);
}

/* ---- mrd_sockaddr_parse ---- */

static void
test_sockaddr_parse(void **state)
{
    static const struct {
        const char *in;
        int family; /* 0 = rejected */
        unsigned port;
        const char *text; /* mrd_sockaddr_format of the result */
    } cases[] = {
        {"127.0.0.1:80", AF_INET, 80, "127.0.0.1:80"},
        {"0.0.0.0:65535", AF_INET, 65535, "0.0.0.0:65535"},
        {"10.0.0.1:1", AF_INET, 1, "10.0.0.1:1"},
        {"[::1]:8080", AF_INET6, 8080, "[::1]:8080"},
        {"[::]:443", AF_INET6, 443, "[::]:443"},
        {"[2001:db8::1]:9901", AF_INET6, 9901, "[2001:db8::1]:9901"},
        {"[::ffff:127.0.0.1]:80", AF_INET, 80, "127.0.0.1:80"}, /* mapped folds to IPv4 */
        {"127.0.0.1:0", 0, 0, NULL},
        {"127.0.0.1:65536", 0, 0, NULL},
        {"127.0.0.1:123456", 0, 0, NULL},
        {"127.0.0.1:", 0, 0, NULL},
        {"127.0.0.1", 0, 0, NULL},
        {"127.0.0.1:+80", 0, 0, NULL},
        {"127.0.0.1:-1", 0, 0, NULL},
        {"127.0.0.1:8o", 0, 0, NULL},
        {":80", 0, 0, NULL},
        {"localhost:80", 0, 0, NULL},
        {"*:80", 0, 0, NULL},
        {"::1:80", 0, 0, NULL},   /* IPv6 needs brackets */
        {"[::1]80", 0, 0, NULL},  /* ':' must follow ']' */
        {"[::1:80", 0, 0, NULL},  /* no ']' */
        {"[::1]:", 0, 0, NULL},   /* no port */
        {"[]:80", 0, 0, NULL},    /* empty brackets */
        {"[1.2.3.4]:80", 0, 0, NULL}, /* brackets are only for IPv6 */
        {"[::1]]:80", 0, 0, NULL},
        {"", 0, 0, NULL},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage ss;
        socklen_t len = 0;
        const char *err = NULL;
        char buf[64];
        int rc = mrd_sockaddr_parse(cases[i].in, &ss, &len, &err);

        if (cases[i].family == 0) {
            CHECK(rc == -1, cases[i].in);
            CHECK(err != NULL && *err != '\0', cases[i].in);
            continue;
        }
        CHECK(rc == 0, cases[i].in);
        CHECK(ss.ss_family == cases[i].family, cases[i].in);
        if (cases[i].family == AF_INET) {
            CHECK(len == sizeof(struct sockaddr_in), cases[i].in);
            CHECK(ntohs(((struct sockaddr_in *)&ss)->sin_port) == cases[i].port, cases[i].in);
        } else {
            CHECK(len == sizeof(struct sockaddr_in6), cases[i].in);
            CHECK(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) == cases[i].port, cases[i].in);
        }
        CHECK(mrd_sockaddr_format((struct sockaddr *)&ss, buf, sizeof(buf)) == strlen(cases[i].text), cases[i].in);
        CHECK(strcmp(buf, cases[i].text) == 0, cases[i].in);
    }
}

static void
test_sockaddr_parse_errors(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len;
    const char *err;

    assert_int_equal(mrd_sockaddr_parse("::1:80", &ss, &len, &err), -1);
    assert_non_null(strstr(err, "brackets"));
    assert_int_equal(mrd_sockaddr_parse("127.0.0.1:0", &ss, &len, &err), -1);
    assert_non_null(strstr(err, "1 to 65535"));
    assert_int_equal(mrd_sockaddr_parse("example.com:80", &ss, &len, &err), -1);
    assert_non_null(strstr(err, "not an IP address"));
}

/* ---- mrd_cidr_parse ---- */

static void
test_cidr_parse(void **state)
{
    static const struct {
        const char *in;
        int ok;
        int family;
        unsigned prefix;
        const char *net;
        const char *err; /* substring of the error */
    } cases[] = {
        {"10.0.0.0/8", 1, AF_INET, 8, "10.0.0.0", NULL},
        {"0.0.0.0/0", 1, AF_INET, 0, "0.0.0.0", NULL},
        {"1.2.3.4/32", 1, AF_INET, 32, "1.2.3.4", NULL},
        {"1.2.3.4", 1, AF_INET, 32, "1.2.3.4", NULL}, /* bare address = host prefix */
        {"10.128.0.0/9", 1, AF_INET, 9, "10.128.0.0", NULL},
        {"::/0", 1, AF_INET6, 0, "::", NULL},
        {"::1", 1, AF_INET6, 128, "::1", NULL},
        {"::1/128", 1, AF_INET6, 128, "::1", NULL},
        {"2001:db8::/32", 1, AF_INET6, 32, "2001:db8::", NULL},
        {"::ffff:10.0.0.0/104", 1, AF_INET, 8, "10.0.0.0", NULL}, /* mapped: prefix - 96 */
        {"::ffff:10.1.2.3", 1, AF_INET, 32, "10.1.2.3", NULL},
        {"10.1.2.3/16", 0, 0, 0, NULL, "host bits"},
        {"10.0.0.1/31", 0, 0, 0, NULL, "host bits"},
        {"1.0.0.0/0", 0, 0, 0, NULL, "host bits"},
        {"::1/127", 0, 0, 0, NULL, "host bits"},
        {"2001:db8::1/64", 0, 0, 0, NULL, "host bits"},
        {"10.0.0.0/33", 0, 0, 0, NULL, "0..32"},
        {"::/129", 0, 0, 0, NULL, "0..128"},
        {"10.0.0.0/", 0, 0, 0, NULL, "prefix"},
        {"10.0.0.0/-1", 0, 0, 0, NULL, "prefix"},
        {"10.0.0.0/8/8", 0, 0, 0, NULL, "prefix"},
        {"10.0.0.0/ 8", 0, 0, 0, NULL, "prefix"},
        {"10.0.0.0/1000", 0, 0, 0, NULL, "prefix"},
        {"/8", 0, 0, 0, NULL, "not an IP"},
        {"10.0.0/8", 0, 0, 0, NULL, "not an IP"},
        {"", 0, 0, 0, NULL, "not an IP"},
        {"::ffff:0.0.0.0/95", 0, 0, 0, NULL, "/96"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mrd_cidr c;
        const char *err = NULL;
        char buf[MRD_IP_STRLEN];
        int rc = mrd_cidr_parse(cases[i].in, &c, &err);

        if (!cases[i].ok) {
            CHECK(rc == -1, cases[i].in);
            CHECK(err != NULL && strstr(err, cases[i].err) != NULL, cases[i].in);
            continue;
        }
        CHECK(rc == 0, cases[i].in);
        CHECK(c.ip.family == cases[i].family, cases[i].in);
        CHECK(c.prefix == cases[i].prefix, cases[i].in);
        mrd_ip_format(&c.ip, buf, sizeof(buf));
        CHECK(strcmp(buf, cases[i].net) == 0, cases[i].in);
    }
}

/* ---- mrd_cidr_match ---- */

static void
test_cidr_match(void **state)
{
    static const struct {
        const char *cidr, *ip;
        int match;
    } cases[] = {
        {"0.0.0.0/0", "1.2.3.4", 1},
        {"0.0.0.0/0", "255.255.255.255", 1},
        {"0.0.0.0/0", "0.0.0.0", 1},
        {"0.0.0.0/0", "::1", 0}, /* families must agree */
        {"::/0", "::1", 1},
        {"::/0", "ffff::1", 1},
        {"::/0", "1.2.3.4", 0},
        {"::/0", "::ffff:1.2.3.4", 0}, /* folded to IPv4 first */
        {"1.2.3.4/32", "1.2.3.4", 1},
        {"1.2.3.4/32", "1.2.3.5", 0},
        {"1.2.3.4", "1.2.3.4", 1},
        {"1.2.3.4", "::ffff:1.2.3.4", 1},
        {"::1/128", "::1", 1},
        {"::1/128", "::2", 0},
        {"::1/128", "1.0.0.0", 0},
        {"10.0.0.0/8", "10.255.255.255", 1},
        {"10.0.0.0/8", "11.0.0.0", 0},
        {"10.0.0.0/8", "9.255.255.255", 0},
        {"10.0.0.0/8", "::ffff:10.9.9.9", 1},
        {"10.0.0.0/9", "10.127.255.255", 1}, /* mid-byte prefix */
        {"10.0.0.0/9", "10.128.0.0", 0},
        {"10.128.0.0/9", "10.128.0.0", 1},
        {"192.168.1.0/31", "192.168.1.1", 1},
        {"192.168.1.0/31", "192.168.1.2", 0},
        {"128.0.0.0/1", "128.0.0.1", 1},
        {"128.0.0.0/1", "127.255.255.255", 0},
        {"2001:db8::/32", "2001:db8:ffff::1", 1},
        {"2001:db8::/33", "2001:db8:8000::", 0},
        {"2001:db8::/33", "2001:db8:7fff::", 1},
        {"fe80::/10", "febf::1", 1},
        {"fe80::/10", "fec0::1", 0},
        {"::ffff:10.0.0.0/104", "10.1.2.3", 1},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mrd_cidr c;
        struct mrd_ip ip;
        const char *err;
        char name[96];

        snprintf(name, sizeof(name), "%s in %s", cases[i].ip, cases[i].cidr);
        CHECK(mrd_cidr_parse(cases[i].cidr, &c, &err) == 0, name);
        CHECK(mrd_ip_parse(cases[i].ip, strlen(cases[i].ip), &ip) == 0, name);
        CHECK(mrd_cidr_match(&c, &ip) == cases[i].match, name);
    }
}

/* ---- sockets and text forms ---- */

static void
test_ip_from_sockaddr(void **state)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(80)};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct mrd_ip ip;
    char buf[64];

    inet_pton(AF_INET, "192.0.2.7", &sin.sin_addr);
    assert_int_equal(mrd_ip_from_sockaddr((struct sockaddr *)&sin, &ip), 0);
    assert_int_equal(ip.family, AF_INET);
    mrd_ip_format(&ip, buf, sizeof(buf));
    assert_string_equal(buf, "192.0.2.7");

    inet_pton(AF_INET6, "2001:db8::5", &sin6.sin6_addr);
    assert_int_equal(mrd_ip_from_sockaddr((struct sockaddr *)&sin6, &ip), 0);
    assert_int_equal(ip.family, AF_INET6);
    assert_int_equal(mrd_sockaddr_format((struct sockaddr *)&sin6, buf, sizeof(buf)), strlen("[2001:db8::5]:443"));
    assert_string_equal(buf, "[2001:db8::5]:443");

    /* a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d */
    inet_pton(AF_INET6, "::ffff:192.0.2.9", &sin6.sin6_addr);
    assert_int_equal(mrd_ip_from_sockaddr((struct sockaddr *)&sin6, &ip), 0);
    assert_int_equal(ip.family, AF_INET);
    mrd_ip_format(&ip, buf, sizeof(buf));
    assert_string_equal(buf, "192.0.2.9");
    mrd_sockaddr_format((struct sockaddr *)&sin6, buf, sizeof(buf));
    assert_string_equal(buf, "192.0.2.9:443");

    assert_int_equal(mrd_ip_from_sockaddr((struct sockaddr *)&sun, &ip), -1);
    assert_int_equal(mrd_sockaddr_format((struct sockaddr *)&sun, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
}

static void
test_format_small_buffers(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len;
    const char *err;
    struct mrd_ip ip;
    char buf[8];

    assert_int_equal(mrd_sockaddr_parse("10.20.30.40:8080", &ss, &len, &err), 0);
    /* truncated, still terminated; the length is what was written */
    assert_int_equal(mrd_sockaddr_format((struct sockaddr *)&ss, buf, sizeof(buf)), 7);
    assert_string_equal(buf, "10.20.3");
    assert_int_equal(mrd_sockaddr_format((struct sockaddr *)&ss, buf, 0), 0);
    assert_int_equal(mrd_ip_parse("10.20.30.40", 11, &ip), 0);
    assert_int_equal(mrd_ip_format(&ip, buf, sizeof(buf)), 0); /* does not fit */
    assert_string_equal(buf, "");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ip_parse),
        cmocka_unit_test(test_ip_parse_length_and_bytes),
        cmocka_unit_test(test_sockaddr_parse),
        cmocka_unit_test(test_sockaddr_parse_errors),
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_cidr_match),
        cmocka_unit_test(test_ip_from_sockaddr),
        cmocka_unit_test(test_format_small_buffers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
