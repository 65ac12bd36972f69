/* test_health.c: the rise/fall state machine behind active and passive health. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "meridian/health.h"

static void
falls_after_fall_failures(void **state)
{
    int h = 1;
    unsigned streak = 0;

    assert_int_equal(mrd_health_step(&h, &streak, 0, 2, 3), MRD_HEALTH_SAME);
    assert_int_equal(mrd_health_step(&h, &streak, 0, 2, 3), MRD_HEALTH_SAME);
    assert_int_equal(h, 1);
    assert_int_equal(mrd_health_step(&h, &streak, 0, 2, 3), MRD_HEALTH_DOWN);
    assert_int_equal(h, 0);
    assert_int_equal(streak, 0);
}

static void
success_resets_failure_streak(void **state)
{
    int h = 1;
    unsigned streak = 0;

    mrd_health_step(&h, &streak, 0, 2, 3);
    mrd_health_step(&h, &streak, 0, 2, 3);
    assert_int_equal(mrd_health_step(&h, &streak, 1, 2, 3), MRD_HEALTH_SAME);
    assert_int_equal(streak, 0);
    mrd_health_step(&h, &streak, 0, 2, 3);
    mrd_health_step(&h, &streak, 0, 2, 3);
    assert_int_equal(h, 1);
}

static void
rises_after_rise_successes(void **state)
{
    int h = 0;
    unsigned streak = 0;

    assert_int_equal(mrd_health_step(&h, &streak, 1, 2, 3), MRD_HEALTH_SAME);
    assert_int_equal(mrd_health_step(&h, &streak, 0, 2, 3), MRD_HEALTH_SAME); /* streak broken */
    assert_int_equal(mrd_health_step(&h, &streak, 1, 2, 3), MRD_HEALTH_SAME);
    assert_int_equal(mrd_health_step(&h, &streak, 1, 2, 3), MRD_HEALTH_UP);
    assert_int_equal(h, 1);
}

static void
rise_and_fall_of_one(void **state)
{
    int h = 1;
    unsigned streak = 0;

    assert_int_equal(mrd_health_step(&h, &streak, 0, 1, 1), MRD_HEALTH_DOWN);
    assert_int_equal(mrd_health_step(&h, &streak, 1, 1, 1), MRD_HEALTH_UP);
    assert_int_equal(mrd_health_step(&h, &streak, 1, 1, 1), MRD_HEALTH_SAME);
}

/* SPEC 12: timeouts, malformed and truncated responses leave rotation after
 * `fall` in a row; a refused or reset connection at once (SPEC 3.5) */
static void
passive_counts_to_fall(void **state)
{
    static const enum mrd_upstream_failure counted[] = {MRD_UPF_CONNECT_TIMEOUT, MRD_UPF_TIMEOUT,
                                                        MRD_UPF_MALFORMED, MRD_UPF_TRUNCATED};

    for (size_t i = 0; i < sizeof(counted) / sizeof(counted[0]); i++) {
        assert_false(mrd_health_passive_eject(counted[i], 1, 3, 1));
        assert_false(mrd_health_passive_eject(counted[i], 2, 3, 1));
        assert_true(mrd_health_passive_eject(counted[i], 3, 3, 1));
        assert_true(mrd_health_passive_eject(counted[i], 4, 3, 1)); /* racing workers overshoot */
        assert_true(mrd_health_passive_eject(counted[i], 1, 1, 1));
    }
    assert_true(mrd_health_passive_eject(MRD_UPF_REFUSED, 1, 3, 1));
    assert_true(mrd_health_passive_eject(MRD_UPF_RESET, 1, 3, 1));
}

/* without an active check nothing would bring an upstream back: never out */
static void
passive_unchecked_stays(void **state)
{
    for (int k = 0; k < MRD_UPF_N; k++)
        assert_false(mrd_health_passive_eject((enum mrd_upstream_failure)k, 100, 3, 0));
}

/* fall 0 cannot be configured, but is not "never" either */
static void
passive_fall_zero_is_one(void **state)
{
    assert_true(mrd_health_passive_eject(MRD_UPF_TIMEOUT, 1, 0, 1));
}

static void
failure_names(void **state)
{
    assert_string_equal(mrd_upstream_failure_name(MRD_UPF_REFUSED), "refused");
    assert_string_equal(mrd_upstream_failure_name(MRD_UPF_TRUNCATED), "truncated");
    assert_string_equal(mrd_upstream_failure_name(MRD_UPF_N), "other");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(falls_after_fall_failures),
        cmocka_unit_test(success_resets_failure_streak),
        cmocka_unit_test(rises_after_rise_successes),
        cmocka_unit_test(rise_and_fall_of_one),
        cmocka_unit_test(passive_counts_to_fall),
        cmocka_unit_test(passive_unchecked_stays),
        cmocka_unit_test(passive_fall_zero_is_one),
        cmocka_unit_test(failure_names),
    };
    return cmocka_run_group_tests_name("health", tests, NULL, NULL);
}
