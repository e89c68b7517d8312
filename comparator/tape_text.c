/*
 * shadowtee comparator: text of tape values, byte for byte what jansson's
 * json_dump_callback writes for the same parsed value (compact separators,
 * its string escapes, "%.<precision>g" reals with ".0" added and the
 * exponent cleaned), and the members of an object as jansson holds them.
 *
 *   a/b text   bounded to STC_VALUE_MAX + 1 bytes, reals nested in a
 *              container with precision 15, a top-level real in shortest
 *              round-trip form, the policy's redact paths replaced by
 *              "[REDACTED]" (stc_value_text's contract);
 *   canonical  unbounded, keys sorted, precision 17 (json_dumps with
 *              JSON_COMPACT | JSON_SORT_KEYS): the sort key of unordered
 *              array elements;
 *   sample     unbounded, insertion order, precision 17, redact paths
 *              applied and counted (json_dumps with JSON_COMPACT |
 *              JSON_ENCODE_ANY after stc_redact_tree): a divergent sample's
 *              body (stc_tape_dump_redacted, tape_dump.h).
 *
 * One writer (dump() below) does all three; out_t's fields choose.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tape.h"
#include "tape_dump.h"

/* ---- members ------------------------------------------------------------- */

static uint32_t key_hash(const char *k, uint32_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (uint32_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 16777619u;
    return h;
}

static int key_eq(const stc_member_t *m, const char *k, uint32_t kl)
{
    return m->klen == kl && stc_bytes_eq(m->key, k, kl);
}

int stc_members_get(stc_members_t *ms, stc_jv_t v, stc_arena_t *a)
{
    const stc_tape_t *t = v.t;
    const stc_jnode_t *obj = &t->nodes[v.i];
    size_t n = obj->n;
    ms->n = 0;
    ms->slots = NULL;
    ms->mask = 0;
    ms->m = stc_arena_alloc(a, (n ? n : 1) * sizeof(stc_member_t));
    if (!ms->m) return -1;
    if (n > 8) {
        size_t size = 16;
        while (size < 2 * n)
            size *= 2;
        ms->slots = stc_arena_alloc(a, size * sizeof(uint32_t));
        if (!ms->slots) return -1;
        memset(ms->slots, 0xFF, size * sizeof(uint32_t));
        ms->mask = (uint32_t)(size - 1);
    }
    for (uint32_t c = v.i + 1; c < obj->next; c = t->nodes[c].next) {
        const char *k = stc_tape_key(t, c);
        uint32_t kl = t->nodes[c].klen;
        if (ms->slots) {
            uint32_t s = key_hash(k, kl) & ms->mask;
            while (ms->slots[s] != UINT32_MAX && !key_eq(&ms->m[ms->slots[s]], k, kl))
                s = (s + 1) & ms->mask;
            if (ms->slots[s] != UINT32_MAX) { /* a duplicate: the last value wins */
                ms->m[ms->slots[s]].node = c;
                continue;
            }
            ms->slots[s] = (uint32_t)ms->n;
        } else {
            size_t j = 0;
            while (j < ms->n && !key_eq(&ms->m[j], k, kl))
                j++;
            if (j < ms->n) {
                ms->m[j].node = c;
                continue;
            }
        }
        stc_member_t *m = &ms->m[ms->n++];
        m->key = k;
        m->klen = kl;
        m->node = c;
    }
    return 0;
}

long stc_members_find(const stc_members_t *ms, const char *key, uint32_t klen, size_t hint)
{
    if (hint < ms->n && key_eq(&ms->m[hint], key, klen)) return (long)hint;
    if (ms->slots) {
        uint32_t s = key_hash(key, klen) & ms->mask;
        while (ms->slots[s] != UINT32_MAX) {
            if (key_eq(&ms->m[ms->slots[s]], key, klen)) return (long)ms->slots[s];
            s = (s + 1) & ms->mask;
        }
        return -1;
    }
    for (size_t j = 0; j < ms->n; j++)
        if (key_eq(&ms->m[j], key, klen)) return (long)j;
    return -1;
}

const char *stc_jv_string(stc_jv_t v, stc_arena_t *a, size_t *len)
{
    const stc_jnode_t *n = stc_jv_node(v);
    const char *raw = stc_jv_text(v) + 1;
    size_t rl = n->len - 2;
    if (!(n->flags & STC_JF_ESC)) {
        *len = rl;
        return raw;
    }
    char *d = stc_arena_alloc(a, rl ? rl : 1);
    if (!d) return NULL;
    *len = stc_str_decode(raw, rl, d);
    return d;
}

/* ---- output -------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t used, cap;
    int bounded;   /* 1: stop at cap (a/b text); 0: grow (buf on the heap, room for a NUL) */
    int full;      /* bounded and cap reached: the rest is not written */
    int failed;    /* an allocation failed (or a value jansson cannot dump) */
    int precision; /* of reals inside containers: 15 (a/b) or 17 (canonical, sample) */
    int sort_keys;
    stc_arena_t *a;
    /* redaction (a/b text): patterns and the path of the value written */
    const stc_pattern_t *const *pats;
    size_t npats;
    stc_seg_t *segs;
    size_t count; /* values replaced by "[REDACTED]" */
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->full || o->failed) return;
    size_t room = o->cap - o->used;
    if (room < n || (room == n && !o->bounded)) {
        if (o->bounded) {
            memcpy(o->buf + o->used, s, room);
            o->used = o->cap;
            o->full = 1;
            return;
        }
        /* not in the arena: dump() releases arena marks while writing */
        size_t cap = o->cap * 2;
        while (cap - o->used <= n)
            cap *= 2;
        char *nb = stc_mem_alloc(cap);
        if (!nb) {
            o->failed = 1;
            return;
        }
        memcpy(nb, o->buf, o->used);
        stc_mem_free(o->buf);
        o->buf = nb;
        o->cap = cap;
    }
    memcpy(o->buf + o->used, s, n);
    o->used += n;
}

