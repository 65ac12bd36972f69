/*
 * worker.c: worker threads. Each owns one event_base, its own listening
 * sockets for every listener (SO_REUSEPORT spreads accepts across workers),
 * and everything created on it. The main thread talks to a worker only by
 * posting to its `wake` event: a new configuration generation, or stop.
 */
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/eventfd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "meridian/clock.h"
#include "meridian/common.h"
#include "meridian/log.h"
#include "meridian/metrics.h"
#include "meridian/server.h"

/* one listening socket of one worker; `idx` follows the listener's place in
 * the worker's current generation, which can change on reload */
struct mrd_wlistener {
    struct evconnlistener *ev;
    int fd;
    size_t idx;
    struct mrd_worker *w;
};

/* a generation posted by the main thread, with this worker's sockets for it */
struct mrd_worker_msg {
    struct mrd_worker_msg *next;
    struct mrd_gen *gen;
    size_t n_fds;
    int fds[];
};

uint64_t
mrd_worker_rand(struct mrd_worker *w)
{
    /* xorshift64*: cheap, per worker, good enough for load balancing */
    uint64_t x = w->rnd_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rnd_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/*
 * Accept pausing (SPEC 12). When accept fails for lack of descriptors or
 * memory, or the process holds limits.max_connections, the worker stops
 * watching its listening sockets (the kernel keeps queueing connections in
 * the backlog) and looks again after ACCEPT_RETRY, or as soon as one of its
 * sockets closes: no accept loop spins on a condition that only a close can
 * end. The condition is logged at most once a second per process, with the
 * number of pauses since the previous line.
 */
#define ACCEPT_RETRY_US 100000

static void drop_held(struct mrd_worker *w);

static atomic_uint_fast64_t pause_pending[MRD_ACCEPT_PAUSE_REASONS];
static atomic_int pause_errno[MRD_ACCEPT_PAUSE_REASONS];
static atomic_uint_fast64_t pause_logged_ms; /* monotonic ms of the last line */

static atomic_uint_fast64_t pause_limit; /* limits.max_connections, for the message */

int
mrd_accept_pause_flush(void)
{
    uint64_t now = mrd_now_ms(), last = atomic_load(&pause_logged_ms);
    int pending = 0;

    for (int r = 0; r < MRD_ACCEPT_PAUSE_REASONS; r++)
        pending |= atomic_load_explicit(&pause_pending[r], memory_order_relaxed) != 0;
    if (!pending)
        return 0;
    if ((last != 0 && now - last < 1000) || !atomic_compare_exchange_strong(&pause_logged_ms, &last, now))
        return 1;
    for (int r = 0; r < MRD_ACCEPT_PAUSE_REASONS; r++) {
        unsigned long long n = atomic_exchange(&pause_pending[r], 0);
        if (n == 0)
            continue;
        if (r == MRD_ACCEPT_PAUSE_MAXCONN)
            mrd_log(MRD_LOG_WARN, "accept paused: limits.max_connections (%llu) reached (%llu times in the last second)",
                    (unsigned long long)atomic_load(&pause_limit), n);
        else
            mrd_log(MRD_LOG_WARN, "accept paused: %s (%llu times in the last second)",
                    strerror(atomic_load(&pause_errno[r])), n);
    }
    return 0;
}

int
mrd_accept_pause_reason(int err)
{
    if (err == EMFILE || err == ENFILE)
        return MRD_ACCEPT_PAUSE_FDS;
    if (err == ENOBUFS || err == ENOMEM)
        return MRD_ACCEPT_PAUSE_MEMORY;
    return MRD_ACCEPT_PAUSE_ERROR;
}

void
mrd_accept_pause_note(int reason, int err, uint64_t max_connections)
{
    mrd_metrics_accept_paused(reason);
    if (reason == MRD_ACCEPT_PAUSE_MAXCONN)
        atomic_store(&pause_limit, max_connections);
    else
        atomic_store(&pause_errno[reason], err);
    atomic_fetch_add(&pause_pending[reason], 1);
    mrd_accept_pause_flush();
}

static void
listeners_enable(struct mrd_worker *w, int on)
{
    for (size_t i = 0; i < w->n_listeners; i++) {
        if (w->listeners[i] == NULL)
            continue;
        if (on)
            evconnlistener_enable(w->listeners[i]->ev);
        else
            evconnlistener_disable(w->listeners[i]->ev);
    }
}

static void
arm_accept_timer(struct mrd_worker *w, uint64_t us)
{
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    event_add(w->accept_ev, &tv);
}

static void
pause_accepting(struct mrd_worker *w, int reason, int err)
{
    mrd_accept_pause_note(reason, err, w->gen->conf->limits.max_connections);
    if (!w->accept_paused) {
        listeners_enable(w, 0);
        w->accept_paused = 1;
        w->sloop.fd_closed_ev = w->accept_ev; /* a close on this worker retries at once */
    }
    arm_accept_timer(w, ACCEPT_RETRY_US);
}

static int
at_max_connections(const struct mrd_worker *w)
{
    return atomic_load(&mrd_connections_active) >= w->gen->conf->limits.max_connections;
}

static void
drop_held(struct mrd_worker *w)
{
    if (w->held_fd != -1)
        close(w->held_fd);
    w->held_fd = -1;
    w->held_wl = NULL;
}

/* the retry timer, or a socket of this worker closed */
static void
on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    struct mrd_worker *w = arg;
    int pending = mrd_accept_pause_flush();

    if (w->accept_paused) {
        if (at_max_connections(w)) {
            arm_accept_timer(w, ACCEPT_RETRY_US); /* still full: not a new event */
            return;
        }
        if (w->held_fd != -1) {
            int hfd = w->held_fd;
            w->held_fd = -1;
            mrd_conn_accept(w, hfd, (struct sockaddr *)&w->held_sa, (int)w->held_salen, w->held_wl->idx);
            w->held_wl = NULL;
            if (at_max_connections(w)) {
                arm_accept_timer(w, ACCEPT_RETRY_US);
                return;
            }
        }
        w->accept_paused = 0;
        w->sloop.fd_closed_ev = NULL;
        listeners_enable(w, 1); /* fails again at once if the cause persists */
    }
    if (pending || mrd_accept_pause_flush())
        arm_accept_timer(w, 1000000); /* the counts of the last second still go out */
    else
        event_del(w->accept_ev);
}

