/*
 * tlsname.h: pure decisions for TLS to upstreams (SPEC 7): which name a
 * connection to an upstream verifies and sends as SNI, whether a
 * configured server_name is usable, and the once-a-minute pacing of the
 * handshake failure log. No OpenSSL here: tls_upstream.c applies them.
 */
#ifndef MERIDIAN_TLSNAME_H
#define MERIDIAN_TLSNAME_H

#include <stddef.h>
#include <stdint.h>

/* The name verified for an upstream: server_name when set, else the host
 * part of address ("host:port", "[v6]:port"). Writes it to out (NUL
 * terminated, without brackets). Returns 1 when it is an IP literal (no
 * SNI, RFC 6066 3: the certificate's IP SAN is checked), 0 for a DNS name,
 * -1 when there is no host or it does not fit in outlen. */
int mrd_tls_peer_name(const char *address, const char *server_name, char *out, size_t outlen);

/* A server_name value: a DNS name (letters, digits, '-', '_' in labels of
 * 1..63, dots between, at most 253 characters, no trailing dot) or an IPv4
 * / IPv6 literal without brackets. 0, or -1 and *why. */
int mrd_tls_server_name_check(const char *s, const char **why);

/* Log pacing: 1 when a message last written at last_ms (0 = never) may be
 * written again at now_ms, period_ms later at the earliest. */
int mrd_tls_log_due(uint64_t last_ms, uint64_t now_ms, uint64_t period_ms);

#endif
