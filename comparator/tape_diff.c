/*
 * shadowtee comparator: the structural diff of two parsed documents (tapes)
 * under a policy: tolerances, ignored paths, unordered arrays, argmax /
 * top-k arrays. It visits, records and formats exactly what the jansson-tree
 * walk did (comparator/ref/ref_json_diff.c), in the same order, so results
 * are identical; what it skips is work that cannot record anything:
 *
 *   - a pair of values with the same bytes (a SAME node of the guided
 *     shadow tape and its primary node, or two equal texts) differs nowhere
 *     below, whatever the rules, when both documents read integers alike;
 *   - two number texts that are equal are equal numbers; others are
 *     converted only then (comparator/tape_num.c);
 *   - strings without escapes compare as their raw bytes.
 *
 * The path is a stack of borrowed segments (keys point into the bodies or
 * the tapes' key stores), formatted only when a difference is recorded.
 * Scratch memory (member tables, canonical texts) comes from the
 * comparison's arena and is released per container.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tape.h"

/* Helpers with large locals stay out of the recursive functions, whose
 * frames repeat once per nesting level (up to 256). */
#define NOINLINE __attribute__((noinline))

typedef struct {
    const stc_policy_t *pol;
    stc_sink_t *sink;
    stc_arena_t *a;
    size_t depth;
    int has_ignore, has_unordered, has_topk, has_path_tol;
    stc_seg_t segs[STC_MAX_DEPTH_HARD + 2];
} walk_t;

static void diff_value(walk_t *w, stc_jv_t a, stc_jv_t b);

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

static char *value_text(walk_t *w, const stc_jv_t *v)
{
    if (!v) return NULL;
    stc_arena_mark_t m = stc_arena_mark(w->a);
    char *t = stc_tape_value_text(w->pol, *v, w->segs, w->depth, w->a);
    stc_arena_release(w->a, m);
    return t;
}

/* Records a difference at the current path; a/b are formatted only when the
 * entry will be stored. */
static NOINLINE void record(walk_t *w, st_diff_kind_t kind, const stc_jv_t *a, const stc_jv_t *b,
                            double delta)
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

static NOINLINE void record_text(walk_t *w, st_diff_kind_t kind, const char *a, const char *b,
                                 double delta)
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

/* ---- values ------------------------------------------------------------- */

/* Same bytes: nothing below can differ (integers read alike on both sides). */
static int identical(stc_jv_t a, stc_jv_t b)
{
    if (a.int_as_real != b.int_as_real) return 0;
    if (a.t == b.t && a.i == b.i) return 1;
    const stc_jnode_t *na = stc_jv_node(a), *nb = stc_jv_node(b);
    return na->len == nb->len && stc_bytes_eq(stc_jv_text(a), stc_jv_text(b), na->len);
}

static double number_value(stc_jv_t v)
{
    const stc_jnode_t *n = stc_jv_node(v);
    if (stc_jv_type(v) == STC_J_INT) return (double)stc_num_int(stc_jv_text(v), n->len);
    return stc_num_double(stc_jv_text(v), n->len);
}

static int is_number(int type)
{
    return type == STC_J_INT || type == STC_J_REAL;
}

/* Tolerance applies when at least one side is a real: two integers compare
 * exactly (ids, counts and labels must not be "close enough"). */
static NOINLINE void diff_number(walk_t *w, stc_jv_t a, stc_jv_t b, int ta, int tb)
{
    if (ta == STC_J_INT && tb == STC_J_INT) {
        long long x = stc_num_int(stc_jv_text(a), stc_jv_node(a)->len);
        long long y = stc_num_int(stc_jv_text(b), stc_jv_node(b)->len);
        if (x == y) return;
        double d = fabs((double)x - (double)y);
        note_delta(w, d);
        record(w, ST_DIFF_VALUE, &a, &b, d);
        return;
    }
    double x = number_value(a), y = number_value(b);
    if (x == y) return;
    double d = fabs(x - y);
    note_delta(w, d);
    stc_tol_t t = tol_here(w);
    double mag = fmax(fabs(x), fabs(y));
    if (d <= t.absolute || d <= t.relative * mag) return;
    record(w, ST_DIFF_VALUE, &a, &b, d);
}

