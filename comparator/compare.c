/*
 * shadowtee comparator: st_compare, the top level. Compares status, headers
 * and bodies of the primary and shadow responses (and, when given, primary
 * and the noise replica first, to mark differences the stable version also
 * shows against itself), then decides the verdict.
 *
 * The result plumbing it shares with the diff (tape_diff.c, tape_text.c) is
 * in diff_result.c, below both: compare -> tape_diff -> diff_result.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tape_dump.h"

/* ---- bodies -------------------------------------------------------------- */

/* "offset 17 (length 40): "<8 bytes before>" "<24 bytes from the offset>"",
 * or only "offset 17 (length 40)" when the bytes must not be shown. */
static char *bytes_window(const char *s, size_t len, size_t off, int show)
{
    if (off > len) off = len;
    size_t from = off > 8 ? off - 8 : 0;
    size_t to = off + 24 < len ? off + 24 : len;
    char *tmp = malloc(96 + (to - from) * 4);
    if (!tmp) return NULL;
    size_t n = (size_t)sprintf(tmp, "offset %zu (length %zu)", off, len);
    if (show) {
        memcpy(tmp + n, ": \"", 3);
        n += 3;
        if (len > 0) n = stc_escape_into(tmp, n, s + from, off - from); /* s may be NULL if empty */
        memcpy(tmp + n, "\" \"", 3);
        n += 3;
        if (len > 0) n = stc_escape_into(tmp, n, s + off, to - off);
        tmp[n++] = '"';
    }
    char *d = stc_text_dup(tmp, n);
    free(tmp);
    return d;
}

void stc_bytes_diff(const char *a, size_t alen, const char *b, size_t blen, st_diff_kind_t kind,
                    int show_bytes, stc_sink_t *sink)
{
    size_t n = alen < blen ? alen : blen;
    if (alen == blen && (n == 0 || memcmp(a, b, n) == 0)) return;
    size_t off = 0;
    /* memcmp finds equal blocks fast; then the first differing byte */
    while (off + 64 <= n && memcmp(a + off, b + off, 64) == 0)
        off += 64;
    while (off < n && a[off] == b[off])
        off++;
    char *ta = NULL, *tb = NULL;
    if (stc_sink_wants(sink)) {
        ta = bytes_window(a, alen, off, show_bytes);
        tb = bytes_window(b, blen, off, show_bytes);
    }
    stc_sink_add(sink, kind, "$body", ta, tb, 0);
}

static int media_is_json(const char *v, size_t len)
{
    while (len && (*v == ' ' || *v == '\t'))
        v++, len--;
    const char *semi = memchr(v, ';', len);
    if (semi) len = (size_t)(semi - v);
    while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    const char *slash = memchr(v, '/', len);
    if (!slash) return 0;
    const char *sub = slash + 1;
    size_t sl = len - (size_t)(sub - v);
    if (sl == 4 && strncasecmp(sub, "json", 4) == 0) return 1;
    return sl > 5 && strncasecmp(sub + sl - 5, "+json", 5) == 0;
}

static int declares_json(const st_response_t *r)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        const st_header_t *h = &r->headers[i];
        if (h->name_len == 12 && strncasecmp(h->name, "content-type", 12) == 0)
            return media_is_json(h->value, h->value_len);
    }
    return 0;
}

static int sniffs_json(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n') continue;
        return s[i] == '{' || s[i] == '[';
    }
    return 0;
}

int stc_body_is_json(const st_response_t *r)
{
    return declares_json(r) || sniffs_json(r->body, r->body_len);
}

char *stc_describe_not_json(size_t len, const char *why)
{
    char tmp[STC_VALUE_MAX + 1];
    if (len == 0)
        snprintf(tmp, sizeof(tmp), "not JSON: empty body");
    else
        snprintf(tmp, sizeof(tmp), "not JSON: %s",
                 why && *why ? why : "not declared or sniffed as JSON");
    return stc_text_dup(tmp, strlen(tmp));
}

/* A body as st_compare sees it: parsed at most once, on first need, so the
 * primary's tape serves both the noise and the shadow comparison (and guides
 * their parse, see tape.h). */
