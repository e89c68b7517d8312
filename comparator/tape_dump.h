/*
 * shadowtee comparator: a divergent sample's body redacted from the tape the
 * comparison already parsed, instead of parsing it again with jansson.
 *
 * The comparison (st_compare_policy_keep) hands its primary and shadow tapes
 * to the caller in an st_cmp_bodies_t when the pair diverged and the rules
 * have redact paths; the caller passes them in the record to the aggregator,
 * whose sample redaction (st_policy_redact_body_parsed) dumps a side's tape
 * when it is the tape of that very body, parsed under the same nesting
 * limit, else redacts as before (jansson). The caller frees them after the
 * record (st_cmp_bodies_free).
 *
 * The dump is tape_text.c's writer (the one of the a/b and canonical texts)
 * in its unbounded, insertion-order, counting mode.
 */
#ifndef SHADOWTEE_TAPE_DUMP_H
#define SHADOWTEE_TAPE_DUMP_H

#include "tape.h"

/* The kept tapes of one comparison: [0] the primary's, [1] the shadow's
 * (guided by [0] when [0] parsed). Owns the tapes; the bodies they point
 * into are the caller's (the responses compared) and must outlive it. */
struct st_cmp_bodies {
    size_t max_depth; /* the nesting limit the tapes were parsed under */
    stc_tape_t tape[2];
    int ok[2]; /* 1: tape[i] parsed with STC_PARSE_OK */
};

/* root dumped as jansson's json_dumps(JSON_COMPACT | JSON_ENCODE_ANY) dumps
 * the tree json_loadb gives for the same body after stc_redact_tree(pats)
 * replaced values with "[REDACTED]": unbounded, 17-digit reals, members in
 * insertion order with the last value of a duplicate key. *count receives
 * the number of values replaced (stc_redact_tree's result). Returns the
 * NUL-terminated text (*out_len its length; free with stc_mem_free), or NULL
 * when an allocation failed. */
char *stc_tape_dump_redacted(stc_jv_t root, const stc_pattern_t *const *pats, size_t npats,
                             size_t *out_len, size_t *count);

#endif
