/*
 * query.h: the string work of the admin API (src/ops/admin.c): splitting a
 * request target into path and query, finding one query parameter and
 * %-decoding it, %-encoding, and the "Authorization: Bearer TOKEN" check.
 * Pure: no allocation, no I/O; every output goes into a caller's buffer.
 */
#ifndef MERIDIAN_QUERY_H
#define MERIDIAN_QUERY_H

#include <stddef.h>

/* A request target split at the first '?' (query) and the first '#'
 * (fragment, dropped). Pointers into the target; query is NULL when there is
 * no '?' before the fragment ("/a?" has an empty, non-NULL query). */
struct mrd_target {
    const char *path;
    size_t path_len;
    const char *query;
    size_t query_len;
};

void mrd_target_split(const char *t, size_t len, struct mrd_target *out);

/* %-decode len bytes of src into dst (room for at least len bytes; the
 * result is never longer than the input). "%XX" with two hex digits (either
 * case) is that byte, NUL included; a '%' not followed by two hex digits is
 * kept as it is; with plus != 0, '+' is a space (form encoding). Returns the
 * decoded length. dst may equal src (decoding in place). */
size_t mrd_pct_decode(const char *src, size_t len, char *dst, int plus);

/* %-encode src into dst (cap bytes, NUL-terminated when cap > 0): unreserved
 * characters (RFC 3986: A-Z a-z 0-9 - . _ ~) are copied, every other byte is
 * "%XX" with upper-case hex. Returns the encoded length (3 * len at most),
 * or (size_t)-1 when it does not fit in cap - 1 bytes. */
size_t mrd_pct_encode(const char *src, size_t len, char *dst, size_t cap);

#define MRD_QUERY_ABSENT (-1)  /* no such key */
#define MRD_QUERY_TOOLONG (-2) /* the decoded value does not fit */

/*
 * The value of the first "key=value" pair of query (qlen bytes, "&"-
 * separated, no leading '?') whose key, %-decoded, equals key. The value is
 * %-decoded with '+' as a space (as libevent's evhttp_parse_query_str did)
 * into buf (cap bytes, NUL-terminated; a decoded NUL byte stays in the value,
 * so use the returned length). Pairs without '=' and empty pairs are
 * skipped; "key=" is an empty value. Later repetitions of the key are
 * ignored. Returns the decoded length, MRD_QUERY_ABSENT, or
 * MRD_QUERY_TOOLONG (buf then holds "").
 */
long mrd_query_get(const char *query, size_t qlen, const char *key, char *buf, size_t cap);

/* 1 when the Authorization field value hdr (hlen bytes) is the Bearer
 * credential token: scheme "Bearer" in any case (RFC 9110 11.1), one or more
 * spaces, then exactly token, with optional trailing SP/HTAB. The token is
 * compared in time independent of where it differs. hdr may be NULL (no
 * field): 0. */
int mrd_bearer_ok(const char *hdr, size_t hlen, const char *token);

#endif
