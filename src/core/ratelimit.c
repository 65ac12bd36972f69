/*
 * ratelimit.c: token buckets (GCRA form, one atomic word), the sliding
 * one-second rate counter and the bounded per-client limit table (see
 * ratelimit.h). Pure: time is an argument; the only cross-thread machinery is
 * C11 atomics (CAS on one word, and atomic_flag spin locks per table set).
 * Deliberately not here: clocks, Retry-After header formatting, logging.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "meridian/common.h"
#include "meridian/ratelimit.h"

/* fixed point: 2^-20 ms per tick */
#define TICK_SHIFT 20
#define TICKS_PER_MS ((uint64_t)1 << TICK_SHIFT)
/* elapsed time is clamped to 2^43 ms (~278 years) and tau to 2^62 ticks so
 * that now + tau + interval never wraps a uint64_t */
#define MAX_ELAPSED_MS ((uint64_t)1 << 43)
#define MAX_TAU ((uint64_t)1 << 62)

#define CLIENT_WAYS 8

/* ------------------------------------------------------------------------ */
/* GCRA core over plain values                                              */

/* ticks per token for rate_milli tokens per 1000 s: 10^6 / rate ms, rounded
 * to nearest, at least one tick */
static uint64_t
interval_ticks(uint64_t rate_milli_per_s)
{
    uint64_t num = (uint64_t)1000000 << TICK_SHIFT;
    uint64_t t = (num + rate_milli_per_s / 2) / rate_milli_per_s;

    return t ? t : 1;
}

static uint64_t
tau_ticks(uint64_t burst, uint64_t interval)
{
    if (burst > MAX_TAU / interval)
        return MAX_TAU;
    return burst * interval;
}

/* now_ms as ticks since base_ms: earlier than base clamps to 0, huge gaps to
 * MAX_ELAPSED_MS */
static uint64_t
ticks_since(uint64_t base_ms, uint64_t now_ms)
{
    uint64_t d;

    if (now_ms <= base_ms)
        return 0;
    d = now_ms - base_ms;
    if (d > MAX_ELAPSED_MS)
        d = MAX_ELAPSED_MS;
    return d << TICK_SHIFT;
}

/* The TAT after admitting one at now; admitted when it is within tau of now. */
static uint64_t
tat_after(uint64_t tat, uint64_t now, uint64_t interval)
{
    return (tat > now ? tat : now) + interval;
}

static uint64_t
tokens_milli_from(uint64_t tat, uint64_t now, uint64_t interval, uint64_t tau)
{
    uint64_t debt = tat > now ? tat - now : 0;
    uint64_t avail;

    if (debt >= tau)
        return 0;
    avail = tau - debt;
    if (avail / interval >= UINT64_MAX / 1000 - 1)
        return UINT64_MAX; /* an absurd burst: saturate rather than wrap */
    return avail / interval * 1000 + avail % interval * 1000 / interval;
}

static uint64_t
wait_ms_from(uint64_t tat, uint64_t now, uint64_t interval, uint64_t tau)
{
    uint64_t next = tat_after(tat, now, interval);
    uint64_t over;

    if (next - now <= tau)
        return 0;
    over = next - now - tau;
    return (over + TICKS_PER_MS - 1) >> TICK_SHIFT;
}

/* ------------------------------------------------------------------------ */
/* token bucket                                                             */

void
mrd_bucket_init(struct mrd_bucket *b, uint64_t rate_milli_per_s, uint64_t burst, uint64_t now_ms)
{
    b->rate_milli_per_s = rate_milli_per_s ? rate_milli_per_s : 1;
    b->burst = burst ? burst : 1;
    uint64_t interval = interval_ticks(b->rate_milli_per_s);
    atomic_init(&b->_interval, interval);
    atomic_init(&b->_tau, tau_ticks(b->burst, interval));
    b->_base_ms = now_ms;
    atomic_init(&b->_tat, 0); /* == now: full */
}

