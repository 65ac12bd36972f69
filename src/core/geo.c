/*
 * geo.c: client location (SPEC 3.1) and great-circle distance (SPEC 3.3).
 * geo.networks become two path-compressed binary tries (IPv4, IPv6) for the
 * longest matching prefix; the MaxMind database is memory-mapped by
 * libmaxminddb and read with MMDB_aget_value. The tries are immutable after
 * mrd_geo_new(); the database is a reference-counted version behind an
 * atomic pointer that mrd_geo_db_check() replaces when the file is replaced
 * (see geo.h), so lookups need no locks. No logging, no sockets.
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <maxminddb.h>

#include "meridian/common.h"
#include "meridian/config.h"
#include "meridian/geo.h"

#define DEG_TO_RAD (3.14159265358979323846 / 180.0)
#define NO_ENTRY (-1)

/* a node of the path-compressed trie: its whole prefix (key, bits beyond
 * depth zero) and length; children index the node array, 0 = none. 32 bytes:
 * two to a cache line. */
struct lpm_node {
    uint64_t key[2];
    uint32_t child[2];
    int32_t best; /* entry of the longest prefix covering this node (itself
                   * or an ancestor): index into mrd_geo.entries or NO_ENTRY */
    uint32_t depth;
};

struct lpm {
    struct lpm_node *nodes; /* [0] is the root, /0 */
    size_t n;
    unsigned max_bits; /* 32 or 128 */
    uint64_t mask[129][2]; /* prefix_mask() of every length, for lookups */
};

/* what a geo.networks entry says, copied out of the configuration */
struct geo_entry {
    char country[3];
    char continent[3];
    int has_location;
    double latitude, longitude;
};

/* which file a database version was opened from */
struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    time_t mtime_s;
    long mtime_ns;
};

/* one opened version of geo.database */
struct geo_db {
    atomic_uint readers; /* lookups using it now */
    int closed;          /* mmdb closed (retired and drained); main thread only */
    int retired;
    MMDB_s mmdb;
    uint64_t epoch;
    uint64_t build_epoch;
    time_t loaded_at;
    char type[64];
    struct file_id id;
    struct geo_db *next; /* every version this table ever opened, newest first */
};

struct mrd_geo {
    struct lpm v4, v6;
    struct geo_entry *entries;
    size_t n_entries;
    char *path; /* geo.database, NULL without */
    _Atomic(struct geo_db *) cur;
    struct geo_db *versions;
    int have_failed; /* failed_id is a file that did not open: do not retry it */
    struct file_id failed_id;
    int missing; /* the file was gone at the last check (reported) */
    int has_default;
    double default_latitude, default_longitude;
};

/* process-wide, so that a cache keyed by epoch never confuses two tables */
static atomic_uint_fast64_t next_epoch = 1;

static _Thread_local char err_buf[1024];

/* ---- pure geo math ---- */

double
mrd_haversine_km(double lat1, double lon1, double lat2, double lon2)
{
    double p1 = lat1 * DEG_TO_RAD, p2 = lat2 * DEG_TO_RAD;
    double sdp = sin((p2 - p1) / 2), sdl = sin((lon2 - lon1) * DEG_TO_RAD / 2);
    double a = sdp * sdp + cos(p1) * cos(p2) * sdl * sdl;

    /* rounding can push a a hair outside [0, 1] near antipodes */
    if (a > 1)
        a = 1;
    if (a < 0)
        a = 0;
    return 2 * MRD_EARTH_RADIUS_KM * asin(sqrt(a));
}

double
mrd_geo_factor(double d_km)
{
    double g = 1 - d_km / MRD_GEO_HALF_CIRCUMFERENCE_KM;

    if (!(g > 0)) /* also NaN */
        return 0;
    return g > 1 ? 1 : g;
}

const char *
mrd_geo_source_name(enum mrd_geo_source s)
{
    switch (s) {
    case MRD_GEO_NETWORK:
        return "network";
    case MRD_GEO_DATABASE:
        return "database";
    case MRD_GEO_DEFAULT:
        return "default";
    case MRD_GEO_COUNTRY:
        return "country";
    case MRD_GEO_UNKNOWN:
        break;
    }
    return "unknown";
}

