/*
 * shadowtee comparator: the rules file (docs/RULES.md). Parses and validates
 * the JSON text into an immutable st_rules_t, and resolves the settings that
 * apply to one endpoint key (its "endpoints" entry over the "defaults").
 *
 * Validation is strict: an unknown key, a wrong type or a bad JSONPath fails
 * with one message naming the file and the JSON path of the bad value, e.g.
 *   rules.json: $.endpoints[2].ignore[0]: invalid JSONPath "a.b": a path must start with '$'
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmp_internal.h"

typedef struct {
    char *text;   /* "POST /predict" as written */
    char *method; /* upper-cased, or "*" */
    char **segs;  /* path segments after the leading '/' */
    size_t nsegs;
    int tail_any; /* last segment was "*": matches any rest */
    stc_section_t sec;
} endpoint_rule_t;

struct st_rules {
    stc_section_t defaults;
    endpoint_rule_t *endpoints;
    size_t nendpoints;
    char **templates;
    size_t ntemplates;
    size_t max_depth;
    char **redact_headers; /* union of every section's, lower-cased, unique */
    size_t nredact_headers;
    const stc_pattern_t **redact_paths; /* union, borrowed from the sections */
    size_t nredact_paths;
};

/* ---- freeing ---------------------------------------------------------- */

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void free_patterns(stc_pattern_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        stc_pattern_deinit(&p[i]);
    free(p);
}

static void section_deinit(stc_section_t *s)
{
    free_patterns(s->ignore, s->nignore);
    free_strv(s->ignore_headers, s->nignore_headers);
    free_patterns(s->unordered, s->nunordered);
    for (size_t i = 0; i < s->ntopk; i++)
        stc_pattern_deinit(&s->topk[i].pat);
    free(s->topk);
    for (size_t i = 0; i < s->npath_tol; i++)
        stc_pattern_deinit(&s->path_tol[i].pat);
    free(s->path_tol);
    free_strv(s->redact_headers, s->nredact_headers);
    free_patterns(s->redact_paths, s->nredact_paths);
    memset(s, 0, sizeof(*s));
}

void st_rules_free(st_rules_t *r)
{
    if (!r) return;
    section_deinit(&r->defaults);
    for (size_t i = 0; i < r->nendpoints; i++) {
        endpoint_rule_t *e = &r->endpoints[i];
        free(e->text);
        free(e->method);
        free_strv(e->segs, e->nsegs);
        section_deinit(&e->sec);
    }
    free(r->endpoints);
    free_strv(r->templates, r->ntemplates);
    free_strv(r->redact_headers, r->nredact_headers);
    free(r->redact_paths);
    free(r);
}

st_rules_t *st_rules_default(void)
{
    st_rules_t *r = calloc(1, sizeof(*r));
    if (r) r->max_depth = STC_MAX_DEPTH_DEFAULT;
    return r;
}

/* ---- validation context ------------------------------------------------ */

