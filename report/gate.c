/*
 * gate.c: the promotion gate. Each threshold given on the command line is
 * one check, and each check ends pass, fail or inconclusive:
 *
 *   --max-divergence PCT     diverged / comparable: pass when the upper bound
 *                            of its Wilson 95% interval is <= PCT, fail when
 *                            the lower bound is > PCT, else inconclusive
 *   --max-shadow-errors PCT  errors / compared, the same way
 *   --max-latency-ratio R    shadow p99 / stable p99 <= R (point estimate)
 *   --min-compared N         compared >= N, else inconclusive (too few)
 *
 * A check without data to compute its value is inconclusive. The gate fails
 * when a check fails (a decisive failure stands even below --min-compared:
 * the interval already accounts for the sample size), else it is
 * inconclusive when a check is, else it passes: never on missing evidence.
 */
#include <string.h>

#include "model.h"

const char *rpt_result_name(rpt_result_t r)
{
    return r == RPT_PASS ? "pass" : r == RPT_FAIL ? "fail" : "inconclusive";
}

static rpt_check_t *add(rpt_gate_t *g, const char *name, double threshold)
{
    rpt_check_t *c = &g->checks[g->nchecks++];
    memset(c, 0, sizeof(*c));
    c->name = name;
    c->threshold = threshold;
    c->evaluated = 1;
    return c;
}

static void unknown(rpt_check_t *c, const char *text)
{
    c->evaluated = 0;
    c->result = RPT_INCONCLUSIVE;
    snprintf(c->text, sizeof(c->text), "%s", text);
}

/* x out of n against max_pct, decided on the Wilson interval. */
static void rate_check(rpt_gate_t *g, const char *name, const char *label, uint64_t x, uint64_t n,
                       double max_pct, const char *none)
{
    rpt_check_t *c = add(g, name, max_pct);
    if (n == 0) {
        char text[128];
        snprintf(text, sizeof(text), "%s unknown (%s)", label, none);
        unknown(c, text);
        return;
    }
    rpt_interval_t ci = rpt_wilson(x, n);
    c->value = 100.0 * rpt_ratio(x, n);
    c->has_ci = 1;
    c->ci.lo = 100.0 * ci.lo;
    c->ci.hi = 100.0 * ci.hi;
    const char *rel;
    if (c->ci.hi <= max_pct) {
        c->result = RPT_PASS;
        rel = "<=";
    } else if (c->ci.lo > max_pct) {
        c->result = RPT_FAIL;
        rel = ">";
    } else {
        c->result = RPT_INCONCLUSIVE;
        rel = "undecided at";
    }
    snprintf(c->text, sizeof(c->text), "%s %.2f%% %s %.2f%% (95%% CI %.2f%%..%.2f%%)", label,
             c->value, rel, max_pct, c->ci.lo, c->ci.hi);
}

void rpt_gate_eval(const rpt_options_t *opt, const rpt_model_t *m, rpt_gate_t *g)
{
    memset(g, 0, sizeof(*g));
    g->enabled = opt->gate;
    if (!opt->gate) return;
    const rpt_tally_t *t = &m->total;
    if (opt->min_compared >= 0) {
        rpt_check_t *c = add(g, "min_compared", (double)opt->min_compared);
        c->value = (double)t->compared;
        int enough = t->compared >= (uint64_t)opt->min_compared;
        c->result = enough ? RPT_PASS : RPT_INCONCLUSIVE;
        snprintf(c->text, sizeof(c->text), "compared %llu %s %lld%s",
                 (unsigned long long)t->compared, enough ? ">=" : "<", (long long)opt->min_compared,
                 enough ? "" : " (too few to decide)");
    }
    if (opt->max_divergence_pct >= 0)
        rate_check(g, "divergence", "divergence", t->diverged, rpt_comparable(t),
                   opt->max_divergence_pct, "nothing comparable");
    if (opt->max_shadow_errors_pct >= 0)
        rate_check(g, "shadow_errors", "shadow errors", t->errors, t->compared,
                   opt->max_shadow_errors_pct, "nothing compared");
    if (opt->max_latency_ratio >= 0) {
        rpt_check_t *c = add(g, "latency_ratio", opt->max_latency_ratio);
        double r = rpt_latency_ratio(&m->lat_primary, &m->lat_shadow, 0.99);
        if (r >= 0) {
            c->value = r;
            c->result = r <= opt->max_latency_ratio ? RPT_PASS : RPT_FAIL;
            snprintf(c->text, sizeof(c->text), "p99 latency ratio %.2f %s %.2f", r,
                     c->result == RPT_PASS ? "<=" : ">", opt->max_latency_ratio);
        } else if (m->latency_windowed && m->schema < 2 && t->compared) {
            unknown(c, "latency ratio unknown (no latency in the --since window: the data "
                       "was written by schema-1 writers, whose latency is all-time only)");
        } else {
            unknown(c, m->latency_windowed ? "latency ratio unknown (no latency data in the "
                                             "--since window)"
                                           : "latency ratio unknown (no latency data)");
        }
    }
    g->result = RPT_PASS;
    for (size_t i = 0; i < g->nchecks; i++) {
        rpt_check_t *c = &g->checks[i];
        c->passed = c->result == RPT_PASS;
        if (c->result > g->result) g->result = c->result;
    }
    g->passed = g->result == RPT_PASS;
    static const char *const head[] = {"PASS", "INCONCLUSIVE", "FAIL"};
    static const char *const lead[] = {": ", ": undecided: ", ": failed: "};
    size_t o = (size_t)snprintf(g->verdict, sizeof(g->verdict), "GATE %s service=%s",
                                head[g->result], m->service ? m->service : "?");
    const char *sep = lead[g->result];
    for (size_t i = 0; i < g->nchecks && o < sizeof(g->verdict); i++) {
        const rpt_check_t *c = &g->checks[i];
        if (c->result != g->result) continue; /* name only what decided the verdict */
        o += (size_t)snprintf(g->verdict + o, sizeof(g->verdict) - o, "%s%s", sep, c->text);
        sep = "; ";
    }
    if (g->nchecks == 0 && o < sizeof(g->verdict))
        snprintf(g->verdict + o, sizeof(g->verdict) - o, ": no thresholds given");
}
