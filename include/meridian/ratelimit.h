/*
 * ratelimit.h: region capacity buckets (SPEC 3.4), the sliding one-second
 * admission rate of the health factor (SPEC 3.3) and the per-client rate
 * limit (policies.client_rate_limit). Pure: the caller passes now_ms (a
 * monotonic millisecond clock); nothing here reads a clock, sleeps, logs or
 * uses a threads API. The bucket, the rate and the client table are shared
 * by all workers through C11 atomics only.
 */
#ifndef MERIDIAN_RATELIMIT_H
#define MERIDIAN_RATELIMIT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* token bucket                                                             */

/*
 * A token bucket kept as its GCRA equivalent: the one 64-bit word is the
 * "theoretical arrival time" (TAT) in fixed-point milliseconds (2^-20 ms
 * ticks) since _base_ms. The bucket holds burst - (TAT - now) / interval
 * tokens; taking one moves TAT forward by one interval. Nothing is ever
 * rounded away per refill (there is no refill step: elapsed time is implicit
 * in now - TAT), so a bucket admits rate * T + burst over T seconds; the only
 * error is the interval's 2^-20 ms rounding (< 0.05% at 10^6 tokens/s).
 * The hot path is one atomic load and, only when admitting, one CAS.
 *
 * Time that steps backwards (a worker whose cached clock lags another's) is
 * clamped: it never refills, never wraps, and a stale now can only see the
 * bucket as at most as full as it was at that instant.
 *
 * Owned by: the region registry (it outlives config generations). Embedded;
 * no dispose needed. The fields after _tat are immutable after init.
 */
struct mrd_bucket {
    _Atomic uint64_t _tat; /* ticks since _base_ms; <= now: the bucket is full */
    _Atomic uint64_t _interval; /* ticks per token, >= 1 (mrd_bucket_retune may change it) */
    _Atomic uint64_t _tau;      /* burst * _interval (ticks), saturated */
    uint64_t _base_ms;
    uint64_t rate_milli_per_s; /* as configured, >= 1 */
    uint64_t burst;            /* tokens, >= 1 */
};

/* Start a full bucket (burst tokens) refilling at rate_milli_per_s / 1000
 * tokens per second. A rate of 0 is taken as 1 (one token per 1000 s) and a
 * burst of 0 as 1: a bucket that can never admit is a configuration error
 * that validation already rejects. */
void mrd_bucket_init(struct mrd_bucket *b, uint64_t rate_milli_per_s, uint64_t burst, uint64_t now_ms);

/* Change the rate and burst of a live bucket (a fleet's share, SPEC 8):
 * the debt it carries (TAT - now, in time) is kept, so no burst comes from
 * the change. Safe against concurrent takers: each decision uses the old or
 * the new figures (relaxed atomics). rate_milli_per_s and burst (the fields)
 * keep their configured values. */
void mrd_bucket_retune(struct mrd_bucket *b, uint64_t rate_milli_per_s, uint64_t burst);

/* Take one token at now_ms. Returns 1 when taken, 0 when the bucket is empty
 * (and then nothing changes). Safe from any number of threads. */
int mrd_bucket_take(struct mrd_bucket *b, uint64_t now_ms);

/* 1 when mrd_bucket_take() at now_ms would succeed; takes nothing (for the
 * /v1/route explainer). */
int mrd_bucket_peek(const struct mrd_bucket *b, uint64_t now_ms);

/* Tokens in the bucket at now_ms, in 1/1000 token, 0 .. burst * 1000. A
 * read-only estimate for /v1/status and /v1/route; never takes. */
uint64_t mrd_bucket_tokens_milli(const struct mrd_bucket *b, uint64_t now_ms);

/* Milliseconds until a token is available (0 when one is now), rounded up. */
uint64_t mrd_bucket_wait_ms(const struct mrd_bucket *b, uint64_t now_ms);

/* Retry-After seconds for a wait: rounded up, at least 1. */
uint64_t mrd_retry_after_s(uint64_t wait_ms);

/* ------------------------------------------------------------------------ */
/* sliding one-second admission rate                                        */

#define MRD_RATE_PERIOD_MS 1000

/*
 * HAProxy freq_ctr style: the count of the current one-second period plus
 * the previous period's count weighted by the part of the window that still
 * overlaps it. The estimate moves with every event and glides across period
 * boundaries instead of dropping to zero. Two slots, chosen by the parity of
 * the period, each one 64-bit word (period index << 32 | count), so adding is
 * one load + one CAS and no reader ever sees a half-rotated state.
 *
 * Owned by: the region registry. Embedded; shared by all workers.
 */
struct mrd_rate {
    _Atomic uint64_t _slot[2];
};

void mrd_rate_init(struct mrd_rate *r);

/* Count one event (an admission) at now_ms. */
void mrd_rate_add(struct mrd_rate *r, uint64_t now_ms);

/* Events per second over the one-second window ending at now_ms. */
double mrd_rate_per_s(const struct mrd_rate *r, uint64_t now_ms);

