/*
 * cluster.c: fleet-wide caps through Redis (SPEC 8, cluster.h).
 *
 * One hiredis async connection on the main loop. Every sync_interval one
 * EVALSHA of the sync script (fleet.h) renews every capped region's lease
 * at once: it gives back what this instance holds beyond its need, asks
 * for the rest, reports the admitted rate and the heartbeat, and gets the
 * grants, the fleet's rates and the live instances. Nothing on the request
 * path waits for Redis: workers spend the leases (route.c).
 *
 * hiredis 0.14 has no command timeouts, so every exchange has our own
 * timer: a Redis that does not answer within `timeout` is a Redis that is
 * down. Down (refused, closed, a protocol error, an error reply, a reply of
 * the wrong shape, a timeout) means: the leases are void, every capped
 * region's bucket takes its share (capacity_rps / N in local mode, the
 * whole cap in open mode), the failure is logged once per outage, and a
 * reconnection is tried with a backoff of 100 ms doubling to 1 s. The
 * context is only ever freed from our own events, never inside a hiredis
 * callback; a connection id in every callback's data tells replies of a
 * dropped connection from current ones.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libevent.h>

#include "meridian/clock.h"
#include "meridian/cluster-int.h"
#include "meridian/cluster.h"
#include "meridian/common.h"
#include "meridian/fleet.h"
#include "meridian/log.h"
#include "meridian/ratelimit.h"
#include "meridian/route.h"
#include "meridian/server.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
#define SYNC_BUCKETS 10

static const double sync_bucket_s[SYNC_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};

enum conn_state { C_IDLE, C_CONNECTING, C_UP };

/* one script call of a sync: its arguments (numbers in text, resolved
 * into argv when complete) */
struct call {
    int which; /* SCRIPT_CAPS or SCRIPT_CLIENTS */
    int eval;  /* the EVAL retry after NOSCRIPT was sent */
    int argc;
    char **argv;
    size_t *argvlen;
    size_t *offs; /* while building: 1 + the offset in text of a number argument */
    struct mrd_buf text;
};

enum { SCRIPT_CAPS, SCRIPT_CLIENTS, N_SCRIPTS };

/* a sync in flight: what it asked for, on the generation it was built from */
struct sync_ctx {
    uint64_t conn_id;
    uint64_t sent_us;
    struct mrd_gen *gen; /* acquired: keeps the region states alive */
    size_t n;
    struct mrd_region_state **st;
    int64_t *want;
    uint64_t *self_milli;
    int pending; /* replies still to come (caps, and clients when sent) */
    struct call calls[N_SCRIPTS];
};

static struct {
    struct event_base *base;
    struct mrd_gen *gen; /* acquired; its conf->cluster is the one in use */
    const struct mrd_cluster_conf *conf;
    char instance[128];
    char ikey[MRD_CLUSTER_KEY_MAX]; /* the instances sorted set */
    struct mrd_cluster_region *regions;
    size_t n_regions;

    redisAsyncContext *ac;
    uint64_t conn_id;
    enum conn_state state;
    int up;            /* the last exchange succeeded: leases are in use */
    int outage_logged; /* the current outage has been logged */
    int ever_up;
    int resync; /* a sync as soon as the one in flight is done (a reload) */
    char sha[N_SCRIPTS][41]; /* SCRIPT LOAD's answers */
    char ckey[MRD_CLUSTER_KEY_MAX], hkey[MRD_CLUSTER_KEY_MAX]; /* the client hash and sorted set */
    char last_error[256];
    uint64_t last_sync_ms; /* monotonic, 0 = never */
    unsigned n_live;       /* live instances at the last sync, 0 = never seen */
    uint64_t backoff_ms;
    struct sync_ctx *inflight;
    struct event *tick, *timeout_ev, *retry_ev, *reset_ev;

    /* metrics */
    unsigned long long sync_buckets[SYNC_BUCKETS + 1], sync_count, syncs_failed;
    double sync_sum_s;
} cl;

static void arm_tick(void);
static void connect_redis(void);

/* ---- modes ---- */

static enum mrd_fleet_mode
fallback_mode(void)
{
    return cl.conf != NULL && cl.conf->on_failure == MRD_CLUSTER_OPEN ? MRD_FLEET_OPEN : MRD_FLEET_LOCAL;
}

static enum mrd_fleet_mode
current_mode(void)
{
    return cl.up ? MRD_FLEET_SHARED : fallback_mode();
}

