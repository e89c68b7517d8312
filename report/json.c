/*
 * json.c: the --format json document (schema documented in docs/REPORT.md;
 * keys are only ever added, never renamed). Rates are fractions (0..1),
 * latencies in ms; unknown values are null.
 */
#include <math.h>
#include <stdlib.h>

#include "model.h"
#include "shadowtee/schema.h"

static json_t *num_or_null(double v)
{
    return v < 0 || !isfinite(v) ? json_null() : json_real(v);
}

static json_t *ci_json(uint64_t x, uint64_t n)
{
    if (n == 0) return json_null();
    rpt_interval_t ci = rpt_wilson(x, n);
    return json_pack("[f,f]", ci.lo, ci.hi);
}

static json_t *hist_json(const rpt_hist_t *h)
{
    uint64_t n = rpt_hist_total(h);
    return json_pack("{s:I,s:o,s:o,s:o}", "count", (json_int_t)n, "mean_ms",
                     num_or_null(n ? h->sum_ms / (double)n : -1), "p50_ms",
                     num_or_null(rpt_hist_quantile(h, 0.5)), "p99_ms",
                     num_or_null(rpt_hist_quantile(h, 0.99)));
}

static json_t *latency_json(const rpt_hist_t *p, const rpt_hist_t *s)
{
    return json_pack("{s:o,s:o,s:o,s:o}", "stable", hist_json(p), "shadow", hist_json(s),
                     "p50_ratio", num_or_null(rpt_latency_ratio(p, s, 0.5)), "p99_ratio",
                     num_or_null(rpt_latency_ratio(p, s, 0.99)));
}

static json_t *paths_json(const rpt_counts_t *c)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < c->n; i++)
        json_array_append_new(a, json_pack("{s:s,s:s,s:I}", "path", c->v[i].name, "kind",
                                           c->v[i].kind ? c->v[i].kind : "", "count",
                                           (json_int_t)c->v[i].count));
    return a;
}

static json_t *map_json(const rpt_counts_t *c)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < c->n; i++)
        json_object_set_new(o, c->v[i].name, json_integer((json_int_t)c->v[i].count));
    return o;
}

/* The counters and rates of one tally, set into o. */
static void tally_json(json_t *o, const rpt_tally_t *t)
{
    uint64_t comparable = rpt_comparable(t);
    json_object_set_new(o, "compared", json_integer((json_int_t)t->compared));
    json_object_set_new(o, "comparable", json_integer((json_int_t)comparable));
    json_object_set_new(o, "matched", json_integer((json_int_t)t->matched));
    json_object_set_new(o, "diverged", json_integer((json_int_t)t->diverged));
    json_object_set_new(o, "noise", json_integer((json_int_t)t->noise));
    json_object_set_new(o, "shadow_errors", json_integer((json_int_t)t->errors));
    json_object_set_new(o, "shadow_timeouts", json_integer((json_int_t)t->timeouts));
    json_object_set_new(o, "divergence_rate", json_real(rpt_ratio(t->diverged, comparable)));
    json_object_set_new(o, "divergence_ci95", ci_json(t->diverged, comparable));
    json_object_set_new(o, "noise_rate", json_real(rpt_ratio(t->noise, comparable)));
    json_object_set_new(o, "shadow_error_rate", json_real(rpt_ratio(t->errors, t->compared)));
    json_object_set_new(o, "shadow_timeout_rate", json_real(rpt_ratio(t->timeouts, t->compared)));
}

static json_t *sources_json(const rpt_sources_t *s)
{
    return json_pack("{s:I,s:I}", "tee", (json_int_t)s->tee, "mesh", (json_int_t)s->mesh);
}

static int sample_newer(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, ST_S_TIME_MS));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, ST_S_TIME_MS));
    return x < y ? 1 : x > y ? -1 : 0;
}

