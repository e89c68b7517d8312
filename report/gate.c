/*
 * gate.c: the promotion gate. Each threshold given on the command line is
 * one check; the gate passes when every check passes. A check that cannot
 * be evaluated (nothing comparable, no latency data) fails: a gate must not
 * pass on missing evidence.
 *
 *   --max-divergence PCT     diverged / comparable * 100 <= PCT
 *   --max-shadow-errors PCT  errors / compared * 100 <= PCT
 *   --max-latency-ratio R    shadow p99 / stable p99 <= R
 *   --min-compared N         compared >= N
 */
#include <string.h>

#include "model.h"

static rpt_check_t *add(rpt_gate_t *g, const char *name, double threshold)
{
    rpt_check_t *c = &g->checks[g->nchecks++];
    memset(c, 0, sizeof(*c));
    c->name = name;
    c->threshold = threshold;
    c->evaluated = 1;
    return c;
}

void rpt_gate_eval(const rpt_options_t *opt, const rpt_model_t *m, rpt_gate_t *g)
{
    memset(g, 0, sizeof(*g));
    g->enabled = opt->gate;
    if (!opt->gate) return;
    const rpt_tally_t *t = &m->total;
    uint64_t comparable = rpt_comparable(t);
    if (opt->min_compared >= 0) {
        rpt_check_t *c = add(g, "min_compared", (double)opt->min_compared);
        c->value = (double)t->compared;
        c->passed = t->compared >= (uint64_t)opt->min_compared;
        snprintf(c->text, sizeof(c->text), "compared %llu %s %lld", (unsigned long long)t->compared,
                 c->passed ? ">=" : "<", (long long)opt->min_compared);
    }
    if (opt->max_divergence_pct >= 0) {
        rpt_check_t *c = add(g, "divergence", opt->max_divergence_pct);
        if (comparable == 0) {
            c->evaluated = 0;
            snprintf(c->text, sizeof(c->text), "divergence unknown (nothing comparable)");
        } else {
            c->value = 100.0 * rpt_ratio(t->diverged, comparable);
            c->passed = c->value <= opt->max_divergence_pct;
            snprintf(c->text, sizeof(c->text), "divergence %.2f%% %s %.2f%%", c->value,
                     c->passed ? "<=" : ">", opt->max_divergence_pct);
        }
    }
    if (opt->max_shadow_errors_pct >= 0) {
        rpt_check_t *c = add(g, "shadow_errors", opt->max_shadow_errors_pct);
        if (t->compared == 0) {
            c->evaluated = 0;
            snprintf(c->text, sizeof(c->text), "shadow errors unknown (nothing compared)");
        } else {
            c->value = 100.0 * rpt_ratio(t->errors, t->compared);
            c->passed = c->value <= opt->max_shadow_errors_pct;
            snprintf(c->text, sizeof(c->text), "shadow errors %.2f%% %s %.2f%%", c->value,
                     c->passed ? "<=" : ">", opt->max_shadow_errors_pct);
        }
    }
    if (opt->max_latency_ratio >= 0) {
        rpt_check_t *c = add(g, "latency_ratio", opt->max_latency_ratio);
        double r = rpt_latency_ratio(&m->lat_primary, &m->lat_shadow, 0.99);
        if (r < 0) {
            c->evaluated = 0;
            snprintf(c->text, sizeof(c->text), "latency ratio unknown (no latency data)");
        } else {
            c->value = r;
            c->passed = r <= opt->max_latency_ratio;
            snprintf(c->text, sizeof(c->text), "p99 latency ratio %.2f %s %.2f", r,
                     c->passed ? "<=" : ">", opt->max_latency_ratio);
        }
    }
    g->passed = 1;
    for (size_t i = 0; i < g->nchecks; i++)
        g->passed &= g->checks[i].passed;
    size_t o = (size_t)snprintf(g->verdict, sizeof(g->verdict), "GATE %s service=%s",
                                g->passed ? "PASS" : "FAIL", m->service ? m->service : "?");
    const char *sep = g->passed ? ": " : ": failed: ";
    for (size_t i = 0; i < g->nchecks && o < sizeof(g->verdict); i++) {
        const rpt_check_t *c = &g->checks[i];
        if (!g->passed && c->passed) continue; /* a failing verdict names only what failed */
        o += (size_t)snprintf(g->verdict + o, sizeof(g->verdict) - o, "%s%s", sep, c->text);
        sep = "; ";
    }
    if (g->nchecks == 0 && o < sizeof(g->verdict))
        snprintf(g->verdict + o, sizeof(g->verdict) - o, ": no thresholds given");
}
