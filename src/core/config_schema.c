/*
 * config_schema.c: SPEC section 2 as key tables, one per mapping (listeners,
 * admin, timeouts, limits, geo, client_ip, scoring, regions, policies, ...),
 * their specific setters and checks, and the cross-checks once all is read:
 * duplicates, fallback resolution and cycles, residency region names, a
 * cluster-wide client limit without a cluster block. The one file read here
 * is cluster.redis.password_file (the others are opened by gen.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "meridian/addr.h"
#include "meridian/common.h"
#include "meridian/config.h"
#include "meridian/config-int.h"
#include "meridian/dns.h"
#include "meridian/tlsname.h"

#define MAX_NAME_LEN 63 /* region names end up in headers and metrics */

/* Where a value was written, for checks made after parsing (gen.c, cross-checks). */
static void
pos_of(struct mrd_conf_pos *pos, const struct mrd_conf_node *n)
{
    pos->line = n->line;
    pos->col = n->col;
}

/* ------------------------------------------------------------------------ */
/* address, CIDR and country / continent values */

static int
set_addr(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    const char *s = mrd_conf_nonempty(cx, n), *why;

    if (s == NULL)
        return -1;
    if (mrd_sockaddr_parse(s, mrd_conf_field(obj, k->off2), mrd_conf_field(obj, k->off3), &why) == -1) {
        mrd_conf_bad(cx, n, "invalid address %s: %s", mrd_conf_show(cx, n), why);
        return -1;
    }
    mrd_conf_replace_str(mrd_conf_field(obj, k->off), s);
    return 0;
}

/* upstreams: an IP literal as set_addr, or "name:port" (SPEC 7) resolved later */
static int
set_upstream_addr(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    struct mrd_upstream_conf *u = obj;
    const char *s = mrd_conf_nonempty(cx, n), *why, *why_name;
    char host[MRD_HOSTNAME_MAX + 2];

    if (s == NULL)
        return -1;
    free(u->host);
    u->host = NULL;
    u->addrlen = 0;
    if (mrd_sockaddr_parse(s, &u->addr, &u->addrlen, &why) == 0) {
        mrd_conf_replace_str(&u->address, s);
        return 0;
    }
    u->addrlen = 0;
    if (s[0] != '[' && mrd_hostport_parse(s, host, &u->port, &why_name) == 0) {
        u->host = mrd_xstrdup(host);
        mrd_conf_replace_str(&u->address, s);
        return 0;
    }
    mrd_conf_bad(cx, n, "invalid address %s: %s", mrd_conf_show(cx, n), s[0] == '[' ? why : why_name);
    return -1;
}

/* dns.resolvers: a list of "ip:port" */
static int
set_resolvers(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    struct mrd_dns_conf *d = obj;

    if (mrd_conf_expect(cx, n, MRD_N_SEQ) == -1)
        return -1;
    d->resolvers = mrd_xcalloc(n->n ? n->n : 1, sizeof(*d->resolvers));
    for (size_t i = 0; i < n->n; i++) {
        size_t mark = mrd_conf_path_idx(cx, i);
        const char *s = mrd_conf_nonempty(cx, n->items[i]), *why;
        struct mrd_resolver_conf *r = &d->resolvers[d->n_resolvers];
        if (s != NULL && mrd_sockaddr_parse(s, &r->addr, &r->addrlen, &why) == -1)
            mrd_conf_bad(cx, n->items[i], "invalid resolver address %s: %s", mrd_conf_show(cx, n->items[i]), why);
        else if (s != NULL) {
            r->address = mrd_xstrdup(s);
            d->n_resolvers++;
        }
        mrd_conf_path_pop(cx, mark);
    }
    return 0;
}

static int
get_cidr(struct mrd_conf_ctx *cx, const struct mrd_conf_node *n, struct mrd_cidr *c)
{
    const char *s = mrd_conf_nonempty(cx, n), *why;

    if (s == NULL)
        return -1;
    if (mrd_cidr_parse(s, c, &why) == -1) {
        mrd_conf_bad(cx, n, "invalid CIDR %s: %s", mrd_conf_show(cx, n), why);
        return -1;
    }
    return 0;
}

static int
set_cidr(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    return get_cidr(cx, n, mrd_conf_field(obj, k->off));
}

/* off = struct mrd_cidr *, off2 = size_t count */
static int
set_cidr_list(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    struct mrd_cidr *list;

    if (mrd_conf_expect(cx, n, MRD_N_SEQ) == -1)
        return -1;
    list = mrd_xcalloc(n->n, sizeof(*list));
    memcpy(mrd_conf_field(obj, k->off), &list, sizeof(list));
    *(size_t *)mrd_conf_field(obj, k->off2) = n->n;
    for (size_t i = 0; i < n->n; i++) {
        size_t mark = mrd_conf_path_idx(cx, i);
        get_cidr(cx, n->items[i], &list[i]);
        mrd_conf_path_pop(cx, mark);
    }
    return 0;
}

static int
is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* Two letters, upper-cased; lo = 1 for a continent code. */
static int
get_code(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, char out[3])
{
    static const char *const continents[] = {"AF", "AN", "AS", "EU", "NA", "OC", "SA"};
    const char *s = mrd_conf_scalar(cx, n);

    if (s == NULL)
        return -1;
    if (n->len != 2 || !is_alpha(s[0]) || !is_alpha(s[1])) {
        mrd_conf_bad(cx, n, "expected a two-letter %s code, got %s", k->lo ? "continent" : "ISO 3166 country",
                     mrd_conf_show(cx, n));
        return -1;
    }
    out[0] = (char)(s[0] & ~0x20);
    out[1] = (char)(s[1] & ~0x20);
    out[2] = '\0';
    if (k->lo) {
        for (size_t i = 0; i < MRD_ARRAY_LEN(continents); i++)
            if (strcmp(out, continents[i]) == 0)
                return 0;
        mrd_conf_bad(cx, n, "unknown continent %s (expected AF, AN, AS, EU, NA, OC or SA)", mrd_conf_show(cx, n));
        return -1;
    }
    return 0;
}

static int
set_code(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    return get_code(cx, k, n, mrd_conf_field(obj, k->off));
}

