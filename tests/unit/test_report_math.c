/*
 * Unit tests of the report's pure parts: Wilson interval, histogram
 * quantiles, count tables, duration formatting (report/stats_math.c), the
 * gate verdict (report/gate.c) and --redis parsing (report/load.c). The
 * report is a program, not a library, so its sources are compiled in here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../report/gate.c"
#include "../../report/load.c"
#include "../../report/stats_math.c"

static void test_wilson(void **state)
{
    rpt_interval_t r = rpt_wilson(20, 150); /* reference values computed independently */
    assert_true(fabs(r.lo - 0.0879980047) < 1e-8);
    assert_true(fabs(r.hi - 0.1969801745) < 1e-8);
    r = rpt_wilson(0, 10);
    assert_true(r.lo == 0 && r.hi > 0.27 && r.hi < 0.28); /* 0.2775 */
    r = rpt_wilson(10, 10);
    assert_true(r.hi == 1 && r.lo > 0.72 && r.lo < 0.73);
    r = rpt_wilson(0, 0);
    assert_true(r.lo == 0 && r.hi == 1);
    r = rpt_wilson(500000, 1000000); /* large n: tight around 0.5 */
    assert_true(r.lo > 0.499 && r.hi < 0.501);
}

static void test_quantiles(void **state)
{
    rpt_hist_t h;
    memset(&h, 0, sizeof(h));
    assert_true(rpt_hist_quantile(&h, 0.5) < 0); /* empty */
    double bounds[] = {1, 1.5, 2, 2.5, 3, 4, 5};
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(rpt_hist_put(&h, bounds[i], 0), 0);
    assert_int_equal(rpt_hist_put(&h, 1, 55), 0);
    assert_int_equal(rpt_hist_put(&h, 4, 100), 0);
    /* rank 77.5: 55 in (0,1], then (3,4] holds 100: 3 + 22.5/100 */
    assert_true(fabs(rpt_hist_quantile(&h, 0.5) - 3.225) < 1e-9);
    assert_true(fabs(rpt_hist_quantile(&h, 0.1) - 15.5 / 55) < 1e-9);
    assert_true(fabs(rpt_hist_quantile(&h, 1.0) - 4) < 1e-9);
    h.inf = 1000; /* most values above the last bound: the last bound */
    assert_true(rpt_hist_quantile(&h, 0.99) == 5);
    assert_int_equal(rpt_hist_total(&h), 1155);

    rpt_hist_t sum;
    memset(&sum, 0, sizeof(sum));
    assert_int_equal(rpt_hist_add(&sum, &h), 0);
    assert_int_equal(rpt_hist_add(&sum, &h), 0);
    assert_int_equal(rpt_hist_total(&sum), 2310);
    assert_int_equal(sum.n, 7);
    h.inf = 0;
    rpt_hist_t sh;
    memset(&sh, 0, sizeof(sh));
    rpt_hist_put(&sh, 4, 10);
    rpt_hist_put(&sh, 8, 10); /* shadow p50 is at the top of (4, 8] -> 8... */
    assert_true(rpt_latency_ratio(&h, &sh, 0.5) > 1);
    rpt_hist_free(&h);
    rpt_hist_free(&sum);
    rpt_hist_free(&sh);
}

static void test_counts_and_format(void **state)
{
    rpt_counts_t c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(rpt_counts_add(&c, "$.a", "value", 3), 0);
    assert_int_equal(rpt_counts_add(&c, "$.b", "type", 5), 0);
    assert_int_equal(rpt_counts_add(&c, "$.a", "value", 4), 0);
    assert_int_equal(rpt_counts_add(&c, "$.a", "missing", 1), 0);
    rpt_counts_sort(&c);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.v[0].name, "$.a");
    assert_int_equal(c.v[0].count, 7);
    assert_string_equal(c.v[1].name, "$.b");
    rpt_counts_free(&c);

    char buf[32];
    rpt_fmt_duration(42, buf, sizeof(buf));
    assert_string_equal(buf, "42s");
    rpt_fmt_duration(248, buf, sizeof(buf));
    assert_string_equal(buf, "4m08s");
    rpt_fmt_duration(7380, buf, sizeof(buf));
    assert_string_equal(buf, "2h03m");
    rpt_fmt_duration(90000, buf, sizeof(buf));
    assert_string_equal(buf, "1d01h");
    rpt_fmt_time(1700000000000LL, buf, sizeof(buf));
    assert_string_equal(buf, "2023-11-14 22:13:20Z");
}

