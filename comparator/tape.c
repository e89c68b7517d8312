/*
 * shadowtee comparator: the tape parser. One pass over a body that validates
 * it exactly as jansson 2.14 does (json_loadb, JSON_DECODE_ANY |
 * JSON_ALLOW_NUL, with st_compare's INT_AS_REAL retry) and writes one node
 * per value (tape.h). Guided by another tape, it replaces every value whose
 * bytes equal the guide's value at the same place by one SAME node.
 *
 * jansson's rules reproduced here, beyond RFC 8259:
 *   - a string must be valid UTF-8 (no overlong forms, no surrogates, at most
 *     U+10FFFF); \u escapes must pair surrogates; \u0000 is allowed in values
 *     but not in keys;
 *   - an integer beyond int64 makes the whole document read its integers as
 *     reals (st_compare's retry); a number that overflows a double is
 *     invalid;
 *   - true/false/null followed by a letter is invalid ("truex");
 *   - one NUL byte right after a number or a literal is skipped (jansson's
 *     lexer reads it, puts it back, and loses it), a second is invalid.
 * Nesting is counted as stc_json_depth counts it; on invalid input that scan
 * decides between too deep and invalid, as before.
 */
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "tape.h"

#define NO_GUIDE UINT32_MAX

/* Parse functions take the position of what they parse and return the
 * position after it, or FAIL with p->err set (positions stay in registers). */
typedef struct {
    stc_tape_t *t;
    const unsigned char *s;
    size_t len;
    size_t max_depth;
    size_t bigints; /* integers beyond int64 seen (or inherited by SAME nodes) */
    const stc_tape_t *guide;
    /* guided: the bodies' common prefix and suffix (see try_same) */
    size_t pre, suf;
    int suf_ends_at_difference; /* the bytes before the suffixes differ */
    int err;                    /* P_*, when a function returned FAIL */
} parser_t;

#define FAIL ((size_t)-1)
enum { P_OK = 0, P_INVALID, P_DEEP, P_NOMEM };

static size_t fail(parser_t *p, int err)
{
    p->err = err;
    return FAIL;
}

/* ---- character classes --------------------------------------------------- */

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned hex_value(unsigned char c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
}

/* Compact JSON has no whitespace: one test in the common case. */
static inline size_t skip_ws(const unsigned char *s, size_t i, size_t n)
{
    if (i < n && s[i] <= ' ')
        while (i < n && is_ws(s[i]))
            i++;
    return i;
}

/* Index of the first byte at or after i that is not a digit: 8 bytes at a
 * time (for each byte x = b ^ '0' is below 10 exactly for a digit; x + 0x76
 * sets the byte's high bit for 10..0x7f, x itself for 0x80.. ; a carry only
 * reaches bytes above the first non-digit). */
static inline size_t skip_digits(const unsigned char *s, size_t i, size_t n)
{
    while (n - i >= 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        uint64_t x = v ^ 0x3030303030303030ULL;
        uint64_t nd = ((x + 0x7676767676767676ULL) | x) & 0x8080808080808080ULL;
        if (nd) return i + ((size_t)__builtin_ctzll(nd) >> 3);
        i += 8;
    }
    while (i < n && is_digit(s[i]))
        i++;
    return i;
}

/* ---- nodes --------------------------------------------------------------- */

static int grow_nodes(stc_tape_t *t)
{
    uint32_t cap = t->cap ? t->cap * 2 : 64;
    if (cap <= t->cap) return -1;
    stc_jnode_t *n = stc_mem_alloc((size_t)cap * sizeof(*n));
    if (!n) return -1;
    if (t->nnodes) memcpy(n, t->nodes, (size_t)t->nnodes * sizeof(*n));
    stc_mem_free(t->nodes);
    t->nodes = n;
    t->cap = cap;
    return 0;
}

/* Appends a node for the value text body[off..off+len); returns its index
 * or NO_GUIDE. */
static inline uint32_t node_push(parser_t *p, size_t off, size_t len, int type, int flags)
{
    stc_tape_t *t = p->t;
    if (__builtin_expect(t->nnodes == t->cap, 0) && grow_nodes(t) < 0) return NO_GUIDE;
    uint32_t i = t->nnodes++;
    stc_jnode_t n = {(uint32_t)off, (uint32_t)len, i + 1, 0, 0, 0, (uint8_t)type, (uint8_t)flags};
    t->nodes[i] = n;
    return i;
}

