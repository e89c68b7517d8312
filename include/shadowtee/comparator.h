/*
 * shadowtee comparator: the public API of the diff engine.
 *
 * Pure computation on plain bytes: no I/O, no libuv, no hiredis, no globals.
 * The proxy hands it the stable (primary) and shadow responses of one
 * mirrored request (and optionally the noise replica's); it returns the list
 * of differences. Everything it returns is owned by the caller and freed with
 * the matching _free function.
 *
 * Threads: st_compare keeps no state between calls and may run on any thread,
 * several at once with the same (immutable) rules. Its memory is bounded by
 * the bodies and freed before it returns; its stack use by the nesting
 * limit (at most ~112 KiB at the hard limit of 256 levels, 48 KiB at the
 * default 64).
 */
#ifndef SHADOWTEE_COMPARATOR_H
#define SHADOWTEE_COMPARATOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- rules ------------------------------------------------------------ */

typedef struct st_rules st_rules_t; /* opaque, immutable once loaded */

/* Loads rules from a JSON file (format documented in docs/RULES.md).
 * Returns 0 and sets *out, or -1 and writes one clear message into err
 * (e.g. "rules.json: $.endpoints[2].ignore: expected an array of strings"). */
int st_rules_load(const char *path, st_rules_t **out, char *err, size_t errlen);
/* The same from a JSON text in memory (tests, embedded defaults). */
int st_rules_parse(const char *json, size_t len, st_rules_t **out, char *err, size_t errlen);
/* Built-in defaults: default header ignore list, no tolerance, no ignores. */
st_rules_t *st_rules_default(void);
void st_rules_free(st_rules_t *rules);

/* Extra header names to redact in stored samples (besides Authorization,
 * Cookie, Set-Cookie, Proxy-Authorization) and JSON paths to redact. */
size_t st_rules_redact_headers(const st_rules_t *rules, const char *const **names);

/* ---- the policy of one endpoint ----------------------------------------- */

/* A numeric tolerance: |a - b| <= absolute, or <= relative * max(|a|, |b|). */
typedef struct st_tol {
    double absolute, relative;
    int has_absolute, has_relative; /* 0: inherit from the enclosing level */
} st_tol_t;

struct stc_section; /* the comparator's parsed settings (comparator/cmp_internal.h) */
struct stc_pattern;

/* Everything the rules say about one endpoint, resolved once per mirrored
 * pair (st_policy_resolve) and handed down: to the comparison
 * (st_compare_policy: ignores, tolerances, header rules, nesting limit) and
 * to the samples' redaction (st_policy_redact_header / _body). Borrowed from
 * the rules: valid while they are. Read its fields only in comparator/. */
typedef struct st_policy {
    const struct stc_section
        *sec[2]; /* the endpoint's own section (if one matched), then defaults */
    size_t nsec;
    st_tol_t tol;                            /* resolved global tolerance (both fields set) */
    size_t max_depth;                        /* nesting limit of the bodies */
    const struct stc_pattern *const *redact; /* every redact path of the rules (samples) */
    size_t nredact;
    const char *const *redact_headers; /* every redact header of the rules, lower-cased */
    size_t nredact_headers;
} st_policy_t;

/* Resolves the policy for an endpoint key (st_endpoint_key); rules may be
 * NULL (built-ins). */
void st_policy_resolve(const st_rules_t *rules, const char *endpoint, st_policy_t *out);

/* ---- endpoints -------------------------------------------------------- */

/* Writes the endpoint key for a request into out (NUL-terminated), e.g.
 * "POST /v1/models/{id}/predict": method + path template. Numeric, UUID and
 * long hex segments collapse to {id}; the query is dropped; explicit
 * templates from the rules win. Returns the key length, or the length it
 * would need when outlen is too small (like snprintf). */
size_t st_endpoint_key(const st_rules_t *rules, const char *method, size_t method_len,
                       const char *path, size_t path_len, char *out, size_t outlen);

/* Bounded set of endpoint keys: at most `cap` distinct keys, later keys map to
 * "{other}" (the string ST_ENDPOINT_OTHER). Not thread-safe: one per worker. */
#define ST_ENDPOINT_OTHER "{other}"
typedef struct st_endpoint_set st_endpoint_set_t;
st_endpoint_set_t *st_endpoint_set_new(size_t cap);
void st_endpoint_set_free(st_endpoint_set_t *set);
/* Returns a stable pointer (valid until the set is freed) to the interned
 * key, or to "{other}" once the cap is reached. */
const char *st_endpoint_set_intern(st_endpoint_set_t *set, const char *key);

/* ---- responses and diffs --------------------------------------------- */

typedef struct {
    const char *name; /* not NUL-terminated */
    size_t name_len;
    const char *value; /* not NUL-terminated */
    size_t value_len;
} st_header_t;

typedef struct {
    int status; /* HTTP status; 0 when the response failed (see error) */
    const st_header_t *headers;
    size_t nheaders;
    const char *body; /* captured body bytes (binary safe) */
    size_t body_len;
    int body_truncated; /* 1: the body was larger than the capture limit */
    const char *error;  /* NULL, or why there is no response ("timeout", "connect", "reset") */
} st_response_t;

