/*
 * shadowtee comparator: redaction of what is kept in samples. Header values
 * of credential headers (built-in list + the rules' redact_headers) and JSON
 * values at the rules' redact_paths are replaced by "[REDACTED]"; bodies are
 * cut to a size limit.
 *
 * Fail closed: when redact paths are configured and a body looks like JSON
 * but cannot be parsed (often a capture cut at the size limit), the whole
 * body is replaced, since the values to hide cannot be located.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tape_dump.h"

#define REDACTED             "[REDACTED]"
#define REDACTED_UNPARSEABLE "[REDACTED: body looks like JSON but does not parse]"

static const char *const builtin_redacted[] = {
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
};

/* 1 when name is a built-in credential header or one of names[0..n). */
static int header_redacted(const char *const *names, size_t n, const char *name, size_t name_len)
{
    for (size_t i = 0; i < sizeof(builtin_redacted) / sizeof(builtin_redacted[0]); i++)
        if (strlen(builtin_redacted[i]) == name_len &&
            strncasecmp(builtin_redacted[i], name, name_len) == 0)
            return 1;
    for (size_t i = 0; i < n; i++)
        if (strlen(names[i]) == name_len && strncasecmp(names[i], name, name_len) == 0) return 1;
    return 0;
}

int st_redact_header(const st_rules_t *rules, const char *name, size_t name_len)
{
    const char *const *names;
    size_t n = st_rules_redact_headers(rules, &names);
    return header_redacted(names, n, name, name_len);
}

int st_policy_redact_header(const st_policy_t *pol, const char *name, size_t name_len)
{
    return header_redacted(pol->redact_headers, pol->nredact_headers, name, name_len);
}

static int matches_any(const stc_pattern_t *const *pats, size_t npats, const stc_seg_t *segs,
                       size_t nsegs)
{
    for (size_t i = 0; i < npats; i++)
        if (stc_pattern_match(pats[i], segs, nsegs)) return 1;
    return 0;
}

size_t stc_redact_tree(json_t *v, const stc_pattern_t *const *pats, size_t npats, stc_seg_t *segs,
                       size_t nsegs)
{
    size_t count = 0;
    if (nsegs >= STC_MAX_DEPTH_HARD + 1) return 0;
    if (json_is_object(v)) {
        for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
            segs[nsegs].key = json_object_iter_key(it);
            segs[nsegs].keylen = json_object_iter_key_len(it);
            segs[nsegs].index = 0;
            if (matches_any(pats, npats, segs, nsegs + 1)) {
                json_object_iter_set_new(v, it, json_string(REDACTED));
                count++;
            } else {
                count += stc_redact_tree(json_object_iter_value(it), pats, npats, segs, nsegs + 1);
            }
        }
    } else if (json_is_array(v)) {
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++) {
            segs[nsegs].key = NULL;
            segs[nsegs].keylen = 0;
            segs[nsegs].index = i;
            if (matches_any(pats, npats, segs, nsegs + 1)) {
                json_array_set_new(v, i, json_string(REDACTED));
                count++;
            } else {
                count += stc_redact_tree(json_array_get(v, i), pats, npats, segs, nsegs + 1);
            }
        }
    }
    return count;
}

static int looks_like_json(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n') continue;
        return s[i] == '{' || s[i] == '[';
    }
    return 0;
}

/* Copies at most max_len bytes of s (not splitting a UTF-8 sequence) and,
 * when cut, appends "...[truncated N bytes]". */
static char *truncated_copy(const char *s, size_t len, size_t max_len, size_t *out_len)
{
    size_t keep = len;
    char marker[64] = "";
    if (len > max_len) {
        keep = max_len;
        /* s[keep] is the first byte dropped: do not split a UTF-8 sequence */
        for (int i = 0; i < 3 && keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80; i++)
            keep--;
        snprintf(marker, sizeof(marker), "...[truncated %zu bytes]", len - keep);
    }
    size_t ml = strlen(marker);
    char *d = malloc(keep + ml + 1);
    if (!d) return NULL;
    if (keep > 0) memcpy(d, s, keep); /* s may be NULL when len is 0 */
    memcpy(d + keep, marker, ml + 1);
    *out_len = keep + ml;
    return d;
}

