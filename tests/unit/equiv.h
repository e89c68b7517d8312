/*
 * Differential testing of st_compare (the tape engine) against
 * ref_st_compare (the jansson-tree engine it replaced, comparator/ref/):
 * both run on the same input and must give the same result, field by
 * field: return code, verdict, total, max_delta, and every stored entry's
 * kind, path, a, b, delta and noise flag, in order. Shared by
 * test_engine_equiv.c (generated documents) and test_equiv_json_diff.c (the
 * documents of test_json_diff.c) and tests/fuzz/fuzz_engine.c.
 */
#ifndef SHADOWTEE_TEST_EQUIV_H
#define SHADOWTEE_TEST_EQUIV_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../comparator/ref/ref.h"
#include "shadowtee/comparator.h"

static int equiv_str_eq(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

static int equiv_dbl_eq(double a, double b)
{
    return memcmp(&a, &b, sizeof(a)) == 0; /* bit for bit: 0.0 is not -0.0 */
}

/* Writes the first difference between two results into why (or ""). Returns
 * 1 when they are equal. */
static int equiv_results_equal(int rc1, const st_diff_result_t *r1, int rc2,
                               const st_diff_result_t *r2, char *why, size_t wl)
{
    why[0] = '\0';
    if (rc1 != rc2) return snprintf(why, wl, "rc %d vs %d", rc1, rc2), 0;
    if (r1->verdict != r2->verdict)
        return snprintf(why, wl, "verdict %s vs %s", st_verdict_name(r1->verdict),
                        st_verdict_name(r2->verdict)),
               0;
    if (r1->total != r2->total)
        return snprintf(why, wl, "total %zu vs %zu", r1->total, r2->total), 0;
    if (r1->nentries != r2->nentries)
        return snprintf(why, wl, "nentries %zu vs %zu", r1->nentries, r2->nentries), 0;
    if (!equiv_dbl_eq(r1->max_delta, r2->max_delta))
        return snprintf(why, wl, "max_delta %.17g vs %.17g", r1->max_delta, r2->max_delta), 0;
    for (size_t i = 0; i < r1->nentries; i++) {
        const st_diff_entry_t *x = &r1->entries[i], *y = &r2->entries[i];
        const char *what = NULL;
        if (x->kind != y->kind)
            what = "kind";
        else if (!equiv_str_eq(x->path, y->path))
            what = "path";
        else if (!equiv_str_eq(x->a, y->a))
            what = "a";
        else if (!equiv_str_eq(x->b, y->b))
            what = "b";
        else if (!equiv_dbl_eq(x->delta, y->delta))
            what = "delta";
        else if (x->noise != y->noise)
            what = "noise";
        if (what) {
            snprintf(why, wl,
                     "entry %zu differs in %s:\n  new: %s %s a=%s b=%s delta=%.17g noise=%d\n"
                     "  old: %s %s a=%s b=%s delta=%.17g noise=%d",
                     i, what, st_diff_kind_name(x->kind), x->path ? x->path : "(null)",
                     x->a ? x->a : "(null)", x->b ? x->b : "(null)", x->delta, x->noise,
                     st_diff_kind_name(y->kind), y->path ? y->path : "(null)",
                     y->a ? y->a : "(null)", y->b ? y->b : "(null)", y->delta, y->noise);
            return 0;
        }
    }
    return 1;
}

/* Runs both engines; 1 when they agree (why says where they do not). */
static int equiv_run(const st_rules_t *rules, const char *endpoint, const st_response_t *p,
                     const st_response_t *s, const st_response_t *n, char *why, size_t wl)
{
    st_diff_result_t r1, r2;
    int rc1 = st_compare(rules, endpoint, p, s, n, &r1);
    int rc2 = ref_st_compare(rules, endpoint, p, s, n, &r2);
    int eq = equiv_results_equal(rc1, &r1, rc2, &r2, why, wl);
    st_diff_result_free(&r1);
    st_diff_result_free(&r2);
    return eq;
}

/* s[0..n) as a C string literal (split after \x escapes so a following
 * hex digit is not read into them). */
static inline void equiv_print_literal(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            fputc(c, f);
        else
            fprintf(f, "\\x%02x\"\"", c);
    }
    fputc('"', f);
}

#endif
