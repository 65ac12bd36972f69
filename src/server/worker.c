/*
 * worker.c: worker threads. Each owns one event_base, its own listening
 * sockets for every listener (SO_REUSEPORT spreads accepts across workers),
 * and everything created on it. The main thread talks to a worker only by
 * posting to its `wake` event: a new configuration generation, or stop.
 */
#include <errno.h>
#include <sys/eventfd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "meridian/common.h"
#include "meridian/log.h"
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

static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int socklen, void *arg)
{
    struct mrd_wlistener *wl = arg;
    mrd_conn_accept(wl->w, fd, sa, socklen, wl->idx);
}

static void
on_accept_error(struct evconnlistener *l, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    /* EMFILE and friends: keep the listener, the condition is transient */
    mrd_log(MRD_LOG_WARN, "accept: %s", evutil_socket_error_to_string(err));
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
    event_del(&w->wake);
    event_del(&w->defer_ev);
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
    event_assign(&w->wake, w->base, w->wake_fd, EV_READ | EV_PERSIST, on_wake, w);
    event_add(&w->wake, NULL);
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
