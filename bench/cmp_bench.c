/*
 * cmp_bench: micro-benchmark of the comparator engine on realistic inference
 * responses. For each case it measures, in the same run and interleaved
 * round by round:
 *   - old:    ref_st_compare, the jansson-tree engine st_compare used before
 *             (comparator/ref/, linked only here and in the tests),
 *   - new:    st_compare (the tape engine),
 *   - memcmp: every compared body memcmp'ed against a copy of itself, the
 *             physical ceiling of reading the same bytes,
 * and, under callgrind (when valgrind is installed), the instructions each
 * executes per compared byte, counted in bench_loop() only.
 *
 * Cases:
 *   pred24k     a 24 KiB prediction document (320 predictions, each
 *               {"label","id","class_scores":[3 floats]}), the shadow
 *               differing in one top-level field (never byte-identical);
 *   pred200k    the same with 2700 predictions (~200 KiB);
 *   identical   the corpus document (100 richer predictions, 26 KiB), same bytes;
 *   tolerance   its shadow with every score moved within tolerance -> match;
 *   diverged    the same plus 3 real divergences -> 3 differences;
 *   noise       diverged with a noise replica (two diffs per comparison).
 * MB/s counts every body byte handed to st_compare: primary + shadow (+ the
 * noise replica in the noise case). Rates are per CPU second of this thread
 * (other processes on a busy machine do not count), median of the rounds.
 *
 *   make build/cmp_bench
 *   flock /work/.bench.lock build/cmp_bench [seconds-per-measurement=0.4] [rounds=5]
 *   build/cmp_bench --case NAME --engine old|new|memcmp --iters N   (one loop, for callgrind)
 *
 * Every loop is bounded in count (2,000,000) and time (the seconds given, at
 * most 10 per measurement).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../comparator/ref/ref.h"
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

/* A model's float32 score as a JSON encoder writes it: the shortest digits
 * that read back as the same float (e.g. 0.4170220). */
static void put_real(sbuf_t *b, double d)
{
    char t[32];
    float f = (float)d;
    for (int p = 6; p <= 9; p++) {
        snprintf(t, sizeof(t), "%.*g", p, (double)f);
        if ((float)strtod(t, NULL) == f) break;
    }
    sb_printf(b, "%s", t);
}

/* The prediction document: variant 0 is the primary, 1 the shadow
 * (another request_id, everything else the same bytes). */
static char *make_predictions(int npred, int variant, size_t *len)
{
    static const char *const labels[] = {"cat", "dog", "car", "tree", "person"};
    sbuf_t b = {NULL, 0, 0};
    unsigned long long seed = 0x243F6A8885A308D3ULL;
    sb_printf(&b,
              "{\"model\":\"resnet50\",\"model_version\":\"2024-06-01\",\"request_id\":"
              "\"%s\",\"predictions\":[",
              variant ? "5f0c8a4e-9b1d-4c3e-8f2a-6d7e1b3c9a2f"
                      : "0b7e4d2c-1a9f-4e8b-b3c6-2d5f8a1e7c40");
    for (int i = 0; i < npred; i++) {
        double s[3], sum = 0;
        for (int k = 0; k < 3; k++)
            sum += s[k] = rnd(&seed) + 0.01;
        int best = 0;
        for (int k = 0; k < 3; k++)
            if ((s[k] /= sum) > s[best]) best = k;
        sb_printf(&b, "%s{\"label\":\"%s\",\"id\":%d,\"class_scores\":[", i ? "," : "",
                  labels[(best + i) % 5], i);
        for (int k = 0; k < 3; k++) {
            if (k) sb_printf(&b, ",");
            put_real(&b, s[k]);
        }
        sb_printf(&b, "]}");
    }
    sb_printf(&b, "]}");
    *len = b.len;
    return b.p;
}

/* The corpus document. variant 0: primary; 1: shadow (scores moved by ~1e-7
 * relative, within tolerance, plus 3 real divergences); 2: noise replica
 * (other timestamp and request id, one divergence that the shadow shares);
 * 3: shadow within tolerance only (no real divergence). */
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

