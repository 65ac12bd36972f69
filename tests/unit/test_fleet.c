/* test_fleet.c: leases of fleet tokens, their sizing, the local share and
 * the sync script's reply check (fleet.h), with hand-computed values. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "meridian/common.h"
#include "meridian/fleet.h"

static void
lease_take_add_trim_void(void **state)
{
    struct mrd_lease l;

    memset(&l, 0, sizeof(l));
    assert_int_equal(mrd_lease_take(&l), 0); /* empty: refused, demand counted */
    mrd_lease_add(&l, 3);
    mrd_lease_add(&l, 0);
    mrd_lease_add(&l, -5); /* ignored */
    assert_int_equal(mrd_lease_tokens(&l), 3);
    assert_int_equal(mrd_lease_take(&l), 1);
    assert_int_equal(mrd_lease_tokens(&l), 2);
    mrd_lease_add(&l, 8);                        /* 10 */
    assert_int_equal(mrd_lease_trim(&l, 4), 6);  /* give back 6, keep 4 */
    assert_int_equal(mrd_lease_trim(&l, 4), 0);
    assert_int_equal(mrd_lease_trim(&l, 9), 0);  /* fewer than keep: nothing */
    assert_int_equal(mrd_lease_trim(&l, -1), 4); /* keep < 0 counts as 0 */
    mrd_lease_add(&l, 2);
    assert_int_equal(mrd_lease_void(&l), 2);
    assert_int_equal(mrd_lease_void(&l), 0);
    assert_int_equal(mrd_lease_take(&l), 0);
    assert_int_equal(atomic_load(&l.demand), 3);
    assert_int_equal(atomic_load(&l.spent), 1);
    assert_int_equal(atomic_load(&l.leased), 13);
    assert_int_equal(atomic_load(&l.returned), 10);
    assert_int_equal(atomic_load(&l.expired), 2);
}

#define THREADS 4
#define TOKENS 100000

static struct mrd_lease shared;
static _Atomic long taken;

static void *
taker(void *arg)
{
    for (int i = 0; i < TOKENS; i++)
        if (mrd_lease_take(&shared))
            atomic_fetch_add(&taken, 1);
    return NULL;
}

/* THREADS * TOKENS attempts on TOKENS tokens: exactly TOKENS are taken */
static void
lease_never_overspends_across_threads(void **state)
{
    pthread_t t[THREADS];

    memset(&shared, 0, sizeof(shared));
    mrd_lease_add(&shared, TOKENS);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, taker, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&taken), TOKENS);
    assert_int_equal(mrd_lease_tokens(&shared), 0);
    assert_int_equal(atomic_load(&shared.demand), THREADS * TOKENS);
    assert_int_equal(atomic_load(&shared.spent), TOKENS);
}

static void
lease_need_sizes(void **state)
{
    /* two intervals of demand: 30/s * 0.2 s = 6 */
    assert_int_equal(mrd_lease_need(30, 100, 100, 10, 0, 3), 6);
    /* 240/s would be 48, but the fleet only has 100/s * 0.2 s + 10 = 30 */
    assert_int_equal(mrd_lease_need(240, 100, 100, 10, 0, 3), 30);
    /* rounded up; at least one token, also for no demand or NaN */
    assert_int_equal(mrd_lease_need(1, 100, 100, 10, 0, 3), 1);
    assert_int_equal(mrd_lease_need(12, 100, 1000, 100, 0, 3), 3); /* 2.4 -> 3 */
    assert_int_equal(mrd_lease_need(0, 100, 100, 10, 0, 3), 1);
    assert_int_equal(mrd_lease_need(-5, 100, 100, 10, 0, 3), 1);
    assert_int_equal(mrd_lease_need(NAN, 100, 100, 10, 0, 3), 1);
    /* 10,000 rps cap, 1 s syncs: 20,000 + 1,000 at most */
    assert_int_equal(mrd_lease_need(1e9, 1000, 10000, 1000, 0, 3), 21000);
    /* a cushion: the spare shared by the live instances, 1,000,000 / 2 */
    assert_int_equal(mrd_lease_need(0, 100, 10000000, 1000000, 1000000, 2), 500000);
    /* the demand's need when it is more than the cushion */
    assert_int_equal(mrd_lease_need(240, 100, 100, 10, 10, 3), 30);
    assert_int_equal(mrd_lease_need(30, 100, 100, 10, 10, 3), 6); /* 10 / 3 = 3 < 6 */
    assert_int_equal(mrd_lease_need(10, 100, 100, 10, 10, 2), 5);  /* 2 < 10 / 2 */
    /* unknown live count: alone; no spare, no cushion */
    assert_int_equal(mrd_lease_need(0, 100, 100, 10, 10, 0), 10);
    assert_int_equal(mrd_lease_need(0, 100, 100, 10, -3, 3), 1);
    /* never more than the fleet's two intervals and a burst */
    assert_int_equal(mrd_lease_need(0, 100, 100, 10, 1000000, 1), 30);
}

static void
demand_rate_follows(void **state)
{
    assert_true(fabs(mrd_fleet_demand_rate(0, 24, 100) - 240) < 1e-9);
    /* falling: halfway to the new interval's rate */
    assert_true(fabs(mrd_fleet_demand_rate(240, 10, 100) - 170) < 1e-9);
    /* rising: the new rate at once */
    assert_true(fabs(mrd_fleet_demand_rate(100, 30, 100) - 300) < 1e-9);
    /* no time passed: unchanged */
    assert_true(fabs(mrd_fleet_demand_rate(42, 7, 0) - 42) < 1e-9);
    assert_true(fabs(mrd_fleet_demand_rate(0, 0, 100)) < 1e-9);
}

