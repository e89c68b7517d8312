/*
 * shadowtee comparator, internal declarations shared by the files of
 * comparator/ (rules, JSON diff, endpoint keys, redaction, st_compare).
 * Not installed, not included by the proxy: it sees only comparator.h.
 * Internal non-static functions carry the `stc_` prefix.
 */
#ifndef SHADOWTEE_CMP_INTERNAL_H
#define SHADOWTEE_CMP_INTERNAL_H

#include <stddef.h>

#include <jansson.h>

#include "shadowtee/comparator.h"

#define STC_MAX_DEPTH_DEFAULT 64   /* nesting limit when the rules say nothing */
#define STC_MAX_DEPTH_HARD    256  /* largest max_depth a rules file may ask for */
#define STC_VALUE_MAX         256  /* bytes of a/b text kept in an entry (plus "...") */
#define STC_ENTRIES_MAX       64   /* entries stored in a result; `total` counts all */
#define STC_NOISE_PATHS_MAX   1024 /* paths remembered from the primary-vs-noise diff */
#define STC_PATH_MAX          1024 /* longest path text built; longer ones are cut */

/* ---- JSONPath patterns (rules) ----------------------------------------- */

typedef enum {
    STC_STEP_KEY = 0, /* .name or ['name'] */
    STC_STEP_INDEX,   /* [3] */
    STC_STEP_ANY      /* .* or [*]: any child of an object or an array */
} stc_step_type_t;

typedef struct {
    stc_step_type_t type;
    int descent;     /* 1: preceded by "..", matches at any depth below */
    const char *key; /* STC_STEP_KEY: points into the pattern's keybuf */
    size_t keylen;
    size_t index; /* STC_STEP_INDEX */
} stc_step_t;

typedef struct stc_pattern {
    char *text;        /* the pattern as written, NUL-terminated (owned) */
    stc_step_t *steps; /* owned; nsteps == 0 is "$" itself */
    size_t nsteps;
    int has_descent; /* any step with descent (disables the length check) */
    char *keybuf;    /* owned storage of the unescaped keys */
} stc_pattern_t;

/* A concrete path segment while walking a document: borrowed key bytes. */
typedef struct {
    const char *key; /* NULL for an array index */
    size_t keylen;
    size_t index;
} stc_seg_t;

/* Compiles `text` (e.g. "$.a[*]..b['c d']"). Returns 0, or -1 with a short
 * reason in *why (a static string). The pattern owns copies of everything. */
int stc_pattern_compile(const char *text, size_t len, stc_pattern_t *out, const char **why);
void stc_pattern_deinit(stc_pattern_t *p);
/* 1 when the concrete path segs[0..nsegs) matches the whole pattern. */
int stc_pattern_match(const stc_pattern_t *p, const stc_seg_t *segs, size_t nsegs);

/* Formats segs as a JSONPath ("$.a[3]['b c']") into buf (always
 * NUL-terminated; a path too long ends with "..."). Returns the length. */
size_t stc_path_format(const stc_seg_t *segs, size_t nsegs, char *buf, size_t buflen);
/* Appends one key to a JSONPath text in buf (".key" or "['k y']"). */
size_t stc_path_append_key(char *buf, size_t buflen, size_t used, const char *key, size_t keylen);

/* ---- rules ------------------------------------------------------------- */

typedef st_tol_t stc_tol_t; /* shadowtee/comparator.h */

typedef struct {
    stc_pattern_t pat;
    size_t k; /* 1 for argmax */
} stc_topk_t;

typedef struct {
    stc_pattern_t pat;
    stc_tol_t tol;
} stc_path_tol_t;

/* One set of comparison settings: "defaults" or one entry of "endpoints". */
typedef struct stc_section {
    stc_tol_t tol;
    stc_pattern_t *ignore;
    size_t nignore;
    char **ignore_headers; /* lower-cased; "x-foo-*" is a prefix */
    size_t nignore_headers;
    stc_pattern_t *unordered;
    size_t nunordered;
    stc_topk_t *topk; /* argmax (k = 1) and topk entries */
    size_t ntopk;
    stc_path_tol_t *path_tol;
    size_t npath_tol;
    char **redact_headers; /* lower-cased */
    size_t nredact_headers;
    stc_pattern_t *redact_paths;
    size_t nredact_paths;
} stc_section_t;

/* The settings that apply to one endpoint (shadowtee/comparator.h,
 * st_policy_t): its own section (if a rule matched) searched first, then the
 * defaults. Resolved once per pair by st_policy_resolve (rules.c). */
typedef st_policy_t stc_policy_t;

/* Explicit path templates of the rules ("/v1/models/{id}/predict"). */
size_t stc_rules_templates(const st_rules_t *rules, const char *const **out);
/* Every redact path of every section (union), for st_redact_body. */
void stc_rules_redact_paths(const st_rules_t *rules, const stc_pattern_t *const **out, size_t *n);
size_t stc_rules_max_depth(const st_rules_t *rules);