/* ---- longest-prefix match ----
 *
 * Built in two steps. First a plain binary trie, one node per prefix bit
 * (build_trie, thrown away afterwards). Then its chains of single-child nodes
 * without an entry are collapsed into a path-compressed trie (struct lpm):
 * every node keeps its whole prefix as a 128-bit key (masks by length come
 * from a small table), so a lookup checks a collapsed chain in one masked
 * compare and visits about
 * log2(networks) nodes plus the nesting depth, instead of up to 128. */

/* scaffolding: children index the node array, 0 = none (the root, index 0,
 * is nobody's child) */
struct build_node {
    uint32_t child[2];
    int32_t entry;
};

struct build_trie {
    struct build_node *nodes;
    size_t n, cap;
};

static inline unsigned
ip_bit(const uint8_t *bytes, unsigned i)
{
    return (bytes[i >> 3] >> (7 - (i & 7))) & 1u;
}

static uint32_t
build_add_node(struct build_trie *t)
{
    if (t->n == t->cap) {
        t->cap = t->cap == 0 ? 64 : t->cap * 2;
        t->nodes = mrd_xrealloc(t->nodes, t->cap * sizeof(*t->nodes));
    }
    t->nodes[t->n].child[0] = t->nodes[t->n].child[1] = 0;
    t->nodes[t->n].entry = NO_ENTRY;
    return (uint32_t)t->n++;
}

/* Mark the node for c's prefix with entry, unless an earlier network with
 * the same prefix already did (first listed wins). */
static void
build_insert(struct build_trie *t, const struct mrd_cidr *c, unsigned max_bits, int32_t entry)
{
    uint32_t node = 0;

    for (unsigned i = 0; i < c->prefix && i < max_bits; i++) {
        unsigned b = ip_bit(c->ip.bytes, i);
        if (t->nodes[node].child[b] == 0) {
            uint32_t n = build_add_node(t); /* may move t->nodes */
            t->nodes[node].child[b] = n;
        }
        node = t->nodes[node].child[b];
    }
    if (t->nodes[node].entry == NO_ENTRY)
        t->nodes[node].entry = entry;
}

/* The address as two host-order words, most significant bit first; IPv4
 * fills the top 32 bits. */
static inline void
ip_words(const struct mrd_ip *ip, uint64_t w[2])
{
    unsigned n = ip->family == AF_INET ? 4 : 16;

    w[0] = w[1] = 0;
    for (unsigned i = 0; i < n; i++)
        w[i >> 3] |= (uint64_t)ip->bytes[i] << (56 - 8 * (i & 7));
}

static inline unsigned
word_bit(const uint64_t w[2], unsigned i)
{
    return (unsigned)(w[i >> 6] >> (63 - (i & 63))) & 1u;
}

static void
set_word_bit(uint64_t w[2], unsigned i, unsigned b)
{
    uint64_t m = (uint64_t)1 << (63 - (i & 63));

    w[i >> 6] = b ? (w[i >> 6] | m) : (w[i >> 6] & ~m);
}

/* mask of the first `bits` bits of a 128-bit word pair */
static uint64_t
prefix_mask(unsigned bits, unsigned word)
{
    unsigned in_word = bits > 64 * word ? bits - 64 * word : 0;

    if (in_word == 0)
        return 0;
    if (in_word >= 64)
        return ~(uint64_t)0;
    return ~(uint64_t)0 << (64 - in_word);
}

/* Copy the subtree of build node idx (at prefix length depth, prefix bits in
 * key, inside a prefix whose entry is `inherited`) into t, skipping
 * entry-less single-child chains. Returns its index in t. t->nodes is sized
 * by the caller for the worst case, so it never moves. Recursion depth is at
 * most max_bits + 1. */
static uint32_t
compress(struct lpm *t, const struct build_trie *b, uint32_t idx, unsigned depth, uint64_t key[2], int32_t inherited,
         int is_root)
{
    const struct build_node *n = &b->nodes[idx];
    struct lpm_node *out;
    uint32_t me;

    while (!is_root && n->entry == NO_ENTRY && (n->child[0] == 0) != (n->child[1] == 0)) {
        unsigned bit = n->child[1] != 0;
        set_word_bit(key, depth++, bit);
        n = &b->nodes[n->child[bit]];
    }
    me = (uint32_t)t->n++;
    out = &t->nodes[me];
    out->depth = depth;
    /* precomputed so that a lookup needs no data-dependent branch per node */
    out->best = n->entry != NO_ENTRY ? n->entry : inherited;
    for (unsigned w = 0; w < 2; w++)
        out->key[w] = key[w] & prefix_mask(depth, w);
    for (unsigned bit = 0; bit < 2; bit++) {
        uint32_t child = 0;
        if (n->child[bit] != 0) {
            set_word_bit(key, depth, bit);
            child = compress(t, b, n->child[bit], depth + 1, key, t->nodes[me].best, 0);
        }
        t->nodes[me].child[bit] = child;
    }
    return me;
}

