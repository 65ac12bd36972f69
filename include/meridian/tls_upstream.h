/*
 * tls_upstream.h: TLS to upstreams (SPEC 7, regions[].upstream_tls). One
 * client SSL_CTX per TLS region and generation: chain and name verified
 * against `ca` (default: the system store), an optional client
 * certificate, min_version, ALPN, and sessions resumed per upstream (the
 * latest ticket is kept in its mrd_upstream_state, shared by workers).
 * Handshake failures are logged with their reason once per upstream and
 * minute. Record I/O is stream.c's (mrd_stream_tls_connect).
 */
#ifndef MERIDIAN_TLS_UPSTREAM_H
#define MERIDIAN_TLS_UPSTREAM_H

#include <stdint.h>

#include <openssl/ssl.h>

#include "meridian/config.h"

struct mrd_upstream_state;

struct mrd_uptls {
    SSL_CTX *ctx;
    uint64_t id;  /* sessions are resumed only with the context that made them */
    int verify;
    unsigned char alpn[32]; /* offered ALPN, wire format ("http/1.1" for http1 regions) */
    size_t alpn_len;
};

/* the client context of regions[ridx] (which has upstream_tls); NULL and
 * FILE:LINE:COL diagnostics when a file does not load or the key does not
 * match. verify: false is logged as a warning here. */
struct mrd_uptls *mrd_uptls_new(const struct mrd_config *c, size_t ridx, struct mrd_diag *d);
void mrd_uptls_free(struct mrd_uptls *t);
/* replace the offered ALPN protocols (e.g. "h2" for HTTP/2 upstreams); 0 or -1 */
int mrd_uptls_set_alpn(struct mrd_uptls *t, const char *const *protos, size_t n);
/* a client SSL for a new connection to st: SNI and the verified name from
 * st->tls_name, the cached session when there is one; NULL on failure */
SSL *mrd_uptls_ssl_new(struct mrd_uptls *t, struct mrd_upstream_state *st);
/* the same for a worker's connection: t is the context of st's region in
 * the worker's current generation, remembered for st; NULL when that
 * generation no longer lists st (a retry of a request begun before a
 * reload), and the remembered one serves */
SSL *mrd_uptls_ssl_upstream(struct mrd_uptls *t, struct mrd_upstream_state *st);
/* a client handshake failed (stream.c, before the owner hears of it): log
 * OpenSSL's reason unless verification or an alert already said why */
void mrd_uptls_handshake_failed(SSL *ssl);
/* after the handshake: 0 when the upstream chose ALPN `want` ("h2"); else
 * -1, logged like a handshake failure (once per upstream and minute) */
int mrd_uptls_check_alpn(SSL *ssl, struct mrd_upstream_state *st, const char *want);
/* registry entry going away: drop its cached session */
void mrd_uptls_state_dispose(struct mrd_upstream_state *st);

#endif
