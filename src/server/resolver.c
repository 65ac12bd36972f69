/*
 * resolver.c: upstream host names through libevent's evdns, on the main
 * thread only (workers never resolve, see resolver.h). A name is looked up
 * in dns.hosts first (re-read each time, pure lookup in src/core/dns.c),
 * else asked for A and AAAA at once; the union of both answers is its
 * address set. (evdns consults its own hosts table only in
 * evdns_getaddrinfo(), which reports no TTL, hence the separate lookup.) Refreshes come at min(TTL, dns.refresh); a failure keeps
 * the last good set, records the error and retries. The decisions (syntax,
 * sets, diffs, delays) are the pure functions of dns.h.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>

#include "meridian/common.h"
#include "meridian/dns.h"
#include "meridian/log.h"
#include "meridian/resolver.h"

#define PRIME_WAIT_MS 5000   /* start and -t wait at most this for the first answers */
#define RETRY_MAX_MS 5000    /* a failed name is retried at least this often */

struct name;

struct query {
    struct name *n;
    int idx; /* 0: A, 1: AAAA */
};

struct name {
    char *host;
    struct mrd_ipset addrs; /* last good answer, normalised */
    int have;               /* addrs came from a successful resolution */
    int used;               /* a host of the current configuration */
    time_t resolved_at, attempted_at, next_at;
    char err[160];          /* last error, "" after a success */
    /* the resolution in flight */
    int pending;
    struct evdns_request *req[2];
    struct query q[2];
    int res[2];
    long ttl;
    struct mrd_ipset acc;
    struct event *timer;
    struct mrd_conf_pos pos; /* the first entry that names it, for messages */
};

static struct {
    struct event_base *base;
    struct evdns_base *dns;
    struct event *change_ev;
    void (*changed)(void);
    struct name **names;
    size_t n_names;
    uint64_t refresh_ms;
    char *hosts;
    char *resolvers_key;
    unsigned long long ok, failed;
    int priming; /* mrd_resolver_prime reports failures itself */
} R;

static void resolve(struct name *n);

static const char *
err_text(int e)
{
    switch (e) {
    case DNS_ERR_NOTEXIST: return "name does not exist (NXDOMAIN)";
    case DNS_ERR_NODATA: return "no A or AAAA record";
    case DNS_ERR_TIMEOUT: return "no answer from the resolvers (timeout)";
    case DNS_ERR_SERVERFAILED: return "the resolver failed (SERVFAIL)";
    case DNS_ERR_REFUSED: return "the resolver refused the query";
    default: return evdns_err_to_string(e);
    }
}

static struct name *
find(const char *host)
{
    for (size_t i = 0; i < R.n_names; i++)
        if (strcmp(R.names[i]->host, host) == 0)
            return R.names[i];
    return NULL;
}

static void
name_free(struct name *n)
{
    if (n->timer != NULL)
        event_free(n->timer);
    mrd_ipset_dispose(&n->addrs);
    mrd_ipset_dispose(&n->acc);
    free(n->host);
    free(n);
}

static void
name_drop(struct name *n)
{
    for (size_t i = 0; i < R.n_names; i++)
        if (R.names[i] == n) {
            R.names[i] = R.names[--R.n_names];
            break;
        }
    name_free(n);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    resolve(arg);
}

static void
schedule(struct name *n, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    n->next_at = time(NULL) + (time_t)(ms / 1000);
    if (R.base == NULL || R.changed == NULL)
        return; /* priming: timers come with mrd_resolver_start */
    if (n->timer == NULL)
        n->timer = evtimer_new(R.base, on_timer, n);
    evtimer_add(n->timer, &tv);
}

static void
format_set(const struct mrd_ipset *s, char *buf, size_t len)
{
    size_t o = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < s->n && o + MRD_IP_STRLEN + 2 < len; i++) {
        if (i)
            buf[o++] = ' ';
        o += mrd_ip_format(&s->v[i], buf + o, len - o);
    }
}

