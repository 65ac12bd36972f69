/*
 * fuzz_config.c: libFuzzer target for the configuration loader and its
 * validation: mrd_config_parse(), the buffer entry point that
 * mrd_config_load() (and so `meridian -t` and every reload) calls after
 * reading the file. The input is the YAML text, in an exact-size copy.
 *
 * Invariants:
 *  - either a configuration and no diagnostic, or no configuration and at
 *    least one diagnostic (the diag starts with one, left from a pretend
 *    earlier file, which must stay untouched);
 *  - every diagnostic is "fuzz.yaml:LINE:COL: message" with LINE >= 1 and
 *    within the input's line count (libyaml's line breaks: LF, CR, NEL, LS,
 *    PS), COL >= 1 and at most the longest line's bytes + 1, a non-empty
 *    single-line message; they come sorted by position;
 *  - parsing the same text again gives the same diagnostics (no hidden
 *    state);
 *  - a valid configuration holds what the schema promises: listeners and
 *    regions present, weights normalised (each in [0,1], sum ~1), fallback
 *    indexes in range, naming the region they point to, with acyclic chains;
 *    region names 1-63 of A-Za-z0-9._- and unique; coordinates, weights,
 *    durations, codes and CIDRs in range; a cluster block with one kind of
 *    Redis address, its bounds, and scope: cluster only with it;
 *  - freeing releases everything (LeakSanitizer at exit of each run).
 * Deep nesting and aliases are rejected early, so the run's -timeout also
 * guards against YAML bombs.
 */
#include <math.h>

#include "meridian/config.h"
#include "meridian/dns.h"

#include "fuzz_pure_common.h"

#define FILE_NAME "fuzz.yaml"
#define MAX_DURATION_MS 31536000000ull

struct shape {
    unsigned lines;
    size_t longest;
};

/* line count and longest line in bytes, breaking where libyaml does */
static struct shape
shape_of(const unsigned char *s, size_t n)
{
    struct shape sh = {1, 0};
    size_t cur = 0;

    for (size_t i = 0; i < n; i++) {
        size_t brk = 0;
        if (s[i] == '\n' || s[i] == '\r')
            brk = 1;
        else if (s[i] == 0xc2 && i + 1 < n && s[i + 1] == 0x85)
            brk = 2;
        else if (s[i] == 0xe2 && i + 2 < n && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9))
            brk = 3;
        if (brk) {
            sh.lines++;
            if (cur > sh.longest)
                sh.longest = cur;
            cur = 0;
            i += brk - 1;
        } else {
            cur++;
        }
    }
    if (cur > sh.longest)
        sh.longest = cur;
    return sh;
}

static void
parse_pos(const char *m, const struct shape *sh, unsigned long *line, unsigned long *col)
{
    const char *p = m + strlen(FILE_NAME ":");
    char *end;

    REQUIRE(strncmp(m, FILE_NAME ":", strlen(FILE_NAME ":")) == 0);
    REQUIRE(*p >= '1' && *p <= '9');
    *line = strtoul(p, &end, 10);
    REQUIRE(*end == ':');
    p = end + 1;
    REQUIRE(*p >= '1' && *p <= '9');
    *col = strtoul(p, &end, 10);
    REQUIRE(end[0] == ':' && end[1] == ' ' && end[2] != '\0');
    REQUIRE(strchr(m, '\n') == NULL);
    REQUIRE(*line >= 1 && *line <= sh->lines);
    REQUIRE(*col >= 1 && *col <= sh->longest + 1);
}

