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

int
mrd_strieq(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && strncasecmp(s, lit, len) == 0;
}
