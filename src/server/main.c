/*
 * main.c: the command line (SPEC section 1), start-up, signals and shutdown.
 * The main thread loads the configuration, binds every listener once per
 * worker (SO_REUSEPORT), starts the workers, serves the admin API, and turns
 * SIGHUP into a new configuration generation and SIGTERM/SIGINT into a
 * graceful stop bounded by timeouts.shutdown. A timer checks every
 * geo.reload_check whether the geo database file was replaced (SPEC 11).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <maxminddb.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <yaml.h>

#include "meridian/accesslog.h"
#include "meridian/cluster.h"
#include "meridian/common.h"
#include "meridian/config.h"
#include "meridian/geo.h"
#include "meridian/health.h"
#include "meridian/log.h"
#include "meridian/metrics.h"
#include "meridian/resolver.h"
#include "meridian/server.h"

static const char *conf_path = "conf/meridian.yaml";
static const char *pid_path;
static struct event_base *main_base;
static struct mrd_worker *workers;
static int daemon_mode; /* -d */
static struct mrd_gen *current;
static struct event *shutdown_timer;
static struct event *geo_timer;
static int stopping;
/* the file text of the current generation: DNS changes build the next
 * generation from the same configuration (resolver.h) */
static char *conf_text;
static size_t conf_len;

static void
usage(FILE *f)
{
    fprintf(f, "usage: meridian [-c FILE] [-t] [-d] [-p PIDFILE] [-V] [-h]\n"
               "  -c FILE     configuration file (default: conf/meridian.yaml)\n"
               "  -t          check the configuration and exit\n"
               "  -d          run as a daemon\n"
               "  -p PIDFILE  pid file (default: none in foreground, /run/meridian.pid with -d)\n"
               "  -V          print version and library versions\n"
               "  -h          this help\n");
}

static void
print_versions(void)
{
    printf("meridian %s\n", MRD_VERSION);
    printf("libevent %s\n", event_get_version());
    printf("openssl %s\n", OpenSSL_version(OPENSSL_VERSION));
    printf("nghttp2 %s\n", nghttp2_version(0)->version_str);
    printf("libmaxminddb %s\n", MMDB_lib_version());
    printf("libyaml %s\n", yaml_get_version_string());
}

static void
print_diag(const struct mrd_diag *d)
{
    for (size_t i = 0; i < d->n; i++)
        fprintf(stderr, "%s\n", d->msgs[i]);
}

/* a generation from the file, with the resolver's addresses for its host
 * names; *text is the file as read */
static struct mrd_gen *
load(struct mrd_diag *d, char **text, size_t *len)
{
    struct mrd_config *c;
    struct mrd_gen *g;

    if (mrd_config_load_text(conf_path, &c, d, text, len) != 0)
        return NULL;
    g = mrd_gen_new_resolved(c, mrd_resolver_lookup, NULL, d);
    if (g == NULL) {
        free(*text);
        *text = NULL;
    }
    return g;
}

/* Listening sockets of the current generation: lfds[w * n_lfds + i] is
 * worker w's socket for listener i (SO_REUSEPORT, one per worker). The
 * workers own them; main keeps the numbers to hand the unchanged ones over
 * to the next generation. */
static int *lfds;
static size_t n_lfds;

static int
same_address(const struct mrd_listener_conf *a, const struct mrd_listener_conf *b)
{
    return a->addrlen == b->addrlen && memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

/* close the sockets in fds[0..n) that are not among kept[0..nkept) (-1: none) */
static void
close_new_sockets(const int *fds, size_t n, const int *kept, size_t nkept)
{
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (k < nkept && kept[k] != fds[i])
            k++;
        if (fds[i] >= 0 && k == nkept)
            close(fds[i]);
    }
}

/* The sockets for `nc`'s listeners: those of `old` at the same address are
 * kept (with whatever protocols or certificates the new file gives them),
 * the others are bound now. NULL, with the failing listener in err, when a
 * socket cannot be bound; what was bound here is closed again. */
