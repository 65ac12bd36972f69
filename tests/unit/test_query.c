/*
 * test_query.c: the admin API's string work (query.c): target splitting,
 * %-decoding (malformed escapes kept, NUL bytes, '+'), %-encoding, query
 * parameter lookup (repeated keys, empty values, pairs without '=', encoded
 * keys, values too long for the buffer) and the Bearer check. Expected
 * values are worked out by hand.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "meridian/query.h"

static void
split(const char *t, const char *path, const char *query)
{
    struct mrd_target s;

    mrd_target_split(t, strlen(t), &s);
    assert_ptr_equal(s.path, t);
    assert_int_equal(s.path_len, strlen(path));
    assert_memory_equal(s.path, path, s.path_len);
    if (query == NULL) {
        assert_null(s.query);
        assert_int_equal(s.query_len, 0);
    } else {
        assert_non_null(s.query);
        assert_int_equal(s.query_len, strlen(query));
        assert_memory_equal(s.query, query, s.query_len);
    }
}

static void
test_split(void **state)
{
    (void)state;
    split("/v1/route?ip=1.2.3.4", "/v1/route", "ip=1.2.3.4");
    split("/healthz", "/healthz", NULL);
    split("/a?", "/a", "");
    split("?x", "", "x");
    split("", "", NULL);
    split("/a?b?c", "/a", "b?c");
    split("/a#frag?x", "/a", NULL);
    split("/a?x=1#frag", "/a", "x=1");
    split("/a?x=1#f?y", "/a", "x=1");
}

static void
decode(const char *in, int plus, const char *want, size_t want_len)
{
    char out[64];
    size_t n = mrd_pct_decode(in, strlen(in), out, plus);

    assert_int_equal(n, want_len);
    assert_memory_equal(out, want, want_len);
}

static void
test_decode(void **state)
{
    (void)state;
    decode("abc", 0, "abc", 3);
    decode("%41%62", 0, "Ab", 2);
    decode("%2f%2F", 0, "//", 2);
    decode("a%20b", 0, "a b", 3);
    decode("a+b", 0, "a+b", 3);
    decode("a+b", 1, "a b", 3);
    decode("%2B", 1, "+", 1); /* an encoded '+' is a plus */
    decode("%00x", 0, "\0x", 2);
    /* malformed escapes are kept as written */
    decode("%", 0, "%", 1);
    decode("%4", 0, "%4", 2);
    decode("a%", 0, "a%", 2);
    decode("%zz", 0, "%zz", 3);
    decode("%4g1", 0, "%4g1", 4);
    decode("%%41", 0, "%A", 2);
    decode("100%", 0, "100%", 4);
    decode("", 0, "", 0);
    /* in place */
    char buf[] = "x%41%4";
    size_t n = mrd_pct_decode(buf, strlen(buf), buf, 0);
    assert_int_equal(n, 4);
    assert_memory_equal(buf, "xA%4", 4);
}

static void
test_encode(void **state)
{
    char out[16], back[16];
    (void)state;

    assert_int_equal(mrd_pct_encode("a-b._~Z9", 8, out, sizeof(out)), 8);
    assert_string_equal(out, "a-b._~Z9");
    assert_int_equal(mrd_pct_encode("a b/\xff", 5, out, sizeof(out)), 11);
    assert_string_equal(out, "a%20b%2F%FF");
    assert_int_equal(mrd_pct_decode(out, 11, back, 0), 5);
    assert_memory_equal(back, "a b/\xff", 5);
    assert_int_equal(mrd_pct_encode("\0", 1, out, sizeof(out)), 3);
    assert_string_equal(out, "%00");
    /* exactly fits: 3 bytes + NUL */
    assert_int_equal(mrd_pct_encode(" ", 1, out, 4), 3);
    assert_int_equal(mrd_pct_encode(" ", 1, out, 3), (size_t)-1);
    assert_string_equal(out, "");
    assert_int_equal(mrd_pct_encode("", 0, out, 1), 0);
    assert_int_equal(mrd_pct_encode("", 0, out, 0), (size_t)-1);
}

