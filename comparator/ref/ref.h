/*
 * shadowtee comparator, reference engine: st_compare as it was before the
 * tape engine, with bodies parsed into jansson trees and diffed tree against
 * tree. Built into build/libstcmp_ref.a for the differential test and
 * bench/cmp_bench only; shadowtee never links it. Status, headers, rules,
 * paths and the result sink are the library's own (shared, unchanged).
 */
#ifndef SHADOWTEE_REF_H
#define SHADOWTEE_REF_H

#include <jansson.h>

#include "../cmp_internal.h"

/* Same contract as st_compare (comparator.h), computed by the old engine. */
int ref_st_compare(const st_rules_t *rules, const char *endpoint, const st_response_t *primary,
                   const st_response_t *shadow, const st_response_t *noise,
                   st_diff_result_t *result);

/* Compact JSON text of a value, bounded (numbers in shortest round-trip form). */
char *ref_json_text(const json_t *v);
/* Text of the value v found at path at[0..nat) for a/b, redact paths applied. */
char *ref_value_text(const stc_policy_t *pol, const json_t *v, const stc_seg_t *at, size_t nat);
/* Structural diff of two parsed documents under a policy, into sink. */
void ref_json_diff(const stc_policy_t *pol, const json_t *a, const json_t *b, stc_sink_t *sink);

#endif
