/*
 * shadowtee comparator: the unbounded dump of a tape as jansson's json_dumps
 * with JSON_COMPACT | JSON_ENCODE_ANY writes the tree of the same body, with
 * redact paths applied as stc_redact_tree applies them (see tape_dump.h).
 *
 * Kept apart from tape_text.c (the bounded a/b texts and canonical texts):
 * the same format rules, but unbounded, always "%.17g" reals, insertion
 * order, and counting what it replaced.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tape_dump.h"

typedef struct {
    char *buf; /* the result (stc_mem_alloc) */
    size_t used, cap;
    int failed;
    stc_arena_t *a; /* scratch: member tables and decoded strings */
    const stc_pattern_t *const *pats;
    size_t npats;
    stc_seg_t *segs;
    size_t count; /* values replaced */
} dump_t;

static void put(dump_t *o, const char *s, size_t n)
{
    if (o->failed) return;
    if (o->cap - o->used <= n) { /* keep room for the NUL */
        size_t cap = o->cap ? o->cap * 2 : 256;
        while (cap - o->used <= n)
            cap *= 2;
        char *nb = stc_mem_alloc(cap);
        if (!nb) {
            o->failed = 1;
            return;
        }
        if (o->used) memcpy(nb, o->buf, o->used);
        stc_mem_free(o->buf);
        o->buf = nb;
        o->cap = cap;
    }
    memcpy(o->buf + o->used, s, n);
    o->used += n;
}

/* jansson's dump_string without JSON_ENSURE_ASCII / JSON_ESCAPE_SLASH, on
 * decoded bytes (valid UTF-8: only ASCII bytes are ever escaped, so a byte
 * loop writes what its codepoint loop writes; "/" and DEL pass through). */
static void put_escaped(dump_t *o, const char *s, size_t n)
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

static const char redacted_text[] = "\"[REDACTED]\"";

static int redacted(const dump_t *o, size_t nsegs)
{
    for (size_t i = 0; i < o->npats; i++)
        if (stc_pattern_match(o->pats[i], o->segs, nsegs)) return 1;
    return 0;
}

static __attribute__((noinline)) void put_number(dump_t *o, stc_jv_t v, int type)
{
    char num[100];
    const stc_jnode_t *n = stc_jv_node(v);
    int l;
    if (type == STC_J_INT)
        l = snprintf(num, sizeof(num), "%lld", stc_num_int(stc_jv_text(v), n->len));
    else
        l = stc_num_dtostr(num, sizeof(num), stc_num_double(stc_jv_text(v), n->len), 17);
    if (l > 0)
        put(o, num, (size_t)l);
    else
        o->failed = 1; /* json_dumps fails too */
}

static __attribute__((noinline)) void put_string(dump_t *o, stc_jv_t v)
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

/* jansson's do_dump of the redacted tree. nsegs: depth of v's path in
 * o->segs. */
static void dump(dump_t *o, stc_jv_t v, size_t nsegs)
{
    const stc_jnode_t *n = stc_jv_node(v);
    if (o->failed) return;
    /* stc_redact_tree's reach: children of values at most this deep */
    int redact = nsegs < STC_MAX_DEPTH_HARD + 1;
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
        for (uint32_t c = v.i + 1; c < n->next && !o->failed; c = v.t->nodes[c].next, idx++) {
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
    /* objects: jansson's members (first position, last value), in order */
    stc_arena_mark_t mark = stc_arena_mark(o->a);
    stc_members_t ms;
    if (stc_members_get(&ms, v, o->a) < 0) {
        o->failed = 1;
        return;
    }
    put(o, "{", 1);
    for (size_t i = 0; i < ms.n && !o->failed; i++) {
        const stc_member_t *m = &ms.m[i];
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

char *stc_tape_dump_redacted(stc_jv_t root, const stc_pattern_t *const *pats, size_t npats,
                             size_t *out_len, size_t *count)
{
    stc_arena_t a;
    stc_arena_init(&a);
    stc_seg_t segs[STC_MAX_DEPTH_HARD + 2];
    dump_t o = {.a = &a, .pats = pats, .npats = npats, .segs = segs};
    dump(&o, root, 0);
    stc_arena_deinit(&a);
    *count = o.count;
    *out_len = 0;
    if (o.failed || !o.buf) {
        stc_mem_free(o.buf);
        return NULL;
    }
    o.buf[o.used] = '\0';
    *out_len = o.used;
    return o.buf;
}