static void
set_state_mode(struct mrd_region_state *st, enum mrd_fleet_mode mode, unsigned n_live)
{
    uint64_t rate, burst;

    mrd_fleet_share(mode, st->capacity_rps, st->capacity_burst, n_live, &rate, &burst);
    mrd_bucket_retune(&st->bucket, rate, burst);
    if (mode != MRD_FLEET_SHARED)
        mrd_lease_void(&st->lease);
    atomic_store(&st->fleet_mode, (int)mode);
}

static void
apply_mode(void)
{
    enum mrd_fleet_mode mode = current_mode();

    for (size_t i = 0; i < cl.n_regions; i++)
        set_state_mode(cl.regions[i].st, mode, cl.n_live);
}

/* ---- failures ---- */

static void
sync_ctx_free(struct sync_ctx *s)
{
    if (s == NULL)
        return;
    mrd_gen_release(s->gen);
    free(s->st);
    free(s->want);
    free(s->self_milli);
    for (int i = 0; i < N_SCRIPTS; i++) {
        free(s->calls[i].argv);
        free(s->calls[i].argvlen);
        free(s->calls[i].offs);
        mrd_buf_dispose(&s->calls[i].text);
    }
    free(s);
}

/* Redis is down (or this connection is unusable): fall back now, drop the
 * connection from a fresh event, reconnect later */
static void
fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
fail(const char *fmt, ...)
{
    va_list ap;
    int was_up = cl.up;

    va_start(ap, fmt);
    vsnprintf(cl.last_error, sizeof(cl.last_error), fmt, ap);
    va_end(ap);
    cl.syncs_failed++;
    cl.conn_id++; /* the rest of this connection's replies are ignored */
    cl.up = 0;
    cl.state = C_IDLE;
    if (cl.inflight != NULL) {
        sync_ctx_free(cl.inflight);
        cl.inflight = NULL;
    }
    evtimer_del(cl.timeout_ev);
    apply_mode(); /* leases void, buckets at the fallback share */
    if (was_up || !cl.outage_logged) {
        if (fallback_mode() == MRD_FLEET_LOCAL)
            mrd_log(MRD_LOG_ERR,
                    "cluster: redis %s is down: %s; caps are local now (capacity_rps / %u for each capped region)",
                    cl.conf->address, cl.last_error, cl.n_live ? cl.n_live : 1);
        else
            mrd_log(MRD_LOG_ERR, "cluster: redis %s is down: %s; caps are open now (the whole cap on this instance)",
                    cl.conf->address, cl.last_error);
        cl.outage_logged = 1;
    } else {
        mrd_log(MRD_LOG_DEBUG, "cluster: redis %s: %s", cl.conf->address, cl.last_error);
    }
    event_active(cl.reset_ev, EV_TIMEOUT, 0);
}

static void
drop_connection(void)
{
    redisAsyncContext *ac = cl.ac;

    cl.ac = NULL;
    cl.conn_id++; /* whatever the old connection still calls back is ignored */
    if (ac != NULL)
        redisAsyncFree(ac);
}

static void
on_reset(evutil_socket_t fd, short what, void *arg)
{
    struct timeval tv;

    drop_connection();
    if (cl.conf == NULL)
        return;
    tv.tv_sec = (time_t)(cl.backoff_ms / 1000);
    tv.tv_usec = (suseconds_t)(cl.backoff_ms % 1000) * 1000;
    evtimer_add(cl.retry_ev, &tv);
    cl.backoff_ms = MRD_MIN(cl.backoff_ms * 2, (uint64_t)BACKOFF_MAX_MS);
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
    if (cl.conf != NULL && cl.state == C_IDLE)
        connect_redis();
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
    if (cl.state == C_CONNECTING)
        fail("no answer within %llu ms while connecting", (unsigned long long)cl.conf->timeout_ms);
    else if (cl.state == C_UP)
        fail("timeout: no answer within %llu ms", (unsigned long long)cl.conf->timeout_ms);
}

static void
arm_timeout(void)
{
    struct timeval tv = {(time_t)(cl.conf->timeout_ms / 1000), (suseconds_t)(cl.conf->timeout_ms % 1000) * 1000};

    evtimer_add(cl.timeout_ev, &tv);
}

/* ---- replies ---- */

/* the text of an error or unexpected reply, for the log */
static void
reply_text(const redisReply *r, char *out, size_t cap)
{
    if (r == NULL)
        snprintf(out, cap, "connection lost");
    else if (r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING)
        snprintf(out, cap, "%.*s", (int)MRD_MIN(r->len, (size_t)160), r->str);
    else if (r->type == REDIS_REPLY_INTEGER)
        snprintf(out, cap, "integer %lld", r->integer);
    else if (r->type == REDIS_REPLY_ARRAY)
        snprintf(out, cap, "an array of %zu", r->elements);
    else
        snprintf(out, cap, "reply type %d", r->type);
}