typedef struct {
    const char *file; /* name used in messages */
    char *err;
    size_t errlen;
} pctx_t;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
fail(pctx_t *c, const char *jpath, const char *fmt, ...)
{
    if (!c->err || c->errlen == 0) return -1;
    int n = snprintf(c->err, c->errlen, "%s: %s: ", c->file, jpath);
    if (n >= 0 && (size_t)n < c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

/* Child JSONPath texts for messages. */
static void jp_key(char *out, size_t outlen, const char *parent, const char *key, size_t keylen)
{
    size_t used = (size_t)snprintf(out, outlen, "%s", parent);
    if (used < outlen) stc_path_append_key(out, outlen, used, key, keylen);
}

static void jp_index(char *out, size_t outlen, const char *parent, size_t i)
{
    snprintf(out, outlen, "%s[%zu]", parent, i);
}

#define JP_MAX 512

/* ---- field parsers ----------------------------------------------------- */

static int parse_pattern(pctx_t *c, const char *jpath, const char *text, size_t len,
                         stc_pattern_t *out)
{
    const char *why = NULL;
    if (stc_pattern_compile(text, len, out, &why) < 0)
        return fail(c, jpath, "invalid JSONPath \"%.*s\": %s", (int)(len > 200 ? 200 : len), text,
                    why);
    return 0;
}

/* "ignore", "unordered", "argmax", "redact_paths": an array of JSONPaths. */
static int parse_pattern_array(pctx_t *c, const char *jpath, const json_t *v, stc_pattern_t **out,
                               size_t *n)
{
    if (!json_is_array(v))
        return fail(c, jpath, "expected an array of JSONPath strings, got %s", type_name(v));
    size_t cnt = json_array_size(v);
    *out = calloc(cnt ? cnt : 1, sizeof(stc_pattern_t));
    if (!*out) return fail(c, jpath, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        const json_t *e = json_array_get(v, i);
        char jp[JP_MAX];
        jp_index(jp, sizeof(jp), jpath, i);
        if (!json_is_string(e))
            return fail(c, jp, "expected a JSONPath string, got %s", type_name(e));
        if (parse_pattern(c, jp, json_string_value(e), json_string_length(e), &(*out)[i]) < 0)
            return -1;
        (*n)++;
    }
    return 0;
}

static int is_token_char(unsigned char ch)
{
    return isalnum(ch) || strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* "ignore_headers", "redact_headers": header names, stored lower-cased.
 * With allow_prefix, a trailing '*' makes the name a prefix ("x-debug-*"). */
static int parse_header_array(pctx_t *c, const char *jpath, const json_t *v, int allow_prefix,
                              char ***out, size_t *n)
{
    if (!json_is_array(v))
        return fail(c, jpath, "expected an array of header names, got %s", type_name(v));
    size_t cnt = json_array_size(v);
    *out = calloc(cnt ? cnt : 1, sizeof(char *));
    if (!*out) return fail(c, jpath, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        const json_t *e = json_array_get(v, i);
        char jp[JP_MAX];
        jp_index(jp, sizeof(jp), jpath, i);
        if (!json_is_string(e))
            return fail(c, jp, "expected a header name string, got %s", type_name(e));
        const char *s = json_string_value(e);
        size_t len = json_string_length(e);
        size_t body = (allow_prefix && len > 0 && s[len - 1] == '*') ? len - 1 : len;
        if (body == 0) return fail(c, jp, "empty header name");
        for (size_t k = 0; k < body; k++)
            if (!is_token_char((unsigned char)s[k]) || s[k] == '*')
                return fail(c, jp, "invalid header name \"%.*s\"%s", (int)(len > 100 ? 100 : len),
                            s, allow_prefix ? " (only a trailing '*' is allowed)" : "");
        char *d = malloc(len + 1);
        if (!d) return fail(c, jp, "out of memory");
        for (size_t k = 0; k < len; k++)
            d[k] = (char)tolower((unsigned char)s[k]);
        d[len] = '\0';
        (*out)[(*n)++] = d;
    }
    return 0;
}

static int parse_nonneg(pctx_t *c, const char *jpath, const json_t *v, double *out)
{
    if (!json_is_number(v)) return fail(c, jpath, "expected a number, got %s", type_name(v));
    double d = json_number_value(v);
    if (!isfinite(d) || d < 0) return fail(c, jpath, "expected a number >= 0");
    *out = d;
    return 0;
}

/* {"absolute": 1e-6, "relative": 1e-4}, both optional. */
static int parse_tol(pctx_t *c, const char *jpath, const json_t *v, stc_tol_t *t)
{
    if (!json_is_object(v))
        return fail(c, jpath, "expected an object {\"absolute\":N,\"relative\":N}, got %s",
                    type_name(v));
    for (void *it = json_object_iter((json_t *)v); it;
         it = json_object_iter_next((json_t *)v, it)) {
        const char *k = json_object_iter_key(it);
        size_t kl = json_object_iter_key_len(it);
        json_t *e = json_object_iter_value(it);
        char jp[JP_MAX];
        jp_key(jp, sizeof(jp), jpath, k, kl);
        if (strcmp(k, "absolute") == 0) {
            if (parse_nonneg(c, jp, e, &t->absolute) < 0) return -1;
            t->has_absolute = 1;
        } else if (strcmp(k, "relative") == 0) {
            if (parse_nonneg(c, jp, e, &t->relative) < 0) return -1;
            t->has_relative = 1;
        } else {
            return fail(c, jp, "unknown key (expected \"absolute\" or \"relative\")");
        }
    }
    return 0;
}

/* "topk": {"<path>": k}. */
static int parse_topk(pctx_t *c, const char *jpath, const json_t *v, stc_section_t *s)
{
    if (!json_is_object(v))
        return fail(c, jpath, "expected an object {\"<JSONPath>\": k}, got %s", type_name(v));
    size_t cnt = json_object_size(v) + s->ntopk;
    stc_topk_t *nt = realloc(s->topk, (cnt ? cnt : 1) * sizeof(*nt));
    if (!nt) return fail(c, jpath, "out of memory");
    s->topk = nt;
    for (void *it = json_object_iter((json_t *)v); it;
         it = json_object_iter_next((json_t *)v, it)) {
        const char *k = json_object_iter_key(it);
        size_t kl = json_object_iter_key_len(it);
        json_t *e = json_object_iter_value(it);
        char jp[JP_MAX];
        jp_key(jp, sizeof(jp), jpath, k, kl);
        if (!json_is_integer(e) || json_integer_value(e) < 1 || json_integer_value(e) > 1000000)
            return fail(c, jp, "expected an integer k between 1 and 1000000");
        stc_topk_t *t = &s->topk[s->ntopk];
        memset(t, 0, sizeof(*t));
        if (parse_pattern(c, jp, k, kl, &t->pat) < 0) return -1;
        t->k = (size_t)json_integer_value(e);
        s->ntopk++;
    }
    return 0;
}

/* "argmax": ["<path>", ...], stored as top-k with k = 1. */
static int parse_argmax(pctx_t *c, const char *jpath, const json_t *v, stc_section_t *s)
{
    stc_pattern_t *pats = NULL;
    size_t n = 0;
    int rc = parse_pattern_array(c, jpath, v, &pats, &n);
    if (rc == 0) {
        stc_topk_t *nt = realloc(s->topk, (s->ntopk + n + 1) * sizeof(*nt));
        if (!nt) {
            rc = fail(c, jpath, "out of memory");
        } else {
            s->topk = nt;
            for (size_t i = 0; i < n; i++) {
                s->topk[s->ntopk].pat = pats[i];
                s->topk[s->ntopk].k = 1;
                s->ntopk++;
            }
            free(pats);
            return 0;
        }
    }
    free_patterns(pats, n);
    return rc;
}

/* "path_tolerance": {"<path>": {"absolute": N, "relative": N}}. */
static int parse_path_tol(pctx_t *c, const char *jpath, const json_t *v, stc_section_t *s)
{
    if (!json_is_object(v))
        return fail(c, jpath, "expected an object {\"<JSONPath>\": {tolerance}}, got %s",
                    type_name(v));
    size_t cnt = json_object_size(v);
    s->path_tol = calloc(cnt ? cnt : 1, sizeof(*s->path_tol));
    if (!s->path_tol) return fail(c, jpath, "out of memory");
    for (void *it = json_object_iter((json_t *)v); it;
         it = json_object_iter_next((json_t *)v, it)) {
        const char *k = json_object_iter_key(it);
        size_t kl = json_object_iter_key_len(it);
        char jp[JP_MAX];
        jp_key(jp, sizeof(jp), jpath, k, kl);
        stc_path_tol_t *pt = &s->path_tol[s->npath_tol];
        if (parse_pattern(c, jp, k, kl, &pt->pat) < 0) return -1;
        s->npath_tol++;
        if (parse_tol(c, jp, json_object_iter_value(it), &pt->tol) < 0) return -1;
    }
    return 0;
}

static const char *const section_keys =
    "tolerance, ignore, ignore_headers, unordered, argmax, topk, path_tolerance, "
    "redact_headers, redact_paths";

/* One "defaults" object or "endpoints" entry (whose "match" the caller
 * handles). A key may appear only once (the parser rejects duplicates). */
static int parse_section(pctx_t *c, const char *jpath, const json_t *v, stc_section_t *s,
                         int is_endpoint)
{
    if (!json_is_object(v)) return fail(c, jpath, "expected an object, got %s", type_name(v));
    for (void *it = json_object_iter((json_t *)v); it;
         it = json_object_iter_next((json_t *)v, it)) {
        const char *k = json_object_iter_key(it);
        size_t kl = json_object_iter_key_len(it);
        json_t *e = json_object_iter_value(it);
        char jp[JP_MAX];
        jp_key(jp, sizeof(jp), jpath, k, kl);
        int rc;
        if (strcmp(k, "tolerance") == 0)
            rc = parse_tol(c, jp, e, &s->tol);
        else if (strcmp(k, "ignore") == 0)
            rc = parse_pattern_array(c, jp, e, &s->ignore, &s->nignore);
        else if (strcmp(k, "ignore_headers") == 0)
            rc = parse_header_array(c, jp, e, 1, &s->ignore_headers, &s->nignore_headers);
        else if (strcmp(k, "unordered") == 0)
            rc = parse_pattern_array(c, jp, e, &s->unordered, &s->nunordered);
        else if (strcmp(k, "argmax") == 0)
            rc = parse_argmax(c, jp, e, s);
        else if (strcmp(k, "topk") == 0)
            rc = parse_topk(c, jp, e, s);
        else if (strcmp(k, "path_tolerance") == 0)
            rc = parse_path_tol(c, jp, e, s);
        else if (strcmp(k, "redact_headers") == 0)
            rc = parse_header_array(c, jp, e, 0, &s->redact_headers, &s->nredact_headers);
        else if (strcmp(k, "redact_paths") == 0)
            rc = parse_pattern_array(c, jp, e, &s->redact_paths, &s->nredact_paths);
        else if (is_endpoint && strcmp(k, "match") == 0)
            rc = 0;
        else
            rc = fail(c, jp, "unknown key (expected one of: %s%s)", is_endpoint ? "match, " : "",
                      section_keys);
        if (rc < 0) return -1;
    }
    return 0;
}

/* ---- endpoints and templates -------------------------------------------- */

/* Splits "/a/b/c" (after the leading '/') into malloc'ed segments. */
static int split_segments(const char *path, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    const char *p = path + 1;
    size_t cnt = 1;
    for (const char *q = p; *q; q++)
        cnt += *q == '/';
    char **v = calloc(cnt, sizeof(char *));
    if (!v) return -1;
    for (size_t i = 0; i < cnt; i++) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        v[i] = strndup(p, len);
        if (!v[i]) {
            free_strv(v, i);
            return -1;
        }
        p += len + (end ? 1 : 0);
    }
    *out = v;
    *n = cnt;
    return 0;
}

static int is_brace_segment(const char *s)
{
    size_t n = strlen(s);
    return n >= 2 && s[0] == '{' && s[n - 1] == '}';
}

/* Checks a path template or match path: starts with '/', no query or
 * fragment, braces only as whole segments. */
static int check_path_template(pctx_t *c, const char *jp, const char *s, size_t len, int allow_tail)
{
    if (len == 0 || s[0] != '/') return fail(c, jp, "expected a path starting with '/'");
    if (memchr(s, '\0', len)) return fail(c, jp, "NUL byte in path");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '?' || ch == '#' || ch <= ' ' || ch == 0x7f)
            return fail(c, jp, "a path template has no query, fragment, space or control byte");
    }
    const char *seg = s + 1;
    while (1) {
        const char *end = strchr(seg, '/');
        size_t sl = end ? (size_t)(end - seg) : strlen(seg);
        const char *ob = memchr(seg, '{', sl), *cb = memchr(seg, '}', sl);
        if ((ob || cb) && !(sl >= 2 && seg[0] == '{' && seg[sl - 1] == '}' &&
                            !memchr(seg + 1, '{', sl - 2) && !memchr(seg + 1, '}', sl - 2)))
            return fail(c, jp, "a {placeholder} must be a whole path segment");
        if (sl == 1 && seg[0] == '*' && (!allow_tail || end))
            return fail(c, jp, "'*' is only allowed as the last segment of a match path");
        if (!end) break;
        seg = end + 1;
    }
    return 0;
}

