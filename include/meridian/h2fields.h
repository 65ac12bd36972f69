/*
 * h2fields.h: the request head for an HTTP/2 upstream hop, as a pure
 * function over the HTTP/1.1 head the proxy builds for every upstream
 * (headers.h): the request line and Host become the pseudo-header fields,
 * hop-by-hop fields are dropped (RFC 9113 8.2.2), "te: trailers" is kept
 * when the client sent it, and field names are lowercased.
 */
#ifndef MERIDIAN_H2FIELDS_H
#define MERIDIAN_H2FIELDS_H

#include <stddef.h>

#include "meridian/buf.h"
#include "meridian/http1.h"

/* at most this many fields come out: the message's plus 4 pseudo-headers and te */
#define MRD_H2_REQ_FIELDS_MAX (MRD_H1_MAX_HEADERS + 5)

/*
 * Fill out[] (MRD_H2_REQ_FIELDS_MAX entries) from a parsed request head m:
 * :method, :scheme (scheme), :authority (the absolute-form target's
 * authority, else Host; absent when neither is there), :path (origin-form,
 * "*" for OPTIONS *), then the other fields. Lowercased names are written to
 * names (reset first); the out[] entries point into m's buffer and names, so
 * names must not grow until the fields are used. Returns the count, or 0 when
 * the target cannot be sent over HTTP/2 (authority-form: CONNECT).
 */
size_t mrd_h2_request_fields(const struct mrd_h1_msg *m, const char *scheme, int te_trailers,
                             struct mrd_h1_header *out, struct mrd_buf *names);

/*
 * Split a request head that mrd_build_request_head() wrote (so well formed
 * by construction: "METHOD TARGET HTTP/1.1", then "Name: value" lines with
 * trimmed values, then an empty line) into m's request line and fields,
 * without the validating parser's work. Returns 1, or 0 when the bytes are
 * not in that shape (the caller then parses them with mrd_h1_parse_request).
 */
int mrd_h2_scan_own_head(const char *head, size_t len, struct mrd_h1_msg *m);

/* Framing of an HTTP/2 upstream response for the downstream side, which
 * speaks in HTTP/1 terms: none for a HEAD request, 1xx/204/304 or a HEADERS
 * frame that ended the stream; the length when content-length came (a valid
 * decimal, nghttp2 holds the DATA to it; *len receives it); else CHUNKED (the
 * end is the stream's end: an HTTP/1.1 client gets it chunked). */
enum mrd_h1_body mrd_h2_response_body(int status, int is_head, int end_stream, const char *content_length,
                                      size_t cl_len, uint64_t *len);

/* 1 when a TE field value lists "trailers" (the only TE HTTP/2 allows) */
int mrd_te_has_trailers(const char *value, size_t len);

#endif
