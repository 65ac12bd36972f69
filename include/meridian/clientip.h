/*
 * clientip.h: which address a request comes from (SPEC 3.1): the TCP peer,
 * or, when the peer is a trusted proxy, the rightmost untrusted address of
 * the configured header (X-Forwarded-For, X-Real-IP, CF-Connecting-IP...).
 * Pure: works on header values the caller has already collected.
 */
#ifndef MERIDIAN_CLIENTIP_H
#define MERIDIAN_CLIENTIP_H

#include <stddef.h>

#include "meridian/addr.h"

struct mrd_client_ip_conf;

/* 1 when ip is inside one of conf->trusted_proxies (linear scan: the list is
 * short in practice), else 0. */
int mrd_client_ip_trusted(const struct mrd_client_ip_conf *conf, const struct mrd_ip *ip);

/*
 * The client address of a request from peer. values[i] (lens[i] bytes, not
 * NUL-terminated; NULL allowed when lens[i] is 0) are the field values of
 * every occurrence of conf->header, in the order received; they are read as
 * one comma-separated list (RFC 9110 5.3).
 *
 * When peer is not trusted, or there is no value: *out = *peer. Otherwise the
 * list is walked from the right, as nginx's real_ip_recursive does:
 *  - a trusted address is skipped (it becomes the candidate);
 *  - the first untrusted address is the client;
 *  - an entry that is not an address ("unknown", a host name, garbage) stops
 *    the walk, and the client is the last trusted address seen (the peer when
 *    it is the rightmost entry): whatever lies left of it was written by
 *    someone we cannot vouch for;
 *  - when every entry is trusted, the client is the leftmost one.
 * Empty list elements and whitespace (SP, HTAB) around entries are ignored.
 * An entry is "a.b.c.d", "a.b.c.d:port", "v6", "[v6]" or "[v6]:port" (port
 * 0..65535 digits); IPv4-mapped addresses fold to IPv4, zone ids are rejected.
 * Single-address headers (X-Real-IP) are the one-entry case.
 * Always fills *out and returns 0; an entry that is not an address is
 * reported through mrd_client_ip_on_invalid (when set).
 */
int mrd_client_ip(const struct mrd_client_ip_conf *conf, const struct mrd_ip *peer, const char *const *values,
                  const size_t *lens, size_t n_values, struct mrd_ip *out);

/*
 * Called from mrd_client_ip, on the calling (worker) thread, for each request
 * whose header had an entry that is not an address: conf, the peer, that
 * entry (len bytes, not NUL-terminated, as received) and the address used
 * instead. The server sets it once (mrd_metrics_started) to count and log
 * these; the pure core only calls it. NULL: nothing is called.
 */
typedef void (*mrd_client_ip_invalid_fn)(const struct mrd_client_ip_conf *conf, const struct mrd_ip *peer,
                                         const char *entry, size_t len, const struct mrd_ip *used);
extern _Atomic(mrd_client_ip_invalid_fn) mrd_client_ip_on_invalid;

#endif
