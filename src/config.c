/*
 * config.c: YAML (libyaml) buffer -> struct mrd_config, validated against the
 * schema of SPEC section 2. libyaml events become a small node tree; each
 * mapping is then walked with a key table (name, setter, offset, bounds), as
 * nginx does with its command tables. Every problem is added to the mrd_diag
 * as "FILE:LINE:COL: message" and the walk keeps going. No sockets, no files
 * other than the configuration itself (certificates and the geo database are
 * opened later, by gen.c).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "meridian/addr.h"
#include "meridian/common.h"
#include "meridian/config.h"

#define MAX_DEPTH 64                      /* YAML nesting; the schema needs 6 */
#define MAX_KEYS 16                       /* keys in the largest table */
#define MAX_FILE_BYTES (16u << 20)        /* mrd_config_load refuses larger files */
#define MAX_DURATION_MS 31536000000ull    /* 365 days */
#define MAX_NAME_LEN 63                   /* region names end up in headers and metrics */
#define UNBOUNDED INT64_MAX

/* ------------------------------------------------------------------------ */
/* diagnostics */

static void __attribute__((format(printf, 5, 0)))
diag_vadd(struct mrd_diag *d, const char *file, unsigned line, unsigned col, const char *fmt, va_list ap)
{
    va_list ap2;
    int head, body;
    char *m;

    va_copy(ap2, ap);
    body = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    head = snprintf(NULL, 0, "%s:%u:%u: ", file, line, col);
    if (body < 0 || head < 0)
        return;
    m = mrd_xmalloc((size_t)head + (size_t)body + 1);
    snprintf(m, (size_t)head + 1, "%s:%u:%u: ", file, line, col);
    vsnprintf(m + head, (size_t)body + 1, fmt, ap);
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->msgs = mrd_xrealloc(d->msgs, d->cap * sizeof(*d->msgs));
    }
    d->msgs[d->n++] = m;
}

void
mrd_diag_init(struct mrd_diag *d)
{
    d->msgs = NULL;
    d->n = d->cap = 0;
}

void
mrd_diag_dispose(struct mrd_diag *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->msgs[i]);
    free(d->msgs);
    mrd_diag_init(d);
}

