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

typedef struct {
    stc_tape_t *t;
    const unsigned char *s;
    size_t pos, len;
    size_t max_depth;
    size_t bigints; /* integers beyond int64 seen (or inherited by SAME nodes) */
    const stc_tape_t *guide;
} parser_t;

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

static void skip_ws(parser_t *p)
{
    while (p->pos < p->len && is_ws(p->s[p->pos]))
        p->pos++;
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

/* Appends a node for the value at p->pos; returns its index or NO_GUIDE. */
static uint32_t node_new(parser_t *p, int type)
{
    stc_tape_t *t = p->t;
    if (t->nnodes == t->cap && grow_nodes(t) < 0) return NO_GUIDE;
    uint32_t i = t->nnodes++;
    stc_jnode_t *n = &t->nodes[i];
    n->off = (uint32_t)p->pos;
    n->len = 0;
    n->next = i + 1;
    n->n = 0;
    n->koff = 0;
    n->klen = 0;
    n->type = (uint8_t)type;
    n->flags = 0;
    return i;
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

/* The string at p->pos (its opening quote). Returns 0 with p->pos after the
 * closing quote and *esc set when it has escapes, -1 when invalid. */
static int scan_string(parser_t *p, int *esc)
{
    const unsigned char *s = p->s;
    size_t i = p->pos + 1, n = p->len;
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
        if (i >= n) return -1;
#if defined(__SSE2__)
    special:
#endif
        if (s[i] == '"') {
            p->pos = i + 1;
            *esc = e;
            return 0;
        }
        if (s[i] == '\\') {
            e = 1;
            i = scan_escape(s, i, n);
            if (!i) return -1;
        } else if (s[i] < 0x20) {
            return -1;
        } else {
            size_t k = utf8_seq(s + i, n - i);
            if (!k) return -1;
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

/* The number at p->pos. Returns the node type (INT or REAL), or -1 when
 * invalid (grammar, or a value that overflows a double). */
static int scan_number(parser_t *p)
{
    const unsigned char *s = p->s;
    size_t i = p->pos, n = p->len, start = i;
    if (s[i] == '-') i++;
    if (i >= n) return -1;
    size_t d0 = i;
    if (s[i] == '0') {
        i++;
        if (i < n && is_digit(s[i])) return -1;
    } else if (is_digit(s[i])) {
        while (i < n && is_digit(s[i]))
            i++;
    } else {
        return -1;
    }
    size_t nint = s[d0] == '0' ? 0 : i - d0; /* integer digits, "0" counts none */
    int real = 0;
    long exp = 0;
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !is_digit(s[i])) return -1;
        while (i < n && is_digit(s[i]))
            i++;
        real = 1;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        int eneg = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
        if (i >= n || !is_digit(s[i])) return -1;
        while (i < n && is_digit(s[i])) {
            if (exp < 1000000) exp = exp * 10 + (s[i] - '0');
            i++;
        }
        if (eneg) exp = -exp;
        real = 1;
    }
    p->pos = i;
    const char *tok = (const char *)s + start;
    if (!real) {
        if (nint >= 19 && !stc_num_int_fits(tok, i - start)) {
            /* the document's integers become reals; this one must fit a double */
            p->bigints++;
            if (nint > 300 && stc_num_overflows(tok, i - start)) return -1;
        }
        return STC_J_INT;
    }
    /* the value is below 10^(nint + exp): only then can it overflow */
    if ((long)nint + exp > 300 && stc_num_overflows(tok, i - start)) return -1;
    return STC_J_REAL;
}

/* ---- values -------------------------------------------------------------- */

enum { P_OK = 0, P_INVALID, P_DEEP, P_NOMEM };

static int parse_value(parser_t *p, uint32_t guide, size_t depth);

/* Scalar tokens end where the next byte is not part of them: a guide's
 * scalar is the same token only when the byte after it here does not
 * continue a number or a literal (nor is the NUL that jansson skips). */
static int token_continues(unsigned char c)
{
    return is_digit(c) || is_alpha(c) || c == '.' || c == '\0';
}

/* The guide's value g has the same bytes at p->pos: one SAME node. */
static int try_same(parser_t *p, uint32_t g, int *rc)
{
    const stc_jnode_t *gn = &p->guide->nodes[g];
    size_t l = gn->len, pos = p->pos;
    if (l > p->len - pos) return 0;
    if (memcmp(p->guide->body + gn->off, p->s + pos, l) != 0) return 0;
    if (gn->type < STC_J_STRING && pos + l < p->len && token_continues(p->s[pos + l])) return 0;
    uint32_t i = node_new(p, STC_J_SAME);
    if (i == NO_GUIDE) {
        *rc = P_NOMEM;
        return 1;
    }
    stc_jnode_t *n = &p->t->nodes[i];
    n->len = (uint32_t)l;
    n->n = g;
    n->flags = gn->flags & STC_JF_BIGINT;
    if (n->flags) p->bigints++;
    p->pos = pos + l;
    *rc = P_OK;
    return 1;
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
    if (at != NO_GUIDE && g->nodes[at].klen == kl && memcmp(stc_tape_key(g, at), k, kl) == 0)
        return at;
    if (parent == NO_GUIDE || g->nodes[parent].type != STC_J_OBJECT || g->nodes[parent].n > 16)
        return NO_GUIDE;
    uint32_t found = NO_GUIDE;
    for (uint32_t c = parent + 1; c < g->nodes[parent].next; c = g->nodes[c].next)
        if (g->nodes[c].klen == kl && memcmp(stc_tape_key(g, c), k, kl) == 0) found = c;
    return found;
}

static int parse_object(parser_t *p, uint32_t guide, size_t depth)
{
    if (depth > p->max_depth) return P_DEEP;
    uint32_t idx = node_new(p, STC_J_OBJECT);
    if (idx == NO_GUIDE) return P_NOMEM;
    size_t big0 = p->bigints;
    uint32_t count = 0;
    uint32_t gc = p->guide ? guide_first(p->guide, guide, STC_J_OBJECT) : NO_GUIDE;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == '}') {
        p->pos++;
    } else {
        for (;;) {
            if (p->pos >= p->len || p->s[p->pos] != '"') return P_INVALID;
            size_t kstart = p->pos + 1;
            int kesc;
            if (scan_string(p, &kesc) < 0) return P_INVALID;
            size_t kraw = p->pos - 1 - kstart;
            uint32_t koff = (uint32_t)kstart, klen = (uint32_t)kraw;
            if (kesc) {
                if (key_store(p->t, (const char *)p->s + kstart, kraw, &koff, &klen) < 0)
                    return P_NOMEM;
                if (memchr(p->t->keys + koff, '\0', klen))
                    return P_INVALID; /* jansson: NUL in key */
            }
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') return P_INVALID;
            p->pos++;
            skip_ws(p);
            uint32_t g = NO_GUIDE;
            if (p->guide) {
                const char *k = (kesc ? p->t->keys : (const char *)p->s) + koff;
                g = guide_member(p->guide, guide, gc, k, klen);
            }
            uint32_t vi = p->t->nnodes;
            int rc = parse_value(p, g, depth);
            if (rc != P_OK) return rc;
            stc_jnode_t *vn = &p->t->nodes[vi];
            vn->koff = koff;
            vn->klen = klen;
            if (kesc) vn->flags |= STC_JF_KESC;
            count++;
            if (p->guide) gc = guide_next(p->guide, guide, gc);
            skip_ws(p);
            if (p->pos >= p->len) return P_INVALID;
            unsigned char c = p->s[p->pos++];
            if (c == '}') break;
            if (c != ',') return P_INVALID;
            skip_ws(p);
        }
    }
    stc_jnode_t *n = &p->t->nodes[idx];
    n->len = (uint32_t)(p->pos - n->off);
    n->next = p->t->nnodes;
    n->n = count;
    if (p->bigints != big0) n->flags |= STC_JF_BIGINT;
    return P_OK;
}

static int parse_array(parser_t *p, uint32_t guide, size_t depth)
{
    if (depth > p->max_depth) return P_DEEP;
    uint32_t idx = node_new(p, STC_J_ARRAY);
    if (idx == NO_GUIDE) return P_NOMEM;
    size_t big0 = p->bigints;
    uint32_t count = 0;
    uint32_t gc = p->guide ? guide_first(p->guide, guide, STC_J_ARRAY) : NO_GUIDE;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']') {
        p->pos++;
    } else {
        for (;;) {
            int rc = parse_value(p, gc, depth);
            if (rc != P_OK) return rc;
            count++;
            if (p->guide) gc = guide_next(p->guide, guide, gc);
            skip_ws(p);
            if (p->pos >= p->len) return P_INVALID;
            unsigned char c = p->s[p->pos++];
            if (c == ']') break;
            if (c != ',') return P_INVALID;
            skip_ws(p);
        }
    }
    stc_jnode_t *n = &p->t->nodes[idx];
    n->len = (uint32_t)(p->pos - n->off);
    n->next = p->t->nnodes;
    n->n = count;
    if (p->bigints != big0) n->flags |= STC_JF_BIGINT;
    return P_OK;
}

