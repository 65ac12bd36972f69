/*
 * fuzz_event.h: the harness shared by the event-layer targets
 * (fuzz_h1_conn.c, fuzz_h2_server.c). Include it once, from the target,
 * after defining the target's hooks (see "target hooks" below).
 *
 * What it builds once (LLVMFuzzerInitialize):
 *  - a virtual CLOCK_MONOTONIC (this file defines clock_gettime: the
 *    executable's definition wins over libc's for libevent, nghttp2 and
 *    meridian's clock.h alike), which only moves when the input says so;
 *  - one worker (mrd_worker_init without listening sockets; the harness runs
 *    its event base itself, never in a thread);
 *  - a configuration generation from an in-memory YAML file: listener 0
 *    [http1], listener 1 [http1, h2c], one region with two upstreams: the
 *    harness's own in-process upstream on a loopback TCP port (weight 3) and
 *    a closed port (weight 1: refused connects, retries);
 *  - the in-process upstream: it parses each request (core HTTP/1 parser,
 *    Content-Length and chunked bodies) and answers it as the next queued
 *    response spec says (status, framing, size, trailers, interim 1xx, early
 *    answer, held until released, cut in the middle, 101 + echo tunnel).
 *
 * Each input: a socketpair, one end accepted by meridian as a client
 * connection on the target's listener (mrd_conn_accept, so the h2c sniffing
 * path is the real one), the other end is the fuzzer's client. The input is
 * one flags byte (the target's) and then a program:
 *
 *   op % 16   arguments                 effect
 *   0  SEND8  n:u8, n bytes             client writes the bytes
 *   1  SEND16 n:u16le, n bytes          client writes the bytes
 *   2  RUN                              run the loop until quiet
 *   3  ADV    k:u8                      clock += k * 50 ms, then RUN
 *   4  ADVMS  ms:u16le                  clock += ms, then RUN
 *   5  RESP   st:u8 fr:u8 sz:u8 fl:u8   queue a response spec (see fz_spec)
 *   6  RELEASE                          held responses leave now
 *   7  UPCLOSE                          the upstream closes all its connections
 *   8  READTOG                          client stops / resumes reading
 *   9  SHUTWR                           client half-closes (shutdown SHUT_WR)
 *   10..14                              the target's own ops (fz_target_op)
 *   15 REST                             client writes the rest of the input
 *
 * Bytes missing at the end of the input are taken as zero / absent. After
 * the program: RUN, the client closes, and the clock goes forward in 1 s
 * steps until meridian freed the connection (abort if it has not after 300
 * s of virtual time: a connection that outlives its client is a finding);
 * idle upstream connections are drained. Leaks show up in LeakSanitizer.
 * FZ_VERBOSE=1 prints what the client received; FZ_LOG=3 meridian's log.
 */
#ifndef FUZZ_EVENT_H
#define FUZZ_EVENT_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "meridian/common.h"
#include "meridian/config.h"
#include "meridian/gen.h"
#include "meridian/http1.h"
#include "meridian/log.h"
#include "meridian/server.h"

/* ---- the virtual monotonic clock ---- */

static uint64_t fz_clock_ns; /* 0 until initialised: the real clock */

static int
fz_real_clock(clockid_t id, struct timespec *ts)
{
    return (int)syscall(SYS_clock_gettime, id, ts);
}

int
clock_gettime(clockid_t id, struct timespec *ts)
{
    if (fz_clock_ns != 0 && (id == CLOCK_MONOTONIC || id == CLOCK_MONOTONIC_COARSE || id == CLOCK_MONOTONIC_RAW ||
                             id == CLOCK_BOOTTIME)) {
        ts->tv_sec = (time_t)(fz_clock_ns / 1000000000u);
        ts->tv_nsec = (long)(fz_clock_ns % 1000000000u);
        return 0;
    }
    return fz_real_clock(id, ts);
}

static void fz_run(void);

static void
fz_advance_ms(uint64_t ms)
{
    fz_clock_ns += ms * 1000000u;
    fz_run();
}

/* ---- input ---- */

struct fz_in {
    const uint8_t *p;
    size_t n;
};

