/* test_ratelimit.c: token buckets, the sliding rate and the client table over
 * simulated time (every now_ms below is made up; nothing reads a clock). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "meridian/ratelimit.h"

/* ------------------------------------------------------------------------ */
/* bucket                                                                   */

static void
bucket_starts_full_and_refills(void **state)
{
    struct mrd_bucket b;

    mrd_bucket_init(&b, 10 * 1000, 5, 1000); /* 10/s, burst 5 */
    assert_int_equal(mrd_bucket_tokens_milli(&b, 1000), 5000);
    for (int i = 0; i < 5; i++)
        assert_int_equal(mrd_bucket_take(&b, 1000), 1);
    assert_int_equal(mrd_bucket_take(&b, 1000), 0);
    assert_int_equal(mrd_bucket_tokens_milli(&b, 1000), 0);
    assert_int_equal(mrd_bucket_tokens_milli(&b, 1050), 500);
    assert_int_equal(mrd_bucket_take(&b, 1099), 0);
    assert_int_equal(mrd_bucket_take(&b, 1100), 1);
    assert_int_equal(mrd_bucket_take(&b, 1100), 0);
    /* refill stops at the burst */
    assert_int_equal(mrd_bucket_tokens_milli(&b, 100000), 5000);
    for (int i = 0; i < 5; i++)
        assert_int_equal(mrd_bucket_take(&b, 100000), 1);
    assert_int_equal(mrd_bucket_take(&b, 100000), 0);
}

static void
bucket_peek_and_wait(void **state)
{
    struct mrd_bucket b;

    mrd_bucket_init(&b, 1000, 1, 0); /* 1/s, burst 1 */
    for (int i = 0; i < 10; i++)
        assert_int_equal(mrd_bucket_peek(&b, 0), 1); /* peeking never takes */
    assert_int_equal(mrd_bucket_wait_ms(&b, 0), 0);
    assert_int_equal(mrd_bucket_take(&b, 0), 1);
    assert_int_equal(mrd_bucket_peek(&b, 0), 0);
    assert_int_equal(mrd_bucket_wait_ms(&b, 0), 1000);
    assert_int_equal(mrd_bucket_wait_ms(&b, 400), 600);
    assert_int_equal(mrd_bucket_peek(&b, 999), 0);
    assert_int_equal(mrd_bucket_peek(&b, 1000), 1);
    assert_int_equal(mrd_retry_after_s(0), 1);
    assert_int_equal(mrd_retry_after_s(600), 1);
    assert_int_equal(mrd_retry_after_s(1000), 1);
    assert_int_equal(mrd_retry_after_s(1001), 2);
}

/* Admitted over `ms` milliseconds with `per_ms` attempts each millisecond. */
static uint64_t
overload(struct mrd_bucket *b, uint64_t t0, uint64_t ms, int per_ms)
{
    uint64_t admitted = 0;

    for (uint64_t t = t0; t < t0 + ms; t++)
        for (int i = 0; i < per_ms; i++)
            admitted += (uint64_t)mrd_bucket_take(b, t);
    return admitted;
}

static void
assert_close(double got, double want, double rel)
{
    if (fabs(got - want) > want * rel)
        fail_msg("got %.3f, want %.3f within %.2f%%", got, want, rel * 100);
}

static void
bucket_exact_rate_under_overload(void **state)
{
    static const struct {
        uint64_t rate_milli, burst, seconds;
        int per_ms;
    } cases[] = {
        {1000 * 1000, 100, 10, 3}, /* 1000/s at 3x overload */
        {333 * 1000, 33, 10, 1},   /* 333/s: 3.003 ms per token, 3x overload */
        {16667, 17, 60, 1},        /* 1000/min as the config stores it, far over */
        {2500 * 1000, 250, 5, 8},  /* 2.5 tokens per ms: fractions carried */
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mrd_bucket b;
        double want = (double)cases[i].burst + (double)cases[i].rate_milli * (double)cases[i].seconds / 1000.0;

        mrd_bucket_init(&b, cases[i].rate_milli, cases[i].burst, 5000);
        uint64_t got = overload(&b, 5000, cases[i].seconds * 1000, cases[i].per_ms);
        /* tokens accrued by the last attempt, 1 ms before the window ends */
        uint64_t exact = cases[i].burst + cases[i].rate_milli * (cases[i].seconds * 1000 - 1) / 1000000;

        assert_close((double)got, want, 0.005);
        /* and in fact exact, give or take the interval's 2^-20 ms rounding */
        assert_true(got + 1 >= exact && got <= exact + 1);
    }
}