typedef enum { ENG_OLD, ENG_NEW, ENG_MEMCMP, ENG_COUNT } engine_t;
static const char *const engine_names[ENG_COUNT] = {"old", "new", "memcmp"};

typedef struct {
    const char *name;
    const st_response_t *p, *s, *n;
    const char *copy[3]; /* equal copies of the bodies (memcmp) */
    st_verdict_t want_verdict;
    size_t want_total;
} bcase_t;

static size_t case_bytes(const bcase_t *c)
{
    return c->p->body_len + c->s->body_len + (c->n ? c->n->body_len : 0);
}

typedef struct {
    const st_rules_t *rules;
    const bcase_t *c;
    engine_t e;
    volatile long sink; /* keeps the optimizer from dropping the work */
    st_verdict_t verdict;
    size_t total;
} run_t;

#define ENDPOINT "POST /v1/models/{id}/predict"

/* One iteration of an engine on a case. Exits on a comparator failure. */
static void run_once(run_t *r)
{
    const bcase_t *c = r->c;
    st_diff_result_t res;
    int rc;
    switch (r->e) {
    case ENG_MEMCMP:
        r->sink += memcmp(c->p->body, c->copy[0], c->p->body_len) == 0;
        r->sink += memcmp(c->s->body, c->copy[1], c->s->body_len) == 0;
        if (c->n) r->sink += memcmp(c->n->body, c->copy[2], c->n->body_len) == 0;
        return;
    case ENG_OLD:
        rc = ref_st_compare(r->rules, ENDPOINT, c->p, c->s, c->n, &res);
        break;
    default:
        rc = st_compare(r->rules, ENDPOINT, c->p, c->s, c->n, &res);
    }
    if (rc != 0) {
        fprintf(stderr, "%s: %s engine failed\n", c->name, engine_names[r->e]);
        exit(1);
    }
    r->verdict = res.verdict;
    r->total = res.total;
    r->sink += (long)res.total;
    st_diff_result_free(&res);
}

/* The measured loop (callgrind counts this function only). */
__attribute__((noinline)) void bench_loop(run_t *r, long iters)
{
    for (long i = 0; i < iters; i++)
        run_once(r);
}

/* Runs for at most `secs` seconds and MAX_ITERS iterations; returns
 * iterations per CPU second of this thread. */
static double measure(run_t *r, double secs)
{
    long iters = 0, batch = 1;
    double start = clock_s(CLOCK_MONOTONIC), cpu0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    while (iters < MAX_ITERS && clock_s(CLOCK_MONOTONIC) - start < secs) {
        bench_loop(r, batch);
        iters += batch;
        if (batch < 4096 && clock_s(CLOCK_THREAD_CPUTIME_ID) - cpu0 < secs / 50) batch *= 2;
    }
    return (double)iters / (clock_s(CLOCK_THREAD_CPUTIME_ID) - cpu0);
}

static int dbl_cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* Instructions per compared byte of one engine on one case: this binary run
 * again under callgrind for `iters` iterations of bench_loop. -1 when
 * valgrind is not there or fails. */
static double instr_per_byte(const char *self, const bcase_t *c, engine_t e, long iters)
{
    char out[] = "/tmp/cmp_bench.cg.XXXXXX";
    int fd = mkstemp(out);
    if (fd < 0) return -1;
    close(fd);
    char cmd[8192];
    snprintf(cmd, sizeof(cmd),
             "valgrind --tool=callgrind --collect-atstart=no --toggle-collect=bench_loop "
             "--callgrind-out-file=%s %s --case %s --engine %s --iters %ld >/dev/null 2>&1",
             out, self, c->name, engine_names[e], iters);
    double ir = -1;
    if (system(cmd) == 0) {
        FILE *f = fopen(out, "r");
        char line[256];
        while (f && fgets(line, sizeof(line), f))
            if (strncmp(line, "totals:", 7) == 0 || strncmp(line, "summary:", 8) == 0)
                ir = strtod(strchr(line, ':') + 1, NULL);
        if (f) fclose(f);
    }
    unlink(out);
    return ir < 0 ? -1 : ir / ((double)iters * (double)case_bytes(c));
}