/* hiredis 0.14 allocates a reply's array as soon as it reads the count
 * ("*408000001" is 3 GB of pointers before one element came): arrays
 * longer than any script reply are refused, which ends the connection */
#define REPLY_ELEMENTS_MAX 65536

static redisReplyObjectFunctions default_fn, bounded_fn;
static int refused_elements; /* the count of the last array refused, for the log */

static void *
bounded_array(const redisReadTask *task, int elements)
{
    if (elements > REPLY_ELEMENTS_MAX) {
        refused_elements = elements;
        return NULL; /* the reader fails ("Out of memory") */
    }
    return default_fn.createArray(task, elements);
}

const redisReplyObjectFunctions *
mrd_cluster_reader_functions(void)
{
    if (bounded_fn.createArray == NULL) {
        redisReader *r = redisReaderCreate(); /* to learn hiredis's own functions */
        if (r == NULL)
            abort();
        default_fn = *r->fn;
        redisReaderFree(r);
        bounded_fn = default_fn;
        bounded_fn.createArray = bounded_array;
    }
    return &bounded_fn;
}

static int
is_current(const redisAsyncContext *ac, void *privdata)
{
    return ac == cl.ac && cl.ac != NULL && (uint64_t)(uintptr_t)privdata == cl.conn_id;
}

/* AUTH and SELECT: privdata is the connection id times 2 plus which
 * (0 AUTH, 1 SELECT); anything but +OK fails the connection */
static void
on_handshake(redisAsyncContext *ac, void *reply, void *privdata)
{
    const redisReply *r = reply;
    uintptr_t v = (uintptr_t)privdata;
    char t[200];

    if (!is_current(ac, (void *)(v / 2)))
        return;
    if (r == NULL || r->type != REDIS_REPLY_STATUS) {
        reply_text(r, t, sizeof(t));
        if (v % 2 == 0)
            fail("auth: %s", t);
        else
            fail("select %u: %s", cl.conf->database, t);
    }
}

static int
is_sha(const redisReply *r)
{
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40)
        return 0;
    for (size_t i = 0; i < 40; i++)
        if (!((r->str[i] >= '0' && r->str[i] <= '9') || (r->str[i] >= 'a' && r->str[i] <= 'f')))
            return 0;
    return 1;
}

static void send_sync(void);

static const char *const script_text[N_SCRIPTS] = {mrd_fleet_sync_script, mrd_fleet_client_script};
static const char *const script_what[N_SCRIPTS] = {"sync", "client sync"};

/* SCRIPT LOAD answers: privdata is the connection id times N_SCRIPTS plus
 * the script; the caps script's answer (the last one) starts the syncs */
static void
on_load(redisAsyncContext *ac, void *reply, void *privdata)
{
    const redisReply *r = reply;
    uintptr_t v = (uintptr_t)privdata;
    int which = (int)(v % N_SCRIPTS);
    char t[200];

    if (!is_current(ac, (void *)(v / N_SCRIPTS)))
        return;
    if (!is_sha(r)) {
        reply_text(r, t, sizeof(t));
        fail("script load: %s", t);
        return;
    }
    memcpy(cl.sha[which], r->str, 40);
    cl.sha[which][40] = '\0';
    if (which != SCRIPT_CAPS)
        return;
    evtimer_del(cl.timeout_ev);
    cl.state = C_UP;
    send_sync(); /* the first sync says whether Redis really serves us */
}

static void
record_sync_time(uint64_t sent_us)
{
    double s = (double)(mrd_now_us() - sent_us) / 1e6;
    size_t i = 0;

    while (i < SYNC_BUCKETS && s > sync_bucket_s[i])
        i++;
    cl.sync_buckets[i]++;
    cl.sync_count++;
    cl.sync_sum_s += s;
}

int
mrd_cluster_caps_reply(const redisReply *r, size_t n_regions, const int64_t *want, uint64_t *now_ms,
                       unsigned *n_live, struct mrd_fleet_grant *out, char *why, size_t why_len)
{
    long long *vals;
    char t[200];
    int rc;

    if (r->type != REDIS_REPLY_ARRAY) {
        reply_text(r, t, sizeof(t));
        snprintf(why, why_len, "unexpected reply: %s", t);
        return -1;
    }
    vals = mrd_xcalloc(r->elements + 1, sizeof(*vals));
    for (size_t i = 0; i < r->elements; i++) {
        if (r->element[i] == NULL || r->element[i]->type != REDIS_REPLY_INTEGER) {
            free(vals);
            snprintf(why, why_len, "malformed reply (element %zu is not an integer)", i);
            return -1;
        }
        vals[i] = r->element[i]->integer;
    }
    rc = mrd_fleet_parse_reply(vals, r->elements, n_regions, want, now_ms, n_live, out);
    free(vals);
    if (rc == -1)
        snprintf(why, why_len, "malformed reply (%zu values for %zu regions)", r->elements, n_regions);
    return rc;
}

