/*
 * ppwait.c: reading the PROXY protocol header of a connection accepted on a
 * proxy_protocol listener, before anything else reads the socket (conn.c
 * then starts TLS or HTTP on it).
 *
 * Only the header's bytes are consumed, as HAProxy does: peek at what
 * arrived, and take the bytes that belong to the header (all of them while
 * it is incomplete: the parser says they all do; exactly its length once
 * complete). What follows stays in the socket, so a TLS handshake or the
 * h2c preface sniffing sees the connection as if it started after the
 * header. The deadline is absolute: trickling bytes do not extend it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "meridian/clock.h"
#include "meridian/common.h"
#include "meridian/proxyproto.h"
#include "meridian/server.h"

struct mrd_pp_wait {
    struct event ev;
    uint64_t deadline_us;
    mrd_pp_wait_cb done;
    void *arg;
    size_t have; /* header bytes consumed from the socket */
    uint8_t buf[MRD_PP_MAX];
};

static void
arm(struct mrd_pp_wait *pw)
{
    uint64_t now = mrd_now_us(), left = pw->deadline_us > now ? pw->deadline_us - now : 0;
    struct timeval tv = {(time_t)(left / 1000000), (suseconds_t)(left % 1000000)};

    event_add(&pw->ev, &tv);
}

/* the callback may free pw: nothing touches it afterwards */
static void
finish(struct mrd_pp_wait *pw, const struct mrd_pp_header *h, const char *err)
{
    event_del(&pw->ev);
    pw->done(pw->arg, h, err);
}

static void
on_read(evutil_socket_t fd, short what, void *arg)
{
    struct mrd_pp_wait *pw = arg;
    struct mrd_pp_header h;
    const char *err;
    enum mrd_pp_result r;
    ssize_t n;
    size_t take;

    if (what & EV_TIMEOUT) {
        finish(pw, NULL, "no complete PROXY protocol header within timeouts.request_header");
        return;
    }
    n = recv(fd, pw->buf + pw->have, sizeof(pw->buf) - pw->have, MSG_PEEK);
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        arm(pw);
        return;
    }
    if (n <= 0) {
        finish(pw, NULL, n == 0 ? "closed before the end of the PROXY protocol header" : strerror(errno));
        return;
    }
    r = mrd_pp_parse(pw->buf, pw->have + (size_t)n, &h, &err);
    if (r == MRD_PP_ERROR) {
        finish(pw, NULL, err);
        return;
    }
    take = r == MRD_PP_DONE ? h.len - pw->have : (size_t)n;
    if (recv(fd, pw->buf + pw->have, take, 0) != (ssize_t)take) {
        finish(pw, NULL, "PROXY protocol header: short read");
        return;
    }
    pw->have += take;
    if (r == MRD_PP_NEED_MORE) {
        arm(pw);
        return;
    }
    finish(pw, &h, NULL);
}

struct mrd_pp_wait *
mrd_pp_wait_start(struct event_base *base, evutil_socket_t fd, uint64_t deadline_us, mrd_pp_wait_cb done, void *arg)
{
    struct mrd_pp_wait *pw = mrd_xcalloc(1, sizeof(*pw));

    pw->deadline_us = deadline_us;
    pw->done = done;
    pw->arg = arg;
    event_assign(&pw->ev, base, fd, EV_READ, on_read, pw);
    arm(pw);
    return pw;
}

void
mrd_pp_wait_free(struct mrd_pp_wait *pw)
{
    if (pw == NULL)
        return;
    event_del(&pw->ev);
    free(pw);
}
