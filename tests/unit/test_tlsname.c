/*
 * test_tlsname.c: the name an upstream TLS connection verifies (server_name
 * or the host of the address, IP literals without SNI), server_name
 * validation and the failure-log pacing, with hand-written expectations.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "meridian/tlsname.h"

static void
test_peer_name(void **state)
{
    static const struct {
        const char *address, *server_name;
        int rc;
        const char *out;
    } cases[] = {
        {"10.2.0.7:8443", NULL, 1, "10.2.0.7"},
        {"[::1]:443", NULL, 1, "::1"},
        {"[2001:db8::5]:8443", NULL, 1, "2001:db8::5"},
        {"eu-lb.internal.example.com:443", NULL, 0, "eu-lb.internal.example.com"},
        {"localhost:443", NULL, 0, "localhost"},
        {"10.2.0.7:8443", "api.eu.example.com", 0, "api.eu.example.com"},
        {"eu-lb.example.com:443", "192.0.2.1", 1, "192.0.2.1"},
        {"[::1:443", NULL, -1, ""},
        {":443", NULL, -1, ""},
        {"[]:443", NULL, -1, ""},
        {"10.0.0.1:80", "", -1, ""},
    };
    char out[64];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = mrd_tls_peer_name(cases[i].address, cases[i].server_name, out, sizeof(out));
        if (rc != cases[i].rc)
            fail_msg("case %zu (%s): rc %d, expected %d", i, cases[i].address, rc, cases[i].rc);
        if (rc >= 0 && strcmp(out, cases[i].out) != 0)
            fail_msg("case %zu (%s): \"%s\", expected \"%s\"", i, cases[i].address, out, cases[i].out);
    }
    /* too long for the buffer: 8 bytes hold 7 characters */
    assert_int_equal(mrd_tls_peer_name("abcdefg:1", NULL, out, 8), 0);
    assert_string_equal(out, "abcdefg");
    assert_int_equal(mrd_tls_peer_name("abcdefgh:1", NULL, out, 8), -1);
}

static void
test_server_name_check(void **state)
{
    static const char *const good[] = {"a", "api.eu.example.com", "x-1.example", "_srv.example.com", "10.2.0.7",
                                       "::1", "2001:db8::1", "A.B.C"};
    static const struct {
        const char *in, *why;
    } bad[] = {
        {"", "must not be empty"},
        {"example.com.", "must not end with a dot"},
        {"a..b", "has an empty label"},
        {".a", "has an empty label"},
        {"-a.example", "has a label starting with '-'"},
        {"a-.example", "has a label ending with '-'"},
        {"a b", "must be a DNS name (letters, digits, '-', '_' and dots) or an IP address"},
        {"host:443", "must be a DNS name (letters, digits, '-', '_' and dots) or an IP address"},
        {"[::1]", "must be a DNS name (letters, digits, '-', '_' and dots) or an IP address"},
    };
    char label64[80], long254[300];
    const char *why;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (mrd_tls_server_name_check(good[i], &why) != 0)
            fail_msg("\"%s\" rejected: %s", good[i], why);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        if (mrd_tls_server_name_check(bad[i].in, &why) != -1)
            fail_msg("\"%s\" accepted", bad[i].in);
        assert_string_equal(why, bad[i].why);
    }
    memset(label64, 'a', 64);
    label64[64] = '\0';
    assert_int_equal(mrd_tls_server_name_check(label64, &why), -1);
    assert_string_equal(why, "has a label longer than 63 characters");
    label64[63] = '\0';
    assert_int_equal(mrd_tls_server_name_check(label64, &why), 0);
    /* 4 labels of 63 + 3 dots = 255 characters */
    for (size_t i = 0, o = 0; i < 4; i++) {
        memset(long254 + o, 'b', 63);
        o += 63;
        long254[o++] = i < 3 ? '.' : '\0';
    }
    assert_int_equal(mrd_tls_server_name_check(long254, &why), -1);
    assert_string_equal(why, "a DNS name has at most 253 characters");
}

static void
test_log_due(void **state)
{
    assert_int_equal(mrd_tls_log_due(0, 5, 60000), 1);          /* never logged */
    assert_int_equal(mrd_tls_log_due(1000, 1000, 60000), 0);    /* just now */
    assert_int_equal(mrd_tls_log_due(1000, 60999, 60000), 0);   /* 59.999 s later */
    assert_int_equal(mrd_tls_log_due(1000, 61000, 60000), 1);   /* a minute later */
    assert_int_equal(mrd_tls_log_due(90000, 1000, 60000), 1);   /* clock went back */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peer_name),
        cmocka_unit_test(test_server_name_check),
        cmocka_unit_test(test_log_due),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