static int *
open_listeners(const struct mrd_config *old, const int *old_fds, const struct mrd_config *nc, char *err, size_t errlen)
{
    size_t nl = nc->n_listeners, onl = old != NULL ? old->n_listeners : 0;
    int *fds = mrd_xmalloc((nl * mrd_n_workers + 1) * sizeof(int));

    for (size_t i = 0; i < nl * mrd_n_workers; i++)
        fds[i] = -1;
    for (size_t i = 0; i < nl; i++) {
        const struct mrd_listener_conf *l = &nc->listeners[i];
        size_t j = 0;
        while (j < onl && !same_address(&old->listeners[j], l))
            j++;
        for (unsigned w = 0; w < mrd_n_workers; w++) {
            const char *why;
            if (j < onl) {
                fds[w * nl + i] = old_fds[w * onl + j];
                continue;
            }
            fds[w * nl + i] = mrd_listen_socket((const struct sockaddr *)&l->addr, l->addrlen, &why);
            if (fds[w * nl + i] == -1) {
                snprintf(err, errlen, "%s:%u:%u: listeners[%zu]: cannot listen on %s: %s", conf_path, l->pos.line,
                         l->pos.col, i, l->address, why);
                close_new_sockets(fds, nl * mrd_n_workers, old_fds, onl * mrd_n_workers);
                free(fds);
                return NULL;
            }
        }
    }
    return fds;
}

/* (Re)arm the geo database check for the current generation; off without
 * geo.database. A reload re-arms it with the new interval. */
static void
geo_timer_arm(void)
{
    uint64_t ms = current->conf->geo.reload_check_ms;
    struct timeval tv;

    if (geo_timer == NULL)
        return;
    if (current->conf->geo.database == NULL || stopping) {
        evtimer_del(geo_timer);
        return;
    }
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    evtimer_add(geo_timer, &tv);
}

/* SPEC 11: use a replaced geo database without a reload; a file that does
 * not open keeps the last good one, a removed file changes nothing */
static void
on_geo_check(evutil_socket_t fd, short what, void *arg)
{
    char msg[1024];

    switch (mrd_geo_db_check(current->geo, msg, sizeof(msg))) {
    case MRD_GEO_CHECK_RELOADED:
        mrd_log(MRD_LOG_INFO, "%s", msg);
        mrd_metrics_geo_reload(1);
        break;
    case MRD_GEO_CHECK_FAILED:
        mrd_log(MRD_LOG_ERR, "%s (the database loaded before keeps serving)", msg);
        mrd_metrics_geo_reload(0);
        break;
    case MRD_GEO_CHECK_MISSING:
        mrd_log(MRD_LOG_WARN, "%s", msg);
        break;
    case MRD_GEO_CHECK_NONE:
    case MRD_GEO_CHECK_SAME:
        break;
    }
    geo_timer_arm();
}

/* Hand g to the workers like a reload (listeners kept or opened to match).
 * -1 with err when a socket or the admin listener cannot be prepared; then
 * nothing changed and g is still the caller's. */
static int
install(struct mrd_gen *g, char *err, size_t errlen)
{
    int *fds = open_listeners(current->conf, lfds, g->conf, err, errlen);

    if (fds == NULL || mrd_admin_prepare(current->conf, g, err, errlen) == -1) {
        if (fds != NULL) {
            /* the sockets bound for this attempt go, the current ones stay */
            close_new_sockets(fds, g->conf->n_listeners * mrd_n_workers, lfds, n_lfds * mrd_n_workers);
            free(fds);
        }
        return -1;
    }
    /* the fleet's modes are set on g's region states before any worker uses them */
    mrd_cluster_commit(main_base, g);
    for (unsigned i = 0; i < mrd_n_workers; i++) {
        mrd_gen_acquire(g);
        mrd_worker_post_gen(&workers[i], g, &fds[i * g->conf->n_listeners], g->conf->n_listeners);
    }
    free(lfds);
    lfds = fds;
    n_lfds = g->conf->n_listeners;
    mrd_admin_commit(main_base, g);
    mrd_health_start(main_base, g);
    mrd_gen_release(current);
    current = g;
    return 0;
}

static void
on_reload(evutil_socket_t sig, short what, void *arg)
{
    struct mrd_diag d;
    struct mrd_gen *g;
    char err[1024], *text = NULL;
    size_t len = 0;

    if (stopping) {
        mrd_log(MRD_LOG_WARN, "reload ignored: stopping");
        return;
    }
    mrd_diag_init(&d);
    g = load(&d, &text, &len);
    if (g == NULL) {
        for (size_t i = 0; i < d.n; i++)
            mrd_log(MRD_LOG_ERR, "reload failed: %s", d.msgs[i]);
        mrd_diag_dispose(&d);
        mrd_metrics_reload(0);
        return;
    }
    mrd_diag_dispose(&d);
    /* everything that can fail comes before anything changes */
    if (install(g, err, sizeof(err)) == -1) {
        mrd_log(MRD_LOG_ERR, "reload failed: %s", err);
        mrd_gen_release(g);
        free(text);
        mrd_metrics_reload(0);
        return;
    }
    free(conf_text);
    conf_text = text;
    conf_len = len;
    /* names new to this file resolve now and join through on_dns_change */
    mrd_resolver_update(g->conf);
    if (g->conf->workers != 0 && g->conf->workers != mrd_n_workers)
        mrd_log(MRD_LOG_WARN, "%s: workers: %u takes effect at the next restart (running %u)", conf_path,
                g->conf->workers, mrd_n_workers);
    geo_timer_arm();
    mrd_metrics_reload(1);
    mrd_access_log_configure(g->conf->access_log.path, g->conf->access_log.json);
    if (mrd_log_configure(g->conf->error_log.path, g->conf->error_log.level, daemon_mode, err, sizeof(err)) == -1)
        mrd_log(MRD_LOG_ERR, "%s: %s (the error log stays where it was)", conf_path, err);
    mrd_log(MRD_LOG_INFO, "configuration reloaded (generation %llu, %zu listeners)", (unsigned long long)g->id,
            n_lfds);
}