static int
apply_reply(struct sync_ctx *s, const redisReply *r)
{
    struct mrd_fleet_grant *g = mrd_xcalloc(s->n + 1, sizeof(*g));
    uint64_t now_ms;
    unsigned n_live;
    char why[240];

    if (mrd_cluster_caps_reply(r, s->n, s->want, &now_ms, &n_live, g, why, sizeof(why)) == -1) {
        free(g);
        fail("sync: %s", why);
        return -1;
    }
    for (size_t i = 0; i < s->n; i++) {
        mrd_lease_add(&s->st[i]->lease, g[i].granted);
        s->st[i]->fleet_spare = g[i].spare;
        atomic_store(&s->st[i]->fleet_rate_milli, g[i].fleet_rate_milli);
        atomic_store(&s->st[i]->fleet_self_milli, s->self_milli[i]);
    }
    free(g);
    record_sync_time(s->sent_us);
    cl.n_live = n_live;
    return 0;
}

/* one reply of the sync in flight has been used; when it was the last,
 * Redis serves us (again) */
static void
sync_done(struct sync_ctx *s)
{
    if (--s->pending > 0)
        return;
    cl.inflight = NULL;
    evtimer_del(cl.timeout_ev);
    cl.last_sync_ms = mrd_now_ms();
    cl.backoff_ms = BACKOFF_MIN_MS;
    if (!cl.up) {
        cl.up = 1;
        apply_mode();
        if (cl.outage_logged || !cl.ever_up)
            mrd_log(MRD_LOG_INFO, "cluster: redis %s is up: caps are shared by %u live instance%s of \"%s\"",
                    cl.conf->address, cl.n_live, cl.n_live == 1 ? "" : "s", cl.conf->name);
        cl.outage_logged = 0;
        cl.ever_up = 1;
    }
    sync_ctx_free(s);
    if (cl.resync) {
        cl.resync = 0;
        send_sync();
    }
}

int
mrd_cluster_clients_reply(const redisReply *r, void (*fn)(void *arg, const uint8_t *key, size_t len, uint64_t debt_us),
                          void *arg, char *why, size_t why_len)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
        snprintf(why, why_len, "malformed reply (not pairs of client and debt)");
        return -1;
    }
    /* all of it checked before any of it is used */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < r->elements; i += 2) {
            const redisReply *k = r->element[i], *d = r->element[i + 1];
            uint8_t key[16];
            size_t len;
            if (k == NULL || d == NULL || k->type != REDIS_REPLY_STRING || d->type != REDIS_REPLY_INTEGER ||
                d->integer < 0 || mrd_fleet_client_unhex(k->str, k->len, key, &len) == -1) {
                snprintf(why, why_len, "malformed reply (entry %zu)", i / 2);
                return -1;
            }
            if (pass == 1)
                fn(arg, key, len, (uint64_t)d->integer);
        }
    }
    return 0;
}

struct debt_ctx {
    struct mrd_client_limiter *l;
    uint64_t now_ms;
};

static void
import_debt(void *arg, const uint8_t *key, size_t len, uint64_t debt_us)
{
    struct debt_ctx *d = arg;

    if (d->l != NULL)
        mrd_client_limiter_set_debt(d->l, key, len, d->now_ms, debt_us);
}

/* the fleet's busiest clients: their debt goes into this instance's table */
static int
apply_clients(struct sync_ctx *s, const redisReply *r)
{
    struct debt_ctx d = {s->gen->climit, mrd_now_ms()};
    char why[240];

    if (mrd_cluster_clients_reply(r, import_debt, &d, why, sizeof(why)) == -1) {
        fail("client sync: %s", why);
        return -1;
    }
    return 0;
}

static void call_send(struct call *c);

/* the sync in flight that call c belongs to, or NULL (a reply on a dropped
 * connection, whose sync fail() freed: c is not dereferenced then) */
static struct sync_ctx *
call_owner(const redisAsyncContext *ac, const struct call *c)
{
    struct sync_ctx *s = cl.inflight;

    if (s == NULL || (c != &s->calls[SCRIPT_CAPS] && c != &s->calls[SCRIPT_CLIENTS]))
        return NULL;
    return is_current(ac, (void *)(uintptr_t)s->conn_id) ? s : NULL;
}

