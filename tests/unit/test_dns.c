/*
 * test_dns.c: upstream host names (SPEC 7). Host name syntax and
 * "name:port" parsing, hosts-file lookup, address sets (normalise, equal,
 * diff), the refresh delay, the expansion of entries into one target per
 * address, and the dns block and upstream address forms of the loader with
 * their FILE:LINE:COL errors. Values are worked out by hand.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meridian/config.h"
#include "meridian/dns.h"

static struct mrd_ip
ip(const char *s)
{
    struct mrd_ip a;
    if (mrd_ip_parse(s, strlen(s), &a) != 0)
        fail_msg("bad test address %s", s);
    return a;
}

static void
test_hostname_valid(void **state)
{
    static const char l63[] = "a23456789012345678901234567890123456789012345678901234567890123";
    static const char l64[] = "a234567890123456789012345678901234567890123456789012345678901234";
    char long_name[300];
    const char *why = NULL;

    assert_true(mrd_hostname_valid("localhost", 9, &why));
    assert_true(mrd_hostname_valid("eu-lb.internal.example.com", 26, &why));
    assert_true(mrd_hostname_valid("example.com.", 12, &why)); /* trailing dot */
    assert_true(mrd_hostname_valid("3com.net", 8, &why));      /* RFC 1123: labels may start with a digit */
    assert_true(mrd_hostname_valid("x1", 2, &why));
    assert_true(mrd_hostname_valid(l63, 63, &why));
    assert_false(mrd_hostname_valid(l64, 64, &why));
    assert_non_null(strstr(why, "longer than 63"));
    assert_false(mrd_hostname_valid("", 0, &why));
    assert_false(mrd_hostname_valid(".", 1, &why));
    assert_false(mrd_hostname_valid("a..b", 4, &why));
    assert_non_null(strstr(why, "empty label"));
    assert_false(mrd_hostname_valid("-a.b", 4, &why));
    assert_false(mrd_hostname_valid("a-.b", 4, &why));
    assert_non_null(strstr(why, "'-'"));
    assert_false(mrd_hostname_valid("a_b.com", 7, &why));
    assert_non_null(strstr(why, "invalid character"));
    assert_false(mrd_hostname_valid("10.0.0.300", 10, &why));
    assert_non_null(strstr(why, "numeric label"));
    assert_false(mrd_hostname_valid("1234", 4, &why));
    /* 4 x 63 + 3 dots = 255 > 253; 3 x 63 + 61 + 3 = 253 is fine */
    snprintf(long_name, sizeof(long_name), "%s.%s.%s.%s", l63, l63, l63, l63);
    assert_false(mrd_hostname_valid(long_name, strlen(long_name), &why));
    assert_non_null(strstr(why, "253"));
    snprintf(long_name, sizeof(long_name), "%s.%s.%s.%.61s", l63, l63, l63, l63);
    assert_int_equal(strlen(long_name), 253);
    assert_true(mrd_hostname_valid(long_name, strlen(long_name), &why));
}

static void
test_hostport_parse(void **state)
{
    char host[MRD_HOSTNAME_MAX + 2];
    uint16_t port = 0;
    const char *why = NULL;

    assert_int_equal(mrd_hostport_parse("LocalHost:8080", host, &port, &why), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 8080);
    assert_int_equal(mrd_hostport_parse("api.example.com.:1", host, &port, &why), 0);
    assert_string_equal(host, "api.example.com");
    assert_int_equal(port, 1);
    assert_int_equal(mrd_hostport_parse("a.b:65535", host, &port, &why), 0);
    assert_int_equal(port, 65535);
    assert_int_equal(mrd_hostport_parse("a.b:65536", host, &port, &why), -1);
    assert_non_null(strstr(why, "port"));
    assert_int_equal(mrd_hostport_parse("a.b:0", host, &port, &why), -1);
    assert_int_equal(mrd_hostport_parse("a.b:", host, &port, &why), -1);
    assert_int_equal(mrd_hostport_parse("a.b:8o", host, &port, &why), -1);
    assert_int_equal(mrd_hostport_parse("a.b:-1", host, &port, &why), -1);
    assert_int_equal(mrd_hostport_parse("a.b:000080", host, &port, &why), -1);
    assert_int_equal(mrd_hostport_parse("a.b", host, &port, &why), -1);
    assert_non_null(strstr(why, "HOST:PORT"));
    assert_int_equal(mrd_hostport_parse(":80", host, &port, &why), -1);
    assert_int_equal(mrd_hostport_parse("fe80::1:80", host, &port, &why), -1);
    assert_non_null(strstr(why, "brackets"));
    assert_int_equal(mrd_hostport_parse("bad name:80", host, &port, &why), -1);
    assert_non_null(strstr(why, "invalid character"));
}

