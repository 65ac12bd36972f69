/*
 * config.c: the generic half of the configuration loader: YAML (libyaml) buffer
 * -> node tree, a key-table walker (name, setter, offset, bounds; as nginx's
 * command tables), typed setters, and "FILE:LINE:COL: message" diagnostics that
 * accumulate while the walk keeps going. The tables are in config_schema.c.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "meridian/common.h"
#include "meridian/config.h"
#include "meridian/config-int.h"

#define MAX_DEPTH 64                      /* YAML nesting; the schema needs 6 */
#define MAX_KEYS 24                       /* keys in the largest table (walk_table checks) */
#define MAX_FILE_BYTES (16u << 20)        /* mrd_config_load refuses larger files */
#define MAX_DURATION_MS 31536000000ull    /* 365 days */

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

struct mrd_conf_dpos {
    unsigned line, col;
    size_t seq;
};

static struct mrd_conf_node *
node_new(enum mrd_conf_ntype type, yaml_mark_t mark)
{
    struct mrd_conf_node *n = mrd_xcalloc(1, sizeof(*n));

    n->type = type;
    n->line = (unsigned)mark.line + 1;
    n->col = (unsigned)mark.column + 1;
    return n;
}

static void
node_free(struct mrd_conf_node *n)
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
node_append(struct mrd_conf_node *parent, struct mrd_conf_node *child)
{
    if (parent->n == parent->cap) {
        parent->cap = parent->cap ? parent->cap * 2 : 4;
        parent->items = mrd_xrealloc(parent->items, parent->cap * sizeof(*parent->items));
    }
    parent->items[parent->n++] = child;
}

void __attribute__((format(printf, 4, 5)))
mrd_conf_err_at(struct mrd_conf_ctx *cx, unsigned line, unsigned col, const char *fmt, ...)
{
    va_list ap;

    cx->dpos = mrd_xrealloc(cx->dpos, (cx->n_dpos + 1) * sizeof(*cx->dpos));
    cx->dpos[cx->n_dpos] = (struct mrd_conf_dpos){line, col, cx->n_dpos};
    cx->n_dpos++;
    va_start(ap, fmt);
    diag_vadd(cx->diag, cx->file, line, col, fmt, ap);
    va_end(ap);
}

/* An error about the value n, prefixed with the path of the key being set. */
void __attribute__((format(printf, 3, 4)))
mrd_conf_bad(struct mrd_conf_ctx *cx, const struct mrd_conf_node *n, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (cx->pathlen > 0)
        mrd_conf_err_at(cx, n->line, n->col, "%s: %s", cx->path, msg);
    else
        mrd_conf_err_at(cx, n->line, n->col, "%s", msg);
}