/* ---- results (diff_result.c) ------------------------------------------- */

/* Collects differences. Entries beyond `cap` are only counted; when `noise`
 * is set, each difference is checked against it and counted as noise or
 * not (so the verdict is right even for entries that were not stored). */
typedef struct {
    st_diff_entry_t *entries; /* owned until moved into a result */
    size_t nentries;
    size_t alloc; /* entries allocated, <= cap */
    size_t cap;
    size_t total;
    size_t nonnoise; /* differences not covered by a noise path */
    double max_delta;
    int paths_only;               /* 1: do not format a/b (the noise pass) */
    int failed;                   /* an allocation failed: the result is incomplete */
    const st_diff_entry_t *noise; /* paths of the primary-vs-noise diff */
    size_t nnoise;
} stc_sink_t;

void stc_sink_init(stc_sink_t *s, size_t cap, int paths_only);
void stc_sink_deinit(stc_sink_t *s);
/* 1 when an entry added now would be stored (so a/b are worth formatting). */
int stc_sink_wants(const stc_sink_t *s);
/* Adds a difference. a and b (malloc'ed or NULL) are taken over and freed
 * when not stored. Never fails; an allocation failure sets s->failed. */
void stc_sink_add(stc_sink_t *s, st_diff_kind_t kind, const char *path, char *a, char *b,
                  double delta);
/* Moves the entries and counts of s into result and sets the verdict. */
void stc_sink_result(stc_sink_t *s, st_diff_result_t *result);
/* 1 when noise path `np` equals `path` or is an ancestor of it. */
int stc_path_covers(const char *np, const char *path);

/* Text helpers for a/b: a malloc'ed, NUL-terminated copy of at most
 * STC_VALUE_MAX bytes (cut on a UTF-8 boundary, then "..." appended). */
char *stc_text_dup(const char *s, size_t len);
/* Bytes as printable text: \xNN for bytes outside printable ASCII. */
char *stc_escape_bytes(const char *s, size_t len);
/* Appends the escaped form of s[0..len) to out (room: 4 bytes per input
 * byte): \" \\ and \xNN outside printable ASCII. Returns the new length. */
size_t stc_escape_into(char *out, size_t used, const char *s, size_t len);

/* ---- st_compare's parts ------------------------------------------------- */

/* Status and headers of a against b (everything but the bodies). */
void stc_compare_head(const stc_policy_t *pol, const st_response_t *a, const st_response_t *b,
                      stc_sink_t *sink);
/* 1 when the body is declared (Content-Type) or sniffed ('{' or '[') JSON. */
int stc_body_is_json(const st_response_t *r);
/* The a/b text of the side of an invalid_json entry that is not JSON. */
char *stc_describe_not_json(size_t len, const char *why);

/* ---- JSON diff --------------------------------------------------------- */

typedef enum {
    STC_PARSE_OK = 0,
    STC_PARSE_INVALID,  /* not JSON (or not supported: NUL in a key, 1e400) */
    STC_PARSE_TOO_DEEP, /* nesting beyond max_depth: not parsed */
    STC_PARSE_NOMEM
} stc_parse_status_t;

/* Parses a body with jansson (JSON_DECODE_ANY | JSON_ALLOW_NUL), for sample
 * redaction and the message of an invalid body; comparisons use the tape
 * parser (tape.h), which accepts exactly what this accepts. Integers beyond the
 * int64 range make jansson fail: the document is then parsed again with every
 * integer read as a double. Nesting is checked first by a byte scan, so a
 * document deeper than max_depth is never handed to jansson. On error *why
 * (may be NULL) receives jansson's message in `errbuf`. */
stc_parse_status_t stc_json_parse(const char *body, size_t len, size_t max_depth, json_t **out,
                                  char *errbuf, size_t errlen);
/* Max container nesting of a JSON text (strings skipped); stops counting at
 * limit + 1. */
size_t stc_json_depth(const char *s, size_t len, size_t limit);

/* Byte comparison of two bodies: adds one `kind` entry (ST_DIFF_BYTES or
 * ST_DIFF_TOO_DEEP) at "$body" when they differ, with the first differing
 * offset and (when show_bytes) the bytes around it in a/b. */
void stc_bytes_diff(const char *a, size_t alen, const char *b, size_t blen, st_diff_kind_t kind,
                    int show_bytes, stc_sink_t *sink);

/* ---- redaction --------------------------------------------------------- */

/* Replaces by the string "[REDACTED]" every value below v (v itself excluded)
 * whose path matches one of pats; v sits at segs[0..nsegs), and segs has room
 * for STC_MAX_DEPTH_HARD + 2 segments. Returns the number replaced. */
size_t stc_redact_tree(json_t *v, const stc_pattern_t *const *pats, size_t npats, stc_seg_t *segs,
                       size_t nsegs);

#endif
