/*
 * proxyproto.h: the PROXY protocol, versions 1 (text) and 2 (binary), as
 * HAProxy's proxy-protocol.txt defines it. Pure: a parser over the bytes
 * received so far, and a builder of the header meridian sends to an
 * upstream (`send_proxy`).
 *
 * Parser decisions (HAProxy's):
 *  - v1: "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n", single spaces, at most
 *    107 bytes with the CRLF; addresses of the stated family (inet_pton:
 *    IPv4 dotted quad without leading zeros), ports decimal 0..65535 without
 *    leading zeros. "PROXY UNKNOWN" (anything up to the CRLF ignored) keeps
 *    the real peer.
 *  - v2: signature, version 2, command LOCAL (0) or PROXY (1); family
 *    TCP over IPv4 (0x11) or IPv6 (0x21) gives the addresses; any other
 *    family (UNSPEC, UDP, unix) is accepted and keeps the real peer, like
 *    LOCAL. The length must cover the address block; the TLVs after it are
 *    skipped but must be well formed (each fits); the whole header is at
 *    most MRD_PP_MAX bytes.
 */
#ifndef MERIDIAN_PROXYPROTO_H
#define MERIDIAN_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "meridian/addr.h"

#define MRD_PP_V1_MAX 107  /* the longest v1 line, CRLF included */
#define MRD_PP_MAX 4096    /* the longest header accepted (v2 with TLVs) */
#define MRD_PP_BUILD_MAX 108 /* room for any header mrd_pp_build writes */

enum mrd_pp_result {
    MRD_PP_ERROR = -1,
    MRD_PP_NEED_MORE = 0,
    MRD_PP_DONE = 1,
};

/* a connection's two ends; family 0 when unknown */
struct mrd_pp_addrs {
    struct mrd_ip src, dst;
    uint16_t src_port, dst_port;
};

struct mrd_pp_header {
    int version;       /* 1 or 2 */
    int proxy;         /* 1: addrs is the connection's origin; 0: LOCAL, UNKNOWN or another family: keep the peer */
    int family;        /* AF_INET, AF_INET6 (proxy = 1) or AF_UNSPEC */
    struct mrd_pp_addrs addrs; /* v4-mapped IPv6 folded to IPv4 like every address (addr.h) */
    size_t len;        /* header bytes (DONE) */
};

/*
 * Parse a header from the n bytes received so far. DONE: *h is filled and
 * h->len bytes are the header (the rest is the connection's payload).
 * NEED_MORE: every one of the n bytes belongs to the header and more are
 * needed (so a caller may consume them). ERROR: *err says why (static).
 */
enum mrd_pp_result mrd_pp_parse(const uint8_t *p, size_t n, struct mrd_pp_header *h, const char **err);

/*
 * Write a version 1 or 2 header into out (cap >= MRD_PP_BUILD_MAX) for a
 * connection from a->src to a->dst; a NULL a (or an unknown family) makes
 * "PROXY UNKNOWN\r\n" (v1) or a LOCAL header (v2), as health checks send.
 * When the two families differ, both are written as IPv6 (v4-mapped), as
 * HAProxy does. Returns the length, 0 when version is not 1 or 2 or cap is
 * too small.
 */
size_t mrd_pp_build(int version, const struct mrd_pp_addrs *a, uint8_t *out, size_t cap);

#endif
