/*
 * cmp_bench: micro-benchmark of the comparator (st_compare) on realistic
 * inference responses, with baselines measured in the same run so the
 * figures read as ratios:
 *   - memcmp of the two bodies (the floor: a byte comparison),
 *   - jansson parse-only of both bodies (json_loadb + json_decref), which is
 *     the part of st_compare we cannot avoid.
 * Cases: identical bytes (MATCH without parsing), a shadow within tolerance
 * (MATCH), a shadow within tolerance plus a few real divergences (DIVERGED),
 * and the same with a noise replica (two diffs per comparison, the primary
 * parsed once).
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude bench/cmp_bench.c build/libstcmp.a \
 *      $(pkg-config --cflags --libs jansson) -lm -o build/cmp_bench
 *   build/cmp_bench [predictions=100] [seconds=2]
 *
 * Every loop is bounded in count (2,000,000) and time (the seconds given,
 * at most 10 per case).
 */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shadowtee/comparator.h"

#define MAX_ITERS 2000000L

typedef struct {
    char *p;
    size_t len, cap;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) abort();
        if (b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        b->cap = (b->cap + (size_t)n) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
}

/* Deterministic pseudo-random numbers (xorshift), no global state. */
static double rnd(unsigned long long *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (double)(*s >> 11) / 9007199254740992.0;
}

/* variant 0: primary; 1: shadow (scores moved by ~1e-7 relative, within
 * tolerance, plus 3 real divergences); 2: noise replica (other timestamp and
 * request id, one divergence that the shadow shares); 3: shadow within
 * tolerance only (no real divergence). */
