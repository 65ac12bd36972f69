/*
 * admin.c: the admin listener (SPEC section 4), served by the main thread
 * with libevent's evhttp: low traffic, kept off the workers' hot path.
 * Answers GET /healthz and GET /v1/route?ip=ADDR (the routing decision a
 * request from ADDR would get now, explained with the same code the proxy
 * runs, without taking tokens). Requests need "Authorization: Bearer TOKEN"
 * when a token is configured.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "meridian/addr.h"
#include "meridian/cluster.h"
#include "meridian/common.h"
#include "meridian/geo.h"
#include "meridian/log.h"
#include "meridian/metrics.h"
#include "meridian/query.h"
#include "meridian/route.h"
#include "meridian/resolver.h"
#include "meridian/server.h"

static struct evhttp *admin_http;
static struct evconnlistener *admin_lev; /* admin_http's listening socket */
static struct event *admin_retry_ev;
static struct mrd_gen *admin_gen; /* one ref; replaced on reload */
static struct mrd_route_scratch admin_scratch;

static int
authorized(struct evhttp_request *r)
{
    const char *tok = admin_gen->conf->admin.token;
    const char *h;

    if (tok == NULL)
        return 1;
    h = evhttp_find_header(evhttp_request_get_input_headers(r), "Authorization");
    return mrd_bearer_ok(h, h != NULL ? strlen(h) : 0, tok);
}

static void
reply(struct evhttp_request *r, int code, const char *ctype, const char *body)
{
    struct evbuffer *b = evbuffer_new();

    evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", ctype);
    evbuffer_add(b, body, strlen(body));
    evhttp_send_reply(r, code, NULL, b);
    evbuffer_free(b);
}

static void
reply_buf(struct evhttp_request *r, int code, struct evbuffer *b)
{
    evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", "application/json");
    evhttp_send_reply(r, code, NULL, b);
}

static void
json_error(struct evhttp_request *r, int code, const char *msg)
{
    struct evbuffer *b = evbuffer_new();

    evbuffer_add_printf(b, "{\"error\": \"%s\"}\n", msg);
    reply_buf(r, code, b);
    evbuffer_free(b);
}

/* a JSON string literal: quotes, backslashes and control bytes escaped */
void
mrd_admin_json_string(struct evbuffer *b, const char *s)
{
    evbuffer_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            evbuffer_add_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            evbuffer_add_printf(b, "\\u%04x", *p);
        else
            evbuffer_add(b, p, 1);
    }
    evbuffer_add(b, "\"", 1);
}

/* a two-letter code or null */
static void
json_code(struct evbuffer *b, const char *key, const char *code)
{
    if (code[0])
        evbuffer_add_printf(b, "\"%s\": \"%s\"", key, code);
    else
        evbuffer_add_printf(b, "\"%s\": null", key);
}

