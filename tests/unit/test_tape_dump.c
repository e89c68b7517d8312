/*
 * Differential test of a divergent sample's redaction from the comparison's
 * tape (st_compare_policy_keep + st_policy_redact_body_parsed, which dumps
 * the tape with comparator/tape_dump.c) against the jansson path it replaces
 * (st_policy_redact_body, and st_redact_body by rules): the two must give the
 * same bytes for every body, or the tape path must not be taken (fallback).
 *
 * Documents: every body of the fuzz corpora (tests/fuzz/corpus/<dir>/), every
 * JSON-looking string literal of the unit tests (tests/unit/test_*.c), bench-shaped
 * prediction documents, targeted corners (reals 1e300, -0.0, 0.1, 5e-324,
 * integers at and beyond the int64 limits, escapes incl. surrogate pairs and
 * \u0000, "/" and control characters, duplicate keys, deep nesting at and
 * beyond the limits) and seeded random documents (random nesting, whitespace,
 * every number and string form, duplicate keys) with a shadow that differs
 * in one leaf (so the shadow's tape has SAME nodes into the primary's). Each
 * pair runs under rule sets whose redact paths hit objects, arrays,
 * wildcards, recursive descent, "$" itself and nothing at all, and with
 * several sample size limits. The fallbacks (no tape, another nesting
 * limit, another body) are checked to answer the same bytes too.
 */
#include <dirent.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../comparator/stats_internal.h"
#include "../../comparator/tape_dump.h"
#include "shadowtee/comparator.h"

#ifndef SRC_DIR
#define SRC_DIR "."
#endif

static const char *const rule_sets[] = {
    NULL,
    "{\"defaults\":{\"redact_paths\":[\"$..email\",\"$.a\",\"$[1]\",\"$..*\"]}}",
    "{\"defaults\":{\"redact_paths\":[\"$..k\"]}}",
    "{\"defaults\":{\"redact_paths\":[\"$.a[*]\",\"$[*].x\",\"$..tags[0]\"]}}",
    "{\"defaults\":{\"redact_paths\":[\"$\"]}}",
    "{\"defaults\":{\"redact_paths\":[\"$.*\"]}}",
    "{\"defaults\":{\"redact_paths\":[\"$..score\",\"$.predictions[*].label\",\"$..b\"]}}",
    "{\"defaults\":{\"redact_paths\":[\"$.nothing_here\"]}}",
    "{\"max_depth\":3,\"defaults\":{\"redact_paths\":[\"$..x\",\"$..k\"]}}",
    "{\"max_depth\":256,\"defaults\":{\"redact_paths\":[\"$..k\",\"$[0]\"]}}",
    "{\"defaults\":{\"redact_paths\":[\"$['e\\\"q']\",\"$..['\\u00e9']\",\"$..[2]\"]}}",
};
#define NRULES (sizeof(rule_sets) / sizeof(rule_sets[0]))

static const size_t max_lens[] = {4096, 37, 1u << 22};
#define NMAXLEN (sizeof(max_lens) / sizeof(max_lens[0]))

typedef struct {
    st_rules_t *rules[NRULES];
    st_policy_t pol[NRULES];
    /* counts */
    size_t pairs, sides, tape_sides, tape_redacted, tape_kept_bytes, tape_whole, fallback_sides,
        fallback_checks;
} ctx_t;

static ctx_t C;

static const st_header_t json_ct = {"Content-Type", 12, "application/json", 16};

static st_response_t resp(const char *b, size_t n, int status, int declare)
{
    st_response_t r;
    memset(&r, 0, sizeof(r));
    r.status = status;
    r.body = b;
    r.body_len = n;
    if (declare) {
        r.headers = &json_ct;
        r.nheaders = 1;
    }
    return r;
}

