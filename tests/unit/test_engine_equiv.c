/*
 * Differential test of the comparison engine: generated document pairs and
 * rule sets, each compared by st_compare (the tape engine) and by
 * ref_st_compare (the jansson-tree engine it replaced); the two results must
 * be equal in every field (equiv.h).
 *
 * Each case draws, from its own seed: a random JSON tree (objects with keys
 * from a pool that includes escapes, unicode, quotes and duplicates; arrays;
 * numbers near int64's limits, beyond it, with exponents, many digits, -0,
 * underflow and overflow; strings with every escape, raw UTF-8, NUL, long
 * text; deep nesting), a rule set made of JSONPaths taken from the tree's
 * own paths (ignore, unordered, argmax, topk, path_tolerance, redact_paths,
 * tolerance, max_depth, an endpoint section), a shadow made by perturbing
 * the tree (numbers moved by exactly a tolerance or one ulp, reformatted
 * numbers and strings, keys reordered, dropped, added, duplicated, types
 * changed, arrays permuted or resized), serialized with random whitespace,
 * and sometimes byte-level damage (invalid JSON, a NUL after a token) and a
 * noise replica. Prediction documents like bench/cmp_bench's are mixed in.
 *
 * Bounded: ST_EQUIV_CASES cases (default 20000) and ST_EQUIV_SECONDS
 * seconds (default 60), whichever comes first; ST_EQUIV_SEED picks the
 * seeds (default 1). On the first difference the case is shrunk (bytes of
 * each body, members of the rules) while the engines still differ, and the
 * reproducer is printed as C literals; the test fails.
 */
#include <jansson.h>
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

#include "equiv.h"
#include "shadowtee/comparator.h"

/* ---- random numbers and strings ------------------------------------------ */

typedef struct {
    uint64_t s;
} rng_t;

static uint64_t rnd(rng_t *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static size_t below(rng_t *r, size_t n)
{
    return n ? (size_t)(rnd(r) % n) : 0;
}

static int chance(rng_t *r, unsigned percent)
{
    return below(r, 100) < percent;
}

static double unit(rng_t *r)
{
    return (double)(rnd(r) >> 11) / 9007199254740992.0;
}

typedef struct {
    char *p;
    size_t len, cap;
} sb_t;

static void sb_put(sb_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap)
            cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sb_t *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_printf(sb_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)n);
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

/* ---- tokens -------------------------------------------------------------- */

/* Shortest %.Ng (N <= 17) that reads back as d. */
static void shortest(char *buf, size_t len, double d)
{
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, len, "%.*g", p, d);
        if (strtod(buf, NULL) == d) return;
    }
}

static char *gen_number(rng_t *r)
{
    static const char *const fixed[] = {
        "0",
        "-0",
        "0.0",
        "-0.0",
        "0e0",
        "1",
        "-1",
        "1.0",
        "1e0",
        "10e-1",
        "100",
        "1e2",
        "100.0",
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775806",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "12345678901234567890123",
        "9007199254740993",
        "9007199254740992.0",
        "1e-400",
        "4.9e-324",
        "2.2250738585072011e-308",
        "2.2250738585072014e-308",
        "1.7976931348623157e308",
        "1e308",
        "1E+5",
        "2.5E-3",
        "0.1000000000000000055511151231257827021181583404541015625",
        "123456789012345678901234567890e-20",
        "0.30000000000000004",
        "5e-324",
        "1.5e300",
        "0.000001",
        "1e-7",
        "123.456",
        "1e309",  /* overflows: invalid */
        "-2e400", /* overflows: invalid */
    };
    char buf[128];
    switch (below(r, 9)) {
    case 0:
        return xstrdup(fixed[below(r, sizeof(fixed) / sizeof(fixed[0]) - (chance(r, 97) ? 2 : 0))]);
    case 1:
        snprintf(buf, sizeof(buf), "%d", (int)below(r, 11) - 5);
        return xstrdup(buf);
    case 2:
        snprintf(buf, sizeof(buf), "%s%llu", chance(r, 30) ? "-" : "",
                 (unsigned long long)(rnd(r) >> below(r, 64)));
        return xstrdup(buf);
    case 3:
        snprintf(buf, sizeof(buf), "%.17g", unit(r));
        return xstrdup(buf);
    case 4:
        shortest(buf, sizeof(buf), unit(r) * pow(10, (double)below(r, 40) - 20));
        return xstrdup(buf);
    case 5:
        snprintf(buf, sizeof(buf), "%.*f", (int)below(r, 8), unit(r) * 1000 - 500);
        return xstrdup(buf);
    case 6:
        snprintf(buf, sizeof(buf), "%.*e", (int)below(r, 18), (unit(r) - 0.5) * 1e6);
        return xstrdup(buf);
    case 7: { /* many digits (strtod fallback), sometimes a 400-digit integer */
        sb_t b = {0};
        size_t n = chance(r, 3) ? 400 : 18 + below(r, 25);
        if (chance(r, 30)) sb_puts(&b, "-");
        sb_put(&b, &"123456789"[below(r, 9)], 1);
        for (size_t i = 1; i < n; i++) {
            char d = (char)('0' + below(r, 10));
            sb_put(&b, &d, 1);
            if (i == 5 && chance(r, 50)) sb_puts(&b, ".");
        }
        if (chance(r, 30)) sb_printf(&b, "e%d", (int)below(r, 60) - 30);
        return b.p;
    }
    default:
        shortest(buf, sizeof(buf), (unit(r) - 0.5) * pow(10, (double)below(r, 600) - 300));
        return xstrdup(buf);
    }
}

typedef struct {
    const char *text;    /* as written in JSON, with quotes */
    const char *decoded; /* the key for JSONPath patterns, NULL: not expressible */
} key_t_;

