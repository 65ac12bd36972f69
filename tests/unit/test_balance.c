/* test_balance.c: the three in-region balancers over hand-built snapshots. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "meridian/balance.h"

static void
rr_respects_weights(void **state)
{
    struct mrd_balance_target t[3] = {{5, 1, 0, 0}, {1, 1, 0, 0}, {1, 1, 0, 0}};
    struct mrd_balance_state s;
    int count[3] = {0};
    int seq[7];

    mrd_balance_state_init(&s, 3);
    for (int i = 0; i < 7; i++) {
        seq[i] = mrd_balance_pick(MRD_BALANCE_ROUND_ROBIN, t, 3, NULL, &s, 0);
        count[seq[i]]++;
    }
    assert_int_equal(count[0], 5);
    assert_int_equal(count[1], 1);
    assert_int_equal(count[2], 1);
    /* smooth: the heavy target is interleaved, never 5 in a row (nginx's a a b a c a a) */
    int expect[7] = {0, 0, 1, 0, 2, 0, 0};
    for (int i = 0; i < 7; i++)
        assert_int_equal(seq[i], expect[i]);
    mrd_balance_state_dispose(&s);
}

static void
rr_skips_unhealthy_and_tried(void **state)
{
    struct mrd_balance_target t[3] = {{1, 0, 0, 0}, {1, 1, 0, 0}, {1, 1, 0, 0}};
    unsigned char tried[3] = {0, 1, 0};
    struct mrd_balance_state s;

    mrd_balance_state_init(&s, 3);
    for (int i = 0; i < 4; i++)
        assert_int_equal(mrd_balance_pick(MRD_BALANCE_ROUND_ROBIN, t, 3, tried, &s, 0), 2);
    tried[2] = 1;
    assert_int_equal(mrd_balance_pick(MRD_BALANCE_ROUND_ROBIN, t, 3, tried, &s, 0), -1);
    mrd_balance_state_dispose(&s);
}

static void
least_conn_picks_lowest_ratio(void **state)
{
    /* active/weight: 4/2 = 2, 3/1 = 3, 1/1 = 1 -> index 2 */
    struct mrd_balance_target t[3] = {{2, 1, 4, 0}, {1, 1, 3, 0}, {1, 1, 1, 0}};
    struct mrd_balance_state s;

    mrd_balance_state_init(&s, 3);
    assert_int_equal(mrd_balance_pick(MRD_BALANCE_LEAST_CONN, t, 3, NULL, &s, 0), 2);
    t[2].healthy = 0;
    assert_int_equal(mrd_balance_pick(MRD_BALANCE_LEAST_CONN, t, 3, NULL, &s, 0), 0);
    mrd_balance_state_dispose(&s);
}

static void
least_conn_ties_rotate(void **state)
{
    struct mrd_balance_target t[3] = {{1, 1, 0, 0}, {1, 1, 0, 0}, {1, 1, 0, 0}};
    struct mrd_balance_state s;

    mrd_balance_state_init(&s, 3);
    assert_int_equal(mrd_balance_pick(MRD_BALANCE_LEAST_CONN, t, 3, NULL, &s, 0), 0);
    assert_int_equal(mrd_balance_pick(MRD_BALANCE_LEAST_CONN, t, 3, NULL, &s, 0), 1);
    assert_int_equal(mrd_balance_pick(MRD_BALANCE_LEAST_CONN, t, 3, NULL, &s, 0), 2);
    assert_int_equal(mrd_balance_pick(MRD_BALANCE_LEAST_CONN, t, 3, NULL, &s, 0), 0);
    mrd_balance_state_dispose(&s);
}

static void
p2c_prefers_faster(void **state)
{
    /* two targets: candidates are always both; the faster one wins */
    struct mrd_balance_target t[2] = {{1, 1, 0, 10000}, {1, 1, 0, 1000}};
    struct mrd_balance_state s;

    mrd_balance_state_init(&s, 2);
    for (uint64_t r = 0; r < 50; r++)
        assert_int_equal(mrd_balance_pick(MRD_BALANCE_P2C_EWMA, t, 2, NULL, &s, r * 0x9E3779B97F4A7C15ULL), 1);
    /* load counts too: 1000us * 20 in flight is costlier than 10000us idle */
    t[1].active = 20;
    assert_int_equal(mrd_balance_pick(MRD_BALANCE_P2C_EWMA, t, 2, NULL, &s, 7), 0);
    /* no sample yet: measured first */
    t[0].ewma_us = 0;
    t[1].active = 0;
    assert_int_equal(mrd_balance_pick(MRD_BALANCE_P2C_EWMA, t, 2, NULL, &s, 3), 0);
    /* one eligible */
    unsigned char tried[2] = {1, 0};
    assert_int_equal(mrd_balance_pick(MRD_BALANCE_P2C_EWMA, t, 2, tried, &s, 3), 1);
    tried[1] = 1;
    assert_int_equal(mrd_balance_pick(MRD_BALANCE_P2C_EWMA, t, 2, tried, &s, 3), -1);
    mrd_balance_state_dispose(&s);
}

static void
p2c_candidates_are_distinct(void **state)
{
    struct mrd_balance_target t[4] = {{1, 1, 0, 400}, {1, 1, 0, 300}, {1, 1, 0, 200}, {1, 1, 0, 100}};
    struct mrd_balance_state s;
    int seen[4] = {0};

    mrd_balance_state_init(&s, 4);
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 2000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        seen[mrd_balance_pick(MRD_BALANCE_P2C_EWMA, t, 4, NULL, &s, x)]++;
    }
    /* the slowest can never win a pair, the fastest wins every pair it is in (half of them) */
    assert_int_equal(seen[0], 0);
    assert_true(seen[3] > 800 && seen[3] < 1200);
    mrd_balance_state_dispose(&s);
}

static void
ewma_update(void **state)
{
    assert_int_equal(mrd_ewma_update(0, 800, 3), 800);
    assert_int_equal(mrd_ewma_update(800, 1600, 3), 900);
    assert_int_equal(mrd_ewma_update(900, 100, 3), 800);
    assert_int_equal(mrd_ewma_update(0, 0, 3), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rr_respects_weights),      cmocka_unit_test(rr_skips_unhealthy_and_tried),
        cmocka_unit_test(least_conn_picks_lowest_ratio), cmocka_unit_test(least_conn_ties_rotate),
        cmocka_unit_test(p2c_prefers_faster),       cmocka_unit_test(p2c_candidates_are_distinct),
        cmocka_unit_test(ewma_update),
    };
    return cmocka_run_group_tests_name("balance", tests, NULL, NULL);
}