/* "match": "[METHOD ]/path" where METHOD may be "*" and the path may use
 * {placeholders} (any one segment) and a final "*" (any rest). */
static int parse_match(pctx_t *c, const char *jp, const json_t *v, endpoint_rule_t *e)
{
    if (!v) return fail(c, jp, "missing \"match\" (e.g. \"POST /v1/models/{id}/predict\")");
    char jpm[JP_MAX];
    jp_key(jpm, sizeof(jpm), jp, "match", 5);
    if (!json_is_string(v)) return fail(c, jpm, "expected a string, got %s", type_name(v));
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    const char *sp = memchr(s, ' ', len);
    const char *path = sp ? sp + 1 : s;
    size_t mlen = sp ? (size_t)(sp - s) : 0;
    if (sp) {
        if (mlen == 0) return fail(c, jpm, "empty method before the path");
        for (size_t i = 0; i < mlen; i++)
            if (!(mlen == 1 && s[0] == '*') && !is_token_char((unsigned char)s[i]))
                return fail(c, jpm, "invalid method \"%.*s\"", (int)(mlen > 50 ? 50 : mlen), s);
    }
    if (check_path_template(c, jpm, path, len - (size_t)(path - s), 1) < 0) return -1;
    e->text = strndup(s, len);
    e->method = sp ? strndup(s, mlen) : strdup("*");
    if (!e->text || !e->method) return fail(c, jpm, "out of memory");
    for (char *m = e->method; *m; m++)
        *m = (char)toupper((unsigned char)*m);
    if (split_segments(path, &e->segs, &e->nsegs) < 0) return fail(c, jpm, "out of memory");
    if (e->nsegs > 0 && strcmp(e->segs[e->nsegs - 1], "*") == 0) {
        e->tail_any = 1;
        free(e->segs[--e->nsegs]);
    }
    return 0;
}