static void
lpm_build(struct lpm *t, const struct mrd_geo_conf *conf, int family)
{
    struct build_trie b = {0};
    unsigned max_bits = family == AF_INET ? 32 : 128;
    uint64_t key[2] = {0, 0};

    build_add_node(&b);
    for (size_t i = 0; i < conf->n_networks; i++)
        if (conf->networks[i].cidr.ip.family == family)
            build_insert(&b, &conf->networks[i].cidr, max_bits, (int32_t)i);
    t->max_bits = max_bits;
    for (unsigned d = 0; d <= 128; d++) {
        t->mask[d][0] = prefix_mask(d, 0);
        t->mask[d][1] = prefix_mask(d, 1);
    }
    t->nodes = mrd_xmalloc(b.n * sizeof(*t->nodes)); /* compression never adds nodes */
    t->n = 0;
    compress(t, &b, 0, 0, key, NO_ENTRY, 1);
    free(b.nodes);
}

/* The entry of the longest prefix containing ip, or NO_ENTRY: the `best` of
 * the deepest node whose key matches (a mismatch means no deeper prefix can
 * match either). */
static int32_t
lpm_lookup(const struct lpm *t, const struct mrd_ip *ip)
{
    const struct lpm_node *nodes = t->nodes;
    int32_t best = NO_ENTRY;
    uint64_t a[2];
    uint32_t i = 0;

    ip_words(ip, a);
    for (;;) {
        const struct lpm_node *n = &nodes[i];
        const uint64_t *m = t->mask[n->depth];
        if ((((a[0] ^ n->key[0]) & m[0]) | ((a[1] ^ n->key[1]) & m[1])) != 0)
            break;
        best = n->best;
        if (n->depth >= t->max_bits)
            break;
        i = n->child[word_bit(a, n->depth)];
        if (i == 0)
            break;
    }
    return best;
}

/* ---- MaxMind database ---- */

/* A two-letter code from the database, upper-cased; anything else is
 * treated as absent. Returns 1 when out was set. */
static int
db_code(MMDB_entry_s *entry, const char *const *path, char out[3])
{
    MMDB_entry_data_s d;

    if (MMDB_aget_value(entry, &d, path) != MMDB_SUCCESS || !d.has_data || d.type != MMDB_DATA_TYPE_UTF8_STRING ||
        d.data_size != 2)
        return 0;
    for (int i = 0; i < 2; i++) {
        char ch = d.utf8_string[i];
        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        if (ch < 'A' || ch > 'Z')
            return 0;
        out[i] = ch;
    }
    out[2] = '\0';
    return 1;
}

static int
db_degrees(MMDB_entry_s *entry, const char *const *path, double limit, double *out)
{
    MMDB_entry_data_s d;
    double v;

    if (MMDB_aget_value(entry, &d, path) != MMDB_SUCCESS || !d.has_data)
        return 0;
    if (d.type == MMDB_DATA_TYPE_DOUBLE)
        v = d.double_value;
    else if (d.type == MMDB_DATA_TYPE_FLOAT)
        v = d.float_value;
    else
        return 0;
    if (!(v >= -limit && v <= limit)) /* also rejects NaN */
        return 0;
    *out = v;
    return 1;
}

/* Fill what *out still lacks (identity when !*have_id, coordinates when
 * !*have_xy) from the database record for ip. A miss or an error changes
 * nothing. */