/* the address set of a host name changed: the same configuration again,
 * with the new addresses, handed over like a reload (new addresses join,
 * vanished ones drain with the old generation) */
static void
on_dns_change(void)
{
    struct mrd_diag d;
    struct mrd_config *c;
    struct mrd_gen *g;
    char err[1024];

    if (stopping || conf_text == NULL)
        return;
    mrd_diag_init(&d);
    if (mrd_config_parse(conf_text, conf_len, conf_path, &c, &d) != 0 ||
        (g = mrd_gen_new_resolved(c, mrd_resolver_lookup, NULL, &d)) == NULL) {
        for (size_t i = 0; i < d.n; i++)
            mrd_log(MRD_LOG_ERR, "dns: new addresses not applied: %s", d.msgs[i]);
        mrd_diag_dispose(&d);
        return;
    }
    mrd_diag_dispose(&d);
    if (install(g, err, sizeof(err)) == -1) {
        mrd_log(MRD_LOG_ERR, "dns: new addresses not applied: %s", err);
        mrd_gen_release(g);
        return;
    }
    mrd_log(MRD_LOG_INFO, "dns: upstream addresses changed (generation %llu)", (unsigned long long)g->id);
}

static void
on_reopen(evutil_socket_t sig, short what, void *arg)
{
    mrd_log(MRD_LOG_INFO, "signal %d: reopening the log files", (int)sig);
    mrd_log_reopen();
    mrd_access_log_reopen();
}

static void
on_shutdown_timeout(evutil_socket_t fd, short what, void *arg)
{
    mrd_log(MRD_LOG_WARN, "shutdown timeout: closing remaining connections");
    for (unsigned i = 0; i < mrd_n_workers; i++)
        mrd_worker_post_stop(&workers[i], 2);
}

static atomic_uint workers_done;

/* a worker's loop has ended (posted from its thread) */
static void
on_worker_done(evutil_socket_t fd, short what, void *arg)
{
    if (atomic_load(&workers_done) == mrd_n_workers)
        event_base_loopexit(main_base, NULL);
}

static void
on_stop(evutil_socket_t sig, short what, void *arg)
{
    struct timeval tv;

    if (stopping)
        return;
    stopping = 1;
    mrd_log(MRD_LOG_INFO, "signal %d: stopping gracefully", (int)sig);
    mrd_admin_stop();
    mrd_health_stop();
    geo_timer_arm(); /* stopping: off */
    for (unsigned i = 0; i < mrd_n_workers; i++)
        mrd_worker_post_stop(&workers[i], 1);
    tv.tv_sec = (time_t)(current->conf->timeouts.shutdown_ms / 1000);
    tv.tv_usec = (suseconds_t)(current->conf->timeouts.shutdown_ms % 1000) * 1000;
    shutdown_timer = evtimer_new(main_base, on_shutdown_timeout, NULL);
    evtimer_add(shutdown_timer, &tv);
}

static int
write_pid_file(const char *path)
{
    char tmp[4096];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%ld\n", (long)getpid());
    if (fclose(f) != 0 || rename(tmp, path) == -1) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* keep_stderr: fd 2 is already the error log file */
static int
daemonize(int keep_stderr)
{
    pid_t pid = fork();
    int fd;

    if (pid == -1)
        return -1;
    if (pid > 0)
        _exit(0);
    if (setsid() == -1)
        return -1;
    pid = fork();
    if (pid == -1)
        return -1;
    if (pid > 0)
        _exit(0);
    fd = open("/dev/null", O_RDWR);
    if (fd != -1) {
        dup2(fd, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        if (!keep_stderr)
            dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO)
            close(fd);
    }
    return 0;
}

/* `user:`: after binding, give up root for that user's ids (SPEC 2) */
static int
drop_privileges(const char *user)
{
    struct passwd *pw;

    if (user == NULL)
        return 0;
    if (geteuid() != 0) {
        mrd_log(MRD_LOG_WARN, "user \"%s\": not running as root, keeping the current user", user);
        return 0;
    }
    pw = getpwnam(user);
    if (pw == NULL) {
        fprintf(stderr, "meridian: user \"%s\": no such user\n", user);
        return -1;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) == -1 || setgid(pw->pw_gid) == -1 || setuid(pw->pw_uid) == -1) {
        fprintf(stderr, "meridian: cannot switch to user \"%s\": %s\n", user, strerror(errno));
        return -1;
    }
    return 0;
}