static void fail_case(const char *what, size_t rs, size_t max_len, const char *body, size_t len,
                      const char *want, size_t wl, const char *got, size_t gl)
{
    fprintf(stderr,
            "%s: rules %zu max_len %zu\nbody (%zu): %.*s\nwant (%zu): %.*s\ngot (%zu): %.*s\n",
            what, rs, max_len, len, (int)(len < 2000 ? len : 2000), body, wl,
            (int)(wl < 2000 ? wl : 2000), want ? want : "(null)", gl, (int)(gl < 2000 ? gl : 2000),
            got ? got : "(null)");
    fail_msg("%s", what);
}

static void same(const char *what, size_t rs, size_t max_len, const char *body, size_t len,
                 const char *want, size_t wl, const char *got, size_t gl)
{
    if (!want || !got || wl != gl || memcmp(want, got, wl) != 0)
        fail_case(what, rs, max_len, body, len, want, wl, got, gl);
}

/* One side: the tape path (when bodies hold this body's tape) against
 * st_policy_redact_body and st_redact_body. */
static void check_side(size_t rs, const st_cmp_bodies_t *bodies, int side, const char *body,
                       size_t len)
{
    const st_policy_t *pol = &C.pol[rs];
    int tape = bodies && bodies->ok[side];
    C.sides++;
    if (tape) {
        C.tape_sides++;
        /* the tape the comparison kept is the tape of this body */
        assert_ptr_equal(bodies->tape[side].body, body);
        assert_int_equal(bodies->tape[side].len, len);
    } else {
        C.fallback_sides++;
    }
    for (size_t m = 0; m < NMAXLEN; m++) {
        size_t wl = 0, gl = 0, rl = 0;
        char *want = st_policy_redact_body(pol, body, len, max_lens[m], &wl);
        char *byrules = st_redact_body(C.rules[rs], body, len, max_lens[m], &rl);
        char *got = st_policy_redact_body_parsed(pol, bodies, body, len, max_lens[m], &gl);
        same("policy vs rules", rs, max_lens[m], body, len, want, wl, byrules, rl);
        same("tape vs jansson", rs, max_lens[m], body, len, want, wl, got, gl);
        if (tape && m == 2) {
            if (wl == len && memcmp(want, body, len) == 0)
                C.tape_kept_bytes++;
            else if (wl == 12 && memcmp(want, "\"[REDACTED]\"", 12) == 0)
                C.tape_whole++;
            else
                C.tape_redacted++;
        }
        free(want);
        free(byrules);
        free(got);
    }
    if (tape) {
        /* the fallbacks: another nesting limit, another body (a copy), no
         * bodies at all -- jansson's answer again */
        st_policy_t other = *pol;
        other.max_depth = pol->max_depth + 1;
        char *copy = malloc(len ? len : 1);
        assert_non_null(copy);
        if (len) memcpy(copy, body, len);
        size_t wl = 0, a = 0, b = 0, c = 0;
        char *want = st_policy_redact_body(&other, body, len, 4096, &wl);
        char *x = st_policy_redact_body_parsed(&other, bodies, body, len, 4096, &a);
        char *y = st_policy_redact_body_parsed(pol, bodies, copy, len, 4096, &b);
        char *z = st_policy_redact_body_parsed(pol, NULL, body, len, 4096, &c);
        size_t pl = 0;
        char *pw = st_policy_redact_body(pol, body, len, 4096, &pl);
        same("fallback: other max_depth", rs, 4096, body, len, want, wl, x, a);
        same("fallback: other body", rs, 4096, body, len, pw, pl, y, b);
        same("fallback: no bodies", rs, 4096, body, len, pw, pl, z, c);
        C.fallback_checks += 3;
        free(want);
        free(x);
        free(y);
        free(z);
        free(pw);
        free(copy);
    }
}

