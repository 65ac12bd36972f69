/*
 * common.h: definitions every meridian file may use: result codes, array
 * helpers and allocation wrappers that abort on out-of-memory (small, fixed
 * allocations only; anything a client can size is bounded by limits.* first).
 */
#ifndef MERIDIAN_COMMON_H
#define MERIDIAN_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define MRD_VERSION "0.1.0"

/* results of streaming consumers (nginx style) */
#define MRD_OK 0
#define MRD_ERROR (-1)
#define MRD_AGAIN (-2)

#define MRD_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MRD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MRD_MAX(a, b) ((a) > (b) ? (a) : (b))

#define mrd_likely(x) __builtin_expect(!!(x), 1)
#define mrd_unlikely(x) __builtin_expect(!!(x), 0)

void *mrd_xmalloc(size_t n);
/* v in decimal at out (room for 20 digits, no NUL); returns the length */
size_t mrd_u64_dec(char *out, uint64_t v);

/* MRD_ASAN: built with AddressSanitizer, whose allocator replaces glibc's */
#if defined(__SANITIZE_ADDRESS__)
#define MRD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MRD_ASAN 1
#endif
#endif
#ifndef MRD_ASAN
#define MRD_ASAN 0
#endif

/* Per-worker free lists of request objects (proxy.c, h2.c) keep their
 * buffers between requests. Off under AddressSanitizer, so that a use after
 * free is still caught there. */
#define MRD_POOL_MAX (MRD_ASAN ? 0 : 1024)
void *mrd_xcalloc(size_t nmemb, size_t n);
void *mrd_xrealloc(void *p, size_t n);
char *mrd_xstrdup(const char *s);
char *mrd_xstrndup(const char *s, size_t n);

/* case-insensitive comparison of a length-delimited string with a C string;
 * inline, so that a literal's length is known at compile time and most
 * mismatches cost one comparison (it runs for every header of every message) */
static inline int
mrd_strieq(const char *s, size_t len, const char *lit)
{
    /* the first byte first: most names of the same length differ there */
    return __builtin_strlen(lit) == len &&
           (len == 0 || (((unsigned char)s[0] | 0x20) == ((unsigned char)lit[0] | 0x20) &&
                         strncasecmp(s, lit, len) == 0));
}

#endif
