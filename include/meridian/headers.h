/*
 * headers.h: what the proxy adds to and removes from messages it forwards
 * (SPEC 3.6). Pure: builds HTTP/1.1 heads into a struct mrd_buf from header
 * spans; knows nothing of sockets. Hop-by-hop fields (RFC 9110 7.6.1: the
 * fixed list plus every field named in Connection) are dropped, framing is
 * re-emitted for the hop it is written to, X-Forwarded-For is appended,
 * X-Forwarded-Proto set and Via added.
 */
#ifndef MERIDIAN_HEADERS_H
#define MERIDIAN_HEADERS_H

#include <stddef.h>
#include <stdint.h>

#include "meridian/buf.h"
#include "meridian/http1.h"

#define MRD_VIA_TOKEN "1.1 meridian"

/* 1 when a field must not be forwarded: fixed hop-by-hop names, or named in
 * one of the Connection fields of hdrs. */
int mrd_hdr_is_hop_by_hop(const struct mrd_h1_header *hdrs, size_t n, const char *name, size_t name_len);

/* 1 when a field may travel in a trailer section: not hop-by-hop, and not
 * one that frames or routes the message (Content-Length, Host; RFC 9110
 * 6.5.1). Both directions drop the others. */
int mrd_trailer_field_allowed(const char *name, size_t name_len);

/* Calls fn for every field line of a trailer section that
 * mrd_h1_chunk_parse() validated ("Name: value" lines ending in CRLF, up to
 * the final empty line), with the value's surrounding whitespace removed.
 * Returns the number of fields. */
size_t mrd_trailer_section_each(const char *p, size_t len,
                                void (*fn)(void *arg, const char *name, size_t nl, const char *value, size_t vl),
                                void *arg);

/* the three digits of an HTTP status code (100-999) at out, no NUL */
void mrd_status_digits(char *out, int status);

struct mrd_fwd_req {
    const char *client_ip; /* appended to X-Forwarded-For */
    const char *proto;     /* X-Forwarded-Proto: "http" or "https" */
    enum mrd_h1_body body; /* framing on the upstream hop: NONE, LENGTH or CHUNKED */
    uint64_t content_length;
    int upgrade; /* forward Upgrade with "Connection: upgrade" (WebSocket) */
    const char *version; /* the client's protocol version for Via ("1.0", "1.1", "2"); NULL: "1.1" */
    const char *request_id; /* add X-Request-Id (the client sent none); NULL: nothing added */
};

/* Request head for the upstream hop: "METHOD TARGET HTTP/1.1", the client's
 * fields minus hop-by-hop ones and Expect (the proxy answers 100-continue
 * itself), then framing, X-Forwarded-For, X-Forwarded-Proto and Via. */
void mrd_build_request_head(struct mrd_buf *out, const char *method, size_t method_len, const char *target,
                            size_t target_len, const struct mrd_h1_header *hdrs, size_t n,
                            const struct mrd_fwd_req *f);

struct mrd_fwd_resp {
    int status;
    const char *reason; /* NULL: the standard phrase */
    size_t reason_len;
    enum mrd_h1_body body; /* framing on the client hop: NONE, LENGTH, CHUNKED or CLOSE */
    uint64_t content_length;
    int conn_close;   /* add "Connection: close" */
    int keep_alive;   /* add "Connection: keep-alive" (HTTP/1.0 client that asked for it) */
    int upgrade;      /* 101: keep Upgrade, "Connection: upgrade" */
    const char *region; /* X-Meridian-Region value, NULL for none */
};

/* Response head for the client hop, from the upstream's fields. */
void mrd_build_response_head(struct mrd_buf *out, const struct mrd_h1_header *hdrs, size_t n,
                             const struct mrd_fwd_resp *f);

/* Standard reason phrase ("Bad Gateway"), "Unknown" for codes it lacks. */
const char *mrd_status_reason(int status);

/* A complete response the proxy makes itself: short text body, Content-Length,
 * Content-Type text/plain, Connection: close when close is set, and
 * extra_headers (already "Name: value\r\n" lines, may be NULL). */
void mrd_build_error_response(struct mrd_buf *out, int status, const char *detail, int close,
                              const char *extra_headers);

#endif