static rpt_options_t gate_opts(double max_div, double max_err, double max_lat, int64_t min_cmp)
{
    rpt_options_t opt;
    memset(&opt, 0, sizeof(opt));
    opt.gate = 1;
    opt.max_divergence_pct = max_div;
    opt.max_shadow_errors_pct = max_err;
    opt.max_latency_ratio = max_lat;
    opt.min_compared = min_cmp;
    return opt;
}

static rpt_model_t gate_model(uint64_t compared, uint64_t errors, uint64_t diverged)
{
    rpt_model_t m;
    memset(&m, 0, sizeof(m));
    m.service = "svc";
    m.total.compared = compared;
    m.total.errors = errors;
    m.total.diverged = diverged;
    return m;
}

/* Rates are decided on their Wilson 95% interval (reference bounds computed
 * independently, in Python): pass when the upper bound is within the
 * threshold, fail when the lower bound is beyond it, else inconclusive. */
static void test_gate_three_verdicts(void **state)
{
    rpt_gate_t g;
    /* 5 of 2000 diverged: CI 0.11%..0.58%, 0 errors: CI 0..0.19% */
    rpt_options_t opt = gate_opts(1, 1, -1, 100);
    rpt_model_t m = gate_model(2000, 0, 5);
    rpt_gate_eval(&opt, &m, &g);
    assert_int_equal(g.result, RPT_PASS);
    assert_true(g.passed);
    assert_string_equal(g.verdict, "GATE PASS service=svc: compared 2000 >= 100; "
                                   "divergence 0.25% <= 1.00% (95% CI 0.11%..0.58%); "
                                   "shadow errors 0.00% <= 1.00% (95% CI 0.00%..0.19%)");
    assert_true(g.checks[1].has_ci && fabs(g.checks[1].ci.hi - 0.5839) < 1e-3);

    /* 100 of 1000: CI 8.29%..12.02%, entirely above 1% */
    m = gate_model(1000, 0, 100);
    rpt_gate_eval(&opt, &m, &g);
    assert_int_equal(g.result, RPT_FAIL);
    assert_false(g.passed);
    assert_string_equal(g.verdict, "GATE FAIL service=svc: failed: "
                                   "divergence 10.00% > 1.00% (95% CI 8.29%..12.02%)");

    /* 20 of 150 against 10%: CI 8.80%..19.70% holds 10% */
    opt = gate_opts(10, -1, -1, 100);
    m = gate_model(150, 0, 20);
    rpt_gate_eval(&opt, &m, &g);
    assert_int_equal(g.result, RPT_INCONCLUSIVE);
    assert_false(g.passed);
    assert_string_equal(g.verdict, "GATE INCONCLUSIVE service=svc: undecided: "
                                   "divergence 13.33% undecided at 10.00% (95% CI 8.80%..19.70%)");
    /* the same point estimate on more data is decided */
    m = gate_model(15000, 0, 2000);
    rpt_gate_eval(&opt, &m, &g);
    assert_int_equal(g.result, RPT_FAIL);

    /* 0 of 380 cannot show <= 1% yet (upper 1.0008%), 0 of 381 can (0.9982%) */
    opt = gate_opts(1, -1, -1, -1);
    m = gate_model(380, 0, 0);
    rpt_gate_eval(&opt, &m, &g);
    assert_int_equal(g.result, RPT_INCONCLUSIVE);
    m = gate_model(381, 0, 0);
    rpt_gate_eval(&opt, &m, &g);
    assert_int_equal(g.result, RPT_PASS);
}