/* The body with the values at pats[0..npats) replaced (parsed with
 * max_depth), cut to max_len. */
static char *redact_body(const stc_pattern_t *const *pats, size_t npats, size_t max_depth,
                         const char *body, size_t len, size_t max_len, size_t *out_len)
{
    *out_len = 0;
    if (npats == 0 || !looks_like_json(body, len))
        return truncated_copy(body, len, max_len, out_len);

    json_t *root = NULL;
    stc_parse_status_t st = stc_json_parse(body, len, max_depth, &root, NULL, 0);
    if (st == STC_PARSE_NOMEM) return NULL;
    if (st != STC_PARSE_OK)
        return truncated_copy(REDACTED_UNPARSEABLE, strlen(REDACTED_UNPARSEABLE), max_len, out_len);

    stc_seg_t segs[STC_MAX_DEPTH_HARD + 2];
    char *out = NULL;
    if (matches_any(pats, npats, segs, 0)) { /* "$" itself */
        out = truncated_copy("\"" REDACTED "\"", strlen(REDACTED) + 2, max_len, out_len);
    } else if (stc_redact_tree(root, pats, npats, segs, 0) == 0) {
        out = truncated_copy(body, len, max_len, out_len); /* untouched: keep the bytes */
    } else {
        char *text = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text) out = truncated_copy(text, strlen(text), max_len, out_len);
        free(text);
    }
    json_decref(root);
    return out;
}

char *st_redact_body(const st_rules_t *rules, const char *body, size_t len, size_t max_len,
                     size_t *out_len)
{
    const stc_pattern_t *const *pats;
    size_t npats;
    stc_rules_redact_paths(rules, &pats, &npats);
    return redact_body(pats, npats, stc_rules_max_depth(rules), body, len, max_len, out_len);
}

char *st_policy_redact_body(const st_policy_t *pol, const char *body, size_t len, size_t max_len,
                            size_t *out_len)
{
    return redact_body(pol->redact, pol->nredact, pol->max_depth, body, len, max_len, out_len);
}

/* redact_body's answer from t, the tape of body[0..len) parsed with
 * STC_PARSE_OK under the same nesting limit (so json_loadb, which accepts
 * exactly what the tape parser accepts, gives the tree t describes). */
static char *redact_tape(const stc_pattern_t *const *pats, size_t npats, const stc_tape_t *t,
                         const char *body, size_t len, size_t max_len, size_t *out_len)
{
    *out_len = 0;
    if (npats == 0 || !looks_like_json(body, len))
        return truncated_copy(body, len, max_len, out_len);
    stc_seg_t segs[1];
    if (matches_any(pats, npats, segs, 0)) /* "$" itself */
        return truncated_copy("\"" REDACTED "\"", strlen(REDACTED) + 2, max_len, out_len);
    size_t tl, count;
    char *text = stc_tape_dump_redacted(stc_jv_at(t, 0, t->int_as_real), pats, npats, &tl, &count);
    if (!text) return NULL;
    char *out = count == 0 ? truncated_copy(body, len, max_len, out_len) /* keep the bytes */
                           : truncated_copy(text, tl, max_len, out_len);
    stc_mem_free(text);
    return out;
}

char *st_policy_redact_body_parsed(const st_policy_t *pol, const st_cmp_bodies_t *bodies,
                                   const char *body, size_t len, size_t max_len, size_t *out_len)
{
    for (int i = 0; bodies && i < 2; i++) {
        const stc_tape_t *t = &bodies->tape[i];
        if (bodies->ok[i] && bodies->max_depth == pol->max_depth && t->body == body &&
            t->len == len)
            return redact_tape(pol->redact, pol->nredact, t, body, len, max_len, out_len);
    }
    return st_policy_redact_body(pol, body, len, max_len, out_len);
}
