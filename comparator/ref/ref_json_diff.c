/*
 * shadowtee comparator, reference engine: the structural diff of two jansson
 * trees as st_compare ran it before the tape engine (comparator/tape_*.c).
 * Kept unchanged, only renamed (ref_ prefix), as the oracle of the
 * differential test (tests/unit/test_engine_equiv.c) and the baseline of
 * bench/cmp_bench; never linked into shadowtee.
 *
 * The walk keeps the current path as a stack of borrowed segments (keys point
 * into the jansson trees) and formats a JSONPath text only when a difference
 * is recorded.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

/* ---- value text --------------------------------------------------------- */

typedef struct {
    char buf[STC_VALUE_MAX + 1];
    size_t used;
} bounded_t;

static int bounded_cb(const char *s, size_t n, void *data)
{
    bounded_t *b = data;
    size_t room = sizeof(b->buf) - b->used;
    if (n > room) {
        memcpy(b->buf + b->used, s, room);
        b->used += room;
        return -1; /* enough: stop the dump */
    }
    memcpy(b->buf + b->used, s, n);
    b->used += n;
    return 0;
}

/* Shortest "%.Ng" that reads back as the same double, like JSON writers of
 * most languages, so 0.1 shows as 0.1 and not 0.10000000000000001. */
static int format_real(double d, char *buf, size_t len)
{
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, len, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
    if (!strpbrk(buf, ".eEn") && (size_t)n + 2 < len) {
        memcpy(buf + n, ".0", 3);
        n += 2;
    }
    return n;
}