/* off = char (*)[3], off2 = size_t count */
static int
set_code_list(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    char(*list)[3];

    if (mrd_conf_expect(cx, n, MRD_N_SEQ) == -1)
        return -1;
    list = mrd_xcalloc(n->n, sizeof(*list));
    memcpy(mrd_conf_field(obj, k->off), &list, sizeof(list));
    *(size_t *)mrd_conf_field(obj, k->off2) = n->n;
    for (size_t i = 0; i < n->n; i++) {
        size_t mark = mrd_conf_path_idx(cx, i);
        get_code(cx, k, n->items[i], list[i]);
        mrd_conf_path_pop(cx, mark);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* specific setters and checks, in the order of SPEC section 2 */

static int
set_workers(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    int64_t v;

    if (n->type == MRD_N_SCALAR && strcmp(n->str, "auto") == 0) {
        ((struct mrd_config *)obj)->workers = 0;
        return 0;
    }
    if (n->type == MRD_N_SCALAR && mrd_conf_parse_int(n->str, &v) == -1) {
        mrd_conf_bad(cx, n, "expected \"auto\" or an integer from 1 to 1024, got %s", mrd_conf_show(cx, n));
        return -1;
    }
    if (mrd_conf_get_int(cx, k, n, &v) == -1)
        return -1;
    ((struct mrd_config *)obj)->workers = (unsigned)v;
    return 0;
}

static const struct mrd_conf_word protocol_words[] = {
    {"http1", MRD_PROTO_HTTP1}, {"h2c", MRD_PROTO_H2C}, {"h2", MRD_PROTO_H2}, {NULL, 0}};

static int
set_protocols(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    struct mrd_listener_conf *l = obj;

    if (mrd_conf_expect(cx, n, MRD_N_SEQ) == -1)
        return -1;
    if (n->n == 0) {
        mrd_conf_bad(cx, n, "must list at least one protocol");
        return -1;
    }
    for (size_t i = 0; i < n->n; i++) {
        size_t mark = mrd_conf_path_idx(cx, i);
        int p = mrd_conf_get_word(cx, k, n->items[i]);
        if (p != -1 && (l->protocols & (unsigned)p))
            mrd_conf_bad(cx, n->items[i], "protocol %s is listed twice", mrd_conf_show(cx, n->items[i]));
        else if (p != -1 && l->n_alpn < MRD_ARRAY_LEN(l->alpn)) {
            l->protocols |= (unsigned)p;
            l->alpn[l->n_alpn++] = (enum mrd_proto)p;
        }
        mrd_conf_path_pop(cx, mark);
    }
    return 0;
}

static int
set_min_version(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    const char *s = mrd_conf_scalar(cx, n);

    if (s == NULL)
        return -1;
    if (strcmp(s, "1.2") != 0 && strcmp(s, "1.3") != 0) {
        mrd_conf_bad(cx, n, "expected \"1.2\" or \"1.3\", got %s", mrd_conf_show(cx, n));
        return -1;
    }
    *(int *)mrd_conf_field(obj, k->off) = s[2] == '2' ? 12 : 13;
    return 0;
}

static void
cert_check(struct mrd_conf_ctx *cx, const struct mrd_conf_node *map, void *obj, const struct mrd_conf_node **vals)
{
    pos_of(&((struct mrd_cert_conf *)obj)->pos, map);
}

static void
tls_pre(struct mrd_conf_ctx *cx, void *obj)
{
    ((struct mrd_listener_conf *)obj)->tls = 1;
}

enum { L_ADDRESS, L_PROTOCOLS, L_TLS, L_PROXY_PROTOCOL };

/* Default protocols, and h2 only over TLS / h2c only without it. */
static void
listener_check(struct mrd_conf_ctx *cx, const struct mrd_conf_node *map, void *obj, const struct mrd_conf_node **vals)
{
    struct mrd_listener_conf *l = obj;
    const struct mrd_conf_node *protos = vals[L_PROTOCOLS];

    pos_of(&l->pos, vals[L_ADDRESS] != NULL ? vals[L_ADDRESS] : map);
    if (vals[L_PROXY_PROTOCOL] != NULL)
        pos_of(&l->proxy_protocol_pos, vals[L_PROXY_PROTOCOL]);
    if (protos == NULL) {
        l->n_alpn = 0;
        if (l->tls) {
            l->alpn[l->n_alpn++] = MRD_PROTO_H2;
            l->protocols |= MRD_PROTO_H2;
        }
        l->alpn[l->n_alpn++] = MRD_PROTO_HTTP1;
        l->protocols |= MRD_PROTO_HTTP1;
        return;
    }
    if (protos->type != MRD_N_SEQ)
        return;
    for (size_t i = 0; i < protos->n; i++) {
        const struct mrd_conf_node *p = protos->items[i];
        size_t mark;

        if (p->type != MRD_N_SCALAR)
            continue;
        mark = mrd_conf_path_key(cx, "protocols");
        mrd_conf_path_idx(cx, i);
        if (strcmp(p->str, "h2") == 0 && !l->tls)
            mrd_conf_bad(cx, p, "h2 needs a tls block (for plaintext HTTP/2 use h2c)");
        else if (strcmp(p->str, "h2c") == 0 && l->tls)
            mrd_conf_bad(cx, p, "h2c is plaintext HTTP/2 and cannot be used with tls (use h2)");
        mrd_conf_path_pop(cx, mark);
    }
}

static void
admin_pre(struct mrd_conf_ctx *cx, void *obj)
{
    ((struct mrd_admin_conf *)obj)->enabled = 1;
}

/* Visible ASCII, no spaces: it is compared with an Authorization header. */
static int
set_token(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    const char *s = mrd_conf_nonempty(cx, n);

    if (s == NULL)
        return -1;
    for (const char *p = s; *p != '\0'; p++)
        if (*p <= 0x20 || *p >= 0x7f) {
            mrd_conf_bad(cx, n, "must be printable ASCII without spaces");
            return -1;
        }
    mrd_conf_replace_str(mrd_conf_field(obj, k->off), s);
    return 0;
}

enum { G_DATABASE, G_RELOAD_CHECK, G_NETWORKS, G_DEFAULT_LOCATION };

static void
geo_check(struct mrd_conf_ctx *cx, const struct mrd_conf_node *map, void *obj, const struct mrd_conf_node **vals)
{
    if (vals[G_DATABASE] != NULL)
        pos_of(&((struct mrd_geo_conf *)obj)->database_pos, vals[G_DATABASE]);
}

static void
default_location_pre(struct mrd_conf_ctx *cx, void *obj)
{
    ((struct mrd_geo_conf *)obj)->has_default_location = 1;
}

enum { NW_CIDR, NW_COUNTRY, NW_CONTINENT, NW_LATITUDE, NW_LONGITUDE };

static void
network_check(struct mrd_conf_ctx *cx, const struct mrd_conf_node *map, void *obj, const struct mrd_conf_node **vals)
{
    struct mrd_geo_network_conf *nw = obj;

    pos_of(&nw->pos, map);
    if ((vals[NW_LATITUDE] == NULL) != (vals[NW_LONGITUDE] == NULL))
        mrd_conf_bad(cx, map, "latitude and longitude must be given together");
    nw->has_location = vals[NW_LATITUDE] != NULL && vals[NW_LONGITUDE] != NULL;
}

/* RFC 9110 field name (token). */
static int
set_header_name(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    const char *s = mrd_conf_nonempty(cx, n);

    if (s == NULL)
        return -1;
    for (const char *p = s; *p != '\0'; p++)
        if (!is_alpha(*p) && !(*p >= '0' && *p <= '9') && strchr("!#$%&'*+-.^_`|~", *p) == NULL) {
            mrd_conf_bad(cx, n, "%s is not a valid HTTP header name", mrd_conf_show(cx, n));
            return -1;
        }
    mrd_conf_replace_str(mrd_conf_field(obj, k->off), s);
    return 0;
}

static void
weights_pre(struct mrd_conf_ctx *cx, void *obj)
{
    struct mrd_scoring_conf *s = obj;

    s->w_geography = s->w_health = s->w_latency = s->w_cost = 0;
}

static void
weights_check(struct mrd_conf_ctx *cx, const struct mrd_conf_node *map, void *obj, const struct mrd_conf_node **vals)
{
    struct mrd_scoring_conf *s = obj;
    double sum = s->w_geography + s->w_health + s->w_latency + s->w_cost;

    if (cx->walk_errors > 0)
        return; /* a rejected weight would make the sum misleading */
    if (!(sum > 0) || !isfinite(sum)) {
        mrd_conf_bad(cx, map, "weights must not all be 0 (they are normalised to sum to 1)");
        return;
    }
    s->w_geography /= sum;
    s->w_health /= sum;
    s->w_latency /= sum;
    s->w_cost /= sum;
}

static int
set_region_name(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    const char *s = mrd_conf_nonempty(cx, n);

    if (s == NULL)
        return -1;
    if (n->len > MAX_NAME_LEN ||
        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != n->len) {
        mrd_conf_bad(cx, n, "%s: region names are 1 to %d characters from A-Z a-z 0-9 . _ -", mrd_conf_show(cx, n),
                     MAX_NAME_LEN);
        return -1;
    }
    mrd_conf_replace_str(mrd_conf_field(obj, k->off), s);
    return 0;
}

static int
set_fallback(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    struct mrd_region_conf *r = obj;

    if (mrd_conf_set_string(cx, k, n, obj) == -1)
        return -1;
    if (cx->fallback_nodes == NULL)
        cx->fallback_nodes = mrd_xcalloc(cx->cfg->n_regions, sizeof(*cx->fallback_nodes));
    cx->fallback_nodes[r - cx->cfg->regions] = n;
    return 0;
}

static const struct mrd_conf_word balance_words[] = {{"least_connections", MRD_BALANCE_LEAST_CONN},
                                            {"round_robin", MRD_BALANCE_ROUND_ROBIN},
                                            {"p2c_ewma", MRD_BALANCE_P2C_EWMA},
                                            {NULL, 0}};

static int
set_balance(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    int v = mrd_conf_get_word(cx, k, n);

    if (v == -1)
        return -1;
    ((struct mrd_region_conf *)obj)->balance = (enum mrd_balance)v;
    return 0;
}

static const struct mrd_conf_word upstream_protocol_words[] = {
    {"http1", MRD_UP_HTTP1}, {"h2c", MRD_UP_H2C}, {"h2", MRD_UP_H2}, {NULL, 0}};

static int
set_upstream_protocol(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n,
                      void *obj)
{
    int v = mrd_conf_get_word(cx, k, n);

    if (v == -1)
        return -1;
    ((struct mrd_region_conf *)obj)->upstream_protocol = (enum mrd_upstream_protocol)v;
    return 0;
}

static int
set_hc_path(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    const char *s = mrd_conf_nonempty(cx, n);

    if (s == NULL)
        return -1;
    if (s[0] != '/') {
        mrd_conf_bad(cx, n, "must start with \"/\", got %s", mrd_conf_show(cx, n));
        return -1;
    }
    for (const char *p = s; *p != '\0'; p++)
        if (*p <= 0x20 || *p >= 0x7f) {
            mrd_conf_bad(cx, n, "must not contain spaces or control characters");
            return -1;
        }
    mrd_conf_replace_str(mrd_conf_field(obj, k->off), s);
    return 0;
}

static void
health_pre(struct mrd_conf_ctx *cx, void *obj)
{
    ((struct mrd_health_conf *)obj)->enabled = 1;
}

/* upstream_tls (SPEC 7): files are loaded by gen.c, which reports at these positions */
static int
set_server_name(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    const char *s = mrd_conf_scalar(cx, n), *why;

    if (s == NULL)
        return -1;
    if (mrd_tls_server_name_check(s, &why) == -1) {
        mrd_conf_bad(cx, n, "%s %s", mrd_conf_show(cx, n), why);
        return -1;
    }
    mrd_conf_replace_str(mrd_conf_field(obj, k->off), s);
    return 0;
}

static void
uptls_pre(struct mrd_conf_ctx *cx, void *obj)
{
    ((struct mrd_upstream_tls_conf *)obj)->enabled = 1;
}

enum { UT_CA, UT_VERIFY, UT_SERVER_NAME, UT_CERTIFICATE, UT_MIN_VERSION };

static void
uptls_check(struct mrd_conf_ctx *cx, const struct mrd_conf_node *map, void *obj, const struct mrd_conf_node **vals)
{
    struct mrd_upstream_tls_conf *t = obj;

    pos_of(&t->pos, map);
    if (vals[UT_CA] != NULL)
        pos_of(&t->ca_pos, vals[UT_CA]);
    if (vals[UT_VERIFY] != NULL)
        pos_of(&t->verify_pos, vals[UT_VERIFY]);
}

enum { U_ADDRESS, U_WEIGHT, U_SEND_PROXY };

static void
upstream_check(struct mrd_conf_ctx *cx, const struct mrd_conf_node *map, void *obj, const struct mrd_conf_node **vals)
{
    pos_of(&((struct mrd_upstream_conf *)obj)->pos, vals[U_ADDRESS] != NULL ? vals[U_ADDRESS] : map);
}

enum {
    R_NAME,
    R_LOCATION,
    R_COST,
    R_CAPACITY_RPS,
    R_CAPACITY_BURST,
    R_FALLBACK,
    R_BALANCE,
    R_RETRIES,
    R_HEALTH_CHECK,
    R_UPSTREAMS,
    R_UPSTREAM_TLS,
    R_UPSTREAM_PROTOCOL
};

static void
region_check(struct mrd_conf_ctx *cx, const struct mrd_conf_node *map, void *obj, const struct mrd_conf_node **vals)
{
    struct mrd_region_conf *r = obj;

    pos_of(&r->pos, vals[R_NAME] != NULL ? vals[R_NAME] : map);
    if (vals[R_CAPACITY_BURST] != NULL && vals[R_CAPACITY_RPS] == NULL) {
        size_t mark = mrd_conf_path_key(cx, "capacity_burst");
        mrd_conf_bad(cx, vals[R_CAPACITY_BURST], "needs capacity_rps");
        mrd_conf_path_pop(cx, mark);
    } else if (vals[R_CAPACITY_BURST] == NULL && r->capacity_rps > 0) {
        r->capacity_burst = MRD_MAX(1, r->capacity_rps / 10);
    }
    if (vals[R_UPSTREAM_PROTOCOL] != NULL) {
        size_t mark = mrd_conf_path_key(cx, "upstream_protocol");
        if (r->upstream_protocol == MRD_UP_H2 && !r->tls.enabled)
            mrd_conf_bad(cx, vals[R_UPSTREAM_PROTOCOL], "h2 requires upstream_tls (use h2c for HTTP/2 over cleartext)");
        else if (r->upstream_protocol == MRD_UP_H2C && r->tls.enabled)
            mrd_conf_bad(cx, vals[R_UPSTREAM_PROTOCOL], "h2c is HTTP/2 over cleartext; with upstream_tls use h2");
        mrd_conf_path_pop(cx, mark);
    }
    for (size_t i = 0; i < r->n_upstreams; i++) {
        /* an HTTP/2 connection carries many clients' streams: it cannot start
         * with one client's PROXY header */
        if (r->upstream_protocol != MRD_UP_HTTP1 && r->upstreams[i].send_proxy)
            mrd_conf_err_at(cx, r->upstreams[i].pos.line, r->upstreams[i].pos.col,
                            "%s.upstreams[%zu].send_proxy: not with upstream_protocol %s (its connections are "
                            "shared by many clients)",
                            cx->path, i, r->upstream_protocol == MRD_UP_H2 ? "h2" : "h2c");
        for (size_t j = 0; j < i; j++) {
            const struct mrd_upstream_conf *a = &r->upstreams[j], *b = &r->upstreams[i];
            if (a->address != NULL && b->address != NULL &&
                ((a->addrlen > 0 && a->addrlen == b->addrlen && memcmp(&a->addr, &b->addr, a->addrlen) == 0) ||
                 (a->host != NULL && b->host != NULL && a->port == b->port && strcmp(a->host, b->host) == 0))) {
                mrd_conf_err_at(cx, b->pos.line, b->pos.col, "%s.upstreams[%zu].address: %s is already upstreams[%zu]",
                                cx->path, i, mrd_conf_show_str(cx, b->address, strlen(b->address)), j);
                break;
            }
        }
    }
}

static int
set_residency_regions(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    struct mrd_residency_conf *rr = obj;

    if (mrd_conf_expect(cx, n, MRD_N_SEQ) == -1)
        return -1;
    if (n->n == 0) {
        mrd_conf_bad(cx, n, "must name at least one region");
        return -1;
    }
    if (cx->residency_nodes == NULL)
        cx->residency_nodes = mrd_xcalloc(cx->cfg->policies.n_residency, sizeof(*cx->residency_nodes));
    cx->residency_nodes[rr - cx->cfg->policies.residency] = n;
    return 0;
}

static void
match_check(struct mrd_conf_ctx *cx, const struct mrd_conf_node *map, void *obj, const struct mrd_conf_node **vals)
{
    struct mrd_residency_conf *rr = obj;

    if (cx->walk_errors == 0 && rr->n_continents == 0 && rr->n_countries == 0)
        mrd_conf_bad(cx, map, "needs a non-empty continents or countries list");
}

static void
rate_pre(struct mrd_conf_ctx *cx, void *obj)
{
    ((struct mrd_policies_conf *)obj)->client_rate_enabled = 1;
}

enum { RL_RATE, RL_BURST, RL_SCOPE };

static void
rate_check(struct mrd_conf_ctx *cx, const struct mrd_conf_node *map, void *obj, const struct mrd_conf_node **vals)
{
    struct mrd_policies_conf *p = obj;

    if (p->client_rate_cluster)
        cx->rate_scope = vals[RL_SCOPE]; /* needs a cluster block: top_check */
    if (vals[RL_BURST] == NULL)
        p->client_burst = MRD_MAX(1, (p->client_rate_milli_per_s + 999) / 1000);
}

static int
set_log_path(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    struct mrd_access_log_conf *a = obj;
    const char *s = mrd_conf_nonempty(cx, n);

    if (s == NULL)
        return -1;
    free(a->path);
    a->path = strcmp(s, "off") == 0 ? NULL : mrd_xstrdup(s);
    return 0;
}

/* cluster (SPEC 8): a fleet sharing caps and client limits through Redis */

#define CLUSTER_NAME_MAX 64     /* cluster.name and cluster.instance */
#define PASSWORD_MAX_BYTES 4096 /* cluster.redis.password_file */

/* sockaddr_un.sun_path holds the path and its NUL */
#define UNIX_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/* "host:port" (a DNS name, an IPv4 literal or "[IPv6]:port") or "unix:/absolute/path" */
static int
set_redis_address(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    struct mrd_cluster_conf *cl = obj;
    const char *s = mrd_conf_nonempty(cx, n), *why, *colon;
    char name[MRD_HOSTNAME_MAX + 2];
    struct sockaddr_storage ss;
    socklen_t sslen;
    struct mrd_ip ip;
    uint16_t port;

    if (s == NULL)
        return -1;
    free(cl->host);
    free(cl->unix_path);
    cl->host = cl->unix_path = NULL;
    cl->port = 0;
    if (strncmp(s, "unix:", 5) == 0) {
        if (s[5] != '/') {
            mrd_conf_bad(cx, n, "invalid address %s: a unix socket is unix:/absolute/path", mrd_conf_show(cx, n));
            return -1;
        }
        if (strlen(s + 5) > UNIX_PATH_MAX) {
            mrd_conf_bad(cx, n, "invalid address %s: a unix socket path is at most %zu bytes", mrd_conf_show(cx, n),
                         (size_t)UNIX_PATH_MAX);
            return -1;
        }
        cl->unix_path = mrd_xstrdup(s + 5);
        mrd_conf_replace_str(&cl->address, s);
        return 0;
    }
    if (mrd_sockaddr_parse(s, &ss, &sslen, &why) == 0) {
        /* an IP literal: host without the brackets */
        if (s[0] == '[')
            cl->host = mrd_xstrndup(s + 1, (size_t)(strchr(s, ']') - s - 1));
        else
            cl->host = mrd_xstrndup(s, (size_t)(strrchr(s, ':') - s));
        cl->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                            : ntohs(((struct sockaddr_in *)&ss)->sin_port);
        mrd_conf_replace_str(&cl->address, s);
        return 0;
    }
    /* a name; else say what is wrong with the kind of address it looks like */
    colon = strrchr(s, ':');
    if (colon == NULL)
        why = "expected host:port, [IPv6]:port or unix:/absolute/path";
    else if (s[0] != '[' && mrd_ip_parse(s, (size_t)(colon - s), &ip) == -1) {
        if (mrd_hostport_parse(s, name, &port, &why) == 0) {
            cl->host = mrd_xstrdup(name);
            cl->port = port;
            mrd_conf_replace_str(&cl->address, s);
            return 0;
        }
    }
    mrd_conf_bad(cx, n, "invalid address %s: %s", mrd_conf_show(cx, n), why);
    return -1;
}

/*
 * The password is read when the configuration is (start, -t, every reload
 * and the re-parse of a DNS change), so that a missing or unreadable file
 * is reported at its line like the other errors. The path is used as
 * written (relative: to the working directory, as every path of the file).
 * One trailing "\n" or "\r\n" is not part of the password.
 */
static int
set_password_file(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    struct mrd_cluster_conf *cl = obj;
    const char *s = mrd_conf_nonempty(cx, n);
    char buf[PASSWORD_MAX_BYTES + 1];
    size_t len = 0;
    struct stat st;
    int fd, rc = -1;

    if (s == NULL)
        return -1;
    mrd_conf_replace_str(&cl->password_file, s);
    mrd_conf_free_secret(&cl->password);
    /* only regular files are opened (not a device, whose open can do
     * something); O_NONBLOCK in case it is swapped for a FIFO meanwhile,
     * refused by the fstat below */
    if (stat(s, &st) == 0 && !S_ISREG(st.st_mode)) {
        mrd_conf_bad(cx, n, "cannot read password file %s: not a regular file", mrd_conf_show(cx, n));
        return -1;
    }
    fd = open(s, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd == -1) {
        mrd_conf_bad(cx, n, "cannot read password file %s: %s", mrd_conf_show(cx, n), strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) == -1) {
        mrd_conf_bad(cx, n, "cannot read password file %s: %s", mrd_conf_show(cx, n), strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        mrd_conf_bad(cx, n, "cannot read password file %s: not a regular file", mrd_conf_show(cx, n));
        goto out;
    }
    while (len < sizeof(buf)) {
        ssize_t got = read(fd, buf + len, sizeof(buf) - len);
        if (got == -1 && errno == EINTR)
            continue;
        if (got == -1) {
            mrd_conf_bad(cx, n, "cannot read password file %s: %s", mrd_conf_show(cx, n), strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    if (len > PASSWORD_MAX_BYTES) {
        mrd_conf_bad(cx, n, "password file %s is larger than %d bytes", mrd_conf_show(cx, n), PASSWORD_MAX_BYTES);
        goto out;
    }
    if (len > 0 && buf[len - 1] == '\n')
        len -= len > 1 && buf[len - 2] == '\r' ? 2 : 1;
    if (len == 0) {
        mrd_conf_bad(cx, n, "password file %s is empty", mrd_conf_show(cx, n));
        goto out;
    }
    if (memchr(buf, '\0', len) != NULL) {
        mrd_conf_bad(cx, n, "password file %s contains a NUL byte", mrd_conf_show(cx, n));
        goto out;
    }
    cl->password = mrd_xstrndup(buf, len);
    rc = 0;
out:
    mrd_conf_wipe(buf, sizeof(buf));
    close(fd);
    return rc;
}

/* cluster.name and cluster.instance: they go inside a Redis hash tag {name} */
static int
set_cluster_id(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    const char *s = mrd_conf_nonempty(cx, n);

    if (s == NULL)
        return -1;
    if (n->len > CLUSTER_NAME_MAX ||
        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != n->len) {
        mrd_conf_bad(cx, n, "%s: must be 1 to %d characters from A-Z a-z 0-9 . _ -", mrd_conf_show(cx, n),
                     CLUSTER_NAME_MAX);
        return -1;
    }
    mrd_conf_replace_str(mrd_conf_field(obj, k->off), s);
    return 0;
}

/* "10ms", "10s": a bound for messages */
static const char *
fmt_ms(char *buf, size_t len, uint64_t ms)
{
    if (ms > 0 && ms % 1000 == 0)
        snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(buf, len, "%llums", (unsigned long long)ms);
    return buf;
}

/* A duration from k->lo to k->hi milliseconds (uint64_t at k->off). */
static int
set_duration_in(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    const char *s = mrd_conf_scalar(cx, n);
    char lo[24], hi[24];
    uint64_t ms;

    if (s == NULL)
        return -1;
    if (mrd_parse_duration_ms(s, &ms) == -1) {
        mrd_conf_bad(cx, n, "expected a duration such as 250ms, 2s, 5m or 1h, got %s", mrd_conf_show(cx, n));
        return -1;
    }
    if (ms < (uint64_t)k->lo || ms > (uint64_t)k->hi) {
        mrd_conf_bad(cx, n, "must be from %s to %s, got %s", fmt_ms(lo, sizeof(lo), (uint64_t)k->lo),
                     fmt_ms(hi, sizeof(hi), (uint64_t)k->hi), mrd_conf_show(cx, n));
        return -1;
    }
    *(uint64_t *)mrd_conf_field(obj, k->off) = ms;
    return 0;
}

static const struct mrd_conf_word failure_words[] = {
    {"local", MRD_CLUSTER_LOCAL}, {"open", MRD_CLUSTER_OPEN}, {NULL, 0}};

static int
set_on_failure(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    int v = mrd_conf_get_word(cx, k, n);

    if (v == -1)
        return -1;
    ((struct mrd_cluster_conf *)obj)->on_failure = (enum mrd_cluster_failure)v;
    return 0;
}

static void
cluster_pre(struct mrd_conf_ctx *cx, void *obj)
{
    struct mrd_cluster_conf *cl = obj;

    cl->enabled = 1;
    mrd_conf_replace_str(&cl->name, "meridian");
    cl->sync_interval_ms = 100;
    cl->on_failure = MRD_CLUSTER_LOCAL;
}

enum { C_REDIS, C_NAME, C_INSTANCE, C_SYNC_INTERVAL, C_ON_REDIS_FAILURE, C_TIMEOUT };

static void
cluster_check(struct mrd_conf_ctx *cx, const struct mrd_conf_node *map, void *obj, const struct mrd_conf_node **vals)
{
    struct mrd_cluster_conf *cl = obj;

    if (vals[C_TIMEOUT] == NULL)
        cl->timeout_ms = MRD_MAX(2 * cl->sync_interval_ms, 50);
}

/* ------------------------------------------------------------------------ */
/* the schema: tables from the leaves up */

#define TABLE(keys, pre, check) {keys, MRD_ARRAY_LEN(keys), pre, check}
#define DUR(name, type, f) {name, mrd_conf_set_duration, offsetof(struct type, f), 0, 0, 0, 0, NULL, 0}

static const struct mrd_conf_key cert_keys[] = {
    {"cert", mrd_conf_set_string, offsetof(struct mrd_cert_conf, cert), .flags = MRD_K_REQUIRED},
    {"key", mrd_conf_set_string, offsetof(struct mrd_cert_conf, key), .flags = MRD_K_REQUIRED},
};
static const struct mrd_conf_table cert_table = TABLE(cert_keys, NULL, cert_check);
static const struct mrd_conf_seq cert_seq = {sizeof(struct mrd_cert_conf), &cert_table, NULL};

static const struct mrd_conf_key tls_keys[] = {
    {"certificates", mrd_conf_set_seq, offsetof(struct mrd_listener_conf, certs),
     offsetof(struct mrd_listener_conf, n_certs),
     .aux = &cert_seq, .flags = MRD_K_REQUIRED | MRD_K_NONEMPTY},
    {"min_version", set_min_version, offsetof(struct mrd_listener_conf, tls_min_version), .aux = NULL},
};
static const struct mrd_conf_table tls_table = TABLE(tls_keys, tls_pre, NULL);

static const struct mrd_conf_key listener_keys[] = {
    [L_ADDRESS] = {"address", set_addr, offsetof(struct mrd_listener_conf, address),
                   offsetof(struct mrd_listener_conf, addr), offsetof(struct mrd_listener_conf, addrlen),
                   .flags = MRD_K_REQUIRED},
    [L_PROTOCOLS] = {"protocols", set_protocols, .aux = protocol_words},
    [L_TLS] = {"tls", mrd_conf_set_submap, 0, .aux = &tls_table},
    [L_PROXY_PROTOCOL] = {"proxy_protocol", mrd_conf_set_bool, offsetof(struct mrd_listener_conf, proxy_protocol),
                          .aux = NULL},
};
static const struct mrd_conf_table listener_table = TABLE(listener_keys, NULL, listener_check);

static void
listener_init(void *elem)
{
    ((struct mrd_listener_conf *)elem)->tls_min_version = 13;
}
static const struct mrd_conf_seq listener_seq = {sizeof(struct mrd_listener_conf), &listener_table, listener_init};

static const struct mrd_conf_key admin_keys[] = {
    {"address", set_addr, offsetof(struct mrd_admin_conf, address), offsetof(struct mrd_admin_conf, addr),
     offsetof(struct mrd_admin_conf, addrlen), .flags = MRD_K_REQUIRED},
    {"token", set_token, offsetof(struct mrd_admin_conf, token), .aux = NULL},
};
static const struct mrd_conf_table admin_table = TABLE(admin_keys, admin_pre, NULL);

static const struct mrd_conf_key timeout_keys[] = {
    DUR("connect", mrd_timeouts_conf, connect_ms),
    DUR("request_header", mrd_timeouts_conf, request_header_ms),
    DUR("upstream_response", mrd_timeouts_conf, upstream_response_ms),
    DUR("idle", mrd_timeouts_conf, idle_ms),
    DUR("shutdown", mrd_timeouts_conf, shutdown_ms),
    DUR("request_body", mrd_timeouts_conf, request_body_ms),
};
static const struct mrd_conf_table timeout_table = TABLE(timeout_keys, NULL, NULL);

static const struct mrd_conf_key limit_keys[] = {
    {"max_header_bytes", mrd_conf_set_u64, offsetof(struct mrd_limits_conf, max_header_bytes), .lo = 1024,
     .hi = 1048576},
    {"max_body_bytes", mrd_conf_set_u64, offsetof(struct mrd_limits_conf, max_body_bytes), .lo = 0,
     .hi = MRD_UNBOUNDED},
    {"max_connections", mrd_conf_set_u64, offsetof(struct mrd_limits_conf, max_connections), .lo = 1, .hi = 10000000},
};
static const struct mrd_conf_table limit_table = TABLE(limit_keys, NULL, NULL);

static const struct mrd_conf_key network_keys[] = {
    [NW_CIDR] = {"cidr", set_cidr, offsetof(struct mrd_geo_network_conf, cidr), .flags = MRD_K_REQUIRED},
    [NW_COUNTRY] = {"country", set_code, offsetof(struct mrd_geo_network_conf, country), .lo = 0},
    [NW_CONTINENT] = {"continent", set_code, offsetof(struct mrd_geo_network_conf, continent), .lo = 1},
    [NW_LATITUDE] = {"latitude", mrd_conf_set_double, offsetof(struct mrd_geo_network_conf, latitude), .lo = -90,
                     .hi = 90},
    [NW_LONGITUDE] = {"longitude", mrd_conf_set_double, offsetof(struct mrd_geo_network_conf, longitude), .lo = -180,
                      .hi = 180},
};
static const struct mrd_conf_table network_table = TABLE(network_keys, NULL, network_check);
static const struct mrd_conf_seq network_seq = {sizeof(struct mrd_geo_network_conf), &network_table, NULL};

static const struct mrd_conf_key default_location_keys[] = {
    {"latitude", mrd_conf_set_double, offsetof(struct mrd_geo_conf, default_latitude), .lo = -90, .hi = 90,
     .flags = MRD_K_REQUIRED},
    {"longitude", mrd_conf_set_double, offsetof(struct mrd_geo_conf, default_longitude), .lo = -180, .hi = 180,
     .flags = MRD_K_REQUIRED},
};
static const struct mrd_conf_table default_location_table = TABLE(default_location_keys, default_location_pre, NULL);

static const struct mrd_conf_key geo_keys[] = {
    [G_DATABASE] = {"database", mrd_conf_set_string, offsetof(struct mrd_geo_conf, database), .aux = NULL},
    [G_RELOAD_CHECK] = DUR("reload_check", mrd_geo_conf, reload_check_ms),
    [G_NETWORKS] = {"networks", mrd_conf_set_seq, offsetof(struct mrd_geo_conf, networks),
                    offsetof(struct mrd_geo_conf, n_networks), .aux = &network_seq},
    [G_DEFAULT_LOCATION] = {"default_location", mrd_conf_set_submap, 0, .aux = &default_location_table},
};
static const struct mrd_conf_table geo_table = TABLE(geo_keys, NULL, geo_check);

static const struct mrd_conf_key client_ip_keys[] = {
    {"trusted_proxies", set_cidr_list, offsetof(struct mrd_client_ip_conf, trusted_proxies),
     offsetof(struct mrd_client_ip_conf, n_trusted_proxies), .aux = NULL},
    {"header", set_header_name, offsetof(struct mrd_client_ip_conf, header), .aux = NULL},
};
static const struct mrd_conf_table client_ip_table = TABLE(client_ip_keys, NULL, NULL);

static const struct mrd_conf_key weight_keys[] = {
    {"geography", mrd_conf_set_double, offsetof(struct mrd_scoring_conf, w_geography), .lo = 0, .hi = MRD_UNBOUNDED},
    {"health", mrd_conf_set_double, offsetof(struct mrd_scoring_conf, w_health), .lo = 0, .hi = MRD_UNBOUNDED},
    {"latency", mrd_conf_set_double, offsetof(struct mrd_scoring_conf, w_latency), .lo = 0, .hi = MRD_UNBOUNDED},
    {"cost", mrd_conf_set_double, offsetof(struct mrd_scoring_conf, w_cost), .lo = 0, .hi = MRD_UNBOUNDED},
};
static const struct mrd_conf_table weight_table = TABLE(weight_keys, weights_pre, weights_check);

static const struct mrd_conf_key scoring_keys[] = {
    {"weights", mrd_conf_set_submap, 0, .aux = &weight_table},
    DUR("latency_ceiling", mrd_scoring_conf, latency_ceiling_ms),
};
static const struct mrd_conf_table scoring_table = TABLE(scoring_keys, NULL, NULL);

static const struct mrd_conf_key location_keys[] = {
    {"latitude", mrd_conf_set_double, offsetof(struct mrd_region_conf, latitude), .lo = -90, .hi = 90,
     .flags = MRD_K_REQUIRED},
    {"longitude", mrd_conf_set_double, offsetof(struct mrd_region_conf, longitude), .lo = -180, .hi = 180,
     .flags = MRD_K_REQUIRED},
};
static const struct mrd_conf_table location_table = TABLE(location_keys, NULL, NULL);

static const struct mrd_conf_key health_keys[] = {
    {"path", set_hc_path, offsetof(struct mrd_health_conf, path), .aux = NULL},
    DUR("interval", mrd_health_conf, interval_ms),
    DUR("timeout", mrd_health_conf, timeout_ms),
    {"rise", mrd_conf_set_uint, offsetof(struct mrd_health_conf, rise), .lo = 1, .hi = 1000},
    {"fall", mrd_conf_set_uint, offsetof(struct mrd_health_conf, fall), .lo = 1, .hi = 1000},
    {"expect_status", mrd_conf_set_int, offsetof(struct mrd_health_conf, expect_status), .lo = 100, .hi = 599},
};
static const struct mrd_conf_table health_table = TABLE(health_keys, health_pre, NULL);

static const struct mrd_conf_key uptls_keys[] = {
    [UT_CA] = {"ca", mrd_conf_set_string, offsetof(struct mrd_upstream_tls_conf, ca), .aux = NULL},
    [UT_VERIFY] = {"verify", mrd_conf_set_bool, offsetof(struct mrd_upstream_tls_conf, verify), .aux = NULL},
    [UT_SERVER_NAME] = {"server_name", set_server_name, offsetof(struct mrd_upstream_tls_conf, server_name),
                        .aux = NULL},
    [UT_CERTIFICATE] = {"certificate", mrd_conf_set_submap, offsetof(struct mrd_upstream_tls_conf, certificate),
                        .aux = &cert_table},
    [UT_MIN_VERSION] = {"min_version", set_min_version, offsetof(struct mrd_upstream_tls_conf, min_version),
                        .aux = NULL},
};
static const struct mrd_conf_table uptls_table = TABLE(uptls_keys, uptls_pre, uptls_check);

static const struct mrd_conf_word send_proxy_words[] = {{"v1", 1}, {"v2", 2}, {NULL, 0}};
static const struct mrd_conf_key upstream_keys[] = {
    [U_ADDRESS] = {"address", set_upstream_addr, .flags = MRD_K_REQUIRED},
    [U_WEIGHT] = {"weight", mrd_conf_set_uint, offsetof(struct mrd_upstream_conf, weight), .lo = 1, .hi = 1000},
    [U_SEND_PROXY] = {"send_proxy", mrd_conf_set_word, offsetof(struct mrd_upstream_conf, send_proxy),
                      .aux = send_proxy_words},
};
static const struct mrd_conf_table upstream_table = TABLE(upstream_keys, NULL, upstream_check);

static void
upstream_init(void *elem)
{
    ((struct mrd_upstream_conf *)elem)->weight = 1;
}
static const struct mrd_conf_seq upstream_seq = {sizeof(struct mrd_upstream_conf), &upstream_table, upstream_init};

static const struct mrd_conf_key region_keys[] = {
    [R_NAME] = {"name", set_region_name, offsetof(struct mrd_region_conf, name), .flags = MRD_K_REQUIRED},
    [R_LOCATION] = {"location", mrd_conf_set_submap, 0, .aux = &location_table, .flags = MRD_K_REQUIRED},
    [R_COST] = {"cost", mrd_conf_set_double, offsetof(struct mrd_region_conf, cost), .lo = 0, .hi = MRD_UNBOUNDED,
                .flags = MRD_K_GT},
    [R_CAPACITY_RPS] = {"capacity_rps", mrd_conf_set_u64, offsetof(struct mrd_region_conf, capacity_rps), .lo = 1,
                        .hi = 1000000000},
    [R_CAPACITY_BURST] = {"capacity_burst", mrd_conf_set_u64, offsetof(struct mrd_region_conf, capacity_burst), .lo = 1,
                          .hi = 1000000000},
    [R_FALLBACK] = {"fallback", set_fallback, offsetof(struct mrd_region_conf, fallback), .aux = NULL},
    [R_BALANCE] = {"balance", set_balance, .aux = balance_words},
    [R_RETRIES] = {"retries", mrd_conf_set_uint, offsetof(struct mrd_region_conf, retries), .lo = 0, .hi = 10},
    [R_HEALTH_CHECK] = {"health_check", mrd_conf_set_submap, offsetof(struct mrd_region_conf, health),
                        .aux = &health_table},
    [R_UPSTREAMS] = {"upstreams", mrd_conf_set_seq, offsetof(struct mrd_region_conf, upstreams),
                     offsetof(struct mrd_region_conf, n_upstreams), .aux = &upstream_seq,
                     .flags = MRD_K_REQUIRED | MRD_K_NONEMPTY},
    [R_UPSTREAM_TLS] = {"upstream_tls", mrd_conf_set_submap, offsetof(struct mrd_region_conf, tls),
                        .aux = &uptls_table},
    [R_UPSTREAM_PROTOCOL] = {"upstream_protocol", set_upstream_protocol, .aux = upstream_protocol_words},
};
static const struct mrd_conf_table region_table = TABLE(region_keys, NULL, region_check);

static void
region_init(void *elem)
{
    struct mrd_region_conf *r = elem;

    r->cost = 1.0;
    r->fallback_idx = -1;
    r->balance = MRD_BALANCE_LEAST_CONN;
    r->retries = 2;
    r->health.path = mrd_xstrdup("/healthz");
    r->health.interval_ms = 5000;
    r->health.timeout_ms = 2000;
    r->health.rise = 2;
    r->health.fall = 3;
    r->health.expect_status = 200;
    r->tls.verify = 1;
    r->tls.min_version = 12;
}
static const struct mrd_conf_seq region_seq = {sizeof(struct mrd_region_conf), &region_table, region_init};

static const struct mrd_conf_key match_keys[] = {
    {"continents", set_code_list, offsetof(struct mrd_residency_conf, continents),
     offsetof(struct mrd_residency_conf, n_continents), .lo = 1},
    {"countries", set_code_list, offsetof(struct mrd_residency_conf, countries),
     offsetof(struct mrd_residency_conf, n_countries), .lo = 0},
};
static const struct mrd_conf_table match_table = TABLE(match_keys, NULL, match_check);

static const struct mrd_conf_key residency_keys[] = {
    {"name", mrd_conf_set_string, offsetof(struct mrd_residency_conf, name), .flags = MRD_K_REQUIRED},
    {"match", mrd_conf_set_submap, 0, .aux = &match_table, .flags = MRD_K_REQUIRED},
    {"regions", set_residency_regions, .flags = MRD_K_REQUIRED},
};
static const struct mrd_conf_table residency_table = TABLE(residency_keys, NULL, NULL);
static const struct mrd_conf_seq residency_seq = {sizeof(struct mrd_residency_conf), &residency_table, NULL};

static const struct mrd_conf_key geo_block_keys[] = {
    {"countries", set_code_list, offsetof(struct mrd_policies_conf, block_countries),
     offsetof(struct mrd_policies_conf, n_block_countries), .lo = 0},
    {"status", mrd_conf_set_int, offsetof(struct mrd_policies_conf, block_status), .lo = 100, .hi = 599},
};
static const struct mrd_conf_table geo_block_table = TABLE(geo_block_keys, NULL, NULL);

static const struct mrd_conf_word scope_words[] = {{"instance", 0}, {"cluster", 1}, {NULL, 0}};
static const struct mrd_conf_key rate_keys[] = {
    [RL_RATE] = {"rate", mrd_conf_set_rate, offsetof(struct mrd_policies_conf, client_rate_milli_per_s),
                 .flags = MRD_K_REQUIRED},
    [RL_BURST] = {"burst", mrd_conf_set_u64, offsetof(struct mrd_policies_conf, client_burst), .lo = 1,
                  .hi = 1000000000},
    [RL_SCOPE] = {"scope", mrd_conf_set_word, offsetof(struct mrd_policies_conf, client_rate_cluster),
                  .aux = scope_words},
};
static const struct mrd_conf_table rate_table = TABLE(rate_keys, rate_pre, rate_check);

static const struct mrd_conf_key policy_keys[] = {
    {"residency", mrd_conf_set_seq, offsetof(struct mrd_policies_conf, residency),
     offsetof(struct mrd_policies_conf, n_residency), .aux = &residency_seq},
    {"geo_block", mrd_conf_set_submap, 0, .aux = &geo_block_table},
    {"client_rate_limit", mrd_conf_set_submap, 0, .aux = &rate_table},
};
static const struct mrd_conf_table policy_table = TABLE(policy_keys, NULL, NULL);

static const struct mrd_conf_key response_header_keys[] = {
    {"region", mrd_conf_set_bool, offsetof(struct mrd_config, response_header_region), .aux = NULL},
};
static const struct mrd_conf_table response_header_table = TABLE(response_header_keys, NULL, NULL);

static const struct mrd_conf_word format_words[] = {{"json", 1}, {"text", 0}, {NULL, 0}};
static const struct mrd_conf_key access_log_keys[] = {
    {"path", set_log_path, .aux = NULL},
    {"format", mrd_conf_set_word, offsetof(struct mrd_access_log_conf, json), .aux = format_words},
};
static const struct mrd_conf_table access_log_table = TABLE(access_log_keys, NULL, NULL);

static const struct mrd_conf_word level_words[] = {{"error", 0}, {"warn", 1}, {"info", 2}, {"debug", 3}, {NULL, 0}};
static const struct mrd_conf_key error_log_keys[] = {
    {"path", mrd_conf_set_string, offsetof(struct mrd_error_log_conf, path), .aux = NULL},
    {"level", mrd_conf_set_word, offsetof(struct mrd_error_log_conf, level), .aux = level_words},
};
static const struct mrd_conf_table error_log_table = TABLE(error_log_keys, NULL, NULL);

static const struct mrd_conf_key dns_keys[] = {
    {"resolvers", set_resolvers, .aux = NULL},
    DUR("refresh", mrd_dns_conf, refresh_ms),
    {"required", mrd_conf_set_bool, offsetof(struct mrd_dns_conf, required), .aux = NULL},
    {"hosts", mrd_conf_set_string, offsetof(struct mrd_dns_conf, hosts), .aux = NULL},
};
static const struct mrd_conf_table dns_table = TABLE(dns_keys, NULL, NULL);

enum { RD_ADDRESS, RD_PASSWORD_FILE, RD_DATABASE };
static const struct mrd_conf_key redis_keys[] = {
    [RD_ADDRESS] = {"address", set_redis_address, .flags = MRD_K_REQUIRED},
    [RD_PASSWORD_FILE] = {"password_file", set_password_file, .aux = NULL},
    [RD_DATABASE] = {"database", mrd_conf_set_uint, offsetof(struct mrd_cluster_conf, database), .lo = 0,
                     .hi = 2147483647},
};
static const struct mrd_conf_table redis_table = TABLE(redis_keys, NULL, NULL);

static const struct mrd_conf_key cluster_keys[] = {
    [C_REDIS] = {"redis", mrd_conf_set_submap, 0, .aux = &redis_table, .flags = MRD_K_REQUIRED},
    [C_NAME] = {"name", set_cluster_id, offsetof(struct mrd_cluster_conf, name), .aux = NULL},
    [C_INSTANCE] = {"instance", set_cluster_id, offsetof(struct mrd_cluster_conf, instance), .aux = NULL},
    [C_SYNC_INTERVAL] = {"sync_interval", set_duration_in, offsetof(struct mrd_cluster_conf, sync_interval_ms),
                         .lo = 10, .hi = 10000},
    [C_ON_REDIS_FAILURE] = {"on_redis_failure", set_on_failure, .aux = failure_words},
    [C_TIMEOUT] = {"timeout", set_duration_in, offsetof(struct mrd_cluster_conf, timeout_ms), .lo = 1,
                   .hi = 60000},
};
static const struct mrd_conf_table cluster_table = TABLE(cluster_keys, cluster_pre, cluster_check);

/* ------------------------------------------------------------------------ */
/* cross-references, once everything is read */

static void
check_listeners(struct mrd_conf_ctx *cx)
{
    const struct mrd_config *c = cx->cfg;

    for (size_t i = 0; i < c->n_listeners; i++) {
        const struct mrd_listener_conf *b = &c->listeners[i];
        if (b->address == NULL)
            continue;
        for (size_t j = 0; j < i; j++) {
            const struct mrd_listener_conf *a = &c->listeners[j];
            if (a->address != NULL && a->addrlen == b->addrlen && memcmp(&a->addr, &b->addr, a->addrlen) == 0) {
                mrd_conf_err_at(cx, b->pos.line, b->pos.col,
                                "listeners[%zu].address: %s is already used by listeners[%zu]",
                                i, mrd_conf_show_str(cx, b->address, strlen(b->address)), j);
                break;
            }
        }
        if (c->admin.address != NULL && c->admin.addrlen == b->addrlen &&
            memcmp(&c->admin.addr, &b->addr, b->addrlen) == 0)
            mrd_conf_err_at(cx, b->pos.line, b->pos.col, "listeners[%zu].address: %s is also the admin address", i,
                            mrd_conf_show_str(cx, b->address, strlen(b->address)));
        if (b->proxy_protocol && c->client_ip.n_trusted_proxies == 0)
            mrd_conf_err_at(cx, b->proxy_protocol_pos.line, b->proxy_protocol_pos.col,
                            "listeners[%zu].proxy_protocol: needs client_ip.trusted_proxies (the peers allowed to "
                            "send a PROXY header)", i);
    }
}

static int
region_index(const struct mrd_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_regions; i++)
        if (c->regions[i].name != NULL && strcmp(c->regions[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Report each fallback cycle once, at the fallback of its lowest-indexed region. */
static void
check_cycle(struct mrd_conf_ctx *cx, size_t start)
{
    const struct mrd_config *c = cx->cfg;
    size_t steps = 0, lowest = start, o = 0;
    char chain[400];
    int i = c->regions[start].fallback_idx;

    while (i >= 0 && (size_t)i != start && steps++ < c->n_regions)
        i = c->regions[i].fallback_idx;
    if (i < 0 || (size_t)i != start)
        return;
    for (i = c->regions[start].fallback_idx; (size_t)i != start; i = c->regions[i].fallback_idx)
        lowest = MRD_MIN(lowest, (size_t)i);
    if (lowest != start)
        return;
    i = (int)start;
    do {
        int r = snprintf(chain + o, sizeof(chain) - o, "%s -> ", c->regions[i].name);
        if (r < 0 || (size_t)r >= sizeof(chain) - o)
            break;
        o += (size_t)r;
        i = c->regions[i].fallback_idx;
    } while ((size_t)i != start);
    snprintf(chain + o, sizeof(chain) - o, "%s", c->regions[start].name);
    mrd_conf_err_at(cx, cx->fallback_nodes[start]->line, cx->fallback_nodes[start]->col,
                    "regions[%zu].fallback: fallback cycle: %s", start, chain);
}

static void
check_regions(struct mrd_conf_ctx *cx)
{
    struct mrd_config *c = cx->cfg;

    for (size_t i = 0; i < c->n_regions; i++) {
        struct mrd_region_conf *r = &c->regions[i];
        int first;

        if (r->name != NULL && (first = region_index(c, r->name)) >= 0 && (size_t)first < i)
            mrd_conf_err_at(cx, r->pos.line, r->pos.col,
                            "regions[%zu].name: duplicate region name %s (first at line %u)", i,
                            mrd_conf_show_str(cx, r->name, strlen(r->name)), c->regions[first].pos.line);
        if (r->fallback != NULL) {
            const struct mrd_conf_node *fb = cx->fallback_nodes[i];
            r->fallback_idx = region_index(c, r->fallback);
            if (r->fallback_idx < 0)
                mrd_conf_err_at(cx, fb->line, fb->col, "regions[%zu].fallback: unknown region %s", i,
                                mrd_conf_show(cx, fb));
        }
    }
    for (size_t i = 0; i < c->n_regions; i++)
        if (c->regions[i].fallback_idx >= 0)
            check_cycle(cx, i);
}

static void
check_residency(struct mrd_conf_ctx *cx)
{
    struct mrd_policies_conf *p = &cx->cfg->policies;

    for (size_t i = 0; i < p->n_residency; i++) {
        struct mrd_residency_conf *rr = &p->residency[i];
        const struct mrd_conf_node *list = cx->residency_nodes != NULL ? cx->residency_nodes[i] : NULL;

        for (size_t j = 0; rr->name != NULL && j < i; j++)
            if (p->residency[j].name != NULL && strcmp(p->residency[j].name, rr->name) == 0) {
                /* no position of its own: report at its regions list when known */
                if (list != NULL)
                    mrd_conf_err_at(cx, list->line, list->col, "policies.residency[%zu]: duplicate rule name %s", i,
                                    mrd_conf_show_str(cx, rr->name, strlen(rr->name)));
                break;
            }
        if (list == NULL)
            continue;
        rr->region_idx = mrd_xcalloc(list->n, sizeof(*rr->region_idx));
        rr->n_regions = list->n;
        for (size_t j = 0; j < list->n; j++) {
            const struct mrd_conf_node *item = list->items[j];
            size_t mark = mrd_conf_path_key(cx, "policies.residency");

            mrd_conf_path_idx(cx, i);
            mrd_conf_path_key(cx, "regions");
            mrd_conf_path_idx(cx, j);
            if (mrd_conf_scalar(cx, item) != NULL) {
                rr->region_idx[j] = region_index(cx->cfg, item->str);
                if (rr->region_idx[j] < 0)
                    mrd_conf_bad(cx, item, "unknown region %s", mrd_conf_show(cx, item));
            }
            mrd_conf_path_pop(cx, mark);
        }
    }
}

enum {
    T_WORKERS,
    T_USER,
    T_LISTENERS,
    T_ADMIN,
    T_TIMEOUTS,
    T_LIMITS,
    T_GEO,
    T_CLIENT_IP,
    T_SCORING,
    T_REGIONS,
    T_POLICIES,
    T_RESPONSE_HEADERS,
    T_ACCESS_LOG,
    T_ERROR_LOG,
    T_DNS,
    T_CLUSTER
};

static void
top_check(struct mrd_conf_ctx *cx, const struct mrd_conf_node *map, void *obj, const struct mrd_conf_node **vals)
{
    check_listeners(cx);
    if (vals[T_CLUSTER] != NULL) /* the position of the key, "cluster:" */
        for (size_t i = 1; i < map->n; i += 2)
            if (map->items[i] == vals[T_CLUSTER])
                pos_of(&cx->cfg->cluster.pos, map->items[i - 1]);
    /* not when a cluster block is there but wrong: that is reported already */
    if (cx->rate_scope != NULL && vals[T_CLUSTER] == NULL)
        mrd_conf_err_at(cx, cx->rate_scope->line, cx->rate_scope->col,
                        "policies.client_rate_limit: scope: cluster needs a cluster block");
    /* without a readable regions list every reference would be reported too */
    if (vals[T_REGIONS] != NULL && vals[T_REGIONS]->type == MRD_N_SEQ) {
        check_regions(cx);
        check_residency(cx);
    }
}

static const struct mrd_conf_key top_keys[] = {
    [T_WORKERS] = {"workers", set_workers, .lo = 1, .hi = 1024},
    [T_USER] = {"user", mrd_conf_set_string, offsetof(struct mrd_config, user), .aux = NULL},
    [T_LISTENERS] = {"listeners", mrd_conf_set_seq, offsetof(struct mrd_config, listeners),
                     offsetof(struct mrd_config, n_listeners), .aux = &listener_seq,
                     .flags = MRD_K_REQUIRED | MRD_K_NONEMPTY},
    [T_ADMIN] = {"admin", mrd_conf_set_submap, offsetof(struct mrd_config, admin), .aux = &admin_table},
    [T_TIMEOUTS] = {"timeouts", mrd_conf_set_submap, offsetof(struct mrd_config, timeouts), .aux = &timeout_table},
    [T_LIMITS] = {"limits", mrd_conf_set_submap, offsetof(struct mrd_config, limits), .aux = &limit_table},
    [T_GEO] = {"geo", mrd_conf_set_submap, offsetof(struct mrd_config, geo), .aux = &geo_table},
    [T_CLIENT_IP] = {"client_ip", mrd_conf_set_submap, offsetof(struct mrd_config, client_ip), .aux = &client_ip_table},
    [T_SCORING] = {"scoring", mrd_conf_set_submap, offsetof(struct mrd_config, scoring), .aux = &scoring_table},
    [T_REGIONS] = {"regions", mrd_conf_set_seq, offsetof(struct mrd_config, regions),
                   offsetof(struct mrd_config, n_regions),
                   .aux = &region_seq, .flags = MRD_K_REQUIRED | MRD_K_NONEMPTY},
    [T_POLICIES] = {"policies", mrd_conf_set_submap, offsetof(struct mrd_config, policies), .aux = &policy_table},
    [T_RESPONSE_HEADERS] = {"response_headers", mrd_conf_set_submap, 0, .aux = &response_header_table},
    [T_ACCESS_LOG] = {"access_log", mrd_conf_set_submap, offsetof(struct mrd_config, access_log),
                      .aux = &access_log_table},
    [T_ERROR_LOG] = {"error_log", mrd_conf_set_submap, offsetof(struct mrd_config, error_log),
                     .aux = &error_log_table},
    [T_DNS] = {"dns", mrd_conf_set_submap, offsetof(struct mrd_config, dns), .aux = &dns_table},
    [T_CLUSTER] = {"cluster", mrd_conf_set_submap, offsetof(struct mrd_config, cluster), .aux = &cluster_table},
};
const struct mrd_conf_table mrd_conf_top_table = TABLE(top_keys, NULL, top_check);