static const key_t_ keys[] = {
    {"\"a\"", "a"},
    {"\"b\"", "b"},
    {"\"c\"", "c"},
    {"\"id\"", "id"},
    {"\"label\"", "label"},
    {"\"score\"", "score"},
    {"\"scores\"", "scores"},
    {"\"class_scores\"", "class_scores"},
    {"\"ts\"", "ts"},
    {"\"timestamp\"", "timestamp"},
    {"\"tags\"", "tags"},
    {"\"items\"", "items"},
    {"\"meta\"", "meta"},
    {"\"x y\"", "x y"},
    {"\"\\u00e9\"", "\xc3\xa9"},
    {"\"\xc3\xa9\"", "\xc3\xa9"},
    {"\"it's\"", "it's"},
    {"\"k\\\"q\"", "k\"q"},
    {"\"a.b\"", "a.b"},
    {"\"\"", ""},
    {"\"_x9\"", "_x9"},
    {"\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80"},
    {"\"back\\\\slash\"", "back\\slash"},
    {"\"t\\tab\"", NULL},
    {"\"\\u0061\"", "a"},    /* the key "a" written with an escape */
    {"\"a\\u0000b\"", NULL}, /* NUL in a key: invalid */
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static size_t pick_key(rng_t *r)
{
    size_t k = below(r, NKEYS);
    if (k == NKEYS - 1 && chance(r, 90)) k = 0; /* the invalid key, rarely */
    return k;
}

static char *gen_string(rng_t *r)
{
    static const char *const pool[] = {
        "\"\"",
        "\"a\"",
        "\"cat\"",
        "\"dog\"",
        "\"a b\"",
        "\"caf\xc3\xa9\"",
        "\"caf\\u00e9\"",
        "\"e\\u0301\"",
        "\"\\ud83d\\ude00\"",
        "\"\xf0\x9f\x98\x80\"",
        "\"\\n\\t\\r\\b\\f\\\"\\\\\\/\"",
        "\"a/b\"",
        "\"a\\/b\"",
        "\"\\u0000\"",
        "\"a\\u0000b\"",
        "\"\\u001f\\u007f\"",
        "\"\x7f\"",
        "\"[[[{{{\"",
        "\"\\u0041BC\"",
        "\"ABC\"",
        "\"\xe4\xb8\xad\xe6\x96\x87\"",
        "\"\\uD834\\uDD1E\"",
        "\"\xf4\x8f\xbf\xbf\"",
        /* invalid: raw control byte, lone surrogates, bad UTF-8 */
        "\"\x01\"",
        "\"\\ud800\"",
        "\"\\udc00x\"",
        "\"\\ud800\\u0041\"",
        "\"\xc3\x28\"",
        "\"\xed\xa0\x80\"",
        "\"\xc0\xaf\"",
        "\"\xf4\x90\x80\x80\"",
        "\"\\x\"",
    };
    size_t np = sizeof(pool) / sizeof(pool[0]);
    size_t valid = np - 9;
    if (chance(r, 6)) { /* long text: a/b truncation on a UTF-8 boundary */
        sb_t b = {0};
        sb_puts(&b, "\"");
        size_t n = 100 + below(r, 300);
        for (size_t i = 0; i < n; i++)
            sb_puts(&b, chance(r, 50) ? "\xc3\xa9" : (chance(r, 10) ? "\\n" : "x"));
        sb_puts(&b, "\"");
        return b.p;
    }
    return xstrdup(pool[below(r, chance(r, 97) ? valid : np)]);
}

/* ---- trees ---------------------------------------------------------------- */

enum { G_TOKEN, G_ARRAY, G_OBJECT };

typedef struct gv gv_t;
struct gv {
    int kind;
    char *tok; /* G_TOKEN: the exact text */
    size_t n;
    size_t *key; /* G_OBJECT: indexes into keys[] */
    gv_t **kid;
};

static void gv_free(gv_t *v)
{
    if (!v) return;
    free(v->tok);
    for (size_t i = 0; i < v->n; i++)
        gv_free(v->kid[i]);
    free(v->kid);
    free(v->key);
    free(v);
}

static gv_t *gv_new(int kind)
{
    gv_t *v = calloc(1, sizeof(*v));
    assert_non_null(v);
    v->kind = kind;
    return v;
}

static gv_t *gv_token(char *tok)
{
    gv_t *v = gv_new(G_TOKEN);
    v->tok = tok;
    return v;
}

static void gv_add(gv_t *v, size_t key, gv_t *kid)
{
    v->kid = realloc(v->kid, (v->n + 1) * sizeof(*v->kid));
    v->key = realloc(v->key, (v->n + 1) * sizeof(*v->key));
    assert_non_null(v->kid);
    assert_non_null(v->key);
    v->kid[v->n] = kid;
    v->key[v->n] = key;
    v->n++;
}

static gv_t *gv_copy(const gv_t *v)
{
    gv_t *c = gv_new(v->kind);
    if (v->tok) c->tok = xstrdup(v->tok);
    for (size_t i = 0; i < v->n; i++)
        gv_add(c, v->key ? v->key[i] : 0, gv_copy(v->kid[i]));
    return c;
}

static gv_t *gen_scalar(rng_t *r)
{
    switch (below(r, 10)) {
    case 0:
        return gv_token(xstrdup("true"));
    case 1:
        return gv_token(xstrdup("false"));
    case 2:
        return gv_token(xstrdup("null"));
    case 3:
    case 4:
    case 5:
        return gv_token(gen_string(r));
    default:
        return gv_token(gen_number(r));
    }
}

static gv_t *gen_tree(rng_t *r, int depth, size_t *budget)
{
    if (*budget == 0 || depth > 6 || chance(r, depth * 12)) return gen_scalar(r);
    (*budget)--;
    if (chance(r, 50)) {
        gv_t *v = gv_new(G_ARRAY);
        size_t n = below(r, chance(r, 10) ? 12 : 5);
        int numeric = chance(r, 30); /* argmax / topk material */
        for (size_t i = 0; i < n; i++)
            gv_add(v, 0, numeric ? gv_token(gen_number(r)) : gen_tree(r, depth + 1, budget));
        return v;
    }
    gv_t *v = gv_new(G_OBJECT);
    size_t n = below(r, chance(r, 10) ? 14 : 6);
    for (size_t i = 0; i < n; i++)
        gv_add(v, pick_key(r), gen_tree(r, depth + 1, budget));
    return v;
}

/* A number moved by a tolerance-sized amount (or an ulp, or reformatted). */
static char *nudge(rng_t *r, const char *tok)
{
    static const double steps[] = {1e-9, 1e-6, 1e-4, 0.001, 0.01, 0.5, 1};
    char buf[128];
    double x = strtod(tok, NULL);
    if (!isfinite(x)) return xstrdup(tok);
    switch (below(r, 6)) {
    case 0:
        snprintf(buf, sizeof(buf), "%.17g", x + steps[below(r, 7)] * (chance(r, 50) ? 1 : -1));
        break;
    case 1:
        snprintf(buf, sizeof(buf), "%.17g",
                 x * (1 + steps[below(r, 7)] * (chance(r, 50) ? 1 : -1)));
        break;
    case 2:
        snprintf(buf, sizeof(buf), "%.17g", nextafter(x, chance(r, 50) ? INFINITY : -INFINITY));
        break;
    case 3: /* the same value written otherwise */
        snprintf(buf, sizeof(buf), chance(r, 50) ? "%.17e" : "%.20g", x);
        break;
    case 4:
        if (strpbrk(tok, ".eE"))
            snprintf(buf, sizeof(buf), fabs(x) < 1e17 ? "%.0f" : "%.17g", round(x));
        else
            snprintf(buf, sizeof(buf), "%s.0", tok);
        break;
    default: /* the next integer (in int64's range; beyond it a real) */
        if (fabs(x) < 9e18)
            snprintf(buf, sizeof(buf), "%lld", (long long)x + (chance(r, 50) ? 1 : -1));
        else
            snprintf(buf, sizeof(buf), "%.17g", x * (1 + 1e-15));
    }
    return xstrdup(buf);
}

static void mutate(rng_t *r, gv_t *v, unsigned rate)
{
    if (v->kind == G_TOKEN) {
        if (!chance(r, rate)) return;
        char *t = v->tok;
        if ((t[0] == '-' || (t[0] >= '0' && t[0] <= '9')) && chance(r, 80)) {
            v->tok = nudge(r, t);
        } else {
            gv_t *sc = gen_scalar(r);
            v->tok = sc->tok;
            sc->tok = NULL;
            gv_free(sc);
        }
        free(t);
        return;
    }
    if (chance(r, rate / 3 + 1)) {
        size_t budget = 4;
        switch (below(r, 7)) {
        case 0: /* swap two members or elements */
            if (v->n >= 2) {
                size_t i = below(r, v->n), j = below(r, v->n);
                gv_t *k = v->kid[i];
                v->kid[i] = v->kid[j];
                v->kid[j] = k;
                size_t kk = v->key[i];
                v->key[i] = v->key[j];
                v->key[j] = kk;
            }
            break;
        case 1: /* drop one */
            if (v->n) {
                size_t i = below(r, v->n);
                gv_free(v->kid[i]);
                memmove(v->kid + i, v->kid + i + 1, (v->n - i - 1) * sizeof(*v->kid));
                memmove(v->key + i, v->key + i + 1, (v->n - i - 1) * sizeof(*v->key));
                v->n--;
            }
            break;
        case 2: /* add one */
            gv_add(v, pick_key(r), gen_tree(r, 3, &budget));
            break;
        case 3: /* duplicate a member (same key, maybe another value) */
            if (v->n) {
                size_t i = below(r, v->n);
                gv_add(v, v->key[i], chance(r, 50) ? gv_copy(v->kid[i]) : gen_scalar(r));
            }
            break;
        case 4: /* rename a key */
            if (v->n && v->kind == G_OBJECT) v->key[below(r, v->n)] = pick_key(r);
            break;
        case 5: /* replace a child by something else (type change) */
            if (v->n) {
                size_t i = below(r, v->n);
                gv_free(v->kid[i]);
                v->kid[i] = gen_tree(r, 4, &budget);
            }
            break;
        default: /* reverse (unordered arrays) */
            for (size_t i = 0; i < v->n / 2; i++) {
                gv_t *k = v->kid[i];
                v->kid[i] = v->kid[v->n - 1 - i];
                v->kid[v->n - 1 - i] = k;
            }
        }
    }
    for (size_t i = 0; i < v->n; i++)
        mutate(r, v->kid[i], rate);
}

static void ws(rng_t *r, sb_t *b, int style)
{
    static const char *const w[] = {" ", "\n", "\t", "\r\n", "  "};
    if (style && chance(r, 30)) sb_puts(b, w[below(r, 5)]);
}

static void serialize(rng_t *r, const gv_t *v, sb_t *b, int style)
{
    if (v->kind == G_TOKEN) {
        sb_puts(b, v->tok);
        return;
    }
    sb_puts(b, v->kind == G_ARRAY ? "[" : "{");
    for (size_t i = 0; i < v->n; i++) {
        if (i) sb_puts(b, ",");
        ws(r, b, style);
        if (v->kind == G_OBJECT) {
            sb_puts(b, keys[v->key[i]].text);
            ws(r, b, style);
            sb_puts(b, ":");
            ws(r, b, style);
        }
        serialize(r, v->kid[i], b, style);
        ws(r, b, style);
    }
    sb_puts(b, v->kind == G_ARRAY ? "]" : "}");
}

/* Wraps v in `levels` arrays or objects (nesting limits). */
static gv_t *nest(rng_t *r, gv_t *v, size_t levels)
{
    for (size_t i = 0; i < levels; i++) {
        gv_t *o = gv_new(chance(r, 50) ? G_ARRAY : G_OBJECT);
        gv_add(o, 0, v);
        v = o;
    }
    return v;
}

/* Byte-level damage: mostly invalid JSON, sometimes a NUL after a token. */
static void damage(rng_t *r, sb_t *b)
{
    if (b->len == 0) return;
    size_t pos = below(r, b->len);
    switch (below(r, 6)) {
    case 0:
        b->p[pos] = "{}[]\",:\\0e-.tn "[below(r, 15)];
        break;
    case 1:
        b->p[pos] = (char)rnd(r);
        break;
    case 2:
        b->len = pos;
        break;
    case 3: { /* insert a NUL after a digit or literal (jansson skips one) */
        for (size_t i = pos; i < b->len; i++) {
            char c = b->p[i];
            if ((c >= '0' && c <= '9') || c == 'e' || c == 'l') {
                sb_put(b, "x", 1);
                memmove(b->p + i + 2, b->p + i + 1, b->len - i - 2);
                b->p[i + 1] = '\0';
                break;
            }
        }
        break;
    }
    case 4:
        memmove(b->p + pos, b->p + pos + 1, b->len - pos - 1);
        b->len--;
        break;
    default:
        if (chance(r, 50))
            sb_puts(b, " x");
        else
            sb_put(b, "\0", 1); /* a trailing NUL byte */
    }
}

/* ---- rules ------------------------------------------------------------------ */

typedef struct {
    size_t seg[16]; /* key index + 1, or 0 with idx */
    size_t idx[16];
    size_t n;
} path_t;

typedef struct {
    path_t *v;
    size_t n, cap;
} paths_t;

static void collect(const gv_t *v, path_t *cur, paths_t *out)
{
    if (out->n == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 64;
        out->v = realloc(out->v, out->cap * sizeof(*out->v));
        assert_non_null(out->v);
    }
    out->v[out->n++] = *cur;
    if (v->kind == G_TOKEN || cur->n >= 16) return;
    for (size_t i = 0; i < v->n; i++) {
        cur->seg[cur->n] = v->kind == G_OBJECT ? v->key[i] + 1 : 0;
        cur->idx[cur->n] = i;
        cur->n++;
        collect(v->kid[i], cur, out);
        cur->n--;
    }
}

static int identifier(const char *k)
{
    if (!*k) return 0;
    for (const char *c = k; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' ||
              (c > k && *c >= '0' && *c <= '9')))
            return 0;
    return 1;
}