static void test_gate_precedence_and_missing_data(void **state)
{
    rpt_gate_t g;
    /* too few compared: inconclusive, even when every rate looks perfect */
    rpt_options_t opt = gate_opts(1, 10, -1, 100);
    rpt_model_t m = gate_model(50, 0, 0);
    rpt_gate_eval(&opt, &m, &g);
    assert_int_equal(g.result, RPT_INCONCLUSIVE);
    assert_int_equal(g.checks[0].result, RPT_INCONCLUSIVE);
    assert_non_null(strstr(g.verdict, "compared 50 < 100 (too few to decide)"));
    assert_int_equal(g.checks[2].result, RPT_PASS);  /* 0 of 50 errors: upper 7.13% <= 10% */
    assert_null(strstr(g.verdict, "shadow errors")); /* only what decided is named */
    /* ... but a decisive failure stands below --min-compared (40 of 50: CI from 67%) */
    m = gate_model(50, 0, 40);
    rpt_gate_eval(&opt, &m, &g);
    assert_int_equal(g.result, RPT_FAIL);
    assert_string_equal(g.verdict, "GATE FAIL service=svc: failed: "
                                   "divergence 80.00% > 1.00% (95% CI 66.96%..88.76%)");
    /* fail beats inconclusive beats pass */
    opt = gate_opts(5, 1, -1, 100);
    m = gate_model(200, 10, 10); /* errors 5%: CI 2.74%..8.96% > 1%; divergence 10/190: CI
                                    2.88%..9.42% holds 5% */
    rpt_gate_eval(&opt, &m, &g);
    assert_int_equal(g.checks[1].result, RPT_INCONCLUSIVE);
    assert_int_equal(g.checks[2].result, RPT_FAIL);
    assert_int_equal(g.result, RPT_FAIL);
    assert_string_equal(g.verdict, "GATE FAIL service=svc: failed: "
                                   "shadow errors 5.00% > 1.00% (95% CI 2.74%..8.96%)");

    /* nothing comparable, no latency: inconclusive, never a pass */
    opt = gate_opts(50, -1, 2, -1);
    m = gate_model(5, 5, 0);
    rpt_gate_eval(&opt, &m, &g);
    assert_int_equal(g.result, RPT_INCONCLUSIVE);
    assert_false(g.checks[0].evaluated);
    assert_string_equal(g.verdict, "GATE INCONCLUSIVE service=svc: undecided: divergence unknown "
                                   "(nothing comparable); latency ratio unknown (no latency data)");
    /* a --since window over schema-1 data has no latency: said so */
    m.latency_windowed = 1;
    m.schema = 1;
    rpt_gate_eval(&opt, &m, &g);
    assert_non_null(strstr(g.verdict, "written by schema-1 writers"));

    /* latency is a point estimate: pass or fail once known */
    double bounds[] = {1, 2, 4, 8};
    uint64_t pc[] = {0, 10, 0, 0}, sc[] = {0, 0, 0, 10};
    m = gate_model(10, 0, 0);
    m.lat_primary = (rpt_hist_t){bounds, pc, 4, 0, 10, 0};
    m.lat_shadow = (rpt_hist_t){bounds, sc, 4, 0, 10, 0};
    opt = gate_opts(-1, -1, 2, -1);
    rpt_gate_eval(&opt, &m, &g);
    assert_int_equal(g.result, RPT_FAIL); /* p99 7.96 / 1.99 = 4.0 > 2 */
    opt = gate_opts(-1, -1, 5, -1);
    rpt_gate_eval(&opt, &m, &g);
    assert_int_equal(g.result, RPT_PASS);
    assert_string_equal(rpt_result_name(RPT_INCONCLUSIVE), "inconclusive");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wilson),
        cmocka_unit_test(test_quantiles),
        cmocka_unit_test(test_counts_and_format),
        cmocka_unit_test(test_gate_three_verdicts),
        cmocka_unit_test(test_gate_precedence_and_missing_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
