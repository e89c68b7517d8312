/*
 * shadowtee comparator, the comparison engine's internal declarations: a
 * JSON body parsed into a tape (a flat array of nodes in document order that
 * point into the body bytes), the scratch arena of one comparison, number
 * conversions, and the diff and text functions that work on tapes.
 *
 * A tape is parsed with the exact acceptance rules of jansson 2.14 as
 * st_compare used it (json_loadb with JSON_DECODE_ANY | JSON_ALLOW_NUL, and
 * the retry with JSON_DECODE_INT_AS_REAL when an integer is beyond int64), so
 * a body is valid, too deep or invalid exactly when it was before. Values are
 * not converted while parsing: a number stays its text (converted only when
 * two numbers differ), a string its raw span (decoded only when it has
 * escapes and is compared or printed).
 *
 * The shadow's (and noise replica's) tape is parsed *guided* by the
 * primary's: at each value, when the shadow's bytes equal the bytes of the
 * primary's value at the same place, the shadow gets one STC_J_SAME node
 * referring to the primary's node instead of a parsed subtree, and its bytes
 * are skipped (identical bytes are valid exactly when the primary's are).
 * The diff then skips such pairs at once. A body that differs from the
 * primary in one field costs one parse of the primary and a memcmp of the
 * rest.
 */
#ifndef SHADOWTEE_TAPE_H
#define SHADOWTEE_TAPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cmp_internal.h"

/* ---- memory ------------------------------------------------------------- */

/* The engine allocates through jansson's allocator hooks
 * (json_set_alloc_funcs), so one hook governs all of a comparison's memory
 * (and the allocation-failure tests reach the engine too). */
void *stc_mem_alloc(size_t n);
void stc_mem_free(void *p);

/* Bump allocator for the scratch memory of one comparison (member tables,
 * decoded strings, canonical texts), released in stack order by marks and
 * freed at once at the end. Chunks of 16 KiB, or one chunk per larger
 * request. Not thread-safe: one per comparison. */
typedef struct stc_chunk stc_chunk_t;
typedef struct {
    stc_chunk_t *head;  /* current chunk (newest) */
    stc_chunk_t *spare; /* one released standard chunk kept for reuse */
} stc_arena_t;
typedef struct {
    stc_chunk_t *chunk;
    size_t used;
} stc_arena_mark_t;

void stc_arena_init(stc_arena_t *a);
void stc_arena_deinit(stc_arena_t *a);
/* n bytes, 8-aligned; NULL when the allocator fails. */
void *stc_arena_alloc(stc_arena_t *a, size_t n);
stc_arena_mark_t stc_arena_mark(const stc_arena_t *a);
/* Frees everything allocated since m. */
void stc_arena_release(stc_arena_t *a, stc_arena_mark_t m);

/* ---- tapes -------------------------------------------------------------- */

typedef enum {
    STC_J_NULL = 0,
    STC_J_FALSE,
    STC_J_TRUE,
    STC_J_INT, /* an integer token (a real when the document's integers are reals) */
    STC_J_REAL,
    STC_J_STRING,
    STC_J_ARRAY,
    STC_J_OBJECT,
    STC_J_SAME /* guided tapes only: the same bytes as node `n` of the guide */
} stc_jtype_t;

#define STC_JF_ESC    0x01 /* STRING: the raw text has escapes */
#define STC_JF_KESC   0x02 /* the member key had escapes: decoded into the tape's key store */
#define STC_JF_BIGINT 0x04 /* an integer beyond int64 somewhere in this value */

typedef struct {
    uint32_t off;  /* first byte of the value text in the body */
    uint32_t len;  /* length of the value text (strings with their quotes) */
    uint32_t next; /* index of the node after this value's subtree */
    uint32_t n;    /* ARRAY/OBJECT: children (duplicates included); SAME: guide node */
    uint32_t koff; /* object member: key bytes in the body, or in the key store (KESC) */
    uint32_t klen;
    uint8_t type;  /* stc_jtype_t */
    uint8_t flags; /* STC_JF_* */
} stc_jnode_t;

typedef struct stc_tape {
    const char *body; /* borrowed */
    size_t len;
    stc_jnode_t *nodes; /* owned; node 0 is the root */
    uint32_t nnodes, cap;
    char *keys; /* owned: decoded keys of escaped member keys */
    size_t nkeys, kcap;
    int int_as_real;              /* an integer beyond int64: every integer reads as a real */
    const struct stc_tape *guide; /* SAME nodes refer to it (never itself guided) */
} stc_tape_t;

/* Bodies up to this size have a tape; larger ones are compared as too large. */
#define STC_TAPE_MAX_BODY ((size_t)UINT32_MAX - 1)

/* Parses body[0..len) into t (which it initializes). guide (may be NULL) is
 * a tape parsed with STC_PARSE_OK that the new tape's values are matched
 * against. Returns STC_PARSE_OK, STC_PARSE_TOO_DEEP (nesting beyond
 * max_depth, as stc_json_depth counts it), STC_PARSE_INVALID (what jansson
 * rejects) or STC_PARSE_NOMEM. t must be deinit'ed whatever the result. */
stc_parse_status_t stc_tape_parse(stc_tape_t *t, const char *body, size_t len, size_t max_depth,
                                  const stc_tape_t *guide);
void stc_tape_deinit(stc_tape_t *t);

/* A value: node i of tape t, read with the integer mode of the document it
 * belongs to (a SAME node's content lives in the guide, its mode does not). */