/* A JSONPath pattern from a path of the tree: steps kept, widened to
 * wildcards, or turned into a recursive descent. NULL when a key cannot be
 * written in a pattern. */
static char *pattern(rng_t *r, const path_t *p)
{
    sb_t b = {0};
    sb_puts(&b, "$");
    size_t from = 0;
    int descent = 0;
    if (p->n > 0 && chance(r, 25)) { /* "$..x": start the descent somewhere */
        from = below(r, p->n);
        descent = 1;
        sb_puts(&b, "..");
    }
    for (size_t i = from; i < p->n; i++) {
        int first = i == from && descent;
        if (p->seg[i] == 0) {
            if (chance(r, 40))
                sb_puts(&b, "[*]");
            else
                sb_printf(&b, "[%zu]", p->idx[i]);
            continue;
        }
        const char *k = keys[p->seg[i] - 1].decoded;
        if (!k) {
            free(b.p);
            return NULL;
        }
        if (chance(r, 15)) {
            sb_puts(&b, first ? "*" : ".*");
        } else if (identifier(k) && chance(r, 80)) {
            if (!first) sb_puts(&b, ".");
            sb_puts(&b, k);
        } else {
            sb_puts(&b, "['");
            for (const char *c = k; *c; c++) {
                if (*c == '\'' || *c == '\\') sb_puts(&b, "\\");
                sb_put(&b, c, 1);
            }
            sb_puts(&b, "']");
        }
    }
    return b.p;
}