/* an answer (err NULL) or a failure for n */
static void
finish(struct name *n, struct mrd_ipset *set, long ttl, const char *err)
{
    char text[512];

    if (err == NULL) {
        size_t joined, left;
        mrd_ipset_normalize(set);
        mrd_ipset_diff(&n->addrs, set, &joined, &left);
        R.ok++;
        n->resolved_at = time(NULL);
        n->err[0] = '\0';
        if (!n->have || joined || left) {
            format_set(set, text, sizeof(text));
            mrd_log(MRD_LOG_INFO, "dns: %s: %s (%zu joined, %zu left)", n->host, text, joined, left);
            mrd_ipset_dispose(&n->addrs);
            n->addrs = *set;
            *set = (struct mrd_ipset){0};
            n->have = 1;
            if (R.change_ev != NULL && R.changed != NULL)
                event_active(R.change_ev, 0, 0);
        }
        mrd_ipset_dispose(set);
        schedule(n, mrd_dns_refresh_delay_ms(ttl, R.refresh_ms));
        return;
    }
    R.failed++;
    if (strcmp(n->err, err) != 0 && !R.priming)
        mrd_log(MRD_LOG_WARN, "dns: cannot resolve %s: %s%s", n->host, err,
                n->have ? " (its last addresses stay in use)" : "");
    snprintf(n->err, sizeof(n->err), "%s", err);
    mrd_ipset_dispose(set);
    schedule(n, mrd_dns_refresh_delay_ms(-1, MRD_MIN(R.refresh_ms, RETRY_MAX_MS)));
}

static void
complete(struct name *n)
{
    if (!n->used) {
        name_drop(n); /* forgotten by a reload while in flight */
        return;
    }
    if (n->acc.n > 0) {
        finish(n, &n->acc, n->ttl, NULL);
    } else {
        int e = n->res[0] != DNS_ERR_NONE && n->res[0] != DNS_ERR_NODATA ? n->res[0]
              : n->res[1] != DNS_ERR_NONE && n->res[1] != DNS_ERR_NODATA ? n->res[1]
                                                                         : DNS_ERR_NODATA;
        finish(n, &n->acc, -1, err_text(e));
    }
}

static void
on_answer(int result, char type, int count, int ttl, void *addresses, void *arg)
{
    struct query *q = arg;
    struct name *n = q->n;

    n->req[q->idx] = NULL;
    n->res[q->idx] = result;
    if (result == DNS_ERR_NONE) {
        for (int i = 0; i < count; i++) {
            struct mrd_ip ip = {0};
            if (type == DNS_IPv4_A) {
                ip.family = AF_INET;
                memcpy(ip.bytes, (const uint8_t *)addresses + 4 * i, 4);
            } else if (type == DNS_IPv6_AAAA) {
                ip.family = AF_INET6;
                memcpy(ip.bytes, (const uint8_t *)addresses + 16 * i, 16);
            } else {
                continue;
            }
            mrd_ipset_add(&n->acc, &ip);
        }
        if (count > 0 && ttl >= 0 && (n->ttl < 0 || ttl < n->ttl))
            n->ttl = ttl;
    }
    if (--n->pending == 0)
        complete(n);
}

/* the hosts file, NULL when it cannot be read (as if empty) */
static char *
read_hosts(size_t *len)
{
    FILE *f;
    char *buf = NULL;
    size_t cap = 0, n = 0, r;

    if (R.hosts == NULL || (f = fopen(R.hosts, "r")) == NULL)
        return NULL;
    do {
        if (n == cap)
            buf = mrd_xrealloc(buf, (cap = cap ? cap * 2 : 4096));
        r = fread(buf + n, 1, cap - n, f);
        n += r;
    } while (r > 0 && n < (1u << 24));
    fclose(f);
    *len = n;
    return buf;
}

static void
resolve(struct name *n)
{
    struct mrd_ipset h = {0};
    size_t len = 0;
    char *text;

    if (n->pending)
        return;
    n->attempted_at = time(NULL);
    text = read_hosts(&len);
    if (text != NULL && mrd_hosts_lookup(text, len, n->host, &h) > 0) {
        free(text);
        finish(n, &h, -1, NULL);
        return;
    }
    free(text);
    if (R.dns == NULL) {
        finish(n, &h, -1, "no resolver");
        return;
    }
    mrd_ipset_dispose(&n->acc);
    n->ttl = -1;
    n->pending = 2;
    for (int i = 0; i < 2; i++) {
        n->q[i] = (struct query){n, i};
        n->res[i] = DNS_ERR_UNKNOWN;
    }
    n->req[0] = evdns_base_resolve_ipv4(R.dns, n->host, DNS_QUERY_NO_SEARCH, on_answer, &n->q[0]);
    if (n->req[0] == NULL && n->res[0] == DNS_ERR_UNKNOWN && --n->pending == 0) {
        complete(n);
        return;
    }
    n->req[1] = evdns_base_resolve_ipv6(R.dns, n->host, DNS_QUERY_NO_SEARCH, on_answer, &n->q[1]);
    if (n->req[1] == NULL && n->res[1] == DNS_ERR_UNKNOWN && --n->pending == 0)
        complete(n);
}

