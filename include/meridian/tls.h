/*
 * tls.h: TLS for listeners with a tls: block (SPEC 2): one SSL_CTX per
 * certificate, the first the default and the others chosen by SNI, ALPN in
 * the listener's `protocols` order, TLS 1.3 by default (1.2 allowed with
 * ECDHE + AEAD suites only), and session tickets whose keys rotate hourly
 * (the key ring is process-wide, so tickets survive reloads).
 * Built per configuration generation (certificates reload on SIGHUP).
 */
#ifndef MERIDIAN_TLS_H
#define MERIDIAN_TLS_H

#include <openssl/ssl.h>

#include "meridian/config.h"

struct mrd_tls;

/* NULL and diagnostics (FILE:LINE:COL of the certificate entry) on failure */
struct mrd_tls *mrd_tls_new(const struct mrd_config *c, const struct mrd_listener_conf *l, struct mrd_diag *d);
void mrd_tls_free(struct mrd_tls *t);

/* a server-side SSL for a new connection on this listener */
SSL *mrd_tls_ssl_new(struct mrd_tls *t);

/* the protocol ALPN chose: MRD_PROTO_H2, or MRD_PROTO_HTTP1 (also without ALPN) */
enum mrd_proto mrd_tls_alpn(SSL *ssl);

#endif
