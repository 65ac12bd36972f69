/*
 * fuzz_h1_request.c: libFuzzer target for mrd_h1_parse_request. Parses the
 * input whole and resumed at two data-derived split points (prefixes in
 * exact-size copies), checks the answers agree and every pointer lies inside
 * the head, then runs the chunked decoder over the rest when the head says so.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meridian/http1.h"

#include "fuzz_h1_common.h"

static struct mrd_h1_msg m0, m1;

static void
check_msg(const struct mrd_h1_msg *m, const char *buf, int head)
{
    const char *end = buf + head;

    REQUIRE(m->method != NULL && m->method >= buf && m->method + m->method_len <= end && m->method_len > 0);
    REQUIRE(m->target != NULL && m->target >= buf && m->target + m->target_len <= end && m->target_len > 0);
    REQUIRE(m->version_minor == 0 || m->version_minor == 1);
    REQUIRE(m->num_headers <= MRD_H1_MAX_HEADERS);
    REQUIRE(m->body == MRD_H1_BODY_NONE || m->body == MRD_H1_BODY_LENGTH || m->body == MRD_H1_BODY_CHUNKED);
    for (size_t i = 0; i < m->num_headers; i++) {
        const struct mrd_h1_header *h = &m->headers[i];
        REQUIRE(h->name >= buf && h->name + h->name_len <= end && h->name_len > 0);
        REQUIRE(h->value >= buf && h->value + h->value_len <= end);
    }
    REQUIRE(head >= 4 && memcmp(end - 4, "\r\n\r\n", 4) == 0);
}

static void
check_same(const struct mrd_h1_msg *a, const char *abuf, const struct mrd_h1_msg *b, const char *bbuf)
{
    REQUIRE(a->method - abuf == b->method - bbuf && a->method_len == b->method_len);
    REQUIRE(a->target - abuf == b->target - bbuf && a->target_len == b->target_len);
    REQUIRE(a->version_minor == b->version_minor && a->body == b->body && a->flags == b->flags);
    REQUIRE(a->content_length == b->content_length && a->num_headers == b->num_headers);
    for (size_t i = 0; i < a->num_headers; i++) {
        REQUIRE(a->headers[i].name - abuf == b->headers[i].name - bbuf);
        REQUIRE(a->headers[i].name_len == b->headers[i].name_len);
        REQUIRE(a->headers[i].value - abuf == b->headers[i].value - bbuf);
        REQUIRE(a->headers[i].value_len == b->headers[i].value_len);
    }
}

/* ---- entry point ---- */


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    size_t e0 = 0, e1 = 0;

    int r0 = mrd_h1_parse_request(buf, size, 0, &m0, &e0);
    if (r0 > 0) {
        REQUIRE((size_t)r0 <= size);
        check_msg(&m0, buf, r0);
    } else if (r0 < 0) {
        REQUIRE(r0 >= MRD_H1_ERR_VERSION_UNSUPPORTED && r0 != MRD_H1_ERR_CHUNK);
        REQUIRE(e0 < size);
    }

    /* two data-derived split points k1 <= k2 <= size */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size && i < 64; i++)
        h = (h ^ data[i]) * 16777619u;
    size_t k1 = size ? h % (size + 1) : 0;
    size_t k2 = k1 + (size > k1 ? (h >> 16) % (size - k1 + 1) : 0);
    size_t ks[3] = {k1, k2, size}, last = 0;
    int r = 0;
    for (int i = 0; i < 3 && r == 0; i++) {
        char *pre = dup_exact(data, ks[i]);
        r = mrd_h1_parse_request(pre, ks[i], last, &m1, &e1);
        if (r != 0)
            REQUIRE(r == r0);
        if (r > 0) {
            check_msg(&m1, pre, r);
            check_same(&m0, buf, &m1, pre);
        }
        if (r < 0)
            REQUIRE(e1 == e0);
        free(pre);
        last = ks[i];
    }
    REQUIRE(r == r0);

    if (r0 > 0 && m0.body == MRD_H1_BODY_CHUNKED) {
        size_t n = size - (size_t)r0;
        fuzz_chunked(buf + r0, n, n ? h % (n + 1) : 0);
    }
    return 0;
}
