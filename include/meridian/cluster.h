/*
 * cluster.h: a fleet of instances sharing caps through Redis (SPEC 8).
 * Runs on the main loop (hiredis async with its libevent adapter), never on
 * a worker: requests only touch the region states' leases and buckets
 * (fleet.h, route.c). Every entry point is for the main thread.
 */
#ifndef MERIDIAN_CLUSTER_H
#define MERIDIAN_CLUSTER_H

#include "meridian/buf.h"
#include "meridian/gen.h"

struct event_base;
struct evbuffer;

/* Take g's cluster block and capped regions (start, reload): connects,
 * reconnects when the Redis address, password or database changed, stops
 * without a block. Sets every capped region state of g to the current mode
 * before the workers see g. */
void mrd_cluster_commit(struct event_base *base, struct mrd_gen *g);

/* The "cluster" member of /v1/status: an object, or null without a block. */
void mrd_cluster_status_json(struct evbuffer *b);

/* The meridian_cluster_* metric families (nothing without a block). */
void mrd_cluster_metrics(struct mrd_buf *b);

/* Closes the connection and frees everything (shutdown). */
void mrd_cluster_stop(void);

#endif
