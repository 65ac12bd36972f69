/*
 * test_clientip.c: table-driven tests of the client address behind trusted
 * proxies (SPEC 3.1): untrusted peers, chains of trusted proxies, the
 * all-trusted case, IPv6 with brackets and ports, whitespace and empty list
 * elements, several header lines, and garbage that stops the walk.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "meridian/addr.h"
#include "meridian/clientip.h"
#include "meridian/config.h"

#define MAX_VALUES 4

static const char *const trusted_text[] = {
    "127.0.0.1/32", "::1/128", "10.0.0.0/8", "2001:db8:ffff::/48", "::ffff:192.168.0.0/112",
};

static struct mrd_cidr trusted[sizeof(trusted_text) / sizeof(trusted_text[0])];
static struct mrd_client_ip_conf conf = {trusted, sizeof(trusted) / sizeof(trusted[0]), "X-Forwarded-For"};

static int
setup(void **state)
{
    for (size_t i = 0; i < sizeof(trusted) / sizeof(trusted[0]); i++) {
        const char *err = NULL;
        if (mrd_cidr_parse(trusted_text[i], &trusted[i], &err) != 0)
            fail_msg("bad trusted cidr %s: %s", trusted_text[i], err);
    }
    return 0;
}

static struct mrd_ip
ip_of(const char *s)
{
    struct mrd_ip ip;

    if (mrd_ip_parse(s, strlen(s), &ip) != 0)
        fail_msg("bad test address %s", s);
    return ip;
}

/* run one case: values ends at NULL or after MAX_VALUES; want is the expected text form */
static void
check(const char *name, const struct mrd_client_ip_conf *c, const char *peer, const char *const *values,
      const char *want)
{
    const char *vals[MAX_VALUES];
    size_t lens[MAX_VALUES], n = 0;
    struct mrd_ip p = ip_of(peer), out, expect = ip_of(want);
    char got[MRD_IP_STRLEN];

    for (; n < MAX_VALUES && values[n] != NULL; n++) {
        vals[n] = values[n];
        lens[n] = strlen(values[n]);
    }
    memset(&out, 0xa5, sizeof(out));
    assert_int_equal(mrd_client_ip(c, &p, vals, lens, n, &out), 0);
    mrd_ip_format(&out, got, sizeof(got));
    if (out.family != expect.family || memcmp(out.bytes, expect.bytes, sizeof(out.bytes)) != 0)
        fail_msg("case \"%s\": got %s, want %s", name, got, want);
}

struct xff_case {
    const char *name;
    const char *peer;
    const char *values[MAX_VALUES]; /* unused slots are NULL */
    const char *want;
};

static void
run_table(const struct xff_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check(cases[i].name, &conf, cases[i].peer, cases[i].values, cases[i].want);
}

static void
test_trust(void **state)
{
    static const struct xff_case cases[] = {
        {"untrusted peer ignores header", "203.0.113.5", {"1.2.3.4"}, "203.0.113.5"},
        {"untrusted v6 peer", "2001:db8::5", {"1.2.3.4"}, "2001:db8::5"},
        {"untrusted peer, trusted-looking header", "203.0.113.5", {"127.0.0.1"}, "203.0.113.5"},
        {"trusted peer, one address", "10.0.0.1", {"1.2.3.4"}, "1.2.3.4"},
        {"trusted v6 peer", "::1", {"1.2.3.4"}, "1.2.3.4"},
        {"trusted mapped range", "192.168.3.4", {"1.2.3.4"}, "1.2.3.4"},
        {"rightmost untrusted wins", "10.0.0.1", {"1.2.3.4, 5.6.7.8"}, "5.6.7.8"},
        {"spoofed left part ignored", "10.0.0.1", {"9.9.9.9, 1.2.3.4, 10.0.0.2"}, "1.2.3.4"},
        {"chain of trusted proxies", "127.0.0.1", {"1.2.3.4, 10.0.0.2, 10.9.9.9, 127.0.0.1"}, "1.2.3.4"},
        {"all trusted: leftmost", "10.0.0.1", {"10.0.0.5, 10.0.0.6, 127.0.0.1"}, "10.0.0.5"},
        {"one trusted entry", "10.0.0.1", {"127.0.0.1"}, "127.0.0.1"},
        {"trusted v6 proxy in chain", "::1", {"198.51.100.9, 2001:db8:ffff::7"}, "198.51.100.9"},
        {"X-Real-IP single value", "10.0.0.1", {"198.51.100.7"}, "198.51.100.7"},
    };

    run_table(cases, sizeof(cases) / sizeof(cases[0]));
}

