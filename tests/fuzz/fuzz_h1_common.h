/*
 * fuzz_h1_common.h: what the two HTTP/1 fuzz targets share: the invariant
 * check, exact-size input copies, and the chunked-body runner that decodes
 * a body whole and split and requires the same answer.
 */
#ifndef MERIDIAN_FUZZ_H1_COMMON_H
#define MERIDIAN_FUZZ_H1_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meridian/http1.h"

#include "fuzz_require.h"


static char *
dup_exact(const uint8_t *in, size_t n)
{
    char *p = malloc(n ? n : 1);
    REQUIRE(p != NULL);
    memcpy(p, in, n);
    return p;
}

/* ---- chunked body: whole vs. split, data counted and hashed ---- */

struct chunk_run {
    struct mrd_h1_chunk c;
    long result; /* bytes consumed when DONE, 0 while going, or the error */
    uint64_t data_len, data_hash;
    size_t total;
};

static void
chunk_feed(struct chunk_run *cr, const char *in, size_t n)
{
    char *piece = malloc(n ? n : 1);
    size_t pos = 0;

    REQUIRE(piece != NULL);
    memcpy(piece, in, n);
    while (cr->result == 0) {
        if (cr->c.state == MRD_H1_CHUNK_DATA && cr->c.remaining > 0) {
            if (pos == n)
                break;
            size_t m = n - pos < cr->c.remaining ? n - pos : (size_t)cr->c.remaining;
            for (size_t i = 0; i < m; i++)
                cr->data_hash = (cr->data_hash ^ (unsigned char)piece[pos + i]) * UINT64_C(1099511628211);
            cr->data_len += m;
            cr->c.remaining -= m;
            pos += m;
            continue;
        }
        int r = mrd_h1_chunk_parse(&cr->c, piece + pos, n - pos, 256);
        if (r < 0) {
            REQUIRE(r == MRD_H1_ERR_CHUNK);
            cr->result = r;
            break;
        }
        REQUIRE((size_t)r <= n - pos);
        pos += (size_t)r;
        if (cr->c.state == MRD_H1_CHUNK_DONE) {
            cr->result = (long)(cr->total + pos);
            break;
        }
        if (cr->c.state == MRD_H1_CHUNK_DATA && cr->c.remaining > 0)
            continue;
        if (cr->c.state == MRD_H1_CHUNK_TRAILER && r > 0 && pos < n)
            continue; /* stopped on entering the trailer section */
        REQUIRE(pos == n);
        break;
    }
    cr->total += n;
    free(piece);
}

static void
fuzz_chunked(const char *body, size_t n, size_t split)
{
    struct chunk_run a = {0}, b = {0};

    mrd_h1_chunk_init(&a.c);
    mrd_h1_chunk_init(&b.c);
    chunk_feed(&a, body, n);
    chunk_feed(&b, body, split);
    if (b.result == 0)
        chunk_feed(&b, body + split, n - split);
    REQUIRE(a.result == b.result);
    REQUIRE(a.data_len == b.data_len && a.data_hash == b.data_hash);
    REQUIRE(a.result <= (long)n);
}

#endif