static int parse_endpoints(pctx_t *c, const json_t *v, st_rules_t *r)
{
    const char *jpath = "$.endpoints";
    if (!json_is_array(v))
        return fail(c, jpath, "expected an array of objects, got %s", type_name(v));
    size_t cnt = json_array_size(v);
    r->endpoints = calloc(cnt ? cnt : 1, sizeof(endpoint_rule_t));
    if (!r->endpoints) return fail(c, jpath, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        const json_t *e = json_array_get(v, i);
        char jp[JP_MAX];
        jp_index(jp, sizeof(jp), jpath, i);
        endpoint_rule_t *er = &r->endpoints[r->nendpoints++];
        if (!json_is_object(e)) return fail(c, jp, "expected an object, got %s", type_name(e));
        if (parse_match(c, jp, json_object_get(e, "match"), er) < 0) return -1;
        if (parse_section(c, jp, e, &er->sec, 1) < 0) return -1;
    }
    return 0;
}

static int parse_templates(pctx_t *c, const json_t *v, st_rules_t *r)
{
    const char *jpath = "$.templates";
    if (!json_is_array(v))
        return fail(c, jpath, "expected an array of path templates, got %s", type_name(v));
    size_t cnt = json_array_size(v);
    r->templates = calloc(cnt ? cnt : 1, sizeof(char *));
    if (!r->templates) return fail(c, jpath, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        const json_t *e = json_array_get(v, i);
        char jp[JP_MAX];
        jp_index(jp, sizeof(jp), jpath, i);
        if (!json_is_string(e)) return fail(c, jp, "expected a string, got %s", type_name(e));
        if (check_path_template(c, jp, json_string_value(e), json_string_length(e), 0) < 0)
            return -1;
        r->templates[i] = strdup(json_string_value(e));
        if (!r->templates[i]) return fail(c, jp, "out of memory");
        r->ntemplates++;
    }
    return 0;
}