/* A divergent pair (the statuses differ) under every rule set. */
static void check_pair(const char *p, size_t pl, const char *s, size_t sl, int declare)
{
    for (size_t rs = 0; rs < NRULES; rs++) {
        st_response_t rp = resp(p, pl, 200, declare), rsh = resp(s, sl, 201, declare & 2);
        st_diff_result_t res;
        st_cmp_bodies_t *bodies = NULL;
        assert_int_equal(st_compare_policy_keep(&C.pol[rs], &rp, &rsh, NULL, &res, &bodies), 0);
        assert_int_equal(res.verdict, ST_VERDICT_DIVERGED);
        if (C.pol[rs].nredact == 0) assert_null(bodies); /* nothing to redact: nothing kept */
        C.pairs++;
        check_side(rs, bodies, 0, p, pl);
        check_side(rs, bodies, 1, s, sl);
        st_cmp_bodies_free(bodies);
        st_diff_result_free(&res);
    }
}

/* body against itself plus a trailing space (the shadow's root is SAME) and
 * against a shadow one byte shorter when that still differs. */
static void check_body(const char *b, size_t n)
{
    char *s = malloc(n + 2);
    assert_non_null(s);
    if (n) memcpy(s, b, n);
    s[n] = ' ';
    check_pair(b, n, s, n + 1, (int)(n % 4));
    if (n > 1) check_pair(b, n, s, n - 1, 3);
    free(s);
}

/* ---- corpora ------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *d = malloc(cap);
    size_t r;
    while (d && (r = fread(d + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nd = realloc(d, cap *= 2);
            if (!nd) free(d);
            d = nd;
        }
    }
    fclose(f);
    *len = n;
    return d;
}

/* Each file of tests/fuzz/corpus/<dir>/, whole and split at "\n--\n". */
static size_t corpus_dir(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/%s", SRC_DIR, dir);
    DIR *d = opendir(path);
    if (!d) fail_msg("cannot open %s", path);
    size_t count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char fp[2048];
        snprintf(fp, sizeof(fp), "%s/%s", path, e->d_name);
        size_t len;
        char *text = read_file(fp, &len);
        if (!text) fail_msg("cannot read %s", fp);
        check_body(text, len);
        count++;
        size_t from = 0;
        for (size_t i = 0; i + 4 <= len; i++) {
            if (memcmp(text + i, "\n--\n", 4) == 0) {
                check_body(text + from, i - from);
                count++;
                from = i + 4;
                i += 3;
            }
        }
        if (from > 0) {
            check_body(text + from, len - from);
            count++;
        }
        free(text);
    }
    closedir(d);
    return count;
}

static void test_corpora(void **state)
{
    (void)state;
    static const char *const dirs[] = {"compare", "engine",   "report",
                                       "request", "response", "rules"};
    size_t n = 0;
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        n += corpus_dir(dirs[i]);
    fprintf(stderr, "corpora: %zu bodies\n", n);
    assert_true(n >= 72);
}

/* JSON-looking string literals of the unit tests' sources (simple C
 * escapes decoded; a literal continued on the next line is taken alone). */
static void test_unit_literals(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof(path), "%s/tests/unit", SRC_DIR);
    DIR *d = opendir(path);
    if (!d) fail_msg("cannot open %s", path);
    size_t count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (nl < 3 || strcmp(e->d_name + nl - 2, ".c") != 0) continue;
        if (strcmp(e->d_name, "test_tape_dump.c") == 0) continue;
        char fp[2048];
        snprintf(fp, sizeof(fp), "%s/%s", path, e->d_name);
        size_t len;
        char *text = read_file(fp, &len);
        if (!text) fail_msg("cannot read %s", fp);
        char *lit = malloc(len + 1);
        assert_non_null(lit);
        for (size_t i = 0; i < len; i++) {
            if (text[i] != '"' || (i > 0 && text[i - 1] == '\'')) continue;
            size_t n = 0, j = i + 1;
            int ok = 1;
            for (; j < len && text[j] != '"' && text[j] != '\n'; j++) {
                char c = text[j];
                if (c == '\\' && j + 1 < len) {
                    char x = text[++j];
                    c = x == 'n' ? '\n' : x == 't' ? '\t' : x == 'r' ? '\r' : x == '0' ? 0 : x;
                    if (x == 'x' || (x >= '1' && x <= '7')) ok = 0; /* not decoded here */
                }
                lit[n++] = c;
            }
            if (j < len && text[j] == '"' && ok && n > 0 && (lit[0] == '{' || lit[0] == '[')) {
                check_body(lit, n);
                count++;
            }
            i = j;
        }
        free(lit);
        free(text);
    }
    closedir(d);
    fprintf(stderr, "unit literals: %zu bodies\n", count);
    assert_true(count >= 200);
}