static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int socklen, void *arg)
{
    struct mrd_wlistener *wl = arg;
    struct mrd_worker *w = wl->w;

    if (at_max_connections(w) && w->held_fd == -1 && (size_t)socklen <= sizeof(w->held_sa)) {
        /* another worker took the last place: keep this connection for when
         * one frees up rather than close it */
        w->held_fd = fd;
        w->held_wl = wl;
        memcpy(&w->held_sa, sa, (size_t)socklen);
        w->held_salen = (socklen_t)socklen;
        pause_accepting(w, MRD_ACCEPT_PAUSE_MAXCONN, 0);
        return;
    }
    mrd_conn_accept(w, fd, sa, socklen, wl->idx); /* closes fd when over the limit (a race with another worker) */
    if (at_max_connections(w))
        pause_accepting(w, MRD_ACCEPT_PAUSE_MAXCONN, 0); /* libevent's accept loop stops here */
}

static void
on_accept_error(struct evconnlistener *l, void *arg)
{
    struct mrd_wlistener *wl = arg;
    int err = EVUTIL_SOCKET_ERROR();

    /* transient; retrying before something was freed would only spin */
    pause_accepting(wl->w, mrd_accept_pause_reason(err), err);
}

/* a listening socket bound with SO_REUSEPORT; -1 and err on failure */
int
mrd_listen_socket(const struct sockaddr *sa, socklen_t len, const char **err)
{
    int one = 1;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd == -1) {
        *err = strerror(errno);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, sa, len) == -1 || listen(fd, 4096) == -1) {
        *err = strerror(errno);
        close(fd);
        return -1;
    }
    return fd;
}

static void
close_listeners(struct mrd_worker *w)
{
    for (size_t i = 0; i < w->n_listeners; i++) {
        if (w->listeners[i] != NULL) {
            if (w->held_wl == w->listeners[i])
                drop_held(w); /* its listener is going away */
            evconnlistener_free(w->listeners[i]->ev); /* closes the socket */
            free(w->listeners[i]);
        }
    }
    free(w->listeners);
    w->listeners = NULL;
    w->n_listeners = 0;
}

/* Make the worker listen on exactly `fds` (one per listener of the new
 * generation): keep the sockets it already has, close those no longer
 * listed, start accepting on new ones. */