static int
valid_name(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    return n >= 1 && n <= 63 &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* cluster.name, cluster.instance: they go inside a Redis hash tag */
static int
cluster_id_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    return n >= 1 && n <= 64 &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

static int
valid_code(const char c[3], int upper_only)
{
    (void)upper_only;
    return c[2] == '\0' && ((c[0] == '\0' && c[1] == '\0') || (c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z'));
}

static int
dur_ok(uint64_t ms)
{
    return ms > 0 && ms <= MAX_DURATION_MS;
}

static void
check_cidr_ok(const struct mrd_cidr *c)
{
    unsigned max = c->ip.family == AF_INET ? 32 : 128;

    check_ip_shape(&c->ip);
    REQUIRE(c->prefix <= max);
    for (unsigned i = c->prefix; i < max; i++)
        REQUIRE(bit_of(c->ip.bytes, i) == 0);
}

static void
check_config(const struct mrd_config *c)
{
    const struct mrd_scoring_conf *w = &c->scoring;
    double sum = w->w_geography + w->w_health + w->w_latency + w->w_cost;

    REQUIRE(c->file != NULL && strcmp(c->file, FILE_NAME) == 0);
    REQUIRE(c->n_listeners >= 1 && c->listeners != NULL);
    REQUIRE(c->n_regions >= 1 && c->regions != NULL);
    REQUIRE(fabs(sum - 1.0) < 1e-9);
    REQUIRE(w->w_geography >= 0 && w->w_geography <= 1 && w->w_health >= 0 && w->w_health <= 1);
    REQUIRE(w->w_latency >= 0 && w->w_latency <= 1 && w->w_cost >= 0 && w->w_cost <= 1);
    REQUIRE(dur_ok(w->latency_ceiling_ms));
    REQUIRE(dur_ok(c->timeouts.connect_ms) && dur_ok(c->timeouts.request_header_ms));
    REQUIRE(dur_ok(c->timeouts.upstream_response_ms) && dur_ok(c->timeouts.idle_ms) && dur_ok(c->timeouts.shutdown_ms));
    REQUIRE(c->limits.max_header_bytes >= 1024 && c->limits.max_connections >= 1);
    REQUIRE(c->client_ip.header != NULL && c->client_ip.header[0] != '\0');
    for (size_t i = 0; i < c->client_ip.n_trusted_proxies; i++)
        check_cidr_ok(&c->client_ip.trusted_proxies[i]);
    if (c->admin.enabled) {
        REQUIRE(c->admin.address != NULL && c->admin.addrlen > 0);
        for (const char *p = c->admin.token; p != NULL && *p; p++)
            REQUIRE(*p > 0x20 && *p < 0x7f);
        REQUIRE(c->admin.token == NULL || c->admin.token[0] != '\0');
    }

    for (size_t i = 0; i < c->n_listeners; i++) {
        const struct mrd_listener_conf *l = &c->listeners[i];
        REQUIRE(l->address != NULL && l->addrlen > 0);
        REQUIRE(l->addr.ss_family == AF_INET || l->addr.ss_family == AF_INET6);
        REQUIRE(l->protocols != 0 && (l->protocols & ~7u) == 0);
        REQUIRE(l->n_alpn >= 1 && l->n_alpn <= 3);
        REQUIRE(l->tls_min_version == 12 || l->tls_min_version == 13);
        if (l->tls)
            REQUIRE(l->n_certs >= 1);
        for (size_t j = 0; j < l->n_certs; j++)
            REQUIRE(l->certs[j].cert != NULL && l->certs[j].key != NULL);
        /* no two listeners, nor a listener and the admin API, on one address */
        for (size_t j = 0; j < i; j++)
            REQUIRE(!(c->listeners[j].addrlen == l->addrlen && memcmp(&c->listeners[j].addr, &l->addr, l->addrlen) == 0));
        if (c->admin.enabled)
            REQUIRE(!(c->admin.addrlen == l->addrlen && memcmp(&c->admin.addr, &l->addr, l->addrlen) == 0));
    }

    REQUIRE(dur_ok(c->dns.refresh_ms) && c->dns.hosts != NULL && c->dns.hosts[0] != '\0');
    if (c->cluster.enabled) {
        const struct mrd_cluster_conf *cl = &c->cluster;
        REQUIRE(cl->address != NULL && (cl->host == NULL) != (cl->unix_path == NULL));
        REQUIRE(cl->host == NULL || (cl->host[0] != '\0' && cl->port >= 1 && cl->port <= 65535));
        REQUIRE(cl->unix_path == NULL || (cl->unix_path[0] == '/' && cl->port == 0));
        REQUIRE((cl->password == NULL) == (cl->password_file == NULL));
        REQUIRE(cl->password == NULL || cl->password[0] != '\0');
        REQUIRE(cl->database <= 2147483647u);
        REQUIRE(cluster_id_ok(cl->name) && (cl->instance == NULL || cluster_id_ok(cl->instance)));
        REQUIRE(cl->sync_interval_ms >= 10 && cl->sync_interval_ms <= 10000);
        REQUIRE(cl->timeout_ms >= 1 && cl->timeout_ms <= 60000);
        REQUIRE(cl->on_failure == MRD_CLUSTER_LOCAL || cl->on_failure == MRD_CLUSTER_OPEN);
    } else {
        REQUIRE(c->cluster.address == NULL && c->cluster.name == NULL && !c->policies.client_rate_cluster);
    }
    REQUIRE(c->policies.client_rate_cluster == 0 || c->policies.client_rate_cluster == 1);
    for (size_t i = 0; i < c->dns.n_resolvers; i++)
        REQUIRE(c->dns.resolvers[i].addrlen > 0 && c->dns.resolvers[i].address != NULL);
    for (size_t i = 0; i < c->n_regions; i++) {
        const struct mrd_region_conf *r = &c->regions[i];
        REQUIRE(valid_name(r->name));
        for (size_t j = 0; j < i; j++)
            REQUIRE(strcmp(c->regions[j].name, r->name) != 0);
        REQUIRE(r->latitude >= -90 && r->latitude <= 90 && r->longitude >= -180 && r->longitude <= 180);
        REQUIRE(r->cost > 0 && isfinite(r->cost));
        REQUIRE(r->retries <= 10);
        REQUIRE(r->balance == MRD_BALANCE_LEAST_CONN || r->balance == MRD_BALANCE_ROUND_ROBIN ||
                r->balance == MRD_BALANCE_P2C_EWMA);
        REQUIRE(r->n_upstreams >= 1);
        for (size_t j = 0; j < r->n_upstreams; j++) {
            const struct mrd_upstream_conf *u = &r->upstreams[j];
            const char *why;
            REQUIRE(u->weight >= 1 && u->weight <= 1000);
            /* an IP literal, or a valid lower-case host name with a port */
            REQUIRE((u->addrlen > 0) != (u->host != NULL));
            if (u->host != NULL) {
                REQUIRE(u->port >= 1 && mrd_hostname_valid(u->host, strlen(u->host), &why));
                for (const char *h = u->host; *h; h++)
                    REQUIRE(!(*h >= 'A' && *h <= 'Z'));
            }
        }
        if (r->health.enabled) {
            REQUIRE(r->health.path != NULL && r->health.path[0] == '/');
            REQUIRE(dur_ok(r->health.interval_ms) && dur_ok(r->health.timeout_ms));
            REQUIRE(r->health.rise >= 1 && r->health.fall >= 1);
            REQUIRE(r->health.expect_status >= 100 && r->health.expect_status <= 599);
        }
        /* fallback: in range, names its target, and the chain ends */
        if (r->fallback == NULL) {
            REQUIRE(r->fallback_idx == -1);
        } else {
            REQUIRE(r->fallback_idx >= 0 && (size_t)r->fallback_idx < c->n_regions);
            REQUIRE(strcmp(c->regions[r->fallback_idx].name, r->fallback) == 0);
        }
        int k = (int)i;
        size_t steps = 0;
        while (k >= 0 && steps <= c->n_regions) {
            k = c->regions[k].fallback_idx;
            steps++;
        }
        REQUIRE(k == -1); /* acyclic: at most n_regions hops */
    }

    for (size_t i = 0; i < c->geo.n_networks; i++) {
        const struct mrd_geo_network_conf *nw = &c->geo.networks[i];
        check_cidr_ok(&nw->cidr);
        REQUIRE(valid_code(nw->country, 1) && valid_code(nw->continent, 1));
        if (nw->has_location)
            REQUIRE(nw->latitude >= -90 && nw->latitude <= 90 && nw->longitude >= -180 && nw->longitude <= 180);
    }
    if (c->geo.has_default_location)
        REQUIRE(c->geo.default_latitude >= -90 && c->geo.default_latitude <= 90 &&
                c->geo.default_longitude >= -180 && c->geo.default_longitude <= 180);

    const struct mrd_policies_conf *p = &c->policies;
    for (size_t i = 0; i < p->n_residency; i++) {
        const struct mrd_residency_conf *rr = &p->residency[i];
        REQUIRE(rr->name != NULL);
        REQUIRE(rr->n_regions >= 1);
        for (size_t j = 0; j < rr->n_regions; j++)
            REQUIRE(rr->region_idx[j] >= 0 && (size_t)rr->region_idx[j] < c->n_regions);
        for (size_t j = 0; j < rr->n_continents; j++)
            REQUIRE(valid_code(rr->continents[j], 1) && rr->continents[j][0] != '\0');
        for (size_t j = 0; j < rr->n_countries; j++)
            REQUIRE(valid_code(rr->countries[j], 1) && rr->countries[j][0] != '\0');
    }
    for (size_t j = 0; j < p->n_block_countries; j++)
        REQUIRE(valid_code(p->block_countries[j], 1) && p->block_countries[j][0] != '\0');
    REQUIRE(p->block_status >= 100 && p->block_status <= 599);
    if (p->client_rate_enabled)
        REQUIRE(p->client_rate_milli_per_s > 0 && p->client_burst >= 1);
    REQUIRE(c->error_log.level >= 0 && c->error_log.level <= 3);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    struct mrd_diag d, d2;
    struct mrd_config *c = (struct mrd_config *)&d, *c2 = NULL;
    struct shape sh = shape_of(data, size);
    int rc, rc2;

    REQUIRE(buf != NULL);
    memcpy(buf, data, size);
    mrd_diag_init(&d);
    mrd_diag_add(&d, "earlier.yaml", 3, 4, "an earlier problem");
    rc = mrd_config_parse(buf, size, FILE_NAME, &c, &d);
    REQUIRE(d.n >= 1 && strcmp(d.msgs[0], "earlier.yaml:3:4: an earlier problem") == 0);
    if (rc == 0) {
        REQUIRE(c != NULL && d.n == 1);
        check_config(c);
    } else {
        REQUIRE(rc == -1 && c == NULL && d.n >= 2);
    }
    unsigned long pl = 0, pc = 0;
    for (size_t i = 1; i < d.n; i++) {
        unsigned long line, col;
        parse_pos(d.msgs[i], &sh, &line, &col);
        REQUIRE(line > pl || (line == pl && col >= pc));
        pl = line;
        pc = col;
    }

    /* the same again, straight into an empty diag */
    mrd_diag_init(&d2);
    rc2 = mrd_config_parse(buf, size, FILE_NAME, &c2, &d2);
    REQUIRE(rc2 == rc && (c2 != NULL) == (c != NULL) && d2.n == d.n - 1);
    for (size_t i = 0; i < d2.n; i++)
        REQUIRE(strcmp(d2.msgs[i], d.msgs[i + 1]) == 0);

    mrd_config_free(c);
    mrd_config_free(c2);
    mrd_diag_dispose(&d);
    mrd_diag_dispose(&d2);
    free(buf);
    return 0;
}