/* ---- targeted corners ------------------------------------------------------ */

static void test_corners(void **state)
{
    (void)state;
    static const char *const docs[] = {
        "{\"a\":1e300,\"b\":-0.0,\"k\":0.1,\"x\":[1e300,-0.0,0.1,5e-324,1E5,1e-5,2.5E+10]}",
        "[0.1,1e300,-0.0,-0,0,100000.0,1e22,1e21,123456789012345678,1.7976931348623157e308]",
        "{\"k\":[9223372036854775807,-9223372036854775808],\"x\":9223372036854775806}",
        "{\"k\":[9223372036854775808,1,2],\"x\":-9223372036854775809,\"b\":3}",
        "{\"a\":[123456789012345678901234567890,0.5],\"k\":7}",
        "{\"k\":\"\\ud83d\\ude00\",\"x\":\"\\u00e9\\u20ac\\/"
        "\\b\\f\\n\\r\\t\\\"\\\\\\u0001\\u001f\\u007f\"}",
        "{\"a\\u0000b\":\"\\u0000\",\"k\":\"caf\xc3\xa9 "
        "\xf0\x9f\x98\x80\",\"e\\\"q\":1,\"\\u00e9\":2}",
        "{\"k\":1,\"k\":2,\"a\":3,\"k\":{\"k\":4,\"k\":5},\"a\":[6]}",
        "{\"x\":1,\"x\":{\"a\":1},\"b\":[1,2,{\"b\":1,\"b\":2}]}",
        "[1,{\"email\":\"a@b\"},[2,[3,{\"email\":null}]],\"s\"]",
        "  \n\t[ 1 , { \"k\" : [ true , false , null ] } ]  \n",
        "{}",
        "[]",
        "{\"tags\":[\"a\",\"b\"],\"a\":{\"tags\":[]}}",
        "{\"k\":\"/path/with/slashes\",\"x\":\"\\/\\/\"}",
        "[\"\\uD834\\uDD1E\",\"\\u0041\",\"\\uFFFF\",\"\\u0800\"]",
        "{\"k\":1.0,\"x\":1.5e-7,\"a\":-1e-310,\"b\":4.9406564584124654e-324}",
        "[1,2,3,4,5,6,7,8,9,10,11,12,{\"k\":[1,2,3]}]",
        "{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9,\"j\":10,\"k\":"
        "11,"
        "\"a\":12}",
        "{\"k\":1", /* invalid: fail closed */
        "[1,2,,]",
        "{\"k\":\"\xff\"}", /* invalid UTF-8 */
        "{\"k\":1e999}",    /* real overflow */
        "not json",
        "",
        "\"just a string\"",
        "[\"\\ud800\"]", /* lone surrogate: invalid */
    };
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++)
        check_body(docs[i], strlen(docs[i]));
    /* deep nesting at and beyond the limits (3, 64, 256) */
    static const size_t depths[] = {2, 3, 4, 63, 64, 65, 255, 256, 257, 300};
    for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
        size_t d = depths[i];
        char *b = malloc(d * 12 + 16);
        assert_non_null(b);
        for (int form = 0; form < 2; form++) {
            size_t n = 0;
            for (size_t k = 0; k < d; k++)
                n += (size_t)sprintf(b + n, form ? "{\"k\":" : "[");
            n += (size_t)sprintf(b + n, "1");
            for (size_t k = 0; k < d; k++)
                b[n++] = form ? '}' : ']';
            check_body(b, n);
        }
        free(b);
    }
}