static json_t *pattern_array(rng_t *r, const paths_t *ps, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n && ps->n; i++) {
        char *p = pattern(r, &ps->v[below(r, ps->n)]);
        if (p) json_array_append_new(a, json_string(p));
        free(p);
    }
    return a;
}

static json_t *tolerance(rng_t *r)
{
    static const double abs_v[] = {0, 1e-9, 1e-6, 0.001, 0.01, 0.5};
    static const double rel_v[] = {0, 1e-9, 1e-4, 0.01, 0.1};
    json_t *t = json_object();
    if (chance(r, 70)) json_object_set_new(t, "absolute", json_real(abs_v[below(r, 6)]));
    if (chance(r, 70)) json_object_set_new(t, "relative", json_real(rel_v[below(r, 5)]));
    return t;
}

static json_t *section(rng_t *r, const paths_t *ps)
{
    json_t *s = json_object();
    if (chance(r, 50)) json_object_set_new(s, "tolerance", tolerance(r));
    if (chance(r, 40)) json_object_set_new(s, "ignore", pattern_array(r, ps, 1 + below(r, 3)));
    if (chance(r, 35)) json_object_set_new(s, "unordered", pattern_array(r, ps, 1 + below(r, 3)));
    if (chance(r, 35)) json_object_set_new(s, "argmax", pattern_array(r, ps, 1 + below(r, 2)));
    if (chance(r, 25) && ps->n) {
        json_t *tk = json_object();
        char *p = pattern(r, &ps->v[below(r, ps->n)]);
        if (p) json_object_set_new(tk, p, json_integer(1 + (json_int_t)below(r, 4)));
        free(p);
        json_object_set_new(s, "topk", tk);
    }
    if (chance(r, 30) && ps->n) {
        json_t *pt = json_object();
        for (int i = 0; i < 2; i++) {
            char *p = pattern(r, &ps->v[below(r, ps->n)]);
            if (p) json_object_set_new(pt, p, tolerance(r));
            free(p);
        }
        json_object_set_new(s, "path_tolerance", pt);
    }
    if (chance(r, 25))
        json_object_set_new(s, "redact_paths", pattern_array(r, ps, 1 + below(r, 2)));
    return s;
}

