/*
 * fuzz_admin.c: libFuzzer target for the admin API's request string work
 * (query.c): target splitting, query parameter lookup with %-decoding, the
 * Bearer check, and %-encoding.
 *
 * Input: byte 0 is the lookup buffer size (0-255), byte 1 splits the rest
 * into a request target and an Authorization value; the key looked up is
 * "ip", then the first pair's own key. Invariants:
 *  - the split pieces lie inside the target, path + '?' + query + fragment
 *    add up, the path has no '?' or '#', the query no '#';
 *  - a found value is no longer than the query and than the raw value, is
 *    NUL-terminated inside the buffer, and equals a reference decode of the
 *    first pair whose decoded key matches; TOOLONG only when the decoded
 *    value would not fit; ABSENT only when no pair has the key;
 *  - decode(encode(x)) == x, encode output only unreserved bytes and %XX,
 *    decoding never grows, and decoding in place equals decoding aside;
 *  - mrd_bearer_ok agrees with a reference, and accepts "Bearer " + token.
 */
#include <ctype.h>

#include "meridian/query.h"

#include "fuzz_pure_common.h"

static int
hexv(int c)
{
    return isdigit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
}

/* reference %-decode into a fresh buffer */
static size_t
ref_decode(const char *s, size_t n, char *out, int plus)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n + 0 && hexv((unsigned char)s[i + 1]) >= 0 && hexv((unsigned char)s[i + 2]) >= 0) {
            out[o++] = (char)(hexv((unsigned char)s[i + 1]) * 16 + hexv((unsigned char)s[i + 2]));
            i += 2;
        } else {
            out[o++] = plus && s[i] == '+' ? ' ' : s[i];
        }
    }
    return o;
}

/* the reference lookup: returns the raw value's offset/len, or -1 */
static long
ref_find(const char *q, size_t qlen, const char *key, size_t *vlen)
{
    size_t i = 0, klen = strlen(key);
    char *dk = malloc(qlen + 1);

    REQUIRE(dk != NULL);
    while (i <= qlen && q != NULL) {
        size_t j = i;
        while (j < qlen && q[j] != '&')
            j++;
        const char *eq = memchr(q + i, '=', j - i);
        if (eq != NULL) {
            size_t n = ref_decode(q + i, (size_t)(eq - (q + i)), dk, 1);
            if (n == klen && memcmp(dk, key, n) == 0) {
                *vlen = j - (size_t)(eq + 1 - q);
                free(dk);
                return (long)(eq + 1 - q);
            }
        }
        i = j + 1;
    }
    free(dk);
    return -1;
}

static void
check_get(const char *q, size_t qlen, const char *key, size_t cap)
{
    char *buf = malloc(cap ? cap : 1), *ref = malloc(qlen + 1);
    size_t vlen = 0;
    long off = ref_find(q, qlen, key, &vlen);
    long n = mrd_query_get(q, qlen, key, cap ? buf : NULL, cap);

    REQUIRE(ref != NULL && buf != NULL);
    if (off < 0) {
        REQUIRE(n == MRD_QUERY_ABSENT);
    } else {
        size_t want = ref_decode(q + off, vlen, ref, 1);
        REQUIRE(want <= vlen);
        if (want >= cap) {
            REQUIRE(n == MRD_QUERY_TOOLONG);
            if (cap)
                REQUIRE(buf[0] == '\0');
        } else {
            REQUIRE(n >= 0 && (size_t)n == want && (size_t)n <= qlen);
            REQUIRE(memcmp(buf, ref, want) == 0 && buf[n] == '\0');
        }
    }
    free(buf);
    free(ref);
}

static int
ref_bearer(const char *h, size_t n, const char *tok)
{
    size_t i = 6, tl = strlen(tok);

    if (h == NULL || n < 7 || strncasecmp(h, "bearer", 6) != 0 || h[6] != ' ')
        return 0;
    while (i < n && h[i] == ' ')
        i++;
    while (n > i && (h[n - 1] == ' ' || h[n - 1] == '\t'))
        n--;
    return tl > 0 && n - i == tl && memcmp(h + i, tok, tl) == 0;
}