typedef struct {
    const st_response_t *r;
    int try_json; /* declared or sniffed as JSON */
    int parsed;   /* stc_tape_parse ran (st and tape are set) */
    stc_parse_status_t st;
    stc_tape_t tape;
    int err_done; /* err holds jansson's message for an invalid body */
    char err[160];
} body_t;

static void body_init(body_t *b, const st_response_t *r)
{
    memset(b, 0, sizeof(*b));
    b->r = r;
    b->try_json = stc_body_is_json(r);
    b->st = STC_PARSE_INVALID;
}

/* guide: the primary's body when this is the shadow's or the noise's. */
static void body_parse(body_t *b, size_t max_depth, const body_t *guide)
{
    if (b->parsed) return;
    b->parsed = 1;
    if (b->try_json && b->r->body_len)
        b->st = stc_tape_parse(&b->tape, b->r->body, b->r->body_len, max_depth,
                               guide && guide->st == STC_PARSE_OK ? &guide->tape : NULL);
}

/* Why an invalid JSON body is not JSON, in jansson's words (as before: the
 * line, column and message of json_loadb). NULL when not tried as JSON. */
static const char *body_error(body_t *b, size_t max_depth, stc_sink_t *sink)
{
    if (!b->try_json) return NULL;
    if (!b->err_done && b->r->body_len) {
        json_t *j = NULL;
        if (stc_json_parse(b->r->body, b->r->body_len, max_depth, &j, b->err, sizeof(b->err)) ==
            STC_PARSE_NOMEM)
            sink->failed = 1;
        json_decref(j);
    }
    b->err_done = 1;
    return b->err;
}

static void body_deinit(body_t *b)
{
    stc_tape_deinit(&b->tape);
}

static stc_jv_t body_root(const body_t *b)
{
    return stc_jv_at(&b->tape, 0, b->tape.int_as_real);
}

static void diff_bodies(const stc_policy_t *pol, body_t *ba, body_t *bb, stc_sink_t *sink,
                        stc_arena_t *scratch)
{
    const st_response_t *a = ba->r, *b = bb->r;
    if (a->body_truncated || b->body_truncated) {
        char *ta = NULL, *tb = NULL;
        if (stc_sink_wants(sink)) {
            char t[64];
            snprintf(t, sizeof(t), "%s after %zu bytes",
                     a->body_truncated ? "truncated" : "complete", a->body_len);
            ta = stc_text_dup(t, strlen(t));
            snprintf(t, sizeof(t), "%s after %zu bytes",
                     b->body_truncated ? "truncated" : "complete", b->body_len);
            tb = stc_text_dup(t, strlen(t));
        }
        stc_sink_add(sink, ST_DIFF_TOO_LARGE, "$body", ta, tb, 0);
        return;
    }
    if (a->body_len == 0 && b->body_len == 0) return;
    /* identical bytes cannot differ in any way below: skip the parse */
    if (a->body_len == b->body_len && memcmp(a->body, b->body, a->body_len) == 0) return;
    /* bodies beyond a tape's 32-bit offsets (4 GiB) are compared as bytes */
    if ((!ba->try_json && !bb->try_json) || a->body_len > STC_TAPE_MAX_BODY ||
        b->body_len > STC_TAPE_MAX_BODY) {
        stc_bytes_diff(a->body, a->body_len, b->body, b->body_len, ST_DIFF_BYTES, 1, sink);
        return;
    }
    /* JSON that cannot be parsed cannot be redacted: show no bytes of it */
    int show = pol->nredact == 0;
    body_parse(ba, pol->max_depth, NULL);
    body_parse(bb, pol->max_depth, ba);
    stc_parse_status_t sa = ba->st, sb = bb->st;
    if (sa == STC_PARSE_NOMEM || sb == STC_PARSE_NOMEM) {
        sink->failed = 1;
    } else if (sa == STC_PARSE_TOO_DEEP || sb == STC_PARSE_TOO_DEEP) {
        stc_bytes_diff(a->body, a->body_len, b->body, b->body_len, ST_DIFF_TOO_DEEP, show, sink);
    } else if (sa == STC_PARSE_OK && sb == STC_PARSE_OK) {
        stc_tape_diff(pol, body_root(ba), body_root(bb), sink, scratch);
    } else if (sa == STC_PARSE_OK || sb == STC_PARSE_OK) {
        char *ta = NULL, *tb = NULL;
        if (stc_sink_wants(sink)) {
            ta = sa == STC_PARSE_OK
                     ? stc_tape_value_text(pol, body_root(ba), NULL, 0, scratch)
                     : stc_describe_not_json(a->body_len, body_error(ba, pol->max_depth, sink));
            tb = sb == STC_PARSE_OK
                     ? stc_tape_value_text(pol, body_root(bb), NULL, 0, scratch)
                     : stc_describe_not_json(b->body_len, body_error(bb, pol->max_depth, sink));
        }
        stc_sink_add(sink, ST_DIFF_INVALID_JSON, "$body", ta, tb, 0);
    } else {
        stc_bytes_diff(a->body, a->body_len, b->body, b->body_len, ST_DIFF_BYTES, show, sink);
    }
}