/* Rules JSON text for tree a, or NULL for the built-in defaults. */
static char *gen_rules(rng_t *r, const gv_t *a)
{
    if (chance(r, 10)) return NULL;
    paths_t ps = {0};
    path_t cur = {{0}, {0}, 0};
    collect(a, &cur, &ps);
    json_t *root = json_object();
    json_object_set_new(root, "defaults", section(r, &ps));
    if (chance(r, 40)) {
        json_t *ep = section(r, &ps);
        json_object_set_new(ep, "match", json_string("POST /predict"));
        json_t *eps = json_array();
        json_array_append_new(eps, ep);
        json_object_set_new(root, "endpoints", eps);
    }
    if (chance(r, 15))
        json_object_set_new(root, "max_depth", json_integer(1 + (json_int_t)below(r, 8)));
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    free(ps.v);
    return text;
}

/* ---- prediction documents (bench/cmp_bench's shape) ---------------------- */

static char *prediction_doc(rng_t *r, uint64_t seed, int variant, size_t npred, size_t *len)
{
    static const char *const labels[] = {"cat", "dog", "car", "tree", "person"};
    sb_t b = {0};
    rng_t g = {seed}, jitter = {seed ^ (uint64_t)(variant + 1) * 0x9E37};
    sb_printf(&b, "{\"model\":\"resnet50\",\"request_id\":\"req-%d\",\"timestamp\":%.3f,", variant,
              1717171717.123 + variant);
    sb_puts(&b, "\"predictions\":[");
    for (size_t i = 0; i < npred; i++) {
        double sc[3], sum = 0;
        for (int k = 0; k < 3; k++)
            sum += sc[k] = unit(&g) + 0.01;
        int best = 0;
        for (int k = 0; k < 3; k++) {
            sc[k] /= sum;
            if (variant) sc[k] *= 1 + (unit(&jitter) - 0.5) * (chance(r, 3) ? 0.5 : 2e-7);
            if (sc[k] > sc[best]) best = k;
        }
        const char *label = labels[(size_t)best + (variant && chance(r, 2) ? 1 : 0)];
        sb_printf(&b, "%s{\"label\":\"%s\",\"id\":%zu,\"class_scores\":[%.17g,%.17g,%.17g]}",
                  i ? "," : "", label, i, sc[0], sc[1], sc[2]);
    }
    sb_puts(&b, "]}");
    *len = b.len;
    return b.p;
}

static const char *const prediction_rules[] = {
    NULL,
    "{\"defaults\":{\"tolerance\":{\"absolute\":1e-6,\"relative\":1e-4},"
    "\"ignore\":[\"$..timestamp\",\"$.request_id\"],"
    "\"argmax\":[\"$.predictions[*].class_scores\"]}}",
    "{\"defaults\":{\"unordered\":[\"$.predictions\"],\"redact_paths\":[\"$..label\"]}}",
    "{\"defaults\":{\"topk\":{\"$.predictions[*].class_scores\":2},"
    "\"path_tolerance\":{\"$..class_scores[*]\":{\"relative\":1e-6}}}}",
};

/* ---- one case --------------------------------------------------------------- */

typedef struct {
    char *rules; /* NULL: defaults */
    const char *endpoint;
    sb_t body[3]; /* primary, shadow, noise */
    int has_noise;
    int json_ct; /* bit i: body i declared application/json */
} case_t;

static void case_free(case_t *c)
{
    free(c->rules);
    for (int i = 0; i < 3; i++)
        free(c->body[i].p);
    memset(c, 0, sizeof(*c));
}

static const st_header_t json_header = {"Content-Type", 12, "application/json", 16};

/* Runs both engines on c. Returns 1 when they agree, 0 when not, -1 when
 * the rules do not load. */
static int case_run(const case_t *c, char *why, size_t wl, st_verdict_t *verdict,
                    unsigned long *kinds)
{
    st_rules_t *rules = NULL;
    char err[512];
    if (c->rules && st_rules_parse(c->rules, strlen(c->rules), &rules, err, sizeof(err)) != 0)
        return -1;
    st_response_t resp[3];
    for (int i = 0; i < 3; i++) {
        memset(&resp[i], 0, sizeof(resp[i]));
        resp[i].status = 200;
        resp[i].body = c->body[i].p;
        resp[i].body_len = c->body[i].len;
        if (c->json_ct & (1 << i)) {
            resp[i].headers = &json_header;
            resp[i].nheaders = 1;
        }
    }
    int eq =
        equiv_run(rules, c->endpoint, &resp[0], &resp[1], c->has_noise ? &resp[2] : NULL, why, wl);
    if (verdict) {
        st_diff_result_t res;
        st_compare(rules, c->endpoint, &resp[0], &resp[1], c->has_noise ? &resp[2] : NULL, &res);
        *verdict = res.verdict;
        for (size_t i = 0; kinds && i < res.nentries; i++)
            kinds[res.entries[i].kind]++;
        st_diff_result_free(&res);
    }
    st_rules_free(rules);
    return eq;
}

