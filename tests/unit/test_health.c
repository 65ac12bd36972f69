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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(falls_after_fall_failures),
        cmocka_unit_test(success_resets_failure_streak),
        cmocka_unit_test(rises_after_rise_successes),
        cmocka_unit_test(rise_and_fall_of_one),
    };
    return cmocka_run_group_tests_name("health", tests, NULL, NULL);
}