/* ---- headers ------------------------------------------------------------- */

/* Compared by default: everything except these (and x-shadowtee-*). */
static const char *const builtin_ignored[] = {
    "date",       "server", "x-request-id", "content-length", "transfer-encoding", "connection",
    "keep-alive", "te",     "trailer",      "upgrade",        "proxy-connection",  "age",
    "via",
};

static int name_is(const char *name, size_t len, const char *lower)
{
    return strlen(lower) == len && strncasecmp(name, lower, len) == 0;
}

static int header_ignored(const stc_policy_t *pol, const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(builtin_ignored) / sizeof(builtin_ignored[0]); i++)
        if (name_is(name, len, builtin_ignored[i])) return 1;
    if (len >= 12 && strncasecmp(name, "x-shadowtee-", 12) == 0) return 1;
    for (size_t s = 0; s < pol->nsec; s++) {
        const stc_section_t *sec = pol->sec[s];
        for (size_t i = 0; i < sec->nignore_headers; i++) {
            const char *ig = sec->ignore_headers[i];
            size_t il = strlen(ig);
            if (il > 0 && ig[il - 1] == '*') {
                if (len >= il - 1 && strncasecmp(name, ig, il - 1) == 0) return 1;
            } else if (il == len && strncasecmp(name, ig, len) == 0) {
                return 1;
            }
        }
    }
    return 0;
}

static int ci_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    for (size_t i = 0; i < n; i++) {
        int x = tolower((unsigned char)a[i]), y = tolower((unsigned char)b[i]);
        if (x != y) return x - y;
    }
    return al < bl ? -1 : al > bl;
}

static int hdr_cmp(const void *x, const void *y)
{
    const st_header_t *p = *(const st_header_t *const *)x, *q = *(const st_header_t *const *)y;
    int c = ci_cmp(p->name, p->name_len, q->name, q->name_len);
    if (c) return c;
    return p < q ? -1 : p > q; /* stable: keep the order of repeated headers */
}

static void trim(const char **v, size_t *len)
{
    while (*len && (**v == ' ' || **v == '\t'))
        (*v)++, (*len)--;
    while (*len && ((*v)[*len - 1] == ' ' || (*v)[*len - 1] == '\t'))
        (*len)--;
}

/* Values of one header name (repeated headers joined by ", ") for a/b. */
static char *header_text(const stc_policy_t *pol, const st_header_t *const *h, size_t n)
{
    if (n == 0) return NULL;
    if (name_is(h[0]->name, h[0]->name_len, "set-cookie")) return stc_text_dup("[present]", 9);
    if (st_policy_redact_header(pol, h[0]->name, h[0]->name_len))
        return stc_text_dup("[REDACTED]", 10);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += h[i]->value_len + 2;
    char *tmp = malloc(total + 1), *out;
    if (!tmp) return NULL;
    size_t used = 0;
    for (size_t i = 0; i < n && used <= STC_VALUE_MAX; i++) {
        const char *v = h[i]->value;
        size_t vl = h[i]->value_len;
        trim(&v, &vl);
        if (i) tmp[used++] = ',', tmp[used++] = ' ';
        memcpy(tmp + used, v, vl);
        used += vl;
    }
    out = stc_escape_bytes(tmp, used);
    free(tmp);
    return out;
}