static unsigned
fz_u8(struct fz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static unsigned
fz_u16(struct fz_in *in)
{
    unsigned lo = fz_u8(in);
    return lo | fz_u8(in) << 8;
}

/* up to n bytes of the input; *got says how many there were */
static const uint8_t *
fz_bytes(struct fz_in *in, size_t n, size_t *got)
{
    const uint8_t *p = in->p;
    if (n > in->n)
        n = in->n;
    in->p += n;
    in->n -= n;
    *got = n;
    return p;
}

/* ---- global state ---- */

static struct mrd_worker fz_w;
static struct mrd_gen *fz_gen;
static uint64_t fz_progress;   /* anything the harness saw move */
static int fz_cfd = -1;        /* the client's end of the socketpair */
static struct evbuffer *fz_cout; /* client bytes not yet taken by the socket */
static int fz_creading;        /* the client reads what meridian sends */
static int fz_cshut;
static size_t fz_cgot;         /* bytes the client received, this input */

static void fz_target_recv(const uint8_t *p, size_t n); /* target hook */

/* write what the client has queued, read what meridian sent */
static void
fz_client_pump(void)
{
    if (fz_cfd < 0)
        return;
    while (evbuffer_get_length(fz_cout) > 0) {
        int r = evbuffer_write(fz_cout, fz_cfd);
        if (r <= 0) {
            if (r < 0 && errno != EAGAIN && errno != EINTR)
                evbuffer_drain(fz_cout, evbuffer_get_length(fz_cout)); /* meridian closed */
            break;
        }
        fz_progress++;
    }
    while (fz_creading) {
        uint8_t buf[16384];
        ssize_t r = recv(fz_cfd, buf, sizeof(buf), 0);
        if (r <= 0)
            break;
        fz_progress++;
        fz_cgot += (size_t)r;
        fz_target_recv(buf, (size_t)r);
    }
}

static void
fz_client_send(const void *p, size_t n)
{
    if (fz_cfd < 0 || fz_cshut || n == 0)
        return;
    evbuffer_add(fz_cout, p, n);
    fz_client_pump();
}

/* ---- the in-process upstream ---- */

/*
 * A response spec (RESP op): st selects the status, fr the framing and
 * flags, sz the body size, fl more flags.
 */
struct fz_spec {
    int status;
    int framing; /* 0 Content-Length, 1 chunked, 2 close-delimited, 3 Content-Length: 0, 4 no framing header */
    size_t size;
    unsigned trailers : 1, early : 1, hold : 1, abort : 1, conn_close : 1, interim : 1, bad_header : 1,
        http10 : 1, no_reason : 1;
};

static const int fz_statuses[] = {200, 200, 201, 204, 206, 301, 304, 400, 404, 500, 502, 503, 101, 200, 299, 599};

static void
fz_spec_decode(struct fz_spec *s, unsigned st, unsigned fr, unsigned sz, unsigned fl)
{
    memset(s, 0, sizeof(*s));
    s->status = fz_statuses[st % MRD_ARRAY_LEN(fz_statuses)];
    s->framing = (int)(fr & 7) % 5;
    s->trailers = (fr >> 3) & 1;
    s->early = (fr >> 4) & 1;
    s->hold = (fr >> 5) & 1;
    s->abort = (fr >> 6) & 1;
    s->interim = (fr >> 7) & 1;
    /* 0..2032 in steps of 16, then 0..520192 in steps of 4096 */
    s->size = sz < 128 ? sz * 16u : (sz - 128u) * 4096u;
    s->conn_close = fl & 1;
    s->bad_header = (fl >> 1) & 1;
    s->http10 = (fl >> 2) & 1;
    s->no_reason = (fl >> 3) & 1;
}

#define FZ_SPECS 16
static struct fz_spec fz_specs[FZ_SPECS];
static unsigned fz_spec_head, fz_spec_n;

static struct fz_spec
fz_spec_next(void)
{
    struct fz_spec s;
    if (fz_spec_n == 0) {
        fz_spec_decode(&s, 0, 0, 2, 0); /* 200, Content-Length: 32 */
        return s;
    }
    s = fz_specs[fz_spec_head];
    fz_spec_head = (fz_spec_head + 1) % FZ_SPECS;
    fz_spec_n--;
    return s;
}

enum { UP_HEAD, UP_BODY_CL, UP_BODY_CHUNKED, UP_TUNNEL };

struct fz_up {
    struct fz_up *next;
    int fd;
    struct event rev, wev;
    struct evbuffer *in, *out;
    int state;
    uint64_t left;
    struct mrd_h1_chunk ch;
    struct fz_spec spec;
    int is_head;      /* request method HEAD */
    int answered;     /* the current request has its response (or it is held) */
    int held;         /* response waiting for RELEASE */
    int closing;      /* close once out is flushed */
};

static struct fz_up *fz_ups;
static unsigned fz_n_ups;
static int fz_up_lfd = -1;
static struct event fz_up_lev;
static uint16_t fz_up_port, fz_dead_port;

static void
fz_up_free(struct fz_up *u)
{
    struct fz_up **pp;
    for (pp = &fz_ups; *pp != u; pp = &(*pp)->next)
        ;
    *pp = u->next;
    event_del(&u->rev);
    event_del(&u->wev);
    evbuffer_free(u->in);
    evbuffer_free(u->out);
    close(u->fd);
    free(u);
    fz_n_ups--;
    fz_progress++;
}

/* write what is queued; 0, or -1 when u was freed */
static int
fz_up_flush(struct fz_up *u)
{
    while (evbuffer_get_length(u->out) > 0) {
        int r = evbuffer_write(u->out, u->fd);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            event_add(&u->wev, NULL);
            return 0;
        }
        if (r <= 0) {
            fz_up_free(u);
            return -1;
        }
        fz_progress++;
    }
    event_del(&u->wev);
    if (u->closing) {
        fz_up_free(u);
        return -1;
    }
    return 0;
}