static void
bucket_time_backwards_is_clamped(void **state)
{
    struct mrd_bucket b;

    mrd_bucket_init(&b, 1000 * 1000, 10, 10000); /* 1 per ms, burst 10 */
    /* before the bucket existed counts as its start: full, no wrap */
    assert_int_equal(mrd_bucket_tokens_milli(&b, 0), 10000);
    assert_int_equal(overload(&b, 10000, 1, 20), 10);
    /* a clock 5 s behind neither refills nor wraps nor admits */
    assert_int_equal(mrd_bucket_tokens_milli(&b, 5000), 0);
    assert_int_equal(mrd_bucket_take(&b, 5000), 0);
    assert_int_equal(mrd_bucket_take(&b, 0), 0);
    /* and it left no debt behind: the next token comes exactly on time */
    assert_int_equal(mrd_bucket_take(&b, 10001), 1);
    assert_int_equal(mrd_bucket_take(&b, 10001), 0);
    assert_int_equal(mrd_bucket_take(&b, 10000), 0);
    assert_int_equal(mrd_bucket_take(&b, 10002), 1);
}

static void
bucket_very_low_rate(void **state)
{
    struct mrd_bucket b;

    /* 1/min as the config stores it: 17 milli-tokens/s, 58823.5 ms per token */
    mrd_bucket_init(&b, 17, 1, 0);
    assert_int_equal(mrd_bucket_take(&b, 0), 1);
    assert_int_equal(mrd_bucket_take(&b, 30000), 0);
    assert_int_equal(mrd_bucket_tokens_milli(&b, 29412), 500);
    assert_int_equal(mrd_bucket_take(&b, 58823), 0);
    assert_int_equal(mrd_bucket_take(&b, 58824), 1);
    /* one token per 1000 s */
    mrd_bucket_init(&b, 1, 2, 0);
    assert_int_equal(overload(&b, 0, 1, 5), 2);
    assert_int_equal(mrd_bucket_take(&b, 999999), 0);
    assert_int_equal(mrd_bucket_take(&b, 1000000), 1);
    /* rate 0 and burst 0 are taken as 1 */
    mrd_bucket_init(&b, 0, 0, 0);
    assert_int_equal(mrd_bucket_take(&b, 0), 1);
    assert_int_equal(mrd_bucket_take(&b, 0), 0);
}

static void
bucket_huge_values_do_not_overflow(void **state)
{
    struct mrd_bucket b;

    mrd_bucket_init(&b, 1000 * 1000, 100, 0);
    assert_int_equal(overload(&b, 0, 1, 200), 100);
    /* a gap of 2^64 ms refills to the burst, not beyond, and not to zero */
    assert_int_equal(mrd_bucket_tokens_milli(&b, UINT64_MAX), 100000);
    uint64_t n = 0;
    for (int i = 0; i < 200; i++)
        n += (uint64_t)mrd_bucket_take(&b, UINT64_MAX);
    assert_int_equal(n, 100);
    assert_int_equal(mrd_bucket_take(&b, UINT64_MAX), 0);
    assert_int_equal(mrd_bucket_take(&b, UINT64_MAX - 1000), 0);
    /* enormous rate and burst */
    mrd_bucket_init(&b, UINT64_MAX, UINT64_MAX, UINT64_MAX - 5);
    assert_int_equal(mrd_bucket_take(&b, UINT64_MAX), 1);
    assert_true(mrd_bucket_tokens_milli(&b, UINT64_MAX) > 1000000);
    mrd_bucket_init(&b, 1000, UINT64_MAX, 0);
    assert_int_equal(mrd_bucket_take(&b, 0), 1);
    assert_true(mrd_bucket_tokens_milli(&b, 0) > 0);
}

/* 4 threads replay the same simulated clock, 3 attempts per ms each */
struct hammer {
    struct mrd_bucket *b;
    uint64_t ms;
    uint64_t admitted;
};