static void
set_listeners(struct mrd_worker *w, const int *fds, size_t n)
{
    struct mrd_wlistener **next = mrd_xcalloc(n ? n : 1, sizeof(*next));

    for (size_t i = 0; i < n; i++) {
        struct mrd_wlistener *wl = NULL;
        if (fds[i] < 0)
            continue;
        for (size_t j = 0; j < w->n_listeners && wl == NULL; j++) {
            if (w->listeners[j] != NULL && w->listeners[j]->fd == fds[i]) {
                wl = w->listeners[j];
                w->listeners[j] = NULL;
            }
        }
        if (wl == NULL) {
            wl = mrd_xcalloc(1, sizeof(*wl));
            wl->w = w;
            wl->fd = fds[i];
            wl->ev = evconnlistener_new(w->base, on_accept, wl, LEV_OPT_CLOSE_ON_FREE, -1, fds[i]);
            if (wl->ev == NULL) {
                mrd_log(MRD_LOG_ERR, "worker %u: cannot accept on listener %zu", w->id, i);
                close(fds[i]);
                free(wl);
                continue;
            }
            evconnlistener_set_error_cb(wl->ev, on_accept_error);
            if (w->accept_paused)
                evconnlistener_disable(wl->ev);
        }
        wl->idx = i;
        next[i] = wl;
    }
    close_listeners(w); /* what is left was not carried over */
    w->listeners = next;
    w->n_listeners = n;
}

static void
on_stop_check(evutil_socket_t fd, short what, void *arg)
{
    struct mrd_worker *w = arg;

    mrd_conn_shutdown_all(w, 0);
    if (w->n_conns == 0) {
        mrd_pool_drain(w, w->gen);
        event_base_loopexit(w->base, NULL);
    }
}

/* ---- returning memory after a crowd leaves ----
 *
 * Slow readers hold up to the output watermark each; when they go, their
 * buffers are free. glibc gives the free top of this worker's arena back
 * by itself once it passes M_TRIM_THRESHOLD (main.c), but free chunks
 * below live ones stay resident, and so do our own free lists. So, a
 * second after at least TRIM_MIN_PEAK connections shrank to half, the
 * worker empties its free lists and calls malloc_trim(0), which returns
 * the free pages inside the bins (and merges small free chunks); then it
 * frees a TRIM_NUDGE block it allocates, so that a large free reaches the
 * arena and lets glibc shrink its top. Public allocator calls only, from
 * the arena's own thread, never on the request path (HAProxy calls
 * malloc_trim() the same way when its pools are flushed). */
#define TRIM_MIN_PEAK 32
#define TRIM_NUDGE (96 * 1024) /* over glibc's 64 KiB consolidation threshold, under its 128 KiB mmap one */

static void
on_trim(evutil_socket_t fd, short what, void *arg)
{
    struct mrd_worker *w = arg;

    if (w->n_conns > w->conns_peak / 2)
        return; /* the crowd came back */
    /* the free lists hold buffers allocated during the crowd */
    mrd_req_pool_dispose(w);
    mrd_h2_pool_dispose(w);
#if defined(__GLIBC__) && !MRD_ASAN
    /* (not under ASan: its allocator owns the heap, and glibc's malloc_trim
     * from a worker thread then trips glibc's arena count at thread exit) */
    malloc_trim(0);
    void *volatile nudge = malloc(TRIM_NUDGE);
    free(nudge);
#endif
    w->conns_peak = w->n_conns;
}

void
mrd_worker_conn_opened(struct mrd_worker *w)
{
    if (++w->n_conns > w->conns_peak)
        w->conns_peak = w->n_conns;
}

void
mrd_worker_conn_closed(struct mrd_worker *w)
{
    static const struct timeval later = {1, 0};

    w->n_conns--;
    if (w->conns_peak >= TRIM_MIN_PEAK && w->n_conns <= w->conns_peak / 2 && !evtimer_pending(&w->trim_ev, NULL))
        evtimer_add(&w->trim_ev, &later);
}

static void
on_defer(evutil_socket_t fd, short what, void *arg)
{
    mrd_conn_run_deferred(arg);
}

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct mrd_worker *w = arg;
    struct mrd_worker_msg *m;
    uint64_t v;
    int force;

    if (read(w->wake_fd, &v, sizeof(v)) == -1 && errno != EAGAIN)
        mrd_log(MRD_LOG_WARN, "worker %u: wake: %s", w->id, strerror(errno));
    pthread_mutex_lock(&w->_lock);
    m = w->_msgs;
    w->_msgs = NULL;
    w->_msgs_tail = &w->_msgs;
    force = w->_force_stop;
    pthread_mutex_unlock(&w->_lock);
    while (m != NULL) {
        struct mrd_worker_msg *next = m->next;
        /* the posted reference becomes the worker's; connections keep theirs.
         * Generation and listener indexes change together, so an accept
         * always finds its listener's TLS context in w->gen. */
        mrd_pool_drain_gone(w, w->gen, m->gen);
        mrd_gen_release(w->gen);
        w->gen = m->gen;
        set_listeners(w, m->fds, m->n_fds);
        free(m);
        m = next;
    }
    if (force) {
        event_base_loopexit(w->base, NULL);
        return;
    }
    if (atomic_load(&w->stopping)) {
        static const struct timeval every = {0, 50000};
        close_listeners(w); /* new connections are refused from now on */
        if (w->_stop_ev != NULL)
            return;
        w->_stop_ev = event_new(w->base, -1, EV_PERSIST, on_stop_check, w);
        event_add(w->_stop_ev, &every);
        on_stop_check(-1, 0, w);
    }
}