static void
route_explain(struct evhttp_request *r)
{
    const char *uri = evhttp_request_get_uri(r);
    struct mrd_target t;
    char ip_text[MRD_IP_STRLEN + 1];
    long ip_len;
    struct mrd_ip ip;
    struct mrd_route_result res;
    struct evbuffer *b;
    char ipbuf[MRD_IP_STRLEN];
    struct mrd_gen *g = admin_gen;

    mrd_target_split(uri, strlen(uri), &t);
    ip_len = mrd_query_get(t.query, t.query_len, "ip", ip_text, sizeof(ip_text));
    if (ip_len == MRD_QUERY_ABSENT) {
        json_error(r, 400, "missing ip parameter: /v1/route?ip=ADDR");
        return;
    }
    if (ip_len < 0 || mrd_ip_parse(ip_text, (size_t)ip_len, &ip) == -1) {
        json_error(r, 400, "ip is not an IPv4 or IPv6 address");
        return;
    }
    mrd_route_client(g, &ip, 0, &admin_scratch, &res);
    mrd_ip_format(&ip, ipbuf, sizeof(ipbuf));
    b = evbuffer_new();
    evbuffer_add_printf(b, "{\"client\": {\"ip\": \"%s\", ", ipbuf);
    json_code(b, "country", res.loc.country);
    evbuffer_add(b, ", ", 2);
    json_code(b, "continent", res.loc.continent);
    if (res.loc.known)
        evbuffer_add_printf(b, ", \"latitude\": %.4f, \"longitude\": %.4f", res.loc.latitude, res.loc.longitude);
    else
        evbuffer_add_printf(b, ", \"latitude\": null, \"longitude\": null");
    evbuffer_add_printf(b, ", \"source\": \"%s\"},\n \"decision\": {", mrd_geo_source_name(res.loc.source));
    if (res.block_status)
        evbuffer_add_printf(b, "\"region\": null, \"reason\": \"blocked\", \"status\": %d", res.block_status);
    else if (res.region >= 0)
        evbuffer_add_printf(b, "\"region\": \"%s\", \"reason\": \"%s\"", g->regions[res.region].conf->name,
                            mrd_route_reason_name(res.reason));
    else
        evbuffer_add_printf(b, "\"region\": null, \"reason\": \"%s\", \"status\": 503",
                            mrd_route_reason_name(res.reason));
    if (res.out.winner >= 0)
        evbuffer_add_printf(b, ", \"winner\": \"%s\", \"tie\": %s", g->regions[res.out.winner].conf->name,
                            res.out.tie ? "true" : "false");
    if (res.out.rule >= 0)
        evbuffer_add_printf(b, ", \"residency\": \"%s\"", g->conf->policies.residency[res.out.rule].name);
    evbuffer_add_printf(b, "},\n \"regions\": [");
    for (size_t i = 0; i < g->n_regions; i++) {
        const struct mrd_route_factors *f = &res.out.regions[i];
        evbuffer_add_printf(b,
                            "%s{\"name\": \"%s\", \"eligible\": %s, \"geography\": %.6f, \"health\": %.6f, "
                            "\"latency\": %.6f, \"cost\": %.6f, \"score\": %.6f",
                            i ? ",\n  " : "", g->regions[i].conf->name, f->eligible ? "true" : "false", f->geography,
                            f->health, f->latency, f->cost, f->score);
        if (!f->eligible && f->why != NULL)
            evbuffer_add_printf(b, ", \"why\": \"%s\"", f->why);
        evbuffer_add(b, "}", 1);
    }
    evbuffer_add_printf(b, "]}\n");
    reply_buf(r, 200, b);
    evbuffer_free(b);
}

static void
metrics(struct evhttp_request *r)
{
    struct mrd_buf b = {0};
    struct evbuffer *out = evbuffer_new();

    mrd_metrics_render(&b, admin_gen, &admin_scratch);
    evbuffer_add(out, b.p, b.len);
    evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(r, 200, NULL, out);
    evbuffer_free(out);
    mrd_buf_dispose(&b);
}