static int
dpos_cmp(const void *a, const void *b)
{
    const struct mrd_conf_dpos *x = a, *y = b;

    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Cross-checks run after the walk; sort so that output reads top to bottom. */
static void
sort_diags(struct mrd_conf_ctx *cx, size_t start)
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
const char *
mrd_conf_show_str(struct mrd_conf_ctx *cx, const char *s, size_t len)
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

const char *
mrd_conf_show(struct mrd_conf_ctx *cx, const struct mrd_conf_node *n)
{
    switch (n->type) {
    case MRD_N_MAP:
        return "a mapping";
    case MRD_N_SEQ:
        return "a sequence";
    default:
        if (n->plain && n->len == 0)
            return "an empty value";
        return mrd_conf_show_str(cx, n->str, n->len);
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

/* The position (1-based line and column) just after the first end bytes of
 * UTF-8 text, counted as libyaml's marks are: a leading BOM is not a column;
 * LF, CR, CR LF, NEL, LS and PS each end a line; a column is a character. */
static void
text_pos(const char *buf, size_t end, unsigned *linep, unsigned *colp)
{
    const unsigned char *u = (const unsigned char *)buf;
    unsigned line = 1, col = 1;
    size_t i = 0;

    if (end >= 3 && u[0] == 0xef && u[1] == 0xbb && u[2] == 0xbf)
        i = 3;
    for (; i < end; i++) {
        if ((u[i] == '\r' && !(i + 1 < end && u[i + 1] == '\n')) || u[i] == '\n' ||
            (u[i] == 0xc2 && i + 1 < end && u[i + 1] == 0x85) ||
            (u[i] == 0xe2 && i + 2 < end && u[i + 1] == 0x80 && (u[i + 2] == 0xa8 || u[i + 2] == 0xa9))) {
            line++;
            col = 1; /* a NEL/LS/PS's continuation bytes are not counted below */
        } else if (u[i] != '\r' && (u[i] & 0xc0) != 0x80) { /* the CR of CR LF: the LF ends the line */
            col++;
        }
    }
    *linep = line;
    *colp = col;
}

static void
syntax_error(struct mrd_conf_ctx *cx, const yaml_parser_t *p, const char *buf, size_t len)
{
    unsigned line = (unsigned)p->problem_mark.line + 1, col = (unsigned)p->problem_mark.column + 1;
    const char *problem = p->problem != NULL ? p->problem : "cannot parse";

    if (p->error == YAML_MEMORY_ERROR) {
        mrd_conf_err_at(cx, 1, 1, "out of memory while parsing YAML");
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        /* reader errors carry a byte offset rather than a mark */
        text_pos(buf, p->problem_offset < len ? p->problem_offset : len, &line, &col);
        mrd_conf_err_at(cx, line, col, "YAML syntax error: %s (byte 0x%02x)", problem,
                        (unsigned)p->problem_value & 0xff);
        return;
    }
    /* at the end of a file without a final line break libyaml's mark is on
     * the line after the last: show the end of the last line instead */
    if (!(len >= 2 && ((unsigned char)buf[0] == 0xff || (unsigned char)buf[0] == 0xfe))) { /* not UTF-16 */
        unsigned eline, ecol;

        text_pos(buf, len, &eline, &ecol);
        if (line > eline || (line == eline && col > ecol)) {
            line = eline;
            col = ecol;
        }
    }
    if (char_at(buf, len, p->problem_mark) == '\t')
        mrd_conf_err_at(cx, line, col, "YAML syntax error: %s (tabs are not allowed for indentation)", problem);
    else if (p->context != NULL)
        mrd_conf_err_at(cx, line, col, "YAML syntax error: %s (%s at line %u, column %u)", problem, p->context,
                        (unsigned)p->context_mark.line + 1, (unsigned)p->context_mark.column + 1);
    else
        mrd_conf_err_at(cx, line, col, "YAML syntax error: %s", problem);
}

/* Build the node tree. Returns 0 with *rootp (NULL for an empty stream), or
 * -1 after adding a diagnostic. */
static int
load_tree(struct mrd_conf_ctx *cx, const char *buf, size_t len, struct mrd_conf_node **rootp)
{
    struct mrd_conf_node *stack[MAX_DEPTH], *root = NULL, *n;
    size_t depth = 0;
    int docs = 0, done = 0, rc = 0;
    yaml_parser_t p;
    yaml_event_t ev;

    *rootp = NULL;
    if (!yaml_parser_initialize(&p)) {
        mrd_conf_err_at(cx, 1, 1, "out of memory while parsing YAML");
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
                mrd_conf_err_at(cx, (unsigned)ev.start_mark.line + 1, (unsigned)ev.start_mark.column + 1,
                                "only one YAML document is allowed");
                rc = -1;
            }
            break;
        case YAML_ALIAS_EVENT:
            mrd_conf_err_at(cx, (unsigned)ev.start_mark.line + 1, (unsigned)ev.start_mark.column + 1,
                            "YAML aliases (*%s) are not supported; write the value out",
                            (const char *)ev.data.alias.anchor);
            rc = -1;
            break;
        case YAML_SCALAR_EVENT:
            n = node_new(MRD_N_SCALAR, ev.start_mark);
            n->str = mrd_xstrndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
            n->len = ev.data.scalar.length;
            n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (depth == MAX_DEPTH) {
                mrd_conf_err_at(cx, (unsigned)ev.start_mark.line + 1, (unsigned)ev.start_mark.column + 1,
                                "YAML nested deeper than %d levels", MAX_DEPTH);
                rc = -1;
                break;
            }
            n = node_new(ev.type == YAML_MAPPING_START_EVENT ? MRD_N_MAP : MRD_N_SEQ, ev.start_mark);
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
            if (n->type != MRD_N_SCALAR)
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
tname(enum mrd_conf_ntype t)
{
    return t == MRD_N_MAP ? "a mapping" : t == MRD_N_SEQ ? "a sequence" : "a single value";
}

int
mrd_conf_expect(struct mrd_conf_ctx *cx, const struct mrd_conf_node *n, enum mrd_conf_ntype t)
{
    if (n->type == t)
        return 0;
    mrd_conf_bad(cx, n, "expected %s, got %s", tname(t), mrd_conf_show(cx, n));
    return -1;
}

/* The scalar as a C string, or NULL after an error. */
const char *
mrd_conf_scalar(struct mrd_conf_ctx *cx, const struct mrd_conf_node *n)
{
    if (mrd_conf_expect(cx, n, MRD_N_SCALAR) == -1)
        return NULL;
    if (strlen(n->str) != n->len) {
        mrd_conf_bad(cx, n, "must not contain NUL characters");
        return NULL;
    }
    return n->str;
}

const char *
mrd_conf_nonempty(struct mrd_conf_ctx *cx, const struct mrd_conf_node *n)
{
    const char *s = mrd_conf_scalar(cx, n);

    if (s != NULL && *s == '\0') {
        mrd_conf_bad(cx, n, "must not be empty");
        return NULL;
    }
    return s;
}

/* Decimal integer with optional '-'. Returns 0, -1 (not an integer), -2 (overflow). */
int
mrd_conf_parse_int(const char *s, int64_t *out)
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

void *
mrd_conf_field(void *obj, size_t off)
{
    return (char *)obj + off;
}

void
mrd_conf_replace_str(char **dst, const char *s)
{
    free(*dst);
    *dst = mrd_xstrdup(s);
}

void
mrd_conf_wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;

    while (n-- > 0)
        *v++ = 0;
}

void
mrd_conf_free_secret(char **s)
{
    if (*s != NULL) {
        mrd_conf_wipe(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

/* ------------------------------------------------------------------------ */
/* the key-table walker */

/* Append sep and text to the path (dropped if it does not fit); returns the
 * old length for mrd_conf_path_pop. */
static size_t
path_append(struct mrd_conf_ctx *cx, const char *sep, const char *text)
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

size_t
mrd_conf_path_key(struct mrd_conf_ctx *cx, const char *name)
{
    return path_append(cx, cx->pathlen > 0 ? "." : "", name);
}

size_t
mrd_conf_path_idx(struct mrd_conf_ctx *cx, size_t idx)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "[%zu]", idx);
    return path_append(cx, "", buf);
}

void
mrd_conf_path_pop(struct mrd_conf_ctx *cx, size_t old)
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
unknown_key(struct mrd_conf_ctx *cx, const struct mrd_conf_node *k, const struct mrd_conf_table *t)
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
        mrd_conf_err_at(cx, k->line, k->col, "unknown key %s %s (did you mean \"%s\"?)", mrd_conf_show(cx, k), where,
                        hint);
    else
        mrd_conf_err_at(cx, k->line, k->col, "unknown key %s %s", mrd_conf_show(cx, k), where);
}

/* Walk a mapping with a key table: unknown and duplicate keys, then setters,
 * then required keys, then the table's cross-field check. */
static int
walk_table(struct mrd_conf_ctx *cx, const struct mrd_conf_node *map, const struct mrd_conf_table *t, void *obj)
{
    const struct mrd_conf_node *vals[MAX_KEYS] = {0};
    size_t before = cx->n_dpos;

    if (t->n > MAX_KEYS)
        abort(); /* a table of config_schema.c outgrew vals[]: raise MAX_KEYS */
    if (mrd_conf_expect(cx, map, MRD_N_MAP) == -1)
        return -1;
    if (t->pre != NULL)
        t->pre(cx, obj);
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const struct mrd_conf_node *k = map->items[i], *v = map->items[i + 1];
        size_t idx, prev, mark;

        if (k->type != MRD_N_SCALAR) {
            mrd_conf_err_at(cx, k->line, k->col, "%s%skeys must be plain names, not %s", cx->path,
                            cx->pathlen ? ": " : "", tname(k->type));
            continue;
        }
        for (prev = 0; prev < i; prev += 2) {
            const struct mrd_conf_node *pk = map->items[prev];
            if (pk->type == MRD_N_SCALAR && pk->len == k->len && memcmp(pk->str, k->str, k->len) == 0)
                break;
        }
        if (prev < i) {
            mrd_conf_err_at(cx, k->line, k->col, "duplicate key %s%s%s (first at line %u)", mrd_conf_show(cx, k),
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
        mark = mrd_conf_path_key(cx, t->keys[idx].name);
        t->keys[idx].set(cx, &t->keys[idx], v, obj);
        mrd_conf_path_pop(cx, mark);
        vals[idx] = v;
    }
    for (size_t idx = 0; idx < t->n; idx++) {
        if ((t->keys[idx].flags & MRD_K_REQUIRED) && vals[idx] == NULL) {
            if (cx->pathlen > 0)
                mrd_conf_err_at(cx, map->line, map->col, "%s: missing required key \"%s\"", cx->path,
                                t->keys[idx].name);
            else
                mrd_conf_err_at(cx, 1, 1, "missing required top-level key \"%s\"", t->keys[idx].name);
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

int
mrd_conf_set_submap(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    return walk_table(cx, n, k->aux, mrd_conf_field(obj, k->off));
}

/* A sequence of mappings: off = element array, off2 = size_t count. */
int
mrd_conf_set_seq(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    const struct mrd_conf_seq *d = k->aux;
    char *elems;

    if (mrd_conf_expect(cx, n, MRD_N_SEQ) == -1)
        return -1;
    if (n->n == 0) {
        if (k->flags & MRD_K_NONEMPTY)
            mrd_conf_bad(cx, n, "must have at least one entry");
        return 0;
    }
    elems = mrd_xcalloc(n->n, d->size);
    memcpy(mrd_conf_field(obj, k->off), &elems, sizeof(elems));
    *(size_t *)mrd_conf_field(obj, k->off2) = n->n;
    for (size_t i = 0; i < n->n; i++) {
        size_t mark = mrd_conf_path_idx(cx, i);
        if (d->init != NULL)
            d->init(elems + i * d->size);
        walk_table(cx, n->items[i], d->item, elems + i * d->size);
        mrd_conf_path_pop(cx, mark);
    }
    return 0;
}

int
mrd_conf_set_string(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    const char *s = mrd_conf_nonempty(cx, n);

    if (s == NULL)
        return -1;
    mrd_conf_replace_str(mrd_conf_field(obj, k->off), s);
    return 0;
}

int
mrd_conf_get_int(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, int64_t *v)
{
    const char *s = mrd_conf_scalar(cx, n);
    int rc;

    if (s == NULL)
        return -1;
    rc = mrd_conf_parse_int(s, v);
    if (rc == -1) {
        mrd_conf_bad(cx, n, "expected an integer, got %s", mrd_conf_show(cx, n));
        return -1;
    }
    if (rc == -2 || *v < k->lo || *v > k->hi) {
        if (k->hi == MRD_UNBOUNDED)
            mrd_conf_bad(cx, n, "must be an integer >= %lld, got %s", (long long)k->lo, mrd_conf_show(cx, n));
        else
            mrd_conf_bad(cx, n, "must be an integer from %lld to %lld, got %s", (long long)k->lo, (long long)k->hi,
                         mrd_conf_show(cx, n));
        return -1;
    }
    return 0;
}

int
mrd_conf_set_u64(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    int64_t v;

    if (mrd_conf_get_int(cx, k, n, &v) == -1)
        return -1;
    *(uint64_t *)mrd_conf_field(obj, k->off) = (uint64_t)v;
    return 0;
}

int
mrd_conf_set_uint(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    int64_t v;

    if (mrd_conf_get_int(cx, k, n, &v) == -1)
        return -1;
    *(unsigned *)mrd_conf_field(obj, k->off) = (unsigned)v;
    return 0;
}

int
mrd_conf_set_int(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    int64_t v;

    if (mrd_conf_get_int(cx, k, n, &v) == -1)
        return -1;
    *(int *)mrd_conf_field(obj, k->off) = (int)v;
    return 0;
}

/* An integer or a decimal number; no hex, inf or nan. */
int
mrd_conf_set_double(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    const char *s = mrd_conf_scalar(cx, n);
    char *end;
    double v;

    if (s == NULL)
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || strspn(s, "0123456789+-.eE") != n->len || end == s) {
        mrd_conf_bad(cx, n, "expected a number, got %s", mrd_conf_show(cx, n));
        return -1;
    }
    if (!isfinite(v) || ((k->flags & MRD_K_GT) ? v <= (double)k->lo : v < (double)k->lo) ||
        (k->hi != MRD_UNBOUNDED && v > (double)k->hi)) {
        if (k->flags & MRD_K_GT)
            mrd_conf_bad(cx, n, "must be a number > %lld, got %s", (long long)k->lo, mrd_conf_show(cx, n));
        else if (k->hi == MRD_UNBOUNDED)
            mrd_conf_bad(cx, n, "must be a number >= %lld, got %s", (long long)k->lo, mrd_conf_show(cx, n));
        else
            mrd_conf_bad(cx, n, "must be a number from %lld to %lld, got %s", (long long)k->lo, (long long)k->hi,
                         mrd_conf_show(cx, n));
        return -1;
    }
    *(double *)mrd_conf_field(obj, k->off) = v;
    return 0;
}

int
mrd_conf_set_duration(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    const char *s = mrd_conf_scalar(cx, n);
    uint64_t ms;

    if (s == NULL)
        return -1;
    if (mrd_parse_duration_ms(s, &ms) == -1) {
        mrd_conf_bad(cx, n, "expected a duration such as 250ms, 2s, 5m or 1h, got %s", mrd_conf_show(cx, n));
        return -1;
    }
    if (ms == 0 || ms > MAX_DURATION_MS) {
        mrd_conf_bad(cx, n, "must be greater than 0 and at most 8760h, got %s", mrd_conf_show(cx, n));
        return -1;
    }
    *(uint64_t *)mrd_conf_field(obj, k->off) = ms;
    return 0;
}

int
mrd_conf_set_bool(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    const char *s = mrd_conf_scalar(cx, n);

    if (s == NULL)
        return -1;
    if (strcmp(s, "true") != 0 && strcmp(s, "false") != 0) {
        mrd_conf_bad(cx, n, "expected true or false, got %s", mrd_conf_show(cx, n));
        return -1;
    }
    *(int *)mrd_conf_field(obj, k->off) = s[0] == 't';
    return 0;
}

/* "100/s" or "1000/min", stored as uint64_t thousandths per second */
int
mrd_conf_set_rate(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    const char *s = mrd_conf_scalar(cx, n);
    uint64_t milli;

    if (s == NULL)
        return -1;
    if (mrd_parse_rate_milli(s, &milli) == -1) {
        mrd_conf_bad(cx, n, "expected a rate such as 100/s or 1000/min (at least 1), got %s", mrd_conf_show(cx, n));
        return -1;
    }
    *(uint64_t *)mrd_conf_field(obj, k->off) = milli;
    return 0;
}

/* One of the words in aux (NULL-terminated); returns the value or -1. */
int
mrd_conf_get_word(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n)
{
    const char *s = mrd_conf_scalar(cx, n);
    const struct mrd_conf_word *w;
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
    mrd_conf_bad(cx, n, "expected one of %s, got %s", list, mrd_conf_show(cx, n));
    return -1;
}

int
mrd_conf_set_word(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj)
{
    int v = mrd_conf_get_word(cx, k, n);

    if (v == -1)
        return -1;
    *(int *)mrd_conf_field(obj, k->off) = v;
    return 0;
}
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
    c->timeouts = (struct mrd_timeouts_conf){.connect_ms = 2000,
                                             .request_header_ms = 10000,
                                             .upstream_response_ms = 30000,
                                             .idle_ms = 60000,
                                             .shutdown_ms = 30000,
                                             .request_body_ms = 30000};
    c->limits = (struct mrd_limits_conf){16384, 10485760, 100000};
    c->geo.reload_check_ms = 60000;
    c->client_ip.header = mrd_xstrdup("X-Forwarded-For");
    c->scoring = (struct mrd_scoring_conf){0.4, 0.3, 0.2, 0.1, 500};
    c->policies.block_status = 403;
    c->response_header_region = 1;
    c->access_log.json = 1;
    c->error_log.level = 2;
    c->dns.refresh_ms = 30000;
    c->dns.hosts = mrd_xstrdup("/etc/hosts");
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
        for (size_t j = 0; j < r->n_upstreams; j++) {
            free(r->upstreams[j].address);
            free(r->upstreams[j].host);
        }
        free(r->upstreams);
        free(r->name);
        free(r->fallback);
        free(r->health.path);
        free(r->tls.ca);
        free(r->tls.server_name);
        free(r->tls.certificate.cert);
        free(r->tls.certificate.key);
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
    free(c->error_log.path);
    for (size_t i = 0; i < c->dns.n_resolvers; i++)
        free(c->dns.resolvers[i].address);
    free(c->dns.resolvers);
    free(c->dns.hosts);
    free(c->cluster.address);
    free(c->cluster.host);
    free(c->cluster.unix_path);
    free(c->cluster.password_file);
    mrd_conf_free_secret(&c->cluster.password);
    free(c->cluster.name);
    free(c->cluster.instance);
    free(c->user);
    free(c->file);
    free(c);
}

int
mrd_config_parse(const char *buf, size_t len, const char *file, struct mrd_config **out, struct mrd_diag *diag)
{
    struct mrd_conf_ctx cx = {.file = file, .diag = diag};
    size_t start = diag->n;
    struct mrd_conf_node *root = NULL;

    *out = NULL;
    cx.cfg = config_new(file);
    if (load_tree(&cx, buf, len, &root) == 0) {
        if (root == NULL || (root->type == MRD_N_SCALAR && root->plain && root->len == 0))
            mrd_conf_err_at(&cx, 1, 1, "empty configuration (listeners and regions are required)");
        else if (root->type != MRD_N_MAP)
            mrd_conf_err_at(&cx, root->line, root->col,
                            "the configuration must be a mapping of keys such as listeners: and regions:");
        else
            walk_table(&cx, root, &mrd_conf_top_table, cx.cfg);
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
    return mrd_config_load_text(path, out, diag, NULL, NULL);
}

int
mrd_config_load_text(const char *path, struct mrd_config **out, struct mrd_diag *diag, char **text, size_t *text_len)
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
    if (rc == 0 && text != NULL) {
        *text = buf;
        *text_len = len;
        return rc;
    }
    free(buf);
    return rc;
}