static void *
worker_main(void *arg)
{
    struct mrd_worker *w = arg;

    event_base_dispatch(w->base);
    atomic_fetch_add(w->done_count, 1);
    event_active(w->done_ev, EV_TIMEOUT, 0);
    return NULL;
}

/* after the thread has ended: free what the worker owned */
void
mrd_worker_dispose(struct mrd_worker *w)
{
    struct mrd_worker_msg *m = w->_msgs;

    /* posts never applied (forced stop): their new sockets are ours to close */
    while (m != NULL) {
        struct mrd_worker_msg *next = m->next;
        set_listeners(w, m->fds, m->n_fds);
        mrd_gen_release(m->gen);
        free(m);
        m = next;
    }
    close_listeners(w);
    mrd_conn_shutdown_all(w, 1);
    mrd_pool_drain(w, w->gen);
    if (w->_stop_ev != NULL)
        event_free(w->_stop_ev);
    w->sloop.fd_closed_ev = NULL;
    drop_held(w);
    event_free(w->accept_ev);
    event_del(&w->wake);
    event_del(&w->defer_ev);
    event_del(&w->trim_ev);
    mrd_stream_loop_dispose(&w->sloop);
    if (w->h2_body != NULL)
        evbuffer_free(w->h2_body);
    mrd_h2_pool_dispose(w);
    mrd_h2_blocks_dispose(w);
    mrd_req_pool_dispose(w);
    close(w->wake_fd);
    mrd_gen_release(w->gen);
    mrd_buf_dispose(&w->scratch);
    mrd_route_scratch_dispose(&w->route_scratch);
    event_base_free(w->base);
    pthread_mutex_destroy(&w->_lock);
}

int
mrd_worker_init(struct mrd_worker *w, unsigned id, struct mrd_gen *g, const int *fds, size_t n_fds)
{
    struct event_config *cfg;

    memset(w, 0, sizeof(*w));
    w->id = id;
    /* only this thread touches the base (main posts through an eventfd), so
     * no locks; the changelist folds add/del pairs into one epoll_ctl */
    cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (w->base == NULL)
        return -1;
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->wake_fd == -1)
        return -1;
    pthread_mutex_init(&w->_lock, NULL);
    w->gen = g;
    mrd_gen_acquire(g);
    w->rnd_state = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)id << 32) ^ mrd_now_us();
    mrd_stream_loop_init(&w->sloop, w->base);
    event_assign(&w->defer_ev, w->base, -1, 0, on_defer, w);
    evtimer_assign(&w->trim_ev, w->base, on_trim, w);
    event_assign(&w->wake, w->base, w->wake_fd, EV_READ | EV_PERSIST, on_wake, w);
    event_add(&w->wake, NULL);
    w->held_fd = -1;
    w->accept_ev = event_new(w->base, -1, 0, on_accept_retry, w);
    if (w->accept_ev == NULL)
        return -1;
    w->_msgs_tail = &w->_msgs;
    set_listeners(w, fds, n_fds);
    for (size_t i = 0; i < n_fds; i++)
        if (fds[i] >= 0 && w->listeners[i] == NULL)
            return -1;
    return 0;
}

int
mrd_worker_start(struct mrd_worker *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

static void
wake(struct mrd_worker *w)
{
    uint64_t one = 1;

    if (write(w->wake_fd, &one, sizeof(one)) == -1)
        mrd_log(MRD_LOG_WARN, "worker %u: cannot wake: %s", w->id, strerror(errno));
}

void
mrd_worker_post_gen(struct mrd_worker *w, struct mrd_gen *g, const int *fds, size_t n_fds)
{
    struct mrd_worker_msg *m = mrd_xmalloc(sizeof(*m) + n_fds * sizeof(int));

    m->next = NULL;
    m->gen = g;
    m->n_fds = n_fds;
    if (n_fds > 0)
        memcpy(m->fds, fds, n_fds * sizeof(int));
    pthread_mutex_lock(&w->_lock);
    *w->_msgs_tail = m;
    w->_msgs_tail = &m->next;
    pthread_mutex_unlock(&w->_lock);
    wake(w);
}

void
mrd_worker_post_stop(struct mrd_worker *w, int how)
{
    pthread_mutex_lock(&w->_lock);
    atomic_store(&w->stopping, 1);
    if (how > 1)
        w->_force_stop = 1;
    pthread_mutex_unlock(&w->_lock);
    wake(w);
}