static char *make_response(int npred, int variant, size_t *len)
{
    sbuf_t b = {NULL, 0, 0};
    unsigned long long seed = 0x9E3779B97F4A7C15ULL, jitter = 0xD1B54A32D192ED03ULL + variant;
    sb_printf(&b, "{\"model\":\"resnet50\",\"model_version\":\"2024-06-01\",");
    sb_printf(&b, "\"request_id\":\"%s\",\"timestamp\":%.3f,",
              variant == 0   ? "8d2f0c4e-1111"
              : variant == 1 ? "8d2f0c4e-2222"
              : variant == 3 ? "8d2f0c4e-4444"
                             : "8d2f0c4e-3333",
              1717171717.123 + variant);
    sb_printf(&b, "\"predictions\":[");
    for (int i = 0; i < npred; i++) {
        double scores[5], sum = 0;
        for (int k = 0; k < 5; k++)
            sum += scores[k] = rnd(&seed) + 0.01;
        int best = 0;
        for (int k = 0; k < 5; k++) {
            scores[k] /= sum;
            if (variant != 0) scores[k] *= 1.0 + (rnd(&jitter) - 0.5) * 2e-7;
            if (scores[k] > scores[best]) best = k;
        }
        double score = scores[best];
        const char *label_names[] = {"cat", "dog", "car", "tree", "person"};
        const char *label = label_names[best];
        if (variant == 1 && i == npred / 5) label = "boat";   /* real divergence */
        if (variant == 1 && i == npred / 2 + 1) score += 0.2; /* real divergence */
        if (variant == 2 && i == npred / 5) label = "boat";   /* noise agrees here */
        sb_printf(&b, "%s{\"id\":%d,\"label\":\"%s\",\"score\":%.17g,\"class_scores\":[",
                  i ? "," : "", i, label, score);
        for (int k = 0; k < 5; k++)
            sb_printf(&b, "%s%.17g", k ? "," : "", scores[k]);
        sb_printf(&b,
                  "],\"bbox\":[%d,%d,%d,%d],\"metadata\":{\"latency_ms\":%.3f,\"cache\":%s,"
                  "\"tags\":[\"batch-%d\",\"gpu\"]}}",
                  i * 3, i * 5, 64 + i, 48 + i, 1.5 + rnd(&seed), i % 7 ? "false" : "true", i / 10);
    }
    sb_printf(&b, "],\"meta\":{\"host\":\"pod-%d\",\"gpu\":\"a100\",\"timestamp\":%.3f}", variant,
              1717171717.5 + variant);
    if (variant == 1) sb_printf(&b, ",\"debug\":true"); /* real divergence: extra key */
    sb_printf(&b, "}");
    *len = b.len;
    return b.p;
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef enum { RUN_MEMCMP, RUN_PARSE, RUN_COMPARE } run_kind_t;

typedef struct {
    run_kind_t kind;
    const st_rules_t *rules;
    const st_response_t *p, *s, *n;
} run_t;

static volatile long sink; /* keeps the optimizer from dropping the work */

/* Runs one case for at most `secs` seconds and MAX_ITERS iterations; returns
 * iterations per CPU second, *bytes_per_iter the bytes it covers. */
static double measure(const run_t *r, double secs, double *bytes_per_iter, st_verdict_t *verdict,
                      size_t *total)
{
    long iters = 0;
    /* bounded by wall time; rated by this thread's CPU time, so other
     * processes on a busy machine do not count against the comparator */
    double start = clock_s(CLOCK_MONOTONIC), end = start + secs, t = start;
    double cpu0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    *bytes_per_iter = (double)(r->p->body_len + r->s->body_len);
    while (iters < MAX_ITERS && t < end) {
        for (int k = 0; k < 16; k++, iters++) {
            switch (r->kind) {
            case RUN_MEMCMP:
                sink += r->p->body_len == r->s->body_len &&
                        memcmp(r->p->body, r->s->body, r->p->body_len) == 0;
                break;
            case RUN_PARSE: {
                json_error_t e;
                json_t *a = json_loadb(r->p->body, r->p->body_len, JSON_DECODE_ANY, &e);
                json_t *b = json_loadb(r->s->body, r->s->body_len, JSON_DECODE_ANY, &e);
                sink += (a != NULL) + (b != NULL);
                json_decref(a);
                json_decref(b);
                break;
            }
            case RUN_COMPARE: {
                st_diff_result_t res;
                if (st_compare(r->rules, "POST /v1/models/{id}/predict", r->p, r->s, r->n, &res) !=
                    0) {
                    fprintf(stderr, "st_compare failed\n");
                    exit(1);
                }
                *verdict = res.verdict;
                *total = res.total;
                sink += (long)res.total;
                st_diff_result_free(&res);
                break;
            }
            }
        }
        t = clock_s(CLOCK_MONOTONIC);
    }
    return (double)iters / (clock_s(CLOCK_THREAD_CPUTIME_ID) - cpu0);
}

static void report(const char *name, double per_s, double bytes, double base_per_s)
{
    printf("%-50s %10.0f /s %9.1f MB/s", name, per_s, per_s * bytes / 1e6);
    if (base_per_s > 0) printf("   %5.2fx parse-only time", base_per_s / per_s);
    printf("\n");
}

int main(int argc, char **argv)
{
    int npred = argc > 1 ? atoi(argv[1]) : 100;
    double secs = argc > 2 ? atof(argv[2]) : 2.0;
    if (npred < 3 || npred > 100000 || !(secs > 0) || secs > 10) {
        fprintf(stderr, "usage: cmp_bench [predictions 3..100000] [seconds 0..10]\n");
        return 2;
    }
    static const char rules_json[] =
        "{\"version\":1,\"defaults\":{\"tolerance\":{\"absolute\":1e-6,\"relative\":1e-4},"
        "\"ignore\":[\"$..timestamp\",\"$.request_id\",\"$.meta.host\"],"
        "\"ignore_headers\":[\"x-trace\"],"
        "\"path_tolerance\":{\"$.predictions[*].score\":{\"absolute\":0.01}}},"
        "\"endpoints\":[{\"match\":\"POST /v1/models/{id}/predict\","
        "\"argmax\":[\"$.predictions[*].class_scores\"]}]}";
    char err[512];
    st_rules_t *rules = NULL;
    if (st_rules_parse(rules_json, strlen(rules_json), &rules, err, sizeof(err)) != 0) {
        fprintf(stderr, "rules: %s\n", err);
        return 1;
    }
    size_t lp, ls, ln;
    char *bp = make_response(npred, 0, &lp), *bs = make_response(npred, 1, &ls);
    char *bn = make_response(npred, 2, &ln);
    size_t lt;
    char *bt = make_response(npred, 3, &lt);
    st_header_t hp[] = {{"Content-Type", 12, "application/json", 16},
                        {"Date", 4, "Mon, 01 Jan 2024 00:00:00 GMT", 29},
                        {"X-Model-Version", 15, "2024-06-01", 10},
                        {"X-Trace", 7, "abc", 3}};
    st_header_t hs[] = {{"content-type", 12, "application/json", 16},
                        {"date", 4, "Mon, 01 Jan 2024 00:00:01 GMT", 29},
                        {"x-model-version", 15, "2024-06-01", 10},
                        {"x-trace", 7, "def", 3}};
    st_response_t p = {200, hp, 4, bp, lp, 0, NULL};
    st_response_t s = {200, hs, 4, bs, ls, 0, NULL};
    st_response_t n = {200, hs, 4, bn, ln, 0, NULL};
    st_response_t t = {200, hs, 4, bt, lt, 0, NULL};
    st_response_t same = p;

    printf("cmp_bench: %d predictions, primary %zu bytes, shadow %zu bytes, %.1f s per case max\n",
           npred, lp, ls, secs);
    printf("(rates per CPU second of this thread; MB/s counts primary + shadow body bytes,\n"
           " not the noise replica's)\n\n");

    /* cases run in this order; the parse-only baseline runs before and after
     * the comparisons, and ratios use the mean of the two */
    enum { C_MEMCMP, C_PARSE1, C_SAME, C_TOL, C_DIV, C_NOISE, C_PARSE2, C_COUNT };
    static const char *const names[C_COUNT] = {
        "baseline memcmp (identical bodies)",
        "baseline jansson parse-only (both bodies)",
        "st_compare identical bytes -> match",
        "st_compare within tolerance -> match",
        "st_compare within tolerance + 3 divergences",
        "st_compare + noise replica (primary parsed once)",
        "baseline jansson parse-only, again",
    };
    const run_t runs[C_COUNT] = {
        {RUN_MEMCMP, rules, &p, &same, NULL},  {RUN_PARSE, rules, &p, &s, NULL},
        {RUN_COMPARE, rules, &p, &same, NULL}, {RUN_COMPARE, rules, &p, &t, NULL},
        {RUN_COMPARE, rules, &p, &s, NULL},    {RUN_COMPARE, rules, &p, &s, &n},
        {RUN_PARSE, rules, &p, &s, NULL},
    };
    static const st_verdict_t want_verdict[C_COUNT] = {
        [C_SAME] = ST_VERDICT_MATCH,
        [C_TOL] = ST_VERDICT_MATCH,
        [C_DIV] = ST_VERDICT_DIVERGED,
        [C_NOISE] = ST_VERDICT_DIVERGED,
    };
    static const size_t want_total[C_COUNT] = {[C_DIV] = 3, [C_NOISE] = 3};
    double rate[C_COUNT], bytes[C_COUNT], warm_bytes;
    int bad = 0;

    /* warm-up (allocator arenas, CPU clocks), not reported */
    st_verdict_t v;
    size_t total;
    measure(&runs[C_DIV], secs / 4, &warm_bytes, &v, &total);
    for (int c = 0; c < C_COUNT; c++) {
        v = ST_VERDICT_ERROR;
        total = 0;
        rate[c] = measure(&runs[c], secs, &bytes[c], &v, &total);
        if (runs[c].kind == RUN_COMPARE && (v != want_verdict[c] || total != want_total[c])) {
            fprintf(stderr, "%s: unexpected verdict %s with %zu differences\n", names[c],
                    st_verdict_name(v), total);
            bad = 1;
        }
    }
    double parse = (rate[C_PARSE1] + rate[C_PARSE2]) / 2;
    for (int c = 0; c < C_COUNT; c++)
        report(names[c], rate[c], bytes[c], runs[c].kind == RUN_COMPARE ? parse : 0);
    printf("\nratios: time of one comparison / time of parsing both bodies with jansson\n"
           "(mean of the two parse-only runs); the noise case parses three bodies.\n");

    free(bp);
    free(bs);
    free(bn);
    free(bt);
    st_rules_free(rules);
    return bad;
}