typedef struct {
    const stc_tape_t *t;
    uint32_t i;
    int int_as_real;
} stc_jv_t;

static inline const stc_jnode_t *stc_jv_node(stc_jv_t v)
{
    return &v.t->nodes[v.i];
}

/* Node i of tape t as a value of the document t is the tape of. */
static inline stc_jv_t stc_jv_at(const stc_tape_t *t, uint32_t i, int int_as_real)
{
    stc_jv_t v;
    const stc_jnode_t *n = &t->nodes[i];
    if (n->type == STC_J_SAME) {
        v.t = t->guide;
        v.i = n->n;
    } else {
        v.t = t;
        v.i = i;
    }
    v.int_as_real = int_as_real;
    return v;
}

/* The value's type as jansson would see it (INT reads as REAL in a document
 * whose integers are reals). */
static inline int stc_jv_type(stc_jv_t v)
{
    int t = v.t->nodes[v.i].type;
    return t == STC_J_INT && v.int_as_real ? STC_J_REAL : t;
}

static inline const char *stc_jv_text(stc_jv_t v)
{
    return v.t->body + v.t->nodes[v.i].off;
}

/* memcmp(a, b, n) == 0, without a call for the short texts of numbers and keys. */
static inline int stc_bytes_eq(const char *a, const char *b, size_t n)
{
    if (n > 16) return memcmp(a, b, n) == 0;
    if (n >= 8) {
        uint64_t x, y, u, v;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        memcpy(&u, a + n - 8, 8);
        memcpy(&v, b + n - 8, 8);
        return x == y && u == v;
    }
    if (n >= 4) {
        uint32_t x, y, u, v;
        memcpy(&x, a, 4);
        memcpy(&y, b, 4);
        memcpy(&u, a + n - 4, 4);
        memcpy(&v, b + n - 4, 4);
        return x == y && u == v;
    }
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

/* Key bytes of member node i of tape t. */
static inline const char *stc_tape_key(const stc_tape_t *t, uint32_t i)
{
    const stc_jnode_t *n = &t->nodes[i];
    return (n->flags & STC_JF_KESC ? t->keys : t->body) + n->koff;
}

/* ---- objects ------------------------------------------------------------ */

/* The members of an object as jansson holds them: in the order keys first
 * appear, each with the value of the key's last occurrence. */
typedef struct {
    const char *key;
    uint32_t klen;
    uint32_t node; /* the value's node index in the object's tape */
} stc_member_t;

typedef struct {
    stc_member_t *m;
    size_t n;
    uint32_t *slots; /* hash index of m (n > 8), else NULL */
    uint32_t mask;
} stc_members_t;

/* Fills ms with the members of object v (scratch from a). Returns 0, -1 on
 * allocation failure. */
int stc_members_get(stc_members_t *ms, stc_jv_t v, stc_arena_t *a);
/* Index in ms of the member with this key (hint: where it probably is),
 * or -1. */
long stc_members_find(const stc_members_t *ms, const char *key, uint32_t klen, size_t hint);

/* ---- numbers and strings ------------------------------------------------ */

/* Value of an integer token that fits int64 (checked by the parser). */
long long stc_num_int(const char *s, size_t len);
/* 1 when an integer token fits int64 (strtoll would not fail). */
int stc_num_int_fits(const char *s, size_t len);
/* strtod's result for a number token (correctly rounded). */
double stc_num_double(const char *s, size_t len);
/* 1 when strtod overflows on the token (jansson: "real number overflow"). */
int stc_num_overflows(const char *s, size_t len);
/* jansson 2.14's jsonp_dtostr (the snprintf build Debian ships): "%.*g",
 * ".0" appended when there is neither '.' nor 'e', the exponent's '+' and
 * leading zeros removed. Returns the length written to buf, or -1 when it
 * does not fit. */
int stc_num_dtostr(char *buf, size_t size, double v, int precision);
/* jansson's dump_string escape for one decoded byte (valid UTF-8: only ASCII
 * bytes are ever escaped, "/" and DEL pass through): 0 when c is written as
 * it is, else the length of its escape in e. */
size_t stc_json_escape_byte(unsigned char c, char e[6]);

/* Decodes the JSON string whose text (without quotes) is s[0..len) into out
 * (room: len bytes). Returns the decoded length. */
size_t stc_str_decode(const char *s, size_t len, char *out);
/* Decoded bytes of string value v: its raw text when it has no escapes,
 * else decoded into scratch from a. NULL on allocation failure. */
const char *stc_jv_string(stc_jv_t v, stc_arena_t *a, size_t *len);

/* ---- text ----------------------------------------------------------------- */

/* a/b text of value v at path at[0..nat): bounded compact JSON as jansson
 * dumps it, the policy's redact paths applied (stc_value_text's contract).
 * malloc'ed (the sink takes it). */
char *stc_tape_value_text(const stc_policy_t *pol, stc_jv_t v, const stc_seg_t *at, size_t nat,
                          stc_arena_t *a);
/* Canonical text of v for unordered arrays (jansson's json_dumps with
 * JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY), NUL-terminated, in a.
 * NULL on allocation failure. */
char *stc_tape_canon(stc_jv_t v, stc_arena_t *a);

/* ---- diff ----------------------------------------------------------------- */

/* Structural diff of two parsed values under a policy, into sink
 * (stc_json_diff's contract on tapes). */
void stc_tape_diff(const stc_policy_t *pol, stc_jv_t a, stc_jv_t b, stc_sink_t *sink,
                   stc_arena_t *scratch);

#endif