static int literal(parser_t *p, const char *word, size_t wl, int type)
{
    if (p->len - p->pos < wl || memcmp(p->s + p->pos, word, wl) != 0) return P_INVALID;
    if (p->pos + wl < p->len && is_alpha(p->s[p->pos + wl])) return P_INVALID;
    uint32_t i = node_new(p, type);
    if (i == NO_GUIDE) return P_NOMEM;
    p->t->nodes[i].len = (uint32_t)wl;
    p->pos += wl;
    return P_OK;
}

/* The value at p->pos (whitespace skipped). */
static int parse_value(parser_t *p, uint32_t guide, size_t depth)
{
    if (p->pos >= p->len) return P_INVALID;
    int rc;
    if (guide != NO_GUIDE && try_same(p, guide, &rc)) return rc;
    unsigned char c = p->s[p->pos];
    switch (c) {
    case '{':
        return parse_object(p, guide, depth + 1);
    case '[':
        return parse_array(p, guide, depth + 1);
    case '"': {
        uint32_t i = node_new(p, STC_J_STRING);
        if (i == NO_GUIDE) return P_NOMEM;
        int esc;
        if (scan_string(p, &esc) < 0) return P_INVALID;
        stc_jnode_t *n = &p->t->nodes[i];
        n->len = (uint32_t)(p->pos - n->off);
        if (esc) n->flags = STC_JF_ESC;
        return P_OK;
    }
    case 't':
        rc = literal(p, "true", 4, STC_J_TRUE);
        break;
    case 'f':
        rc = literal(p, "false", 5, STC_J_FALSE);
        break;
    case 'n':
        rc = literal(p, "null", 4, STC_J_NULL);
        break;
    default: {
        if (c != '-' && !is_digit(c)) return P_INVALID;
        uint32_t i = node_new(p, STC_J_INT);
        if (i == NO_GUIDE) return P_NOMEM;
        size_t b0 = p->bigints;
        int type = scan_number(p);
        if (type < 0) return P_INVALID;
        stc_jnode_t *n = &p->t->nodes[i];
        n->type = (uint8_t)type;
        n->len = (uint32_t)(p->pos - n->off);
        if (p->bigints != b0) n->flags = STC_JF_BIGINT;
        rc = P_OK;
    }
    }
    /* jansson puts the byte after a number or literal back; a NUL is lost */
    if (rc == P_OK && p->pos < p->len && p->s[p->pos] == '\0') p->pos++;
    return rc;
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
    p.pos = 0;
    p.len = len;
    p.max_depth = max_depth;
    p.bigints = 0;
    p.guide = guide;
    /* a guided tape is mostly SAME nodes: start small */
    size_t want = guide ? len / 64 + 16 : len / 8 + 16;
    t->cap = want > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)want;
    t->nodes = stc_mem_alloc((size_t)t->cap * sizeof(*t->nodes));
    if (!t->nodes) {
        t->cap = 0;
        return STC_PARSE_NOMEM;
    }
    skip_ws(&p);
    int rc = parse_value(&p, guide ? 0 : NO_GUIDE, 0);
    if (rc == P_OK) {
        skip_ws(&p);
        if (p.pos != len) rc = P_INVALID;
    }
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
