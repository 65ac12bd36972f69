/* test_h2fields.c: the HTTP/1.1 upstream head -> HTTP/2 request fields. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "meridian/h2fields.h"

static struct mrd_h1_msg msg;

static size_t
fields(const char *head, int te, struct mrd_h1_header *out, struct mrd_buf *names)
{
    assert_true(mrd_h1_parse_request(head, strlen(head), 0, &msg, NULL) == (int)strlen(head));
    return mrd_h2_request_fields(&msg, "http", te, out, names);
}

static void
expect(const struct mrd_h1_header *f, const char *name, const char *value)
{
    assert_int_equal(f->name_len, strlen(name));
    assert_memory_equal(f->name, name, f->name_len);
    assert_int_equal(f->value_len, strlen(value));
    assert_memory_equal(f->value, value, f->value_len);
}

static void
pseudo_and_lowercase(void **state)
{
    struct mrd_h1_header out[MRD_H2_REQ_FIELDS_MAX];
    struct mrd_buf names = {0};
    size_t n = fields("POST /up?x=1 HTTP/1.1\r\nHost: api.example:8080\r\nX-Trace-ID: a1\r\n"
                      "Content-Length: 5\r\nVia: 2 meridian\r\n\r\n",
                      0, out, &names);

    assert_int_equal(n, 7);
    expect(&out[0], ":method", "POST");
    expect(&out[1], ":scheme", "http");
    expect(&out[2], ":authority", "api.example:8080");
    expect(&out[3], ":path", "/up?x=1");
    expect(&out[4], "x-trace-id", "a1");
    expect(&out[5], "content-length", "5");
    expect(&out[6], "via", "2 meridian");
    mrd_buf_dispose(&names);
}

static void
drops_hop_by_hop_keeps_te_trailers(void **state)
{
    struct mrd_h1_header out[MRD_H2_REQ_FIELDS_MAX];
    struct mrd_buf names = {0};
    size_t n = fields("POST /svc/M HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
                      "Keep-Alive: 5\r\nTransfer-Encoding: chunked\r\nUpgrade: x\r\nProxy-Connection: a\r\n"
                      "TE: trailers\r\nContent-Type: application/grpc\r\n\r\n",
                      1, out, &names);

    assert_int_equal(n, 6);
    expect(&out[2], ":authority", "h");
    expect(&out[4], "content-type", "application/grpc");
    expect(&out[5], "te", "trailers");
    n = fields("GET / HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n", 0, out, &names);
    assert_int_equal(n, 4); /* te only when the client asked */
    mrd_buf_dispose(&names);
}

static void
absolute_and_asterisk_targets(void **state)
{
    struct mrd_h1_header out[MRD_H2_REQ_FIELDS_MAX];
    struct mrd_buf names = {0};
    size_t n = fields("GET http://other.example/a/b HTTP/1.1\r\nHost: h\r\n\r\n", 0, out, &names);

    assert_int_equal(n, 4);
    expect(&out[2], ":authority", "other.example");
    expect(&out[3], ":path", "/a/b");
    n = fields("GET http://o.example?q=1 HTTP/1.1\r\nHost: h\r\nAccept: x\r\n\r\n", 0, out, &names);
    assert_int_equal(n, 5);
    expect(&out[3], ":path", "/?q=1");
    expect(&out[4], "accept", "x");
    n = fields("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 0, out, &names);
    expect(&out[3], ":path", "*");
    /* no Host (HTTP/1.0): no :authority */
    n = fields("GET /x HTTP/1.0\r\n\r\n", 0, out, &names);
    assert_int_equal(n, 3);
    expect(&out[2], ":path", "/x");
    /* CONNECT cannot be sent */
    assert_int_equal(fields("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 0, out, &names), 0);
    mrd_buf_dispose(&names);
}

static void
response_framing(void **state)
{
    uint64_t len = 7;

    assert_int_equal(mrd_h2_response_body(200, 0, 0, "1234", 4, &len), MRD_H1_BODY_LENGTH);
    assert_int_equal(len, 1234);
    assert_int_equal(mrd_h2_response_body(200, 0, 0, "0", 1, &len), MRD_H1_BODY_LENGTH);
    assert_int_equal(len, 0);
    assert_int_equal(mrd_h2_response_body(200, 0, 0, "18446744073709551615", 20, &len), MRD_H1_BODY_CHUNKED);
    assert_int_equal(mrd_h2_response_body(200, 0, 0, "9999999999999999999", 19, &len), MRD_H1_BODY_LENGTH);
    assert_true(len == 9999999999999999999ULL);
    assert_int_equal(mrd_h2_response_body(200, 0, 0, NULL, 0, &len), MRD_H1_BODY_CHUNKED);
    assert_int_equal(len, 0);
    assert_int_equal(mrd_h2_response_body(200, 0, 0, "12a", 3, &len), MRD_H1_BODY_CHUNKED);
    /* HEAD, 204, 304 and END_STREAM on HEADERS have no body, length or not */
    assert_int_equal(mrd_h2_response_body(200, 1, 0, "1234", 4, &len), MRD_H1_BODY_NONE);
    assert_int_equal(mrd_h2_response_body(204, 0, 0, NULL, 0, &len), MRD_H1_BODY_NONE);
    assert_int_equal(mrd_h2_response_body(304, 0, 0, "5", 1, &len), MRD_H1_BODY_NONE);
    assert_int_equal(mrd_h2_response_body(200, 0, 1, NULL, 0, &len), MRD_H1_BODY_NONE);
}

static void
te_values(void **state)
{
    assert_true(mrd_te_has_trailers("trailers", 8));
    assert_true(mrd_te_has_trailers("gzip, Trailers", 14));
    assert_false(mrd_te_has_trailers("gzip", 4));
    assert_false(mrd_te_has_trailers("", 0));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pseudo_and_lowercase),
        cmocka_unit_test(drops_hop_by_hop_keeps_te_trailers),
        cmocka_unit_test(absolute_and_asterisk_targets),
        cmocka_unit_test(response_framing),
        cmocka_unit_test(te_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
