/*
 * shadowtee stats: the aggregator of comparison results (no I/O, no libuv,
 * no hiredis). It adds each comparison to counters (read by Prometheus) and,
 * for a sink that drains it (include/shadowtee/redis_sink.h), to a table of
 * pending Redis deltas and divergent samples, spelled as in
 * include/shadowtee/schema.h (described in docs/ARCHITECTURE.md, "Redis key
 * schema"). The Redis sink owns one aggregator; the aggregator knows nothing
 * of the sink.
 *
 * Threading: one st_agg_t per comparator thread, used only from that thread,
 * except st_agg_prometheus(), which another thread may call at any time (it
 * only reads counters that are safe to read concurrently) as long as the
 * aggregator is not freed meanwhile (the owner guards that).
 */
#ifndef SHADOWTEE_STATS_H
#define SHADOWTEE_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shadowtee/comparator.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_agg st_agg_t;

typedef struct {
    const char *service;         /* keys live under "shadowtee:{<service>}:" */
    int deltas;                  /* 1: keep Redis deltas and samples for a sink to drain;
                                    0: counters only (metrics) */
    size_t max_backlog;          /* pending entries (deltas + samples); beyond: dropped */
    size_t samples_per_endpoint; /* newest N divergent samples kept per endpoint */
    size_t sample_body_max;      /* bytes of each body kept in a sample */
    uint64_t bucket_ttl_s;       /* TTL of per-minute buckets */
    size_t max_endpoints;        /* endpoint label cardinality cap (then "{other}") */
    const st_rules_t *rules;     /* redaction rules; borrowed, outlives the aggregator */
} st_agg_config_t;

/* Sets every default (service "default", no deltas, 20 samples, ...). */
void st_agg_config_init(st_agg_config_t *cfg);

typedef struct {
    const char *endpoint;   /* endpoint key (st_endpoint_key) */
    const char *method;     /* NUL-terminated */
    const char *path;       /* raw request path with query, NUL-terminated (kept in samples) */
    const char *request_id; /* x-request-id, NUL-terminated */
    st_verdict_t verdict;
    const st_diff_result_t *diff; /* NULL when verdict == ST_VERDICT_ERROR */
    const char *shadow_error; /* with ST_VERDICT_ERROR: "timeout", "connect", "reset", "tls", ... */
    double primary_seconds;   /* primary latency; < 0 when unknown */
    double shadow_seconds;    /* shadow latency; < 0 when unknown */
    const st_response_t *primary; /* for samples; may be NULL */
    const st_response_t *shadow;  /* for samples; may be NULL */
    int64_t now_ms;               /* wall clock (ms since epoch) of the comparison */
    const char *source;           /* how the pair was mirrored: "tee" (NULL) or "mesh" */
    /* the endpoint's policy the comparison was made under, which redacts the
     * sample (borrowed, for the call); NULL: resolved from cfg.rules */
    const st_policy_t *policy;
    /* the comparison's parsed bodies (st_compare_policy_keep; borrowed, for
     * the call; may be NULL): a sample's body is redacted from its tape */
    const st_cmp_bodies_t *bodies;
} st_agg_record_t;

/* A new aggregator. cfg is copied; strings in it are borrowed and must
 * outlive it. NULL on allocation failure. */
st_agg_t *st_agg_new(const st_agg_config_t *cfg);
void st_agg_free(st_agg_t *a);

/* Adds one comparison to the in-memory aggregates. O(paths), no I/O. */
void st_agg_record(st_agg_t *a, const st_agg_record_t *rec);

/* Writes the Prometheus families of the comparisons, summed over the
 * aggregators: comparisons by result, the noise replica's, and the
 * per-endpoint counters. Safe to call from another thread. */
void st_agg_prometheus(st_agg_t *const *all, size_t n, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
