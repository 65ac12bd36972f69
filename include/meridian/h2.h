/*
 * h2.h: HTTP/2 downstream connections (src/proto/h2.c), server side, on nghttp2.
 * Every stream is one struct mrd_req (proxy.c); the response comes back
 * through struct mrd_req_ops like HTTP/1's. Plaintext prior knowledge (h2c)
 * is detected by conn.c, TLS connections arrive with ALPN "h2".
 */
#ifndef MERIDIAN_H2_H
#define MERIDIAN_H2_H

#include <stddef.h>

#include <event2/buffer.h>
#include <event2/util.h>

#include "meridian/addr.h"
#include "meridian/config.h"
#include "meridian/gen.h"
#include "meridian/proxyproto.h"
#include "meridian/stream.h"

struct mrd_worker;
struct mrd_h2_conn;

#define MRD_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define MRD_H2_PREFACE_LEN 24
#define MRD_H2_PREFACE_LINE 16 /* "PRI * HTTP/2.0\r\n": never a valid HTTP/1 request */

/*
 * Take over a downstream connection as HTTP/2. s is connected (and, for
 * TLS, past its handshake with ALPN "h2"); bytes already in s->in (the client
 * preface and whatever followed) are processed from the next loop pass, never
 * from inside this call. The new connection:
 *  - owns s from now on (replaces its callbacks; frees it at the end);
 *  - takes its own reference on gen;
 *  - counts itself in w->n_conns and mrd_connections_active (a caller that
 *    drops an mrd_conn shell after this call must undo that shell's counts,
 *    as conn_free does).
 * addrs (the connection's ends; addrs->src is the client's TCP peer) is
 * copied; tls selects X-Forwarded-Proto "https". Never fails.
 */
struct mrd_h2_conn *mrd_h2_start(struct mrd_worker *w, struct mrd_stream *s, struct mrd_gen *gen,
                                 const struct mrd_pp_addrs *addrs, int tls);

/*
 * Does in start with an HTTP/2 client preface? 1: its first line (16 bytes)
 * is there, hand the connection to HTTP/2 (nghttp2 checks the other 8 and
 * answers a bad preface with GOAWAY); 0: what is there (at least one byte) is
 * a prefix of that line, wait for more; -1: not a preface (or empty).
 */
int mrd_h2_preface(struct evbuffer *in);

/* Graceful (force 0): GOAWAY to every HTTP/2 connection of w, close those
 * without streams; force 1: close them all now. Called with the HTTP/1
 * connections' mrd_conn_shutdown_all, from w's thread or after it ended. */
void mrd_h2_shutdown_all(struct mrd_worker *w, int force);

#endif