/* ---- redaction union ---------------------------------------------------- */

static int add_redactions(st_rules_t *r, const stc_section_t *s)
{
    if (s->nredact_headers) {
        char **nv =
            realloc(r->redact_headers, (r->nredact_headers + s->nredact_headers) * sizeof(char *));
        if (!nv) return -1;
        r->redact_headers = nv;
        for (size_t i = 0; i < s->nredact_headers; i++) {
            int dup = 0;
            for (size_t k = 0; k < r->nredact_headers && !dup; k++)
                dup = strcmp(r->redact_headers[k], s->redact_headers[i]) == 0;
            if (dup) continue;
            r->redact_headers[r->nredact_headers] = strdup(s->redact_headers[i]);
            if (!r->redact_headers[r->nredact_headers]) return -1;
            r->nredact_headers++;
        }
    }
    if (s->nredact_paths) {
        const stc_pattern_t **nv =
            realloc(r->redact_paths, (r->nredact_paths + s->nredact_paths) * sizeof(*nv));
        if (!nv) return -1;
        r->redact_paths = nv;
        for (size_t i = 0; i < s->nredact_paths; i++)
            r->redact_paths[r->nredact_paths++] = &s->redact_paths[i];
    }
    return 0;
}

/* ---- root --------------------------------------------------------------- */