static char *
resolvers_key(const struct mrd_dns_conf *d)
{
    size_t len = 1;
    char *k;

    for (size_t i = 0; i < d->n_resolvers; i++)
        len += strlen(d->resolvers[i].address) + 1;
    k = mrd_xcalloc(1, len);
    for (size_t i = 0; i < d->n_resolvers; i++) {
        strcat(k, d->resolvers[i].address);
        strcat(k, " ");
    }
    return k;
}

static void
add_nameservers(const struct mrd_dns_conf *d)
{
    if (d->n_resolvers == 0) {
        int rc = evdns_base_resolv_conf_parse(R.dns, DNS_OPTION_NAMESERVERS, "/etc/resolv.conf");
        if (rc != 0)
            mrd_log(MRD_LOG_WARN, "dns: /etc/resolv.conf: cannot use it (evdns error %d)", rc);
        return;
    }
    for (size_t i = 0; i < d->n_resolvers; i++)
        if (evdns_base_nameserver_sockaddr_add(R.dns, (const struct sockaddr *)&d->resolvers[i].addr,
                                               d->resolvers[i].addrlen, 0) != 0)
            mrd_log(MRD_LOG_WARN, "dns: cannot use resolver %s", d->resolvers[i].address);
}

/* evdns's own messages ("nameserver ... has failed"): our warnings say
 * what matters per name, so they are debug output */
static void
evdns_log(int is_warning, const char *msg)
{
    mrd_log(MRD_LOG_DEBUG, "evdns: %s", msg);
}

static void
dns_base_new(struct event_base *base, const struct mrd_dns_conf *d)
{
    evdns_set_log_fn(evdns_log);
    R.base = base;
    R.dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (R.dns == NULL) {
        mrd_log(MRD_LOG_ERR, "dns: cannot create the resolver");
        return;
    }
    evdns_base_set_option(R.dns, "timeout:", "2");
    evdns_base_set_option(R.dns, "attempts:", "2");
    evdns_base_set_option(R.dns, "randomize-case:", "0");
    add_nameservers(d);
}

/* the dns block and the host names of conf */
static void
take_conf(const struct mrd_config *conf)
{
    R.refresh_ms = conf->dns.refresh_ms;
    free(R.hosts);
    R.hosts = conf->dns.hosts != NULL ? mrd_xstrdup(conf->dns.hosts) : NULL;
    for (size_t i = 0; i < R.n_names; i++)
        R.names[i]->used = 0;
    for (size_t i = 0; i < conf->n_regions; i++)
        for (size_t j = 0; j < conf->regions[i].n_upstreams; j++) {
            const struct mrd_upstream_conf *u = &conf->regions[i].upstreams[j];
            struct name *n;
            if (u->host == NULL)
                continue;
            n = find(u->host);
            if (n == NULL) {
                n = mrd_xcalloc(1, sizeof(*n));
                n->host = mrd_xstrdup(u->host);
                n->ttl = -1;
                n->pos.line = u->pos.line;
                n->pos.col = u->pos.col;
                R.names = mrd_xrealloc(R.names, (R.n_names + 1) * sizeof(*R.names));
                R.names[R.n_names++] = n;
            } else if (!n->used) {
                n->pos.line = u->pos.line;
                n->pos.col = u->pos.col;
            }
            n->used = 1;
        }
}

static int
pending_total(void)
{
    int p = 0;
    for (size_t i = 0; i < R.n_names; i++)
        p += R.names[i]->pending;
    return p;
}

static void
on_prime_deadline(evutil_socket_t fd, short what, void *arg)
{
    *(int *)arg = 1;
}