static void gen_case(uint64_t seed, case_t *c)
{
    rng_t r = {seed};
    memset(c, 0, sizeof(*c));
    c->endpoint = chance(&r, 70) ? "POST /predict" : "GET /other";
    if (chance(&r, 8)) { /* prediction documents */
        size_t n = 3 + below(&r, 40);
        uint64_t ds = rnd(&r);
        size_t len;
        for (int i = 0; i < 3; i++) {
            c->body[i].p = prediction_doc(&r, ds, i, n, &len);
            c->body[i].len = c->body[i].cap = len;
        }
        c->has_noise = chance(&r, 40);
        const char *rules = prediction_rules[below(&r, 4)];
        c->rules = rules ? xstrdup(rules) : NULL;
        return;
    }
    size_t budget = 3 + below(&r, 40);
    gv_t *a = gen_tree(&r, 0, &budget);
    if (chance(&r, 85) && a->kind == G_TOKEN) { /* mostly a document that sniffs as JSON */
        gv_t *o = gv_new(chance(&r, 50) ? G_OBJECT : G_ARRAY);
        gv_add(o, pick_key(&r), a);
        a = o;
    }
    if (chance(&r, 5)) a = nest(&r, a, 55 + below(&r, 15)); /* around the default 64 */
    c->rules = gen_rules(&r, a);
    gv_t *b = gv_copy(a), *n = gv_copy(a);
    unsigned rate = (unsigned)(1 + below(&r, 25));
    mutate(&r, b, rate);
    mutate(&r, n, rate);
    if (chance(&r, 5)) b = nest(&r, b, 1 + below(&r, 3));
    int style = (int)below(&r, 2);
    serialize(&r, a, &c->body[0], style);
    serialize(&r, chance(&r, 10) ? a : b, &c->body[1], chance(&r, 80) ? style : !style);
    serialize(&r, n, &c->body[2], style);
    for (int i = 0; i < 3; i++) {
        if (chance(&r, 4)) damage(&r, &c->body[i]);
        if (!c->body[i].p) sb_puts(&c->body[i], "");
    }
    c->has_noise = chance(&r, 30);
    if (chance(&r, 12)) c->json_ct = (int)below(&r, 8);
    gv_free(a);
    gv_free(b);
    gv_free(n);
}

/* ---- shrinking a failure ---------------------------------------------------- */

static int still_differs(const case_t *c)
{
    char why[64];
    return case_run(c, why, sizeof(why), NULL, NULL) == 0;
}

/* Removes byte ranges of body i while the engines still differ. */
static void shrink_body(case_t *c, int i, int *budget)
{
    sb_t *b = &c->body[i];
    for (size_t chunk = b->len / 2; chunk >= 1 && *budget > 0; chunk /= 2) {
        for (size_t at = 0; at + chunk <= b->len && *budget > 0;) {
            char *saved = malloc(b->len + 1);
            assert_non_null(saved);
            memcpy(saved, b->p, b->len + 1);
            size_t saved_len = b->len;
            memmove(b->p + at, b->p + at + chunk, b->len - at - chunk + 1);
            b->len -= chunk;
            (*budget)--;
            if (still_differs(c)) {
                free(saved);
            } else {
                memcpy(b->p, saved, saved_len + 1);
                b->len = saved_len;
                free(saved);
                at += chunk <= 8 ? 1 : chunk; /* small chunks at every offset */
            }
        }
    }
}

/* Removes the k-th member (depth first) of any object or array below v;
 * returns 1 when there was one, else subtracts the members seen from *k. */
static int remove_nth(json_t *v, size_t *k)
{
    if (json_is_object(v)) {
        const char *key;
        json_t *x;
        json_object_foreach(v, key, x)
        {
            if ((*k)-- == 0) {
                json_object_del(v, key);
                return 1;
            }
            if (remove_nth(x, k)) return 1;
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            if ((*k)-- == 0) {
                json_array_remove(v, i);
                return 1;
            }
            if (remove_nth(json_array_get(v, i), k)) return 1;
        }
    }
    return 0;
}

/* Removes members of the rules while the engines still differ. */
static void shrink_rules(case_t *c, int *budget)
{
    for (size_t k = 0; c->rules && *budget > 0;) {
        json_t *root = json_loads(c->rules, 0, NULL);
        if (!root) return;
        size_t left = k;
        int removed = remove_nth(root, &left);
        char *text = removed ? json_dumps(root, JSON_COMPACT) : NULL;
        json_decref(root);
        if (!removed) return;
        char *old = c->rules;
        c->rules = text;
        (*budget)--;
        if (still_differs(c)) {
            free(old); /* keep the smaller rules, try the same position again */
        } else {
            free(text);
            c->rules = old;
            k++;
        }
    }
}

static void report_failure(case_t *c, uint64_t seed, const char *why)
{
    fprintf(stderr, "\nENGINES DIFFER on case seed %llu:\n%s\n", (unsigned long long)seed, why);
    int budget = 20000;
    if (c->has_noise) {
        c->has_noise = 0;
        if (!still_differs(c)) c->has_noise = 1;
    }
    shrink_rules(c, &budget);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < 3; i++)
            if (i < 2 || c->has_noise) shrink_body(c, i, &budget);
    char why2[8192];
    case_run(c, why2, sizeof(why2), NULL, NULL);
    fprintf(stderr, "minimal reproducer (st_compare vs ref_st_compare, endpoint \"%s\"):\n",
            c->endpoint);
    fprintf(stderr, "  rules:   %s\n", c->rules ? c->rules : "NULL (defaults)");
    const char *names[3] = {"primary", "shadow", "noise"};
    for (int i = 0; i < 3; i++) {
        if (i == 2 && !c->has_noise) break;
        fprintf(stderr, "  %s%s: ", names[i], c->json_ct & (1 << i) ? " (application/json)" : "");
        equiv_print_literal(stderr, c->body[i].p, c->body[i].len);
        fprintf(stderr, " (%zu bytes)\n", c->body[i].len);
    }
    fprintf(stderr, "%s\n", why2);
}