char *ref_json_text(const json_t *v)
{
    char num[64];
    if (json_is_integer(v)) {
        int n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return stc_text_dup(num, (size_t)n);
    }
    if (json_is_real(v))
        return stc_text_dup(num, (size_t)format_real(json_real_value(v), num, sizeof(num)));
    bounded_t b;
    b.used = 0;
    json_dump_callback(v, bounded_cb, &b, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    return stc_text_dup(b.buf, b.used);
}

/* ---- walk state ------------------------------------------------------- */

typedef struct {
    const stc_policy_t *pol;
    stc_sink_t *sink;
    size_t depth;
    int has_ignore, has_unordered, has_topk, has_path_tol;
    stc_seg_t segs[STC_MAX_DEPTH_HARD + 2];
} walk_t;

static void diff_value(walk_t *w, const json_t *a, const json_t *b);

static int push_key(walk_t *w, const char *key, size_t keylen)
{
    if (w->depth >= STC_MAX_DEPTH_HARD + 1) return 0;
    w->segs[w->depth].key = key;
    w->segs[w->depth].keylen = keylen;
    w->segs[w->depth].index = 0;
    w->depth++;
    return 1;
}

static int push_index(walk_t *w, size_t i)
{
    if (w->depth >= STC_MAX_DEPTH_HARD + 1) return 0;
    w->segs[w->depth].key = NULL;
    w->segs[w->depth].keylen = 0;
    w->segs[w->depth].index = i;
    w->depth++;
    return 1;
}

static int ignored(const walk_t *w)
{
    if (!w->has_ignore) return 0;
    for (size_t s = 0; s < w->pol->nsec; s++) {
        const stc_section_t *sec = w->pol->sec[s];
        for (size_t i = 0; i < sec->nignore; i++)
            if (stc_pattern_match(&sec->ignore[i], w->segs, w->depth)) return 1;
    }
    return 0;
}

static int unordered(const walk_t *w)
{
    if (!w->has_unordered) return 0;
    for (size_t s = 0; s < w->pol->nsec; s++) {
        const stc_section_t *sec = w->pol->sec[s];
        for (size_t i = 0; i < sec->nunordered; i++)
            if (stc_pattern_match(&sec->unordered[i], w->segs, w->depth)) return 1;
    }
    return 0;
}

/* k of the first argmax / topk rule matching here, 0 when none. */
static size_t topk_here(const walk_t *w)
{
    if (!w->has_topk) return 0;
    for (size_t s = 0; s < w->pol->nsec; s++) {
        const stc_section_t *sec = w->pol->sec[s];
        for (size_t i = 0; i < sec->ntopk; i++)
            if (stc_pattern_match(&sec->topk[i].pat, w->segs, w->depth)) return sec->topk[i].k;
    }
    return 0;
}

/* The tolerance at the current path: the first matching path_tolerance
 * (endpoint section first), its unset fields taken from the global one. */
static stc_tol_t tol_here(const walk_t *w)
{
    stc_tol_t t = w->pol->tol;
    if (!w->has_path_tol) return t;
    for (size_t s = 0; s < w->pol->nsec; s++) {
        const stc_section_t *sec = w->pol->sec[s];
        for (size_t i = 0; i < sec->npath_tol; i++) {
            if (!stc_pattern_match(&sec->path_tol[i].pat, w->segs, w->depth)) continue;
            const stc_tol_t *pt = &sec->path_tol[i].tol;
            if (pt->has_absolute) t.absolute = pt->absolute;
            if (pt->has_relative) t.relative = pt->relative;
            return t;
        }
    }
    return t;
}

/* ---- recording ---------------------------------------------------------- */

char *ref_value_text(const stc_policy_t *pol, const json_t *v, const stc_seg_t *at, size_t nat)
{
    if (!v) return NULL;
    if (pol->nredact == 0) return ref_json_text(v);
    /* the value itself or one of its ancestors is redacted */
    for (size_t k = 0; k <= nat; k++)
        for (size_t i = 0; i < pol->nredact; i++)
            if (stc_pattern_match(pol->redact[i], at, k)) return stc_text_dup("\"[REDACTED]\"", 12);
    if (!json_is_object(v) && !json_is_array(v)) return ref_json_text(v);
    json_t *copy = json_deep_copy(v);
    if (!copy) return NULL;
    stc_seg_t segs[STC_MAX_DEPTH_HARD + 2];
    if (nat > STC_MAX_DEPTH_HARD) nat = STC_MAX_DEPTH_HARD;
    if (nat > 0) memcpy(segs, at, nat * sizeof(stc_seg_t));
    stc_redact_tree(copy, pol->redact, pol->nredact, segs, nat);
    char *t = ref_json_text(copy);
    json_decref(copy);
    return t;
}

static char *value_text(walk_t *w, const json_t *v)
{
    return ref_value_text(w->pol, v, w->segs, w->depth);
}

/* Records a difference at the current path; a/b are formatted only when the
 * entry will be stored. */
static void record(walk_t *w, st_diff_kind_t kind, const json_t *a, const json_t *b, double delta)
{
    stc_sink_t *s = w->sink;
    if (s->nentries >= s->cap && !s->noise) { /* only counted: no path needed */
        stc_sink_add(s, kind, NULL, NULL, NULL, delta);
        return;
    }
    char path[STC_PATH_MAX];
    stc_path_format(w->segs, w->depth, path, sizeof(path));
    char *ta = NULL, *tb = NULL;
    if (stc_sink_wants(s)) {
        ta = value_text(w, a);
        tb = value_text(w, b);
    }
    stc_sink_add(s, kind, path, ta, tb, delta);
}

static void record_text(walk_t *w, st_diff_kind_t kind, const char *a, const char *b, double delta)
{
    char path[STC_PATH_MAX];
    stc_path_format(w->segs, w->depth, path, sizeof(path));
    char *ta = NULL, *tb = NULL;
    if (stc_sink_wants(w->sink)) {
        ta = a ? stc_text_dup(a, strlen(a)) : NULL;
        tb = b ? stc_text_dup(b, strlen(b)) : NULL;
    }
    stc_sink_add(w->sink, kind, path, ta, tb, delta);
}

static void note_delta(walk_t *w, double d)
{
    if (d > w->sink->max_delta) w->sink->max_delta = d;
}

/* ---- numbers ------------------------------------------------------------ */

/* Tolerance applies when at least one side is a real: two integers compare
 * exactly (ids, counts and labels must not be "close enough"). */
static void diff_number(walk_t *w, const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        if (x == y) return;
        double d = fabs((double)x - (double)y);
        note_delta(w, d);
        record(w, ST_DIFF_VALUE, a, b, d);
        return;
    }
    double x = json_number_value(a), y = json_number_value(b);
    if (x == y) return;
    double d = fabs(x - y);
    note_delta(w, d);
    stc_tol_t t = tol_here(w);
    double mag = fmax(fabs(x), fabs(y));
    if (d <= t.absolute || d <= t.relative * mag) return;
    record(w, ST_DIFF_VALUE, a, b, d);
}

