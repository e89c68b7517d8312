/*
 * html.c: --format html, one self-contained file: inline CSS, inline SVG
 * charts (divergence per minute, divergence per endpoint, latency stable vs
 * shadow), no script, no external URL. Every string that comes from Redis
 * is user data and goes through esc() (HTML-escaped, also inside SVG).
 * Sample fields as include/shadowtee/schema.h spells them.
 */
#include <string.h>

#include "model.h"
#include "shadowtee/schema.h"

#define MAX_EP_BARS    25
#define SAMPLES_PER_EP 5
#define TOP_PATHS      15
#define BODY_SHOWN     4096

/* Writes s HTML-escaped (text and attribute safe); at most max bytes of it
 * (0: all), cut on a UTF-8 boundary and followed by "...". */
static void esc_n(FILE *out, const char *s, size_t max)
{
    if (!s) return;
    size_t n = strlen(s), lim = max && n > max ? max : n;
    while (max && lim < n && lim > 0 && ((unsigned char)s[lim] & 0xC0) == 0x80)
        lim--;
    for (size_t i = 0; i < lim; i++) {
        switch (s[i]) {
        case '&':
            fputs("&amp;", out);
            break;
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        case '\'':
            fputs("&#39;", out);
            break;
        default:
            fputc(s[i], out);
        }
    }
    if (lim < n) fputs("...", out);
}

static void esc(FILE *out, const char *s)
{
    esc_n(out, s, 0);
}