static void
test_hosts_lookup(void **state)
{
    static const char text[] = "# comment localhost\n"
                               "127.0.0.1\tlocalhost loopback\n"
                               "::1 localhost ip6-localhost # trailing comment\n"
                               "10.0.0.5 api.example.com\r\n"
                               "not-an-ip api.example.com\n"
                               "10.0.0.6 # api.example.com\n"
                               "10.0.0.7 API.Example.COM. other\n"
                               "10.0.0.8";
    struct mrd_ipset s = {0};
    char buf[MRD_IP_STRLEN];

    assert_int_equal(mrd_hosts_lookup(text, strlen(text), "localhost", &s), 2);
    mrd_ip_format(&s.v[0], buf, sizeof(buf));
    assert_string_equal(buf, "127.0.0.1");
    mrd_ip_format(&s.v[1], buf, sizeof(buf));
    assert_string_equal(buf, "::1");
    mrd_ipset_dispose(&s);
    assert_int_equal(mrd_hosts_lookup(text, strlen(text), "api.example.com", &s), 2);
    mrd_ip_format(&s.v[0], buf, sizeof(buf));
    assert_string_equal(buf, "10.0.0.5");
    mrd_ip_format(&s.v[1], buf, sizeof(buf));
    assert_string_equal(buf, "10.0.0.7");
    mrd_ipset_dispose(&s);
    assert_int_equal(mrd_hosts_lookup(text, strlen(text), "loopback", &s), 1);
    mrd_ipset_dispose(&s);
    assert_int_equal(mrd_hosts_lookup(text, strlen(text), "comment", &s), 0);
    assert_int_equal(mrd_hosts_lookup(text, strlen(text), "nothing", &s), 0);
    assert_int_equal(mrd_hosts_lookup("", 0, "localhost", &s), 0);
    assert_null(s.v);
}

static void
test_ipset(void **state)
{
    struct mrd_ipset a = {0}, b = {0}, c = {0};
    struct mrd_ip x;
    size_t joined, left;
    char buf[MRD_IP_STRLEN];

    /* unsorted, with a duplicate, mixed families */
    x = ip("::1"), mrd_ipset_add(&a, &x);
    x = ip("10.0.0.2"), mrd_ipset_add(&a, &x);
    x = ip("10.0.0.1"), mrd_ipset_add(&a, &x);
    x = ip("10.0.0.2"), mrd_ipset_add(&a, &x);
    mrd_ipset_normalize(&a);
    assert_int_equal(a.n, 3);
    mrd_ip_format(&a.v[0], buf, sizeof(buf));
    assert_string_equal(buf, "10.0.0.1");
    mrd_ip_format(&a.v[1], buf, sizeof(buf));
    assert_string_equal(buf, "10.0.0.2");
    mrd_ip_format(&a.v[2], buf, sizeof(buf));
    assert_string_equal(buf, "::1");

    x = ip("10.0.0.2"), mrd_ipset_add(&b, &x);
    x = ip("10.0.0.1"), mrd_ipset_add(&b, &x);
    x = ip("::1"), mrd_ipset_add(&b, &x);
    mrd_ipset_normalize(&b);
    assert_true(mrd_ipset_equal(&a, &b));
    mrd_ipset_diff(&a, &b, &joined, &left);
    assert_int_equal(joined, 0);
    assert_int_equal(left, 0);

    /* c = {10.0.0.1, 10.0.0.3}: from a, 10.0.0.3 joins, 10.0.0.2 and ::1 leave */
    x = ip("10.0.0.3"), mrd_ipset_add(&c, &x);
    x = ip("10.0.0.1"), mrd_ipset_add(&c, &x);
    mrd_ipset_normalize(&c);
    assert_false(mrd_ipset_equal(&a, &c));
    mrd_ipset_diff(&a, &c, &joined, &left);
    assert_int_equal(joined, 1);
    assert_int_equal(left, 2);
    mrd_ipset_diff(&c, &a, &joined, &left);
    assert_int_equal(joined, 2);
    assert_int_equal(left, 1);

    mrd_ipset_dispose(&b);
    mrd_ipset_diff(&b, &a, &joined, &left);
    assert_int_equal(joined, 3);
    assert_int_equal(left, 0);
    mrd_ipset_copy(&b, &c);
    assert_true(mrd_ipset_equal(&b, &c));
    mrd_ipset_dispose(&a);
    mrd_ipset_dispose(&b);
    mrd_ipset_dispose(&c);
}

