/*
 * Weak stand-ins for the comparator functions the stats module calls, so the
 * stats tests link before (or without) comparator/{rules,redact,compare}.c.
 * A real definition in libstcmp.a wins whenever its object is linked in.
 * Test-only: never part of comparator/.
 */
#ifndef SHADOWTEE_STATS_TEST_STUBS_H
#define SHADOWTEE_STATS_TEST_STUBS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shadowtee/comparator.h"

#define ST_WEAK __attribute__((weak))

struct st_rules {
    int unused;
};

ST_WEAK st_rules_t *st_rules_default(void)
{
    return calloc(1, sizeof(st_rules_t));
}

ST_WEAK void st_rules_free(st_rules_t *rules)
{
    free(rules);
}

ST_WEAK const char *st_diff_kind_name(st_diff_kind_t kind)
{
    static const char *const names[] = {"status",    "header",       "value",        "type",
                                        "missing",   "extra",        "array_length", "bytes",
                                        "too_large", "invalid_json", "too_deep",     "argmax"};
    return (unsigned)kind < ST_DIFF_KIND_COUNT ? names[kind] : "unknown";
}

ST_WEAK const char *st_verdict_name(st_verdict_t v)
{
    static const char *const names[] = {"match", "diverged", "noise", "error"};
    return (unsigned)v < 4 ? names[v] : "unknown";
}

ST_WEAK int st_redact_header(const st_rules_t *rules, const char *name, size_t name_len)
{
    static const char *const h[] = {"authorization", "cookie", "set-cookie", "proxy-authorization"};
    for (size_t i = 0; i < sizeof(h) / sizeof(h[0]); i++)
        if (strlen(h[i]) == name_len && strncasecmp(h[i], name, name_len) == 0) return 1;
    return 0;
}

ST_WEAK char *st_redact_body(const st_rules_t *rules, const char *body, size_t len, size_t max_len,
                             size_t *out_len)
{
    size_t keep = len < max_len ? len : max_len;
    char *out = malloc(keep + 64);
    if (!out) return NULL;
    memcpy(out, body, keep);
    *out_len = keep;
    if (keep < len) *out_len += (size_t)sprintf(out + keep, "...[truncated %zu bytes]", len - keep);
    return out;
}

#endif
