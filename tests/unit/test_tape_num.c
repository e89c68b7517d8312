/*
 * Unit tests of the tape engine's number conversions (comparator/tape_num.c)
 * against the C library jansson uses: stc_num_double must return strtod's
 * double bit for bit (correct rounding, halfway cases to even, subnormals,
 * underflow to zero, -0), stc_num_int strtoll's value, stc_num_int_fits and
 * stc_num_overflows strtoll's and strtod's ERANGE. Random inputs are seeded
 * and bounded (ST_NUM_CASES, default 2,000,000, and 30 s).
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "../../comparator/tape.h"

static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void check_double(const char *s)
{
    double want = strtod(s, NULL), got = stc_num_double(s, strlen(s));
    if (memcmp(&want, &got, sizeof(want)) != 0)
        fail_msg("\"%s\": strtod %.17g (%a), stc_num_double %.17g (%a)", s, want, want, got, got);
}

static void test_fixed_numbers(void **state)
{
    static const char *const cases[] = {"0",
                                        "-0",
                                        "0.0",
                                        "-0.0",
                                        "0e0",
                                        "-0e-5",
                                        "1",
                                        "-1",
                                        "0.1",
                                        "0.5",
                                        "1e22",
                                        "1e23",
                                        "9007199254740992",
                                        "9007199254740993",
                                        "9007199254740994",
                                        "9007199254740995",
                                        "18014398509481985",
                                        "123456789012345678",
                                        "1234567890123456789",
                                        "12345678901234567890",
                                        "9223372036854775807",
                                        "9223372036854775808",
                                        "18446744073709551615",
                                        "18446744073709551616",
                                        "0.30000000000000004",
                                        "0.1000000000000000055511151231257827",
                                        "2.2250738585072011e-308",
                                        "2.2250738585072014e-308",
                                        "2.2250738585072012e-308",
                                        "4.9406564584124654e-324",
                                        "2.4703282292062327e-324",
                                        "2.4703282292062328e-324",
                                        "5e-324",
                                        "1e-323",
                                        "1e-400",
                                        "1.7976931348623157e308",
                                        "1.7976931348623158e308",
                                        "8.98846567431158e307",
                                        "1e-342",
                                        "1e-343",
                                        "9.999999999999999e-343",
                                        "1e308",
                                        "7.2057594037927933e16",
                                        "3.0517578125e-05",
                                        "1.00000000000000011102230246251565404",
                                        "1.0000000000000001110223024625156540",
                                        "0.0000000000000000000000000000001e31",
                                        "1000000000000000000000000000000e-30",
                                        "123.456e-2",
                                        "1E+2",
                                        "1e-7",
                                        "2.5e-3",
                                        "1448997445238699",
                                        "7.3177701707893310e+15",
                                        "9.007199254740993e15",
                                        "4.35679723098e-308",
                                        "1.9884e-319",
                                        "6.9294956446009195e15",
                                        "8.1e-308",
                                        "2.0000000000000004",
                                        "1.9999999999999998"};
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_double(cases[i]);
}

/* 2^53 + odd, 2^54 + 2 * odd ...: exactly halfway between two doubles,
 * written as integers and as scaled decimals (round half to even). */
