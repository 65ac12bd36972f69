/*
 * resolver.h: upstream host names resolved with libevent's evdns on the
 * main thread (SPEC section 7). The resolver keeps one entry per name of
 * the current configuration: its last good address set, when it was
 * resolved, the last error. Generations are built from that cache
 * (mrd_resolver_lookup); when a refresh changes a set, the `changed` hook
 * runs on the main thread and builds the next generation.
 */
#ifndef MERIDIAN_RESOLVER_H
#define MERIDIAN_RESOLVER_H

#include "meridian/config.h"
#include "meridian/gen.h"

struct event_base;
struct evbuffer;

/* Resolve every host name of conf now, running `base` until each has
 * answered or the resolver timeout passed. With dns.required, a name
 * without addresses is a diagnostic "FILE:LINE:COL: cannot resolve "NAME":
 * REASON" and -1 is returned. The cache keeps the answers either way. */
int mrd_resolver_prime(struct event_base *base, const struct mrd_config *conf, struct mrd_diag *diag);

/* Serve refreshes on base from now on: every name is re-resolved at
 * min(TTL, dns.refresh) (a name without addresses soon); `changed` runs
 * once per loop pass in which some address set changed. */
void mrd_resolver_start(struct event_base *base, const struct mrd_config *conf, void (*changed)(void));

/* A reload: take the dns block and the names of conf; names already known
 * keep their addresses (the new generation uses them at once), new names
 * are resolved now (their generation follows through `changed`), names no
 * longer used are forgotten. */
void mrd_resolver_update(const struct mrd_config *conf);

/* the current set of host (mrd_dns_lookup_fn; arg unused); NULL when none */
const struct mrd_ipset *mrd_resolver_lookup(const char *host, void *arg);

/* JSON object for /v1/status: {"name", "addresses", "resolved_at",
 * "last_attempt", "last_error", "next_refresh_s"} of host ("null" if unknown) */
void mrd_resolver_status_json(struct evbuffer *b, const char *host);

/* number of resolutions that succeeded / failed since start (metrics) */
void mrd_resolver_counts(unsigned long long *ok, unsigned long long *failed);

void mrd_resolver_stop(void);

#endif