static int parse_root(pctx_t *c, const json_t *root, st_rules_t *r)
{
    if (!json_is_object(root)) return fail(c, "$", "expected an object, got %s", type_name(root));
    for (void *it = json_object_iter((json_t *)root); it;
         it = json_object_iter_next((json_t *)root, it)) {
        const char *k = json_object_iter_key(it);
        size_t kl = json_object_iter_key_len(it);
        json_t *e = json_object_iter_value(it);
        char jp[JP_MAX];
        jp_key(jp, sizeof(jp), "$", k, kl);
        int rc;
        if (strcmp(k, "version") == 0) {
            rc = (json_is_integer(e) && json_integer_value(e) == 1)
                     ? 0
                     : fail(c, jp, "unsupported version (expected the integer 1)");
        } else if (strcmp(k, "defaults") == 0) {
            rc = parse_section(c, jp, e, &r->defaults, 0);
        } else if (strcmp(k, "endpoints") == 0) {
            rc = parse_endpoints(c, e, r);
        } else if (strcmp(k, "templates") == 0) {
            rc = parse_templates(c, e, r);
        } else if (strcmp(k, "max_depth") == 0) {
            if (!json_is_integer(e) || json_integer_value(e) < 1 ||
                json_integer_value(e) > STC_MAX_DEPTH_HARD)
                rc = fail(c, jp, "expected an integer between 1 and %d", STC_MAX_DEPTH_HARD);
            else
                r->max_depth = (size_t)json_integer_value(e), rc = 0;
        } else {
            rc = fail(c, jp,
                      "unknown key (expected one of: version, defaults, endpoints, templates, "
                      "max_depth)");
        }
        if (rc < 0) return -1;
    }
    if (add_redactions(r, &r->defaults) < 0) return fail(c, "$", "out of memory");
    for (size_t i = 0; i < r->nendpoints; i++)
        if (add_redactions(r, &r->endpoints[i].sec) < 0) return fail(c, "$", "out of memory");
    return 0;
}

#define RULES_FLAGS JSON_REJECT_DUPLICATES

static int finish(pctx_t *c, json_t *root, const json_error_t *jerr, st_rules_t **out)
{
    *out = NULL;
    if (!root) {
        if (!c->err || c->errlen == 0) return -1;
        if (jerr->line > 0)
            snprintf(c->err, c->errlen, "%s:%d:%d: invalid JSON: %s", c->file, jerr->line,
                     jerr->column, jerr->text);
        else
            snprintf(c->err, c->errlen, "%s: %s", c->file, jerr->text);
        return -1;
    }
    st_rules_t *r = st_rules_default();
    if (!r) {
        json_decref(root);
        return fail(c, "$", "out of memory");
    }
    int rc = parse_root(c, root, r);
    json_decref(root);
    if (rc < 0) {
        st_rules_free(r);
        return -1;
    }
    *out = r;
    return 0;
}

