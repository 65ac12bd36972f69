/*
 * dns.h: the pure side of upstream host names (SPEC section 7): host name
 * syntax, "name:port" parsing, hosts-file lookup, sets of resolved
 * addresses (normalised, compared, diffed), the refresh delay, and the
 * expansion of a region's upstream entries into one target per address.
 * No sockets and no libevent here: src/server/resolver.c asks evdns and
 * feeds the answers to these functions.
 */
#ifndef MERIDIAN_DNS_H
#define MERIDIAN_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "meridian/addr.h"

#define MRD_HOSTNAME_MAX 253

struct mrd_upstream_conf;

/* a set of addresses: sorted, no duplicates (after mrd_ipset_normalize) */
struct mrd_ipset {
    struct mrd_ip *v;
    size_t n;
};

/* 1 when s[0..len) is a host name: dot-separated RFC 1123 labels (letters,
 * digits, '-' not at either end, 1..63 bytes), 253 bytes at most, one
 * trailing dot allowed, and a last label that is not all digits (so that
 * "10.0.0.300" is a bad address, not a name). *why says what is wrong. */
int mrd_hostname_valid(const char *s, size_t len, const char **why);

/* Parse "name:port" (port 1..65535). Returns 0 with host (NUL-terminated,
 * lower-cased, trailing dot removed) and port, or -1 with *why. */
int mrd_hostport_parse(const char *s, char host[MRD_HOSTNAME_MAX + 2], uint16_t *port, const char **why);

/* Addresses of `name` in hosts-file text (lines "ADDR NAME [ALIASES...]",
 * '#' comments, names compared case-insensitively). Appends to *out (not
 * normalised) and returns how many were found. */
size_t mrd_hosts_lookup(const char *text, size_t len, const char *name, struct mrd_ipset *out);

void mrd_ipset_add(struct mrd_ipset *s, const struct mrd_ip *ip);
void mrd_ipset_normalize(struct mrd_ipset *s); /* sort (IPv4 first) and drop duplicates */
int mrd_ipset_equal(const struct mrd_ipset *a, const struct mrd_ipset *b);
/* how many of `next` are not in `prev` (joined) and of `prev` not in `next` (left); both normalised */
void mrd_ipset_diff(const struct mrd_ipset *prev, const struct mrd_ipset *next, size_t *joined, size_t *left);
void mrd_ipset_copy(struct mrd_ipset *dst, const struct mrd_ipset *src);
void mrd_ipset_dispose(struct mrd_ipset *s);

/* socket address of ip at port */
void mrd_ip_to_sockaddr(const struct mrd_ip *ip, uint16_t port, struct sockaddr_storage *ss, socklen_t *len);

/* Delay before the next resolution of a name: the record's TTL (seconds,
 * when ttl >= 0) capped by refresh_ms, at least 1s so that a TTL of 0
 * cannot make a busy loop. */
uint64_t mrd_dns_refresh_delay_ms(long ttl, uint64_t refresh_ms);

/* one upstream of a region after resolution */
struct mrd_up_target {
    size_t entry; /* index of its upstreams[] entry */
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

/* Expand n entries into targets: an IP literal is one target; an entry with
 * a host name is one target per address of resolved[i] (NULL or empty: none
 * yet). An address already produced by an earlier entry is skipped (the
 * first entry keeps it). out has room for mrd_upstreams_count(); returns
 * the number written. */
size_t mrd_upstreams_count(const struct mrd_upstream_conf *ups, size_t n, const struct mrd_ipset *const *resolved);
size_t mrd_upstreams_expand(const struct mrd_upstream_conf *ups, size_t n, const struct mrd_ipset *const *resolved,
                            struct mrd_up_target *out);

#endif