static void test_halfway_cases(void **state)
{
    char buf[64];
    uint64_t seed = 7;
    (void)state;
    for (int shift = 0; shift <= 10; shift++) {
        for (int i = 0; i < 2000; i++) {
            uint64_t m = (1ULL << 52) | (next(&seed) & ((1ULL << 52) - 1));
            uint64_t half = ((m << 1) | 1) << shift; /* m + 1/2, scaled */
            if (half >> 63) continue;
            snprintf(buf, sizeof(buf), "%llu", (unsigned long long)half);
            check_double(buf);
            snprintf(buf, sizeof(buf), "%llu0e-1", (unsigned long long)half);
            check_double(buf);
            snprintf(buf, sizeof(buf), "%llu.000", (unsigned long long)half);
            check_double(buf);
        }
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_random_numbers_match_strtod(void **state)
{
    const char *env = getenv("ST_NUM_CASES");
    unsigned long n = env && *env ? strtoul(env, NULL, 10) : 2000000;
    uint64_t seed = 1;
    char buf[128];
    double start = now_s();
    unsigned long done = 0;
    (void)state;
    for (unsigned long i = 0; i < n && (i % 4096 || now_s() - start < 30); i++, done++) {
        uint64_t r = next(&seed);
        switch (r % 6) {
        case 0: { /* any finite double, printed with 15 to 17 digits */
            uint64_t bits = next(&seed);
            double d;
            memcpy(&d, &bits, sizeof(d));
            if (!isfinite(d)) continue;
            snprintf(buf, sizeof(buf), "%.*g", 15 + (int)(r >> 8) % 3, d);
            break;
        }
        case 1: { /* shortest form of a double in a typical range */
            double d = (double)(next(&seed) >> 11) / 9007199254740992.0 *
                       pow(10, (double)((r >> 8) % 40) - 20);
            snprintf(buf, sizeof(buf), "%.17g", d);
            break;
        }
        case 2: { /* random digits, random point and exponent */
            int nd = 1 + (int)((r >> 8) % 22), point = (int)((r >> 16) % (unsigned)(nd + 1));
            size_t k = 0;
            if (r >> 63) buf[k++] = '-';
            buf[k++] = (char)('1' + next(&seed) % 9);
            for (int d = 1; d < nd; d++) {
                if (d == point) buf[k++] = '.';
                buf[k++] = (char)('0' + next(&seed) % 10);
            }
            snprintf(buf + k, sizeof(buf) - k, "e%d", (int)((r >> 24) % 700) - 350);
            break;
        }
        case 3: /* subnormals and the bottom of the range */
            snprintf(buf, sizeof(buf), "%.*fe-%d", (int)((r >> 8) % 17),
                     (double)(next(&seed) >> 11) / 9007199254740992.0 * 10,
                     300 + (int)((r >> 16) % 30));
            break;
        case 4: { /* integers of up to 20 digits */
            uint64_t v = next(&seed) >> ((r >> 8) % 64);
            snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
            break;
        }
        default: { /* leading zeros after the point */
            snprintf(buf, sizeof(buf), "0.%0*llu", 1 + (int)((r >> 8) % 30),
                     (unsigned long long)(next(&seed) >> ((r >> 16) % 40)));
        }
        }
        char *end;
        errno = 0;
        double want = strtod(buf, &end);
        if (*end) fail_msg("the test made \"%s\", not a number token", buf);
        if (errno == ERANGE && isinf(want)) continue; /* the parser rejects overflow */
        check_double(buf);
    }
    printf("test_tape_num: %lu random numbers match strtod in %.1f s\n", done, now_s() - start);
}

static void test_integers_and_ranges(void **state)
{
    static const char *const ints[] = {"0",
                                       "-0",
                                       "1",
                                       "-1",
                                       "9223372036854775807",
                                       "-9223372036854775808",
                                       "9223372036854775806",
                                       "1234567890123456789",
                                       "-999999999999999999"};
    static const char *const big[] = {"9223372036854775808", "-9223372036854775809",
                                      "10000000000000000000", "99999999999999999999"};
    (void)state;
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        assert_true(stc_num_int_fits(ints[i], strlen(ints[i])));
        assert_true(stc_num_int(ints[i], strlen(ints[i])) == strtoll(ints[i], NULL, 10));
    }
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
        assert_false(stc_num_int_fits(big[i], strlen(big[i])));
    assert_true(stc_num_overflows("1e309", 5));
    assert_true(stc_num_overflows("-1.8e308", 8));
    assert_false(stc_num_overflows("1.7976931348623157e308", 22));
    assert_false(stc_num_overflows("1e-400", 6)); /* underflow is not an error */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_numbers),
        cmocka_unit_test(test_halfway_cases),
        cmocka_unit_test(test_integers_and_ranges),
        cmocka_unit_test(test_random_numbers_match_strtod),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