static void
db_locate(const MMDB_s *db, const struct mrd_ip *ip, struct mrd_location *out, int *have_id, int *have_xy)
{
    static const char *const country_path[] = {"country", "iso_code", NULL};
    static const char *const registered_path[] = {"registered_country", "iso_code", NULL};
    static const char *const continent_path[] = {"continent", "code", NULL};
    static const char *const lat_path[] = {"location", "latitude", NULL};
    static const char *const lon_path[] = {"location", "longitude", NULL};
    struct sockaddr_storage ss;
    MMDB_lookup_result_s res;
    int mmdb_err = MMDB_SUCCESS;

    memset(&ss, 0, sizeof(ss));
    if (ip->family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, ip->bytes, 4);
    } else if (ip->family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, ip->bytes, 16);
    } else {
        return;
    }
    /* an IPv6 address in an IPv4-only database is an error: a miss here */
    res = MMDB_lookup_sockaddr(db, (const struct sockaddr *)&ss, &mmdb_err);
    if (mmdb_err != MMDB_SUCCESS || !res.found_entry)
        return;

    if (!*have_id) {
        char country[3] = "", continent[3] = "";
        int c1 = db_code(&res.entry, country_path, country) || db_code(&res.entry, registered_path, country);
        int c2 = db_code(&res.entry, continent_path, continent);
        if (c1 || c2) {
            memcpy(out->country, country, sizeof(country));
            memcpy(out->continent, continent, sizeof(continent));
            *have_id = 1;
        }
    }
    if (!*have_xy) {
        double lat, lon;
        if (db_degrees(&res.entry, lat_path, 90, &lat) && db_degrees(&res.entry, lon_path, 180, &lon)) {
            out->latitude = lat;
            out->longitude = lon;
            out->source = MRD_GEO_DATABASE;
            *have_xy = 1;
        }
    }
}

/* ---- database versions ---- */

static void
file_id_of(const struct stat *st, struct file_id *id)
{
    memset(id, 0, sizeof(*id));
    id->dev = st->st_dev;
    id->ino = st->st_ino;
    id->size = st->st_size;
    id->mtime_s = st->st_mtim.tv_sec;
    id->mtime_ns = st->st_mtim.tv_nsec;
}

static int
file_id_eq(const struct file_id *a, const struct file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_s == b->mtime_s &&
           a->mtime_ns == b->mtime_ns;
}

/* Open path as a new version (not yet published). NULL and msg on failure:
 * the file does not open as a MaxMind DB, or its search tree does not
 * answer a probe lookup. */
static struct geo_db *
db_open(const char *path, char *msg, size_t msglen)
{
    struct geo_db *d = mrd_xcalloc(1, sizeof(*d));
    struct stat st;
    int rc, saved_errno, gai_err = 0, mmdb_err = MMDB_SUCCESS;

    /* identity first: a file renamed over path after this stat is seen as a
     * change by the next check and opened again, which is harmless */
    if (stat(path, &st) == 0)
        file_id_of(&st, &d->id);
    errno = 0; /* MMDB_open leaves errno set by the failing syscall */
    rc = MMDB_open(path, MMDB_MODE_MMAP, &d->mmdb);
    saved_errno = errno;
    if (rc != MMDB_SUCCESS) {
        if ((rc == MMDB_FILE_OPEN_ERROR || rc == MMDB_IO_ERROR) && saved_errno != 0)
            snprintf(msg, msglen, "cannot open geo database \"%s\": %s: %s", path, MMDB_strerror(rc),
                     strerror(saved_errno));
        else
            snprintf(msg, msglen, "cannot open geo database \"%s\": %s", path, MMDB_strerror(rc));
        free(d);
        return NULL;
    }
    /* MMDB_open checks the metadata; a probe walks the search tree once */
    (void)MMDB_lookup_string(&d->mmdb, d->mmdb.metadata.ip_version == 6 ? "::1.2.3.4" : "1.2.3.4", &gai_err,
                             &mmdb_err);
    if (d->mmdb.metadata.node_count == 0 || mmdb_err != MMDB_SUCCESS) {
        snprintf(msg, msglen, "cannot open geo database \"%s\": %s", path,
                 mmdb_err != MMDB_SUCCESS ? MMDB_strerror(mmdb_err) : "empty search tree");
        MMDB_close(&d->mmdb);
        free(d);
        return NULL;
    }
    atomic_init(&d->readers, 0);
    d->epoch = atomic_fetch_add(&next_epoch, 1);
    d->build_epoch = d->mmdb.metadata.build_epoch;
    d->loaded_at = time(NULL);
    snprintf(d->type, sizeof(d->type), "%s",
             d->mmdb.metadata.database_type != NULL ? d->mmdb.metadata.database_type : "");
    return d;
}

/* The current version, pinned (or NULL without a database). Lock-free: the
 * pointer is read again after the count went up, and seq_cst orders that
 * against the swap's exchange and the reaper's read of the count, so a
 * version the reaper saw unused can no longer be pinned by anyone. */
