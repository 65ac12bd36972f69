/* test_headers.c: what the proxy adds to and removes from forwarded heads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "meridian/common.h"
#include "meridian/headers.h"

#define H(n, v) {n, sizeof(n) - 1, v, sizeof(v) - 1}

static char *
str(struct mrd_buf *b)
{
    char *s = malloc(b->len + 1);
    memcpy(s, b->p, b->len);
    s[b->len] = 0;
    return s;
}

static void
request_drops_hop_by_hop(void **state)
{
    struct mrd_h1_header h[] = {
        H("Host", "example.com"),        H("Connection", "keep-alive, X-Private"),
        H("Keep-Alive", "timeout=5"),    H("X-Private", "secret"),
        H("TE", "trailers"),             H("Transfer-Encoding", "chunked"),
        H("Upgrade", "h2c"),             H("Proxy-Connection", "keep-alive"),
        H("Expect", "100-continue"),     H("X-Forwarded-Proto", "https"),
        H("Accept", "*/*"),              H("Trailer", "X-Sum"),
    };
    struct mrd_fwd_req f = {.client_ip = "192.0.2.7", .proto = "http", .body = MRD_H1_BODY_CHUNKED};
    struct mrd_buf b = {0};

    mrd_build_request_head(&b, "POST", 4, "/up?x=1", 7, h, sizeof(h) / sizeof(h[0]), &f);
    char *s = str(&b);
    assert_string_equal(s, "POST /up?x=1 HTTP/1.1\r\n"
                           "Host: example.com\r\n"
                           "Accept: */*\r\n"
                           "Transfer-Encoding: chunked\r\n"
                           "X-Forwarded-For: 192.0.2.7\r\n"
                           "X-Forwarded-Proto: http\r\n"
                           "Via: 1.1 meridian\r\n\r\n");
    free(s);
    mrd_buf_dispose(&b);
}

static void
request_appends_xff_and_length(void **state)
{
    struct mrd_h1_header h[] = {
        H("Host", "a"), H("X-Forwarded-For", "203.0.113.1"), H("Content-Length", "5"),
        H("x-forwarded-for", "198.51.100.2, 10.0.0.1"),
    };
    struct mrd_fwd_req f = {.client_ip = "127.0.0.1", .proto = "https", .body = MRD_H1_BODY_LENGTH,
                            .content_length = 5};
    struct mrd_buf b = {0};

    mrd_build_request_head(&b, "PUT", 3, "/", 1, h, 4, &f);
    char *s = str(&b);
    assert_string_equal(s, "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                           "X-Forwarded-For: 203.0.113.1, 198.51.100.2, 10.0.0.1, 127.0.0.1\r\n"
                           "X-Forwarded-Proto: https\r\nVia: 1.1 meridian\r\n\r\n");
    free(s);
    mrd_buf_dispose(&b);
}

static void
request_keeps_websocket_upgrade(void **state)
{
    struct mrd_h1_header h[] = {
        H("Host", "a"), H("Connection", "Upgrade"), H("Upgrade", "websocket"), H("Sec-WebSocket-Key", "k"),
    };
    struct mrd_fwd_req f = {.client_ip = "::1", .proto = "http", .upgrade = 1, .version = "1.0"};
    struct mrd_buf b = {0};

    mrd_build_request_head(&b, "GET", 3, "/ws", 3, h, 4, &f);
    char *s = str(&b);
    assert_string_equal(s, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n"
                           "Connection: upgrade\r\nX-Forwarded-For: ::1\r\nX-Forwarded-Proto: http\r\n"
                           "Via: 1.0 meridian\r\n\r\n");
    free(s);
    mrd_buf_dispose(&b);
}

static void
response_reframes_and_tags_region(void **state)
{
    struct mrd_h1_header h[] = {
        H("Content-Type", "text/plain"), H("Transfer-Encoding", "chunked"), H("Connection", "close, X-Hop"),
        H("X-Hop", "1"), H("X-Meridian-Region", "spoofed"), H("Set-Cookie", "a=b"),
    };
    struct mrd_fwd_resp f = {.status = 200, .body = MRD_H1_BODY_CHUNKED, .region = "eu-west-1"};
    struct mrd_buf b = {0};

    mrd_build_response_head(&b, h, 6, &f);
    char *s = str(&b);
    assert_string_equal(s, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=b\r\n"
                           "Transfer-Encoding: chunked\r\nX-Meridian-Region: eu-west-1\r\n"
                           "Via: 1.1 meridian\r\n\r\n");
    free(s);
    b.len = 0;
    f = (struct mrd_fwd_resp){.status = 404, .reason = "Nope", .reason_len = 4, .body = MRD_H1_BODY_LENGTH,
                              .content_length = 12, .conn_close = 1};
    mrd_build_response_head(&b, h, 1, &f);
    s = str(&b);
    assert_string_equal(s, "HTTP/1.1 404 Nope\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
                           "Connection: close\r\nVia: 1.1 meridian\r\n\r\n");
    free(s);
    mrd_buf_dispose(&b);
}