/* GET /v1/status: regions, upstreams, rates, latency, tokens, generation */
static void
status(struct evhttp_request *r)
{
    struct mrd_gen *g = admin_gen;
    struct evbuffer *b = evbuffer_new();
    uint64_t now = mrd_now_ms();
    char loaded[32];
    struct tm tm;
    struct mrd_geo_db_info gi;

    gmtime_r(&g->loaded_at, &tm);
    strftime(loaded, sizeof(loaded), "%Y-%m-%dT%H:%M:%SZ", &tm);
    evbuffer_add_printf(b, "{\"version\": \"%s\", \"uptime_seconds\": %lld, \"connections_active\": %u,\n",
                        MRD_VERSION, mrd_metrics_uptime_s(), atomic_load(&mrd_connections_active));
    evbuffer_add_printf(b, " \"config\": {\"generation\": %llu, \"loaded_at\": \"%s\", \"file\": \"%s\"},\n",
                        (unsigned long long)g->id, loaded, g->conf->file);
    mrd_geo_db_info(g->geo, &gi);
    if (gi.open) {
        char geo_loaded[32];
        gmtime_r(&gi.loaded_at, &tm);
        strftime(geo_loaded, sizeof(geo_loaded), "%Y-%m-%dT%H:%M:%SZ", &tm);
        evbuffer_add_printf(b, " \"geo_database\": {\"path\": ");
        mrd_admin_json_string(b, gi.path);
        evbuffer_add_printf(b, ", \"type\": ");
        mrd_admin_json_string(b, gi.type);
        evbuffer_add_printf(b, ", \"build_epoch\": %llu, \"epoch\": %llu, \"loaded_at\": \"%s\"},\n",
                            (unsigned long long)gi.build_epoch, (unsigned long long)gi.epoch, geo_loaded);
    } else {
        evbuffer_add_printf(b, " \"geo_database\": null,\n");
    }
    evbuffer_add_printf(b, " \"regions\": [");
    for (size_t i = 0; i < g->n_regions; i++) {
        const struct mrd_region *rg = &g->regions[i];
        uint64_t ewma = atomic_load(&rg->st->ttfb_ewma_us);
        evbuffer_add_printf(b, "%s{\"name\": \"%s\", \"rate\": %.3f, ", i ? ",\n  " : "", rg->conf->name,
                            mrd_rate_per_s(&rg->st->rate, now));
        if (ewma)
            evbuffer_add_printf(b, "\"latency_ewma_ms\": %.3f, ", (double)ewma / 1000.0);
        else
            evbuffer_add_printf(b, "\"latency_ewma_ms\": null, ");
        if (rg->conf->capacity_rps)
            evbuffer_add_printf(b, "\"capacity_rps\": %llu, \"tokens\": %.3f, ",
                                (unsigned long long)rg->conf->capacity_rps,
                                (double)mrd_bucket_tokens_milli(&rg->st->bucket, now) / 1000.0);
        else
            evbuffer_add_printf(b, "\"capacity_rps\": null, \"tokens\": null, ");
        evbuffer_add_printf(b, "\"upstreams\": [");
        for (size_t j = 0; j < rg->n_ups; j++) {
            evbuffer_add_printf(b, "%s{\"address\": \"%s\", \"healthy\": %s, \"active\": %u", j ? ", " : "",
                                rg->ups[j]->name, atomic_load(&rg->ups[j]->healthy) ? "true" : "false",
                                atomic_load(&rg->ups[j]->active));
            if (rg->uconf[j]->host != NULL) /* one of the addresses of a host name */
                evbuffer_add_printf(b, ", \"host\": \"%s:%u\"", rg->uconf[j]->host, (unsigned)rg->uconf[j]->port);
            evbuffer_add_printf(b, "}");
        }
        evbuffer_add_printf(b, "], \"names\": [");
        /* the entries written as host names, resolved or not (SPEC 7) */
        for (size_t j = 0, k = 0; j < rg->conf->n_upstreams; j++) {
            const struct mrd_upstream_conf *u = &rg->conf->upstreams[j];
            if (u->host == NULL)
                continue;
            evbuffer_add_printf(b, "%s{\"address\": \"%s:%u\", \"resolution\": ", k++ ? ", " : "", u->host,
                                (unsigned)u->port);
            mrd_resolver_status_json(b, u->host);
            evbuffer_add_printf(b, "}");
        }
        evbuffer_add_printf(b, "]}");
    }
    evbuffer_add_printf(b, "],\n \"cluster\": ");
    mrd_cluster_status_json(b);
    evbuffer_add_printf(b, "}\n");
    reply_buf(r, 200, b);
    evbuffer_free(b);
}

static void
on_request(struct evhttp_request *r, void *arg)
{
    const char *uri = evhttp_request_get_uri(r);
    struct mrd_target t;
    size_t plen;

    mrd_target_split(uri, strlen(uri), &t);
    plen = t.path_len;
    if (!authorized(r)) {
        evhttp_add_header(evhttp_request_get_output_headers(r), "WWW-Authenticate", "Bearer");
        reply(r, 401, "text/plain", "401 Unauthorized\n");
        return;
    }
    if (evhttp_request_get_command(r) != EVHTTP_REQ_GET && evhttp_request_get_command(r) != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(r), "Allow", "GET, HEAD");
        reply(r, 405, "text/plain", "405 Method Not Allowed\n");
        return;
    }
    if (plen == 8 && memcmp(uri, "/healthz", 8) == 0) {
        reply(r, 200, "text/plain", "ok\n");
        return;
    }
    if (plen == 9 && memcmp(uri, "/v1/route", 9) == 0) {
        route_explain(r);
        return;
    }
    if (plen == 8 && memcmp(uri, "/metrics", 8) == 0) {
        metrics(r);
        return;
    }
    if (plen == 10 && memcmp(uri, "/v1/status", 10) == 0) {
        status(r);
        return;
    }
    reply(r, 404, "text/plain", "404 Not Found\n");
}