typedef enum {
    ST_DIFF_STATUS = 0,   /* status codes differ */
    ST_DIFF_HEADER,       /* a header differs, is missing or extra (path "header:<name>") */
    ST_DIFF_VALUE,        /* same JSON type, different value */
    ST_DIFF_TYPE,         /* JSON type changed */
    ST_DIFF_MISSING,      /* present in stable, missing in shadow */
    ST_DIFF_EXTRA,        /* present in shadow only */
    ST_DIFF_ARRAY_LEN,    /* arrays of different length */
    ST_DIFF_BYTES,        /* non-JSON bodies differ (path "$body", offset in a/b) */
    ST_DIFF_TOO_LARGE,    /* a body exceeded the capture limit: not compared */
    ST_DIFF_INVALID_JSON, /* one side is JSON, the other is not parseable */
    ST_DIFF_TOO_DEEP,     /* nesting beyond the limit: compared as bytes */
    ST_DIFF_ARGMAX,       /* argmax / top-k rule: winning class(es) differ */
    ST_DIFF_KIND_COUNT
} st_diff_kind_t;

/* Stable lower-case names used in Redis and reports:
 * "status","header","value","type","missing","extra","array_length","bytes",
 * "too_large","invalid_json","too_deep","argmax". */
const char *st_diff_kind_name(st_diff_kind_t kind);

typedef struct {
    st_diff_kind_t kind;
    char *path;   /* JSONPath, e.g. "$.predictions[3].score"; "status"; "header:x-model" */
    char *a;      /* stable value as compact JSON text (truncated to ~256 bytes), or NULL
                     when absent; for status/header/bytes/too_large/invalid_json entries a
                     plain description ("200", header value, "offset 17 (length 40): ...") */
    char *b;      /* shadow value, same */
    double delta; /* largest absolute numeric delta under this path (0 if none) */
    int noise;    /* 1: the same path also differs between primary and noise replica */
} st_diff_entry_t;

typedef enum {
    ST_VERDICT_MATCH = 0, /* no difference (after rules and tolerance) */
    ST_VERDICT_DIVERGED,  /* at least one non-noise difference */
    ST_VERDICT_NOISE,     /* differences, but all of them are noise */
    ST_VERDICT_ERROR      /* the shadow (or primary) gave no response to compare */
} st_verdict_t;
const char *st_verdict_name(st_verdict_t v); /* "match","diverged","noise","error" */

typedef struct {
    st_verdict_t verdict;
    st_diff_entry_t *entries; /* first `nentries` differences (capped, see total) */
    size_t nentries;
    size_t total;     /* all differences found, >= nentries */
    double max_delta; /* largest numeric delta seen anywhere (within tolerance or not) */
    /* The noise replica against the primary (the A/A baseline, same rules):
     * noise_compared is 1 when a usable noise answer was compared, and then
     * noise_total counts their differences (0: the two stable answers agree). */
    int noise_compared;
    size_t noise_total;
} st_diff_result_t;

/* Compares primary against shadow under the rules for `endpoint` (the key from
 * st_endpoint_key). When noise is non-NULL (a second stable replica's answer),
 * differences that also appear between primary and noise are marked noise=1
 * and do not count for the verdict. Returns 0, or -1 on allocation failure.
 * result must be freed with st_diff_result_free even on failure. */
int st_compare(const st_rules_t *rules, const char *endpoint, const st_response_t *primary,
               const st_response_t *shadow, const st_response_t *noise, st_diff_result_t *result);
/* The same under a policy already resolved (st_policy_resolve). */
int st_compare_policy(const st_policy_t *pol, const st_response_t *primary,
                      const st_response_t *shadow, const st_response_t *noise,
                      st_diff_result_t *result);
void st_diff_result_free(st_diff_result_t *result);

/* The parsed bodies of one comparison, kept for its sample's redaction
 * (st_policy_redact_body_parsed), so a divergent sample's body is not parsed
 * a second time. Opaque; it points into the compared responses' bodies,
 * which must outlive it. */
typedef struct st_cmp_bodies st_cmp_bodies_t;
/* st_compare_policy, and when the verdict is ST_VERDICT_DIVERGED, the rules
 * have redact paths and a body was parsed as JSON, *bodies receives the
 * primary's and shadow's parsed bodies (the caller owns them: free with
 * st_cmp_bodies_free after the record); else *bodies is NULL. */
int st_compare_policy_keep(const st_policy_t *pol, const st_response_t *primary,
                           const st_response_t *shadow, const st_response_t *noise,
                           st_diff_result_t *result, st_cmp_bodies_t **bodies);
void st_cmp_bodies_free(st_cmp_bodies_t *bodies); /* NULL: nothing */

/* ---- redaction -------------------------------------------------------- */

/* Returns a newly malloc'ed copy of `body` (at most max_len bytes kept; the
 * copy ends with "...[truncated N bytes]" when cut) where JSON values at the
 * rules' redact paths are replaced by "[REDACTED]". Non-JSON bodies are only
 * truncated. *out_len receives the length. */
char *st_redact_body(const st_rules_t *rules, const char *body, size_t len, size_t max_len,
                     size_t *out_len);
/* 1 when the header must be redacted in samples (built-in list + rules). */
int st_redact_header(const st_rules_t *rules, const char *name, size_t name_len);
/* The same two under a resolved policy (its redact headers and paths are the
 * rules' own: the same answers as with the rules it came from). */
char *st_policy_redact_body(const st_policy_t *pol, const char *body, size_t len, size_t max_len,
                            size_t *out_len);
int st_policy_redact_header(const st_policy_t *pol, const char *name, size_t name_len);
/* st_policy_redact_body's answer (the same bytes), from the body's tape in
 * bodies (may be NULL) when the comparison parsed this very body (same
 * pointer and length) under pol's nesting limit, else by st_policy_redact_body. */
char *st_policy_redact_body_parsed(const st_policy_t *pol, const st_cmp_bodies_t *bodies,
                                   const char *body, size_t len, size_t max_len, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
