/*
 * Unit tests of the tee's soft in-flight cap (st_tee_over_cap): never a
 * skip at or below half the cap, always one at the cap, and in between a
 * skip rate that grows linearly, checked over many seeded draws.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../proxy/tee.h"

static uint64_t next(uint64_t *x) /* xorshift64*, seeded: the test is deterministic */
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 2685821657736338717ULL;
}

static void test_bounds(void **state)
{
    (void)state;
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 10000; i++) {
        uint64_t r = next(&x);
        assert_int_equal(st_tee_over_cap(0, 16, r), 0);
        assert_int_equal(st_tee_over_cap(8, 16, r), 0); /* half the cap: always sent */
        assert_int_equal(st_tee_over_cap(16, 16, r), 1);
        assert_int_equal(st_tee_over_cap(17, 16, r), 1);
        assert_int_equal(st_tee_over_cap(0, 1, r), 0); /* a cap of 1 stays a hard cap */
        assert_int_equal(st_tee_over_cap(1, 1, r), 1);
        assert_int_equal(st_tee_over_cap(1, 2, r), 0);
        assert_int_equal(st_tee_over_cap(2, 2, r), 1);
    }
}

static void test_linear_in_the_upper_half(void **state)
{
    (void)state;
    const size_t cap = 1000; /* half = 500: skip rate (n - 500) / 500 */
    const size_t points[] = {501, 600, 750, 900, 999};
    uint64_t x = 42;
    for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
        const int draws = 200000;
        int skipped = 0;
        for (int d = 0; d < draws; d++)
            skipped += st_tee_over_cap(points[i], cap, next(&x));
        double rate = (double)skipped / draws, want = (double)(points[i] - 500) / 500.0;
        assert_true(rate > want - 0.005 && rate < want + 0.005);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_linear_in_the_upper_half),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
