/*
 * libFuzzer harness: st_compare (the tape engine) against ref_st_compare
 * (the jansson-tree engine it replaced) on fuzzed bodies under a fixed set
 * of rule sets; any difference in the results aborts with both printed.
 *
 * Input: byte 0 picks the rule set, byte 1 the flags (bit 0: a noise
 * replica; bits 1-3: primary, shadow, noise declared application/json;
 * bit 4: the endpoint no rule matches), bytes 2-3 the primary's length
 * (little endian, modulo what is left); the rest is the primary, then the
 * shadow (and with a noise replica, the shadow's first half and the noise's
 * second half).
 *
 *   make fuzz FUZZ_SECONDS=300      (clang, -fsanitize=fuzzer,address,undefined)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/equiv.h"

static const char *const rule_sets[] = {
    NULL,
    "{}",
    "{\"defaults\":{\"tolerance\":{\"absolute\":0.001,\"relative\":0.01}}}",
    "{\"defaults\":{\"ignore\":[\"$..timestamp\",\"$.a[*].b\",\"$['x y']\",\"$.*.c\"]}}",
    "{\"defaults\":{\"unordered\":[\"$\",\"$..tags\",\"$[*]\",\"$.a\"]}}",
    "{\"defaults\":{\"argmax\":[\"$\",\"$.s\",\"$..scores\",\"$[*]\"]}}",
    "{\"defaults\":{\"topk\":{\"$\":2,\"$.p[*]\":3,\"$..s\":1}}}",
    "{\"defaults\":{\"path_tolerance\":{\"$[0]\":{\"absolute\":0.5},\"$..v\":{\"relative\":0.1}}}}",
    "{\"defaults\":{\"redact_paths\":[\"$..email\",\"$.a\",\"$[1]\",\"$..*\"]}}",
    "{\"max_depth\":3}",
    "{\"max_depth\":1,\"defaults\":{\"unordered\":[\"$\"]}}",
    "{\"defaults\":{\"tolerance\":{\"relative\":1e-9},\"ignore\":[\"$.t\"]},\"endpoints\":[{"
    "\"match\":"
    "\"POST /predict\",\"tolerance\":{\"absolute\":0.5},\"unordered\":[\"$..*\"],"
    "\"argmax\":[\"$.p[*].s\"],\"redact_paths\":[\"$..k\"]}]}",
};
#define NRULES (sizeof(rule_sets) / sizeof(rule_sets[0]))

static const st_header_t json_ct = {"Content-Type", 12, "application/json", 16};

static st_response_t resp(const uint8_t *b, size_t n, int json)
{
    st_response_t r;
    memset(&r, 0, sizeof(r));
    r.status = 200;
    r.body = (const char *)b;
    r.body_len = n;
    if (json) {
        r.headers = &json_ct;
        r.nheaders = 1;
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static st_rules_t *rules[NRULES]; /* loaded once per process (fuzzer only) */
    static int loaded;
    if (!loaded) {
        for (size_t i = 0; i < NRULES; i++) {
            char err[256];
            if (rule_sets[i] &&
                st_rules_parse(rule_sets[i], strlen(rule_sets[i]), &rules[i], err, sizeof(err))) {
                fprintf(stderr, "rule set %zu: %s\n", i, err);
                abort();
            }
        }
        loaded = 1;
    }
    if (size < 4) return 0;
    const st_rules_t *r = rules[data[0] % NRULES];
    uint8_t flags = data[1];
    size_t rest = size - 4;
    size_t la = ((size_t)data[2] | (size_t)data[3] << 8) % (rest + 1);
    const uint8_t *a = data + 4, *b = a + la;
    size_t lb = rest - la, ln = 0;
    const uint8_t *n = NULL;
    if (flags & 1) {
        ln = lb - lb / 2;
        lb /= 2;
        n = b + lb;
    }
    st_response_t p = resp(a, la, flags & 2), s = resp(b, lb, flags & 4);
    st_response_t nr = resp(n ? n : b, ln, flags & 8);
    char why[8192];
    const char *endpoint = flags & 16 ? "GET /other" : "POST /predict";
    if (!equiv_run(r, endpoint, &p, &s, n ? &nr : NULL, why, sizeof(why))) {
        fprintf(stderr, "engines differ (rules %s, endpoint %s):\n%s\n",
                rule_sets[data[0] % NRULES] ? rule_sets[data[0] % NRULES] : "NULL", endpoint, why);
        abort();
    }
    return 0;
}