static int same_values(const st_header_t *const *a, size_t na, const st_header_t *const *b,
                       size_t nb)
{
    if (name_is(a[0]->name, a[0]->name_len, "set-cookie")) return 1; /* presence only */
    if (na != nb) return 0;
    for (size_t i = 0; i < na; i++) {
        const char *x = a[i]->value, *y = b[i]->value;
        size_t xl = a[i]->value_len, yl = b[i]->value_len;
        trim(&x, &xl);
        trim(&y, &yl);
        if (xl != yl || memcmp(x, y, xl) != 0) return 0;
    }
    return 1;
}

/* Collects the compared headers of r, sorted by name. *out is `stack` when
 * it fits, else malloc'ed. Returns the count, or (size_t)-1 on failure. */
static size_t sorted_headers(const stc_policy_t *pol, const st_response_t *r,
                             const st_header_t **stack, size_t stack_n, const st_header_t ***out)
{
    const st_header_t **v = stack;
    if (r->nheaders > stack_n) {
        v = malloc(r->nheaders * sizeof(*v));
        if (!v) return (size_t)-1;
    }
    size_t n = 0;
    for (size_t i = 0; i < r->nheaders; i++)
        if (!header_ignored(pol, r->headers[i].name, r->headers[i].name_len))
            v[n++] = &r->headers[i];
    qsort(v, n, sizeof(*v), hdr_cmp);
    *out = v;
    return n;
}

static size_t group_end(const st_header_t *const *v, size_t n, size_t i)
{
    size_t j = i + 1;
    while (j < n && ci_cmp(v[i]->name, v[i]->name_len, v[j]->name, v[j]->name_len) == 0)
        j++;
    return j;
}

static void header_entry(const stc_policy_t *pol, const st_header_t *const *a, size_t na,
                         const st_header_t *const *b, size_t nb, stc_sink_t *sink)
{
    const st_header_t *h = na ? a[0] : b[0];
    char path[STC_PATH_MAX];
    size_t n = h->name_len < sizeof(path) - 8 ? h->name_len : sizeof(path) - 8;
    memcpy(path, "header:", 7);
    for (size_t i = 0; i < n; i++)
        path[7 + i] = (char)tolower((unsigned char)h->name[i]);
    path[7 + n] = '\0';
    char *ta = NULL, *tb = NULL;
    if (stc_sink_wants(sink)) {
        ta = header_text(pol, a, na);
        tb = header_text(pol, b, nb);
    }
    stc_sink_add(sink, ST_DIFF_HEADER, path, ta, tb, 0);
}

static void diff_headers(const stc_policy_t *pol, const st_response_t *a, const st_response_t *b,
                         stc_sink_t *sink)
{
    const st_header_t *sa[32], *sb[32], **va = NULL, **vb = NULL;
    size_t na = sorted_headers(pol, a, sa, 32, &va);
    size_t nb = na == (size_t)-1 ? (size_t)-1 : sorted_headers(pol, b, sb, 32, &vb);
    if (na == (size_t)-1 || nb == (size_t)-1) {
        sink->failed = 1;
        goto out;
    }
    size_t i = 0, j = 0;
    while (i < na || j < nb) {
        int c = i >= na   ? 1
                : j >= nb ? -1
                          : ci_cmp(va[i]->name, va[i]->name_len, vb[j]->name, vb[j]->name_len);
        size_t ie = c <= 0 ? group_end(va, na, i) : i;
        size_t je = c >= 0 ? group_end(vb, nb, j) : j;
        if (c != 0 || !same_values(va + i, ie - i, vb + j, je - j))
            header_entry(pol, va + i, ie - i, vb + j, je - j, sink);
        i = ie;
        j = je;
    }
out:
    if (va && va != sa) free(va);
    if (vb && vb != sb) free(vb);
}

/* ---- st_compare ---------------------------------------------------------- */

void stc_compare_head(const stc_policy_t *pol, const st_response_t *a, const st_response_t *b,
                      stc_sink_t *sink)
{
    if (a->status != b->status) {
        char *ta = NULL, *tb = NULL;
        if (stc_sink_wants(sink)) {
            char t[32];
            snprintf(t, sizeof(t), "%d", a->status);
            ta = stc_text_dup(t, strlen(t));
            snprintf(t, sizeof(t), "%d", b->status);
            tb = stc_text_dup(t, strlen(t));
        }
        stc_sink_add(sink, ST_DIFF_STATUS, "status", ta, tb, 0);
    }
    diff_headers(pol, a, b, sink);
}