static void *
hammer_thread(void *arg)
{
    struct hammer *h = arg;

    h->admitted = overload(h->b, 1000, h->ms, 3);
    return NULL;
}

static void
bucket_threads_never_double_spend(void **state)
{
    struct mrd_bucket single, shared;
    struct hammer h[4];
    pthread_t tid[4];
    uint64_t total = 0, want;

    for (int round = 0; round < 5; round++) {
        mrd_bucket_init(&single, 1000 * 1000, 200, 1000);
        want = overload(&single, 1000, 3000, 12);
        assert_int_equal(want, 200 + 2999);

        mrd_bucket_init(&shared, 1000 * 1000, 200, 1000);
        for (int i = 0; i < 4; i++) {
            h[i] = (struct hammer){&shared, 3000, 0};
            assert_int_equal(pthread_create(&tid[i], NULL, hammer_thread, &h[i]), 0);
        }
        total = 0;
        for (int i = 0; i < 4; i++) {
            pthread_join(tid[i], NULL);
            total += h[i].admitted;
        }
        assert_int_equal(total, want);
    }
}

/* ------------------------------------------------------------------------ */
/* sliding rate                                                             */

static void
rate_pure_core(void **state)
{
    assert_true(fabs(mrd_rate_total_from_values(1000, 250, 30, 100) - 105.0) < 1e-9);
    assert_true(fabs(mrd_rate_total_from_values(1000, 0, 0, 100) - 100.0) < 1e-9);
    assert_true(fabs(mrd_rate_total_from_values(1000, 999, 7, 100) - 7.1) < 1e-9);
    assert_true(fabs(mrd_rate_total_from_values(1000, 5000, 7, 100) - 7.0) < 1e-9);
}

static void
rate_steady_smooth_and_decays(void **state)
{
    struct mrd_rate r;
    double prev = -1;

    mrd_rate_init(&r);
    assert_true(mrd_rate_per_s(&r, 12345) == 0.0);
    /* 100/s, one every 10 ms, for 3 s starting mid-period */
    for (uint64_t t = 10500; t < 13500; t += 10) {
        mrd_rate_add(&r, t);
        if (t >= 12000) { /* a full previous period behind us */
            double v = mrd_rate_per_s(&r, t);

            assert_close(v, 100.0, 0.02);
            /* no swing at the period boundaries 12000 and 13000 */
            if (prev >= 0)
                assert_true(fabs(v - prev) < 2.0);
            prev = v;
        }
    }
    /* traffic stopped at 13490: the window slides off it */
    assert_close(mrd_rate_per_s(&r, 13750), 75.0, 0.05);
    assert_true(mrd_rate_per_s(&r, 14000) < 51.0);
    assert_close(mrd_rate_per_s(&r, 14500), 25.0, 0.05);
    assert_true(mrd_rate_per_s(&r, 14999) < 0.1);
    assert_true(mrd_rate_per_s(&r, 15000) == 0.0);
    assert_true(mrd_rate_per_s(&r, 99999) == 0.0);
}

struct rate_hammer {
    struct mrd_rate *r;
};

static void *
rate_thread(void *arg)
{
    struct rate_hammer *h = arg;

    for (uint64_t t = 0; t < 2000; t++)
        for (int i = 0; i < 5; i++)
            mrd_rate_add(h->r, 7000 + t);
    return NULL;
}

static void
rate_threads_count_every_event(void **state)
{
    struct mrd_rate r;
    struct rate_hammer h = {&r};
    pthread_t tid[4];

    mrd_rate_init(&r);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&tid[i], NULL, rate_thread, &h), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(tid[i], NULL);
    /* at 9000 the previous period (8000..8999) holds 4 * 5 * 1000 events, whole */
    assert_true(fabs(mrd_rate_per_s(&r, 9000) - 20000.0) < 1e-6);
}

/* ------------------------------------------------------------------------ */
/* client limiter                                                           */