/* The pure core (HAProxy _freq_ctr_total_from_values): the total over a
 * window of period_ms ending elapsed_ms into the current period, given the
 * current and the previous period's counts: curr + prev * (period - elapsed)
 * / period. elapsed_ms above period_ms counts as period_ms. */
double mrd_rate_total_from_values(uint64_t period_ms, uint64_t elapsed_ms, uint64_t curr, uint64_t prev);

/* ------------------------------------------------------------------------ */
/* per-client rate limit                                                    */

/* keys longer than this are told apart by their length, their first
 * MRD_CLIENT_KEY_MAX bytes and a 64-bit keyed hash of the whole key */
#define MRD_CLIENT_KEY_MAX 16

/*
 * A fixed-size, set-associative table of client buckets (8 ways per set,
 * each set behind its own C11 atomic_flag spin lock held for a few dozen
 * instructions). It is shared by all workers, so a client is limited per
 * process, not per worker. Memory is allocated once by _new and never grows:
 * at most `max_entries` clients are tracked (mrd_client_limiter_capacity).
 *
 * Eviction, when a new client lands in a set whose 8 ways are taken:
 *   1. a way whose bucket has refilled to full goes first; that loses
 *      nothing, since a forgotten client starts again with a full bucket;
 *   2. otherwise the way with the earliest TAT (the most tokens left) goes.
 * So a client that is being limited (fewest tokens) is the last one evicted:
 * a flood of one-shot keys, each of which spent a single token, evicts its
 * own kind first, and an active client can only be evicted by 8 other
 * clients of its set that each hold fewer tokens than it does. The set index
 * comes from a keyed hash (SipHash-1-3; see mrd_client_limiter_set_seed) so
 * addresses cannot be chosen to collide into one set.
 *
 * Owned by: the client-limit registry (outlives config generations).
 */
struct mrd_client_limiter;

/* A table for at most max_entries clients (at least 1), each with a bucket
 * of `burst` tokens refilling at rate_milli_per_s / 1000 per second (0 is
 * taken as 1 for both). Aborts on out-of-memory like mrd_xmalloc. */
struct mrd_client_limiter *mrd_client_limiter_new(uint64_t rate_milli_per_s, uint64_t burst, size_t max_entries);

void mrd_client_limiter_free(struct mrd_client_limiter *l);

/* Key the set hash (call before first use, e.g. with getrandom() bytes).
 * Without it the key is a fixed constant. */
void mrd_client_limiter_set_seed(struct mrd_client_limiter *l, uint64_t seed0, uint64_t seed1);

/* Take one token for the client `key` (its address bytes) at now_ms.
 * Returns 1 allowed, 0 limited. Safe from any number of threads. */
int mrd_client_limiter_take(struct mrd_client_limiter *l, const void *key, size_t key_len, uint64_t now_ms);

/* The same; when limited and retry_after_ms is not NULL, *retry_after_ms is
 * the wait in ms until the client's next token (>= 1); 0 when allowed. */
int mrd_client_limiter_take_wait(struct mrd_client_limiter *l, const void *key, size_t key_len, uint64_t now_ms,
                                 uint64_t *retry_after_ms);

/* ---- a fleet's client limits (policies.client_rate_limit.scope: cluster) ----
 * A tracking table also counts, per client, the admissions not yet reported
 * to the fleet; the sync collects them (only the clients that came since the
 * last report: a bitmap of the sets they touched) and imports the fleet's
 * debt of the busiest clients. The request path stays the same lookup. */

struct mrd_client_report {
    uint8_t key[MRD_CLIENT_KEY_MAX];
    uint32_t len;
    uint32_t count; /* admissions since the last collect */
};

/* Start tracking (once, before workers use the table). */
void mrd_client_limiter_track(struct mrd_client_limiter *l);

/* Move up to max unreported clients to out (their counts reset to 0); the
 * rest stays for the next call. Keys longer than MRD_CLIENT_KEY_MAX are not
 * tracked. Returns how many were written. */
size_t mrd_client_limiter_collect(struct mrd_client_limiter *l, struct mrd_client_report *out, size_t max);

/* The fleet says the client owes debt_us of refill (its TAT is that far
 * ahead of now): the client's entry (made when new) is at least that far
 * behind, capped at one token beyond the burst. */
void mrd_client_limiter_set_debt(struct mrd_client_limiter *l, const void *key, size_t key_len, uint64_t now_ms,
                                 uint64_t debt_us);

/* The table's token interval in microseconds (>= 1) and burst in tokens. */
uint64_t mrd_client_limiter_interval_us(const struct mrd_client_limiter *l);
uint64_t mrd_client_limiter_burst(const struct mrd_client_limiter *l);

/* Clients the table can hold (<= max_entries given to _new). */
size_t mrd_client_limiter_capacity(const struct mrd_client_limiter *l);

/* Clients currently tracked (<= capacity). */
size_t mrd_client_limiter_count(const struct mrd_client_limiter *l);

#endif