void
mrd_bucket_retune(struct mrd_bucket *b, uint64_t rate_milli_per_s, uint64_t burst)
{
    uint64_t interval = interval_ticks(rate_milli_per_s ? rate_milli_per_s : 1);

    atomic_store_explicit(&b->_interval, interval, memory_order_relaxed);
    atomic_store_explicit(&b->_tau, tau_ticks(burst ? burst : 1, interval), memory_order_relaxed);
}

static inline uint64_t
ld(const _Atomic uint64_t *v)
{
    return atomic_load_explicit((_Atomic uint64_t *)v, memory_order_relaxed);
}

int
mrd_bucket_take(struct mrd_bucket *b, uint64_t now_ms)
{
    uint64_t now = ticks_since(b->_base_ms, now_ms);
    uint64_t tat = atomic_load_explicit(&b->_tat, memory_order_relaxed);
    uint64_t next;

    /* the word is the whole state, so relaxed ordering suffices; a failed
     * CAS reloads tat and the decision is made again on the fresh value */
    do {
        next = tat_after(tat, now, ld(&b->_interval));
        if (next - now > ld(&b->_tau))
            return 0;
    } while (!atomic_compare_exchange_weak_explicit(&b->_tat, &tat, next, memory_order_relaxed,
                                                    memory_order_relaxed));
    return 1;
}

int
mrd_bucket_peek(const struct mrd_bucket *b, uint64_t now_ms)
{
    uint64_t now = ticks_since(b->_base_ms, now_ms);
    uint64_t tat = atomic_load_explicit(&((struct mrd_bucket *)b)->_tat, memory_order_relaxed);

    return tat_after(tat, now, ld(&b->_interval)) - now <= ld(&b->_tau);
}

uint64_t
mrd_bucket_tokens_milli(const struct mrd_bucket *b, uint64_t now_ms)
{
    uint64_t now = ticks_since(b->_base_ms, now_ms);
    uint64_t tat = atomic_load_explicit(&((struct mrd_bucket *)b)->_tat, memory_order_relaxed);

    return tokens_milli_from(tat, now, ld(&b->_interval), ld(&b->_tau));
}

uint64_t
mrd_bucket_wait_ms(const struct mrd_bucket *b, uint64_t now_ms)
{
    uint64_t now = ticks_since(b->_base_ms, now_ms);
    uint64_t tat = atomic_load_explicit(&((struct mrd_bucket *)b)->_tat, memory_order_relaxed);

    return wait_ms_from(tat, now, ld(&b->_interval), ld(&b->_tau));
}

uint64_t
mrd_retry_after_s(uint64_t wait_ms)
{
    uint64_t s = wait_ms / 1000 + (wait_ms % 1000 != 0);

    return s ? s : 1;
}

/* ------------------------------------------------------------------------ */
/* sliding one-second rate                                                  */

#define SLOT_PERIOD(v) ((uint32_t)((v) >> 32))
#define SLOT_COUNT(v) ((uint32_t)(v))

double
mrd_rate_total_from_values(uint64_t period_ms, uint64_t elapsed_ms, uint64_t curr, uint64_t prev)
{
    if (period_ms == 0)
        return (double)curr;
    if (elapsed_ms > period_ms)
        elapsed_ms = period_ms;
    return (double)curr + (double)prev * (double)(period_ms - elapsed_ms) / (double)period_ms;
}

void
mrd_rate_init(struct mrd_rate *r)
{
    atomic_init(&r->_slot[0], 0);
    atomic_init(&r->_slot[1], 0);
}

void
mrd_rate_add(struct mrd_rate *r, uint64_t now_ms)
{
    uint32_t p = (uint32_t)(now_ms / MRD_RATE_PERIOD_MS);
    _Atomic uint64_t *slot = &r->_slot[p & 1];
    uint64_t v = atomic_load_explicit(slot, memory_order_relaxed);
    uint64_t nv;

    do {
        uint32_t sp = SLOT_PERIOD(v);

        if (sp != p && (int32_t)(p - sp) > 0)
            nv = (uint64_t)p << 32 | 1; /* the slot held an older period: start this one */
        else if (SLOT_COUNT(v) == UINT32_MAX)
            return; /* saturated */
        else
            nv = v + 1; /* this period, or a newer one seen by a lagging clock: count it there */
    } while (!atomic_compare_exchange_weak_explicit(slot, &v, nv, memory_order_relaxed, memory_order_relaxed));
}