/* ---- generated documents -------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    uint64_t s;
    long leaf, mutate; /* the leaf numbered `mutate` is replaced */
} gen_t;

static uint64_t rnd(gen_t *g)
{
    g->s ^= g->s << 13;
    g->s ^= g->s >> 7;
    g->s ^= g->s << 17;
    return g->s;
}

static void emit(gen_t *g, const char *s)
{
    size_t n = strlen(s);
    if (g->len + n + 1 > g->cap) {
        g->cap = (g->len + n + 1) * 2;
        g->p = realloc(g->p, g->cap);
        assert_non_null(g->p);
    }
    memcpy(g->p + g->len, s, n + 1);
    g->len += n;
}

static void ws(gen_t *g)
{
    static const char *const w[] = {"", "", "", "", " ", "\n", "\t ", "\r\n  "};
    emit(g, w[rnd(g) % 8]);
}

static const char *const keys[] = {
    "\"a\"",         "\"k\"",           "\"email\"",       "\"x\"",
    "\"b\"",         "\"tags\"",        "\"score\"",       "\"label\"",
    "\"a\\u0000b\"", "\"\\u00e9\"",     "\"e\\\"q\"",      "\"\"",
    "\"\\/k\"",      "\"caf\xc3\xa9\"", "\"predictions\"", "\"\\ud83d\\ude00\"",
};
static const char *const scalars[] = {
    "null",
    "true",
    "false",
    "0",
    "-0",
    "1",
    "-1",
    "42",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775806",
    "0.1",
    "-0.0",
    "1e300",
    "1E-300",
    "5e-324",
    "2.2250738585072014e-308",
    "1.7976931348623157e308",
    "3.14159265358979323846",
    "100000.0",
    "1e22",
    "1e21",
    "0.30000000000000004",
    "123.456e-7",
    "-2.5E+3",
    "\"\"",
    "\"s\"",
    "\"a@b.c\"",
    "\"\\u00e9\\u20ac\"",
    "\"\\ud83d\\ude00\"",
    "\"\\uD834\\uDD1E\"",
    "\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"",
    "\"\\u0000\\u0001\\u001F\\u007f\"",
    "\"caf\xc3\xa9\"",
    "\"\xe2\x82\xac\xf0\x9f\x98\x80\"",
    "\"/a/b\"",
    "\"[REDACTED]\"",
};
#define NSCALARS (sizeof(scalars) / sizeof(scalars[0]))

/* A key; the one with a NUL (which jansson rejects in keys: the document is
 * invalid) only rarely. */
static const char *pick_key(gen_t *g)
{
    size_t i = rnd(g) % (sizeof(keys) / sizeof(keys[0]));
    if (i == 8 && rnd(g) % 16 != 0) i = 1;
    return keys[i];
}

static void gen_leaf(gen_t *g, int bigint)
{
    char t[64];
    uint64_t r = rnd(g);
    switch (r % 5) {
    case 0:
    case 1:
        snprintf(t, sizeof(t), "%s", scalars[(r >> 8) % NSCALARS]);
        break;
    case 2:
        snprintf(t, sizeof(t), "%lld",
                 (long long)(rnd(g) >> (r >> 8) % 64) * ((r >> 16) & 1 ? -1 : 1));
        break;
    case 3: {
        double d = (double)(rnd(g) >> 11) / 9007199254740992.0 * 2.0 - 1.0;
        static const char *const fmts[] = {"%.17g", "%.3f", "%g", "%e", "%.15g", "%.1f"};
        double scale[] = {1, 1e-5, 1e5, 1e20, 1e-20, 1e200};
        snprintf(t, sizeof(t), fmts[(r >> 8) % 6], d * scale[(r >> 12) % 6]);
        if (!strpbrk(t, "0123456789")) snprintf(t, sizeof(t), "0");
        break;
    }
    default:
        snprintf(t, sizeof(t), "%s",
                 bigint && ((r >> 8) % 16 == 0) ? "18446744073709551616"
                                                : scalars[(r >> 8) % NSCALARS]);
    }
    if (g->leaf++ == g->mutate) snprintf(t, sizeof(t), "\"mutated\"");
    emit(g, t);
}

