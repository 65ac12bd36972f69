/*
 * config-int.h: internal to the configuration loader, shared by config.c (YAML
 * node tree, diagnostics, key-table walker, generic setters) and
 * config_schema.c (the key tables of SPEC section 2 and their checks). Nothing
 * else includes it; the public interface is config.h.
 */
#ifndef MERIDIAN_CONFIG_INT_H
#define MERIDIAN_CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>

#include "meridian/config.h"

#define MRD_UNBOUNDED INT64_MAX /* key.hi: no upper bound */

/* key.flags */
#define MRD_K_REQUIRED 0x1u
#define MRD_K_NONEMPTY 0x2u /* sequences: at least one item */
#define MRD_K_GT 0x4u       /* numbers: lo is exclusive */

/* A YAML value, built from libyaml events; owned by mrd_config_parse. */
enum mrd_conf_ntype { MRD_N_SCALAR, MRD_N_SEQ, MRD_N_MAP };

struct mrd_conf_node {
    enum mrd_conf_ntype type;
    unsigned line, col; /* 1-based */
    int plain;          /* scalar written without quotes */
    char *str;          /* scalar value, NUL-terminated */
    size_t len;
    struct mrd_conf_node **items; /* sequence items; mapping key, value, key, value... */
    size_t n, cap;
};

struct mrd_conf_dpos; /* config.c only */

/* parse state; the node tree lives until the end of mrd_config_parse */
struct mrd_conf_ctx {
    const char *file;
    struct mrd_diag *diag;
    struct mrd_config *cfg;
    char path[256]; /* "regions[2].health_check" of the value being set */
    size_t pathlen;
    char show[2][96];
    int showi;
    struct mrd_conf_dpos *dpos; /* positions of our messages, to sort them at the end */
    size_t n_dpos;
    const struct mrd_conf_node **fallback_nodes;  /* per region: the fallback value */
    const struct mrd_conf_node **residency_nodes; /* per residency rule: its regions list */
    size_t walk_errors; /* errors in the keys of the mapping whose check runs */
    const struct mrd_conf_node *rate_scope; /* policies.client_rate_limit.scope, checked against cluster */
};

/* Key tables: one per mapping of the schema (config_schema.c), walked by config.c. */
struct mrd_conf_key;
typedef int (*mrd_conf_set_fn)(struct mrd_conf_ctx *, const struct mrd_conf_key *, const struct mrd_conf_node *,
                               void *);

struct mrd_conf_key {
    const char *name;
    mrd_conf_set_fn set;
    size_t off, off2, off3; /* fields of obj the setter writes */
    int64_t lo, hi;         /* bounds of numbers */
    const void *aux;        /* sub-table, sequence description, word list */
    unsigned flags;
};

struct mrd_conf_table {
    const struct mrd_conf_key *keys;
    size_t n;
    /* pre: before the keys are set; check: after, with each key's value node or NULL */
    void (*pre)(struct mrd_conf_ctx *, void *obj);
    void (*check)(struct mrd_conf_ctx *, const struct mrd_conf_node *map, void *obj,
                  const struct mrd_conf_node **vals);
};

/* aux of mrd_conf_set_seq */
struct mrd_conf_seq {
    size_t size; /* of one element */
    const struct mrd_conf_table *item;
    void (*init)(void *elem); /* defaults, before the item is walked */
};

/* aux of mrd_conf_get_word / mrd_conf_set_word: a list ended by {NULL, 0} */
struct mrd_conf_word {
    const char *name;
    int value;
};

/* the top-level mapping (config_schema.c) */
extern const struct mrd_conf_table mrd_conf_top_table;

/* config.c: diagnostics. err_at reports at a position; bad reports about the
 * value n, prefixed with the current key path. show / show_str quote a value
 * for a message (two rotating buffers in cx). */
void mrd_conf_err_at(struct mrd_conf_ctx *cx, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void mrd_conf_bad(struct mrd_conf_ctx *cx, const struct mrd_conf_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *mrd_conf_show_str(struct mrd_conf_ctx *cx, const char *s, size_t len);
const char *mrd_conf_show(struct mrd_conf_ctx *cx, const struct mrd_conf_node *n);

/* config.c: value helpers; those returning a pointer or int report and return NULL / -1 on error */
int mrd_conf_expect(struct mrd_conf_ctx *cx, const struct mrd_conf_node *n, enum mrd_conf_ntype t);
const char *mrd_conf_scalar(struct mrd_conf_ctx *cx, const struct mrd_conf_node *n);
const char *mrd_conf_nonempty(struct mrd_conf_ctx *cx, const struct mrd_conf_node *n);
int mrd_conf_parse_int(const char *s, int64_t *out); /* 0, -1 not an integer, -2 overflow; no report */
void *mrd_conf_field(void *obj, size_t off);
void mrd_conf_replace_str(char **dst, const char *s);
void mrd_conf_wipe(void *p, size_t n);   /* zero memory that held a secret (not optimised away) */
void mrd_conf_free_secret(char **s);     /* wipe, free and clear a NUL-terminated secret */

/* config.c: the key path in messages; key and idx return the old length for pop */
size_t mrd_conf_path_key(struct mrd_conf_ctx *cx, const char *name);
size_t mrd_conf_path_idx(struct mrd_conf_ctx *cx, size_t idx);
void mrd_conf_path_pop(struct mrd_conf_ctx *cx, size_t old);

/* config.c: generic setters (mrd_conf_set_fn) writing at key.off, and getters */
int mrd_conf_get_int(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, int64_t *v);
int mrd_conf_get_word(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n);
int mrd_conf_set_submap(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n,
                        void *obj);
int mrd_conf_set_seq(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj);
int mrd_conf_set_string(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n,
                        void *obj);
int mrd_conf_set_u64(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj);
int mrd_conf_set_uint(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj);
int mrd_conf_set_int(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj);
int mrd_conf_set_double(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n,
                        void *obj);
int mrd_conf_set_duration(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n,
                          void *obj);
int mrd_conf_set_bool(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj);
int mrd_conf_set_rate(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj);
int mrd_conf_set_word(struct mrd_conf_ctx *cx, const struct mrd_conf_key *k, const struct mrd_conf_node *n, void *obj);

#endif