int main(int argc, char **argv)
{
    const char *only_case = NULL, *only_engine = NULL;
    long only_iters = 0;
    double secs = 0.4;
    int rounds = 5;
    int pos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--case") == 0 && i + 1 < argc)
            only_case = argv[++i];
        else if (strcmp(argv[i], "--engine") == 0 && i + 1 < argc)
            only_engine = argv[++i];
        else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc)
            only_iters = atol(argv[++i]);
        else if (pos++ == 0)
            secs = atof(argv[i]);
        else
            rounds = atoi(argv[i]);
    }
    if (!(secs > 0) || secs > 10 || rounds < 1 || rounds > 50 ||
        (only_case && (!only_engine || only_iters < 1 || only_iters > MAX_ITERS))) {
        fprintf(stderr, "usage: cmp_bench [seconds 0..10] [rounds 1..50]\n"
                        "       cmp_bench --case NAME --engine old|new|memcmp --iters N\n");
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
    /* bodies: [0..1] pred24k, [2..3] pred200k, [4..7] corpus variants 0..3 */
    size_t len[8];
    char *body[8], *copy[8];
    body[0] = make_predictions(320, 0, &len[0]);
    body[1] = make_predictions(320, 1, &len[1]);
    body[2] = make_predictions(2700, 0, &len[2]);
    body[3] = make_predictions(2700, 1, &len[3]);
    for (int v = 0; v < 4; v++)
        body[4 + v] = make_response(100, v, &len[4 + v]);
    for (int i = 0; i < 8; i++) {
        copy[i] = malloc(len[i]);
        if (!copy[i]) abort();
        memcpy(copy[i], body[i], len[i]);
    }
    st_header_t hp[] = {{"Content-Type", 12, "application/json", 16},
                        {"Date", 4, "Mon, 01 Jan 2024 00:00:00 GMT", 29},
                        {"X-Model-Version", 15, "2024-06-01", 10},
                        {"X-Trace", 7, "abc", 3}};
    st_header_t hs[] = {{"content-type", 12, "application/json", 16},
                        {"date", 4, "Mon, 01 Jan 2024 00:00:01 GMT", 29},
                        {"x-model-version", 15, "2024-06-01", 10},
                        {"x-trace", 7, "def", 3}};
    st_response_t r[8];
    for (int i = 0; i < 8; i++) {
        st_response_t x = {200, i % 2 == 0 && i != 5 ? hp : hs, 4, body[i], len[i], 0, NULL};
        r[i] = x;
    }
    /* identical: the primary against an equal copy (not the same pointer) */
    st_response_t same = r[4];
    same.body = copy[4];
    enum { C_P24, C_P200, C_SAME, C_TOL, C_DIV, C_NOISE, C_COUNT };
    const bcase_t cases[C_COUNT] = {
        {"pred24k", &r[0], &r[1], NULL, {copy[0], copy[1], NULL}, ST_VERDICT_MATCH, 0},
        {"pred200k", &r[2], &r[3], NULL, {copy[2], copy[3], NULL}, ST_VERDICT_MATCH, 0},
        {"identical", &r[4], &same, NULL, {copy[4], copy[4], NULL}, ST_VERDICT_MATCH, 0},
        {"tolerance", &r[4], &r[7], NULL, {copy[4], copy[7], NULL}, ST_VERDICT_MATCH, 0},
        {"diverged", &r[4], &r[5], NULL, {copy[4], copy[5], NULL}, ST_VERDICT_DIVERGED, 3},
        {"noise", &r[4], &r[5], &r[6], {copy[4], copy[5], copy[6]}, ST_VERDICT_DIVERGED, 3},
    };

    if (only_case) { /* one loop, for callgrind */
        for (int c = 0; c < C_COUNT; c++) {
            if (strcmp(cases[c].name, only_case) != 0) continue;
            for (int e = 0; e < ENG_COUNT; e++) {
                if (strcmp(engine_names[e], only_engine) != 0) continue;
                run_t run = {rules, &cases[c], (engine_t)e, 0, ST_VERDICT_ERROR, 0};
                bench_loop(&run, only_iters);
                return 0;
            }
        }
        fprintf(stderr, "unknown case or engine\n");
        return 2;
    }

    printf("cmp_bench: old = ref_st_compare (jansson trees), new = st_compare (tape engine),\n"
           "memcmp = each compared body against a copy of itself (the ceiling);\n"
           "MB/s per CPU second of this thread over every body byte given to st_compare,\n"
           "median of %d rounds of %.2f s per engine, engines interleaved in each round.\n\n",
           rounds, secs);
    int bad = 0;
    double rate[C_COUNT][ENG_COUNT];
    for (int c = 0; c < C_COUNT; c++) {
        double samples[ENG_COUNT][50];
        run_t runs[ENG_COUNT];
        for (int e = 0; e < ENG_COUNT; e++) {
            run_t x = {rules, &cases[c], (engine_t)e, 0, ST_VERDICT_ERROR, 0};
            runs[e] = x;
            measure(&runs[e], secs / 8); /* warm-up: caches, allocator */
        }
        for (int k = 0; k < rounds; k++)
            for (int e = 0; e < ENG_COUNT; e++)
                samples[e][k] = measure(&runs[e], secs);
        for (int e = 0; e < ENG_COUNT; e++) {
            qsort(samples[e], (size_t)rounds, sizeof(double), dbl_cmp);
            rate[c][e] = samples[e][rounds / 2];
        }
        for (int e = ENG_OLD; e <= ENG_NEW; e++)
            if (runs[e].verdict != cases[c].want_verdict || runs[e].total != cases[c].want_total) {
                fprintf(stderr, "%s: %s engine: verdict %s with %zu differences, expected %s %zu\n",
                        cases[c].name, engine_names[e], st_verdict_name(runs[e].verdict),
                        runs[e].total, st_verdict_name(cases[c].want_verdict), cases[c].want_total);
                bad = 1;
            }
    }

    /* instructions per byte: enough iterations to dwarf the call overhead */
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
    int have_vg = sl > 0 && system("valgrind --version >/dev/null 2>&1") == 0;
    if (sl > 0) self[sl] = '\0';
    double ipb[C_COUNT][ENG_COUNT];
    for (int c = 0; c < C_COUNT; c++)
        for (int e = 0; e < ENG_COUNT; e++) {
            long iters = e == ENG_OLD ? 20 : e == ENG_NEW ? 200 : 2000;
            if (c == C_P200) iters /= 8;
            ipb[c][e] = have_vg ? instr_per_byte(self, &cases[c], (engine_t)e, iters) : -1;
        }

    printf("| case | bytes | verdict | old MB/s | new MB/s | new/old | memcmp MB/s | "
           "new/memcmp | old instr/B | new instr/B | memcmp instr/B |\n");
    printf("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int c = 0; c < C_COUNT; c++) {
        double b = (double)case_bytes(&cases[c]) / 1e6;
        printf("| %s | %zu | %s %zu | %.1f | %.1f | %.1fx | %.0f | %.3f |", cases[c].name,
               case_bytes(&cases[c]), st_verdict_name(cases[c].want_verdict), cases[c].want_total,
               rate[c][ENG_OLD] * b, rate[c][ENG_NEW] * b, rate[c][ENG_NEW] / rate[c][ENG_OLD],
               rate[c][ENG_MEMCMP] * b, rate[c][ENG_NEW] / rate[c][ENG_MEMCMP]);
        for (int e = 0; e < ENG_COUNT; e++)
            if (ipb[c][e] < 0)
                printf(" - |");
            else
                printf(" %.2f |", ipb[c][e]);
        printf("\n");
    }
    if (!have_vg) printf("\n(instr/B: valgrind not found)\n");
    for (int i = 0; i < 8; i++) {
        free(body[i]);
        free(copy[i]);
    }
    st_rules_free(rules);
    return bad;
}