static void gen_value(gen_t *g, int depth, int maxd, int bigint)
{
    uint64_t r = rnd(g);
    if (depth >= maxd || r % 3 == 0) {
        gen_leaf(g, bigint);
        return;
    }
    size_t n = (r >> 8) % 6;
    int obj = (r >> 4) & 1;
    emit(g, obj ? "{" : "[");
    for (size_t i = 0; i < n; i++) {
        if (i) emit(g, ",");
        ws(g);
        if (obj) {
            emit(g, pick_key(g));
            ws(g);
            emit(g, ":");
            ws(g);
        }
        gen_value(g, depth + 1, maxd, bigint);
        ws(g);
    }
    emit(g, obj ? "}" : "]");
}

static void gen_doc(gen_t *g, uint64_t seed, long mutate)
{
    g->len = 0;
    g->s = seed * 0x9E3779B97F4A7C15ULL + 1;
    g->leaf = 0;
    g->mutate = mutate;
    int maxd = 1 + (int)(rnd(g) % 7);
    int bigint = (rnd(g) % 8) == 0;
    ws(g);
    emit(g, rnd(g) & 1 ? "[" : "{");
    int obj = g->p[g->len - 1] == '{';
    size_t n = 1 + rnd(g) % 5;
    for (size_t i = 0; i < n; i++) {
        if (i) emit(g, ",");
        if (obj) {
            emit(g, pick_key(g));
            emit(g, ":");
        }
        gen_value(g, 1, maxd, bigint);
    }
    emit(g, obj ? "}" : "]");
    ws(g);
}

#define NGEN 3000

static void test_generated(void **state)
{
    (void)state;
    gen_t a = {0}, b = {0};
    for (uint64_t seed = 1; seed <= NGEN; seed++) {
        gen_doc(&a, seed, -1);
        long leaves = a.leaf;
        gen_doc(&b, seed, leaves ? (long)(seed % (uint64_t)leaves) : -1);
        check_pair(a.p, a.len, b.p, b.len, (int)(seed % 4));
    }
    free(a.p);
    free(b.p);
}

/* Bench-shaped documents: cmp_bench's prediction and corpus documents in
 * small (17-digit scores, ids, labels, nested metadata and tags). */
static void test_bench_shaped(void **state)
{
    (void)state;
    gen_t g = {0};
    for (int variant = 0; variant < 2; variant++) {
        char *docs[2] = {NULL, NULL};
        size_t lens[2];
        for (int side = 0; side < 2; side++) {
            g.len = 0;
            g.s = 0x243F6A8885A308D3ULL;
            char t[256];
            snprintf(t, sizeof(t),
                     "{\"model\":\"resnet50\",\"request_id\":\"%s\",\"timestamp\":%.3f,"
                     "\"predictions\":[",
                     side ? "8d2f-2222" : "8d2f-1111", 1717171717.123 + side);
            emit(&g, t);
            for (int i = 0; i < 40; i++) {
                double sc = (double)(rnd(&g) >> 11) / 9007199254740992.0;
                snprintf(
                    t, sizeof(t),
                    "%s{\"id\":%d,\"label\":\"%s\",\"score\":%.17g,\"class_scores\":[%.17g,%.17g],"
                    "\"metadata\":{\"latency_ms\":%.3f,\"email\":\"u%d@x\",\"tags\":[\"b-%d\","
                    "\"gpu\"]}}",
                    i ? "," : "", i, side && i == 7 ? "boat" : "cat", sc, sc / 3, 1 - sc, 1.5 + sc,
                    i, i / 10);
                emit(&g, t);
            }
            emit(&g, variant ? "],\"debug\":true}" : "]}");
            docs[side] = malloc(g.len);
            memcpy(docs[side], g.p, g.len);
            lens[side] = g.len;
        }
        check_pair(docs[0], lens[0], docs[1], lens[1], 1);
        check_body(docs[0], lens[0]);
        free(docs[0]);
        free(docs[1]);
    }
    free(g.p);
}