static void
client_limits_per_key(void **state)
{
    struct mrd_client_limiter *l = mrd_client_limiter_new(1000, 3, 1024); /* 1/s, burst 3 */
    const uint8_t a[4] = {192, 0, 2, 1}, b[4] = {192, 0, 2, 2};
    uint64_t wait = 0;

    for (int i = 0; i < 3; i++)
        assert_int_equal(mrd_client_limiter_take(l, a, 4, 5000), 1);
    assert_int_equal(mrd_client_limiter_take_wait(l, a, 4, 5000, &wait), 0);
    assert_int_equal(wait, 1000);
    assert_int_equal(mrd_client_limiter_take_wait(l, a, 4, 5300, &wait), 0);
    assert_int_equal(wait, 700);
    assert_int_equal(mrd_retry_after_s(wait), 1);
    /* another key is independent */
    for (int i = 0; i < 3; i++)
        assert_int_equal(mrd_client_limiter_take_wait(l, b, 4, 5300, &wait), 1);
    assert_int_equal(wait, 0);
    assert_int_equal(mrd_client_limiter_take(l, b, 4, 5300), 0);
    /* refill */
    assert_int_equal(mrd_client_limiter_take(l, a, 4, 6000), 1);
    assert_int_equal(mrd_client_limiter_take(l, a, 4, 6000), 0);
    assert_int_equal(mrd_client_limiter_count(l), 2);
    mrd_client_limiter_free(l);
}

static void
client_long_keys_are_distinct(void **state)
{
    struct mrd_client_limiter *l = mrd_client_limiter_new(1000, 1, 64);
    uint8_t k1[20], k2[20];

    memset(k1, 7, sizeof(k1));
    memcpy(k2, k1, sizeof(k2));
    k2[19] = 8; /* differs only past MRD_CLIENT_KEY_MAX */
    assert_int_equal(mrd_client_limiter_take(l, k1, 20, 0), 1);
    assert_int_equal(mrd_client_limiter_take(l, k1, 20, 0), 0);
    assert_int_equal(mrd_client_limiter_take(l, k2, 20, 0), 1);
    assert_int_equal(mrd_client_limiter_take(l, k1, 16, 0), 1); /* a prefix is another key */
    mrd_client_limiter_free(l);
}

static void
client_table_is_bounded(void **state)
{
    struct mrd_client_limiter *l = mrd_client_limiter_new(10 * 1000, 10, 1000);

    mrd_client_limiter_set_seed(l, 0x0123456789abcdefULL, 0xfedcba9876543210ULL);
    assert_true(mrd_client_limiter_capacity(l) <= 1000);
    assert_true(mrd_client_limiter_capacity(l) >= 992);
    for (uint32_t i = 0; i < 100000; i++) {
        uint8_t key[4] = {10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};

        assert_int_equal(mrd_client_limiter_take(l, key, 4, 1000 + i / 100), 1);
    }
    assert_true(mrd_client_limiter_count(l) <= mrd_client_limiter_capacity(l));
    assert_true(mrd_client_limiter_count(l) > 900); /* and it is actually used */
    mrd_client_limiter_free(l);

    /* max_entries below one set */
    l = mrd_client_limiter_new(1000, 1, 3);
    assert_int_equal(mrd_client_limiter_capacity(l), 3);
    for (uint8_t i = 0; i < 50; i++)
        assert_int_equal(mrd_client_limiter_take(l, &i, 1, 0), 1);
    assert_int_equal(mrd_client_limiter_count(l), 3);
    mrd_client_limiter_free(l);
}

/*
 * An active client being limited keeps its (nearly empty) bucket while a
 * flood of one-shot addresses churns through a small table: one-shot keys
 * spent one token each, so they hold more tokens than the active client and
 * are evicted first (or are full again after 100 ms and evicted for free).
 */
static void
client_active_survives_flood(void **state)
{
    struct mrd_client_limiter *l = mrd_client_limiter_new(10 * 1000, 10, 64); /* 10/s, burst 10 */
    const uint8_t active[4] = {198, 51, 100, 7};
    uint64_t admitted = 0;
    uint32_t next = 0;

    for (uint64_t t = 0; t < 10000; t++) {
        admitted += (uint64_t)mrd_client_limiter_take(l, active, 4, t);
        for (int i = 0; i < 10; i++, next++) { /* 10000 new addresses a second */
            uint8_t key[4] = {203, (uint8_t)(next >> 16), (uint8_t)(next >> 8), (uint8_t)next};

            assert_int_equal(mrd_client_limiter_take(l, key, 4, t), 1);
        }
    }
    /* burst + 10/s * 10 s; an eviction would have handed it a fresh burst */
    assert_true(admitted >= 109 && admitted <= 110);
    assert_true(mrd_client_limiter_count(l) <= 64);
    mrd_client_limiter_free(l);
}

