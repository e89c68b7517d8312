/*
 * text.c: the human-readable report (default --format text): summary,
 * endpoints by divergence, top diverging and noise paths (and noise entries
 * by kind), divergence per minute, newest divergent samples side by side.
 * Sample fields as include/shadowtee/schema.h spells them.
 */
#include <string.h>

#include "model.h"
#include "shadowtee/schema.h"

#define TOP_PATHS       10
#define SAMPLES_PER_EP  3
#define DIFFS_PER_SAMPL 10
#define MAX_TIMELINE    60 /* newest minutes shown */

static void pct(char *buf, size_t len, uint64_t x, uint64_t n)
{
    if (n == 0)
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%.2f%%", 100.0 * (double)x / (double)n);
}

static void ms(char *buf, size_t len, double v)
{
    if (v < 0)
        snprintf(buf, len, "-");
    else if (v >= 1000)
        snprintf(buf, len, "%.2f s", v / 1000);
    else
        snprintf(buf, len, "%.2f ms", v);
}

static void ratio(char *buf, size_t len, double r)
{
    if (r < 0)
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%.2f", r);
}

static const char *js(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

/* A value from a sample, printed on one line, cut at `max` bytes. */
static void put_value(FILE *out, const char *v, size_t max)
{
    if (!v) {
        fputs("(absent)", out);
        return;
    }
    size_t n = strlen(v);
    for (size_t i = 0; i < n && i < max; i++)
        fputc(v[i] == '\n' || v[i] == '\r' ? ' ' : v[i], out);
    if (n > max) fputs("...", out);
}

static void summary(FILE *out, const rpt_options_t *opt, const rpt_model_t *m)
{
    char a[64], b[64], c[64], d[64], e[64], f[64];
    const rpt_tally_t *t = &m->total;
    uint64_t comparable = rpt_comparable(t);
    fprintf(out, "shadowtee report: service %s%s%s\n", m->service,
            opt->endpoint ? ", endpoint " : "", opt->endpoint ? opt->endpoint : "");
    rpt_fmt_time(m->window_start_ms, a, sizeof(a));
    rpt_fmt_time(m->window_end_ms, b, sizeof(b));
    rpt_fmt_duration((m->window_end_ms - m->window_start_ms) / 1000, c, sizeof(c));
    if (opt->since_s) {
        rpt_fmt_duration(opt->since_s, d, sizeof(d));
        fprintf(out, "window:          %s .. %s (%s, --since %s)\n", a, b, c, d);
    } else {
        fprintf(out, "window:          %s .. %s (%s, all data)\n", a, b, c);
    }
    fprintf(out, "compared:        %llu (comparable %llu, matched %llu)\n",
            (unsigned long long)t->compared, (unsigned long long)comparable,
            (unsigned long long)t->matched);
    pct(a, sizeof(a), t->diverged, comparable);
    if (comparable) {
        rpt_interval_t ci = rpt_wilson(t->diverged, comparable);
        fprintf(out, "diverged:        %llu  rate %s  (95%% CI %.2f%% .. %.2f%%)\n",
                (unsigned long long)t->diverged, a, 100 * ci.lo, 100 * ci.hi);
    } else {
        fprintf(out, "diverged:        %llu  rate -\n", (unsigned long long)t->diverged);
    }
    pct(a, sizeof(a), t->noise, comparable);
    fprintf(out, "noise-only:      %llu  rate %s\n", (unsigned long long)t->noise, a);
    pct(a, sizeof(a), t->errors, t->compared);
    pct(b, sizeof(b), t->timeouts, t->compared);
    fprintf(out, "shadow errors:   %llu  rate %s  (timeouts %llu, rate %s)\n",
            (unsigned long long)t->errors, a, (unsigned long long)t->timeouts, b);
    ms(a, sizeof(a), rpt_hist_quantile(&m->lat_primary, 0.5));
    ms(b, sizeof(b), rpt_hist_quantile(&m->lat_shadow, 0.5));
    ratio(c, sizeof(c), rpt_latency_ratio(&m->lat_primary, &m->lat_shadow, 0.5));
    ms(d, sizeof(d), rpt_hist_quantile(&m->lat_primary, 0.99));
    ms(e, sizeof(e), rpt_hist_quantile(&m->lat_shadow, 0.99));
    ratio(f, sizeof(f), rpt_latency_ratio(&m->lat_primary, &m->lat_shadow, 0.99));
    fprintf(out, "sources:         tee %llu, mesh %llu\n", (unsigned long long)m->sources.tee,
            (unsigned long long)m->sources.mesh);
    if (m->has_mesh)
        fprintf(out,
                "mesh halves:     orphans: stable %llu, shadow %llu, baseline %llu; waiting %llu\n",
                (unsigned long long)m->orphans[0], (unsigned long long)m->orphans[1],
                (unsigned long long)m->orphans[2], (unsigned long long)m->pending);
    fprintf(out, "latency p50:     stable %s  shadow %s  ratio %s\n", a, b, c);
    fprintf(out, "latency p99:     stable %s  shadow %s  ratio %s\n", d, e, f);
    if (m->latency_windowed && m->schema < 2 && t->compared && !rpt_hist_total(&m->lat_primary))
        fprintf(out, "                 (no latency in the window: this data was written by "
                     "schema-1 writers, whose latency is all-time only)\n");
}

static void endpoints(FILE *out, const rpt_model_t *m)
{
    fprintf(out, "\nEndpoints (highest divergence first)\n");
    fprintf(out, "  %-40s %10s %10s %9s %8s %8s %9s\n", "ENDPOINT", "COMPARED", "DIVERGED", "RATE",
            "NOISE", "ERRORS", "P99RATIO");
    for (size_t i = 0; i < m->neps; i++) {
        const rpt_endpoint_t *ep = &m->eps[i];
        char r[32], lr[32];
        pct(r, sizeof(r), ep->t.diverged, rpt_comparable(&ep->t));
        ratio(lr, sizeof(lr), rpt_latency_ratio(&ep->lat_primary, &ep->lat_shadow, 0.99));
        fprintf(out, "  %-40s %10llu %10llu %9s %8llu %8llu %9s\n", ep->name,
                (unsigned long long)ep->t.compared, (unsigned long long)ep->t.diverged, r,
                (unsigned long long)ep->t.noise, (unsigned long long)ep->t.errors, lr);
    }
    for (size_t i = 0; i < m->neps; i++) {
        const rpt_endpoint_t *ep = &m->eps[i];
        if (!ep->paths.n && !ep->noise_paths.n && !ep->reasons.n) continue;
        fprintf(out, "\n  %s\n", ep->name);
        if (ep->paths.n) fprintf(out, "    top diverging paths:\n");
        for (size_t k = 0; k < ep->paths.n && k < TOP_PATHS; k++)
            fprintf(out, "      %8llu  %-13s %s\n", (unsigned long long)ep->paths.v[k].count,
                    ep->paths.v[k].kind, ep->paths.v[k].name);
        if (ep->paths.n > TOP_PATHS)
            fprintf(out, "      (%zu more paths)\n", ep->paths.n - TOP_PATHS);
        if (ep->noise_paths.n)
            fprintf(out, "    noise paths (also differ between stable replicas, not counted):\n");
        for (size_t k = 0; k < ep->noise_paths.n && k < TOP_PATHS; k++)
            fprintf(out, "      %8llu  %-13s %s\n", (unsigned long long)ep->noise_paths.v[k].count,
                    ep->noise_paths.v[k].kind, ep->noise_paths.v[k].name);
        if (ep->noise_kinds.n) { /* only data with noise entries has these lines */
            fprintf(out, "    noise by kind:");
            for (size_t k = 0; k < ep->noise_kinds.n; k++)
                fprintf(out, " %s=%llu", ep->noise_kinds.v[k].name,
                        (unsigned long long)ep->noise_kinds.v[k].count);
            fputc('\n', out);
        }
        if (ep->reasons.n) {
            fprintf(out, "    shadow errors:");
            for (size_t k = 0; k < ep->reasons.n; k++)
                fprintf(out, " %s=%llu", ep->reasons.v[k].name,
                        (unsigned long long)ep->reasons.v[k].count);
            fputc('\n', out);
        }
    }
}

static void timeline(FILE *out, const rpt_model_t *m)
{
    if (!m->ntimeline) return;
    fprintf(out, "\nDivergence over time (per minute, UTC)\n");
    size_t first = m->ntimeline > MAX_TIMELINE ? m->ntimeline - MAX_TIMELINE : 0;
    for (size_t i = first; i < m->ntimeline; i++) {
        const rpt_tally_t *t = &m->timeline[i].t;
        char when[32], r[32];
        rpt_fmt_time(m->timeline[i].minute * 60000, when, sizeof(when));
        pct(r, sizeof(r), t->diverged, rpt_comparable(t));
        double frac = rpt_ratio(t->diverged, rpt_comparable(t));
        fprintf(out, "  %.16s  compared %6llu  diverged %6llu  %8s  ", when,
                (unsigned long long)t->compared, (unsigned long long)t->diverged, r);
        for (int k = 0; k < (int)(frac * 40 + 0.5); k++)
            fputc('#', out);
        fputc('\n', out);
    }
}

static void samples(FILE *out, const rpt_model_t *m)
{
    int any = 0;
    for (size_t i = 0; i < m->neps; i++) {
        json_t *arr = m->eps[i].samples;
        for (size_t k = 0; k < json_array_size(arr) && k < SAMPLES_PER_EP; k++) {
            json_t *s = json_array_get(arr, k);
            if (!any++) fprintf(out, "\nNewest divergent samples (redacted as stored)\n");
            char when[32];
            rpt_fmt_time(json_integer_value(json_object_get(s, ST_S_TIME_MS)), when, sizeof(when));
            json_t *p = json_object_get(s, ST_S_PRIMARY), *sh = json_object_get(s, ST_S_SHADOW);
            const char *src = json_string_value(json_object_get(s, ST_S_SOURCE));
            fprintf(out, "  %s  %s %s  request-id %s  %s  %s  status stable %lld / shadow %lld\n",
                    m->eps[i].name, js(s, ST_S_METHOD), js(s, ST_S_PATH), js(s, ST_S_REQUEST_ID),
                    when, src && !strcmp(src, ST_SOURCE_MESH) ? ST_SOURCE_MESH : ST_SOURCE_TEE,
                    (long long)json_integer_value(json_object_get(p, ST_S_STATUS)),
                    (long long)json_integer_value(json_object_get(sh, ST_S_STATUS)));
            json_t *diffs = json_object_get(s, ST_S_DIFFS);
            for (size_t d = 0; d < json_array_size(diffs) && d < DIFFS_PER_SAMPL; d++) {
                json_t *e = json_array_get(diffs, d);
                fprintf(out, "    %-30s [%s%s]  stable: ", js(e, ST_S_DIFF_PATH),
                        js(e, ST_S_DIFF_KIND),
                        json_is_true(json_object_get(e, ST_S_DIFF_NOISE)) ? ", noise" : "");
                put_value(out, json_string_value(json_object_get(e, ST_S_DIFF_A)), 60);
                fputs("  shadow: ", out);
                put_value(out, json_string_value(json_object_get(e, ST_S_DIFF_B)), 60);
                fputc('\n', out);
            }
        }
    }
}

int rpt_render_text(FILE *out, const rpt_options_t *opt, const rpt_model_t *m, const rpt_gate_t *g)
{
    summary(out, opt, m);
    endpoints(out, m);
    timeline(out, m);
    samples(out, m);
    return ferror(out) ? -1 : 0;
}