static void
test_refresh_delay(void **state)
{
    assert_int_equal(mrd_dns_refresh_delay_ms(5, 30000), 5000);    /* TTL below refresh */
    assert_int_equal(mrd_dns_refresh_delay_ms(300, 30000), 30000); /* refresh caps a long TTL */
    assert_int_equal(mrd_dns_refresh_delay_ms(-1, 30000), 30000);  /* no TTL (hosts file, failure) */
    assert_int_equal(mrd_dns_refresh_delay_ms(0, 30000), 1000);    /* TTL 0: at least 1s */
    assert_int_equal(mrd_dns_refresh_delay_ms(10, 500), 1000);
}

static void
test_expand(void **state)
{
    struct mrd_upstream_conf ups[4];
    struct mrd_ipset r1 = {0}, r3 = {0};
    const struct mrd_ipset *resolved[4] = {NULL, &r1, NULL, &r3};
    struct mrd_up_target out[8];
    struct mrd_ip x;
    const char *why;
    char buf[64];
    size_t n;

    memset(ups, 0, sizeof(ups));
    assert_int_equal(mrd_sockaddr_parse("10.0.0.1:80", &ups[0].addr, &ups[0].addrlen, &why), 0);
    ups[1].host = "a.example";
    ups[1].port = 8080;
    ups[2].host = "b.example"; /* not resolved yet: no target */
    ups[2].port = 81;
    ups[3].host = "c.example";
    ups[3].port = 80;
    x = ip("10.0.0.2"), mrd_ipset_add(&r1, &x);
    x = ip("::1"), mrd_ipset_add(&r1, &x);
    /* c.example: 10.0.0.1 duplicates entry 0's address (same port), 10.0.0.9 is new */
    x = ip("10.0.0.1"), mrd_ipset_add(&r3, &x);
    x = ip("10.0.0.9"), mrd_ipset_add(&r3, &x);

    assert_int_equal(mrd_upstreams_count(ups, 4, resolved), 1 + 2 + 0 + 2);
    n = mrd_upstreams_expand(ups, 4, resolved, out);
    assert_int_equal(n, 4);
    assert_int_equal(out[0].entry, 0);
    assert_int_equal(out[1].entry, 1);
    mrd_sockaddr_format((const struct sockaddr *)&out[1].addr, buf, sizeof(buf));
    assert_string_equal(buf, "10.0.0.2:8080");
    assert_int_equal(out[2].entry, 1);
    mrd_sockaddr_format((const struct sockaddr *)&out[2].addr, buf, sizeof(buf));
    assert_string_equal(buf, "[::1]:8080");
    assert_int_equal(out[3].entry, 3);
    mrd_sockaddr_format((const struct sockaddr *)&out[3].addr, buf, sizeof(buf));
    assert_string_equal(buf, "10.0.0.9:80");
    /* nothing resolved at all: only the literal */
    assert_int_equal(mrd_upstreams_count(ups, 4, NULL), 1);
    assert_int_equal(mrd_upstreams_expand(ups, 4, NULL, out), 1);
    mrd_ipset_dispose(&r1);
    mrd_ipset_dispose(&r3);
}

/* ---- the loader ---- */

#define LISTEN "listeners:\n  - address: \"127.0.0.1:8080\"\n"
#define REGION_HEAD LISTEN "regions:\n  - name: a\n    location: {latitude: 1, longitude: 2}\n"

static struct mrd_config *
parse(const char *yaml, struct mrd_diag *d)
{
    struct mrd_config *c = NULL;

    mrd_diag_init(d);
    mrd_config_parse(yaml, strlen(yaml), "t.yaml", &c, d);
    return c;
}