void
mrd_diag_add(struct mrd_diag *d, const char *file, unsigned line, unsigned col, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    diag_vadd(d, file, line, col, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* the node tree built from libyaml events */

enum ntype { N_SCALAR, N_SEQ, N_MAP };

struct node {
    enum ntype type;
    unsigned line, col; /* 1-based */
    int plain;          /* scalar written without quotes */
    char *str;          /* scalar value, NUL-terminated */
    size_t len;
    struct node **items; /* sequence items; mapping key, value, key, value... */
    size_t n, cap;
};

struct dpos {
    unsigned line, col;
    size_t seq;
};

/* parse state; the node tree lives until the end of mrd_config_parse */
struct ctx {
    const char *file;
    struct mrd_diag *diag;
    struct mrd_config *cfg;
    char path[256]; /* "regions[2].health_check" of the value being set */
    size_t pathlen;
    char show[2][96];
    int showi;
    struct dpos *dpos; /* positions of our messages, to sort them at the end */
    size_t n_dpos;
    const struct node **fallback_nodes;  /* per region: the fallback value */
    const struct node **residency_nodes; /* per residency rule: its regions list */
    size_t walk_errors; /* errors in the keys of the mapping whose check runs */
};

static struct node *
node_new(enum ntype type, yaml_mark_t mark)
{
    struct node *n = mrd_xcalloc(1, sizeof(*n));

    n->type = type;
    n->line = (unsigned)mark.line + 1;
    n->col = (unsigned)mark.column + 1;
    return n;
}

static void
node_free(struct node *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->n; i++)
        node_free(n->items[i]);
    free(n->items);
    free(n->str);
    free(n);
}

static void
node_append(struct node *parent, struct node *child)
{
    if (parent->n == parent->cap) {
        parent->cap = parent->cap ? parent->cap * 2 : 4;
        parent->items = mrd_xrealloc(parent->items, parent->cap * sizeof(*parent->items));
    }
    parent->items[parent->n++] = child;
}

static void __attribute__((format(printf, 4, 5)))
err_at(struct ctx *cx, unsigned line, unsigned col, const char *fmt, ...)
{
    va_list ap;

    cx->dpos = mrd_xrealloc(cx->dpos, (cx->n_dpos + 1) * sizeof(*cx->dpos));
    cx->dpos[cx->n_dpos] = (struct dpos){line, col, cx->n_dpos};
    cx->n_dpos++;
    va_start(ap, fmt);
    diag_vadd(cx->diag, cx->file, line, col, fmt, ap);
    va_end(ap);
}

/* An error about the value n, prefixed with the path of the key being set. */
static void __attribute__((format(printf, 3, 4)))
bad(struct ctx *cx, const struct node *n, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (cx->pathlen > 0)
        err_at(cx, n->line, n->col, "%s: %s", cx->path, msg);
    else
        err_at(cx, n->line, n->col, "%s", msg);
}

static int
dpos_cmp(const void *a, const void *b)
{
    const struct dpos *x = a, *y = b;

    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Cross-checks run after the walk; sort so that output reads top to bottom. */
static void
sort_diags(struct ctx *cx, size_t start)
{
    char **sorted;

    if (cx->n_dpos < 2 || cx->diag->n - start != cx->n_dpos)
        return;
    qsort(cx->dpos, cx->n_dpos, sizeof(*cx->dpos), dpos_cmp);
    sorted = mrd_xmalloc(cx->n_dpos * sizeof(*sorted));
    for (size_t i = 0; i < cx->n_dpos; i++)
        sorted[i] = cx->diag->msgs[start + cx->dpos[i].seq];
    memcpy(cx->diag->msgs + start, sorted, cx->n_dpos * sizeof(*sorted));
    free(sorted);
}

/* Quoted, printable, truncated form of a value for messages (one line each). */
static const char *
show_str(struct ctx *cx, const char *s, size_t len)
{
    char *out = cx->show[cx->showi++ & 1];
    size_t o = 0, max = sizeof(cx->show[0]) - 6;

    out[o++] = '"';
    for (size_t i = 0; i < len && o < max; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[o++] = ch >= 0x20 && ch != 0x7f ? (char)ch : '?';
    }
    if (o >= max)
        o += (size_t)snprintf(out + o, 4, "...");
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

static const char *
show(struct ctx *cx, const struct node *n)
{
    switch (n->type) {
    case N_MAP:
        return "a mapping";
    case N_SEQ:
        return "a sequence";
    default:
        if (n->plain && n->len == 0)
            return "an empty value";
        return show_str(cx, n->str, n->len);
    }
}

/* The byte at a libyaml mark (line and column count characters), or -1. */
static int
char_at(const char *buf, size_t len, yaml_mark_t mark)
{
    size_t i = 0, line = 0, col = 0;

    for (; i < len && line < mark.line; i++)
        if (buf[i] == '\n')
            line++;
    for (; i < len && buf[i] != '\n'; i++) {
        if (((unsigned char)buf[i] & 0xc0) == 0x80)
            continue;
        if (col++ == mark.column)
            return (unsigned char)buf[i];
    }
    return -1;
}

static void
syntax_error(struct ctx *cx, const yaml_parser_t *p, const char *buf, size_t len)
{
    unsigned line = (unsigned)p->problem_mark.line + 1, col = (unsigned)p->problem_mark.column + 1;
    const char *problem = p->problem != NULL ? p->problem : "cannot parse";

    if (p->error == YAML_MEMORY_ERROR) {
        err_at(cx, 1, 1, "out of memory while parsing YAML");
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        /* reader errors carry a byte offset rather than a mark */
        line = col = 1;
        for (size_t i = 0; i < p->problem_offset && i < len; i++) {
            if (buf[i] == '\n') {
                line++;
                col = 1;
            } else if (((unsigned char)buf[i] & 0xc0) != 0x80) {
                col++;
            }
        }
        err_at(cx, line, col, "YAML syntax error: %s (byte 0x%02x)", problem, (unsigned)p->problem_value & 0xff);
        return;
    }
    if (char_at(buf, len, p->problem_mark) == '\t')
        err_at(cx, line, col, "YAML syntax error: %s (tabs are not allowed for indentation)", problem);
    else if (p->context != NULL)
        err_at(cx, line, col, "YAML syntax error: %s (%s at line %u, column %u)", problem, p->context,
               (unsigned)p->context_mark.line + 1, (unsigned)p->context_mark.column + 1);
    else
        err_at(cx, line, col, "YAML syntax error: %s", problem);
}

/* Build the node tree. Returns 0 with *rootp (NULL for an empty stream), or
 * -1 after adding a diagnostic. */
static int
load_tree(struct ctx *cx, const char *buf, size_t len, struct node **rootp)
{
    struct node *stack[MAX_DEPTH], *root = NULL, *n;
    size_t depth = 0;
    int docs = 0, done = 0, rc = 0;
    yaml_parser_t p;
    yaml_event_t ev;

    *rootp = NULL;
    if (!yaml_parser_initialize(&p)) {
        err_at(cx, 1, 1, "out of memory while parsing YAML");
        return -1;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    while (!done && rc == 0) {
        if (!yaml_parser_parse(&p, &ev)) {
            syntax_error(cx, &p, buf, len);
            rc = -1;
            break;
        }
        n = NULL;
        switch (ev.type) {
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) {
                err_at(cx, (unsigned)ev.start_mark.line + 1, (unsigned)ev.start_mark.column + 1,
                       "only one YAML document is allowed");
                rc = -1;
            }
            break;
        case YAML_ALIAS_EVENT:
            err_at(cx, (unsigned)ev.start_mark.line + 1, (unsigned)ev.start_mark.column + 1,
                   "YAML aliases (*%s) are not supported; write the value out", (const char *)ev.data.alias.anchor);
            rc = -1;
            break;
        case YAML_SCALAR_EVENT:
            n = node_new(N_SCALAR, ev.start_mark);
            n->str = mrd_xstrndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
            n->len = ev.data.scalar.length;
            n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (depth == MAX_DEPTH) {
                err_at(cx, (unsigned)ev.start_mark.line + 1, (unsigned)ev.start_mark.column + 1,
                       "YAML nested deeper than %d levels", MAX_DEPTH);
                rc = -1;
                break;
            }
            n = node_new(ev.type == YAML_MAPPING_START_EVENT ? N_MAP : N_SEQ, ev.start_mark);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        default:
            break;
        }
        if (n != NULL) {
            if (depth > 0)
                node_append(stack[depth - 1], n);
            else
                root = n;
            if (n->type != N_SCALAR)
                stack[depth++] = n;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    if (rc == -1) {
        node_free(root);
        return -1;
    }
    *rootp = root;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* value helpers */

static const char *
tname(enum ntype t)
{
    return t == N_MAP ? "a mapping" : t == N_SEQ ? "a sequence" : "a single value";
}

static int
expect(struct ctx *cx, const struct node *n, enum ntype t)
{
    if (n->type == t)
        return 0;
    bad(cx, n, "expected %s, got %s", tname(t), show(cx, n));
    return -1;
}

/* The scalar as a C string, or NULL after an error. */
static const char *
scalar(struct ctx *cx, const struct node *n)
{
    if (expect(cx, n, N_SCALAR) == -1)
        return NULL;
    if (strlen(n->str) != n->len) {
        bad(cx, n, "must not contain NUL characters");
        return NULL;
    }
    return n->str;
}

static const char *
nonempty(struct ctx *cx, const struct node *n)
{
    const char *s = scalar(cx, n);

    if (s != NULL && *s == '\0') {
        bad(cx, n, "must not be empty");
        return NULL;
    }
    return s;
}

/* Decimal integer with optional '-'. Returns 0, -1 (not an integer), -2 (overflow). */
static int
parse_int(const char *s, int64_t *out)
{
    int neg = *s == '-';
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;

    if (neg)
        s++;
    if (*s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (v > (lim - (uint64_t)(*s - '0')) / 10)
            return -2;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

static void
pos_of(struct mrd_conf_pos *pos, const struct node *n)
{
    pos->line = n->line;
    pos->col = n->col;
}

static void *
field(void *obj, size_t off)
{
    return (char *)obj + off;
}

static void
replace_str(char **dst, const char *s)
{
    free(*dst);
    *dst = mrd_xstrdup(s);
}

/* ------------------------------------------------------------------------ */
/* key tables */

#define K_REQUIRED 0x1u
#define K_NONEMPTY 0x2u /* sequences: at least one item */
#define K_GT 0x4u       /* numbers: lo is exclusive */

struct key;
typedef int (*set_fn)(struct ctx *, const struct key *, const struct node *, void *);

struct key {
    const char *name;
    set_fn set;
    size_t off, off2, off3; /* fields of obj the setter writes */
    int64_t lo, hi;         /* bounds of numbers */
    const void *aux;        /* sub-table, sequence description, word list */
    unsigned flags;
};

struct table {
    const struct key *keys;
    size_t n;
    /* pre: before the keys are set; check: after, with each key's value node or NULL */
    void (*pre)(struct ctx *, void *obj);
    void (*check)(struct ctx *, const struct node *map, void *obj, const struct node **vals);
};

struct seq_desc {
    size_t size; /* of one element */
    const struct table *item;
    void (*init)(void *elem); /* defaults, before the item is walked */
};

/* Append sep and text to the path (dropped if it does not fit); returns the
 * old length for path_pop. */
static size_t
path_append(struct ctx *cx, const char *sep, const char *text)
{
    size_t old = cx->pathlen, a = strlen(sep), b = strlen(text);

    if (a + b < sizeof(cx->path) - old) {
        memcpy(cx->path + old, sep, a);
        memcpy(cx->path + old + a, text, b);
        cx->pathlen = old + a + b;
        cx->path[cx->pathlen] = '\0';
    }
    return old;
}

static size_t
path_key(struct ctx *cx, const char *name)
{
    return path_append(cx, cx->pathlen > 0 ? "." : "", name);
}

static size_t
path_idx(struct ctx *cx, size_t idx)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "[%zu]", idx);
    return path_append(cx, "", buf);
}

static void
path_pop(struct ctx *cx, size_t old)
{
    cx->pathlen = old;
    cx->path[old] = '\0';
}

static unsigned
edit_distance(const char *a, const char *b)
{
    unsigned row[64], la = (unsigned)strlen(a), lb = (unsigned)strlen(b);

    if (la >= 63 || lb >= 63)
        return 99;
    for (unsigned j = 0; j <= lb; j++)
        row[j] = j;
    for (unsigned i = 1; i <= la; i++) {
        unsigned diag = row[0];
        row[0] = i;
        for (unsigned j = 1; j <= lb; j++) {
            unsigned up = row[j];
            unsigned best = MRD_MIN(row[j] + 1, row[j - 1] + 1);
            row[j] = MRD_MIN(best, diag + (a[i - 1] != b[j - 1]));
            diag = up;
        }
    }
    return row[lb];
}

static void
unknown_key(struct ctx *cx, const struct node *k, const struct table *t)
{
    const char *hint = NULL;
    char where[300];

    /* a hint only for near misses: "connct", not "foo" for "geo" */
    for (size_t i = 0; i < t->n; i++)
        if (edit_distance(k->str, t->keys[i].name) * 3 <= MRD_MIN(k->len, 6)) {
            hint = t->keys[i].name;
            break;
        }
    if (cx->pathlen > 0)
        snprintf(where, sizeof(where), "in %s", cx->path);
    else
        snprintf(where, sizeof(where), "at the top level");
    if (hint != NULL)
        err_at(cx, k->line, k->col, "unknown key %s %s (did you mean \"%s\"?)", show(cx, k), where, hint);
    else
        err_at(cx, k->line, k->col, "unknown key %s %s", show(cx, k), where);
}

/* Walk a mapping with a key table: unknown and duplicate keys, then setters,
 * then required keys, then the table's cross-field check. */
static int
walk_table(struct ctx *cx, const struct node *map, const struct table *t, void *obj)
{
    const struct node *vals[MAX_KEYS] = {0};
    size_t before = cx->n_dpos;

    if (expect(cx, map, N_MAP) == -1)
        return -1;
    if (t->pre != NULL)
        t->pre(cx, obj);
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const struct node *k = map->items[i], *v = map->items[i + 1];
        size_t idx, prev, mark;

        if (k->type != N_SCALAR) {
            err_at(cx, k->line, k->col, "%s%skeys must be plain names, not %s", cx->path,
                   cx->pathlen ? ": " : "", tname(k->type));
            continue;
        }
        for (prev = 0; prev < i; prev += 2) {
            const struct node *pk = map->items[prev];
            if (pk->type == N_SCALAR && pk->len == k->len && memcmp(pk->str, k->str, k->len) == 0)
                break;
        }
        if (prev < i) {
            err_at(cx, k->line, k->col, "duplicate key %s%s%s (first at line %u)", show(cx, k),
                   cx->pathlen ? " in " : "", cx->path, map->items[prev]->line);
            continue;
        }
        for (idx = 0; idx < t->n; idx++)
            if (strlen(t->keys[idx].name) == k->len && memcmp(t->keys[idx].name, k->str, k->len) == 0)
                break;
        if (idx == t->n) {
            unknown_key(cx, k, t);
            continue;
        }
        mark = path_key(cx, t->keys[idx].name);
        t->keys[idx].set(cx, &t->keys[idx], v, obj);
        path_pop(cx, mark);
        vals[idx] = v;
    }
    for (size_t idx = 0; idx < t->n; idx++) {
        if ((t->keys[idx].flags & K_REQUIRED) && vals[idx] == NULL) {
            if (cx->pathlen > 0)
                err_at(cx, map->line, map->col, "%s: missing required key \"%s\"", cx->path, t->keys[idx].name);
            else
                err_at(cx, 1, 1, "missing required top-level key \"%s\"", t->keys[idx].name);
        }
    }
    if (t->check != NULL) {
        cx->walk_errors = cx->n_dpos - before;
        t->check(cx, map, obj, vals);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* generic setters */

static int
set_submap(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    return walk_table(cx, n, k->aux, field(obj, k->off));
}

/* A sequence of mappings: off = element array, off2 = size_t count. */
static int
set_seq(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    const struct seq_desc *d = k->aux;
    char *elems;

    if (expect(cx, n, N_SEQ) == -1)
        return -1;
    if (n->n == 0) {
        if (k->flags & K_NONEMPTY)
            bad(cx, n, "must have at least one entry");
        return 0;
    }
    elems = mrd_xcalloc(n->n, d->size);
    memcpy(field(obj, k->off), &elems, sizeof(elems));
    *(size_t *)field(obj, k->off2) = n->n;
    for (size_t i = 0; i < n->n; i++) {
        size_t mark = path_idx(cx, i);
        if (d->init != NULL)
            d->init(elems + i * d->size);
        walk_table(cx, n->items[i], d->item, elems + i * d->size);
        path_pop(cx, mark);
    }
    return 0;
}

static int
set_string(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    const char *s = nonempty(cx, n);

    if (s == NULL)
        return -1;
    replace_str(field(obj, k->off), s);
    return 0;
}

static int
get_int(struct ctx *cx, const struct key *k, const struct node *n, int64_t *v)
{
    const char *s = scalar(cx, n);
    int rc;

    if (s == NULL)
        return -1;
    rc = parse_int(s, v);
    if (rc == -1) {
        bad(cx, n, "expected an integer, got %s", show(cx, n));
        return -1;
    }
    if (rc == -2 || *v < k->lo || *v > k->hi) {
        if (k->hi == UNBOUNDED)
            bad(cx, n, "must be an integer >= %lld, got %s", (long long)k->lo, show(cx, n));
        else
            bad(cx, n, "must be an integer from %lld to %lld, got %s", (long long)k->lo, (long long)k->hi,
                show(cx, n));
        return -1;
    }
    return 0;
}

static int
set_u64(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    int64_t v;

    if (get_int(cx, k, n, &v) == -1)
        return -1;
    *(uint64_t *)field(obj, k->off) = (uint64_t)v;
    return 0;
}

static int
set_uint(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    int64_t v;

    if (get_int(cx, k, n, &v) == -1)
        return -1;
    *(unsigned *)field(obj, k->off) = (unsigned)v;
    return 0;
}

static int
set_int(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    int64_t v;

    if (get_int(cx, k, n, &v) == -1)
        return -1;
    *(int *)field(obj, k->off) = (int)v;
    return 0;
}

/* An integer or a decimal number; no hex, inf or nan. */
static int
set_double(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    const char *s = scalar(cx, n);
    char *end;
    double v;

    if (s == NULL)
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || strspn(s, "0123456789+-.eE") != n->len || end == s) {
        bad(cx, n, "expected a number, got %s", show(cx, n));
        return -1;
    }
    if (!isfinite(v) || ((k->flags & K_GT) ? v <= (double)k->lo : v < (double)k->lo) ||
        (k->hi != UNBOUNDED && v > (double)k->hi)) {
        if (k->flags & K_GT)
            bad(cx, n, "must be a number > %lld, got %s", (long long)k->lo, show(cx, n));
        else if (k->hi == UNBOUNDED)
            bad(cx, n, "must be a number >= %lld, got %s", (long long)k->lo, show(cx, n));
        else
            bad(cx, n, "must be a number from %lld to %lld, got %s", (long long)k->lo, (long long)k->hi,
                show(cx, n));
        return -1;
    }
    *(double *)field(obj, k->off) = v;
    return 0;
}

static int
set_duration(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    const char *s = scalar(cx, n);
    uint64_t ms;

    if (s == NULL)
        return -1;
    if (mrd_parse_duration_ms(s, &ms) == -1) {
        bad(cx, n, "expected a duration such as 250ms, 2s, 5m or 1h, got %s", show(cx, n));
        return -1;
    }
    if (ms == 0 || ms > MAX_DURATION_MS) {
        bad(cx, n, "must be greater than 0 and at most 8760h, got %s", show(cx, n));
        return -1;
    }
    *(uint64_t *)field(obj, k->off) = ms;
    return 0;
}

static int
set_bool(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    const char *s = scalar(cx, n);

    if (s == NULL)
        return -1;
    if (strcmp(s, "true") != 0 && strcmp(s, "false") != 0) {
        bad(cx, n, "expected true or false, got %s", show(cx, n));
        return -1;
    }
    *(int *)field(obj, k->off) = s[0] == 't';
    return 0;
}

struct word {
    const char *name;
    int value;
};

/* One of the words in aux (NULL-terminated); returns the value or -1. */
static int
get_word(struct ctx *cx, const struct key *k, const struct node *n)
{
    const char *s = scalar(cx, n);
    const struct word *w;
    char list[200];
    size_t o = 0;

    if (s == NULL)
        return -1;
    for (w = k->aux; w->name != NULL; w++)
        if (strcmp(s, w->name) == 0)
            return w->value;
    list[0] = '\0';
    for (w = k->aux; w->name != NULL; w++) {
        int r = snprintf(list + o, sizeof(list) - o, "%s%s", o ? ", " : "", w->name);
        if (r < 0 || (size_t)r >= sizeof(list) - o)
            break;
        o += (size_t)r;
    }
    bad(cx, n, "expected one of %s, got %s", list, show(cx, n));
    return -1;
}

static int
set_word(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    int v = get_word(cx, k, n);

    if (v == -1)
        return -1;
    *(int *)field(obj, k->off) = v;
    return 0;
}

/* off = char *text, off2 = struct sockaddr_storage, off3 = socklen_t */
static int
set_addr(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    const char *s = nonempty(cx, n), *why;

    if (s == NULL)
        return -1;
    if (mrd_sockaddr_parse(s, field(obj, k->off2), field(obj, k->off3), &why) == -1) {
        bad(cx, n, "invalid address %s: %s", show(cx, n), why);
        return -1;
    }
    replace_str(field(obj, k->off), s);
    return 0;
}

static int
get_cidr(struct ctx *cx, const struct node *n, struct mrd_cidr *c)
{
    const char *s = nonempty(cx, n), *why;

    if (s == NULL)
        return -1;
    if (mrd_cidr_parse(s, c, &why) == -1) {
        bad(cx, n, "invalid CIDR %s: %s", show(cx, n), why);
        return -1;
    }
    return 0;
}

static int
set_cidr(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    return get_cidr(cx, n, field(obj, k->off));
}

/* off = struct mrd_cidr *, off2 = size_t count */
static int
set_cidr_list(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    struct mrd_cidr *list;

    if (expect(cx, n, N_SEQ) == -1)
        return -1;
    list = mrd_xcalloc(n->n, sizeof(*list));
    memcpy(field(obj, k->off), &list, sizeof(list));
    *(size_t *)field(obj, k->off2) = n->n;
    for (size_t i = 0; i < n->n; i++) {
        size_t mark = path_idx(cx, i);
        get_cidr(cx, n->items[i], &list[i]);
        path_pop(cx, mark);
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
get_code(struct ctx *cx, const struct key *k, const struct node *n, char out[3])
{
    static const char *const continents[] = {"AF", "AN", "AS", "EU", "NA", "OC", "SA"};
    const char *s = scalar(cx, n);

    if (s == NULL)
        return -1;
    if (n->len != 2 || !is_alpha(s[0]) || !is_alpha(s[1])) {
        bad(cx, n, "expected a two-letter %s code, got %s", k->lo ? "continent" : "ISO 3166 country",
            show(cx, n));
        return -1;
    }
    out[0] = (char)(s[0] & ~0x20);
    out[1] = (char)(s[1] & ~0x20);
    out[2] = '\0';
    if (k->lo) {
        for (size_t i = 0; i < MRD_ARRAY_LEN(continents); i++)
            if (strcmp(out, continents[i]) == 0)
                return 0;
        bad(cx, n, "unknown continent %s (expected AF, AN, AS, EU, NA, OC or SA)", show(cx, n));
        return -1;
    }
    return 0;
}

static int
set_code(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    return get_code(cx, k, n, field(obj, k->off));
}

/* off = char (*)[3], off2 = size_t count */
static int
set_code_list(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    char(*list)[3];

    if (expect(cx, n, N_SEQ) == -1)
        return -1;
    list = mrd_xcalloc(n->n, sizeof(*list));
    memcpy(field(obj, k->off), &list, sizeof(list));
    *(size_t *)field(obj, k->off2) = n->n;
    for (size_t i = 0; i < n->n; i++) {
        size_t mark = path_idx(cx, i);
        get_code(cx, k, n->items[i], list[i]);
        path_pop(cx, mark);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* specific setters and checks, in the order of SPEC section 2 */

static int
set_workers(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    int64_t v;

    if (n->type == N_SCALAR && strcmp(n->str, "auto") == 0) {
        ((struct mrd_config *)obj)->workers = 0;
        return 0;
    }
    if (n->type == N_SCALAR && parse_int(n->str, &v) == -1) {
        bad(cx, n, "expected \"auto\" or an integer from 1 to 1024, got %s", show(cx, n));
        return -1;
    }
    if (get_int(cx, k, n, &v) == -1)
        return -1;
    ((struct mrd_config *)obj)->workers = (unsigned)v;
    return 0;
}

static const struct word protocol_words[] = {
    {"http1", MRD_PROTO_HTTP1}, {"h2c", MRD_PROTO_H2C}, {"h2", MRD_PROTO_H2}, {NULL, 0}};

static int
set_protocols(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    struct mrd_listener_conf *l = obj;

    if (expect(cx, n, N_SEQ) == -1)
        return -1;
    if (n->n == 0) {
        bad(cx, n, "must list at least one protocol");
        return -1;
    }
    for (size_t i = 0; i < n->n; i++) {
        size_t mark = path_idx(cx, i);
        int p = get_word(cx, k, n->items[i]);
        if (p != -1 && (l->protocols & (unsigned)p))
            bad(cx, n->items[i], "protocol %s is listed twice", show(cx, n->items[i]));
        else if (p != -1 && l->n_alpn < MRD_ARRAY_LEN(l->alpn)) {
            l->protocols |= (unsigned)p;
            l->alpn[l->n_alpn++] = (enum mrd_proto)p;
        }
        path_pop(cx, mark);
    }
    return 0;
}

static int
set_min_version(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    const char *s = scalar(cx, n);

    if (s == NULL)
        return -1;
    if (strcmp(s, "1.2") != 0 && strcmp(s, "1.3") != 0) {
        bad(cx, n, "expected \"1.2\" or \"1.3\", got %s", show(cx, n));
        return -1;
    }
    ((struct mrd_listener_conf *)obj)->tls_min_version = s[2] == '2' ? 12 : 13;
    return 0;
}

static void
cert_check(struct ctx *cx, const struct node *map, void *obj, const struct node **vals)
{
    pos_of(&((struct mrd_cert_conf *)obj)->pos, map);
}

static void
tls_pre(struct ctx *cx, void *obj)
{
    ((struct mrd_listener_conf *)obj)->tls = 1;
}

enum { L_ADDRESS, L_PROTOCOLS, L_TLS };

/* Default protocols, and h2 only over TLS / h2c only without it. */
static void
listener_check(struct ctx *cx, const struct node *map, void *obj, const struct node **vals)
{
    struct mrd_listener_conf *l = obj;
    const struct node *protos = vals[L_PROTOCOLS];

    pos_of(&l->pos, vals[L_ADDRESS] != NULL ? vals[L_ADDRESS] : map);
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
    if (protos->type != N_SEQ)
        return;
    for (size_t i = 0; i < protos->n; i++) {
        const struct node *p = protos->items[i];
        size_t mark;

        if (p->type != N_SCALAR)
            continue;
        mark = path_key(cx, "protocols");
        path_idx(cx, i);
        if (strcmp(p->str, "h2") == 0 && !l->tls)
            bad(cx, p, "h2 needs a tls block (for plaintext HTTP/2 use h2c)");
        else if (strcmp(p->str, "h2c") == 0 && l->tls)
            bad(cx, p, "h2c is plaintext HTTP/2 and cannot be used with tls (use h2)");
        path_pop(cx, mark);
    }
}

static void
admin_pre(struct ctx *cx, void *obj)
{
    ((struct mrd_admin_conf *)obj)->enabled = 1;
}

/* Visible ASCII, no spaces: it is compared with an Authorization header. */
static int
set_token(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    const char *s = nonempty(cx, n);

    if (s == NULL)
        return -1;
    for (const char *p = s; *p != '\0'; p++)
        if (*p <= 0x20 || *p >= 0x7f) {
            bad(cx, n, "must be printable ASCII without spaces");
            return -1;
        }
    replace_str(field(obj, k->off), s);
    return 0;
}

enum { G_DATABASE, G_NETWORKS, G_DEFAULT_LOCATION };

static void
geo_check(struct ctx *cx, const struct node *map, void *obj, const struct node **vals)
{
    if (vals[G_DATABASE] != NULL)
        pos_of(&((struct mrd_geo_conf *)obj)->database_pos, vals[G_DATABASE]);
}

static void
default_location_pre(struct ctx *cx, void *obj)
{
    ((struct mrd_geo_conf *)obj)->has_default_location = 1;
}

enum { NW_CIDR, NW_COUNTRY, NW_CONTINENT, NW_LATITUDE, NW_LONGITUDE };

static void
network_check(struct ctx *cx, const struct node *map, void *obj, const struct node **vals)
{
    struct mrd_geo_network_conf *nw = obj;

    pos_of(&nw->pos, map);
    if ((vals[NW_LATITUDE] == NULL) != (vals[NW_LONGITUDE] == NULL))
        bad(cx, map, "latitude and longitude must be given together");
    nw->has_location = vals[NW_LATITUDE] != NULL && vals[NW_LONGITUDE] != NULL;
}

/* RFC 9110 field name (token). */
static int
set_header_name(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    const char *s = nonempty(cx, n);

    if (s == NULL)
        return -1;
    for (const char *p = s; *p != '\0'; p++)
        if (!is_alpha(*p) && !(*p >= '0' && *p <= '9') && strchr("!#$%&'*+-.^_`|~", *p) == NULL) {
            bad(cx, n, "%s is not a valid HTTP header name", show(cx, n));
            return -1;
        }
    replace_str(field(obj, k->off), s);
    return 0;
}

static void
weights_pre(struct ctx *cx, void *obj)
{
    struct mrd_scoring_conf *s = obj;

    s->w_geography = s->w_health = s->w_latency = s->w_cost = 0;
}

static void
weights_check(struct ctx *cx, const struct node *map, void *obj, const struct node **vals)
{
    struct mrd_scoring_conf *s = obj;
    double sum = s->w_geography + s->w_health + s->w_latency + s->w_cost;

    if (cx->walk_errors > 0)
        return; /* a rejected weight would make the sum misleading */
    if (!(sum > 0) || !isfinite(sum)) {
        bad(cx, map, "weights must not all be 0 (they are normalised to sum to 1)");
        return;
    }
    s->w_geography /= sum;
    s->w_health /= sum;
    s->w_latency /= sum;
    s->w_cost /= sum;
}

static int
set_region_name(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    const char *s = nonempty(cx, n);

    if (s == NULL)
        return -1;
    if (n->len > MAX_NAME_LEN || strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != n->len) {
        bad(cx, n, "%s: region names are 1 to %d characters from A-Z a-z 0-9 . _ -", show(cx, n), MAX_NAME_LEN);
        return -1;
    }
    replace_str(field(obj, k->off), s);
    return 0;
}

static int
set_fallback(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    struct mrd_region_conf *r = obj;

    if (set_string(cx, k, n, obj) == -1)
        return -1;
    if (cx->fallback_nodes == NULL)
        cx->fallback_nodes = mrd_xcalloc(cx->cfg->n_regions, sizeof(*cx->fallback_nodes));
    cx->fallback_nodes[r - cx->cfg->regions] = n;
    return 0;
}

static const struct word balance_words[] = {{"least_connections", MRD_BALANCE_LEAST_CONN},
                                            {"round_robin", MRD_BALANCE_ROUND_ROBIN},
                                            {"p2c_ewma", MRD_BALANCE_P2C_EWMA},
                                            {NULL, 0}};

static int
set_balance(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    int v = get_word(cx, k, n);

    if (v == -1)
        return -1;
    ((struct mrd_region_conf *)obj)->balance = (enum mrd_balance)v;
    return 0;
}

static int
set_hc_path(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    const char *s = nonempty(cx, n);

    if (s == NULL)
        return -1;
    if (s[0] != '/') {
        bad(cx, n, "must start with \"/\", got %s", show(cx, n));
        return -1;
    }
    for (const char *p = s; *p != '\0'; p++)
        if (*p <= 0x20 || *p >= 0x7f) {
            bad(cx, n, "must not contain spaces or control characters");
            return -1;
        }
    replace_str(field(obj, k->off), s);
    return 0;
}

static void
health_pre(struct ctx *cx, void *obj)
{
    ((struct mrd_health_conf *)obj)->enabled = 1;
}

enum { U_ADDRESS, U_WEIGHT };

static void
upstream_check(struct ctx *cx, const struct node *map, void *obj, const struct node **vals)
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
    R_UPSTREAMS
};

static void
region_check(struct ctx *cx, const struct node *map, void *obj, const struct node **vals)
{
    struct mrd_region_conf *r = obj;

    pos_of(&r->pos, vals[R_NAME] != NULL ? vals[R_NAME] : map);
    if (vals[R_CAPACITY_BURST] != NULL && vals[R_CAPACITY_RPS] == NULL) {
        size_t mark = path_key(cx, "capacity_burst");
        bad(cx, vals[R_CAPACITY_BURST], "needs capacity_rps");
        path_pop(cx, mark);
    } else if (vals[R_CAPACITY_BURST] == NULL && r->capacity_rps > 0) {
        r->capacity_burst = MRD_MAX(1, r->capacity_rps / 10);
    }
    for (size_t i = 0; i < r->n_upstreams; i++) {
        for (size_t j = 0; j < i; j++) {
            const struct mrd_upstream_conf *a = &r->upstreams[j], *b = &r->upstreams[i];
            if (a->address != NULL && b->address != NULL && a->addrlen == b->addrlen &&
                memcmp(&a->addr, &b->addr, a->addrlen) == 0) {
                err_at(cx, b->pos.line, b->pos.col, "%s.upstreams[%zu].address: %s is already upstreams[%zu]",
                       cx->path, i, show_str(cx, b->address, strlen(b->address)), j);
                break;
            }
        }
    }
}

static int
set_residency_regions(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    struct mrd_residency_conf *rr = obj;

    if (expect(cx, n, N_SEQ) == -1)
        return -1;
    if (n->n == 0) {
        bad(cx, n, "must name at least one region");
        return -1;
    }
    if (cx->residency_nodes == NULL)
        cx->residency_nodes = mrd_xcalloc(cx->cfg->policies.n_residency, sizeof(*cx->residency_nodes));
    cx->residency_nodes[rr - cx->cfg->policies.residency] = n;
    return 0;
}

static void
match_check(struct ctx *cx, const struct node *map, void *obj, const struct node **vals)
{
    struct mrd_residency_conf *rr = obj;

    if (cx->walk_errors == 0 && rr->n_continents == 0 && rr->n_countries == 0)
        bad(cx, map, "needs a non-empty continents or countries list");
}

static int
set_rate(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    const char *s = scalar(cx, n);
    uint64_t milli;

    if (s == NULL)
        return -1;
    if (mrd_parse_rate_milli(s, &milli) == -1) {
        bad(cx, n, "expected a rate such as 100/s or 1000/min (at least 1), got %s", show(cx, n));
        return -1;
    }
    ((struct mrd_policies_conf *)obj)->client_rate_milli_per_s = milli;
    return 0;
}

static void
rate_pre(struct ctx *cx, void *obj)
{
    ((struct mrd_policies_conf *)obj)->client_rate_enabled = 1;
}

enum { RL_RATE, RL_BURST };

static void
rate_check(struct ctx *cx, const struct node *map, void *obj, const struct node **vals)
{
    struct mrd_policies_conf *p = obj;

    if (vals[RL_BURST] == NULL)
        p->client_burst = MRD_MAX(1, (p->client_rate_milli_per_s + 999) / 1000);
}

static int
set_log_path(struct ctx *cx, const struct key *k, const struct node *n, void *obj)
{
    struct mrd_access_log_conf *a = obj;
    const char *s = nonempty(cx, n);

    if (s == NULL)
        return -1;
    free(a->path);
    a->path = strcmp(s, "off") == 0 ? NULL : mrd_xstrdup(s);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* the schema: tables from the leaves up */

#define TABLE(keys, pre, check) {keys, MRD_ARRAY_LEN(keys), pre, check}
#define DUR(name, type, f) {name, set_duration, offsetof(struct type, f), 0, 0, 0, 0, NULL, 0}

static const struct key cert_keys[] = {
    {"cert", set_string, offsetof(struct mrd_cert_conf, cert), .flags = K_REQUIRED},
    {"key", set_string, offsetof(struct mrd_cert_conf, key), .flags = K_REQUIRED},
};
static const struct table cert_table = TABLE(cert_keys, NULL, cert_check);
static const struct seq_desc cert_seq = {sizeof(struct mrd_cert_conf), &cert_table, NULL};

static const struct key tls_keys[] = {
    {"certificates", set_seq, offsetof(struct mrd_listener_conf, certs), offsetof(struct mrd_listener_conf, n_certs),
     .aux = &cert_seq, .flags = K_REQUIRED | K_NONEMPTY},
    {"min_version", set_min_version, .aux = NULL},
};
static const struct table tls_table = TABLE(tls_keys, tls_pre, NULL);

static const struct key listener_keys[] = {
    [L_ADDRESS] = {"address", set_addr, offsetof(struct mrd_listener_conf, address),
                   offsetof(struct mrd_listener_conf, addr), offsetof(struct mrd_listener_conf, addrlen),
                   .flags = K_REQUIRED},
    [L_PROTOCOLS] = {"protocols", set_protocols, .aux = protocol_words},
    [L_TLS] = {"tls", set_submap, 0, .aux = &tls_table},
};
static const struct table listener_table = TABLE(listener_keys, NULL, listener_check);

static void
listener_init(void *elem)
{
    ((struct mrd_listener_conf *)elem)->tls_min_version = 13;
}
static const struct seq_desc listener_seq = {sizeof(struct mrd_listener_conf), &listener_table, listener_init};

static const struct key admin_keys[] = {
    {"address", set_addr, offsetof(struct mrd_admin_conf, address), offsetof(struct mrd_admin_conf, addr),
     offsetof(struct mrd_admin_conf, addrlen), .flags = K_REQUIRED},
    {"token", set_token, offsetof(struct mrd_admin_conf, token), .aux = NULL},
};
static const struct table admin_table = TABLE(admin_keys, admin_pre, NULL);

static const struct key timeout_keys[] = {
    DUR("connect", mrd_timeouts_conf, connect_ms),
    DUR("request_header", mrd_timeouts_conf, request_header_ms),
    DUR("upstream_response", mrd_timeouts_conf, upstream_response_ms),
    DUR("idle", mrd_timeouts_conf, idle_ms),
    DUR("shutdown", mrd_timeouts_conf, shutdown_ms),
};
static const struct table timeout_table = TABLE(timeout_keys, NULL, NULL);

static const struct key limit_keys[] = {
    {"max_header_bytes", set_u64, offsetof(struct mrd_limits_conf, max_header_bytes), .lo = 1024, .hi = 1048576},
    {"max_body_bytes", set_u64, offsetof(struct mrd_limits_conf, max_body_bytes), .lo = 0, .hi = UNBOUNDED},
    {"max_connections", set_u64, offsetof(struct mrd_limits_conf, max_connections), .lo = 1, .hi = 10000000},
};
static const struct table limit_table = TABLE(limit_keys, NULL, NULL);

static const struct key network_keys[] = {
    [NW_CIDR] = {"cidr", set_cidr, offsetof(struct mrd_geo_network_conf, cidr), .flags = K_REQUIRED},
    [NW_COUNTRY] = {"country", set_code, offsetof(struct mrd_geo_network_conf, country), .lo = 0},
    [NW_CONTINENT] = {"continent", set_code, offsetof(struct mrd_geo_network_conf, continent), .lo = 1},
    [NW_LATITUDE] = {"latitude", set_double, offsetof(struct mrd_geo_network_conf, latitude), .lo = -90, .hi = 90},
    [NW_LONGITUDE] = {"longitude", set_double, offsetof(struct mrd_geo_network_conf, longitude), .lo = -180,
                      .hi = 180},
};
static const struct table network_table = TABLE(network_keys, NULL, network_check);
static const struct seq_desc network_seq = {sizeof(struct mrd_geo_network_conf), &network_table, NULL};

static const struct key default_location_keys[] = {
    {"latitude", set_double, offsetof(struct mrd_geo_conf, default_latitude), .lo = -90, .hi = 90,
     .flags = K_REQUIRED},
    {"longitude", set_double, offsetof(struct mrd_geo_conf, default_longitude), .lo = -180, .hi = 180,
     .flags = K_REQUIRED},
};
static const struct table default_location_table = TABLE(default_location_keys, default_location_pre, NULL);

static const struct key geo_keys[] = {
    [G_DATABASE] = {"database", set_string, offsetof(struct mrd_geo_conf, database), .aux = NULL},
    [G_NETWORKS] = {"networks", set_seq, offsetof(struct mrd_geo_conf, networks),
                    offsetof(struct mrd_geo_conf, n_networks), .aux = &network_seq},
    [G_DEFAULT_LOCATION] = {"default_location", set_submap, 0, .aux = &default_location_table},
};
static const struct table geo_table = TABLE(geo_keys, NULL, geo_check);

static const struct key client_ip_keys[] = {
    {"trusted_proxies", set_cidr_list, offsetof(struct mrd_client_ip_conf, trusted_proxies),
     offsetof(struct mrd_client_ip_conf, n_trusted_proxies), .aux = NULL},
    {"header", set_header_name, offsetof(struct mrd_client_ip_conf, header), .aux = NULL},
};
static const struct table client_ip_table = TABLE(client_ip_keys, NULL, NULL);

static const struct key weight_keys[] = {
    {"geography", set_double, offsetof(struct mrd_scoring_conf, w_geography), .lo = 0, .hi = UNBOUNDED},
    {"health", set_double, offsetof(struct mrd_scoring_conf, w_health), .lo = 0, .hi = UNBOUNDED},
    {"latency", set_double, offsetof(struct mrd_scoring_conf, w_latency), .lo = 0, .hi = UNBOUNDED},
    {"cost", set_double, offsetof(struct mrd_scoring_conf, w_cost), .lo = 0, .hi = UNBOUNDED},
};
static const struct table weight_table = TABLE(weight_keys, weights_pre, weights_check);

static const struct key scoring_keys[] = {
    {"weights", set_submap, 0, .aux = &weight_table},
    DUR("latency_ceiling", mrd_scoring_conf, latency_ceiling_ms),
};
static const struct table scoring_table = TABLE(scoring_keys, NULL, NULL);

static const struct key location_keys[] = {
    {"latitude", set_double, offsetof(struct mrd_region_conf, latitude), .lo = -90, .hi = 90, .flags = K_REQUIRED},
    {"longitude", set_double, offsetof(struct mrd_region_conf, longitude), .lo = -180, .hi = 180,
     .flags = K_REQUIRED},
};
static const struct table location_table = TABLE(location_keys, NULL, NULL);

static const struct key health_keys[] = {
    {"path", set_hc_path, offsetof(struct mrd_health_conf, path), .aux = NULL},
    DUR("interval", mrd_health_conf, interval_ms),
    DUR("timeout", mrd_health_conf, timeout_ms),
    {"rise", set_uint, offsetof(struct mrd_health_conf, rise), .lo = 1, .hi = 1000},
    {"fall", set_uint, offsetof(struct mrd_health_conf, fall), .lo = 1, .hi = 1000},
    {"expect_status", set_int, offsetof(struct mrd_health_conf, expect_status), .lo = 100, .hi = 599},
};
static const struct table health_table = TABLE(health_keys, health_pre, NULL);

static const struct key upstream_keys[] = {
    [U_ADDRESS] = {"address", set_addr, offsetof(struct mrd_upstream_conf, address),
                   offsetof(struct mrd_upstream_conf, addr), offsetof(struct mrd_upstream_conf, addrlen),
                   .flags = K_REQUIRED},
    [U_WEIGHT] = {"weight", set_uint, offsetof(struct mrd_upstream_conf, weight), .lo = 1, .hi = 1000},
};
static const struct table upstream_table = TABLE(upstream_keys, NULL, upstream_check);

static void
upstream_init(void *elem)
{
    ((struct mrd_upstream_conf *)elem)->weight = 1;
}
static const struct seq_desc upstream_seq = {sizeof(struct mrd_upstream_conf), &upstream_table, upstream_init};

static const struct key region_keys[] = {
    [R_NAME] = {"name", set_region_name, offsetof(struct mrd_region_conf, name), .flags = K_REQUIRED},
    [R_LOCATION] = {"location", set_submap, 0, .aux = &location_table, .flags = K_REQUIRED},
    [R_COST] = {"cost", set_double, offsetof(struct mrd_region_conf, cost), .lo = 0, .hi = UNBOUNDED,
                .flags = K_GT},
    [R_CAPACITY_RPS] = {"capacity_rps", set_u64, offsetof(struct mrd_region_conf, capacity_rps), .lo = 1,
                        .hi = 1000000000},
    [R_CAPACITY_BURST] = {"capacity_burst", set_u64, offsetof(struct mrd_region_conf, capacity_burst), .lo = 1,
                          .hi = 1000000000},
    [R_FALLBACK] = {"fallback", set_fallback, offsetof(struct mrd_region_conf, fallback), .aux = NULL},
    [R_BALANCE] = {"balance", set_balance, .aux = balance_words},
    [R_RETRIES] = {"retries", set_uint, offsetof(struct mrd_region_conf, retries), .lo = 0, .hi = 10},
    [R_HEALTH_CHECK] = {"health_check", set_submap, offsetof(struct mrd_region_conf, health), .aux = &health_table},
    [R_UPSTREAMS] = {"upstreams", set_seq, offsetof(struct mrd_region_conf, upstreams),
                     offsetof(struct mrd_region_conf, n_upstreams), .aux = &upstream_seq,
                     .flags = K_REQUIRED | K_NONEMPTY},
};
static const struct table region_table = TABLE(region_keys, NULL, region_check);

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
}
static const struct seq_desc region_seq = {sizeof(struct mrd_region_conf), &region_table, region_init};

static const struct key match_keys[] = {
    {"continents", set_code_list, offsetof(struct mrd_residency_conf, continents),
     offsetof(struct mrd_residency_conf, n_continents), .lo = 1},
    {"countries", set_code_list, offsetof(struct mrd_residency_conf, countries),
     offsetof(struct mrd_residency_conf, n_countries), .lo = 0},
};
static const struct table match_table = TABLE(match_keys, NULL, match_check);

static const struct key residency_keys[] = {
    {"name", set_string, offsetof(struct mrd_residency_conf, name), .flags = K_REQUIRED},
    {"match", set_submap, 0, .aux = &match_table, .flags = K_REQUIRED},
    {"regions", set_residency_regions, .flags = K_REQUIRED},
};
static const struct table residency_table = TABLE(residency_keys, NULL, NULL);
static const struct seq_desc residency_seq = {sizeof(struct mrd_residency_conf), &residency_table, NULL};

static const struct key geo_block_keys[] = {
    {"countries", set_code_list, offsetof(struct mrd_policies_conf, block_countries),
     offsetof(struct mrd_policies_conf, n_block_countries), .lo = 0},
    {"status", set_int, offsetof(struct mrd_policies_conf, block_status), .lo = 100, .hi = 599},
};
static const struct table geo_block_table = TABLE(geo_block_keys, NULL, NULL);

static const struct key rate_keys[] = {
    [RL_RATE] = {"rate", set_rate, .flags = K_REQUIRED},
    [RL_BURST] = {"burst", set_u64, offsetof(struct mrd_policies_conf, client_burst), .lo = 1, .hi = 1000000000},
};
static const struct table rate_table = TABLE(rate_keys, rate_pre, rate_check);

static const struct key policy_keys[] = {
    {"residency", set_seq, offsetof(struct mrd_policies_conf, residency),
     offsetof(struct mrd_policies_conf, n_residency), .aux = &residency_seq},
    {"geo_block", set_submap, 0, .aux = &geo_block_table},
    {"client_rate_limit", set_submap, 0, .aux = &rate_table},
};
static const struct table policy_table = TABLE(policy_keys, NULL, NULL);

static const struct key response_header_keys[] = {
    {"region", set_bool, offsetof(struct mrd_config, response_header_region), .aux = NULL},
};
static const struct table response_header_table = TABLE(response_header_keys, NULL, NULL);

static const struct word format_words[] = {{"json", 1}, {"text", 0}, {NULL, 0}};
static const struct key access_log_keys[] = {
    {"path", set_log_path, .aux = NULL},
    {"format", set_word, offsetof(struct mrd_access_log_conf, json), .aux = format_words},
};
static const struct table access_log_table = TABLE(access_log_keys, NULL, NULL);

/* ------------------------------------------------------------------------ */
/* cross-references, once everything is read */

static void
check_listeners(struct ctx *cx)
{
    const struct mrd_config *c = cx->cfg;

    for (size_t i = 0; i < c->n_listeners; i++) {
        const struct mrd_listener_conf *b = &c->listeners[i];
        if (b->address == NULL)
            continue;
        for (size_t j = 0; j < i; j++) {
            const struct mrd_listener_conf *a = &c->listeners[j];
            if (a->address != NULL && a->addrlen == b->addrlen && memcmp(&a->addr, &b->addr, a->addrlen) == 0) {
                err_at(cx, b->pos.line, b->pos.col, "listeners[%zu].address: %s is already used by listeners[%zu]",
                       i, show_str(cx, b->address, strlen(b->address)), j);
                break;
            }
        }
        if (c->admin.address != NULL && c->admin.addrlen == b->addrlen &&
            memcmp(&c->admin.addr, &b->addr, b->addrlen) == 0)
            err_at(cx, b->pos.line, b->pos.col, "listeners[%zu].address: %s is also the admin address", i,
                   show_str(cx, b->address, strlen(b->address)));
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
check_cycle(struct ctx *cx, size_t start)
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
    err_at(cx, cx->fallback_nodes[start]->line, cx->fallback_nodes[start]->col, "regions[%zu].fallback: fallback cycle: %s",
           start, chain);
}

static void
check_regions(struct ctx *cx)
{
    struct mrd_config *c = cx->cfg;

    for (size_t i = 0; i < c->n_regions; i++) {
        struct mrd_region_conf *r = &c->regions[i];
        int first;

        if (r->name != NULL && (first = region_index(c, r->name)) >= 0 && (size_t)first < i)
            err_at(cx, r->pos.line, r->pos.col, "regions[%zu].name: duplicate region name %s (first at line %u)", i,
                   show_str(cx, r->name, strlen(r->name)), c->regions[first].pos.line);
        if (r->fallback != NULL) {
            const struct node *fb = cx->fallback_nodes[i];
            r->fallback_idx = region_index(c, r->fallback);
            if (r->fallback_idx < 0)
                err_at(cx, fb->line, fb->col, "regions[%zu].fallback: unknown region %s", i, show(cx, fb));
        }
    }
    for (size_t i = 0; i < c->n_regions; i++)
        if (c->regions[i].fallback_idx >= 0)
            check_cycle(cx, i);
}

static void
check_residency(struct ctx *cx)
{
    struct mrd_policies_conf *p = &cx->cfg->policies;

    for (size_t i = 0; i < p->n_residency; i++) {
        struct mrd_residency_conf *rr = &p->residency[i];
        const struct node *list = cx->residency_nodes != NULL ? cx->residency_nodes[i] : NULL;

        for (size_t j = 0; rr->name != NULL && j < i; j++)
            if (p->residency[j].name != NULL && strcmp(p->residency[j].name, rr->name) == 0) {
                /* no position of its own: report at its regions list when known */
                if (list != NULL)
                    err_at(cx, list->line, list->col, "policies.residency[%zu]: duplicate rule name %s", i,
                           show_str(cx, rr->name, strlen(rr->name)));
                break;
            }
        if (list == NULL)
            continue;
        rr->region_idx = mrd_xcalloc(list->n, sizeof(*rr->region_idx));
        rr->n_regions = list->n;
        for (size_t j = 0; j < list->n; j++) {
            const struct node *item = list->items[j];
            size_t mark = path_key(cx, "policies.residency");

            path_idx(cx, i);
            path_key(cx, "regions");
            path_idx(cx, j);
            if (scalar(cx, item) != NULL) {
                rr->region_idx[j] = region_index(cx->cfg, item->str);
                if (rr->region_idx[j] < 0)
                    bad(cx, item, "unknown region %s", show(cx, item));
            }
            path_pop(cx, mark);
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
    T_ACCESS_LOG
};

static void
top_check(struct ctx *cx, const struct node *map, void *obj, const struct node **vals)
{
    check_listeners(cx);
    /* without a readable regions list every reference would be reported too */
    if (vals[T_REGIONS] != NULL && vals[T_REGIONS]->type == N_SEQ) {
        check_regions(cx);
        check_residency(cx);
    }
}

static const struct key top_keys[] = {
    [T_WORKERS] = {"workers", set_workers, .lo = 1, .hi = 1024},
    [T_USER] = {"user", set_string, offsetof(struct mrd_config, user), .aux = NULL},
    [T_LISTENERS] = {"listeners", set_seq, offsetof(struct mrd_config, listeners),
                     offsetof(struct mrd_config, n_listeners), .aux = &listener_seq,
                     .flags = K_REQUIRED | K_NONEMPTY},
    [T_ADMIN] = {"admin", set_submap, offsetof(struct mrd_config, admin), .aux = &admin_table},
    [T_TIMEOUTS] = {"timeouts", set_submap, offsetof(struct mrd_config, timeouts), .aux = &timeout_table},
    [T_LIMITS] = {"limits", set_submap, offsetof(struct mrd_config, limits), .aux = &limit_table},
    [T_GEO] = {"geo", set_submap, offsetof(struct mrd_config, geo), .aux = &geo_table},
    [T_CLIENT_IP] = {"client_ip", set_submap, offsetof(struct mrd_config, client_ip), .aux = &client_ip_table},
    [T_SCORING] = {"scoring", set_submap, offsetof(struct mrd_config, scoring), .aux = &scoring_table},
    [T_REGIONS] = {"regions", set_seq, offsetof(struct mrd_config, regions), offsetof(struct mrd_config, n_regions),
                   .aux = &region_seq, .flags = K_REQUIRED | K_NONEMPTY},
    [T_POLICIES] = {"policies", set_submap, offsetof(struct mrd_config, policies), .aux = &policy_table},
    [T_RESPONSE_HEADERS] = {"response_headers", set_submap, 0, .aux = &response_header_table},
    [T_ACCESS_LOG] = {"access_log", set_submap, offsetof(struct mrd_config, access_log), .aux = &access_log_table},
};
static const struct table top_table = TABLE(top_keys, NULL, top_check);

/* ------------------------------------------------------------------------ */
/* public entry points */

int
mrd_parse_duration_ms(const char *s, uint64_t *ms)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    uint64_t v = 0;

    if (*s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    for (size_t i = 0; i < MRD_ARRAY_LEN(units); i++) {
        if (strcmp(s, units[i].unit) == 0) {
            if (v > UINT64_MAX / units[i].ms)
                return -1;
            *ms = v * units[i].ms;
            return 0;
        }
    }
    return -1;
}

int
mrd_parse_rate_milli(const char *s, uint64_t *milli_per_s)
{
    uint64_t n = 0;

    if (*s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (n > (UINT64_MAX / 1000 - (uint64_t)(*s - '0')) / 10)
            return -1;
        n = n * 10 + (uint64_t)(*s - '0');
    }
    if (n == 0)
        return -1;
    if (strcmp(s, "/s") == 0)
        *milli_per_s = n * 1000;
    else if (strcmp(s, "/min") == 0)
        *milli_per_s = (n * 1000 + 30) / 60; /* nearest; never 0 since n >= 1 */
    else
        return -1;
    return 0;
}

static struct mrd_config *
config_new(const char *file)
{
    struct mrd_config *c = mrd_xcalloc(1, sizeof(*c));

    c->file = mrd_xstrdup(file);
    c->workers = 0;
    c->timeouts = (struct mrd_timeouts_conf){2000, 10000, 30000, 60000, 30000};
    c->limits = (struct mrd_limits_conf){16384, 10485760, 100000};
    c->client_ip.header = mrd_xstrdup("X-Forwarded-For");
    c->scoring = (struct mrd_scoring_conf){0.4, 0.3, 0.2, 0.1, 500};
    c->policies.block_status = 403;
    c->response_header_region = 1;
    c->access_log.json = 1;
    return c;
}

void
mrd_config_free(struct mrd_config *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_listeners; i++) {
        struct mrd_listener_conf *l = &c->listeners[i];
        for (size_t j = 0; j < l->n_certs; j++) {
            free(l->certs[j].cert);
            free(l->certs[j].key);
        }
        free(l->certs);
        free(l->address);
    }
    free(c->listeners);
    free(c->admin.address);
    free(c->admin.token);
    free(c->geo.database);
    free(c->geo.networks);
    free(c->client_ip.trusted_proxies);
    free(c->client_ip.header);
    for (size_t i = 0; i < c->n_regions; i++) {
        struct mrd_region_conf *r = &c->regions[i];
        for (size_t j = 0; j < r->n_upstreams; j++)
            free(r->upstreams[j].address);
        free(r->upstreams);
        free(r->name);
        free(r->fallback);
        free(r->health.path);
    }
    free(c->regions);
    for (size_t i = 0; i < c->policies.n_residency; i++) {
        struct mrd_residency_conf *rr = &c->policies.residency[i];
        free(rr->name);
        free(rr->continents);
        free(rr->countries);
        free(rr->region_idx);
    }
    free(c->policies.residency);
    free(c->policies.block_countries);
    free(c->access_log.path);
    free(c->user);
    free(c->file);
    free(c);
}

int
mrd_config_parse(const char *buf, size_t len, const char *file, struct mrd_config **out, struct mrd_diag *diag)
{
    struct ctx cx = {.file = file, .diag = diag};
    size_t start = diag->n;
    struct node *root = NULL;

    *out = NULL;
    cx.cfg = config_new(file);
    if (load_tree(&cx, buf, len, &root) == 0) {
        if (root == NULL || (root->type == N_SCALAR && root->plain && root->len == 0))
            err_at(&cx, 1, 1, "empty configuration (listeners and regions are required)");
        else if (root->type != N_MAP)
            err_at(&cx, root->line, root->col, "the configuration must be a mapping of keys such as listeners: and regions:");
        else
            walk_table(&cx, root, &top_table, cx.cfg);
    }
    node_free(root);
    free(cx.fallback_nodes);
    free(cx.residency_nodes);
    sort_diags(&cx, start);
    free(cx.dpos);
    if (diag->n > start) {
        mrd_config_free(cx.cfg);
        return -1;
    }
    *out = cx.cfg;
    return 0;
}

int
mrd_config_load(const char *path, struct mrd_config **out, struct mrd_diag *diag)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    int rc;

    *out = NULL;
    if (f == NULL) {
        mrd_diag_add(diag, path, 1, 1, "cannot read: %s", strerror(errno));
        return -1;
    }
    do {
        if (len == cap) {
            if (cap >= MAX_FILE_BYTES) {
                mrd_diag_add(diag, path, 1, 1, "cannot read: larger than %u bytes", MAX_FILE_BYTES);
                free(buf);
                fclose(f);
                return -1;
            }
            cap = cap ? cap * 2 : 16384;
            buf = mrd_xrealloc(buf, cap);
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
    } while (got > 0);
    if (ferror(f)) {
        mrd_diag_add(diag, path, 1, 1, "cannot read: %s", strerror(errno));
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    rc = mrd_config_parse(buf, len, path, out, diag);
    free(buf);
    return rc;
}