static void compare_pair(const stc_policy_t *pol, body_t *a, body_t *b, stc_sink_t *sink,
                         stc_arena_t *scratch)
{
    stc_compare_head(pol, a->r, b->r, sink);
    diff_bodies(pol, a, b, sink, scratch);
}

static int usable(const st_response_t *r)
{
    return r && !r->error && r->status != 0;
}

int st_compare(const st_rules_t *rules, const char *endpoint, const st_response_t *primary,
               const st_response_t *shadow, const st_response_t *noise, st_diff_result_t *result)
{
    stc_policy_t pol;
    st_policy_resolve(rules, endpoint, &pol);
    return st_compare_policy(&pol, primary, shadow, noise, result);
}

int st_compare_policy(const stc_policy_t *pol, const st_response_t *primary,
                      const st_response_t *shadow, const st_response_t *noise,
                      st_diff_result_t *result)
{
    return st_compare_policy_keep(pol, primary, shadow, noise, result, NULL);
}

void st_cmp_bodies_free(st_cmp_bodies_t *bodies)
{
    if (!bodies) return;
    stc_tape_deinit(&bodies->tape[1]);
    stc_tape_deinit(&bodies->tape[0]);
    stc_mem_free(bodies);
}

/* Moves the primary's and shadow's tapes into a new st_cmp_bodies_t (the
 * bodies then own nothing), or leaves them when it cannot be allocated. */
static st_cmp_bodies_t *keep_bodies(const stc_policy_t *pol, body_t *bp, body_t *bs)
{
    int okp = bp->parsed && bp->st == STC_PARSE_OK, oks = bs->parsed && bs->st == STC_PARSE_OK;
    if (!okp && !oks) return NULL;
    st_cmp_bodies_t *k = stc_mem_alloc(sizeof(*k));
    if (!k) return NULL; /* the sample is redacted by a parse of its own */
    memset(k, 0, sizeof(*k));
    k->max_depth = pol->max_depth;
    k->tape[0] = bp->tape;
    k->tape[1] = bs->tape;
    k->ok[0] = okp;
    k->ok[1] = oks;
    if (k->tape[1].guide == &bp->tape) k->tape[1].guide = &k->tape[0];
    memset(&bp->tape, 0, sizeof(bp->tape));
    memset(&bs->tape, 0, sizeof(bs->tape));
    return k;
}

int st_compare_policy_keep(const stc_policy_t *pol, const st_response_t *primary,
                           const st_response_t *shadow, const st_response_t *noise,
                           st_diff_result_t *result, st_cmp_bodies_t **bodies)
{
    if (bodies) *bodies = NULL;
    memset(result, 0, sizeof(*result));
    if (!usable(primary) || !usable(shadow)) {
        result->verdict = ST_VERDICT_ERROR;
        return 0;
    }

    stc_arena_t scratch; /* this comparison's scratch memory, freed at once */
    stc_arena_init(&scratch);
    body_t bp, bs, bn;
    body_init(&bp, primary);
    body_init(&bs, shadow);
    stc_sink_t ns, s;
    stc_sink_init(&ns, STC_NOISE_PATHS_MAX, 1);
    stc_sink_init(&s, STC_ENTRIES_MAX, 0);
    if (usable(noise)) {
        body_init(&bn, noise);
        compare_pair(pol, &bp, &bn, &ns, &scratch);
        body_deinit(&bn);
        s.noise = ns.entries;
        s.nnoise = ns.nentries;
        result->noise_compared = 1;
        result->noise_total = ns.total;
    }
    compare_pair(pol, &bp, &bs, &s, &scratch);
    stc_arena_deinit(&scratch);
    int failed = s.failed || ns.failed;
    stc_sink_deinit(&ns);

    stc_sink_result(&s, result);
    /* a divergent pair's sample is redacted from these tapes (only the
     * redaction by paths parses a body); the tapes own their nodes and keys,
     * not the arena, so they outlive it */
    if (bodies && !failed && result->verdict == ST_VERDICT_DIVERGED && pol->nredact > 0)
        *bodies = keep_bodies(pol, &bp, &bs);
    body_deinit(&bp);
    body_deinit(&bs);
    return failed ? -1 : 0;
}