double
mrd_rate_per_s(const struct mrd_rate *r, uint64_t now_ms)
{
    struct mrd_rate *rw = (struct mrd_rate *)r;
    uint32_t p = (uint32_t)(now_ms / MRD_RATE_PERIOD_MS);
    uint64_t cur = atomic_load_explicit(&rw->_slot[p & 1], memory_order_relaxed);
    uint64_t prev = atomic_load_explicit(&rw->_slot[(p - 1) & 1], memory_order_relaxed);
    uint64_t c = SLOT_PERIOD(cur) == p ? SLOT_COUNT(cur) : 0;
    uint64_t pv = SLOT_PERIOD(prev) == (uint32_t)(p - 1) ? SLOT_COUNT(prev) : 0;
    double total = mrd_rate_total_from_values(MRD_RATE_PERIOD_MS, now_ms % MRD_RATE_PERIOD_MS, c, pv);

    return total * 1000.0 / MRD_RATE_PERIOD_MS;
}

/* ------------------------------------------------------------------------ */
/* per-client table                                                         */

struct client_entry {
    uint64_t tat;  /* GCRA TAT in ticks since 0 ms */
    uint64_t hash; /* keyed hash of the whole key */
    uint32_t len;  /* key length as given */
    uint32_t unsynced; /* admissions not yet reported to the fleet (tracking tables) */
    uint8_t used;
    uint8_t key[MRD_CLIENT_KEY_MAX]; /* first MRD_CLIENT_KEY_MAX bytes */
};

struct client_set {
    atomic_flag lock;
    struct client_entry way[CLIENT_WAYS];
};

struct mrd_client_limiter {
    struct client_set *sets;
    size_t n_sets;
    size_t ways; /* CLIENT_WAYS, or fewer for a tiny table */
    uint64_t interval, tau;
    uint64_t k0, k1; /* SipHash key */
    atomic_size_t count;
    /* tracking (a fleet, SPEC 8): one bit per set holding unsynced admissions */
    _Atomic uint64_t *dirty;
};

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                                   \
    do {                                                                                                           \
        v0 += v1;                                                                                                  \
        v1 = ROTL(v1, 13);                                                                                         \
        v1 ^= v0;                                                                                                  \
        v0 = ROTL(v0, 32);                                                                                         \
        v2 += v3;                                                                                                  \
        v3 = ROTL(v3, 16);                                                                                         \
        v3 ^= v2;                                                                                                  \
        v0 += v3;                                                                                                  \
        v3 = ROTL(v3, 21);                                                                                         \
        v3 ^= v0;                                                                                                  \
        v2 += v1;                                                                                                  \
        v1 = ROTL(v1, 17);                                                                                         \
        v1 ^= v2;                                                                                                  \
        v2 = ROTL(v2, 32);                                                                                         \
    } while (0)