/* A growing output on the heap (canonical text, a sample's body): reals at
 * 17 significant digits, which round-trip a double. */
static int out_open_growing(out_t *o, stc_arena_t *a)
{
    memset(o, 0, sizeof(*o));
    o->cap = 256;
    o->buf = stc_mem_alloc(o->cap);
    if (!o->buf) return -1;
    o->precision = 17;
    o->a = a;
    return 0;
}

/* jansson's dump_string on decoded bytes (valid UTF-8: only ASCII bytes are
 * ever escaped, so a byte loop writes what its codepoint loop writes). */
static void put_escaped(out_t *o, const char *s, size_t n)
{
    put(o, "\"", 1);
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue; /* most bytes: no call */
        char e[6];
        size_t el = stc_json_escape_byte(c, e);
        put(o, s + from, i - from);
        put(o, e, el);
        from = i + 1;
    }
    put(o, s + from, n - from);
    put(o, "\"", 1);
}

static double real_value(stc_jv_t v)
{
    const stc_jnode_t *n = stc_jv_node(v);
    return stc_num_double(stc_jv_text(v), n->len);
}

static const char redacted_text[] = "\"[REDACTED]\"";

static int redacted(const out_t *o, size_t nsegs)
{
    for (size_t i = 0; i < o->npats; i++)
        if (stc_pattern_match(o->pats[i], o->segs, nsegs)) return 1;
    return 0;
}

/* A number as jansson dumps it (out of dump()'s recursive frame). */
static __attribute__((noinline)) void put_number(out_t *o, stc_jv_t v, int type)
{
    char num[100];
    const stc_jnode_t *n = stc_jv_node(v);
    int l;
    if (type == STC_J_INT)
        l = snprintf(num, sizeof(num), "%lld", stc_num_int(stc_jv_text(v), n->len));
    else
        l = stc_num_dtostr(num, sizeof(num), real_value(v), o->precision);
    if (l > 0)
        put(o, num, (size_t)l);
    else
        o->failed = 1; /* json_dumps fails too */
}