json_t *rpt_to_json(const rpt_options_t *opt, const rpt_model_t *m, const rpt_gate_t *g)
{
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "schema", json_integer(1));
    json_object_set_new(o, "service", json_string(m->service));
    json_object_set_new(o, "generated_ms", json_integer(opt->now_ms));
    json_object_set_new(o, "data_schema", m->schema ? json_integer(m->schema) : json_null());
    json_object_set_new(o, "endpoint_filter",
                        opt->endpoint ? json_string(opt->endpoint) : json_null());
    json_object_set_new(
        o, "window",
        json_pack("{s:o,s:b,s:I,s:I,s:I,s:I,s:I}", "since_s",
                  opt->since_s ? json_integer(opt->since_s) : json_null(), "latency_windowed",
                  m->latency_windowed, "start_ms", (json_int_t)m->window_start_ms, "end_ms",
                  (json_int_t)m->window_end_ms, "duration_s",
                  (json_int_t)((m->window_end_ms - m->window_start_ms) / 1000), "first_seen_ms",
                  (json_int_t)m->first_seen_ms, "last_seen_ms", (json_int_t)m->last_seen_ms));
    tally_json(o, &m->total);
    json_object_set_new(o, "sources", sources_json(&m->sources));
    json_object_set_new(
        o, "mesh",
        m->has_mesh
            ? json_pack("{s:{s:I,s:I,s:I},s:I}", "orphans", "stable", (json_int_t)m->orphans[0],
                        "shadow", (json_int_t)m->orphans[1], "baseline", (json_int_t)m->orphans[2],
                        "pending", (json_int_t)m->pending)
            : json_null());
    json_object_set_new(o, "latency", latency_json(&m->lat_primary, &m->lat_shadow));

    json_t *eps = json_array();
    json_t **all = NULL;
    size_t nall = 0;
    for (size_t i = 0; i < m->neps; i++) {
        const rpt_endpoint_t *ep = &m->eps[i];
        json_t *e = json_object();
        json_object_set_new(e, "endpoint", json_string(ep->name));
        tally_json(e, &ep->t);
        json_object_set_new(e, "sources", sources_json(&ep->sources));
        json_object_set_new(e, "paths", paths_json(&ep->paths));
        json_object_set_new(e, "noise_paths", paths_json(&ep->noise_paths));
        json_object_set_new(e, "kinds", map_json(&ep->kinds));
        if (ep->noise_kinds.n) /* only with noise entries: other data's output is unchanged */
            json_object_set_new(e, "noise_kinds", map_json(&ep->noise_kinds));
        json_object_set_new(e, "errors_by_reason", map_json(&ep->reasons));
        json_object_set_new(e, "latency", latency_json(&ep->lat_primary, &ep->lat_shadow));
        json_object_set_new(e, "samples", json_integer((json_int_t)json_array_size(ep->samples)));
        json_array_append_new(eps, e);
        nall += json_array_size(ep->samples);
    }
    json_object_set_new(o, "endpoints", eps);

    /* samples of every endpoint, newest first */
    json_t *samples = json_array();
    all = nall ? calloc(nall, sizeof(*all)) : NULL;
    size_t k = 0;
    for (size_t i = 0; all && i < m->neps; i++)
        for (size_t j = 0; j < json_array_size(m->eps[i].samples); j++)
            all[k++] = json_array_get(m->eps[i].samples, j);
    if (all) qsort(all, k, sizeof(*all), sample_newer);
    for (size_t i = 0; i < k; i++)
        json_array_append(samples, all[i]);
    free(all);
    json_object_set_new(o, "samples", samples);

    json_t *tl = json_array();
    for (size_t i = 0; i < m->ntimeline; i++) {
        const rpt_tally_t *t = &m->timeline[i].t;
        json_array_append_new(
            tl, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "minute_ms",
                          (json_int_t)(m->timeline[i].minute * 60000), "compared",
                          (json_int_t)t->compared, "diverged", (json_int_t)t->diverged, "noise",
                          (json_int_t)t->noise, "shadow_errors", (json_int_t)t->errors,
                          "shadow_timeouts", (json_int_t)t->timeouts, "divergence_rate",
                          rpt_ratio(t->diverged, rpt_comparable(t))));
    }
    json_object_set_new(o, "timeline", tl);

    if (g && g->enabled) {
        json_t *checks = json_array();
        for (size_t i = 0; i < g->nchecks; i++) {
            const rpt_check_t *c = &g->checks[i];
            json_t *ci = c->has_ci ? json_pack("[f,f]", c->ci.lo, c->ci.hi) : json_null();
            json_array_append_new(
                checks,
                json_pack("{s:s,s:o,s:f,s:b,s:b,s:s,s:o,s:s}", "name", c->name, "value",
                          c->evaluated ? json_real(c->value) : json_null(), "threshold",
                          c->threshold, "evaluated", c->evaluated, "passed", c->passed, "result",
                          rpt_result_name(c->result), "ci95_pct", ci, "text", c->text));
        }
        json_object_set_new(o, "gate",
                            json_pack("{s:b,s:s,s:s,s:o}", "passed", g->passed, "result",
                                      rpt_result_name(g->result), "verdict", g->verdict, "checks",
                                      checks));
    } else {
        json_object_set_new(o, "gate", json_null());
    }
    return o;
}

int rpt_render_json(FILE *out, const rpt_options_t *opt, const rpt_model_t *m, const rpt_gate_t *g)
{
    json_t *o = rpt_to_json(opt, m, g);
    if (!o) return -1;
    int rc = json_dumpf(o, out, JSON_INDENT(2) | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(10));
    json_decref(o);
    fputc('\n', out);
    return rc == 0 && !ferror(out) ? 0 : -1;
}