/* SipHash-1-3 (the variant Rust's HashMap and Redis use for hash tables) */
static uint64_t
siphash13(const uint8_t *in, size_t len, uint64_t k0, uint64_t k1)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = (uint64_t)len << 56, m;
    size_t i;

    for (i = 0; i + 8 <= len; i += 8) {
        m = 0;
        for (int j = 7; j >= 0; j--)
            m = m << 8 | in[i + (size_t)j];
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t j = 0; i + j < len; j++)
        b |= (uint64_t)in[i + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static void
set_lock(struct client_set *s)
{
    while (atomic_flag_test_and_set_explicit(&s->lock, memory_order_acquire)) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
}

static void
set_unlock(struct client_set *s)
{
    atomic_flag_clear_explicit(&s->lock, memory_order_release);
}

static int
entry_is(const struct client_entry *e, uint64_t hash, const void *key, size_t key_len)
{
    return e->used && e->hash == hash && e->len == key_len &&
           memcmp(e->key, key, MRD_MIN(key_len, (size_t)MRD_CLIENT_KEY_MAX)) == 0;
}

struct mrd_client_limiter *
mrd_client_limiter_new(uint64_t rate_milli_per_s, uint64_t burst, size_t max_entries)
{
    struct mrd_client_limiter *l = mrd_xcalloc(1, sizeof(*l));

    if (max_entries == 0)
        max_entries = 1;
    l->ways = MRD_MIN(max_entries, (size_t)CLIENT_WAYS);
    l->n_sets = max_entries / l->ways; /* capacity n_sets * ways never exceeds max_entries */
    l->sets = mrd_xcalloc(l->n_sets, sizeof(*l->sets));
    for (size_t i = 0; i < l->n_sets; i++)
        atomic_flag_clear(&l->sets[i].lock);
    l->interval = interval_ticks(rate_milli_per_s ? rate_milli_per_s : 1);
    l->tau = tau_ticks(burst ? burst : 1, l->interval);
    l->k0 = 0x6d6572696469616eULL; /* "meridian" */
    l->k1 = 0x636c69656e74736bULL;
    atomic_init(&l->count, 0);
    return l;
}

void
mrd_client_limiter_free(struct mrd_client_limiter *l)
{
    if (l == NULL)
        return;
    free(l->dirty);
    free(l->sets);
    free(l);
}

void
mrd_client_limiter_set_seed(struct mrd_client_limiter *l, uint64_t seed0, uint64_t seed1)
{
    l->k0 = seed0;
    l->k1 = seed1;
}

size_t
mrd_client_limiter_capacity(const struct mrd_client_limiter *l)
{
    return l->n_sets * l->ways;
}

size_t
mrd_client_limiter_count(const struct mrd_client_limiter *l)
{
    return atomic_load_explicit(&((struct mrd_client_limiter *)l)->count, memory_order_relaxed);
}

static size_t
set_index(const struct mrd_client_limiter *l, uint64_t h)
{
    return (size_t)(((h >> 32) * (uint64_t)l->n_sets) >> 32);
}

/* the client's entry in set s (locked), made when it is new */
static struct client_entry *
lookup(struct mrd_client_limiter *l, struct client_set *s, uint64_t h, const void *key, size_t key_len,
       uint64_t now)
{
    struct client_entry *e = NULL, *empty = NULL, *full = NULL, *richest = NULL;

    for (size_t i = 0; i < l->ways; i++) {
        struct client_entry *w = &s->way[i];

        if (!w->used) {
            if (empty == NULL)
                empty = w;
        } else if (entry_is(w, h, key, key_len)) {
            e = w;
            break;
        } else if (w->tat <= now) {
            if (full == NULL)
                full = w;
        } else if (richest == NULL || w->tat < richest->tat) {
            richest = w;
        }
    }
    if (e == NULL) {
        /* a new client: a free way, else one whose bucket is full again
         * (forgetting it loses nothing), else the one with most tokens left */
        e = empty ? empty : full ? full : richest;
        if (e == empty)
            atomic_fetch_add_explicit(&l->count, 1, memory_order_relaxed);
        e->used = 1;
        e->hash = h;
        e->len = (uint32_t)MRD_MIN(key_len, (size_t)UINT32_MAX);
        memcpy(e->key, key, MRD_MIN(key_len, (size_t)MRD_CLIENT_KEY_MAX));
        e->tat = now; /* full */
        e->unsynced = 0;
    }
    return e;
}

static void
mark_dirty(struct mrd_client_limiter *l, size_t set)
{
    _Atomic uint64_t *w = &l->dirty[set / 64];
    uint64_t bit = (uint64_t)1 << (set % 64);

    if (!(atomic_load_explicit(w, memory_order_relaxed) & bit))
        atomic_fetch_or_explicit(w, bit, memory_order_relaxed);
}

int
mrd_client_limiter_take_wait(struct mrd_client_limiter *l, const void *key, size_t key_len, uint64_t now_ms,
                             uint64_t *retry_after_ms)
{
    uint64_t h = siphash13(key, key_len, l->k0, l->k1);
    size_t si = set_index(l, h);
    struct client_set *s = &l->sets[si];
    uint64_t now = ticks_since(0, now_ms);
    struct client_entry *e;
    uint64_t next;
    int ok;

    set_lock(s);
    e = lookup(l, s, h, key, key_len, now);
    next = tat_after(e->tat, now, l->interval);
    ok = next - now <= l->tau;
    if (ok) {
        e->tat = next;
        if (l->dirty != NULL && key_len <= MRD_CLIENT_KEY_MAX) {
            if (e->unsynced < UINT32_MAX)
                e->unsynced++;
            mark_dirty(l, si);
        }
    }
    if (retry_after_ms != NULL)
        *retry_after_ms = ok ? 0 : MRD_MAX(1, wait_ms_from(e->tat, now, l->interval, l->tau));
    set_unlock(s);
    return ok;
}

int
mrd_client_limiter_take(struct mrd_client_limiter *l, const void *key, size_t key_len, uint64_t now_ms)
{
    return mrd_client_limiter_take_wait(l, key, key_len, now_ms, NULL);
}

void
mrd_client_limiter_track(struct mrd_client_limiter *l)
{
    if (l->dirty == NULL)
        l->dirty = mrd_xcalloc((l->n_sets + 63) / 64, sizeof(*l->dirty));
}

uint64_t
mrd_client_limiter_interval_us(const struct mrd_client_limiter *l)
{
    return MRD_MAX((l->interval * 1000) >> TICK_SHIFT, 1);
}

uint64_t
mrd_client_limiter_burst(const struct mrd_client_limiter *l)
{
    return MRD_MAX(l->tau / l->interval, 1);
}

size_t
mrd_client_limiter_collect(struct mrd_client_limiter *l, struct mrd_client_report *out, size_t max)
{
    size_t n = 0, words;

    if (l->dirty == NULL)
        return 0;
    words = (l->n_sets + 63) / 64;
    for (size_t w = 0; w < words && n < max; w++) {
        uint64_t bits = atomic_exchange_explicit(&l->dirty[w], 0, memory_order_relaxed);
        while (bits != 0) {
            size_t si = w * 64 + (size_t)__builtin_ctzll(bits);
            struct client_set *s = &l->sets[si];
            int more = 0;
            bits &= bits - 1;
            set_lock(s);
            for (size_t i = 0; i < l->ways; i++) {
                struct client_entry *e = &s->way[i];
                if (!e->used || e->unsynced == 0)
                    continue;
                if (n == max) {
                    more = 1;
                    break;
                }
                memcpy(out[n].key, e->key, e->len);
                out[n].len = e->len;
                out[n].count = e->unsynced;
                e->unsynced = 0;
                n++;
            }
            set_unlock(s);
            if (more || (n == max && bits != 0)) {
                /* the rest waits for the next report */
                if (more)
                    mark_dirty(l, si);
                if (bits != 0)
                    atomic_fetch_or_explicit(&l->dirty[w], bits, memory_order_relaxed);
                return n;
            }
        }
    }
    return n;
}

void
mrd_client_limiter_set_debt(struct mrd_client_limiter *l, const void *key, size_t key_len, uint64_t now_ms,
                            uint64_t debt_us)
{
    uint64_t h = siphash13(key, key_len, l->k0, l->k1);
    struct client_set *s = &l->sets[set_index(l, h)];
    uint64_t now = ticks_since(0, now_ms), cap = l->tau + l->interval, debt;
    struct client_entry *e;

    /* in ticks, at most one token beyond the burst: enough to refuse, and
     * no absurd figure can wrap */
    debt = debt_us >= (UINT64_MAX >> TICK_SHIFT) / 1000 ? cap : MRD_MIN((debt_us << TICK_SHIFT) / 1000, cap);
    set_lock(s);
    e = lookup(l, s, h, key, key_len, now);
    if (e->tat < now + debt)
        e->tat = now + debt;
    set_unlock(s);
}