static inline uint32_t node_new(parser_t *p, size_t off, int type)
{
    return node_push(p, off, 0, type, 0);
}

/* ---- strings ------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0..n) (jansson's utf8_check_first
 * and utf8_check_full), 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char u = s[0];
    size_t k;
    uint32_t v;
    if (u >= 0xC2 && u <= 0xDF)
        k = 2, v = u & 0x1F;
    else if (u >= 0xE0 && u <= 0xEF)
        k = 3, v = u & 0x0F;
    else if (u >= 0xF0 && u <= 0xF4)
        k = 4, v = u & 0x07;
    else
        return 0;
    if (k > n) return 0;
    for (size_t i = 1; i < k; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    if ((k == 3 && v < 0x800) || (k == 4 && v < 0x10000)) return 0;
    return k;
}

static int hex4(const unsigned char *s, unsigned *v)
{
    if (!is_hex(s[0]) || !is_hex(s[1]) || !is_hex(s[2]) || !is_hex(s[3])) return -1;
    *v = hex_value(s[0]) << 12 | hex_value(s[1]) << 8 | hex_value(s[2]) << 4 | hex_value(s[3]);
    return 0;
}

/* The escape at s[i] == '\\': returns the index after it, 0 when invalid. */
static size_t scan_escape(const unsigned char *s, size_t i, size_t n)
{
    if (i + 1 >= n) return 0;
    switch (s[i + 1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        return i + 2;
    case 'u':
        break;
    default:
        return 0;
    }
    unsigned v, v2;
    if (i + 6 > n || hex4(s + i + 2, &v) < 0) return 0;
    if (v >= 0xDC00 && v <= 0xDFFF) return 0; /* a lone second surrogate */
    if (v < 0xD800 || v > 0xDBFF) return i + 6;
    /* a first surrogate must be followed by \u and a second one */
    if (i + 12 > n || s[i + 6] != '\\' || s[i + 7] != 'u' || hex4(s + i + 8, &v2) < 0) return 0;
    if (v2 < 0xDC00 || v2 > 0xDFFF) return 0;
    return i + 12;
}

/* The string at i (its opening quote). Returns the position after the
 * closing quote with *esc set when it has escapes, FAIL when invalid. */
static size_t scan_string(const unsigned char *s, size_t i, size_t n, int *esc)
{
    i++;
    int e = 0;
    for (;;) {
#if defined(__SSE2__)
        /* 16 bytes at a time: stop at '"', '\\', a control byte or a byte
         * >= 0x80 (both below 0x20 as signed bytes) */
        const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
        const __m128i space = _mm_set1_epi8(0x20);
        while (i + 16 <= n) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
            __m128i m =
                _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                             _mm_cmplt_epi8(v, space));
            int mask = _mm_movemask_epi8(m);
            if (mask) {
                i += (size_t)__builtin_ctz((unsigned)mask);
                goto special;
            }
            i += 16;
        }
#endif
        while (i < n && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\')
            i++;
        if (i >= n) return FAIL;
#if defined(__SSE2__)
    special:
#endif
        if (s[i] == '"') {
            *esc = e;
            return i + 1;
        }
        if (s[i] == '\\') {
            e = 1;
            i = scan_escape(s, i, n);
            if (!i) return FAIL;
        } else if (s[i] < 0x20) {
            return FAIL;
        } else {
            size_t k = utf8_seq(s + i, n - i);
            if (!k) return FAIL;
            i += k;
        }
    }
}