/* ---- the test ------------------------------------------------------------------ */

static unsigned long env_ul(const char *name, unsigned long def)
{
    const char *v = getenv(name);
    return v && *v ? strtoul(v, NULL, 10) : def;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_engines_agree_on_generated_documents(void **state)
{
    unsigned long ncases = env_ul("ST_EQUIV_CASES", 20000);
    double secs = (double)env_ul("ST_EQUIV_SECONDS", 60);
    uint64_t base = env_ul("ST_EQUIV_SEED", 1);
    double start = now_s();
    unsigned long run = 0, bad_rules = 0, with_rules = 0, bytes = 0;
    unsigned long verdicts[4] = {0}, kinds[ST_DIFF_KIND_COUNT] = {0};
    (void)state;
    for (unsigned long i = 0; i < ncases && now_s() - start < secs; i++) {
        uint64_t seed = base * 1000003ULL + i;
        case_t c;
        gen_case(seed, &c);
        char why[8192];
        st_verdict_t v = ST_VERDICT_ERROR;
        int eq = case_run(&c, why, sizeof(why), &v, kinds);
        if (eq < 0) {
            bad_rules++;
        } else if (eq == 0) {
            report_failure(&c, seed, why);
            case_free(&c);
            fail_msg("the engines differ (reproducer above; rerun: ST_EQUIV_SEED=%llu, case %lu)",
                     (unsigned long long)base, i);
        } else {
            run++;
            with_rules += c.rules != NULL;
            verdicts[v]++;
            bytes += c.body[0].len + c.body[1].len + (c.has_noise ? c.body[2].len : 0);
        }
        case_free(&c);
    }
    double took = now_s() - start;
    printf("test_engine_equiv: %lu cases agree (%lu with generated rule sets, %lu rule sets "
           "rejected by the loader), %lu body bytes, %.1f s; verdicts: match %lu, diverged %lu, "
           "noise %lu\n",
           run, with_rules, bad_rules, bytes, took, verdicts[ST_VERDICT_MATCH],
           verdicts[ST_VERDICT_DIVERGED], verdicts[ST_VERDICT_NOISE]);
    printf("entries by kind:");
    for (int k = 0; k < ST_DIFF_KIND_COUNT; k++)
        printf(" %s %lu", st_diff_kind_name((st_diff_kind_t)k), kinds[k]);
    printf("\n");
    /* the generator must have produced every kind of outcome the bodies can
     * (status, header and too_large come from the shared, unchanged code) */
    assert_true(run > 0);
    if (run >= 2000) {
        assert_true(verdicts[ST_VERDICT_MATCH] > run / 50);
        assert_true(verdicts[ST_VERDICT_DIVERGED] > run / 5);
        assert_true(verdicts[ST_VERDICT_NOISE] > 0);
        static const st_diff_kind_t body_kinds[] = {
            ST_DIFF_VALUE,        ST_DIFF_TYPE,      ST_DIFF_MISSING,
            ST_DIFF_EXTRA,        ST_DIFF_ARRAY_LEN, ST_DIFF_BYTES,
            ST_DIFF_INVALID_JSON, ST_DIFF_TOO_DEEP,  ST_DIFF_ARGMAX,
        };
        for (size_t k = 0; k < sizeof(body_kinds) / sizeof(body_kinds[0]); k++)
            if (kinds[body_kinds[k]] == 0)
                fail_msg("no %s entry in %lu cases: the generator lost a case",
                         st_diff_kind_name(body_kinds[k]), run);
    }
}

/* ---- targeted cases --------------------------------------------------------- */

typedef struct {
    const char *name;
    const char *rules;
    const char *a, *b;
    size_t alen, blen;  /* 0: strlen (for bodies with NUL bytes) */
    const char *expect; /* the new engine's entries as "kind path | ...", ~ for noise */
} target_t;

/* Corners a random generator rarely reaches together, each with the
 * differences it must produce (so the case demonstrably exercises its
 * corner) and the agreement of both engines. */
static void test_engines_agree_on_targeted_cases(void **state)
{
    static const target_t cases[] = {
        /* one document reads its integers as reals (a big one elsewhere): an
         * unordered array with the same bytes sorts differently on each side */
        {"integer modes differ under unordered", "{\"defaults\":{\"unordered\":[\"$.u\"]}}",
         "{\"big\":12345678901234567890123,\"u\":[123456789012345678,1.3]}",
         "{\"u\":[123456789012345678,1.3]}", 0, 0, "missing $.big | value $.u[0] | value $.u[1]"},
        {"same bytes, same modes: no difference", "{\"defaults\":{\"unordered\":[\"$.u\"]}}",
         "{\"big\":12345678901234567890123,\"u\":[123456789012345678,1.3]}",
         "{\"u\":[123456789012345678,1.3],\"big\":12345678901234567890123}", 0, 0, ""},
        {"a NUL after a number is skipped", NULL, "[1\0,2]", "[1,3]", 6, 0, "value $[1]"},
        {"a NUL after a literal is skipped", NULL, "[true\0]", "[false]", 7, 0, "value $[0]"},
        {"two NULs are invalid", NULL, "[1\0\0]", "[1]", 5, 0, "invalid_json $body"},
        {"a NUL after a string is invalid", NULL, "[\"a\"\0]", "[\"a\"]", 6, 0,
         "invalid_json $body"},
        {"duplicate keys: first place, last value", NULL, "{\"a\":1,\"b\":2,\"a\":3}",
         "{\"a\":3,\"b\":2}", 0, 0, ""},
        {"duplicate keys: the first value does not count", NULL, "{\"a\":1,\"b\":2,\"a\":3}",
         "{\"a\":1,\"b\":2}", 0, 0, "value $.a"},
        {"an escaped key is the same key", NULL, "{\"\\u0061\":1,\"b\":1}", "{\"a\":1,\"b\":2}", 0,
         0, "value $.b"},
        {"a scalar prefix is not the same token", NULL, "[12,true]", "[123,truex]", 0, 0,
         "invalid_json $body"},
        {"a longer number after the same digits", NULL, "[12]", "[12.5]", 0, 0, "value $[0]"},
        {"an exponent after the same digits", NULL, "[12,0]", "[12e1,0]", 0, 0, "value $[0]"},
        {"same double, other text", NULL, "[0.1,100]", "[0.10000000000000001,1e2]", 0, 0, ""},
        {"zeros", NULL, "[-0,-0.0,0e5]", "[0,0.0,-0e-5]", 0, 0, ""},
        /* the shadow reads 2^63 as a real: equal to int64's max as doubles */
        {"int64 edge and beyond", NULL, "[9223372036854775807,1]", "[9223372036854775808,2]", 0, 0,
         "value $[1]"},
        {"beyond int64 on one side: integers are reals there", NULL,
         "{\"x\":1,\"n\":18446744073709551616}", "{\"x\":2,\"n\":18446744073709551616.5}", 0, 0,
         "value $.x"},
        {"a big object reordered, with a duplicate", NULL,
         "{\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,\"k9\":9,"
         "\"k10\":10,\"k3\":30}",
         "{\"k10\":10,\"k9\":9,\"k8\":8,\"k7\":7,\"k6\":6,\"k5\":5,\"k4\":4,\"k3\":3,\"k2\":2,"
         "\"k1\":1,\"k11\":0}",
         0, 0, "value $.k3 | extra $.k11"},
        {"surrogate pair escapes equal the raw character", NULL, "[\"\\ud83d\\ude00\"]",
         "[\"\xf0\x9f\x98\x80\"]", 0, 0, ""},
        {"a lone surrogate is invalid", NULL, "[\"\\udc00\"]", "[\"x\"]", 0, 0,
         "invalid_json $body"},
        {"UTF-8 surrogate bytes are invalid", NULL, "[\"\xed\xa0\x80\"]", "[\"x\"]", 0, 0,
         "invalid_json $body"},
        {"too deep and invalid is too deep", "{\"max_depth\":2}", "[[[1", "[[[2", 0, 0,
         "too_deep $body"},
        {"invalid within the depth limit", "{\"max_depth\":3}", "[[[1", "[[[2", 0, 0,
         "bytes $body"},
        {"redacted below, in an entry's text", "{\"defaults\":{\"redact_paths\":[\"$..secret\"]}}",
         "{\"u\":{\"secret\":\"a\",\"n\":[{\"secret\":1}]}}", "{\"u\":[]}", 0, 0, "type $.u"},
        {"the shadow's keys reordered against the guide", NULL,
         "{\"a\":[1,2,3],\"b\":{\"x\":1},\"c\":\"s\"}",
         "{\"c\":\"s\",\"b\":{\"x\":1},\"a\":[1,2,4]}", 0, 0, "value $.a[2]"},
        {"argmax on identical-bytes siblings", "{\"defaults\":{\"argmax\":[\"$[*]\"]}}",
         "[[0.1,0.9],[0.5,0.4]]", "[[0.1,0.9],[0.4,0.5]]", 0, 0, "argmax $[1]"},
    };
    char why[8192];
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const target_t *t = &cases[i];
        case_t c;
        memset(&c, 0, sizeof(c));
        c.rules = t->rules ? xstrdup(t->rules) : NULL;
        c.endpoint = "POST /predict";
        sb_put(&c.body[0], t->a, t->alen ? t->alen : strlen(t->a));
        sb_put(&c.body[1], t->b, t->blen ? t->blen : strlen(t->b));
        sb_puts(&c.body[2], "");
        if (case_run(&c, why, sizeof(why), NULL, NULL) != 1)
            fail_msg("case '%s': the engines differ: %s", t->name, why);
        st_rules_t *rules = NULL;
        char err[256];
        if (t->rules)
            assert_int_equal(st_rules_parse(t->rules, strlen(t->rules), &rules, err, 256), 0);
        st_response_t ra, rb;
        memset(&ra, 0, sizeof(ra));
        memset(&rb, 0, sizeof(rb));
        ra.status = rb.status = 200;
        ra.body = c.body[0].p;
        ra.body_len = c.body[0].len;
        rb.body = c.body[1].p;
        rb.body_len = c.body[1].len;
        st_diff_result_t res;
        assert_int_equal(st_compare(rules, c.endpoint, &ra, &rb, NULL, &res), 0);
        char got[1024] = "";
        size_t used = 0;
        for (size_t k = 0; k < res.nentries; k++)
            used += (size_t)snprintf(got + used, sizeof(got) - used, "%s%s %s", k ? " | " : "",
                                     st_diff_kind_name(res.entries[k].kind), res.entries[k].path);
        if (strcmp(got, t->expect) != 0)
            fail_msg("case '%s': expected [%s], got [%s]", t->name, t->expect, got);
        st_diff_result_free(&res);
        st_rules_free(rules);
        case_free(&c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engines_agree_on_targeted_cases),
        cmocka_unit_test(test_engines_agree_on_generated_documents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