/* ---- objects ------------------------------------------------------------ */

static void diff_object(walk_t *w, const json_t *a, const json_t *b)
{
    json_t *ma = (json_t *)a, *mb = (json_t *)b;
    for (void *it = json_object_iter(ma); it; it = json_object_iter_next(ma, it)) {
        const char *k = json_object_iter_key(it);
        size_t kl = json_object_iter_key_len(it);
        const json_t *va = json_object_iter_value(it);
        const json_t *vb = json_object_getn(mb, k, kl);
        if (!push_key(w, k, kl)) continue;
        if (!ignored(w)) {
            if (vb)
                diff_value(w, va, vb);
            else
                record(w, ST_DIFF_MISSING, va, NULL, 0);
        }
        w->depth--;
    }
    for (void *it = json_object_iter(mb); it; it = json_object_iter_next(mb, it)) {
        const char *k = json_object_iter_key(it);
        size_t kl = json_object_iter_key_len(it);
        if (json_object_getn(ma, k, kl)) continue;
        if (!push_key(w, k, kl)) continue;
        if (!ignored(w)) record(w, ST_DIFF_EXTRA, NULL, json_object_iter_value(it), 0);
        w->depth--;
    }
}

/* ---- arrays ------------------------------------------------------------- */

static void record_lengths(walk_t *w, size_t na, size_t nb)
{
    char la[32], lb[32];
    snprintf(la, sizeof(la), "%zu", na);
    snprintf(lb, sizeof(lb), "%zu", nb);
    record_text(w, ST_DIFF_ARRAY_LEN, la, lb, 0);
}

/* Elementwise over the common prefix; pa/pb (may be NULL) permute the
 * elements, the path carries the index in the primary (a) array. */
static void diff_elements(walk_t *w, const json_t *a, const json_t *b, const size_t *pa,
                          const size_t *pb)
{
    size_t na = json_array_size(a), nb = json_array_size(b);
    if (na != nb) record_lengths(w, na, nb);
    size_t n = na < nb ? na : nb;
    for (size_t i = 0; i < n; i++) {
        size_t ia = pa ? pa[i] : i, ib = pb ? pb[i] : i;
        if (!push_index(w, ia)) continue;
        if (!ignored(w)) diff_value(w, json_array_get(a, ia), json_array_get(b, ib));
        w->depth--;
    }
}

typedef struct {
    char *text;
    size_t index;
} canon_t;

static int canon_cmp(const void *x, const void *y)
{
    const canon_t *p = x, *q = y;
    int c = strcmp(p->text, q->text);
    if (c) return c;
    return p->index < q->index ? -1 : p->index > q->index;
}