static size_t utf8_put(unsigned cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t stc_str_decode(const char *src, size_t len, char *out)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0, o = 0;
    while (i < len) {
        const unsigned char *bs = memchr(s + i, '\\', len - i);
        size_t run = bs ? (size_t)(bs - (s + i)) : len - i;
        memcpy(out + o, s + i, run);
        o += run;
        i += run;
        if (i >= len) break;
        unsigned char c = s[i + 1];
        i += 2;
        switch (c) {
        case 'b':
            out[o++] = '\b';
            break;
        case 'f':
            out[o++] = '\f';
            break;
        case 'n':
            out[o++] = '\n';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case 't':
            out[o++] = '\t';
            break;
        case 'u': {
            unsigned v = 0, v2 = 0;
            hex4(s + i, &v);
            i += 4;
            if (v >= 0xD800 && v <= 0xDBFF) {
                hex4(s + i + 2, &v2);
                i += 6;
                v = ((v - 0xD800) << 10) + (v2 - 0xDC00) + 0x10000;
            }
            o += utf8_put(v, out + o);
            break;
        }
        default: /* '"', '\\', '/' */
            out[o++] = (char)c;
        }
    }
    return o;
}

/* Decodes an escaped key into the key store; -1 on allocation failure. */
static int key_store(stc_tape_t *t, const char *raw, size_t len, uint32_t *off, uint32_t *klen)
{
    if (t->kcap - t->nkeys < len) {
        size_t cap = t->kcap ? t->kcap * 2 : 256;
        while (cap - t->nkeys < len)
            cap *= 2;
        char *k = stc_mem_alloc(cap);
        if (!k) return -1;
        if (t->nkeys) memcpy(k, t->keys, t->nkeys);
        stc_mem_free(t->keys);
        t->keys = k;
        t->kcap = cap;
    }
    size_t n = stc_str_decode(raw, len, t->keys + t->nkeys);
    *off = (uint32_t)t->nkeys;
    *klen = (uint32_t)n;
    t->nkeys += n;
    return 0;
}

/* ---- numbers ------------------------------------------------------------- */

/* The number at i. Returns the position after it with *type set (INT or
 * REAL), or FAIL when invalid (grammar, or a value that overflows a double). */
static size_t scan_number(parser_t *p, size_t i, int *type)
{
    const unsigned char *s = p->s;
    size_t n = p->len, start = i;
    if (s[i] == '-') i++;
    if (i >= n) return FAIL;
    size_t d0 = i;
    if (s[i] == '0') {
        i++;
        if (i < n && is_digit(s[i])) return FAIL;
    } else if (is_digit(s[i])) {
        i = skip_digits(s, i + 1, n);
    } else {
        return FAIL;
    }
    size_t nint = s[d0] == '0' ? 0 : i - d0; /* integer digits, "0" counts none */
    int real = 0;
    long exp = 0;
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !is_digit(s[i])) return FAIL;
        i = skip_digits(s, i + 1, n);
        real = 1;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        int eneg = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
        if (i >= n || !is_digit(s[i])) return FAIL;
        while (i < n && is_digit(s[i])) {
            if (exp < 1000000) exp = exp * 10 + (s[i] - '0');
            i++;
        }
        if (eneg) exp = -exp;
        real = 1;
    }
    const char *tok = (const char *)s + start;
    if (!real) {
        if (nint >= 19 && !stc_num_int_fits(tok, i - start)) {
            /* the document's integers become reals; this one must fit a double */
            p->bigints++;
            if (nint > 300 && stc_num_overflows(tok, i - start)) return FAIL;
        }
        *type = STC_J_INT;
        return i;
    }
    /* the value is below 10^(nint + exp): only then can it overflow */
    if ((long)nint + exp > 300 && stc_num_overflows(tok, i - start)) return FAIL;
    *type = STC_J_REAL;
    return i;
}

/* ---- values -------------------------------------------------------------- */

static size_t parse_object(parser_t *p, size_t i, uint32_t guide, size_t depth);
static size_t parse_array(parser_t *p, size_t i, uint32_t guide, size_t depth);
static inline __attribute__((always_inline)) size_t parse_value(parser_t *p, size_t i,
                                                                uint32_t guide, size_t depth);

/* Scalar tokens end where the next byte is not part of them: a guide's
 * scalar is the same token only when the byte after it here does not
 * continue a number or a literal (nor is the NUL that jansson skips). */
static int token_continues(unsigned char c)
{
    return is_digit(c) || is_alpha(c) || c == '.' || c == '\0';
}

/* 1 when the guide's text [off, off+l) equals ours at [i, i+l) (l fits).
 * Where both lie at the same place of the bodies' common prefix or suffix
 * the answer is known without comparing: equal inside it, different when
 * they cover the first (last) differing byte. So a difference deep inside
 * nested values is not found again by a memcmp at every level above it. */
