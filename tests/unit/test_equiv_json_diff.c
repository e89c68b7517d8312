/*
 * Every document of test_json_diff.c through both engines. That file is
 * compiled here unchanged, with its st_compare calls routed through
 * equiv_st_compare: each call also runs the reference engine
 * (comparator/ref/, the jansson-tree diff st_compare used before) on the
 * same input and fails on the first field that differs, then returns the
 * new engine's result to the original assertions. Calls made while a test
 * installs a failing jansson allocator are passed through without the
 * comparison (where the allocations fail differs between the engines).
 */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "equiv.h"
#include "shadowtee/comparator.h"

static int equiv_calls, equiv_compared;

static int equiv_st_compare(const st_rules_t *rules, const char *endpoint,
                            const st_response_t *primary, const st_response_t *shadow,
                            const st_response_t *noise, st_diff_result_t *result);

#define st_compare equiv_st_compare
#define main       json_diff_main
#include "test_json_diff.c"
#undef st_compare
#undef main

static int equiv_st_compare(const st_rules_t *rules, const char *endpoint,
                            const st_response_t *primary, const st_response_t *shadow,
                            const st_response_t *noise, st_diff_result_t *result)
{
    json_malloc_t m;
    json_free_t f;
    json_get_alloc_funcs(&m, &f);
    equiv_calls++;
    if (m == malloc && f == free) {
        char why[4096];
        if (!equiv_run(rules, endpoint, primary, shadow, noise, why, sizeof(why))) {
            fprintf(stderr, "engines differ on endpoint %s\nprimary: ", endpoint);
            equiv_print_literal(stderr, primary->body, primary->body_len);
            fprintf(stderr, "\nshadow:  ");
            equiv_print_literal(stderr, shadow->body, shadow->body_len);
            if (noise) {
                fprintf(stderr, "\nnoise:   ");
                equiv_print_literal(stderr, noise->body, noise->body_len);
            }
            fprintf(stderr, "\n%s\n", why);
            fail_msg("st_compare and ref_st_compare differ (see above)");
        }
        equiv_compared++;
    }
    return st_compare(rules, endpoint, primary, shadow, noise, result);
}

int main(void)
{
    int rc = json_diff_main();
    printf("test_equiv_json_diff: %d st_compare calls, %d compared with the reference engine\n",
           equiv_calls, equiv_compared);
    /* the file has ~170 table cases and 3000 mutated pairs: all must have run */
    if (rc == 0 && equiv_compared < 3000) {
        fprintf(stderr, "only %d calls compared: the tests did not run\n", equiv_compared);
        return 1;
    }
    return rc;
}
