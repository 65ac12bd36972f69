/*
 * stream.h: a non-blocking socket with input and output evbuffers, in the
 * spirit of libevent's bufferevent but built for a proxy's hot path:
 *  - reads go straight into the input buffer (no FIONREAD ioctl per read);
 *  - the read event stays registered, so there is no epoll_ctl per request;
 *  - output is written directly at the end of the current batch of callbacks
 *    (one writev for everything queued), and a write event is registered only
 *    when the socket is full.
 * Everything runs on one worker's event base; a stream is never shared.
 * Owned by: whoever created it (mrd_conn, mrd_uconn); freed with
 * mrd_stream_free, which is safe inside the stream's own callbacks as long
 * as the caller returns right after.
 */
#ifndef MERIDIAN_STREAM_H
#define MERIDIAN_STREAM_H

#include <stdint.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/ssl.h>

#define MRD_STREAM_EOF 0x01
#define MRD_STREAM_ERROR 0x02
#define MRD_STREAM_TIMEOUT 0x04
#define MRD_STREAM_CONNECTED 0x08
#define MRD_STREAM_READING 0x10
#define MRD_STREAM_WRITING 0x20

struct mrd_stream;
struct mrd_stream_loop;

typedef void (*mrd_stream_cb)(struct mrd_stream *s, void *arg);
typedef void (*mrd_stream_event_cb)(struct mrd_stream *s, short what, void *arg);

struct mrd_stream { /* ordered to pack into 240 bytes: one per connection */
    struct mrd_stream_loop *loop;
    struct evbuffer *in, *out;
    mrd_stream_cb readcb;      /* bytes arrived in `in` */
    mrd_stream_cb writecb;     /* `out` drained to <= wlow after a write */
    mrd_stream_event_cb eventcb;
    void *arg;
    SSL *ssl; /* TLS: owned by the stream; NULL for plaintext */
    struct mrd_stream *dnext, *dprev; /* dirty list */
    struct event *wev; /* created when first needed: most sockets never fill up */
    struct event rev;
    evutil_socket_t fd;
    uint32_t wlow;  /* write low watermark */
    uint32_t rhigh; /* stop reading when `in` holds this much (0 = no limit);
                       mrd_stream_read(s, 1) resumes once the owner drained it */
    uint32_t rd_timeout_ms, wr_timeout_ms; /* 0 = none */
    unsigned reading : 1, rd_added : 1, wr_added : 1, connecting : 1, dirty : 1, closed : 1, rblocked : 1,
        handshaking : 1, read_wants_write : 1, write_wants_read : 1, tls_client : 1,
        raw_first : 1; /* TLS client: bytes queued while connecting go out raw before the handshake */
};

/* one per worker: the list of streams with output to flush */
#define MRD_STREAM_READ_CHUNK 16384

struct mrd_stream_loop {
    struct event_base *base;
    struct event flush_ev;
    struct mrd_stream *dirty;
    struct event *fd_closed_ev; /* when set, activated each time a stream closes its socket */
    unsigned char rbuf[MRD_STREAM_READ_CHUNK]; /* every read lands here first */
};

void mrd_stream_loop_init(struct mrd_stream_loop *l, struct event_base *base);
void mrd_stream_loop_dispose(struct mrd_stream_loop *l);

/* wrap a connected (or about to connect) non-blocking socket; the stream owns fd */
struct mrd_stream *mrd_stream_new(struct mrd_stream_loop *l, evutil_socket_t fd);
void mrd_stream_free(struct mrd_stream *s);
void mrd_stream_setcb(struct mrd_stream *s, mrd_stream_cb readcb, mrd_stream_cb writecb,
                      mrd_stream_event_cb eventcb, void *arg);
/* start a non-blocking connect; the event callback gets CONNECTED or ERROR/TIMEOUT */
int mrd_stream_connect(struct mrd_stream *s, const struct sockaddr *sa, socklen_t len);
/* Serve TLS on this (accepted) socket: the stream takes ssl, runs the
 * handshake, then calls the event callback with MRD_STREAM_CONNECTED (or
 * ERROR); from then on reads and writes go through TLS. */
void mrd_stream_tls_accept(struct mrd_stream *s, SSL *ssl);
/* TLS to a server on a connecting socket (after mrd_stream_connect): the
 * stream takes ssl; once the TCP connect completes it runs the handshake,
 * bounded by the write (connect) timeout, and only then calls back
 * MRD_STREAM_CONNECTED, or ERROR / TIMEOUT when it fails. */
void mrd_stream_tls_connect(struct mrd_stream *s, SSL *ssl);

/* reading on (1) or off (0); off until the owner turns it on */
void mrd_stream_read(struct mrd_stream *s, int on);
/* inactivity timeouts in ms (0 = none): reading while enabled, writing while output is pending */
void mrd_stream_set_timeouts(struct mrd_stream *s, uint32_t rd_ms, uint32_t wr_ms);
/* Queue bytes; they are written at the end of the current batch of
 * callbacks. Always queue through these (not evbuffer_add on s->out). */
void mrd_stream_write(struct mrd_stream *s, const void *p, size_t n);
/* move n bytes of src, framed as one HTTP/1.1 chunk when chunked is set */
void mrd_stream_move(struct mrd_stream *s, struct evbuffer *src, size_t n, int chunked);
/* half-close the write side once the output is flushed (now if it is empty) */
void mrd_stream_shutdown_write(struct mrd_stream *s);

#endif