static void
test_forms(void **state)
{
    static const struct xff_case cases[] = {
        {"bare v6", "10.0.0.1", {"2001:db8::1"}, "2001:db8::1"},
        {"bracketed v6", "10.0.0.1", {"[2001:db8::1]"}, "2001:db8::1"},
        {"bracketed v6 with port", "10.0.0.1", {"[2001:db8::1]:443"}, "2001:db8::1"},
        {"v6 chain with ports", "::1", {"[2001:db8::7]:1234, [2001:db8:ffff::1]:80"}, "2001:db8::7"},
        {"v4 with port", "10.0.0.1", {"192.0.2.1:1234"}, "192.0.2.1"},
        {"v4 port 65535", "10.0.0.1", {"192.0.2.1:65535"}, "192.0.2.1"},
        {"v4-mapped folds", "10.0.0.1", {"::ffff:1.2.3.4"}, "1.2.3.4"},
        {"bracketed v4-mapped trusted", "10.0.0.1", {"1.2.3.4, [::ffff:10.1.1.1]:80"}, "1.2.3.4"},
        {"upper-case v6", "10.0.0.1", {"2001:DB8::AB"}, "2001:db8::ab"},
        {"spaces and tabs", "10.0.0.1", {"  1.2.3.4  ,\t5.6.7.8\t"}, "5.6.7.8"},
        {"no spaces", "10.0.0.1", {"1.2.3.4,5.6.7.8"}, "5.6.7.8"},
        {"empty elements", "10.0.0.1", {",1.2.3.4,, \t ,"}, "1.2.3.4"},
        {"empty elements between trusted", "10.0.0.1", {"1.2.3.4,,10.0.0.3,"}, "1.2.3.4"},
    };

    run_table(cases, sizeof(cases) / sizeof(cases[0]));
}

static void
test_multiple_lines(void **state)
{
    static const struct xff_case cases[] = {
        {"last line's last entry", "10.0.0.1", {"1.1.1.1, 2.2.2.2", "3.3.3.3"}, "3.3.3.3"},
        {"walk crosses lines", "10.0.0.1", {"1.1.1.1", "10.0.0.7"}, "1.1.1.1"},
        {"empty line in between", "10.0.0.1", {"1.1.1.1, 10.0.0.8", "", "10.0.0.9"}, "1.1.1.1"},
        {"all lines trusted", "10.0.0.1", {"10.0.0.4", "10.0.0.5", "127.0.0.1"}, "10.0.0.4"},
        {"three lines", "10.0.0.1", {"4.4.4.4", "5.5.5.5, 10.1.1.1", " 10.2.2.2 "}, "5.5.5.5"},
    };

    run_table(cases, sizeof(cases) / sizeof(cases[0]));
}