int
mrd_resolver_prime(struct event_base *base, const struct mrd_config *conf, struct mrd_diag *diag)
{
    struct timeval tv = {PRIME_WAIT_MS / 1000, (PRIME_WAIT_MS % 1000) * 1000};
    struct event *deadline;
    int expired = 0, rc = 0;

    take_conf(conf);
    if (R.n_names == 0)
        return 0;
    R.priming = 1;
    dns_base_new(base, &conf->dns);
    for (size_t i = 0; i < R.n_names; i++)
        resolve(R.names[i]);
    deadline = evtimer_new(base, on_prime_deadline, &expired);
    evtimer_add(deadline, &tv);
    while (pending_total() > 0 && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(deadline);
    /* answers still missing are dropped with the base: no callback comes */
    if (R.dns != NULL)
        evdns_base_free(R.dns, 0);
    R.dns = NULL;
    R.base = NULL;
    for (size_t i = 0; i < R.n_names; i++) {
        struct name *n = R.names[i];
        if (n->pending) {
            n->pending = 0;
            n->req[0] = n->req[1] = NULL;
            if (n->acc.n > 0)
                finish(n, &n->acc, n->ttl, NULL);
            else
                finish(n, &n->acc, -1, err_text(DNS_ERR_TIMEOUT));
        }
        if (!n->have && conf->dns.required) {
            mrd_diag_add(diag, conf->file, n->pos.line, n->pos.col, "cannot resolve \"%s\": %s", n->host, n->err);
            rc = -1;
        } else if (!n->have) {
            mrd_log(MRD_LOG_WARN, "dns: cannot resolve %s: %s (its upstreams have no address yet; retrying)",
                    n->host, n->err);
        }
    }
    R.priming = 0;
    return rc;
}

static void
on_change(evutil_socket_t fd, short what, void *arg)
{
    if (R.changed != NULL)
        R.changed();
}

void
mrd_resolver_start(struct event_base *base, const struct mrd_config *conf, void (*changed)(void))
{
    R.changed = changed;
    R.change_ev = event_new(base, -1, 0, on_change, NULL);
    take_conf(conf);
    free(R.resolvers_key);
    R.resolvers_key = resolvers_key(&conf->dns);
    dns_base_new(base, &conf->dns);
    for (size_t i = 0; i < R.n_names; i++) {
        struct name *n = R.names[i];
        if (n->have)
            schedule(n, (uint64_t)MRD_MAX(0, (long)(n->next_at - time(NULL))) * 1000);
        else
            resolve(n);
    }
}

void
mrd_resolver_update(const struct mrd_config *conf)
{
    char *key = resolvers_key(&conf->dns);
    size_t i = 0;

    take_conf(conf);
    if (R.dns != NULL && (R.resolvers_key == NULL || strcmp(key, R.resolvers_key) != 0)) {
        evdns_base_clear_nameservers_and_suspend(R.dns);
        add_nameservers(&conf->dns);
        evdns_base_resume(R.dns);
    }
    free(R.resolvers_key);
    R.resolvers_key = key;
    while (i < R.n_names) {
        struct name *n = R.names[i];
        if (!n->used && !n->pending) {
            name_drop(n); /* the last entry moved to i */
            continue;
        }
        if (!n->used && n->timer != NULL)
            evtimer_del(n->timer);
        if (n->used && !n->have && !n->pending && n->attempted_at == 0)
            resolve(n); /* a name new to this file */
        i++;
    }
}

const struct mrd_ipset *
mrd_resolver_lookup(const char *host, void *arg)
{
    struct name *n = find(host);

    return n != NULL && n->used && n->have ? &n->addrs : NULL;
}

static void
json_time(struct evbuffer *b, const char *key, time_t t)
{
    struct tm tm;
    char s[32];

    if (t == 0) {
        evbuffer_add_printf(b, ", \"%s\": null", key);
        return;
    }
    gmtime_r(&t, &tm);
    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm);
    evbuffer_add_printf(b, ", \"%s\": \"%s\"", key, s);
}

void
mrd_resolver_status_json(struct evbuffer *b, const char *host)
{
    struct name *n = find(host);
    char ip[MRD_IP_STRLEN];

    if (n == NULL) {
        evbuffer_add_printf(b, "null");
        return;
    }
    /* host names are LDH only and the errors are our own texts: no escaping needed */
    evbuffer_add_printf(b, "{\"name\": \"%s\", \"addresses\": [", n->host);
    for (size_t i = 0; i < n->addrs.n; i++) {
        mrd_ip_format(&n->addrs.v[i], ip, sizeof(ip));
        evbuffer_add_printf(b, "%s\"%s\"", i ? ", " : "", ip);
    }
    evbuffer_add_printf(b, "]");
    json_time(b, "resolved_at", n->resolved_at);
    json_time(b, "last_attempt", n->attempted_at);
    if (n->err[0])
        evbuffer_add_printf(b, ", \"last_error\": \"%s\"", n->err);
    else
        evbuffer_add_printf(b, ", \"last_error\": null");
    evbuffer_add_printf(b, ", \"next_refresh_s\": %lld}",
                        n->pending ? 0LL : (long long)MRD_MAX(0, (long)(n->next_at - time(NULL))));
}

void
mrd_resolver_counts(unsigned long long *ok, unsigned long long *failed)
{
    *ok = R.ok;
    *failed = R.failed;
}

void
mrd_resolver_stop(void)
{
    if (R.dns != NULL)
        evdns_base_free(R.dns, 0);
    R.dns = NULL;
    for (size_t i = 0; i < R.n_names; i++)
        name_free(R.names[i]);
    free(R.names);
    R.names = NULL;
    R.n_names = 0;
    if (R.change_ev != NULL)
        event_free(R.change_ev);
    R.change_ev = NULL;
    R.changed = NULL;
    R.base = NULL;
    free(R.hosts);
    R.hosts = NULL;
    free(R.resolvers_key);
    R.resolvers_key = NULL;
}
