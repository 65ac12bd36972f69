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
#include "meridian/common.h"
#include "meridian/headers.h"

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


/* the scan of a head mrd_build_request_head wrote gives the fields the
 * validating parser gives, and refuses any other shape */
static void
scan_own_head_matches_parser(void **state)
{
    struct mrd_buf head = {0}, names_a = {0}, names_b = {0};
    struct mrd_h1_header in[] = {
        {"host", 4, "api.example", 11}, {"user-agent", 10, "h2load nghttp2/1.52.0", 21},
        {"X-Mixed", 7, "v", 1},         {"accept", 6, "", 0},
        {"x-forwarded-for", 15, "10.0.0.1", 8}, {"te", 2, "trailers", 8},
    };
    struct mrd_fwd_req f = {.client_ip = "192.0.2.7", .proto = "https", .body = MRD_H1_BODY_LENGTH,
                            .content_length = 12, .version = "2", .request_id = "abc-123"};
    struct mrd_h1_header a[MRD_H2_REQ_FIELDS_MAX], b[MRD_H2_REQ_FIELDS_MAX];
    static struct mrd_h1_msg scanned;
    size_t na, nb;

    mrd_build_request_head(&head, "POST", 4, "/v1/x?q=1", 9, in, MRD_ARRAY_LEN(in), &f);
    assert_int_equal(mrd_h2_scan_own_head(head.p, head.len, &scanned), 1);
    assert_int_equal(mrd_h1_parse_request(head.p, head.len, 0, &msg, NULL), (int)head.len);
    assert_int_equal(scanned.num_headers, msg.num_headers);
    na = mrd_h2_request_fields(&scanned, "http", 1, a, &names_a);
    nb = mrd_h2_request_fields(&msg, "http", 1, b, &names_b);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_int_equal(a[i].name_len, b[i].name_len);
        assert_memory_equal(a[i].name, b[i].name, a[i].name_len);
        assert_int_equal(a[i].value_len, b[i].value_len);
        assert_memory_equal(a[i].value, b[i].value, a[i].value_len);
    }
    expect(&a[0], ":method", "POST");
    expect(&a[2], ":authority", "api.example");
    expect(&a[3], ":path", "/v1/x?q=1");
    expect(&a[4], "user-agent", "h2load nghttp2/1.52.0");
    /* an already lowercase name is used in place, a mixed-case one copied lowercased */
    assert_true(a[4].name >= head.p && a[4].name < head.p + head.len);
    expect(&a[5], "x-mixed", "v");
    assert_true(a[5].name >= names_a.p && a[5].name < names_a.p + names_a.len);
    expect(&a[6], "accept", "");
    expect(&a[na - 1], "te", "trailers");
    mrd_buf_dispose(&head);
    mrd_buf_dispose(&names_a);
    mrd_buf_dispose(&names_b);
}

static void
scan_own_head_refuses_other_shapes(void **state)
{
    static struct mrd_h1_msg m;
    static const char *bad[] = {
        "",
        "GET / HTTP/1.1\r\n",                         /* no empty line */
        "GET / HTTP/1.1\r\nHost: a\r\n",              /* no empty line */
        "GET / HTTP/1.0\r\nHost: a\r\n\r\n",          /* not our version */
        "GET /HTTP/1.1\r\n\r\n",                      /* no target */
        " / HTTP/1.1\r\n\r\n",                        /* no method */
        "GET / HTTP/1.1\r\nHost:a\r\n\r\n",           /* not ": " */
        "GET / HTTP/1.1\r\n: a\r\n\r\n",              /* empty name */
        "GET / HTTP/1.1\r\nHost a\r\n\r\n",           /* no colon */
        "GET / HTTP/1.1\r\nHost: a\n\r\n",             /* bare LF */
        "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET",       /* bytes after the head */
        "GET / HTTP/1.1\rX\n\r\n",
        "GET / HTTP/1.1\rXHost: a\r\n\r\n",            /* CR without LF */
    };
    for (size_t i = 0; i < MRD_ARRAY_LEN(bad); i++)
        assert_int_equal(mrd_h2_scan_own_head(bad[i], strlen(bad[i]), &m), 0);
    assert_int_equal(mrd_h2_scan_own_head("GET / HTTP/1.1\r\n\r\n", 18, &m), 1);
    assert_int_equal(m.num_headers, 0);
    assert_int_equal(m.target_len, 1);

    /* more fields than a message holds */
    struct mrd_buf many = {0};
    mrd_buf_lit(&many, "GET / HTTP/1.1\r\n");
    for (size_t i = 0; i <= MRD_H1_MAX_HEADERS; i++)
        mrd_buf_lit(&many, "X-A: 1\r\n");
    mrd_buf_lit(&many, "\r\n");
    assert_int_equal(mrd_h2_scan_own_head(many.p, many.len, &m), 0);
    mrd_buf_dispose(&many);
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
        cmocka_unit_test(scan_own_head_matches_parser),
        cmocka_unit_test(scan_own_head_refuses_other_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