static NOINLINE void diff_string(walk_t *w, stc_jv_t a, stc_jv_t b)
{
    const stc_jnode_t *na = stc_jv_node(a), *nb = stc_jv_node(b);
    int differ;
    if (!((na->flags | nb->flags) & STC_JF_ESC)) {
        differ = na->len != nb->len || memcmp(stc_jv_text(a), stc_jv_text(b), na->len) != 0;
    } else {
        stc_arena_mark_t m = stc_arena_mark(w->a);
        size_t la, lb;
        const char *sa = stc_jv_string(a, w->a, &la), *sb = stc_jv_string(b, w->a, &lb);
        if (!sa || !sb) {
            w->sink->failed = 1;
            stc_arena_release(w->a, m);
            return;
        }
        differ = la != lb || memcmp(sa, sb, la) != 0;
        stc_arena_release(w->a, m);
    }
    if (differ) record(w, ST_DIFF_VALUE, &a, &b, 0);
}

/* ---- objects ------------------------------------------------------------ */

#define LOCKSTEP_MAX 8

/* 1 when objects a and b have the same keys in the same order, at most
 * LOCKSTEP_MAX of them, none twice: their members pair up by position. */
static NOINLINE int same_key_order(stc_jv_t a, stc_jv_t b)
{
    const stc_jnode_t *na = stc_jv_node(a), *nb = stc_jv_node(b);
    if (na->n != nb->n || na->n > LOCKSTEP_MAX) return 0;
    const char *key[LOCKSTEP_MAX];
    uint32_t klen[LOCKSTEP_MAX];
    uint32_t ca = a.i + 1, cb = b.i + 1;
    for (uint32_t k = 0; k < na->n; k++) {
        uint32_t l = a.t->nodes[ca].klen;
        const char *ka = stc_tape_key(a.t, ca);
        if (b.t->nodes[cb].klen != l || !stc_bytes_eq(ka, stc_tape_key(b.t, cb), l)) return 0;
        for (uint32_t j = 0; j < k; j++)
            if (klen[j] == l && stc_bytes_eq(key[j], ka, l)) return 0; /* a duplicate */
        key[k] = ka;
        klen[k] = l;
        ca = a.t->nodes[ca].next;
        cb = b.t->nodes[cb].next;
    }
    return 1;
}

/* Objects in general: members as jansson holds them (tables in the arena),
 * each of a looked up in b, then b's members missing in a. */
static NOINLINE void diff_members(walk_t *w, stc_jv_t a, stc_jv_t b)
{
    stc_arena_mark_t mark = stc_arena_mark(w->a);
    stc_members_t ma, mb;
    if (stc_members_get(&ma, a, w->a) < 0 || stc_members_get(&mb, b, w->a) < 0) {
        w->sink->failed = 1;
        stc_arena_release(w->a, mark);
        return;
    }
    for (size_t i = 0; i < ma.n; i++) {
        const stc_member_t *m = &ma.m[i];
        long j = stc_members_find(&mb, m->key, m->klen, i);
        stc_jv_t va = stc_jv_at(a.t, m->node, a.int_as_real), vb;
        if (j >= 0) {
            vb = stc_jv_at(b.t, mb.m[j].node, b.int_as_real);
            if (identical(va, vb)) continue;
        }
        if (!push_key(w, m->key, m->klen)) continue;
        if (!ignored(w)) {
            if (j >= 0)
                diff_value(w, va, vb);
            else
                record(w, ST_DIFF_MISSING, &va, NULL, 0);
        }
        w->depth--;
    }
    for (size_t j = 0; j < mb.n; j++) {
        const stc_member_t *m = &mb.m[j];
        if (stc_members_find(&ma, m->key, m->klen, j) >= 0) continue;
        if (!push_key(w, m->key, m->klen)) continue;
        if (!ignored(w)) {
            stc_jv_t vb = stc_jv_at(b.t, m->node, b.int_as_real);
            record(w, ST_DIFF_EXTRA, NULL, &vb, 0);
        }
        w->depth--;
    }
    stc_arena_release(w->a, mark);
}