static int same_bytes(const parser_t *p, size_t off, size_t i, size_t l)
{
    if (off == i && i <= p->pre) return i + l <= p->pre; /* at pre: a difference or an end */
    size_t gl = p->guide->len;
    if (off - i == gl - p->len && p->suf) { /* aligned on the common suffix */
        size_t sb = p->len - p->suf;
        if (i >= sb) return 1;
        if (p->suf_ends_at_difference && i + l >= sb) return 0; /* covers byte sb-1 */
    }
    return stc_bytes_eq(p->guide->body + off, (const char *)p->s + i, l);
}

/* When the guide's value g has the same bytes at i: one SAME node, and the
 * position after it (FAIL on allocation failure). 0 when not the same. */
static size_t try_same(parser_t *p, size_t i, uint32_t g)
{
    const stc_jnode_t *gn = &p->guide->nodes[g];
    size_t l = gn->len;
    if (l > p->len - i) return 0;
    if (!same_bytes(p, gn->off, i, l)) return 0;
    if (gn->type < STC_J_STRING && i + l < p->len && token_continues(p->s[i + l])) return 0;
    uint32_t k = node_new(p, i, STC_J_SAME);
    if (k == NO_GUIDE) return fail(p, P_NOMEM);
    stc_jnode_t *n = &p->t->nodes[k];
    n->len = (uint32_t)l;
    n->n = g;
    n->flags = gn->flags & STC_JF_BIGINT;
    if (n->flags) p->bigints++;
    return i + l;
}

/* Guide children: the guide child after c of guide container g, or none. */
static uint32_t guide_next(const stc_tape_t *g, uint32_t parent, uint32_t c)
{
    if (c == NO_GUIDE) return NO_GUIDE;
    uint32_t nx = g->nodes[c].next;
    return nx < g->nodes[parent].next ? nx : NO_GUIDE;
}

static uint32_t guide_first(const stc_tape_t *g, uint32_t parent, int type)
{
    if (parent == NO_GUIDE) return NO_GUIDE;
    const stc_jnode_t *n = &g->nodes[parent];
    return n->type == type && n->n > 0 ? parent + 1 : NO_GUIDE;
}

/* The guide member for key k: the one at the same position when its key
 * matches, else (small objects) the last member with that key. */
static uint32_t guide_member(const stc_tape_t *g, uint32_t parent, uint32_t at, const char *k,
                             uint32_t kl)
{
    if (at != NO_GUIDE && g->nodes[at].klen == kl && stc_bytes_eq(stc_tape_key(g, at), k, kl))
        return at;
    if (parent == NO_GUIDE || g->nodes[parent].type != STC_J_OBJECT || g->nodes[parent].n > 16)
        return NO_GUIDE;
    uint32_t found = NO_GUIDE;
    for (uint32_t c = parent + 1; c < g->nodes[parent].next; c = g->nodes[c].next)
        if (g->nodes[c].klen == kl && memcmp(stc_tape_key(g, c), k, kl) == 0) found = c;
    return found;
}

/* Closes container node idx whose text ends before i. */
static void close_container(parser_t *p, uint32_t idx, size_t i, uint32_t count, size_t big0)
{
    stc_jnode_t *n = &p->t->nodes[idx];
    n->len = (uint32_t)(i - n->off);
    n->next = p->t->nnodes;
    n->n = count;
    if (p->bigints != big0) n->flags |= STC_JF_BIGINT;
}

static inline size_t literal(parser_t *p, size_t i, const char *word, size_t wl, int type)
{
    if (p->len - i < wl || memcmp(p->s + i, word, wl) != 0) return fail(p, P_INVALID);
    if (i + wl < p->len && is_alpha(p->s[i + wl])) return fail(p, P_INVALID);
    if (node_push(p, i, wl, type, 0) == NO_GUIDE) return fail(p, P_NOMEM);
    return i + wl;
}

/* The value at i (whitespace skipped). Inlined into the container loops:
 * a scalar costs no call. */