static void
fz_up_body(struct evbuffer *out, size_t n)
{
    static char fill[4096];
    if (fill[0] == 0)
        memset(fill, 'a', sizeof(fill));
    while (n > 0) {
        size_t k = n < sizeof(fill) ? n : sizeof(fill);
        evbuffer_add(out, fill, k);
        n -= k;
    }
}

/* queue the response for the current request */
static void
fz_up_respond(struct fz_up *u)
{
    const struct fz_spec *s = &u->spec;
    struct evbuffer *o = u->out;
    size_t body = u->is_head ? 0 : s->size;

    if (s->interim)
        evbuffer_add_printf(o, "HTTP/1.1 %s\r\n\r\n", s->status == 101 ? "100 Continue" : "103 Early Hints\r\nLink: </a>");
    evbuffer_add_printf(o, "HTTP/1.%d %d%s\r\nServer: fz\r\n", s->http10 ? 0 : 1, s->status,
                        s->no_reason ? " " : " X");
    if (s->conn_close)
        evbuffer_add_printf(o, "Connection: close\r\n");
    if (s->bad_header)
        evbuffer_add_printf(o, "Bad Header\r\n");
    if (s->status == 101) {
        evbuffer_add_printf(o, "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
        u->state = UP_TUNNEL;
        return;
    }
    switch (s->framing) {
    case 0:
        evbuffer_add_printf(o, "Content-Length: %zu\r\n\r\n", s->size);
        fz_up_body(o, s->abort ? body / 2 : body);
        break;
    case 1:
        evbuffer_add_printf(o, "Transfer-Encoding: chunked\r\n%s\r\n", s->trailers ? "Trailer: x-t\r\n" : "");
        for (size_t left = s->abort ? body / 2 : body; left > 0;) {
            size_t k = left < 5000 ? left : 5000;
            evbuffer_add_printf(o, "%zx\r\n", k);
            fz_up_body(o, k);
            evbuffer_add(o, "\r\n", 2);
            left -= k;
        }
        if (!s->abort)
            evbuffer_add_printf(o, "0\r\n%s\r\n", s->trailers ? "X-T: 1\r\nGrpc-Status: 0\r\n" : "");
        break;
    case 2:
        evbuffer_add(o, "\r\n", 2);
        fz_up_body(o, body);
        u->closing = 1;
        break;
    case 3:
        evbuffer_add_printf(o, "Content-Length: 0\r\n\r\n");
        break;
    default:
        evbuffer_add(o, "\r\n", 2);
        break;
    }
    if (s->abort || s->conn_close)
        u->closing = 1;
}

static void
fz_up_answer(struct fz_up *u)
{
    if (u->answered)
        return;
    u->answered = 1;
    if (u->spec.hold) {
        u->held = 1;
        return;
    }
    fz_up_respond(u);
}

/* consume request bytes; 0, or -1 when u was freed */
static int
fz_up_process(struct fz_up *u)
{
    for (;;) {
        size_t len = evbuffer_get_length(u->in);
        if (u->state == UP_TUNNEL) {
            evbuffer_add_buffer(u->out, u->in); /* echo */
            return fz_up_flush(u);
        }
        if (len == 0 || u->closing)
            break;
        if (u->state == UP_HEAD) {
            struct mrd_h1_msg m;
            size_t ep;
            if (u->answered && !u->held) /* the previous exchange is over */
                u->answered = 0;
            else if (u->answered)
                break; /* pipelined behind a held response: wait */
            size_t n = len < 65536 ? len : 65536;
            const char *p = (const char *)evbuffer_pullup(u->in, (ev_ssize_t)n);
            int r = mrd_h1_parse_request(p, n, 0, &m, &ep);
            if (r == 0 && n < 65536)
                break;
            if (r <= 0) {
                evbuffer_add_printf(u->out, "HTTP/1.1 400 Bad\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
                u->closing = 1;
                break;
            }
            u->spec = fz_spec_next();
            u->is_head = m.method_len == 4 && memcmp(m.method, "HEAD", 4) == 0;
            u->state = m.body == MRD_H1_BODY_LENGTH ? UP_BODY_CL : m.body == MRD_H1_BODY_CHUNKED ? UP_BODY_CHUNKED : UP_HEAD;
            u->left = m.content_length;
            mrd_h1_chunk_init(&u->ch);
            evbuffer_drain(u->in, (size_t)r);
            if (u->state == UP_HEAD || u->spec.early)
                fz_up_answer(u);
            if (u->state == UP_BODY_CL && u->left == 0)
                u->state = UP_HEAD;
        } else if (u->state == UP_BODY_CL) {
            size_t k = (uint64_t)len < u->left ? len : (size_t)u->left;
            evbuffer_drain(u->in, k);
            u->left -= k;
            if (u->left == 0) {
                u->state = UP_HEAD;
                fz_up_answer(u);
            }
        } else {
            if (u->ch.state == MRD_H1_CHUNK_DATA && u->ch.remaining > 0) {
                size_t k = (uint64_t)len < u->ch.remaining ? len : (size_t)u->ch.remaining;
                evbuffer_drain(u->in, k);
                u->ch.remaining -= k;
                continue;
            }
            size_t n = len < 4096 ? len : 4096;
            const char *p = (const char *)evbuffer_pullup(u->in, (ev_ssize_t)n);
            int r = mrd_h1_chunk_parse(&u->ch, p, n, 65536);
            if (r < 0) {
                u->closing = 1;
                break;
            }
            evbuffer_drain(u->in, (size_t)r);
            if (u->ch.state == MRD_H1_CHUNK_DONE) {
                u->state = UP_HEAD;
                fz_up_answer(u);
            } else if (r == 0 && !(u->ch.state == MRD_H1_CHUNK_DATA && u->ch.remaining > 0)) {
                break;
            }
        }
    }
    return fz_up_flush(u);
}

static void
fz_up_on_read(evutil_socket_t fd, short what, void *arg)
{
    struct fz_up *u = arg;
    for (;;) {
        int r = evbuffer_read(u->in, fd, 65536);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            fz_up_free(u); /* meridian closed (or reset) its side */
            return;
        }
        if (r < 0)
            break;
        fz_progress++;
    }
    fz_up_process(u);
}

static void
fz_up_on_write(evutil_socket_t fd, short what, void *arg)
{
    struct fz_up *u = arg;
    if (fz_up_flush(u) == 0 && u->state == UP_TUNNEL)
        fz_up_process(u);
}

static void
fz_up_on_accept(evutil_socket_t lfd, short what, void *arg)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct fz_up *u = mrd_xcalloc(1, sizeof(*u));
        u->fd = fd;
        u->in = evbuffer_new();
        u->out = evbuffer_new();
        event_assign(&u->rev, fz_w.base, fd, EV_READ | EV_PERSIST, fz_up_on_read, u);
        event_assign(&u->wev, fz_w.base, fd, EV_WRITE | EV_PERSIST, fz_up_on_write, u);
        event_add(&u->rev, NULL);
        u->next = fz_ups;
        fz_ups = u;
        fz_n_ups++;
        fz_progress++;
    }
}