/* An unparsable entry stops the walk at the last trusted address seen. */
static void
test_garbage(void **state)
{
    static const struct xff_case cases[] = {
        {"unknown alone", "10.0.0.1", {"unknown"}, "10.0.0.1"},
        {"unknown on the right", "10.0.0.1", {"1.2.3.4, unknown"}, "10.0.0.1"},
        {"garbage behind trusted", "10.0.0.1", {"1.2.3.4, garbage, 10.0.0.2"}, "10.0.0.2"},
        {"garbage behind a chain", "10.0.0.1", {"5.6.7.8, unknown, 10.0.0.2, 10.0.0.3"}, "10.0.0.2"},
        {"garbage left of the client is never reached", "10.0.0.1", {"junk, 1.2.3.4"}, "1.2.3.4"},
        {"garbage on an earlier line, client on a later", "10.0.0.1", {"junk", "1.2.3.4"}, "1.2.3.4"},
        {"garbage on the last line", "10.0.0.1", {"1.2.3.4", "nope"}, "10.0.0.1"},
        {"host name", "10.0.0.1", {"client.example.com"}, "10.0.0.1"},
        {"bracketed v4", "10.0.0.1", {"[1.2.3.4]"}, "10.0.0.1"},
        {"v6 zone id", "10.0.0.1", {"fe80::1%eth0"}, "10.0.0.1"},
        {"v4 empty port", "10.0.0.1", {"1.2.3.4:"}, "10.0.0.1"},
        {"v4 port too large", "10.0.0.1", {"1.2.3.4:65536"}, "10.0.0.1"},
        {"v4 port not digits", "10.0.0.1", {"1.2.3.4:8o"}, "10.0.0.1"},
        {"v4 two ports", "10.0.0.1", {"1.2.3.4:80:90"}, "10.0.0.1"},
        {"v4 sign port", "10.0.0.1", {"1.2.3.4:+80"}, "10.0.0.1"},
        {"v6 missing ]", "10.0.0.1", {"[2001:db8::1"}, "10.0.0.1"},
        {"v6 stray ]", "10.0.0.1", {"2001:db8::1]"}, "10.0.0.1"},
        {"v6 junk after ]", "10.0.0.1", {"[2001:db8::1]x"}, "10.0.0.1"},
        {"v6 empty port", "10.0.0.1", {"[2001:db8::1]:"}, "10.0.0.1"},
        {"empty brackets", "10.0.0.1", {"[]"}, "10.0.0.1"},
        {"space inside entry", "10.0.0.1", {"1.2.3.4 5.6.7.8"}, "10.0.0.1"},
        {"quoted", "10.0.0.1", {"\"1.2.3.4\""}, "10.0.0.1"},
        {"leading zero octet", "10.0.0.1", {"01.2.3.4"}, "10.0.0.1"},
        {"Forwarded syntax", "10.0.0.1", {"for=1.2.3.4"}, "10.0.0.1"},
        {"empty header", "10.0.0.1", {""}, "10.0.0.1"},
        {"blank header", "10.0.0.1", {" \t "}, "10.0.0.1"},
        {"only commas", "10.0.0.1", {", ,,"}, "10.0.0.1"},
    };

    run_table(cases, sizeof(cases) / sizeof(cases[0]));
}

/* lengths are honoured (values need not be NUL-terminated), NULL values with
 * length 0 are allowed, no values or no trusted proxies give the peer. */
static void
test_edges(void **state)
{
    const char buf[] = "1.2.3.4, 5.6.7.8";
    const char nul[] = "1.2.3.4\0";
    const char *vals[3];
    size_t lens[3];
    struct mrd_ip peer = ip_of("10.0.0.1"), out;
    struct mrd_client_ip_conf none = {NULL, 0, "X-Forwarded-For"};
    char text[MRD_IP_STRLEN];

    vals[0] = buf;
    lens[0] = 7; /* "1.2.3.4" only */
    mrd_client_ip(&conf, &peer, vals, lens, 1, &out);
    mrd_ip_format(&out, text, sizeof(text));
    assert_string_equal(text, "1.2.3.4");

    vals[0] = nul;
    lens[0] = sizeof(nul) - 1; /* an embedded NUL is garbage */
    mrd_client_ip(&conf, &peer, vals, lens, 1, &out);
    mrd_ip_format(&out, text, sizeof(text));
    assert_string_equal(text, "10.0.0.1");

    vals[0] = "3.3.3.3";
    lens[0] = 7;
    vals[1] = NULL;
    lens[1] = 0;
    mrd_client_ip(&conf, &peer, vals, lens, 2, &out);
    mrd_ip_format(&out, text, sizeof(text));
    assert_string_equal(text, "3.3.3.3");

    mrd_client_ip(&conf, &peer, NULL, NULL, 0, &out);
    assert_memory_equal(&out, &peer, sizeof(out));

    mrd_client_ip(&none, &peer, vals, lens, 1, &out);
    assert_memory_equal(&out, &peer, sizeof(out));
    mrd_client_ip(NULL, &peer, vals, lens, 1, &out);
    assert_memory_equal(&out, &peer, sizeof(out));
}

static void
test_trusted(void **state)
{
    static const struct {
        const char *ip;
        int trusted;
    } cases[] = {
        {"127.0.0.1", 1}, {"127.0.0.2", 0},     {"::1", 1},           {"::2", 0},
        {"10.255.0.1", 1}, {"11.0.0.1", 0},     {"2001:db8:ffff:1::1", 1}, {"2001:db8:fffe::1", 0},
        {"192.168.9.9", 1}, {"::ffff:192.168.9.9", 1}, {"192.169.0.1", 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mrd_ip ip = ip_of(cases[i].ip);
        if (mrd_client_ip_trusted(&conf, &ip) != cases[i].trusted)
            fail_msg("%s: trusted should be %d", cases[i].ip, cases[i].trusted);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trusted),
        cmocka_unit_test(test_trust),
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_multiple_lines),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_edges),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