static inline __attribute__((always_inline)) size_t parse_value(parser_t *p, size_t i,
                                                                uint32_t guide, size_t depth)
{
    const unsigned char *s = p->s;
    size_t n = p->len, e;
    if (i >= n) return fail(p, P_INVALID);
    if (guide != NO_GUIDE) {
        e = try_same(p, i, guide);
        if (e) return e;
    }
    unsigned char c = s[i];
    switch (c) {
    case '{':
        return parse_object(p, i, guide, depth + 1);
    case '[':
        return parse_array(p, i, guide, depth + 1);
    case '"': {
        int esc;
        e = scan_string(s, i, n, &esc);
        if (e == FAIL) return fail(p, P_INVALID);
        if (node_push(p, i, e - i, STC_J_STRING, esc ? STC_JF_ESC : 0) == NO_GUIDE)
            return fail(p, P_NOMEM);
        return e;
    }
    case 't':
        e = literal(p, i, "true", 4, STC_J_TRUE);
        break;
    case 'f':
        e = literal(p, i, "false", 5, STC_J_FALSE);
        break;
    case 'n':
        e = literal(p, i, "null", 4, STC_J_NULL);
        break;
    default: {
        if (c != '-' && !is_digit(c)) return fail(p, P_INVALID);
        size_t b0 = p->bigints;
        int type;
        e = scan_number(p, i, &type);
        if (e == FAIL) return fail(p, P_INVALID);
        if (node_push(p, i, e - i, type, p->bigints != b0 ? STC_JF_BIGINT : 0) == NO_GUIDE)
            return fail(p, P_NOMEM);
    }
    }
    /* jansson puts the byte after a number or literal back; a NUL is lost */
    if (e != FAIL && e < n && s[e] == '\0') e++;
    return e;
}

static size_t parse_object(parser_t *p, size_t i, uint32_t guide, size_t depth)
{
    if (depth > p->max_depth) return fail(p, P_DEEP);
    uint32_t idx = node_new(p, i, STC_J_OBJECT);
    if (idx == NO_GUIDE) return fail(p, P_NOMEM);
    const unsigned char *s = p->s;
    size_t n = p->len, big0 = p->bigints;
    uint32_t count = 0;
    uint32_t gc = p->guide ? guide_first(p->guide, guide, STC_J_OBJECT) : NO_GUIDE;
    i = skip_ws(s, i + 1, n);
    if (i < n && s[i] == '}') {
        close_container(p, idx, i + 1, 0, big0);
        return i + 1;
    }
    for (;;) {
        if (i >= n || s[i] != '"') return fail(p, P_INVALID);
        size_t kstart = i + 1;
        int kesc;
        i = scan_string(s, i, n, &kesc);
        if (i == FAIL) return fail(p, P_INVALID);
        size_t kraw = i - 1 - kstart;
        uint32_t koff = (uint32_t)kstart, klen = (uint32_t)kraw;
        if (kesc) {
            if (key_store(p->t, (const char *)s + kstart, kraw, &koff, &klen) < 0)
                return fail(p, P_NOMEM);
            if (memchr(p->t->keys + koff, '\0', klen)) return fail(p, P_INVALID); /* NUL in a key */
        }
        i = skip_ws(s, i, n);
        if (i >= n || s[i] != ':') return fail(p, P_INVALID);
        i = skip_ws(s, i + 1, n);
        uint32_t g = NO_GUIDE;
        if (p->guide) {
            const char *k = (kesc ? p->t->keys : (const char *)s) + koff;
            g = guide_member(p->guide, guide, gc, k, klen);
            gc = guide_next(p->guide, guide, gc);
        }
        uint32_t vi = p->t->nnodes;
        i = parse_value(p, i, g, depth);
        if (i == FAIL) return FAIL;
        stc_jnode_t *vn = &p->t->nodes[vi];
        vn->koff = koff;
        vn->klen = klen;
        if (kesc) vn->flags |= STC_JF_KESC;
        count++;
        i = skip_ws(s, i, n);
        if (i >= n) return fail(p, P_INVALID);
        unsigned char c = s[i++];
        if (c == '}') break;
        if (c != ',') return fail(p, P_INVALID);
        i = skip_ws(s, i, n);
    }
    close_container(p, idx, i, count, big0);
    return i;
}