/* the first resolution of the host names, on a loop of its own (the main
 * loop is made after daemonizing); -1 with dns.required and a name that
 * did not resolve */
static int
prime(const struct mrd_config *conf, struct mrd_diag *d)
{
    struct event_base *b = event_base_new();
    int rc;

    if (b == NULL) {
        mrd_diag_add(d, conf->file, 1, 1, "cannot create an event loop for the resolver");
        return -1;
    }
    rc = mrd_resolver_prime(b, conf, d);
    event_base_free(b);
    return rc;
}

/* a start-up that stops before serving: the diagnostics printed, the
 * configuration and the resolver released; the exit status */
static int
stop_early(struct mrd_diag *d, struct mrd_config *conf)
{
    print_diag(d);
    mrd_diag_dispose(d);
    mrd_config_free(conf);
    mrd_resolver_stop();
    free(conf_text);
    return 1;
}

static unsigned
cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

int
main(int argc, char **argv)
{
    int opt, test_only = 0, rc = 0;
    struct mrd_diag d;
    struct mrd_config *conf;
    struct event *ev_hup, *ev_term, *ev_int, *ev_usr1, *done_ev;
    int admin_fd = -1;

    while ((opt = getopt(argc, argv, "c:tdp:Vh")) != -1) {
        switch (opt) {
        case 'c': conf_path = optarg; break;
        case 't': test_only = 1; break;
        case 'd': daemon_mode = 1; break;
        case 'p': pid_path = optarg; break;
        case 'V': print_versions(); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "meridian: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    mrd_diag_init(&d);
    if (mrd_config_load_text(conf_path, &conf, &d, &conf_text, &conf_len) != 0) {
        print_diag(&d);
        mrd_diag_dispose(&d);
        return 1;
    }
    mrd_diag_dispose(&d);
    if (test_only) {
        /* also what only building it finds: certificates, the geo database,
         * and with dns.required the upstream host names */
        struct mrd_gen *g;
        mrd_diag_init(&d);
        if (conf->dns.required && prime(conf, &d) == -1)
            return stop_early(&d, conf);
        g = mrd_gen_new_resolved(conf, mrd_resolver_lookup, NULL, &d);
        print_diag(&d);
        mrd_diag_dispose(&d);
        mrd_resolver_stop();
        free(conf_text);
        if (g == NULL)
            return 1;
        mrd_gen_release(g);
        printf("%s: configuration is valid\n", conf_path);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    /* buffers come and go with every request: keep up to 4 MiB of free
     * memory at the top of each arena instead of returning it to the kernel
     * (madvise) each time; more than that (a crowd of slow readers that
     * left) goes back. (It was 64 MiB: RSS then stayed at its peak.) */
    if (!MRD_ASAN) /* (ASan's allocator owns the heap there) */
        mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
    evthread_use_pthreads();
    mrd_n_workers = conf->workers ? conf->workers : cpu_count();
    mrd_diag_init(&d);
    /* upstream host names resolve before anything serves */
    if (prime(conf, &d) == -1)
        return stop_early(&d, conf);
    current = mrd_gen_new_resolved(conf, mrd_resolver_lookup, NULL, &d);
    if (current == NULL) {
        print_diag(&d);
        mrd_diag_dispose(&d);
        mrd_resolver_stop();
        free(conf_text);
        return 1;
    }
    mrd_diag_dispose(&d);

    /* bind everything before detaching, so errors reach the terminal */
    admin_fd = mrd_admin_listen(current);
    if (admin_fd == -1)
        goto fail_early;
    {
        char err[1024];
        lfds = open_listeners(NULL, NULL, current->conf, err, sizeof(err));
        if (lfds == NULL) {
            fprintf(stderr, "meridian: %s\n", err);
            goto fail_early;
        }
        n_lfds = current->conf->n_listeners;
    }
    {
        /* opened before dropping privileges and detaching, like the sockets */
        char err[512];
        const struct mrd_error_log_conf *el = &current->conf->error_log;
        if (mrd_log_configure(el->path, el->level, daemon_mode, err, sizeof(err)) == -1) {
            fprintf(stderr, "meridian: %s: %s\n", conf_path, err);
            goto fail_early;
        }
    }
    if (drop_privileges(current->conf->user) == -1)
        goto fail_early;
    if (daemon_mode) {
        if (pid_path == NULL)
            pid_path = "/run/meridian.pid";
        if (daemonize(mrd_log_to_file()) == -1) {
            fprintf(stderr, "meridian: cannot daemonize: %s\n", strerror(errno));
            goto fail_early;
        }
    }
    if (pid_path != NULL && write_pid_file(pid_path) == -1) {
        mrd_log(MRD_LOG_ERR, "cannot write pid file %s: %s", pid_path, strerror(errno));
        goto fail_early;
    }

    /* after daemonizing: the writer thread must belong to the final process */
    if (mrd_access_log_configure(current->conf->access_log.path, current->conf->access_log.json) == -1)
        goto fail_early;
    main_base = event_base_new();
    done_ev = event_new(main_base, -1, 0, on_worker_done, NULL);
    mrd_cluster_commit(main_base, current);
    workers = mrd_xcalloc(mrd_n_workers, sizeof(*workers));
    for (unsigned w = 0; w < mrd_n_workers; w++) {
        if (mrd_worker_init(&workers[w], w, current, &lfds[w * n_lfds], n_lfds) == -1) {
            mrd_log(MRD_LOG_ERR, "cannot start worker %u", w);
            return 1;
        }
        workers[w].done_ev = done_ev;
        workers[w].done_count = &workers_done;
    }
    if (mrd_admin_start(main_base, current, admin_fd) == -1)
        return 1;
    mrd_health_start(main_base, current);
    mrd_resolver_start(main_base, current->conf, on_dns_change);
    geo_timer = evtimer_new(main_base, on_geo_check, NULL);
    geo_timer_arm();
    ev_hup = evsignal_new(main_base, SIGHUP, on_reload, NULL);
    ev_term = evsignal_new(main_base, SIGTERM, on_stop, NULL);
    ev_int = evsignal_new(main_base, SIGINT, on_stop, NULL);
    ev_usr1 = evsignal_new(main_base, SIGUSR1, on_reopen, NULL);
    evsignal_add(ev_usr1, NULL);
    evsignal_add(ev_hup, NULL);
    evsignal_add(ev_term, NULL);
    evsignal_add(ev_int, NULL);
    for (unsigned w = 0; w < mrd_n_workers; w++) {
        if (mrd_worker_start(&workers[w]) == -1) {
            mrd_log(MRD_LOG_ERR, "cannot start worker thread %u", w);
            return 1;
        }
    }
    mrd_metrics_started();
    mrd_log(MRD_LOG_INFO, "meridian %s started: %u workers, %zu listeners, %zu regions", MRD_VERSION,
            mrd_n_workers, n_lfds, current->n_regions);
    event_base_dispatch(main_base);

    /* workers have exited (or were told to by the shutdown timer) */
    for (unsigned w = 0; w < mrd_n_workers; w++)
        mrd_worker_post_stop(&workers[w], 2);
    for (unsigned w = 0; w < mrd_n_workers; w++) {
        pthread_join(workers[w].thread, NULL);
        mrd_worker_dispose(&workers[w]);
    }
    free(workers);
    free(lfds);
    event_free(ev_hup);
    event_free(ev_term);
    event_free(ev_int);
    event_free(ev_usr1);
    event_free(done_ev);
    if (shutdown_timer != NULL)
        event_free(shutdown_timer);
    event_free(geo_timer);
    geo_timer = NULL;
    mrd_admin_stop();
    mrd_health_stop();
    mrd_cluster_stop();
    mrd_resolver_stop();
    free(conf_text);
    mrd_access_log_stop();
    mrd_gen_release(current);
    event_base_free(main_base);
    libevent_global_shutdown();
    if (pid_path != NULL)
        unlink(pid_path);
    mrd_log(MRD_LOG_INFO, "stopped");
    return rc;

fail_early:
    /* a start-up error before any worker ran: release what was taken */
    for (size_t i = 0; lfds != NULL && i < n_lfds * mrd_n_workers; i++)
        close(lfds[i]);
    free(lfds);
    if (admin_fd >= 0)
        close(admin_fd);
    mrd_access_log_stop();
    mrd_gen_release(current);
    mrd_resolver_stop();
    free(conf_text);
    return 1;
}
