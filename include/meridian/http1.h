/*
 * http1.h: strict HTTP/1.1 message parsing (RFC 9112) as pure functions.
 *
 * The head parsers are zero-copy: they are called with the bytes received so
 * far and either need more (0), reject (<0), or return the head length with
 * every field pointing into the caller's buffer. They allocate nothing and do
 * no I/O. The caller re-invokes with more bytes; `last_len` lets a resumed call
 * skip re-scanning for the end of the head.
 *
 * Framing is decided here, once, strictly: Content-Length together with
 * Transfer-Encoding, differing repeated Content-Length, obsolete line folding,
 * bare CR or bare LF, and invalid field names are all rejected, never passed.
 *
 * The chunked decoder is a byte-at-a-time state machine so it resumes at any
 * split; body data itself is never copied by it (the caller moves
 * `remaining` data bytes when the decoder is in the DATA state).
 */
#ifndef MERIDIAN_HTTP1_H
#define MERIDIAN_HTTP1_H

#include <stddef.h>
#include <stdint.h>

#define MRD_H1_MAX_HEADERS 100
/* bytes of chunk extensions (from the first ';' through the CR) allowed per chunk-size line */
#define MRD_H1_MAX_CHUNK_EXT 4096

enum mrd_h1_err {
    MRD_H1_ERR_NONE = 0,
    MRD_H1_ERR_METHOD = -1,          /* empty or non-token method */
    MRD_H1_ERR_TARGET = -2,          /* empty target or invalid byte in it */
    MRD_H1_ERR_VERSION = -3,         /* not an HTTP-version ("HTTP/" DIGIT "." DIGIT) */
    MRD_H1_ERR_STATUS = -4,          /* response: status not 3 digits 100..999 */
    MRD_H1_ERR_BARE_CR = -5,         /* CR not followed by LF */
    MRD_H1_ERR_BARE_LF = -6,         /* LF not preceded by CR */
    MRD_H1_ERR_HEADER_NAME = -7,     /* empty or non-token field name, or space before colon */
    MRD_H1_ERR_HEADER_VALUE = -8,    /* control character (other than HTAB) in a field value */
    MRD_H1_ERR_OBS_FOLD = -9,        /* a line starting with SP or HTAB */
    MRD_H1_ERR_TOO_MANY_HEADERS = -10,
    MRD_H1_ERR_CL_TE = -11,          /* both Content-Length and Transfer-Encoding */
    MRD_H1_ERR_CONTENT_LENGTH = -12, /* not 1*DIGIT, overflow, or differing repeats */
    MRD_H1_ERR_TRANSFER_ENCODING = -13, /* anything but a final "chunked"; or on HTTP/1.0 */
    MRD_H1_ERR_HOST = -14,           /* HTTP/1.1 request without Host, or several Host */
    MRD_H1_ERR_CHUNK = -15,          /* malformed chunk size line, CRLF or trailer */
    MRD_H1_ERR_REQUEST_LINE = -16,   /* other request/status line syntax error */
    /* request line only: a well-formed HTTP-version other than 1.0 and 1.1
     * (HTTP/2.0, HTTP/1.2, HTTP/0.9, HTTP/9.9), for a 505; the status line
     * parser reports every version it cannot use as MRD_H1_ERR_VERSION */
    MRD_H1_ERR_VERSION_UNSUPPORTED = -17,
};

/* stable text for logs and error bodies */
const char *mrd_h1_strerror(int err);

struct mrd_h1_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing SP/HTAB stripped */
    size_t value_len;
};

enum mrd_h1_body {
    MRD_H1_BODY_NONE = 0, /* no body (no framing headers; or a response that cannot have one) */
    MRD_H1_BODY_LENGTH,   /* Content-Length bytes */
    MRD_H1_BODY_CHUNKED,  /* chunked transfer coding */
    MRD_H1_BODY_CLOSE,    /* response only: body runs until the connection closes */
};

/* flags derived from the head */
#define MRD_H1_F_CONN_CLOSE 0x01      /* Connection: close, or HTTP/1.0 without keep-alive */
#define MRD_H1_F_CONN_KEEPALIVE 0x02  /* Connection: keep-alive present */
#define MRD_H1_F_CONN_UPGRADE 0x04    /* "upgrade" token in Connection */
#define MRD_H1_F_UPGRADE 0x08         /* an Upgrade header is present */
#define MRD_H1_F_EXPECT_CONTINUE 0x10 /* request: Expect: 100-continue (case-insensitive) */
#define MRD_H1_F_HAS_HOST 0x20

struct mrd_h1_msg {
    /* request line (requests only) */
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    /* status line (responses only) */
    int status;
    const char *reason;
    size_t reason_len;
    /* both */
    int version_minor; /* 0 or 1 */
    struct mrd_h1_header headers[MRD_H1_MAX_HEADERS];
    size_t num_headers;
    enum mrd_h1_body body;
    uint64_t content_length; /* when body == MRD_H1_BODY_LENGTH */
    unsigned flags;          /* MRD_H1_F_* */
};