static size_t parse_array(parser_t *p, size_t i, uint32_t guide, size_t depth)
{
    if (depth > p->max_depth) return fail(p, P_DEEP);
    uint32_t idx = node_new(p, i, STC_J_ARRAY);
    if (idx == NO_GUIDE) return fail(p, P_NOMEM);
    const unsigned char *s = p->s;
    size_t n = p->len, big0 = p->bigints;
    uint32_t count = 0;
    uint32_t gc = p->guide ? guide_first(p->guide, guide, STC_J_ARRAY) : NO_GUIDE;
    i = skip_ws(s, i + 1, n);
    if (i < n && s[i] == ']') {
        close_container(p, idx, i + 1, 0, big0);
        return i + 1;
    }
    for (;;) {
        i = parse_value(p, i, gc, depth);
        if (i == FAIL) return FAIL;
        count++;
        if (p->guide) gc = guide_next(p->guide, guide, gc);
        i = skip_ws(s, i, n);
        if (i >= n) return fail(p, P_INVALID);
        unsigned char c = s[i++];
        if (c == ']') break;
        if (c != ',') return fail(p, P_INVALID);
        i = skip_ws(s, i, n);
    }
    close_container(p, idx, i, count, big0);
    return i;
}

stc_parse_status_t stc_tape_parse(stc_tape_t *t, const char *body, size_t len, size_t max_depth,
                                  const stc_tape_t *guide)
{
    memset(t, 0, sizeof(*t));
    t->body = body;
    t->len = len;
    t->guide = guide;
    if (len > STC_TAPE_MAX_BODY) return STC_PARSE_INVALID;
    parser_t p;
    p.t = t;
    p.s = (const unsigned char *)body;
    p.len = len;
    p.max_depth = max_depth;
    p.bigints = 0;
    p.guide = guide;
    p.err = P_OK;
    p.pre = p.suf = 0;
    p.suf_ends_at_difference = 0;
    if (guide) {
        /* common prefix, then common suffix (not overlapping it) */
        const char *g = guide->body;
        size_t m = guide->len < len ? guide->len : len, k = 0;
        while (k + 64 <= m && memcmp(g + k, body + k, 64) == 0)
            k += 64;
        while (k < m && g[k] == body[k])
            k++;
        p.pre = k;
        size_t room = m - k, j = 0;
        while (j + 64 <= room && memcmp(g + guide->len - j - 64, body + len - j - 64, 64) == 0)
            j += 64;
        while (j < room && g[guide->len - 1 - j] == body[len - 1 - j])
            j++;
        p.suf = j;
        p.suf_ends_at_difference = j < room; /* stopped at a differing byte */
    }
    /* a guided tape has at most about the guide's nodes (mostly fewer) */
    size_t want = guide ? guide->nnodes + 16 : len / 8 + 16;
    if (want > len / 2 + 16) want = len / 2 + 16;
    if (want > (1u << 20)) want = 1u << 20; /* grows beyond when needed */
    t->cap = (uint32_t)want;
    t->nodes = stc_mem_alloc((size_t)t->cap * sizeof(*t->nodes));
    if (!t->nodes) {
        t->cap = 0;
        return STC_PARSE_NOMEM;
    }
    size_t i = parse_value(&p, skip_ws(p.s, 0, len), guide ? 0 : NO_GUIDE, 0);
    int rc = i == FAIL ? p.err : skip_ws(p.s, i, len) == len ? P_OK : P_INVALID;
    t->int_as_real = p.bigints > 0;
    switch (rc) {
    case P_OK:
        return STC_PARSE_OK;
    case P_DEEP:
        return STC_PARSE_TOO_DEEP;
    case P_NOMEM:
        return STC_PARSE_NOMEM;
    default:
        /* as before: a body nested beyond the limit is too deep, valid or not */
        return stc_json_depth(body, len, max_depth) > max_depth ? STC_PARSE_TOO_DEEP
                                                                : STC_PARSE_INVALID;
    }
}

void stc_tape_deinit(stc_tape_t *t)
{
    stc_mem_free(t->nodes);
    stc_mem_free(t->keys);
    t->nodes = NULL;
    t->keys = NULL;
    t->nnodes = t->cap = 0;
    t->nkeys = t->kcap = 0;
}