static void
test_config_names(void **state)
{
    struct mrd_diag d;
    struct mrd_config *c;

    c = parse(REGION_HEAD "    upstreams:\n      - {address: \"Backend.Example:8080\", weight: 3}\n"
                          "      - {address: \"10.0.0.1:80\"}\n      - {address: \"[::1]:81\"}\n",
              &d);
    assert_non_null(c);
    assert_int_equal(d.n, 0);
    assert_string_equal(c->regions[0].upstreams[0].host, "backend.example");
    assert_string_equal(c->regions[0].upstreams[0].address, "Backend.Example:8080");
    assert_int_equal(c->regions[0].upstreams[0].port, 8080);
    assert_int_equal(c->regions[0].upstreams[0].addrlen, 0);
    assert_int_equal(c->regions[0].upstreams[0].weight, 3);
    assert_null(c->regions[0].upstreams[1].host);
    assert_int_equal(c->regions[0].upstreams[1].addrlen, sizeof(struct sockaddr_in));
    assert_null(c->regions[0].upstreams[2].host);
    /* defaults of the dns block */
    assert_int_equal(c->dns.n_resolvers, 0);
    assert_int_equal(c->dns.refresh_ms, 30000);
    assert_int_equal(c->dns.required, 0);
    assert_string_equal(c->dns.hosts, "/etc/hosts");
    mrd_config_free(c);
    mrd_diag_dispose(&d);

    c = parse(REGION_HEAD "    upstreams: [{address: \"a.example:80\"}]\n"
                          "dns:\n  resolvers: [\"127.0.0.1:5353\", \"[::1]:53\"]\n  refresh: 5s\n"
                          "  required: true\n  hosts: /tmp/h\n",
              &d);
    assert_non_null(c);
    assert_int_equal(c->dns.n_resolvers, 2);
    assert_string_equal(c->dns.resolvers[1].address, "[::1]:53");
    assert_int_equal(c->dns.resolvers[0].addrlen, sizeof(struct sockaddr_in));
    assert_int_equal(c->dns.refresh_ms, 5000);
    assert_int_equal(c->dns.required, 1);
    assert_string_equal(c->dns.hosts, "/tmp/h");
    mrd_config_free(c);
    mrd_diag_dispose(&d);
}

static void
test_config_errors(void **state)
{
    static const struct {
        const char *yaml, *pos, *msg;
    } cases[] = {
        {REGION_HEAD "    upstreams: [{address: \"bad_name:80\"}]\n", "t.yaml:6:27:", "invalid character in host name"},
        {REGION_HEAD "    upstreams: [{address: \"a.example\"}]\n", "t.yaml:6:27:", "expected HOST:PORT"},
        {REGION_HEAD "    upstreams: [{address: \"a.example:0\"}]\n", "t.yaml:6:27:", "port must be"},
        {REGION_HEAD "    upstreams: [{address: \"a.example:99999\"}]\n", "t.yaml:6:27:", "port must be"},
        {REGION_HEAD "    upstreams: [{address: \"10.0.0.300:80\"}]\n", "t.yaml:6:27:", "numeric label"},
        {REGION_HEAD "    upstreams: [{address: \"[::1:80\"}]\n", "t.yaml:6:27:", "missing ']'"},
        {REGION_HEAD "    upstreams: [{address: \"-a.example:80\"}]\n", "t.yaml:6:27:", "'-'"},
        {REGION_HEAD "    upstreams: [{address: \"a.example:80\"}, {address: \"A.example.:80\"}]\n", "t.yaml:6:54:",
         "is already upstreams[0]"},
        {REGION_HEAD "    upstreams: [{address: \"a.example:80\"}]\ndns:\n  resolvers: [\"localhost:53\"]\n",
         "t.yaml:8:15:", "invalid resolver address"},
        {REGION_HEAD "    upstreams: [{address: \"a.example:80\"}]\ndns:\n  resolvers: \"127.0.0.1:53\"\n",
         "t.yaml:8:14:", "resolvers"},
        {REGION_HEAD "    upstreams: [{address: \"a.example:80\"}]\ndns:\n  refresh: soon\n", "t.yaml:8:12:",
         "expected a duration"},
        {REGION_HEAD "    upstreams: [{address: \"a.example:80\"}]\ndns:\n  required: maybe\n", "t.yaml:8:13:",
         "expected true or false"},
        {REGION_HEAD "    upstreams: [{address: \"a.example:80\"}]\ndns:\n  hosts: \"\"\n", "t.yaml:8:10:", "hosts"},
        {REGION_HEAD "    upstreams: [{address: \"a.example:80\"}]\ndns:\n  resolver: []\n", "t.yaml:8:3:",
         "resolver"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mrd_diag d;
        struct mrd_config *c = parse(cases[i].yaml, &d);
        if (c != NULL || d.n != 1 || strncmp(d.msgs[0], cases[i].pos, strlen(cases[i].pos)) != 0 ||
            strstr(d.msgs[0], cases[i].msg) == NULL) {
            for (size_t k = 0; k < d.n; k++)
                print_message("  diag: %s\n", d.msgs[k]);
            fail_msg("case %zu: expected one error %s ... %s", i, cases[i].pos, cases[i].msg);
        }
        mrd_diag_dispose(&d);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostname_valid), cmocka_unit_test(test_hostport_parse),
        cmocka_unit_test(test_hosts_lookup),   cmocka_unit_test(test_ipset),
        cmocka_unit_test(test_refresh_delay),  cmocka_unit_test(test_expand),
        cmocka_unit_test(test_config_names),   cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