/* An escaped string as jansson dumps it (out of dump()'s recursive frame). */
static __attribute__((noinline)) void put_string(out_t *o, stc_jv_t v)
{
    size_t sl;
    stc_arena_mark_t m = stc_arena_mark(o->a);
    const char *s = stc_jv_string(v, o->a, &sl);
    if (!s)
        o->failed = 1;
    else
        put_escaped(o, s, sl);
    stc_arena_release(o->a, m);
}

/* jansson's do_dump (of the redacted tree when o->npats). nsegs: depth of
 * v's path in o->segs. */
static void dump(out_t *o, stc_jv_t v, size_t nsegs)
{
    const stc_jnode_t *n = stc_jv_node(v);
    if (o->full || o->failed) return;
    /* stc_redact_tree's reach: children of values at most this deep */
    int redact = o->npats > 0 && nsegs < STC_MAX_DEPTH_HARD + 1;
    switch (stc_jv_type(v)) {
    case STC_J_NULL:
        put(o, "null", 4);
        return;
    case STC_J_TRUE:
        put(o, "true", 4);
        return;
    case STC_J_FALSE:
        put(o, "false", 5);
        return;
    case STC_J_INT:
    case STC_J_REAL:
        put_number(o, v, stc_jv_type(v));
        return;
    case STC_J_STRING:
        if (!(n->flags & STC_JF_ESC)) /* no escapes: the raw text is the dump */
            put(o, stc_jv_text(v), n->len);
        else
            put_string(o, v);
        return;
    case STC_J_ARRAY: {
        put(o, "[", 1);
        uint32_t idx = 0;
        for (uint32_t c = v.i + 1; c < n->next && !o->full && !o->failed;
             c = v.t->nodes[c].next, idx++) {
            if (idx) put(o, ",", 1);
            if (redact) {
                o->segs[nsegs].key = NULL;
                o->segs[nsegs].keylen = 0;
                o->segs[nsegs].index = idx;
                if (redacted(o, nsegs + 1)) {
                    put(o, redacted_text, sizeof(redacted_text) - 1);
                    o->count++;
                    continue;
                }
            }
            dump(o, stc_jv_at(v.t, c, v.int_as_real), nsegs + 1);
        }
        put(o, "]", 1);
        return;
    }
    case STC_J_OBJECT:
        break;
    default:
        o->failed = 1;
        return;
    }
    /* objects: jansson's members (first position, last value), in insertion
     * or (canonical) key order */
    stc_arena_mark_t mark = stc_arena_mark(o->a);
    stc_members_t ms;
    if (stc_members_get(&ms, v, o->a) < 0) {
        o->failed = 1;
        return;
    }
    const stc_member_t **order = NULL;
    if (o->sort_keys && ms.n > 1) {
        order = stc_arena_alloc(o->a, ms.n * sizeof(*order));
        if (!order) {
            o->failed = 1;
            stc_arena_release(o->a, mark);
            return;
        }
        /* insertion sort by (memcmp, length), jansson's compare_keys: the
         * order is total, so any sort gives the same text */
        for (size_t i = 0; i < ms.n; i++) {
            const stc_member_t *m = &ms.m[i];
            size_t j = i;
            while (j > 0) {
                const stc_member_t *q = order[j - 1];
                size_t mn = q->klen < m->klen ? q->klen : m->klen;
                int c = memcmp(q->key, m->key, mn);
                if (c < 0 || (c == 0 && q->klen <= m->klen)) break;
                order[j] = q;
                j--;
            }
            order[j] = m;
        }
    }
    put(o, "{", 1);
    for (size_t i = 0; i < ms.n && !o->full && !o->failed; i++) {
        const stc_member_t *m = order ? order[i] : &ms.m[i];
        if (i) put(o, ",", 1);
        put_escaped(o, m->key, m->klen);
        put(o, ":", 1);
        if (redact) {
            o->segs[nsegs].key = m->key;
            o->segs[nsegs].keylen = m->klen;
            o->segs[nsegs].index = 0;
            if (redacted(o, nsegs + 1)) {
                put(o, redacted_text, sizeof(redacted_text) - 1);
                o->count++;
                continue;
            }
        }
        dump(o, stc_jv_at(v.t, m->node, v.int_as_real), nsegs + 1);
    }
    put(o, "}", 1);
    stc_arena_release(o->a, mark);
}