static void
check_codec(const char *s, size_t n)
{
    size_t cap = 3 * n + 1;
    char *enc = malloc(cap), *dec = malloc(n ? n : 1), *inplace = dup_cstr(s, n);

    REQUIRE(enc && dec);
    size_t e = mrd_pct_encode(s, n, enc, cap);
    REQUIRE(e != (size_t)-1 && e <= 3 * n && enc[e] == '\0');
    for (size_t i = 0; i < e; i++) {
        unsigned char c = (unsigned char)enc[i];
        if (c == '%') {
            REQUIRE(i + 2 < e && isxdigit((unsigned char)enc[i + 1]) && isxdigit((unsigned char)enc[i + 2]));
            i += 2;
        } else {
            REQUIRE(isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~');
        }
    }
    REQUIRE(mrd_pct_decode(enc, e, dec, 0) == n && memcmp(dec, s, n) == 0);
    REQUIRE(mrd_pct_decode(enc, e, dec, 1) == n && memcmp(dec, s, n) == 0);
    /* too small a buffer is refused, never overrun */
    if (e > 0)
        REQUIRE(mrd_pct_encode(s, n, enc, e) == (size_t)-1);
    /* decode: never longer, in place == aside == reference */
    for (int plus = 0; plus < 2; plus++) {
        char *ref = malloc(n ? n : 1);
        size_t a = mrd_pct_decode(s, n, dec, plus), r = ref_decode(s, n, ref, plus);
        memcpy(inplace, s, n);
        size_t b = mrd_pct_decode(inplace, n, inplace, plus);
        REQUIRE(a <= n && a == r && b == a && memcmp(dec, ref, a) == 0 && memcmp(inplace, ref, a) == 0);
        free(ref);
    }
    free(enc);
    free(dec);
    free(inplace);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reader r = {data, size};
    size_t cap = take_byte(&r), cut = take_byte(&r);
    size_t tlen = cut % (r.n + 1), hlen = r.n - tlen;
    char *target = dup_cstr(r.p, tlen), *hdr = dup_cstr(r.p + tlen, hlen);
    struct mrd_target t;

    /* split */
    mrd_target_split(target, tlen, &t);
    REQUIRE(t.path == target && t.path_len <= tlen);
    REQUIRE(memchr(t.path, '?', t.path_len) == NULL && memchr(t.path, '#', t.path_len) == NULL);
    if (t.query != NULL) {
        REQUIRE(t.query == target + t.path_len + 1 && target[t.path_len] == '?');
        REQUIRE(t.path_len + 1 + t.query_len <= tlen && memchr(t.query, '#', t.query_len) == NULL);
        REQUIRE(t.path_len + 1 + t.query_len == tlen || target[t.path_len + 1 + t.query_len] == '#');
    } else {
        REQUIRE(t.query_len == 0 && (t.path_len == tlen || target[t.path_len] == '#'));
    }

    /* lookups: "ip" and the first pair's decoded key (NUL-free keys only) */
    check_get(t.query, t.query_len, "ip", cap);
    if (t.query != NULL) {
        const char *eq = memchr(t.query, '=', t.query_len), *amp = memchr(t.query, '&', t.query_len);
        if (eq != NULL && (amp == NULL || eq < amp)) {
            char *k = malloc((size_t)(eq - t.query) + 1);
            size_t kn = ref_decode(t.query, (size_t)(eq - t.query), k, 1);
            k[kn] = '\0';
            if (strlen(k) == kn)
                check_get(t.query, t.query_len, k, cap);
            free(k);
        }
    }

    /* Bearer: the header against a token taken from its tail, and the
     * canonical form of that token */
    char tok[33];
    size_t tl = hlen < 32 ? hlen : 32, o = 0;
    for (size_t i = hlen - tl; i < hlen; i++)
        if (hdr[i] > 0x20 && hdr[i] < 0x7f)
            tok[o++] = hdr[i];
    tok[o] = '\0';
    if (o > 0) {
        REQUIRE(mrd_bearer_ok(hdr, hlen, tok) == ref_bearer(hdr, hlen, tok));
        char canon[48];
        int cn = snprintf(canon, sizeof(canon), "Bearer %s", tok);
        REQUIRE(mrd_bearer_ok(canon, (size_t)cn, tok) == 1);
        REQUIRE(mrd_bearer_ok(canon, (size_t)cn - 1, tok) == 0);
    }
    REQUIRE(mrd_bearer_ok(NULL, 0, "x") == 0);

    check_codec(target, tlen);
    free(target);
    free(hdr);
    return 0;
}