static void
fz_up_release(void)
{
    struct fz_up *u, *next;
    for (u = fz_ups; u != NULL; u = next) {
        next = u->next;
        if (u->held) {
            u->held = 0;
            fz_up_respond(u);
            if (fz_up_process(u) == -1) /* also what was pipelined behind it */
                continue;
        }
    }
}

static void
fz_up_close_all(void)
{
    while (fz_ups != NULL)
        fz_up_free(fz_ups);
}

/* a loopback listening socket; its port in *port */
static int
fz_listen(uint16_t *port, int do_listen)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || (do_listen && listen(fd, 1024) != 0) ||
        getsockname(fd, (struct sockaddr *)&sin, &sl) != 0) {
        perror("fuzz_event: listen");
        abort();
    }
    *port = ntohs(sin.sin_port);
    return fd;
}

/* ---- the loop ---- */

/* run the worker's loop without blocking until a few passes in a row moved
 * nothing (loopback sockets deliver within the sending syscall) */
static void
fz_run(void)
{
    int quiet = 0;
    for (int i = 0; i < 400 && quiet < 3; i++) {
        uint64_t before = fz_progress;
        unsigned nconns = fz_w.n_conns;
        event_base_loop(fz_w.base, EVLOOP_NONBLOCK);
        fz_client_pump();
        if (fz_progress == before && nconns == fz_w.n_conns &&
            event_base_get_num_events(fz_w.base, EVENT_BASE_COUNT_ACTIVE) == 0)
            quiet++;
        else
            quiet = 0;
    }
}