static void
share_by_mode(void **state)
{
    uint64_t rate, burst;

    mrd_fleet_share(MRD_FLEET_LOCAL, 100, 10, 3, &rate, &burst);
    assert_int_equal(rate, 33333);
    assert_int_equal(burst, 3);
    mrd_fleet_share(MRD_FLEET_LOCAL, 100, 10, 0, &rate, &burst); /* never seen: alone */
    assert_int_equal(rate, 100000);
    assert_int_equal(burst, 10);
    mrd_fleet_share(MRD_FLEET_LOCAL, 1, 1, 3, &rate, &burst); /* floors at 1 */
    assert_int_equal(rate, 333);
    assert_int_equal(burst, 1);
    mrd_fleet_share(MRD_FLEET_LOCAL, 1, 1, 5000, &rate, &burst);
    assert_int_equal(rate, 1);
    assert_int_equal(burst, 1);
    mrd_fleet_share(MRD_FLEET_OPEN, 100, 10, 3, &rate, &burst);
    assert_int_equal(rate, 100000);
    assert_int_equal(burst, 10);
    mrd_fleet_share(MRD_FLEET_SHARED, 100, 10, 3, &rate, &burst);
    assert_int_equal(rate, 100000);
    assert_int_equal(burst, 10);
}

static void
reply_checked(void **state)
{
    int64_t want[2] = {5, 0};
    struct mrd_fleet_grant g[2];
    uint64_t now;
    unsigned live;
    long long ok[] = {1796354347727LL, 3, 4, 98500, 6, 0, 0, 10};

    assert_int_equal(mrd_fleet_parse_reply(ok, 8, 2, want, &now, &live, g), 0);
    assert_int_equal(now, 1796354347727ULL);
    assert_int_equal(live, 3);
    assert_int_equal(g[0].granted, 4);
    assert_int_equal(g[0].fleet_rate_milli, 98500);
    assert_int_equal(g[0].spare, 6);
    assert_int_equal(g[1].granted, 0);
    assert_int_equal(g[1].spare, 10);

    long long bad_count[] = {1, 3, 4, 98500, 0, 0};
    assert_int_equal(mrd_fleet_parse_reply(bad_count, 6, 2, want, &now, &live, g), -1);
    long long no_live[] = {1, 0, 4, 1, 0, 0, 0, 0};
    assert_int_equal(mrd_fleet_parse_reply(no_live, 8, 2, want, &now, &live, g), -1);
    long long no_time[] = {0, 3, 4, 1, 0, 0, 0, 0};
    assert_int_equal(mrd_fleet_parse_reply(no_time, 8, 2, want, &now, &live, g), -1);
    long long over[] = {1, 3, 6, 1, 0, 0, 0, 0}; /* more than asked */
    assert_int_equal(mrd_fleet_parse_reply(over, 8, 2, want, &now, &live, g), -1);
    long long neg[] = {1, 3, -1, 1, 0, 0, 0, 0};
    assert_int_equal(mrd_fleet_parse_reply(neg, 8, 2, want, &now, &live, g), -1);
    long long neg_rate[] = {1, 3, 1, -1, 0, 0, 0, 0};
    long long neg_spare[] = {1, 3, 1, 1, -1, 0, 0, 0};
    assert_int_equal(mrd_fleet_parse_reply(neg_rate, 8, 2, want, &now, &live, g), -1);
    long long huge_live[] = {1, 2000000, 1, 1, 0, 0, 0, 0};
    assert_int_equal(mrd_fleet_parse_reply(neg_spare, 8, 2, want, &now, &live, g), -1);
    assert_int_equal(mrd_fleet_parse_reply(huge_live, 8, 2, want, &now, &live, g), -1);
    /* nothing was written by the refused ones */
    assert_int_equal(g[0].granted, 4);
    /* no capped region: the heartbeat alone */
    long long beat[] = {5, 1};
    assert_int_equal(mrd_fleet_parse_reply(beat, 2, 0, want, &now, &live, g), 0);
    assert_int_equal(live, 1);
}

static void
keys_share_a_hash_tag(void **state)
{
    char k[64];

    assert_int_equal(mrd_fleet_key(k, sizeof(k), "edge", "cap", "us-east-1"), 29);
    assert_string_equal(k, "meridian:{edge}:cap:us-east-1");
    mrd_fleet_key(k, sizeof(k), "edge", "instances", NULL);
    assert_string_equal(k, "meridian:{edge}:instances");
    /* truncated like snprintf, and the length says so */
    assert_int_equal(mrd_fleet_key(k, 12, "edge", "rate", "eu-west-1"), 11);
    assert_string_equal(k, "meridian:{e");
    /* the script reads Redis's clock and both key kinds */
    assert_non_null(strstr(mrd_fleet_sync_script, "redis.call('TIME')"));
    assert_non_null(strstr(mrd_fleet_sync_script, "ZREMRANGEBYSCORE"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lease_take_add_trim_void),
        cmocka_unit_test(lease_never_overspends_across_threads),
        cmocka_unit_test(lease_need_sizes),
        cmocka_unit_test(demand_rate_follows),
        cmocka_unit_test(share_by_mode),
        cmocka_unit_test(reply_checked),
        cmocka_unit_test(keys_share_a_hash_tag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