static struct geo_db *
db_pin(const struct mrd_geo *g)
{
    for (;;) {
        struct geo_db *d = atomic_load(&((struct mrd_geo *)g)->cur);
        if (d == NULL)
            return NULL;
        atomic_fetch_add(&d->readers, 1);
        if (atomic_load(&((struct mrd_geo *)g)->cur) == d)
            return d;
        atomic_fetch_sub_explicit(&d->readers, 1, memory_order_release);
    }
}

static void
db_unpin(struct geo_db *d)
{
    atomic_fetch_sub_explicit(&d->readers, 1, memory_order_release);
}

/* close retired versions nobody uses any more (main thread) */
static void
db_reap(struct mrd_geo *g)
{
    for (struct geo_db *d = g->versions; d != NULL; d = d->next)
        if (d->retired && !d->closed && atomic_load(&d->readers) == 0) {
            MMDB_close(&d->mmdb);
            d->closed = 1;
        }
}

enum mrd_geo_check_result
mrd_geo_db_check(struct mrd_geo *g, char *msg, size_t msglen)
{
    struct geo_db *cur, *d;
    struct file_id id;
    struct stat st;

    msg[0] = '\0';
    if (g == NULL || g->path == NULL)
        return MRD_GEO_CHECK_NONE;
    db_reap(g);
    cur = atomic_load(&g->cur);
    if (stat(g->path, &st) == -1) {
        if (g->missing)
            return MRD_GEO_CHECK_SAME;
        g->missing = 1;
        snprintf(msg, msglen, "geo database \"%s\": %s; still using the database loaded at epoch %llu", g->path,
                 strerror(errno), (unsigned long long)(cur != NULL ? cur->epoch : 0));
        return MRD_GEO_CHECK_MISSING;
    }
    g->missing = 0;
    file_id_of(&st, &id);
    if ((cur != NULL && file_id_eq(&id, &cur->id)) || (g->have_failed && file_id_eq(&id, &g->failed_id)))
        return MRD_GEO_CHECK_SAME;
    d = db_open(g->path, msg, msglen);
    if (d == NULL) {
        g->have_failed = 1;
        g->failed_id = id;
        return MRD_GEO_CHECK_FAILED;
    }
    g->have_failed = 0;
    d->next = g->versions;
    g->versions = d;
    cur = atomic_exchange(&g->cur, d);
    if (cur != NULL)
        cur->retired = 1;
    db_reap(g);
    snprintf(msg, msglen, "geo database \"%s\" replaced: %s built %llu, epoch %llu", g->path, d->type,
             (unsigned long long)d->build_epoch, (unsigned long long)d->epoch);
    return MRD_GEO_CHECK_RELOADED;
}

void
mrd_geo_db_info(const struct mrd_geo *g, struct mrd_geo_db_info *out)
{
    const struct geo_db *d = g != NULL ? atomic_load(&((struct mrd_geo *)g)->cur) : NULL;

    memset(out, 0, sizeof(*out));
    if (d == NULL)
        return;
    /* these fields never change after publication, and the descriptor lives
     * as long as g: no pin needed */
    out->open = 1;
    out->path = g->path;
    out->epoch = d->epoch;
    out->build_epoch = d->build_epoch;
    out->loaded_at = d->loaded_at;
    memcpy(out->type, d->type, sizeof(out->type));
}

uint64_t
mrd_geo_epoch(const struct mrd_geo *g)
{
    const struct geo_db *d = g != NULL ? atomic_load_explicit(&((struct mrd_geo *)g)->cur, memory_order_acquire)
                                       : NULL;

    return d != NULL ? d->epoch : 0;
}

/* ---- public API ---- */

