/*
 * fuzz_compare: the JSON diff with rules (st_compare) and redaction, the
 * rules taken from the input too.
 *
 * Input: one byte of flags, then up to four parts separated by "\n--\n":
 * rules JSON (the defaults when it does not parse), primary body, shadow
 * body, noise body (bit 0: a noise replica answered). Bit 1: the shadow's
 * status differs; bit 2: the primary's body was truncated; bits 3-4 pick
 * the endpoint.
 * Oracle, besides the sanitizers: the result is consistent (entries <=
 * total, known kinds, a path on each, the verdict matches the entries), a
 * response compared with itself matches with no difference, redaction
 * stays within its bound, and a divergent pair's sample bodies redacted from
 * the comparison's tapes (st_compare_policy_keep +
 * st_policy_redact_body_parsed) are the bytes of st_policy_redact_body.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shadowtee/comparator.h"

static const char SEP[] = "\n--\n";

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_compare: %s\n", why);
    abort();
}

/* The next part of [*p, end) up to SEP (or the end). */
static void next_part(const char **p, const char *end, const char **part, size_t *len)
{
    const char *s = *p;
    const char *hit = s < end ? memmem(s, (size_t)(end - s), SEP, sizeof(SEP) - 1) : NULL;
    *part = s;
    *len = (size_t)((hit ? hit : end) - s);
    *p = hit ? hit + sizeof(SEP) - 1 : end;
}

static void check(const st_diff_result_t *r)
{
    if (r->nentries > r->total) fail("more entries than differences");
    size_t real = 0;
    for (size_t i = 0; i < r->nentries; i++) {
        const st_diff_entry_t *e = &r->entries[i];
        if ((int)e->kind < 0 || e->kind >= ST_DIFF_KIND_COUNT) fail("unknown diff kind");
        if (!e->path) fail("an entry without a path");
        if (!st_diff_kind_name(e->kind)) fail("a kind without a name");
        real += !e->noise;
    }
    if (r->verdict == ST_VERDICT_MATCH && r->total != 0) fail("match with differences");
    if (r->verdict == ST_VERDICT_DIVERGED && r->total == 0) fail("diverged without a difference");
    if (r->verdict == ST_VERDICT_NOISE && real != 0 && r->nentries == r->total)
        fail("noise verdict with a difference that is not noise");
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1) return 0;
    unsigned flags = data[0];
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    const char *rules_text, *pb, *sb, *nb;
    size_t rules_len, pl, sl, nl;
    next_part(&p, end, &rules_text, &rules_len);
    next_part(&p, end, &pb, &pl);
    next_part(&p, end, &sb, &sl);
    next_part(&p, end, &nb, &nl);

    char err[256] = "";
    st_rules_t *rules = NULL;
    if (st_rules_parse(rules_text, rules_len, &rules, err, sizeof(err)) != 0) {
        if (rules) fail("a failed parse returned rules");
        if (!err[0] || !memchr(err, '\0', sizeof(err))) fail("a failed parse without a message");
        rules = st_rules_default();
    }
    static const char *const paths[] = {"/v1/models/7/predict?x=1", "/users/ab12cd34ef56ab78", "/",
                                        "/a/b/c/d"};
    const char *path = paths[(flags >> 3) & 3];
    char ep[512];
    size_t klen = st_endpoint_key(rules, "POST", 4, path, strlen(path), ep, sizeof(ep));
    /* a template of the rules may be longer than the buffer: cut, like snprintf */
    if (!memchr(ep, '\0', sizeof(ep))) fail("endpoint key not terminated");
    if (klen < sizeof(ep) && strlen(ep) != klen) fail("endpoint key length mismatch");

    st_header_t hdrs[3] = {
        {"Content-Type", 12, "application/json", 16},
        {"X-Model", 7, "v1", 2},
        {"X-Request-Id", 12, "abc", 3},
    };
    st_response_t rp = {.status = 200,
                        .headers = hdrs,
                        .nheaders = 3,
                        .body = pb,
                        .body_len = pl,
                        .body_truncated = (flags >> 2) & 1};
    st_response_t rs = {.status = (flags >> 1) & 1 ? 500 : 200,
                        .headers = hdrs,
                        .nheaders = 2,
                        .body = sb,
                        .body_len = sl};
    st_response_t rn = {.status = 200, .headers = hdrs, .nheaders = 3, .body = nb, .body_len = nl};

    st_diff_result_t res;
    memset(&res, 0, sizeof(res));
    if (st_compare(rules, ep, &rp, &rs, (flags & 1) ? &rn : NULL, &res) == 0) check(&res);
    st_diff_result_free(&res);

    st_response_t self = rs; /* itself, not truncated: nothing may differ */
    memset(&res, 0, sizeof(res));
    if (st_compare(rules, ep, &self, &self, NULL, &res) == 0) {
        check(&res);
        if (res.verdict != ST_VERDICT_MATCH || res.total != 0)
            fail("a response compared with itself differs");
    }
    st_diff_result_free(&res);

    size_t out_len = 0, max = 64 + (flags & 0x70);
    char *red = st_redact_body(rules, pb, pl, max, &out_len);
    if (red) {
        if (out_len > max + 64) fail("redacted body beyond its bound");
        free(red);
    }

    /* the sample's redaction from the tapes against jansson's */
    st_policy_t pol;
    st_policy_resolve(rules, ep, &pol);
    st_cmp_bodies_t *kept = NULL;
    memset(&res, 0, sizeof(res));
    if (st_compare_policy_keep(&pol, &rp, &rs, (flags & 1) ? &rn : NULL, &res, &kept) == 0) {
        if (kept && res.verdict != ST_VERDICT_DIVERGED)
            fail("bodies kept for a pair not divergent");
        const st_response_t *sides[2] = {&rp, &rs};
        for (int i = 0; i < 2; i++) {
            size_t wl = 0, gl = 0;
            char *want = st_policy_redact_body(&pol, sides[i]->body, sides[i]->body_len, max, &wl);
            char *got = st_policy_redact_body_parsed(&pol, kept, sides[i]->body, sides[i]->body_len,
                                                     max, &gl);
            if (want && got && (wl != gl || memcmp(want, got, wl) != 0)) {
                fprintf(stderr, "side %d\nwant: %.*s\ngot:  %.*s\n", i, (int)wl, want, (int)gl,
                        got);
                fail("the sample body redacted from the tape differs from jansson's");
            }
            free(want);
            free(got);
        }
    }
    st_cmp_bodies_free(kept);
    st_diff_result_free(&res);
    st_rules_free(rules);
    return 0;
}
