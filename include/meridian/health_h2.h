/*
 * health_h2.h: one active health check over HTTP/2 (upstream_protocol h2c):
 * the client preface, SETTINGS and a GET on stream 1, then the :status of
 * the response. The caller moves the bytes (health.c); nothing here does I/O.
 */
#ifndef MERIDIAN_HEALTH_H2_H
#define MERIDIAN_HEALTH_H2_H

#include <event2/buffer.h>

struct mrd_health_h2;

/* a check of path at authority; its first bytes come out of the first io call */
struct mrd_health_h2 *mrd_health_h2_new(const char *path, const char *authority);
/* Consume in (may be NULL), append what to send to out. Returns 0 while the
 * response status has not come, 1 with *status set (-1 when the stream was
 * reset or the connection went away without one), -1 on a protocol error. */
int mrd_health_h2_io(struct mrd_health_h2 *c, struct evbuffer *in, struct evbuffer *out, int *status);
void mrd_health_h2_free(struct mrd_health_h2 *c);

#endif