/* Through the aggregator: the sample JSON of a record that lends the kept
 * bodies is the sample of the same record without them, byte for byte. */
static void test_aggregator_samples(void **state)
{
    (void)state;
    static const size_t rsets[] = {1, 2, 5, 6, 9};
    gen_t a = {0}, b = {0};
    size_t samples = 0, with_tapes = 0;
    for (size_t ri = 0; ri < sizeof(rsets) / sizeof(rsets[0]); ri++) {
        size_t rs = rsets[ri];
        st_agg_config_t cfg;
        st_agg_config_init(&cfg);
        cfg.deltas = 1;
        cfg.rules = C.rules[rs];
        cfg.max_backlog = 1u << 20;
        st_agg_t *agg[2] = {st_agg_new(&cfg), st_agg_new(&cfg)};
        assert_non_null(agg[0]);
        assert_non_null(agg[1]);
        for (uint64_t seed = 1; seed <= 200; seed++) {
            gen_doc(&a, seed + 7000, -1);
            gen_doc(&b, seed + 7000, a.leaf ? (long)(seed % (uint64_t)a.leaf) : -1);
            st_response_t rp = resp(a.p, a.len, 200, 1), rsh = resp(b.p, b.len, 200, 1);
            st_diff_result_t res;
            st_cmp_bodies_t *kept = NULL;
            assert_int_equal(st_compare_policy_keep(&C.pol[rs], &rp, &rsh, NULL, &res, &kept), 0);
            if (res.verdict != ST_VERDICT_DIVERGED) {
                assert_null(kept);
                st_diff_result_free(&res);
                continue;
            }
            with_tapes += kept != NULL;
            char *text[2] = {NULL, NULL};
            for (int k = 0; k < 2; k++) {
                st_agg_record_t rec = {.endpoint = "GET /x",
                                       .method = "GET",
                                       .path = "/x",
                                       .request_id = "r",
                                       .verdict = res.verdict,
                                       .diff = &res,
                                       .primary_seconds = 0.001,
                                       .shadow_seconds = 0.002,
                                       .primary = &rp,
                                       .shadow = &rsh,
                                       .now_ms = 1700000000000 + (int64_t)seed * 1000,
                                       .policy = &C.pol[rs],
                                       .bodies = k ? kept : NULL};
                st_agg_record(agg[k], &rec);
                st_batch_t bt;
                st_batch_init(&bt);
                assert_int_equal(st_agg_build_batch(agg[k], &bt, 0, rec.now_ms), 0);
                for (size_t i = 0; i < bt.ncmds; i++)
                    if (strcmp(bt.cmds[i].argv[0], "LPUSH") == 0) {
                        assert_null(text[k]);
                        text[k] = strdup(bt.cmds[i].argv[2]);
                    }
                st_batch_free(&bt);
                assert_non_null(text[k]);
            }
            if (strcmp(text[0], text[1]) != 0)
                fail_case("aggregator sample", rs, 4096, a.p, a.len, text[0], strlen(text[0]),
                          text[1], strlen(text[1]));
            samples++;
            free(text[0]);
            free(text[1]);
            st_cmp_bodies_free(kept);
            st_diff_result_free(&res);
        }
        st_agg_free(agg[0]);
        st_agg_free(agg[1]);
    }
    free(a.p);
    free(b.p);
    fprintf(stderr, "aggregator: %zu samples equal, %zu of them with kept tapes\n", samples,
            with_tapes);
    assert_true(with_tapes > 600);
}

/* jansson allocations (the engine's too) fail after `budget` calls. */
static long alloc_budget = -1;

static void *failing_malloc(size_t n)
{
    if (alloc_budget == 0) return NULL;
    if (alloc_budget > 0) alloc_budget--;
    return malloc(n);
}