static canon_t *canon_sorted(const json_t *arr, size_t n)
{
    canon_t *v = calloc(n ? n : 1, sizeof(*v));
    if (!v) return NULL;
    for (size_t i = 0; i < n; i++) {
        v[i].index = i;
        v[i].text =
            json_dumps(json_array_get(arr, i), JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (!v[i].text) {
            for (size_t k = 0; k < i; k++)
                free(v[k].text);
            free(v);
            return NULL;
        }
    }
    qsort(v, n, sizeof(*v), canon_cmp);
    return v;
}

/* Unordered arrays: sort both by canonical text (sorted keys, compact),
 * then compare elementwise, so equal multisets give no difference. */
static void diff_unordered(walk_t *w, const json_t *a, const json_t *b)
{
    size_t na = json_array_size(a), nb = json_array_size(b);
    canon_t *ca = canon_sorted(a, na), *cb = canon_sorted(b, nb);
    size_t *pa = malloc((na ? na : 1) * sizeof(size_t));
    size_t *pb = malloc((nb ? nb : 1) * sizeof(size_t));
    if (!ca || !cb || !pa || !pb) {
        w->sink->failed = 1;
        diff_elements(w, a, b, NULL, NULL);
    } else {
        for (size_t i = 0; i < na; i++)
            pa[i] = ca[i].index;
        for (size_t i = 0; i < nb; i++)
            pb[i] = cb[i].index;
        diff_elements(w, a, b, pa, pb);
    }
    for (size_t i = 0; ca && i < na; i++)
        free(ca[i].text);
    for (size_t i = 0; cb && i < nb; i++)
        free(cb[i].text);
    free(ca);
    free(cb);
    free(pa);
    free(pb);
}

typedef struct {
    double v;
    size_t index;
} ranked_t;

static int ranked_cmp(const void *x, const void *y)
{
    const ranked_t *p = x, *q = y;
    if (p->v != q->v) return p->v > q->v ? -1 : 1; /* larger first */
    return p->index < q->index ? -1 : p->index > q->index;
}

static int size_cmp(const void *x, const void *y)
{
    size_t p = *(const size_t *)x, q = *(const size_t *)y;
    return p < q ? -1 : p > q;
}

/* Writes the indices of the k largest values (ties: lower index first) in
 * rank order into top[0..k). Returns 0, -1 on allocation failure. */
static int top_indices(const json_t *arr, size_t n, size_t k, size_t *top)
{
    if (k == 1) {
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (json_number_value(json_array_get(arr, i)) >
                json_number_value(json_array_get(arr, best)))
                best = i;
        top[0] = best;
        return 0;
    }
    ranked_t *r = malloc(n * sizeof(*r));
    if (!r) return -1;
    for (size_t i = 0; i < n; i++) {
        r[i].v = json_number_value(json_array_get(arr, i));
        r[i].index = i;
    }
    qsort(r, n, sizeof(*r), ranked_cmp);
    for (size_t i = 0; i < k; i++)
        top[i] = r[i].index;
    free(r);
    return 0;
}

static int all_numbers(const json_t *arr)
{
    size_t n = json_array_size(arr);
    for (size_t i = 0; i < n; i++)
        if (!json_is_number(json_array_get(arr, i))) return 0;
    return 1;
}

static char *indices_text(const size_t *v, size_t k)
{
    size_t cap = 2 + k * 21, used = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    s[used++] = '[';
    for (size_t i = 0; i < k; i++)
        used += (size_t)snprintf(s + used, cap - used, "%s%zu", i ? "," : "", v[i]);
    s[used++] = ']';
    s[used] = '\0';
    char *t = stc_text_dup(s, used);
    free(s);
    return t;
}

/* argmax / top-k: two numeric arrays of one length diverge only when the set
 * of the k largest indices differs. Returns 0 when handled, -1 when the rule
 * does not apply (lengths differ, a non-number) and the plain diff runs. */
static int diff_topk(walk_t *w, const json_t *a, const json_t *b, size_t k)
{
    size_t n = json_array_size(a);
    if (n != json_array_size(b) || n == 0 || !all_numbers(a) || !all_numbers(b)) return -1;
    if (k > n) k = n;
    double maxd = 0;
    for (size_t i = 0; i < n; i++) {
        double d =
            fabs(json_number_value(json_array_get(a, i)) - json_number_value(json_array_get(b, i)));
        if (d > maxd) maxd = d;
    }
    note_delta(w, maxd);
    size_t small[2 * 8];
    size_t *ta = k <= 8 ? small : malloc(2 * k * sizeof(size_t));
    if (!ta) {
        w->sink->failed = 1;
        return -1;
    }
    size_t *tb = ta + k;
    if (top_indices(a, n, k, ta) < 0 || top_indices(b, n, k, tb) < 0) {
        w->sink->failed = 1;
        if (ta != small) free(ta);
        return -1;
    }
    size_t *sa = NULL;
    int same;
    if (k == 1) {
        same = ta[0] == tb[0];
    } else {
        sa = malloc(2 * k * sizeof(size_t));
        if (!sa) {
            w->sink->failed = 1;
            if (ta != small) free(ta);
            return -1;
        }
        memcpy(sa, ta, 2 * k * sizeof(size_t));
        qsort(sa, k, sizeof(size_t), size_cmp);
        qsort(sa + k, k, sizeof(size_t), size_cmp);
        same = memcmp(sa, sa + k, k * sizeof(size_t)) == 0;
    }
    if (!same) {
        char path[STC_PATH_MAX];
        stc_path_format(w->segs, w->depth, path, sizeof(path));
        char *xa = NULL, *xb = NULL;
        if (stc_sink_wants(w->sink)) {
            xa = indices_text(ta, k);
            xb = indices_text(tb, k);
        }
        stc_sink_add(w->sink, ST_DIFF_ARGMAX, path, xa, xb, maxd);
    }
    free(sa);
    if (ta != small) free(ta);
    return 0;
}

static void diff_array(walk_t *w, const json_t *a, const json_t *b)
{
    size_t k = topk_here(w);
    if (k > 0 && diff_topk(w, a, b, k) == 0) return;
    if (unordered(w))
        diff_unordered(w, a, b);
    else
        diff_elements(w, a, b, NULL, NULL);
}

/* ---- values ------------------------------------------------------------- */

static int is_bool(const json_t *v)
{
    return json_is_true(v) || json_is_false(v);
}

static void diff_value(walk_t *w, const json_t *a, const json_t *b)
{
    if (a == b) return;
    json_type ta = json_typeof(a), tb = json_typeof(b);
    if (ta != tb) {
        if (json_is_number(a) && json_is_number(b))
            diff_number(w, a, b);
        else if (is_bool(a) && is_bool(b))
            record(w, ST_DIFF_VALUE, a, b, 0);
        else
            record(w, ST_DIFF_TYPE, a, b, 0);
        return;
    }
    switch (ta) {
    case JSON_OBJECT:
        diff_object(w, a, b);
        break;
    case JSON_ARRAY:
        diff_array(w, a, b);
        break;
    case JSON_STRING:
        if (json_string_length(a) != json_string_length(b) ||
            memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) != 0)
            record(w, ST_DIFF_VALUE, a, b, 0);
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        diff_number(w, a, b);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
    case JSON_NULL:
        break;
    }
}

void ref_json_diff(const stc_policy_t *pol, const json_t *a, const json_t *b, stc_sink_t *sink)
{
    walk_t w; /* ~6 KiB of path segments on the stack: no allocation */
    w.pol = pol;
    w.sink = sink;
    w.depth = 0;
    w.has_ignore = w.has_unordered = w.has_topk = w.has_path_tol = 0;
    for (size_t s = 0; s < pol->nsec; s++) {
        w.has_ignore |= pol->sec[s]->nignore > 0;
        w.has_unordered |= pol->sec[s]->nunordered > 0;
        w.has_topk |= pol->sec[s]->ntopk > 0;
        w.has_path_tol |= pol->sec[s]->npath_tol > 0;
    }
    if (!ignored(&w)) diff_value(&w, a, b);
}