static void
on_script(redisAsyncContext *ac, void *reply, void *privdata)
{
    const redisReply *r = reply;
    struct call *c = privdata;
    struct sync_ctx *s = call_owner(ac, c);
    const char *what;
    char t[200];

    if (s == NULL)
        return;
    what = script_what[c->which];
    if (r != NULL && r->type == REDIS_REPLY_ERROR && r->len >= 8 && memcmp(r->str, "NOSCRIPT", 8) == 0 &&
        !c->eval) {
        /* Redis lost the script (a restart, SCRIPT FLUSH): send it whole;
         * EVAL caches it again for the next EVALSHA */
        c->eval = 1;
        call_send(c);
        return;
    }
    if (r == NULL) {
        fail("%s: %s", what, ac->errstr[0] ? ac->errstr : "connection lost");
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        reply_text(r, t, sizeof(t));
        fail("%s: %s", what, t);
        return;
    }
    if ((c->which == SCRIPT_CAPS ? apply_reply(s, r) : apply_clients(s, r)) == 0)
        sync_done(s);
}

/* ---- the sync ---- */

static void
call_init(struct call *c, int which, size_t nargs)
{
    c->which = which;
    c->argc = (int)nargs;
    c->argv = mrd_xcalloc(nargs, sizeof(*c->argv));
    c->argvlen = mrd_xcalloc(nargs, sizeof(*c->argvlen));
    c->offs = mrd_xcalloc(nargs, sizeof(*c->offs));
}