int
mrd_admin_listen(const struct mrd_gen *g)
{
    const struct mrd_admin_conf *a = &g->conf->admin;
    const char *err;
    int fd;

    if (!a->enabled)
        return -2;
    fd = mrd_listen_socket((const struct sockaddr *)&a->addr, a->addrlen, &err);
    if (fd == -1)
        fprintf(stderr, "meridian: cannot listen on admin %s: %s\n", a->address, err);
    return fd;
}

/* accept failed (out of descriptors...): pause as the workers do (worker.c) */
static void
on_admin_retry(evutil_socket_t fd, short what, void *arg)
{
    if (admin_lev != NULL)
        evconnlistener_enable(admin_lev);
    if (mrd_accept_pause_flush()) {
        struct timeval tv = {1, 0};
        event_add(admin_retry_ev, &tv);
    }
}

static void
on_admin_accept_error(struct evconnlistener *l, void *arg)
{
    struct timeval tv = {0, 100000};
    int err = EVUTIL_SOCKET_ERROR();

    mrd_accept_pause_note(mrd_accept_pause_reason(err), err, 0);
    evconnlistener_disable(l);
    event_add(admin_retry_ev, &tv);
}

static void
admin_free_http(void)
{
    if (admin_http != NULL)
        evhttp_free(admin_http);
    admin_http = NULL;
    admin_lev = NULL;
    if (admin_retry_ev != NULL)
        event_del(admin_retry_ev);
}

int
mrd_admin_start(struct event_base *base, struct mrd_gen *g, int fd)
{
    struct evhttp_bound_socket *bound;

    if (fd < 0)
        return 0;
    if (admin_retry_ev == NULL)
        admin_retry_ev = evtimer_new(base, on_admin_retry, NULL);
    admin_http = evhttp_new(base);
    evhttp_set_gencb(admin_http, on_request, NULL);
    evhttp_set_allowed_methods(admin_http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                               EVHTTP_REQ_DELETE);
    bound = evhttp_accept_socket_with_handle(admin_http, fd);
    if (bound == NULL || admin_retry_ev == NULL) {
        mrd_log(MRD_LOG_ERR, "admin %s: cannot accept", g->conf->admin.address);
        admin_free_http();
        return -1;
    }
    admin_lev = evhttp_bound_socket_get_listener(bound);
    evconnlistener_set_error_cb(admin_lev, on_admin_accept_error);
    admin_gen = g;
    mrd_gen_acquire(g);
    return 0;
}

/* reload, step 1: bind the new admin address if it moved (nothing changes yet) */
static int admin_next_fd = -1, admin_moved;

int
mrd_admin_prepare(const struct mrd_config *old, const struct mrd_gen *g, char *err, size_t errlen)
{
    const struct mrd_admin_conf *a = &old->admin, *b = &g->conf->admin;
    const char *why;

    admin_moved = a->enabled != b->enabled ||
                  (b->enabled && (a->addrlen != b->addrlen || memcmp(&a->addr, &b->addr, a->addrlen) != 0));
    admin_next_fd = -1;
    if (!admin_moved || !b->enabled)
        return 0;
    admin_next_fd = mrd_listen_socket((const struct sockaddr *)&b->addr, b->addrlen, &why);
    if (admin_next_fd == -1) {
        snprintf(err, errlen, "admin.address: cannot listen on %s: %s", b->address, why);
        return -1;
    }
    return 0;
}

/* reload, step 2: serve the new generation, on the new address if it moved */
void
mrd_admin_commit(struct event_base *base, struct mrd_gen *g)
{
    if (!admin_moved) {
        if (admin_http != NULL) {
            mrd_gen_acquire(g);
            mrd_gen_release(admin_gen);
            admin_gen = g;
        }
        return;
    }
    admin_free_http();
    mrd_gen_release(admin_gen);
    admin_gen = NULL;
    if (admin_next_fd >= 0 && mrd_admin_start(base, g, admin_next_fd) == 0)
        mrd_log(MRD_LOG_INFO, "admin API now on %s", g->conf->admin.address);
    admin_next_fd = -1;
    admin_moved = 0;
}

void
mrd_admin_stop(void)
{
    admin_free_http();
    if (admin_retry_ev != NULL)
        event_free(admin_retry_ev);
    admin_retry_ev = NULL;
    mrd_gen_release(admin_gen);
    admin_gen = NULL;
    mrd_route_scratch_dispose(&admin_scratch);
}
