/*
 * buf.h: a growable byte buffer for pure code that builds messages (the I/O
 * layer then hands the bytes to libevent in one call). Reuse one per worker
 * (len = 0) to avoid an allocation per request.
 */
#ifndef MERIDIAN_BUF_H
#define MERIDIAN_BUF_H

#include <stddef.h>
#include <string.h>

struct mrd_buf {
    char *p;
    size_t len, cap;
};

void mrd_buf_reserve(struct mrd_buf *b, size_t extra);
void mrd_buf_dispose(struct mrd_buf *b);
void mrd_buf_printf(struct mrd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline void
mrd_buf_add(struct mrd_buf *b, const void *p, size_t n)
{
    if (b->cap - b->len < n)
        mrd_buf_reserve(b, n);
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

#define mrd_buf_lit(b, s) mrd_buf_add((b), (s), sizeof(s) - 1)

static inline void
mrd_buf_str(struct mrd_buf *b, const char *s)
{
    mrd_buf_add(b, s, strlen(s));
}

#endif