static void
get(const char *q, const char *key, long want, const char *want_val)
{
    char buf[16];
    long n = mrd_query_get(q, q != NULL ? strlen(q) : 0, key, buf, sizeof(buf));

    assert_int_equal(n, want);
    if (n >= 0) {
        assert_memory_equal(buf, want_val, (size_t)n);
        assert_int_equal(buf[n], '\0');
    } else if (n == MRD_QUERY_TOOLONG) {
        assert_string_equal(buf, "");
    }
}

static void
test_query_get(void **state)
{
    (void)state;
    get("ip=1.2.3.4", "ip", 7, "1.2.3.4");
    get("a=1&ip=::1&b=2", "ip", 3, "::1");
    get("ip=first&ip=second", "ip", 5, "first"); /* repeated: the first wins */
    get("ip=&ip=x", "ip", 0, "");                /* empty value is a value */
    get("ip", "ip", MRD_QUERY_ABSENT, NULL);      /* no '=': skipped */
    get("ip&ip=5", "ip", 1, "5");
    get("&&ip=5&", "ip", 1, "5");
    get("", "ip", MRD_QUERY_ABSENT, NULL);
    get(NULL, "ip", MRD_QUERY_ABSENT, NULL);
    get("ipx=1&xip=2&IP=3", "ip", MRD_QUERY_ABSENT, NULL);
    get("=1", "ip", MRD_QUERY_ABSENT, NULL);
    get("=1", "", 1, "1");
    get("i%70=7", "ip", 1, "7"); /* keys are decoded too */
    get("i%7=7", "ip", MRD_QUERY_ABSENT, NULL);
    get("ip=1.2.3.4%20", "ip", 8, "1.2.3.4 ");
    get("ip=a+b%2Bc", "ip", 5, "a b+c");
    get("ip=%zz%", "ip", 4, "%zz%");
    get("ip=a%00b", "ip", 3, "a\0b");
    get("ip=a=b", "ip", 3, "a=b");
    /* the buffer holds 15 bytes + NUL */
    get("ip=123456789012345", "ip", 15, "123456789012345");
    get("ip=1234567890123456", "ip", MRD_QUERY_TOOLONG, NULL);
    /* long raw, short decoded: fits */
    get("ip=%41%41%41%41%41%41%41%41", "ip", 8, "AAAAAAAA");
    /* a too-long value for another key does not matter */
    get("x=12345678901234567890&ip=1", "ip", 1, "1");

    char tiny[1];
    assert_int_equal(mrd_query_get("ip=", 3, "ip", tiny, 1), 0);
    assert_int_equal(mrd_query_get("ip=a", 4, "ip", tiny, 1), MRD_QUERY_TOOLONG);
    assert_int_equal(mrd_query_get("ip=a", 4, "ip", NULL, 0), MRD_QUERY_TOOLONG);

    /* over-long input: 10,000 pairs, the key at the end */
    static char big[10 * 10000 + 16];
    size_t o = 0;
    for (int i = 0; i < 10000; i++) {
        memcpy(big + o, "k=vvvvvvv&", 10);
        o += 10;
    }
    memcpy(big + o, "ip=9", 4);
    o += 4;
    char buf[8];
    assert_int_equal(mrd_query_get(big, o, "ip", buf, sizeof(buf)), 1);
    assert_string_equal(buf, "9");
}

static void
test_bearer(void **state)
{
    (void)state;
#define B(h, want) assert_int_equal(mrd_bearer_ok(h, strlen(h), "s3cret"), want)
    B("Bearer s3cret", 1);
    B("bearer s3cret", 1);
    B("BEARER s3cret", 1);
    B("Bearer   s3cret", 1);
    B("Bearer s3cret ", 1);
    B("Bearer s3cret\t", 1);
    B("Bearer s3cre", 0);
    B("Bearer s3cretX", 0);
    B("Bearer S3CRET", 0);
    B("Bearer s3cret x", 0);
    B("Bearers3cret", 0);
    B("Bearer\ts3cret", 0);
    B("Bearer ", 0);
    B("Bearer", 0);
    B("", 0);
    B("Basic s3cret", 0);
    B(" Bearer s3cret", 0);
#undef B
    assert_int_equal(mrd_bearer_ok(NULL, 0, "s3cret"), 0);
    assert_int_equal(mrd_bearer_ok("Bearer s3cret\0x", 15, "s3cret"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),   cmocka_unit_test(test_decode), cmocka_unit_test(test_encode),
        cmocka_unit_test(test_query_get), cmocka_unit_test(test_bearer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