/*
 * Parse a request head from buf[0..len).
 * Returns > 0: the head is complete and that many bytes (through the empty
 * line) belong to it; 0: need more bytes; < 0: an enum mrd_h1_err, and
 * *err_pos (if not NULL) is the offset of the offending byte.
 * last_len is the len of the previous call on the same message (0 the first
 * time); it only lets the parser skip bytes it already scanned.
 * A request head must start with the method: leading empty lines are errors
 * (a caller that wants RFC 9112 2.2 robustness strips CRLFs between requests).
 * Body framing for requests: chunked if Transfer-Encoding ends with chunked,
 * else Content-Length, else none.
 */
int mrd_h1_parse_request(const char *buf, size_t len, size_t last_len, struct mrd_h1_msg *msg, size_t *err_pos);

/*
 * Parse a response head; same return convention.
 * req_method/req_method_len: the method of the request being answered, for the
 * RFC 9112 6.3 rules (HEAD and 2xx to CONNECT have no body); 1xx, 204, 304 have
 * no body; then chunked, Content-Length, else MRD_H1_BODY_CLOSE.
 */
int mrd_h1_parse_response(const char *buf, size_t len, size_t last_len, const char *req_method,
                          size_t req_method_len, struct mrd_h1_msg *msg, size_t *err_pos);

/* chunked body decoder state */
enum mrd_h1_chunk_state {
    MRD_H1_CHUNK_SIZE = 0,  /* reading the hex size (initial state) */
    /* internal states between SIZE and DATA (extensions, CR, LF) */
    MRD_H1_CHUNK_EXT,
    MRD_H1_CHUNK_SIZE_LF,
    MRD_H1_CHUNK_DATA,      /* `remaining` bytes of data follow: the caller moves them */
    MRD_H1_CHUNK_DATA_CR,
    MRD_H1_CHUNK_DATA_LF,
    MRD_H1_CHUNK_TRAILER,   /* inside the trailer section */
    MRD_H1_CHUNK_DONE,      /* last chunk and trailers consumed: message complete */
};

struct mrd_h1_chunk {
    enum mrd_h1_chunk_state state;
    uint64_t remaining;   /* data bytes left in the current chunk (DATA state) */
    uint64_t size;        /* internal: size being parsed */
    unsigned digits;      /* internal */
    unsigned sub;         /* internal: sub-state inside extensions/trailers */
    size_t trailer_bytes; /* internal: bound on the trailer section */
};

void mrd_h1_chunk_init(struct mrd_h1_chunk *c);

/*
 * Consume framing bytes of a chunked body from buf[0..len).
 * Stops (and returns the count consumed so far) as soon as it enters
 * MRD_H1_CHUNK_DATA with remaining > 0, MRD_H1_CHUNK_TRAILER (so that every
 * byte consumed in that state, through the final CRLF, is the trailer
 * section: "Name: value\r\n"... "\r\n"), or MRD_H1_CHUNK_DONE, or runs out of
 * input. In DATA state it consumes nothing and returns 0: the caller moves up
 * to `remaining` data bytes itself, decrements `remaining`, and when it reaches
 * 0 sets nothing: the next call sees remaining == 0 and continues with the CRLF.
 * Returns the number of bytes consumed (>= 0) or MRD_H1_ERR_CHUNK.
 * Chunk sizes are at most 16 hex digits and must not overflow; extensions
 * must be ;token[=token|quoted-string]; a trailer section is limited to
 * max_trailer_bytes and its fields must be valid header lines.
 */
int mrd_h1_chunk_parse(struct mrd_h1_chunk *c, const char *buf, size_t len, size_t max_trailer_bytes);

/* lookup helpers */
const struct mrd_h1_header *mrd_h1_find(const struct mrd_h1_msg *msg, const char *name);

/* 1 when the comma-separated list in value contains token (case-insensitive) */
int mrd_h1_list_has(const char *value, size_t len, const char *token);

enum mrd_h1_target_form {
    MRD_H1_TARGET_INVALID = 0,
    MRD_H1_TARGET_ORIGIN,    /* "/path?query" */
    MRD_H1_TARGET_ABSOLUTE,  /* "http://authority/path?query" */
    MRD_H1_TARGET_AUTHORITY, /* "host:port" (CONNECT only) */
    MRD_H1_TARGET_ASTERISK,  /* "*" (OPTIONS only) */
};

/*
 * Classify a request target (RFC 9112 3.2) for method m. For the absolute
 * form, *authority and *path (may be NULL) receive the authority and the
 * origin-form part ("/" when the target has no path; the query is kept: for
 * "http://a?q" the path span is "?q" and the caller prefixes "/").
 */
enum mrd_h1_target_form mrd_h1_target_form(const char *m, size_t mlen, const char *t, size_t tlen,
                                           const char **authority, size_t *authority_len, const char **path,
                                           size_t *path_len);

/* 1 when v is a valid Host field value: uri-host [ ":" port ] (RFC 9112 3.2,
 * RFC 3986 3.2.2); an empty value is valid (RFC 9112 3.2 allows it). */
int mrd_h1_host_valid(const char *v, size_t len);

/* Is a request method idempotent (RFC 9110 9.2.2)? */
int mrd_h1_method_idempotent(const char *m, size_t len);

#endif