/* ---- set-up ---- */

static const char fz_yaml[] = "workers: 1\n"
                              "listeners:\n"
                              "  - address: \"127.0.0.1:1\"\n"
                              "    protocols: [http1]\n"
                              "  - address: \"127.0.0.1:2\"\n"
                              "    protocols: [http1, h2c]\n"
                              "timeouts: {connect: 1s, request_header: 2s, upstream_response: 3s, idle: 5s, shutdown: 1s}\n"
                              "limits: {max_header_bytes: 8192, max_body_bytes: 200000}\n"
                              "client_ip: {trusted_proxies: [\"127.0.0.1/32\"], header: X-Forwarded-For}\n"
                              "regions:\n"
                              "  - name: r1\n"
                              "    location: {latitude: 1, longitude: 1}\n"
                              "    balance: round_robin\n"
                              "    retries: 1\n"
                              "    upstreams:\n"
                              "      - {address: \"127.0.0.1:%u\", weight: 3}\n"
                              "      - {address: \"127.0.0.1:%u\", weight: 1}\n";

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char yaml[sizeof(fz_yaml) + 32];
    struct mrd_config *conf;
    struct mrd_diag d;
    struct timespec ts;
    int dead;

    signal(SIGPIPE, SIG_IGN);
    mrd_log_verbosity = getenv("FZ_LOG") != NULL ? atoi(getenv("FZ_LOG")) : -1;
    fz_real_clock(CLOCK_MONOTONIC, &ts);
    fz_clock_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;

    fz_up_lfd = fz_listen(&fz_up_port, 1);
    dead = fz_listen(&fz_dead_port, 0);
    close(dead); /* connects there are refused */
    snprintf(yaml, sizeof(yaml), fz_yaml, fz_up_port, fz_dead_port);
    mrd_diag_init(&d);
    if (mrd_config_parse(yaml, strlen(yaml), "fuzz.yaml", &conf, &d) != 0 || (fz_gen = mrd_gen_new(conf, &d)) == NULL) {
        for (size_t i = 0; i < d.n; i++)
            fprintf(stderr, "%s\n", d.msgs[i]);
        abort();
    }
    mrd_diag_dispose(&d);
    if (mrd_worker_init(&fz_w, 0, fz_gen, NULL, 0) != 0)
        abort();
    mrd_gen_release(fz_gen); /* the worker holds it */
    event_assign(&fz_up_lev, fz_w.base, fz_up_lfd, EV_READ | EV_PERSIST, fz_up_on_accept, NULL);
    event_add(&fz_up_lev, NULL);
    fz_cout = evbuffer_new();
    return 0;
}

