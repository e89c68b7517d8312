/*
 * shadowtee comparator: endpoint keys ("POST /v1/models/{id}/predict") and
 * the bounded set that keeps their number (the metric label cardinality)
 * under a cap.
 *
 * A key is the upper-cased method, a space and the path template: the path
 * without query and fragment, each segment that looks like an identifier
 * (all digits, a UUID, 16 or more hex digits) replaced by "{id}", unless an
 * explicit template of the rules matches first. Bytes that would break a
 * metric label or a Redis key (controls, space, '"', '\\') become '_'.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cmp_internal.h"

/* snprintf-like writer: counts everything, stores what fits. */
typedef struct {
    char *out;
    size_t outlen;
    size_t n;
} writer_t;

static void wr_byte(writer_t *w, char c)
{
    if (w->n + 1 < w->outlen) w->out[w->n] = c;
    w->n++;
}

static void wr(writer_t *w, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        wr_byte(w, s[i]);
}

static char safe_byte(unsigned char c)
{
    return (c <= ' ' || c == 0x7f || c == '"' || c == '\\') ? '_' : (char)c;
}

static int is_hex(unsigned char c)
{
    return isxdigit(c) != 0;
}

static int all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return n > 0;
}

static int is_uuid(const char *s, size_t n)
{
    if (n != 36) return 0;
    for (size_t i = 0; i < n; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !is_hex((unsigned char)s[i])) return 0;
    }
    return 1;
}

static int is_long_hex(const char *s, size_t n)
{
    if (n < 16) return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_hex((unsigned char)s[i])) return 0;
    return 1;
}

static int is_id_segment(const char *s, size_t n)
{
    return all_digits(s, n) || is_uuid(s, n) || is_long_hex(s, n);
}

/* 1 when the template ("/users/{name}") matches path[0..len) segment by
 * segment; a {placeholder} matches any one non-empty segment. */
static int template_matches(const char *tpl, const char *path, size_t len)
{
    const char *t = tpl, *p = path, *pend = path + len;
    if (*t != '/' || len == 0 || *p != '/') return 0;
    t++, p++;
    for (;;) {
        const char *te = strchr(t, '/');
        size_t tl = te ? (size_t)(te - t) : strlen(t);
        const char *pe = memchr(p, '/', (size_t)(pend - p));
        size_t pl = pe ? (size_t)(pe - p) : (size_t)(pend - p);
        int brace = tl >= 2 && t[0] == '{' && t[tl - 1] == '}';
        if (brace ? pl == 0 : (tl != pl || memcmp(t, p, tl) != 0)) return 0;
        if (!te || !pe) return !te && !pe;
        t = te + 1;
        p = pe + 1;
    }
}

size_t st_endpoint_key(const st_rules_t *rules, const char *method, size_t method_len,
                       const char *path, size_t path_len, char *out, size_t outlen)
{
    writer_t w = {out, outlen, 0};
    if (method_len == 0) wr_byte(&w, '_');
    for (size_t i = 0; i < method_len; i++)
        wr_byte(&w, safe_byte((unsigned char)toupper((unsigned char)method[i])));
    wr_byte(&w, ' ');

    /* absolute-form ("http://host/p"): keep the path only */
    if (path_len > 0 && path[0] != '/') {
        const char *sch = path_len > 3 ? memchr(path, ':', path_len) : NULL;
        if (sch && (size_t)(sch - path) + 3 <= path_len && sch[1] == '/' && sch[2] == '/') {
            const char *host = sch + 3;
            const char *slash = memchr(host, '/', path_len - (size_t)(host - path));
            size_t rest = slash ? path_len - (size_t)(slash - path) : 0;
            path = slash ? slash : "/";
            path_len = slash ? rest : 1;
        }
    }
    /* drop query and fragment */
    for (size_t i = 0; i < path_len; i++)
        if (path[i] == '?' || path[i] == '#') {
            path_len = i;
            break;
        }
    if (path_len == 0) {
        path = "/";
        path_len = 1;
    }

    const char *const *tpl;
    size_t ntpl = stc_rules_templates(rules, &tpl);
    for (size_t i = 0; i < ntpl; i++)
        if (template_matches(tpl[i], path, path_len)) {
            wr(&w, tpl[i], strlen(tpl[i]));
            goto done;
        }

    if (path[0] != '/') { /* "*" (OPTIONS) or something odd: as is */
        for (size_t i = 0; i < path_len; i++)
            wr_byte(&w, safe_byte((unsigned char)path[i]));
        goto done;
    }
    for (size_t i = 0; i < path_len;) {
        wr_byte(&w, '/');
        size_t start = i + 1, end = start;
        while (end < path_len && path[end] != '/')
            end++;
        if (is_id_segment(path + start, end - start))
            wr(&w, "{id}", 4);
        else
            for (size_t k = start; k < end; k++)
                wr_byte(&w, safe_byte((unsigned char)path[k]));
        i = end;
    }
done:
    if (outlen > 0) out[w.n < outlen ? w.n : outlen - 1] = '\0';
    return w.n;
}

/* ---- bounded set --------------------------------------------------------- */

struct st_endpoint_set {
    size_t cap;    /* distinct keys kept at most */
    size_t count;  /* keys kept */
    size_t nslots; /* power of two, > 2 * count */
    char **slots;  /* open addressing, linear probing; NULL is empty */
};

st_endpoint_set_t *st_endpoint_set_new(size_t cap)
{
    st_endpoint_set_t *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->cap = cap;
    s->nslots = 16;
    s->slots = calloc(s->nslots, sizeof(char *));
    if (!s->slots) {
        free(s);
        return NULL;
    }
    return s;
}

void st_endpoint_set_free(st_endpoint_set_t *set)
{
    if (!set) return;
    for (size_t i = 0; i < set->nslots; i++)
        free(set->slots[i]);
    free(set->slots);
    free(set);
}

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static char **find_slot(char **slots, size_t nslots, const char *key)
{
    size_t i = (size_t)hash(key) & (nslots - 1);
    while (slots[i] && strcmp(slots[i], key) != 0)
        i = (i + 1) & (nslots - 1);
    return &slots[i];
}

static int grow(st_endpoint_set_t *set)
{
    size_t n = set->nslots * 2;
    char **slots = calloc(n, sizeof(char *));
    if (!slots) return -1;
    for (size_t i = 0; i < set->nslots; i++)
        if (set->slots[i]) *find_slot(slots, n, set->slots[i]) = set->slots[i];
    free(set->slots);
    set->slots = slots;
    set->nslots = n;
    return 0;
}

const char *st_endpoint_set_intern(st_endpoint_set_t *set, const char *key)
{
    if (!set || !key || strcmp(key, ST_ENDPOINT_OTHER) == 0) return ST_ENDPOINT_OTHER;
    char **slot = find_slot(set->slots, set->nslots, key);
    if (*slot) return *slot;
    if (set->count >= set->cap) return ST_ENDPOINT_OTHER;
    if ((set->count + 1) * 2 > set->nslots) {
        if (grow(set) < 0) return ST_ENDPOINT_OTHER;
        slot = find_slot(set->slots, set->nslots, key);
    }
    *slot = strdup(key);
    if (!*slot) return ST_ENDPOINT_OTHER;
    set->count++;
    return *slot;
}