/* Whichever allocation fails, the comparison keeps nothing or its tapes,
 * the sample body is NULL or jansson's bytes, and nothing leaks (ASan,
 * valgrind). */
static void test_allocation_failures(void **state)
{
    (void)state;
    const char *a = "{\"k\":[1,{\"k\":\"\\u00e9\"}],\"a\":{\"b\":0.1,\"x\":[1e300]},\"z\":\"s\"}";
    const char *b = "{\"k\":[1,{\"k\":\"\\u00e8\"}],\"a\":{\"b\":0.1,\"x\":[1e300]},\"z\":\"t\"}";
    const size_t rs = 2; /* $..k */
    size_t wl[2];
    char *want[2] = {st_policy_redact_body(&C.pol[rs], a, strlen(a), 4096, &wl[0]),
                     st_policy_redact_body(&C.pol[rs], b, strlen(b), 4096, &wl[1])};
    assert_non_null(want[0]);
    assert_non_null(want[1]);
    st_response_t rp = resp(a, strlen(a), 200, 1), rsh = resp(b, strlen(b), 200, 1);
    int kept_ok = 0, failed = 0;
    json_set_alloc_funcs(failing_malloc, free);
    for (long budget = 0; budget < 400 && kept_ok < 3; budget++) {
        alloc_budget = budget;
        st_diff_result_t res;
        st_cmp_bodies_t *kept = NULL;
        int rc = st_compare_policy_keep(&C.pol[rs], &rp, &rsh, NULL, &res, &kept);
        assert_true(rc == 0 || rc == -1);
        if (rc == -1) assert_null(kept);
        for (int i = 0; i < 2; i++) {
            size_t gl = 0;
            const st_response_t *r = i ? &rsh : &rp;
            char *got =
                st_policy_redact_body_parsed(&C.pol[rs], kept, r->body, r->body_len, 4096, &gl);
            if (got)
                same("allocation failures", rs, 4096, r->body, r->body_len, want[i], wl[i], got,
                     gl);
            failed += !got;
            free(got);
        }
        kept_ok += kept && kept->ok[0] && kept->ok[1] && alloc_budget > 0;
        st_cmp_bodies_free(kept);
        st_diff_result_free(&res);
    }
    alloc_budget = -1;
    json_set_alloc_funcs(malloc, free);
    assert_true(failed > 0);
    assert_int_equal(kept_ok, 3);
    free(want[0]);
    free(want[1]);
}

/* Runs last: the totals, and that the tape path was really taken. */
static void test_totals(void **state)
{
    (void)state;
    fprintf(stderr,
            "pairs %zu, sides %zu: tape %zu (redacted %zu, bytes kept %zu, \"$\" %zu), fallback "
            "%zu; fallback checks %zu; each side at %zu size limits\n",
            C.pairs, C.sides, C.tape_sides, C.tape_redacted, C.tape_kept_bytes, C.tape_whole,
            C.fallback_sides, C.fallback_checks, NMAXLEN);
    assert_true(C.tape_sides > 10000);
    assert_true(C.tape_redacted > 2000);
    assert_true(C.tape_kept_bytes > 500);
    assert_true(C.tape_whole > 500);
}

static int setup(void **state)
{
    (void)state;
    memset(&C, 0, sizeof(C));
    for (size_t i = 0; i < NRULES; i++) {
        char err[512];
        C.rules[i] = NULL;
        if (rule_sets[i] && st_rules_parse(rule_sets[i], strlen(rule_sets[i]), &C.rules[i], err,
                                           sizeof(err)) != 0) {
            fprintf(stderr, "rules %zu: %s\n", i, err);
            return -1;
        }
        st_policy_resolve(C.rules[i], "GET /x", &C.pol[i]);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < NRULES; i++)
        st_rules_free(C.rules[i]);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corners),
        cmocka_unit_test(test_corpora),
        cmocka_unit_test(test_unit_literals),
        cmocka_unit_test(test_bench_shaped),
        cmocka_unit_test(test_generated),
        cmocka_unit_test(test_aggregator_samples),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_totals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
