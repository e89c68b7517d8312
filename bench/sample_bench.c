/*
 * sample_bench: the comparator's work for one divergent pair whose sample is
 * kept, with the sample bodies redacted by a second jansson parse (old:
 * st_compare_policy + st_policy_redact_body per side) or from the
 * comparison's tapes (new: st_compare_policy_keep +
 * st_policy_redact_body_parsed per side + st_cmp_bodies_free), and the same
 * through the aggregator (record-old / record-new: st_agg_record with
 * samples on, the record without / with the kept bodies). Meant for
 * callgrind, which counts the instructions of pair():
 *
 *   valgrind --tool=callgrind --toggle-collect=pair build/sample_bench new 20
 *
 * Prints the sample bodies' total length (the same for every mode) so the
 * work cannot be dropped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shadowtee/comparator.h"
#include "shadowtee/stats.h"

static char *make_doc(int variant, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    if (!b) abort();
    unsigned long long s = 0x9E3779B97F4A7C15ULL;
    n += (size_t)snprintf(
        b + n, cap - n,
        "{\"model\":\"resnet50\",\"request_id\":\"8d2f0c4e-%d\",\"user\":{\"email\":"
        "\"a@b.c\",\"id\":7},\"predictions\":[",
        1111 * (variant + 1));
    for (int i = 0; i < 100; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        double sc = (double)(s >> 11) / 9007199254740992.0;
        n += (size_t)snprintf(
            b + n, cap - n,
            "%s{\"id\":%d,\"label\":\"%s\",\"score\":%.17g,\"class_scores\":[%.17g,"
            "%.17g,%.17g],\"metadata\":{\"latency_ms\":%.3f,\"tags\":[\"b-%d\","
            "\"gpu\"]}}",
            i ? "," : "", i, variant && i == 20 ? "boat" : "cat", sc, sc / 2, sc / 3, 1 - sc,
            1.5 + sc, i / 10);
    }
    n += (size_t)snprintf(b + n, cap - n, "]}");
    *len = n;
    return b;
}

static const st_header_t ct = {"Content-Type", 12, "application/json", 16};

typedef struct {
    const st_policy_t *pol;
    const st_response_t *p, *s;
    st_agg_t *agg;
    int mode; /* 0 old, 1 new, 2 record-old, 3 record-new */
    long long now_ms;
    size_t out;
} run_t;

static __attribute__((noinline)) void pair(run_t *r)
{
    st_diff_result_t res;
    st_cmp_bodies_t *kept = NULL;
    if (r->mode == 0 || r->mode == 2)
        st_compare_policy(r->pol, r->p, r->s, NULL, &res);
    else
        st_compare_policy_keep(r->pol, r->p, r->s, NULL, &res, &kept);
    if (res.verdict != ST_VERDICT_DIVERGED) abort();
    if (r->mode < 2) {
        const st_response_t *side[2] = {r->p, r->s};
        for (int i = 0; i < 2; i++) {
            size_t len = 0;
            char *b = r->mode == 0 ? st_policy_redact_body(r->pol, side[i]->body, side[i]->body_len,
                                                           4096, &len)
                                   : st_policy_redact_body_parsed(r->pol, kept, side[i]->body,
                                                                  side[i]->body_len, 4096, &len);
            r->out += len;
            free(b);
        }
    } else {
        st_agg_record_t rec = {.endpoint = "GET /x",
                               .method = "GET",
                               .path = "/x",
                               .request_id = "r",
                               .verdict = res.verdict,
                               .diff = &res,
                               .primary_seconds = 0.001,
                               .shadow_seconds = 0.001,
                               .primary = r->p,
                               .shadow = r->s,
                               .now_ms = r->now_ms += 1000, /* a new second: sampled */
                               .policy = r->pol,
                               .bodies = kept};
        st_agg_record(r->agg, &rec);
    }
    st_cmp_bodies_free(kept);
    st_diff_result_free(&res);
}

int main(int argc, char **argv)
{
    static const char *const modes[] = {"old", "new", "record-old", "record-new"};
    int mode = -1;
    for (int i = 0; argc > 1 && i < 4; i++)
        if (strcmp(argv[1], modes[i]) == 0) mode = i;
    int iters = argc > 2 ? atoi(argv[2]) : 1000;
    if (mode < 0 || iters <= 0) {
        fprintf(stderr, "usage: sample_bench old|new|record-old|record-new [iterations]\n");
        return 2;
    }
    const char *rules_text = "{\"defaults\":{\"redact_paths\":[\"$.request_id\",\"$..email\"]}}";
    st_rules_t *rules = NULL;
    char err[256];
    if (st_rules_parse(rules_text, strlen(rules_text), &rules, err, sizeof(err)) != 0) abort();
    st_policy_t pol;
    st_policy_resolve(rules, "GET /x", &pol);
    size_t pl, sl;
    char *pb = make_doc(0, &pl), *sb = make_doc(1, &sl);
    st_response_t p = {.status = 200, .headers = &ct, .nheaders = 1, .body = pb, .body_len = pl};
    st_response_t s = {.status = 200, .headers = &ct, .nheaders = 1, .body = sb, .body_len = sl};
    st_agg_config_t cfg;
    st_agg_config_init(&cfg);
    cfg.deltas = 1;
    cfg.rules = rules;
    cfg.max_backlog = 1u << 30;
    st_agg_t *agg = st_agg_new(&cfg);
    if (!agg) abort();
    run_t r = {.pol = &pol, .p = &p, .s = &s, .agg = agg, .mode = mode, .now_ms = 1700000000000};
    for (int i = 0; i < iters; i++)
        pair(&r);
    printf("%s: %d pairs, bodies %zu + %zu bytes, sample bodies %zu bytes\n", modes[mode], iters,
           pl, sl, r.out);
    st_agg_free(agg);
    st_rules_free(rules);
    free(pb);
    free(sb);
    return 0;
}
