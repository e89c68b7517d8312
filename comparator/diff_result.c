/*
 * shadowtee comparator: the result plumbing under the engine. The sink that
 * collects differences (capped, all counted, noise-marked), the verdict it
 * makes, the bounded a/b text helpers and the names of kinds and verdicts.
 * It calls no other comparator file: compare.c, tape_diff.c, tape_text.c
 * and the aggregator (stats.c) call it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmp_internal.h"

/* ---- names -------------------------------------------------------------- */

const char *st_diff_kind_name(st_diff_kind_t kind)
{
    static const char *const names[ST_DIFF_KIND_COUNT] = {
        "status",       "header", "value",     "type",         "missing",  "extra",
        "array_length", "bytes",  "too_large", "invalid_json", "too_deep", "argmax",
    };
    return (unsigned)kind < ST_DIFF_KIND_COUNT ? names[kind] : "unknown";
}

const char *st_verdict_name(st_verdict_t v)
{
    switch (v) {
    case ST_VERDICT_MATCH:
        return "match";
    case ST_VERDICT_DIVERGED:
        return "diverged";
    case ST_VERDICT_NOISE:
        return "noise";
    case ST_VERDICT_ERROR:
        return "error";
    }
    return "unknown";
}

/* ---- text helpers -------------------------------------------------------- */

char *stc_text_dup(const char *s, size_t len)
{
    size_t keep = len;
    int cut = len > STC_VALUE_MAX;
    if (cut) {
        /* s[keep] is the first byte dropped: when it continues a UTF-8
         * sequence, cut before that sequence's lead byte instead */
        keep = STC_VALUE_MAX;
        while (keep > STC_VALUE_MAX - 3 && ((unsigned char)s[keep] & 0xC0) == 0x80)
            keep--;
    }
    char *d = malloc(keep + (cut ? 4 : 1));
    if (!d) return NULL;
    memcpy(d, s, keep);
    if (cut) memcpy(d + keep, "...", 3);
    d[keep + (cut ? 3 : 0)] = '\0';
    return d;
}

/* Appends the escaped form of s[0..len) to out (room: 4 bytes per input
 * byte). Returns the new length. */
size_t stc_escape_into(char *out, size_t used, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[used++] = '\\';
            out[used++] = (char)c;
        } else if (c >= 0x20 && c < 0x7f) {
            out[used++] = (char)c;
        } else {
            out[used++] = '\\';
            out[used++] = 'x';
            out[used++] = hex[c >> 4];
            out[used++] = hex[c & 15];
        }
    }
    return used;
}

char *stc_escape_bytes(const char *s, size_t len)
{
    if (len > STC_VALUE_MAX) len = STC_VALUE_MAX + 1; /* enough to be cut */
    char *tmp = malloc(len * 4 + 1);
    if (!tmp) return NULL;
    size_t n = stc_escape_into(tmp, 0, s, len);
    char *d = stc_text_dup(tmp, n);
    free(tmp);
    return d;
}

/* ---- sink ---------------------------------------------------------------- */

void stc_sink_init(stc_sink_t *s, size_t cap, int paths_only)
{
    memset(s, 0, sizeof(*s));
    s->cap = cap;
    s->paths_only = paths_only;
}

static void entries_free(st_diff_entry_t *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].path);
        free(e[i].a);
        free(e[i].b);
    }
    free(e);
}

void stc_sink_deinit(stc_sink_t *s)
{
    entries_free(s->entries, s->nentries);
    s->entries = NULL;
    s->nentries = 0;
}

int stc_sink_wants(const stc_sink_t *s)
{
    return !s->paths_only && s->nentries < s->cap;
}

int stc_path_covers(const char *np, const char *path)
{
    size_t n = strlen(np);
    if (strncmp(np, path, n) != 0) return 0;
    return path[n] == '\0' || ((np[0] == '$') && (path[n] == '.' || path[n] == '['));
}

void stc_sink_add(stc_sink_t *s, st_diff_kind_t kind, const char *path, char *a, char *b,
                  double delta)
{
    s->total++;
    int noise = 0;
    for (size_t i = 0; path && i < s->nnoise && !noise; i++)
        noise = stc_path_covers(s->noise[i].path, path);
    if (!noise) s->nonnoise++;
    if (!path || s->nentries >= s->cap) goto drop;
    if (s->nentries == s->alloc) {
        /* grow 4, 8, 16... up to cap: small when there are few differences */
        size_t want = s->alloc ? s->alloc * 2 : 4;
        if (want > s->cap) want = s->cap;
        st_diff_entry_t *ne = realloc(s->entries, want * sizeof(*ne));
        if (!ne) goto fail;
        s->entries = ne;
        s->alloc = want;
    }
    char *p = strdup(path);
    if (!p) goto fail;
    st_diff_entry_t *e = &s->entries[s->nentries++];
    e->kind = kind;
    e->path = p;
    e->a = a;
    e->b = b;
    e->delta = delta;
    e->noise = noise;
    return;
fail:
    s->failed = 1;
drop:
    free(a);
    free(b);
}

/* ---- result -------------------------------------------------------------- */

void stc_sink_result(stc_sink_t *s, st_diff_result_t *result)
{
    result->entries = s->entries;
    result->nentries = s->nentries;
    result->total = s->total;
    result->max_delta = s->max_delta;
    if (s->total == 0)
        result->verdict = ST_VERDICT_MATCH;
    else if (s->nonnoise == 0)
        result->verdict = ST_VERDICT_NOISE;
    else
        result->verdict = ST_VERDICT_DIVERGED;
    s->entries = NULL;
    s->nentries = 0;
}

void st_diff_result_free(st_diff_result_t *result)
{
    if (!result) return;
    entries_free(result->entries, result->nentries);
    result->entries = NULL;
    result->nentries = 0;
}