static void
hop_by_hop_detection(void **state)
{
    struct mrd_h1_header h[] = {H("Connection", " foo ,bar,,"), H("Connection", "baz")};

    assert_true(mrd_hdr_is_hop_by_hop(h, 2, "Keep-Alive", 10));
    assert_true(mrd_hdr_is_hop_by_hop(h, 2, "FOO", 3));
    assert_true(mrd_hdr_is_hop_by_hop(h, 2, "bar", 3));
    assert_true(mrd_hdr_is_hop_by_hop(h, 2, "baz", 3));
    assert_false(mrd_hdr_is_hop_by_hop(h, 2, "fo", 2));
    assert_false(mrd_hdr_is_hop_by_hop(h, 2, "Host", 4));
}

static void
error_response(void **state)
{
    struct mrd_buf b = {0};

    mrd_build_error_response(&b, 503, "capacity", 0, "Retry-After: 1\r\n");
    char *s = str(&b);
    assert_string_equal(s, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                           "Content-Length: 34\r\nRetry-After: 1\r\nVia: 1.1 meridian\r\n\r\n"
                           "503 Service Unavailable: capacity\n");
    free(s);
    assert_string_equal(mrd_status_reason(431), "Request Header Fields Too Large");
    assert_string_equal(mrd_status_reason(299), "Unknown");
    mrd_buf_dispose(&b);
}

static void
decimal_formatting(void **state)
{
    static const struct {
        uint64_t v;
        const char *want;
    } cases[] = {{0, "0"}, {7, "7"}, {10, "10"}, {4096, "4096"}, {1000000007, "1000000007"},
                 {UINT64_MAX, "18446744073709551615"}};
    char out[20];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = mrd_u64_dec(out, cases[i].v);
        assert_int_equal(n, strlen(cases[i].want));
        assert_memory_equal(out, cases[i].want, n);
    }
}

struct seen {
    char text[256];
    size_t len;
};

static void
collect(void *arg, const char *name, size_t nl, const char *value, size_t vl)
{
    struct seen *s = arg;
    s->len += (size_t)snprintf(s->text + s->len, sizeof(s->text) - s->len, "[%.*s=%.*s]", (int)nl, name, (int)vl,
                               value);
}

static void
trailer_fields(void **state)
{
    static const char section[] = "X-Sum: 42 \r\nGrpc-Status:0\r\nX-Empty:\r\nX-Tab:\t a b\t\r\n\r\n";
    struct seen s = {{0}, 0};

    (void)state;
    assert_int_equal(mrd_trailer_section_each(section, strlen(section), collect, &s), 4);
    assert_string_equal(s.text, "[X-Sum=42][Grpc-Status=0][X-Empty=][X-Tab=a b]");
    s.len = 0;
    s.text[0] = '\0';
    assert_int_equal(mrd_trailer_section_each("\r\n", 2, collect, &s), 0);
    assert_int_equal(s.len, 0);
    assert_true(mrd_trailer_field_allowed("X-Sum", 5));
    assert_true(mrd_trailer_field_allowed("grpc-status", 11));
    assert_false(mrd_trailer_field_allowed("Content-Length", 14));
    assert_false(mrd_trailer_field_allowed("host", 4));
    assert_false(mrd_trailer_field_allowed("Transfer-Encoding", 17));
    assert_false(mrd_trailer_field_allowed("TE", 2));
    assert_false(mrd_trailer_field_allowed("keep-alive", 10));
}

static void
status_digits(void **state)
{
    char out[3];

    (void)state;
    mrd_status_digits(out, 200);
    assert_memory_equal(out, "200", 3);
    mrd_status_digits(out, 101);
    assert_memory_equal(out, "101", 3);
    mrd_status_digits(out, 599);
    assert_memory_equal(out, "599", 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_drops_hop_by_hop),      cmocka_unit_test(request_appends_xff_and_length),
        cmocka_unit_test(request_keeps_websocket_upgrade), cmocka_unit_test(response_reframes_and_tags_region),
        cmocka_unit_test(hop_by_hop_detection),          cmocka_unit_test(error_response), cmocka_unit_test(decimal_formatting), cmocka_unit_test(trailer_fields),
        cmocka_unit_test(status_digits),
    };
    return cmocka_run_group_tests_name("headers", tests, NULL, NULL);
}