static void diff_object(walk_t *w, stc_jv_t a, stc_jv_t b)
{
    if (!same_key_order(a, b)) {
        diff_members(w, a, b);
        return;
    }
    /* the common case: members pair up by position, no tables, no lookups */
    uint32_t ca = a.i + 1, cb = b.i + 1;
    for (uint32_t k = 0; k < stc_jv_node(a)->n; k++) {
        stc_jv_t va = stc_jv_at(a.t, ca, a.int_as_real), vb = stc_jv_at(b.t, cb, b.int_as_real);
        if (!identical(va, vb) && push_key(w, stc_tape_key(a.t, ca), a.t->nodes[ca].klen)) {
            if (!ignored(w)) diff_value(w, va, vb);
            w->depth--;
        }
        ca = a.t->nodes[ca].next;
        cb = b.t->nodes[cb].next;
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

/* Node indices of the elements of array v, in a. */
static uint32_t *elements(stc_jv_t v, stc_arena_t *a)
{
    const stc_jnode_t *n = stc_jv_node(v);
    uint32_t *e = stc_arena_alloc(a, (n->n ? n->n : 1) * sizeof(uint32_t));
    if (!e) return NULL;
    size_t k = 0;
    for (uint32_t c = v.i + 1; c < n->next; c = v.t->nodes[c].next)
        e[k++] = c;
    return e;
}

/* Elementwise over the common prefix; pa/pb (may be NULL) permute the
 * elements (ea/eb: their node indices), the path carries the index in the
 * primary (a) array. */
static void diff_elements(walk_t *w, stc_jv_t a, stc_jv_t b, const size_t *pa, const size_t *pb,
                          const uint32_t *ea, const uint32_t *eb)
{
    size_t na = stc_jv_node(a)->n, nb = stc_jv_node(b)->n;
    if (na != nb) record_lengths(w, na, nb);
    size_t n = na < nb ? na : nb;
    uint32_t ca = a.i + 1, cb = b.i + 1;
    for (size_t i = 0; i < n; i++) {
        size_t ia = i;
        stc_jv_t va, vb;
        if (pa) {
            ia = pa[i];
            va = stc_jv_at(a.t, ea[pa[i]], a.int_as_real);
            vb = stc_jv_at(b.t, eb[pb[i]], b.int_as_real);
        } else {
            va = stc_jv_at(a.t, ca, a.int_as_real);
            vb = stc_jv_at(b.t, cb, b.int_as_real);
            ca = a.t->nodes[ca].next;
            cb = b.t->nodes[cb].next;
        }
        if (identical(va, vb)) continue;
        if (!push_index(w, ia)) continue;
        if (!ignored(w)) diff_value(w, va, vb);
        w->depth--;
    }
}

typedef struct {
    const char *text;
    size_t index;
} canon_t;

static int canon_cmp(const void *x, const void *y)
{
    const canon_t *p = x, *q = y;
    int c = strcmp(p->text, q->text);
    if (c) return c;
    return p->index < q->index ? -1 : p->index > q->index;
}

/* The elements of v in the order of their canonical texts (ties: index). */
static size_t *canon_order(walk_t *w, stc_jv_t v, const uint32_t *e)
{
    size_t n = stc_jv_node(v)->n;
    canon_t *c = stc_arena_alloc(w->a, (n ? n : 1) * sizeof(*c));
    size_t *perm = stc_arena_alloc(w->a, (n ? n : 1) * sizeof(size_t));
    if (!c || !perm) return NULL;
    for (size_t i = 0; i < n; i++) {
        c[i].index = i;
        c[i].text = stc_tape_canon(stc_jv_at(v.t, e[i], v.int_as_real), w->a);
        if (!c[i].text) return NULL;
    }
    qsort(c, n, sizeof(*c), canon_cmp);
    for (size_t i = 0; i < n; i++)
        perm[i] = c[i].index;
    return perm;
}

/* Unordered arrays: sort both by canonical text (sorted keys, compact),
 * then compare elementwise, so equal multisets give no difference. */
static NOINLINE void diff_unordered(walk_t *w, stc_jv_t a, stc_jv_t b)
{
    stc_arena_mark_t mark = stc_arena_mark(w->a);
    uint32_t *ea = elements(a, w->a), *eb = elements(b, w->a);
    size_t *pa = ea ? canon_order(w, a, ea) : NULL;
    size_t *pb = pa && eb ? canon_order(w, b, eb) : NULL;
    if (!pb) {
        w->sink->failed = 1;
        stc_arena_release(w->a, mark);
        diff_elements(w, a, b, NULL, NULL, NULL, NULL);
        return;
    }
    diff_elements(w, a, b, pa, pb, ea, eb);
    stc_arena_release(w->a, mark);
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
static int top_indices(walk_t *w, const double *v, size_t n, size_t k, size_t *top)
{
    if (k == 1) {
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (v[i] > v[best]) best = i;
        top[0] = best;
        return 0;
    }
    ranked_t *r = stc_arena_alloc(w->a, n * sizeof(*r));
    if (!r) return -1;
    for (size_t i = 0; i < n; i++) {
        r[i].v = v[i];
        r[i].index = i;
    }
    qsort(r, n, sizeof(*r), ranked_cmp);
    for (size_t i = 0; i < k; i++)
        top[i] = r[i].index;
    return 0;
}

/* The numbers of array v into out[0..n); -1 when an element is not one. */
static int numbers(stc_jv_t v, double *out)
{
    size_t k = 0;
    const stc_jnode_t *n = stc_jv_node(v);
    for (uint32_t c = v.i + 1; c < n->next; c = v.t->nodes[c].next) {
        stc_jv_t e = stc_jv_at(v.t, c, v.int_as_real);
        if (!is_number(stc_jv_type(e))) return -1;
        out[k++] = number_value(e);
    }
    return 0;
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
static NOINLINE int diff_topk(walk_t *w, stc_jv_t a, stc_jv_t b, size_t k)
{
    size_t n = stc_jv_node(a)->n;
    if (n != stc_jv_node(b)->n || n == 0) return -1;
    stc_arena_mark_t mark = stc_arena_mark(w->a);
    double *xa = stc_arena_alloc(w->a, 2 * n * sizeof(double));
    if (!xa) {
        w->sink->failed = 1;
        return -1;
    }
    double *xb = xa + n;
    if (numbers(a, xa) < 0 || numbers(b, xb) < 0) {
        stc_arena_release(w->a, mark);
        return -1;
    }
    if (k > n) k = n;
    double maxd = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(xa[i] - xb[i]);
        if (d > maxd) maxd = d;
    }
    note_delta(w, maxd);
    size_t *ta = stc_arena_alloc(w->a, 4 * k * sizeof(size_t));
    if (!ta) {
        w->sink->failed = 1;
        stc_arena_release(w->a, mark);
        return -1;
    }
    size_t *tb = ta + k, *sa = ta + 2 * k;
    if (top_indices(w, xa, n, k, ta) < 0 || top_indices(w, xb, n, k, tb) < 0) {
        w->sink->failed = 1;
        stc_arena_release(w->a, mark);
        return -1;
    }
    int same;
    if (k == 1) {
        same = ta[0] == tb[0];
    } else {
        memcpy(sa, ta, 2 * k * sizeof(size_t));
        qsort(sa, k, sizeof(size_t), size_cmp);
        qsort(sa + k, k, sizeof(size_t), size_cmp);
        same = memcmp(sa, sa + k, k * sizeof(size_t)) == 0;
    }
    if (!same) {
        char path[STC_PATH_MAX];
        stc_path_format(w->segs, w->depth, path, sizeof(path));
        char *ia = NULL, *ib = NULL;
        if (stc_sink_wants(w->sink)) {
            ia = indices_text(ta, k);
            ib = indices_text(tb, k);
        }
        stc_sink_add(w->sink, ST_DIFF_ARGMAX, path, ia, ib, maxd);
    }
    stc_arena_release(w->a, mark);
    return 0;
}

static void diff_array(walk_t *w, stc_jv_t a, stc_jv_t b)
{
    size_t k = topk_here(w);
    if (k > 0 && diff_topk(w, a, b, k) == 0) return;
    if (unordered(w))
        diff_unordered(w, a, b);
    else
        diff_elements(w, a, b, NULL, NULL, NULL, NULL);
}

/* ---- values ------------------------------------------------------------- */

static int is_bool(int type)
{
    return type == STC_J_TRUE || type == STC_J_FALSE;
}

static void diff_value(walk_t *w, stc_jv_t a, stc_jv_t b)
{
    if (identical(a, b)) return;
    int ta = stc_jv_type(a), tb = stc_jv_type(b);
    if (ta != tb) {
        if (is_number(ta) && is_number(tb))
            diff_number(w, a, b, ta, tb);
        else if (is_bool(ta) && is_bool(tb))
            record(w, ST_DIFF_VALUE, &a, &b, 0);
        else
            record(w, ST_DIFF_TYPE, &a, &b, 0);
        return;
    }
    switch (ta) {
    case STC_J_OBJECT:
        diff_object(w, a, b);
        break;
    case STC_J_ARRAY:
        diff_array(w, a, b);
        break;
    case STC_J_STRING:
        diff_string(w, a, b);
        break;
    case STC_J_INT:
    case STC_J_REAL:
        diff_number(w, a, b, ta, tb);
        break;
    default: /* true, false, null */
        break;
    }
}

void stc_tape_diff(const stc_policy_t *pol, stc_jv_t a, stc_jv_t b, stc_sink_t *sink,
                   stc_arena_t *scratch)
{
    walk_t w; /* ~6 KiB of path segments on the stack */
    w.pol = pol;
    w.sink = sink;
    w.a = scratch;
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