static const char *js(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

static void pct(char *buf, size_t len, uint64_t x, uint64_t n)
{
    if (n == 0)
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%.2f%%", 100.0 * (double)x / (double)n);
}

static void msfmt(char *buf, size_t len, double v)
{
    if (v < 0)
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%.2f ms", v);
}

static const char CSS[] =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;"
    "max-width:1100px;color:#1d2330;background:#fafbfc;padding:0 16px}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid "
    "#dde1e6;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}"
    ".sub{color:#5a6270;margin-bottom:16px}"
    "table{border-collapse:collapse;margin:6px 0;background:#fff}"
    "th,td{border:1px solid #dde1e6;padding:4px 8px;text-align:left;vertical-align:top}"
    "th{background:#f0f2f5;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}"
    ".kv th{width:170px}"
    ".gate{padding:10px 14px;border-radius:6px;font-weight:600;margin:12px 0}"
    ".gate.pass{background:#e3f6e8;color:#17672f;border:1px solid #9bd3ab}"
    ".gate.fail{background:#fde8e8;color:#8a1c1c;border:1px solid #f0a8a8}"
    ".gate.inconclusive{background:#fff6dd;color:#6b4e00;border:1px solid #e8cf85}"
    "code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}"
    "pre{background:#fff;border:1px solid #dde1e6;padding:8px;white-space:pre-wrap;"
    "word-break:break-all;max-height:300px;overflow:auto}"
    ".sample{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:8px 12px;"
    "margin:10px 0}.muted{color:#6b7380}svg{background:#fff;border:1px solid #dde1e6}"
    ".legend span{display:inline-block;margin-right:14px}"
    ".sw{display:inline-block;width:10px;height:10px;margin-right:4px}";

/* ---- charts ------------------------------------------------------------ */

static void chart_timeline(FILE *out, const rpt_model_t *m)
{
    const double W = 900, H = 220, L = 60, R = 20, T = 16, B = 34;
    fprintf(out,
            "<svg id=\"chart-timeline\" width=\"%.0f\" "
            "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" "
            "aria-label=\"divergence per minute\">\n",
            W, H, W, H);
    if (m->ntimeline == 0) {
        fprintf(out, "<text x=\"20\" y=\"40\">no per-minute data in the window</text></svg>\n");
        return;
    }
    uint64_t maxc = 1;
    for (size_t i = 0; i < m->ntimeline; i++)
        if (m->timeline[i].t.compared > maxc) maxc = m->timeline[i].t.compared;
    /* one slot per minute from the first to the last bucket, so gaps show */
    int64_t first = m->timeline[0].minute, slots = m->timeline[m->ntimeline - 1].minute - first + 1;
    if (slots > 7 * 24 * 60) { /* too wide: fall back to one slot per bucket */
        slots = (int64_t)m->ntimeline;
        first = -1;
    }
    double pw = W - L - R, ph = H - T - B, bw = pw / (double)slots;
    fprintf(out, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#888\"/>\n", L,
            T + ph, L + pw, T + ph);
    fprintf(out, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#888\"/>\n", L, T,
            L, T + ph);
    fprintf(out, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"end\">%llu</text>\n",
            L - 4, T + 10, (unsigned long long)maxc);
    fprintf(out, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"end\">0</text>\n",
            L - 4, T + ph);
    for (size_t i = 0; i < m->ntimeline; i++) {
        const rpt_tally_t *t = &m->timeline[i].t;
        double slot = first < 0 ? (double)i : (double)(m->timeline[i].minute - first);
        double x = L + bw * slot + (bw > 4 ? 1 : 0), w = bw > 4 ? bw - 2 : bw;
        double hc = ph * (double)t->compared / (double)maxc;
        double hd = ph * (double)t->diverged / (double)maxc;
        char when[32], r[32];
        rpt_fmt_time(m->timeline[i].minute * 60000, when, sizeof(when));
        pct(r, sizeof(r), t->diverged, rpt_comparable(t));
        fprintf(out,
                "<rect class=\"bar-compared\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                "height=\"%.1f\" fill=\"#c7d0dc\"><title>%.16s compared %llu</title></rect>\n",
                x, T + ph - hc, w, hc, when, (unsigned long long)t->compared);
        fprintf(out,
                "<rect class=\"bar-diverged\" data-minute=\"%lld\" data-diverged=\"%llu\" "
                "x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#d64545\">"
                "<title>%.16s diverged %llu (%s)</title></rect>\n",
                (long long)m->timeline[i].minute, (unsigned long long)t->diverged, x, T + ph - hd,
                w, hd, when, (unsigned long long)t->diverged, r);
    }
    char a[32], b[32];
    rpt_fmt_time(m->timeline[0].minute * 60000, a, sizeof(a));
    rpt_fmt_time(m->timeline[m->ntimeline - 1].minute * 60000, b, sizeof(b));
    fprintf(out, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\">%.16s</text>\n", L, H - 10, a);
    fprintf(out, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"end\">%.16s</text>\n",
            L + pw, H - 10, b);
    fprintf(out, "</svg>\n<div class=\"legend\"><span><i class=\"sw\" style=\"background:#c7d0dc\">"
                 "</i>compared</span><span><i class=\"sw\" style=\"background:#d64545\"></i>"
                 "diverged</span></div>\n");
}

static void chart_endpoints(FILE *out, const rpt_model_t *m)
{
    size_t n = m->neps < MAX_EP_BARS ? m->neps : MAX_EP_BARS;
    const double W = 900, L = 330, R = 90, row = 24, T = 10;
    double H = T * 2 + row * (double)(n ? n : 1);
    fprintf(out,
            "<svg id=\"chart-endpoints\" width=\"%.0f\" "
            "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" "
            "aria-label=\"divergence rate per endpoint\">\n",
            W, H, W, H);
    if (n == 0) fprintf(out, "<text x=\"20\" y=\"26\">no endpoints</text>\n");
    double maxr = 0;
    for (size_t i = 0; i < n; i++) {
        double r = rpt_ratio(m->eps[i].t.diverged, rpt_comparable(&m->eps[i].t));
        if (r > maxr) maxr = r;
    }
    if (maxr <= 0) maxr = 1;
    for (size_t i = 0; i < n; i++) {
        const rpt_endpoint_t *ep = &m->eps[i];
        double r = rpt_ratio(ep->t.diverged, rpt_comparable(&ep->t));
        double y = T + row * (double)i, w = (W - L - R) * r / maxr;
        char p[32];
        pct(p, sizeof(p), ep->t.diverged, rpt_comparable(&ep->t));
        fprintf(out, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\" text-anchor=\"end\">", L - 8,
                y + 16);
        esc_n(out, ep->name, 48);
        fprintf(out, "</text>\n<rect class=\"bar-endpoint\" data-endpoint=\"");
        esc(out, ep->name);
        fprintf(out,
                "\" x=\"%.0f\" y=\"%.0f\" width=\"%.1f\" height=\"%.0f\" fill=\"#d64545\">"
                "<title>",
                L, y + 4, w, row - 8);
        esc(out, ep->name);
        fprintf(out,
                ": %s</title></rect>\n<text x=\"%.1f\" y=\"%.0f\" font-size=\"12\">%s</text>\n", p,
                L + w + 6, y + 16, p);
    }
    fprintf(out, "</svg>\n");
}

static void chart_latency(FILE *out, const rpt_model_t *m)
{
    const double W = 520, H = 230, L = 60, T = 20, B = 40, ph = H - T - B;
    double v[4] = {rpt_hist_quantile(&m->lat_primary, 0.5), rpt_hist_quantile(&m->lat_shadow, 0.5),
                   rpt_hist_quantile(&m->lat_primary, 0.99),
                   rpt_hist_quantile(&m->lat_shadow, 0.99)};
    double maxv = 0;
    for (int i = 0; i < 4; i++)
        if (v[i] > maxv) maxv = v[i];
    fprintf(out,
            "<svg id=\"chart-latency\" width=\"%.0f\" "
            "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" "
            "aria-label=\"latency stable vs shadow\">\n",
            W, H, W, H);
    if (maxv <= 0) {
        fprintf(out, "<text x=\"20\" y=\"40\">no latency data</text></svg>\n");
        return;
    }
    fprintf(out, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#888\"/>\n", L,
            T + ph, W - 20, T + ph);
    const char *cls[2] = {"bar-stable", "bar-shadow"}, *fill[2] = {"#3b6fd4", "#e08a1e"};
    const char *grp[2] = {"p50", "p99"};
    for (int g = 0; g < 2; g++) {
        double gx = L + 30 + g * 210.0;
        for (int k = 0; k < 2; k++) {
            double val = v[g * 2 + k], h = val > 0 ? ph * val / maxv : 0;
            char t[32];
            msfmt(t, sizeof(t), val);
            fprintf(out,
                    "<rect class=\"%s\" data-quantile=\"%s\" data-ms=\"%.3f\" x=\"%.0f\" "
                    "y=\"%.1f\" width=\"70\" height=\"%.1f\" fill=\"%s\"><title>%s %s %s</title>"
                    "</rect>\n<text x=\"%.0f\" y=\"%.1f\" font-size=\"11\" "
                    "text-anchor=\"middle\">%s</text>\n",
                    cls[k], grp[g], val, gx + k * 80.0, T + ph - h, h, fill[k],
                    k ? "shadow" : "stable", grp[g], t, gx + k * 80.0 + 35, T + ph - h - 4, t);
        }
        fprintf(out,
                "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\" text-anchor=\"middle\">%s"
                "</text>\n",
                gx + 75, H - 16, grp[g]);
    }
    fprintf(out, "</svg>\n<div class=\"legend\"><span><i class=\"sw\" style=\"background:#3b6fd4\">"
                 "</i>stable</span><span><i class=\"sw\" style=\"background:#e08a1e\"></i>shadow"
                 "</span></div>\n");
}

/* ---- sections ---------------------------------------------------------- */

static void kv(FILE *out, const char *id, const char *label, const char *value)
{
    fprintf(out, "<tr><th>%s</th><td id=\"%s\">", label, id);
    esc(out, value);
    fprintf(out, "</td></tr>\n");
}

static void summary(FILE *out, const rpt_options_t *opt, const rpt_model_t *m)
{
    const rpt_tally_t *t = &m->total;
    uint64_t comparable = rpt_comparable(t);
    char v[256], a[64], b[64], c[64];
    fprintf(out, "<section id=\"summary\"><h2>Summary</h2><table class=\"kv\">\n");
    rpt_fmt_time(m->window_start_ms, a, sizeof(a));
    rpt_fmt_time(m->window_end_ms, b, sizeof(b));
    rpt_fmt_duration((m->window_end_ms - m->window_start_ms) / 1000, c, sizeof(c));
    snprintf(v, sizeof(v), "%s .. %s (%s%s)", a, b, c, opt->since_s ? ", --since" : ", all data");
    kv(out, "window", "Window", v);
    snprintf(v, sizeof(v), "%llu", (unsigned long long)t->compared);
    kv(out, "compared", "Compared", v);
    snprintf(v, sizeof(v), "%llu", (unsigned long long)comparable);
    kv(out, "comparable", "Comparable", v);
    snprintf(v, sizeof(v), "%llu", (unsigned long long)t->diverged);
    kv(out, "diverged", "Diverged", v);
    pct(a, sizeof(a), t->diverged, comparable);
    if (comparable) {
        rpt_interval_t ci = rpt_wilson(t->diverged, comparable);
        snprintf(v, sizeof(v), "%s (95%% CI %.2f%% .. %.2f%%)", a, 100 * ci.lo, 100 * ci.hi);
    } else {
        snprintf(v, sizeof(v), "-");
    }
    kv(out, "divergence-rate", "Divergence rate", v);
    pct(a, sizeof(a), t->noise, comparable);
    snprintf(v, sizeof(v), "%llu (%s)", (unsigned long long)t->noise, a);
    kv(out, "noise", "Noise-only", v);
    pct(a, sizeof(a), t->errors, t->compared);
    snprintf(v, sizeof(v), "%llu (%s)", (unsigned long long)t->errors, a);
    kv(out, "shadow-errors", "Shadow errors", v);
    pct(a, sizeof(a), t->timeouts, t->compared);
    snprintf(v, sizeof(v), "%llu (%s)", (unsigned long long)t->timeouts, a);
    kv(out, "shadow-timeouts", "Shadow timeouts", v);
    snprintf(v, sizeof(v), "tee %llu, mesh %llu", (unsigned long long)m->sources.tee,
             (unsigned long long)m->sources.mesh);
    kv(out, "sources", "Pairs by source", v);
    if (m->has_mesh) {
        snprintf(v, sizeof(v), "stable %llu, shadow %llu, baseline %llu (waiting %llu)",
                 (unsigned long long)m->orphans[0], (unsigned long long)m->orphans[1],
                 (unsigned long long)m->orphans[2], (unsigned long long)m->pending);
        kv(out, "mesh-orphans", "Mesh orphans", v);
    }
    for (int q = 0; q < 2; q++) {
        double qq = q ? 0.99 : 0.5;
        double r = rpt_latency_ratio(&m->lat_primary, &m->lat_shadow, qq);
        msfmt(a, sizeof(a), rpt_hist_quantile(&m->lat_primary, qq));
        msfmt(b, sizeof(b), rpt_hist_quantile(&m->lat_shadow, qq));
        if (r >= 0)
            snprintf(c, sizeof(c), "%.2f", r);
        else
            snprintf(c, sizeof(c), "-");
        snprintf(v, sizeof(v), "stable %s, shadow %s, ratio %s", a, b, c);
        kv(out, q ? "latency-p99" : "latency-p50", q ? "Latency p99" : "Latency p50", v);
    }
    fprintf(out, "</table></section>\n");
}

static void paths_table(FILE *out, const char *cls, const rpt_counts_t *c)
{
    fprintf(out, "<table class=\"%s\"><tr><th>count</th><th>kind</th><th>path</th></tr>\n", cls);
    for (size_t i = 0; i < c->n && i < TOP_PATHS; i++) {
        fprintf(out, "<tr><td class=\"n\">%llu</td><td>", (unsigned long long)c->v[i].count);
        esc(out, c->v[i].kind);
        fprintf(out, "</td><td><code>");
        esc(out, c->v[i].name);
        fprintf(out, "</code></td></tr>\n");
    }
    if (c->n > TOP_PATHS)
        fprintf(out, "<tr><td colspan=\"3\" class=\"muted\">%zu more</td></tr>\n",
                c->n - TOP_PATHS);
    fprintf(out, "</table>\n");
}

static void endpoints(FILE *out, const rpt_model_t *m)
{
    fprintf(out, "<section><h2>Endpoints</h2>\n<table id=\"endpoints\"><tr><th>endpoint</th>"
                 "<th>compared</th><th>diverged</th><th>rate</th><th>95%% CI</th><th>noise</th>"
                 "<th>errors</th><th>timeouts</th><th>p99 ratio</th></tr>\n");
    for (size_t i = 0; i < m->neps; i++) {
        const rpt_endpoint_t *ep = &m->eps[i];
        uint64_t cmp = rpt_comparable(&ep->t);
        char r[32], ci[64], lr[32];
        pct(r, sizeof(r), ep->t.diverged, cmp);
        rpt_interval_t w = rpt_wilson(ep->t.diverged, cmp);
        if (cmp)
            snprintf(ci, sizeof(ci), "%.2f%% .. %.2f%%", 100 * w.lo, 100 * w.hi);
        else
            snprintf(ci, sizeof(ci), "-");
        double lrv = rpt_latency_ratio(&ep->lat_primary, &ep->lat_shadow, 0.99);
        if (lrv >= 0)
            snprintf(lr, sizeof(lr), "%.2f", lrv);
        else
            snprintf(lr, sizeof(lr), "-");
        fprintf(out, "<tr class=\"endpoint\" data-endpoint=\"");
        esc(out, ep->name);
        fprintf(out, "\"><td><code>");
        esc(out, ep->name);
        fprintf(out,
                "</code></td><td class=\"n\">%llu</td><td class=\"n\">%llu</td><td class=\"n\">%s"
                "</td><td>%s</td><td class=\"n\">%llu</td><td class=\"n\">%llu</td>"
                "<td class=\"n\">%llu</td><td class=\"n\">%s</td></tr>\n",
                (unsigned long long)ep->t.compared, (unsigned long long)ep->t.diverged, r, ci,
                (unsigned long long)ep->t.noise, (unsigned long long)ep->t.errors,
                (unsigned long long)ep->t.timeouts, lr);
    }
    fprintf(out, "</table>\n");
    for (size_t i = 0; i < m->neps; i++) {
        const rpt_endpoint_t *ep = &m->eps[i];
        if (!ep->paths.n && !ep->noise_paths.n) continue;
        fprintf(out, "<h3><code>");
        esc(out, ep->name);
        fprintf(out, "</code></h3>\n");
        if (ep->paths.n) {
            fprintf(out, "<div>Top diverging paths</div>\n");
            paths_table(out, "paths", &ep->paths);
        }
        if (ep->noise_paths.n) {
            fprintf(out, "<div class=\"muted\">Noise paths (also differ between stable "
                         "replicas; not counted as divergence)</div>\n");
            paths_table(out, "noise-paths", &ep->noise_paths);
        }
        if (ep->noise_kinds.n) { /* only data with noise entries has this line */
            fprintf(out, "<div class=\"muted noise-kinds\">Noise entries by kind:");
            for (size_t k = 0; k < ep->noise_kinds.n; k++) {
                fputs(k ? ", " : " ", out);
                esc(out, ep->noise_kinds.v[k].name);
                fprintf(out, " %llu", (unsigned long long)ep->noise_kinds.v[k].count);
            }
            fprintf(out, "</div>\n");
        }
    }
    fprintf(out, "</section>\n");
}

static void side_details(FILE *out, const char *label, json_t *side)
{
    fprintf(out, "<details><summary>%s headers and body</summary><pre>", label);
    json_t *hdrs = json_object_get(side, ST_S_HEADERS);
    for (size_t i = 0; i < json_array_size(hdrs); i++) {
        json_t *h = json_array_get(hdrs, i);
        esc(out, json_string_value(json_array_get(h, 0)));
        fputs(": ", out);
        esc(out, json_string_value(json_array_get(h, 1)));
        fputc('\n', out);
    }
    fputc('\n', out);
    esc_n(out, js(side, ST_S_BODY), BODY_SHOWN);
    fprintf(out, "</pre></details>\n");
}

static void samples(FILE *out, const rpt_model_t *m)
{
    fprintf(out, "<section id=\"samples\"><h2>Newest divergent samples</h2>\n");
    int any = 0;
    for (size_t i = 0; i < m->neps; i++) {
        json_t *arr = m->eps[i].samples;
        for (size_t k = 0; k < json_array_size(arr) && k < SAMPLES_PER_EP; k++) {
            json_t *s = json_array_get(arr, k);
            json_t *p = json_object_get(s, ST_S_PRIMARY), *sh = json_object_get(s, ST_S_SHADOW);
            char when[32];
            rpt_fmt_time(json_integer_value(json_object_get(s, ST_S_TIME_MS)), when, sizeof(when));
            any = 1;
            fprintf(out, "<div class=\"sample\"><div><code>");
            esc(out, m->eps[i].name);
            fprintf(out, "</code> &middot; <code>");
            esc(out, js(s, ST_S_METHOD));
            fputc(' ', out);
            esc(out, js(s, ST_S_PATH));
            fprintf(out, "</code> &middot; request-id <code class=\"rid\">");
            esc(out, js(s, ST_S_REQUEST_ID));
            const char *src = json_string_value(json_object_get(s, ST_S_SOURCE));
            fprintf(out,
                    "</code> &middot; %s &middot; <span class=\"source\">%s</span> &middot; "
                    "status stable %lld / shadow %lld</div>\n",
                    when, src && !strcmp(src, ST_SOURCE_MESH) ? ST_SOURCE_MESH : ST_SOURCE_TEE,
                    (long long)json_integer_value(json_object_get(p, ST_S_STATUS)),
                    (long long)json_integer_value(json_object_get(sh, ST_S_STATUS)));
            fprintf(out, "<table class=\"diffs\"><tr><th>path</th><th>kind</th><th>stable</th>"
                         "<th>shadow</th></tr>\n");
            json_t *diffs = json_object_get(s, ST_S_DIFFS);
            for (size_t d = 0; d < json_array_size(diffs); d++) {
                json_t *e = json_array_get(diffs, d);
                fprintf(out, "<tr><td><code>");
                esc(out, js(e, ST_S_DIFF_PATH));
                fprintf(out, "</code></td><td>");
                esc(out, js(e, ST_S_DIFF_KIND));
                if (json_is_true(json_object_get(e, ST_S_DIFF_NOISE))) fputs(" (noise)", out);
                fprintf(out, "</td><td><code>");
                esc_n(out, js(e, ST_S_DIFF_A), 300);
                fprintf(out, "</code></td><td><code>");
                esc_n(out, js(e, ST_S_DIFF_B), 300);
                fprintf(out, "</code></td></tr>\n");
            }
            fprintf(out, "</table>\n");
            side_details(out, "stable", p);
            side_details(out, "shadow", sh);
            fprintf(out, "</div>\n");
        }
    }
    if (!any) fprintf(out, "<p class=\"muted\">no divergent samples stored</p>\n");
    fprintf(out, "</section>\n");
}

int rpt_render_html(FILE *out, const rpt_options_t *opt, const rpt_model_t *m, const rpt_gate_t *g)
{
    char now[32];
    rpt_fmt_time(opt->now_ms, now, sizeof(now));
    fprintf(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
                 "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
                 "<title>shadowtee report: ");
    esc(out, m->service);
    fprintf(out,
            "</title>\n<style>%s</style></head>\n<body>\n<h1>shadowtee report: "
            "<span id=\"service\">",
            CSS);
    esc(out, m->service);
    fprintf(out, "</span></h1>\n<div class=\"sub\">generated %s", now);
    if (opt->endpoint) {
        fprintf(out, " &middot; endpoint <code>");
        esc(out, opt->endpoint);
        fprintf(out, "</code>");
    }
    fprintf(out, "</div>\n");
    if (g && g->enabled) {
        fprintf(out, "<div id=\"gate\" class=\"gate %s\">", rpt_result_name(g->result));
        esc(out, g->verdict);
        fprintf(out, "</div>\n");
    }
    summary(out, opt, m);
    fprintf(out, "<section><h2>Divergence over time</h2>\n");
    chart_timeline(out, m);
    fprintf(out, "</section>\n<section><h2>Divergence rate per endpoint</h2>\n");
    chart_endpoints(out, m);
    fprintf(out, "</section>\n<section><h2>Latency: stable vs shadow</h2>\n");
    chart_latency(out, m);
    fprintf(out, "</section>\n");
    endpoints(out, m);
    samples(out, m);
    fprintf(out, "</body></html>\n");
    return ferror(out) ? -1 : 0;
}