struct client_hammer {
    struct mrd_client_limiter *l;
    uint64_t admitted;
};

static void *
client_thread(void *arg)
{
    struct client_hammer *h = arg;
    const uint8_t key[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};

    for (uint64_t t = 0; t < 2000; t++)
        for (int i = 0; i < 3; i++)
            h->admitted += (uint64_t)mrd_client_limiter_take(h->l, key, 16, t);
    return NULL;
}

static void
client_shared_by_threads(void **state)
{
    struct mrd_client_limiter *l = mrd_client_limiter_new(100 * 1000, 50, 256); /* 100/s, burst 50 */
    struct client_hammer h[4];
    pthread_t tid[4];
    uint64_t total = 0;

    for (int i = 0; i < 4; i++) {
        h[i] = (struct client_hammer){l, 0};
        assert_int_equal(pthread_create(&tid[i], NULL, client_thread, &h[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(tid[i], NULL);
        total += h[i].admitted;
    }
    /* one client, one bucket across threads: burst + 100/s * 1.999 s */
    assert_int_equal(total, 50 + 199);
    mrd_client_limiter_free(l);
}


/* a retuned bucket keeps its debt in time: no burst from the change */
static void
bucket_retune_keeps_debt(void **state)
{
    struct mrd_bucket b;

    mrd_bucket_init(&b, 100 * 1000, 10, 0); /* 100/s (10 ms a token), burst 10 */
    for (int i = 0; i < 10; i++)
        assert_int_equal(mrd_bucket_take(&b, 0), 1);
    /* TAT is now 100 ms ahead; at 50/s (20 ms) with burst 5 (tau 100 ms)
     * that is exactly an empty bucket */
    mrd_bucket_retune(&b, 50 * 1000, 5);
    assert_int_equal(mrd_bucket_tokens_milli(&b, 0), 0);
    assert_int_equal(mrd_bucket_take(&b, 0), 0);
    assert_int_equal(mrd_bucket_tokens_milli(&b, 20), 1000);
    assert_int_equal(mrd_bucket_take(&b, 20), 1);
    assert_int_equal(mrd_bucket_take(&b, 20), 0);
    /* refilled after a long pause: the new burst, not the old */
    assert_int_equal(mrd_bucket_tokens_milli(&b, 10000), 5000);
    /* back to the full cap: still no more than the burst it had */
    mrd_bucket_retune(&b, 100 * 1000, 10);
    assert_int_equal(mrd_bucket_tokens_milli(&b, 10000), 10000);
    /* zero rate and burst count as 1, as for init */
    mrd_bucket_retune(&b, 0, 0);
    assert_int_equal(mrd_bucket_tokens_milli(&b, 20000), 1000);
}


/* a tracking table reports each client's admissions once, and takes the
 * fleet's debt (SPEC 8, scope: cluster) */
static void
client_tracking_collect_and_debt(void **state)
{
    struct mrd_client_limiter *l = mrd_client_limiter_new(1000, 20, 1024); /* 1/s, burst 20 */
    struct mrd_client_report rep[4];
    uint8_t a[4] = {192, 0, 2, 1}, b[4] = {192, 0, 2, 2}, c[16] = {0x20, 0x01, 0x0d, 0xb8};

    /* not tracking: nothing to collect */
    assert_int_equal(mrd_client_limiter_take(l, a, 4, 1000), 1);
    assert_int_equal(mrd_client_limiter_collect(l, rep, 4), 0);
    mrd_client_limiter_track(l);
    mrd_client_limiter_track(l); /* twice is once */
    for (int i = 0; i < 3; i++)
        assert_int_equal(mrd_client_limiter_take(l, a, 4, 1000), 1);
    assert_int_equal(mrd_client_limiter_take(l, b, 4, 1000), 1);
    assert_int_equal(mrd_client_limiter_take(l, c, 16, 1000), 1);
    /* at most max, the rest at the next call, none twice */
    size_t n1 = mrd_client_limiter_collect(l, rep, 2);
    assert_int_equal(n1, 2);
    size_t total = 0;
    int seen_a = 0, seen_b = 0, seen_c = 0;
    for (int round = 0; round < 2; round++) {
        size_t n = round == 0 ? n1 : mrd_client_limiter_collect(l, rep, 4);
        if (round == 1)
            assert_int_equal(n, 1);
        for (size_t i = 0; i < n; i++) {
            total += rep[i].count;
            if (rep[i].len == 4 && memcmp(rep[i].key, a, 4) == 0) {
                seen_a++;
                assert_int_equal(rep[i].count, 3); /* the untracked one is not in it */
            } else if (rep[i].len == 4 && memcmp(rep[i].key, b, 4) == 0) {
                seen_b++;
                assert_int_equal(rep[i].count, 1);
            } else if (rep[i].len == 16 && memcmp(rep[i].key, c, 16) == 0) {
                seen_c++;
            }
        }
        if (round == 0)
            memset(rep, 0, sizeof(rep));
    }
    assert_int_equal(seen_a + seen_b + seen_c, 3);
    assert_int_equal(total, 5);
    assert_int_equal(mrd_client_limiter_collect(l, rep, 4), 0);
    /* a refused request is not an admission */
    mrd_client_limiter_set_debt(l, b, 4, 1000, 20 * 1000000ULL); /* the fleet: b spent its burst */
    assert_int_equal(mrd_client_limiter_take(l, b, 4, 1000), 0);
    assert_int_equal(mrd_client_limiter_collect(l, rep, 4), 0);
    /* one second later, one token */
    assert_int_equal(mrd_client_limiter_take(l, b, 4, 2000), 1);
    assert_int_equal(mrd_client_limiter_take(l, b, 4, 2000), 0);
    /* a debt for a client never seen makes its entry */
    uint8_t d[4] = {198, 51, 100, 7};
    mrd_client_limiter_set_debt(l, d, 4, 1000, 19500000ULL); /* half a token left */
    assert_int_equal(mrd_client_limiter_take(l, d, 4, 1000), 0);
    assert_int_equal(mrd_client_limiter_take(l, d, 4, 1500), 1);
    /* a smaller debt than the local one changes nothing; an absurd one is
     * capped at one token beyond the burst */
    mrd_client_limiter_set_debt(l, a, 4, 1000, UINT64_MAX);
    assert_int_equal(mrd_client_limiter_take(l, a, 4, 1000 + 1000), 0);
    assert_int_equal(mrd_client_limiter_take(l, a, 4, 1000 + 2000), 1);
    mrd_client_limiter_set_debt(l, a, 4, 3000, 0);
    assert_int_equal(mrd_client_limiter_take(l, a, 4, 3000), 0);
    assert_int_equal(mrd_client_limiter_interval_us(l), 1000000);
    assert_int_equal(mrd_client_limiter_burst(l), 20);
    mrd_client_limiter_free(l);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bucket_starts_full_and_refills),
        cmocka_unit_test(bucket_peek_and_wait),
        cmocka_unit_test(bucket_exact_rate_under_overload),
        cmocka_unit_test(bucket_time_backwards_is_clamped),
        cmocka_unit_test(bucket_very_low_rate),
        cmocka_unit_test(bucket_huge_values_do_not_overflow),
        cmocka_unit_test(bucket_threads_never_double_spend),
        cmocka_unit_test(rate_pure_core),
        cmocka_unit_test(rate_steady_smooth_and_decays),
        cmocka_unit_test(rate_threads_count_every_event),
        cmocka_unit_test(client_limits_per_key),
        cmocka_unit_test(client_long_keys_are_distinct),
        cmocka_unit_test(client_table_is_bounded),
        cmocka_unit_test(client_active_survives_flood),
        cmocka_unit_test(client_shared_by_threads),
        cmocka_unit_test(bucket_retune_keeps_debt),
        cmocka_unit_test(client_tracking_collect_and_debt),
    };
    return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