/* argument i is a number (or any short text) written to the call's text */
static void
call_num(struct call *c, size_t i, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
call_num(struct call *c, size_t i, const char *fmt, ...)
{
    char num[80];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(num, sizeof(num), fmt, ap);
    va_end(ap);
    n = n < 0 ? 0 : MRD_MIN(n, (int)sizeof(num) - 1);
    c->offs[i] = c->text.len + 1;
    c->argvlen[i] = (size_t)n;
    mrd_buf_add(&c->text, num, (size_t)n);
}

/* argument i is a string that outlives the call (a key, the instance) */
static void
call_str(struct call *c, size_t i, const char *str)
{
    c->argv[i] = (char *)str;
    c->argvlen[i] = strlen(str);
}

/* the text stopped growing: the number arguments point into it */
static void
call_finish(struct call *c)
{
    for (int i = 0; i < c->argc; i++)
        if (c->offs[i] != 0)
            c->argv[i] = c->text.p + c->offs[i] - 1;
}

static void
call_send(struct call *c)
{
    /* argv[0..1] are "EVALSHA", sha or "EVAL", script */
    call_str(c, 0, c->eval ? "EVAL" : "EVALSHA");
    call_str(c, 1, c->eval ? script_text[c->which] : cl.sha[c->which]);
    if (redisAsyncCommandArgv(cl.ac, on_script, c, c->argc, (const char **)c->argv, c->argvlen) != REDIS_OK)
        fail("%s: cannot send the command", script_what[c->which]);
}

#define CLIENT_REPORT_MAX 512
#define CLIENT_BUSY_MAX 256

/* the client script's arguments: the clients admitted since the last
 * report, and the request for the fleet's busiest */
static void
build_clients(struct call *c, struct mrd_client_limiter *l)
{
    static struct mrd_client_report rep[CLIENT_REPORT_MAX];
    size_t n = mrd_client_limiter_collect(l, rep, CLIENT_REPORT_MAX);

    /* EVALSHA sha numkeys KEYS[2] ARGV[4 + 2n] */
    call_init(c, SCRIPT_CLIENTS, 3 + 2 + 4 + 2 * n);
    call_num(c, 2, "2");
    call_str(c, 3, cl.ckey);
    call_str(c, 4, cl.hkey);
    call_num(c, 5, "%llu", (unsigned long long)mrd_client_limiter_interval_us(l));
    call_num(c, 6, "%llu", (unsigned long long)mrd_client_limiter_burst(l));
    call_num(c, 7, "%llu", (unsigned long long)MRD_MAX(60000, 100 * cl.conf->sync_interval_ms));
    call_num(c, 8, "%d", CLIENT_BUSY_MAX);
    for (size_t i = 0; i < n; i++) {
        char hex[2 * MRD_CLIENT_KEY_MAX + 1];
        mrd_fleet_client_hex(hex, rep[i].key, rep[i].len);
        call_num(c, 9 + 2 * i, "%s", hex);
        call_num(c, 10 + 2 * i, "%u", rep[i].count);
    }
    call_finish(c);
}

/* the caps script's arguments: per capped region what this instance gives
 * back, asks for and admitted */
static void
build_caps(struct sync_ctx *s, struct call *c, uint64_t now)
{
    uint64_t T = cl.conf->sync_interval_ms;
    size_t n = s->n, off;

    /* EVALSHA sha numkeys KEYS[1 + 2n] ARGV[3 + 5n] */
    call_init(c, SCRIPT_CAPS, 3 + (1 + 2 * n) + 3 + MRD_FLEET_ARGS_PER_REGION * n);
    call_num(c, 2, "%zu", 1 + 2 * n);
    call_str(c, 3, cl.ikey);
    for (size_t i = 0; i < n; i++) {
        call_str(c, 4 + 2 * i, cl.regions[i].cap_key);
        call_str(c, 5 + 2 * i, cl.regions[i].rate_key);
    }
    off = 4 + 2 * n;
    call_str(c, off, cl.instance);
    call_num(c, off + 1, "%llu", (unsigned long long)(3 * T));
    call_num(c, off + 2, "%llu", (unsigned long long)MRD_MAX(60000, 100 * T));
    off += 3;
    for (size_t i = 0; i < n; i++, off += MRD_FLEET_ARGS_PER_REGION) {
        struct mrd_region_state *st = cl.regions[i].st;
        uint64_t demand = atomic_load(&st->lease.demand);
        uint64_t elapsed = cl.last_sync_ms ? now - cl.last_sync_ms : T;
        int64_t need, have, want = 0, back = 0;

        st->fleet_demand_rate =
            mrd_fleet_demand_rate(st->fleet_demand_rate, demand - st->fleet_demand_seen, MRD_MAX(elapsed, 1));
        st->fleet_demand_seen = demand;
        need = mrd_lease_need(st->fleet_demand_rate, T, st->capacity_rps, st->capacity_burst, st->fleet_spare,
                              cl.n_live);
        have = mrd_lease_tokens(&st->lease);
        if (have > need)
            back = mrd_lease_trim(&st->lease, need);
        else
            want = need - have;
        s->st[i] = st;
        s->want[i] = want;
        s->self_milli[i] = (uint64_t)(mrd_rate_per_s(&st->rate, now) * 1000.0);
        call_num(c, off, "%.3f", 1e6 / (double)st->capacity_rps);
        call_num(c, off + 1, "%llu", (unsigned long long)st->capacity_burst);
        call_num(c, off + 2, "%lld", (long long)want);
        call_num(c, off + 3, "%lld", (long long)back);
        call_num(c, off + 4, "%llu", (unsigned long long)s->self_milli[i]);
    }
    call_finish(c);
}

static void
send_sync(void)
{
    struct sync_ctx *s;
    int clients;

    if (cl.state != C_UP || cl.ac == NULL || cl.inflight != NULL)
        return;
    s = mrd_xcalloc(1, sizeof(*s));
    s->conn_id = cl.conn_id;
    s->gen = cl.gen;
    mrd_gen_acquire(s->gen);
    s->n = cl.n_regions;
    s->st = mrd_xcalloc(s->n + 1, sizeof(*s->st));
    s->want = mrd_xcalloc(s->n + 1, sizeof(*s->want));
    s->self_milli = mrd_xcalloc(s->n + 1, sizeof(*s->self_milli));
    build_caps(s, &s->calls[SCRIPT_CAPS], mrd_now_ms());
    clients = cl.gen->conf->policies.client_rate_cluster && cl.gen->climit != NULL;
    if (clients)
        build_clients(&s->calls[SCRIPT_CLIENTS], cl.gen->climit);
    s->sent_us = mrd_now_us();
    s->pending = 1 + clients;
    cl.inflight = s;
    arm_timeout();
    call_send(&s->calls[SCRIPT_CAPS]);
    if (clients && cl.inflight == s)
        call_send(&s->calls[SCRIPT_CLIENTS]);
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    if (cl.conf == NULL)
        return;
    if (cl.state == C_UP && cl.inflight == NULL)
        send_sync();
    arm_tick();
}

static void
arm_tick(void)
{
    uint64_t T = cl.conf->sync_interval_ms;
    struct timeval tv = {(time_t)(T / 1000), (suseconds_t)(T % 1000) * 1000};

    evtimer_add(cl.tick, &tv);
}

/* ---- the connection ---- */

static void
on_connect(const redisAsyncContext *ac, int status)
{
    if (ac != cl.ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        cl.ac = NULL;
        cl.conn_id++;
        fail("connect: %s", ac->errstr[0] ? ac->errstr : "failed");
    }
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
    if (ac != cl.ac)
        return; /* one we dropped ourselves */
    /* hiredis frees the context after this callback */
    cl.ac = NULL;
    cl.conn_id++;
    if (refused_elements) {
        fail("a reply of %d elements refused (at most %d)", refused_elements, REPLY_ELEMENTS_MAX);
        refused_elements = 0;
        return;
    }
    fail("connection lost: %s", status == REDIS_OK ? "closed" : ac->errstr[0] ? ac->errstr : "error");
}

static void
connect_redis(void)
{
    const struct mrd_cluster_conf *c = cl.conf;
    redisAsyncContext *ac;

    ac = c->unix_path != NULL ? redisAsyncConnectUnix(c->unix_path) : redisAsyncConnect(c->host, (int)c->port);
    if (ac == NULL || ac->err) {
        char e[160];
        snprintf(e, sizeof(e), "%s", ac != NULL && ac->errstr[0] ? ac->errstr : "cannot connect");
        if (ac != NULL)
            redisAsyncFree(ac);
        fail("connect: %s", e);
        return;
    }
    ac->c.reader->fn = (redisReplyObjectFunctions *)mrd_cluster_reader_functions();
    cl.ac = ac;
    cl.conn_id++;
    cl.state = C_CONNECTING;
    redisLibeventAttach(ac, cl.base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* queued until the connection is up, answered in order */
    if (c->password != NULL) {
        const char *argv[] = {"AUTH", c->password};
        size_t len[] = {4, strlen(c->password)};
        redisAsyncCommandArgv(ac, on_handshake, (void *)(uintptr_t)(cl.conn_id * 2), 2, argv, len);
    }
    if (c->database != 0) {
        char db[16];
        int n = snprintf(db, sizeof(db), "%u", c->database);
        const char *argv[] = {"SELECT", db};
        size_t len[] = {6, (size_t)n};
        redisAsyncCommandArgv(ac, on_handshake, (void *)(uintptr_t)(cl.conn_id * 2 + 1), 2, argv, len);
    }
    /* the client script first: the caps script's answer starts the syncs */
    for (int which = N_SCRIPTS - 1; which >= 0; which--) {
        const char *argv[] = {"SCRIPT", "LOAD", script_text[which]};
        size_t len[] = {6, 4, strlen(script_text[which])};
        redisAsyncCommandArgv(ac, on_load, (void *)(uintptr_t)(cl.conn_id * N_SCRIPTS + (uintptr_t)which), 3,
                              argv, len);
    }
    arm_timeout();
}

/* ---- commit / stop ---- */

static int
same_redis(const struct mrd_cluster_conf *a, const struct mrd_cluster_conf *b)
{
    return strcmp(a->address, b->address) == 0 && a->database == b->database &&
           ((a->password == NULL && b->password == NULL) ||
            (a->password != NULL && b->password != NULL && strcmp(a->password, b->password) == 0));
}

static void
set_instance(const struct mrd_cluster_conf *c)
{
    if (c->instance != NULL) {
        snprintf(cl.instance, sizeof(cl.instance), "%s", c->instance);
        return;
    }
    if (gethostname(cl.instance, sizeof(cl.instance) - 1) != 0 || cl.instance[0] == '\0')
        snprintf(cl.instance, sizeof(cl.instance), "meridian-%ld", (long)getpid());
    cl.instance[sizeof(cl.instance) - 1] = '\0';
}

void
mrd_cluster_commit(struct event_base *base, struct mrd_gen *g)
{
    const struct mrd_cluster_conf *c = &g->conf->cluster;
    struct mrd_cluster_region *old = cl.regions;
    size_t n_old = cl.n_regions, n = 0;
    int reconnect;

    if (!c->enabled) {
        if (cl.conf != NULL)
            mrd_log(MRD_LOG_INFO, "cluster: no cluster block any more: caps are this instance's alone");
        mrd_cluster_stop();
        return;
    }
    reconnect = cl.conf == NULL || !same_redis(cl.conf, c);
    if (cl.base == NULL) {
        cl.base = base;
        cl.tick = evtimer_new(base, on_tick, NULL);
        cl.timeout_ev = evtimer_new(base, on_timeout, NULL);
        cl.retry_ev = evtimer_new(base, on_retry, NULL);
        cl.reset_ev = event_new(base, -1, 0, on_reset, NULL);
        cl.backoff_ms = BACKOFF_MIN_MS;
    }
    mrd_gen_acquire(g);
    if (cl.gen != NULL)
        mrd_gen_release(cl.gen);
    cl.gen = g;
    cl.conf = c;
    set_instance(c);
    mrd_fleet_key(cl.ikey, sizeof(cl.ikey), c->name, "instances", NULL);
    mrd_fleet_key(cl.ckey, sizeof(cl.ckey), c->name, "clients", NULL);
    mrd_fleet_key(cl.hkey, sizeof(cl.hkey), c->name, "busy", NULL);
    cl.regions = mrd_xcalloc(g->n_regions + 1, sizeof(*cl.regions));
    for (size_t i = 0; i < g->n_regions; i++) {
        struct mrd_region *r = &g->regions[i];
        if (r->conf->capacity_rps == 0)
            continue;
        cl.regions[n].st = r->st;
        cl.regions[n].rc = r->conf;
        mrd_fleet_key(cl.regions[n].cap_key, MRD_CLUSTER_KEY_MAX, c->name, "cap", r->conf->name);
        mrd_fleet_key(cl.regions[n].rate_key, MRD_CLUSTER_KEY_MAX, c->name, "rate", r->conf->name);
        n++;
    }
    cl.n_regions = n;
    /* states no longer in use (a region gone or its cap changed): their
     * leases are settled as expired; requests still on the old generation
     * use the bucket at its share. A region whose cap changed keeps its
     * demand estimate, so that its first lease fits the load. */
    for (size_t i = 0; i < n_old; i++) {
        int kept = 0;
        for (size_t j = 0; j < n && !kept; j++)
            kept = cl.regions[j].st == old[i].st;
        if (kept)
            continue;
        for (size_t j = 0; j < n; j++)
            if (strcmp(cl.regions[j].st->name, old[i].st->name) == 0 && cl.regions[j].st->fleet_demand_rate == 0)
                cl.regions[j].st->fleet_demand_rate = old[i].st->fleet_demand_rate;
        set_state_mode(old[i].st, fallback_mode(), cl.n_live);
    }
    free(old);
    if (reconnect) {
        /* a new Redis (or the first): the old connection's state is void */
        if (cl.ac != NULL || cl.state != C_IDLE)
            mrd_log(MRD_LOG_INFO, "cluster: connecting to redis %s (configuration changed)", c->address);
        drop_connection();
        if (cl.inflight != NULL) {
            sync_ctx_free(cl.inflight);
            cl.inflight = NULL;
        }
        evtimer_del(cl.timeout_ev);
        evtimer_del(cl.retry_ev);
        cl.up = 0;
        cl.state = C_IDLE;
        cl.backoff_ms = BACKOFF_MIN_MS;
    }
    apply_mode();
    if (reconnect)
        connect_redis();
    else if (cl.inflight == NULL)
        send_sync(); /* new states get their leases now, not a tick later */
    else
        cl.resync = 1;
    evtimer_del(cl.tick);
    arm_tick();
}

void
mrd_cluster_stop(void)
{
    drop_connection();
    if (cl.inflight != NULL) {
        sync_ctx_free(cl.inflight);
        cl.inflight = NULL;
    }
    for (size_t i = 0; i < cl.n_regions; i++)
        set_state_mode(cl.regions[i].st, MRD_FLEET_OFF, 1);
    free(cl.regions);
    if (cl.tick != NULL) {
        event_free(cl.tick);
        event_free(cl.timeout_ev);
        event_free(cl.retry_ev);
        event_free(cl.reset_ev);
    }
    if (cl.gen != NULL)
        mrd_gen_release(cl.gen);
    memset(&cl, 0, sizeof(cl));
}

/* ---- visibility (cluster_status.c) ---- */

void
mrd_cluster_view(struct mrd_cluster_view *v)
{
    memset(v, 0, sizeof(*v));
    v->conf = cl.conf;
    if (cl.conf == NULL)
        return;
    v->instance = cl.instance;
    v->mode = current_mode();
    v->redis_state = cl.up ? "up" : cl.state == C_IDLE && cl.last_error[0] ? "down" : "connecting";
    v->up = cl.up;
    v->last_error = cl.last_error[0] ? cl.last_error : NULL;
    v->last_sync_ms = cl.last_sync_ms;
    v->n_live = cl.n_live;
    v->regions = cl.regions;
    v->n_regions = cl.n_regions;
    v->sync_bucket_s = sync_bucket_s;
    v->sync_buckets = cl.sync_buckets;
    v->n_sync_buckets = SYNC_BUCKETS;
    v->sync_count = cl.sync_count;
    v->sync_sum_s = cl.sync_sum_s;
    v->syncs_failed = cl.syncs_failed;
}