/* ---- a/b text -------------------------------------------------------------- */

/* Shortest "%.Ng" that reads back as the same double (compare.c's
 * format_real for a top-level real). */
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

/* The text of v with redaction below segs[0..nsegs) (npats may be 0). */
static char *bounded_text(stc_jv_t v, const stc_pattern_t *const *pats, size_t npats,
                          stc_seg_t *segs, size_t nsegs, stc_arena_t *a)
{
    char num[64];
    int type = stc_jv_type(v);
    if (type == STC_J_INT) {
        int n =
            snprintf(num, sizeof(num), "%lld", stc_num_int(stc_jv_text(v), stc_jv_node(v)->len));
        return stc_text_dup(num, (size_t)n);
    }
    if (type == STC_J_REAL)
        return stc_text_dup(num, (size_t)format_real(real_value(v), num, sizeof(num)));
    char buf[STC_VALUE_MAX + 1];
    out_t o;
    memset(&o, 0, sizeof(o));
    o.buf = buf;
    o.cap = sizeof(buf);
    o.bounded = 1;
    o.precision = 15;
    o.a = a;
    o.pats = pats;
    o.npats = npats;
    o.segs = segs;
    dump(&o, v, nsegs);
    if (o.failed) return NULL;
    return stc_text_dup(buf, o.used);
}

char *stc_tape_value_text(const stc_policy_t *pol, stc_jv_t v, const stc_seg_t *at, size_t nat,
                          stc_arena_t *a)
{
    if (pol->nredact == 0) return bounded_text(v, NULL, 0, NULL, 0, a);
    /* the value itself or one of its ancestors is redacted */
    for (size_t k = 0; k <= nat; k++)
        for (size_t i = 0; i < pol->nredact; i++)
            if (stc_pattern_match(pol->redact[i], at, k))
                return stc_text_dup(redacted_text, sizeof(redacted_text) - 1);
    int type = stc_jv_type(v);
    if (type != STC_J_OBJECT && type != STC_J_ARRAY) return bounded_text(v, NULL, 0, NULL, 0, a);
    stc_seg_t segs[STC_MAX_DEPTH_HARD + 2];
    if (nat > STC_MAX_DEPTH_HARD) nat = STC_MAX_DEPTH_HARD;
    if (nat > 0) memcpy(segs, at, nat * sizeof(stc_seg_t));
    return bounded_text(v, pol->redact, pol->nredact, segs, nat, a);
}

char *stc_tape_canon(stc_jv_t v, stc_arena_t *a)
{
    out_t o;
    if (out_open_growing(&o, a) != 0) return NULL;
    o.sort_keys = 1;
    dump(&o, v, 0);
    char *text = o.failed ? NULL : stc_arena_alloc(a, o.used + 1);
    if (text) {
        memcpy(text, o.buf, o.used);
        text[o.used] = '\0';
    }
    stc_mem_free(o.buf);
    return text;
}

/* ---- a sample's body ------------------------------------------------------- */

char *stc_tape_dump_redacted(stc_jv_t root, const stc_pattern_t *const *pats, size_t npats,
                             size_t *out_len, size_t *count)
{
    stc_arena_t a;
    stc_arena_init(&a);
    stc_seg_t segs[STC_MAX_DEPTH_HARD + 2];
    out_t o;
    *count = 0;
    *out_len = 0;
    if (out_open_growing(&o, &a) != 0) {
        stc_arena_deinit(&a);
        return NULL;
    }
    o.pats = pats;
    o.npats = npats;
    o.segs = segs;
    dump(&o, root, 0);
    stc_arena_deinit(&a);
    *count = o.count;
    if (o.failed) {
        stc_mem_free(o.buf);
        return NULL;
    }
    o.buf[o.used] = '\0';
    *out_len = o.used;
    return o.buf;
}