struct mrd_geo *
mrd_geo_new(const struct mrd_geo_conf *conf, const char **err)
{
    struct mrd_geo *g = mrd_xcalloc(1, sizeof(*g));

    if (conf->n_networks > 0)
        g->entries = mrd_xmalloc(conf->n_networks * sizeof(*g->entries));
    g->n_entries = conf->n_networks;
    for (size_t i = 0; i < conf->n_networks; i++) {
        const struct mrd_geo_network_conf *nw = &conf->networks[i];
        struct geo_entry *e = &g->entries[i];

        memcpy(e->country, nw->country, sizeof(e->country));
        e->country[2] = '\0';
        memcpy(e->continent, nw->continent, sizeof(e->continent));
        e->continent[2] = '\0';
        e->has_location = nw->has_location;
        e->latitude = nw->latitude;
        e->longitude = nw->longitude;
    }
    lpm_build(&g->v4, conf, AF_INET);
    lpm_build(&g->v6, conf, AF_INET6);
    g->has_default = conf->has_default_location;
    g->default_latitude = conf->default_latitude;
    g->default_longitude = conf->default_longitude;
    atomic_init(&g->cur, NULL);

    if (conf->database != NULL) {
        struct geo_db *d = db_open(conf->database, err_buf, sizeof(err_buf));

        if (d == NULL) {
            *err = err_buf;
            mrd_geo_free(g);
            return NULL;
        }
        g->path = mrd_xstrdup(conf->database);
        g->versions = d;
        atomic_store(&g->cur, d);
    }
    return g;
}

void
mrd_geo_free(struct mrd_geo *g)
{
    struct geo_db *d, *next;

    if (g == NULL)
        return;
    for (d = g->versions; d != NULL; d = next) {
        next = d->next;
        if (!d->closed)
            MMDB_close(&d->mmdb);
        free(d);
    }
    free(g->path);
    free(g->v4.nodes);
    free(g->v6.nodes);
    free(g->entries);
    free(g);
}

void
mrd_geo_locate(const struct mrd_geo *g, const struct mrd_ip *ip, struct mrd_location *out)
{
    int have_id = 0, have_xy = 0;
    int32_t idx = NO_ENTRY;

    memset(out, 0, sizeof(*out));
    out->source = MRD_GEO_UNKNOWN;
    if (g == NULL)
        return;

    if (ip->family == AF_INET)
        idx = lpm_lookup(&g->v4, ip);
    else if (ip->family == AF_INET6)
        idx = lpm_lookup(&g->v6, ip);
    if (idx != NO_ENTRY) {
        const struct geo_entry *e = &g->entries[idx];
        if (e->country[0] != '\0' || e->continent[0] != '\0') {
            memcpy(out->country, e->country, sizeof(out->country));
            memcpy(out->continent, e->continent, sizeof(out->continent));
            have_id = 1;
        }
        if (e->has_location) {
            out->latitude = e->latitude;
            out->longitude = e->longitude;
            out->source = MRD_GEO_NETWORK;
            have_xy = 1;
        }
    }
    if (!have_id || !have_xy) {
        struct geo_db *d = db_pin(g);
        if (d != NULL) {
            db_locate(&d->mmdb, ip, out, &have_id, &have_xy);
            db_unpin(d);
        }
    }
    if (!have_xy && out->country[0] != '\0') {
        const struct mrd_country_centroid *c = mrd_country_centroid(out->country);
        if (c != NULL) {
            out->latitude = c->latitude;
            out->longitude = c->longitude;
            out->source = MRD_GEO_COUNTRY;
            have_xy = 1;
        }
    }
    if (!have_xy && g->has_default) {
        out->latitude = g->default_latitude;
        out->longitude = g->default_longitude;
        out->source = MRD_GEO_DEFAULT;
        have_xy = 1;
    }
    out->known = have_xy;
}

/* ---- locate cache ---- */

void
mrd_geo_cache_reset(struct mrd_geo_cache *c)
{
    memset(c, 0, sizeof(*c));
}

void
mrd_geo_locate_cached(const struct mrd_geo *g, struct mrd_geo_cache *c, const struct mrd_ip *ip,
                      struct mrd_location *out)
{
    size_t n = ip->family == AF_INET ? 4 : 16;
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)ip->family;
    struct mrd_geo_cache_slot *slot;

    for (size_t i = 0; i < n; i++)
        h = (h ^ ip->bytes[i]) * 1099511628211ULL;
    slot = &c->slots[(h ^ (h >> 29)) % MRD_GEO_CACHE_SLOTS];
    if (slot->used && slot->ip.family == ip->family && memcmp(slot->ip.bytes, ip->bytes, n) == 0) {
        c->hits++;
        *out = slot->loc;
        return;
    }
    c->misses++;
    mrd_geo_locate(g, ip, out);
    memset(&slot->ip, 0, sizeof(slot->ip));
    slot->ip.family = ip->family;
    memcpy(slot->ip.bytes, ip->bytes, n);
    slot->loc = *out;
    slot->used = 1;
}
