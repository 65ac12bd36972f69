/*
 * common.c: allocation wrappers that abort on out-of-memory, and tiny string
 * helpers shared by the pure modules.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "meridian/common.h"

static void
oom(size_t n)
{
    fprintf(stderr, "meridian: out of memory allocating %zu bytes\n", n);
    abort();
}

void *
mrd_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *
mrd_xcalloc(size_t nmemb, size_t n)
{
    void *p = calloc(nmemb ? nmemb : 1, n ? n : 1);
    if (p == NULL)
        oom(nmemb * n);
    return p;
}

void *
mrd_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *
mrd_xstrdup(const char *s)
{
    return mrd_xstrndup(s, strlen(s));
}

char *
mrd_xstrndup(const char *s, size_t n)
{
    char *p = mrd_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}


/* ---- growable buffer (buf.h) ---- */
#include <stdarg.h>

#include "meridian/buf.h"

void
mrd_buf_reserve(struct mrd_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra)
        cap *= 2;
    b->p = mrd_xrealloc(b->p, cap);
    b->cap = cap;
}

void
mrd_buf_dispose(struct mrd_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

void
mrd_buf_printf(struct mrd_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    mrd_buf_reserve(b, 128);
    va_start(ap, fmt);
    n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= b->cap - b->len) {
        mrd_buf_reserve(b, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

size_t
mrd_u64_dec(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}