int st_rules_parse(const char *json, size_t len, st_rules_t **out, char *err, size_t errlen)
{
    pctx_t c = {"rules", err, errlen};
    json_error_t jerr;
    json_t *root = json_loadb(json, len, RULES_FLAGS, &jerr);
    return finish(&c, root, &jerr, out);
}

int st_rules_load(const char *path, st_rules_t **out, char *err, size_t errlen)
{
    pctx_t c = {path, err, errlen};
    json_error_t jerr;
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (err && errlen) snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    json_t *root = json_loadf(f, RULES_FLAGS, &jerr);
    fclose(f);
    return finish(&c, root, &jerr, out);
}

/* ---- lookups ------------------------------------------------------------ */

size_t st_rules_redact_headers(const st_rules_t *rules, const char *const **names)
{
    *names = rules ? (const char *const *)rules->redact_headers : NULL;
    return rules ? rules->nredact_headers : 0;
}

size_t stc_rules_templates(const st_rules_t *rules, const char *const **out)
{
    *out = rules ? (const char *const *)rules->templates : NULL;
    return rules ? rules->ntemplates : 0;
}

void stc_rules_redact_paths(const st_rules_t *rules, const stc_pattern_t *const **out, size_t *n)
{
    *out = rules ? rules->redact_paths : NULL;
    *n = rules ? rules->nredact_paths : 0;
}

size_t stc_rules_max_depth(const st_rules_t *rules)
{
    return rules ? rules->max_depth : STC_MAX_DEPTH_DEFAULT;
}

/* Matches an endpoint key "METHOD /a/b" against a rule. */
static int endpoint_matches(const endpoint_rule_t *e, const char *key)
{
    const char *sp = strchr(key, ' ');
    if (!sp) return 0;
    size_t mlen = (size_t)(sp - key);
    if (strcmp(e->method, "*") != 0 &&
        (strlen(e->method) != mlen || strncasecmp(e->method, key, mlen) != 0))
        return 0;
    const char *p = sp + 1;
    if (*p != '/') return 0;
    p++;
    for (size_t i = 0; i < e->nsegs; i++) {
        if (!p) return 0;
        const char *end = strchr(p, '/');
        size_t sl = end ? (size_t)(end - p) : strlen(p);
        const char *rs = e->segs[i];
        if (is_brace_segment(rs) ? sl == 0 : (strlen(rs) != sl || memcmp(rs, p, sl) != 0)) return 0;
        p = end ? end + 1 : NULL;
    }
    return p == NULL || e->tail_any;
}

static void apply_tol(stc_tol_t *dst, const stc_tol_t *src)
{
    if (src->has_absolute) dst->absolute = src->absolute;
    if (src->has_relative) dst->relative = src->relative;
}

void st_policy_resolve(const st_rules_t *rules, const char *endpoint, st_policy_t *out)
{
    memset(out, 0, sizeof(*out));
    out->tol.has_absolute = out->tol.has_relative = 1;
    out->max_depth = stc_rules_max_depth(rules);
    if (!rules) return;
    const endpoint_rule_t *hit = NULL;
    for (size_t i = 0; endpoint && i < rules->nendpoints && !hit; i++)
        if (endpoint_matches(&rules->endpoints[i], endpoint)) hit = &rules->endpoints[i];
    apply_tol(&out->tol, &rules->defaults.tol);
    if (hit) {
        apply_tol(&out->tol, &hit->sec.tol);
        out->sec[out->nsec++] = &hit->sec;
    }
    out->sec[out->nsec++] = &rules->defaults;
    out->redact = rules->redact_paths;
    out->nredact = rules->nredact_paths;
    out->redact_headers = (const char *const *)rules->redact_headers;
    out->nredact_headers = rules->nredact_headers;
}