/* ---- target hooks (defined by the target before including this file) ----
 *   FZ_LISTENER(flags)                 listener index for the connection
 *   fz_target_begin(flags, in)         after accept (e.g. the h2 preface)
 *   fz_target_op(op, in)               ops 10..14
 *   fz_target_recv(p, n)               bytes the client received
 *   fz_target_end()                    per-input clean-up of the target's state
 */
static void fz_target_begin(unsigned flags, struct fz_in *in);
static void fz_target_op(unsigned op, struct fz_in *in);
static void fz_target_end(void);

static void
fz_finish(void)
{
    fz_creading = 1;
    fz_run();
    close(fz_cfd);
    fz_cfd = -1;
    evbuffer_drain(fz_cout, evbuffer_get_length(fz_cout));
    fz_run();
    for (int k = 0; k < 300 && fz_w.n_conns > 0; k++) {
        if (k == 10)
            fz_up_release();
        if (k == 20)
            fz_up_close_all();
        fz_advance_ms(1000);
    }
    if (fz_w.n_conns > 0) {
        fprintf(stderr, "fuzz_event: %u connection(s) still open 300 s after the client closed\n", fz_w.n_conns);
        abort();
    }
    mrd_pool_drain(&fz_w, fz_w.gen);
    fz_run();
    fz_up_close_all();
    fz_run();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_in in = {data, size};
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000), .sin_addr.s_addr = htonl(0x7f000001)};
    unsigned flags = fz_u8(&in);
    int sv[2];

    /* same start for every input: balancer state, response queue */
    for (size_t i = 0; i < fz_w.gen->n_regions; i++) {
        struct mrd_region *r = &fz_w.gen->regions[i];
        mrd_balance_state_dispose(&r->bal[0]);
        mrd_balance_state_init(&r->bal[0], r->n_ups);
    }
    fz_spec_head = fz_spec_n = 0;
    fz_creading = 1;
    fz_cshut = 0;
    fz_cgot = 0;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    fz_cfd = sv[0];
    mrd_conn_accept(&fz_w, sv[1], (struct sockaddr *)&peer, sizeof(peer), FZ_LISTENER(flags));
    fz_target_begin(flags, &in);
    while (in.n > 0) {
        unsigned op = fz_u8(&in) % 16;
        size_t n, got;
        const uint8_t *p;
        switch (op) {
        case 0:
        case 1:
            n = op == 0 ? fz_u8(&in) : fz_u16(&in);
            p = fz_bytes(&in, n, &got);
            fz_client_send(p, got);
            break;
        case 2:
            fz_run();
            break;
        case 3:
            fz_advance_ms(fz_u8(&in) * 50u);
            break;
        case 4:
            fz_advance_ms(fz_u16(&in));
            break;
        case 5: {
            unsigned a = fz_u8(&in), b = fz_u8(&in), c = fz_u8(&in), e = fz_u8(&in);
            if (fz_spec_n < FZ_SPECS) {
                fz_spec_decode(&fz_specs[(fz_spec_head + fz_spec_n) % FZ_SPECS], a, b, c, e);
                fz_spec_n++;
            }
            break;
        }
        case 6:
            fz_up_release();
            fz_run();
            break;
        case 7:
            fz_up_close_all();
            fz_run();
            break;
        case 8:
            fz_creading = !fz_creading;
            break;
        case 9:
            fz_client_pump();
            shutdown(fz_cfd, SHUT_WR);
            fz_cshut = 1;
            break;
        case 15:
            p = fz_bytes(&in, in.n, &got);
            fz_client_send(p, got);
            break;
        default:
            fz_target_op(op, &in);
            break;
        }
    }
    fz_run();
    if (getenv("FZ_VERBOSE") != NULL)
        fprintf(stderr, "fuzz_event: client received %zu bytes, %u upstream connection(s) open\n", fz_cgot, fz_n_ups);
    fz_finish();
    fz_target_end();
    return 0;
}

#endif
