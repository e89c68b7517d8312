/*
 * shadowtee comparator, reference engine: ref_st_compare, st_compare's body
 * comparison as it ran on jansson trees (each JSON body parsed with
 * json_loadb, then ref_json_diff). Status and headers go through the
 * library's stc_compare_head, so only the body engine differs from
 * st_compare.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

/* A body as ref_st_compare sees it: parsed at most once, on first need, so
 * the primary's tree serves both the noise and the shadow comparison. */
typedef struct {
    const st_response_t *r;
    int try_json; /* declared or sniffed as JSON */
    int parsed;   /* stc_json_parse ran (st, j, err are set) */
    stc_parse_status_t st;
    json_t *j;
    char err[160];
} body_t;

static void body_init(body_t *b, const st_response_t *r)
{
    b->r = r;
    b->try_json = stc_body_is_json(r);
    b->parsed = 0;
    b->st = STC_PARSE_INVALID;
    b->j = NULL;
    b->err[0] = '\0';
}

static void body_parse(body_t *b, size_t max_depth)
{
    if (b->parsed) return;
    b->parsed = 1;
    if (b->try_json && b->r->body_len)
        b->st =
            stc_json_parse(b->r->body, b->r->body_len, max_depth, &b->j, b->err, sizeof(b->err));
}

static void body_deinit(body_t *b)
{
    json_decref(b->j);
    b->j = NULL;
}

static void diff_bodies(const stc_policy_t *pol, body_t *ba, body_t *bb, stc_sink_t *sink)
{
    const st_response_t *a = ba->r, *b = bb->r;
    if (a->body_truncated || b->body_truncated) {
        char *ta = NULL, *tb = NULL;
        if (stc_sink_wants(sink)) {
            char t[64];
            snprintf(t, sizeof(t), "%s after %zu bytes",
                     a->body_truncated ? "truncated" : "complete", a->body_len);
            ta = stc_text_dup(t, strlen(t));
            snprintf(t, sizeof(t), "%s after %zu bytes",
                     b->body_truncated ? "truncated" : "complete", b->body_len);
            tb = stc_text_dup(t, strlen(t));
        }
        stc_sink_add(sink, ST_DIFF_TOO_LARGE, "$body", ta, tb, 0);
        return;
    }
    if (a->body_len == 0 && b->body_len == 0) return;
    /* identical bytes cannot differ in any way below: skip the parse */
    if (a->body_len == b->body_len && memcmp(a->body, b->body, a->body_len) == 0) return;
    if (!ba->try_json && !bb->try_json) {
        stc_bytes_diff(a->body, a->body_len, b->body, b->body_len, ST_DIFF_BYTES, 1, sink);
        return;
    }
    /* JSON that cannot be parsed cannot be redacted: show no bytes of it */
    int show = pol->nredact == 0;
    body_parse(ba, pol->max_depth);
    body_parse(bb, pol->max_depth);
    stc_parse_status_t sa = ba->st, sb = bb->st;
    if (sa == STC_PARSE_NOMEM || sb == STC_PARSE_NOMEM) {
        sink->failed = 1;
    } else if (sa == STC_PARSE_TOO_DEEP || sb == STC_PARSE_TOO_DEEP) {
        stc_bytes_diff(a->body, a->body_len, b->body, b->body_len, ST_DIFF_TOO_DEEP, show, sink);
    } else if (sa == STC_PARSE_OK && sb == STC_PARSE_OK) {
        ref_json_diff(pol, ba->j, bb->j, sink);
    } else if (sa == STC_PARSE_OK || sb == STC_PARSE_OK) {
        char *ta = NULL, *tb = NULL;
        if (stc_sink_wants(sink)) {
            ta = sa == STC_PARSE_OK
                     ? ref_value_text(pol, ba->j, NULL, 0)
                     : stc_describe_not_json(a->body_len, ba->try_json ? ba->err : NULL);
            tb = sb == STC_PARSE_OK
                     ? ref_value_text(pol, bb->j, NULL, 0)
                     : stc_describe_not_json(b->body_len, bb->try_json ? bb->err : NULL);
        }
        stc_sink_add(sink, ST_DIFF_INVALID_JSON, "$body", ta, tb, 0);
    } else {
        stc_bytes_diff(a->body, a->body_len, b->body, b->body_len, ST_DIFF_BYTES, show, sink);
    }
}

static void compare_pair(const st_rules_t *rules, const stc_policy_t *pol, body_t *a, body_t *b,
                         stc_sink_t *sink)
{
    (void)rules;
    stc_compare_head(pol, a->r, b->r, sink);
    diff_bodies(pol, a, b, sink);
}

static int usable(const st_response_t *r)
{
    return r && !r->error && r->status != 0;
}

int ref_st_compare(const st_rules_t *rules, const char *endpoint, const st_response_t *primary,
                   const st_response_t *shadow, const st_response_t *noise,
                   st_diff_result_t *result)
{
    memset(result, 0, sizeof(*result));
    if (!usable(primary) || !usable(shadow)) {
        result->verdict = ST_VERDICT_ERROR;
        return 0;
    }
    stc_policy_t pol;
    st_policy_resolve(rules, endpoint, &pol);

    body_t bp, bs, bn;
    body_init(&bp, primary);
    body_init(&bs, shadow);
    stc_sink_t ns, s;
    stc_sink_init(&ns, STC_NOISE_PATHS_MAX, 1);
    stc_sink_init(&s, STC_ENTRIES_MAX, 0);
    if (usable(noise)) {
        body_init(&bn, noise);
        compare_pair(rules, &pol, &bp, &bn, &ns);
        body_deinit(&bn);
        s.noise = ns.entries;
        s.nnoise = ns.nentries;
    }
    compare_pair(rules, &pol, &bp, &bs, &s);
    body_deinit(&bp);
    body_deinit(&bs);
    int failed = s.failed || ns.failed;
    stc_sink_deinit(&ns);
    stc_sink_result(&s, result);
    return failed ? -1 : 0;
}
